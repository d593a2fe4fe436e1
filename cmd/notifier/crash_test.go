package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/notify"
)

// buildNotifier compiles this command into a temporary directory.
func buildNotifier(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "notifier")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// child is a notifier process.
type child struct {
	cmd   *exec.Cmd
	logs  *lineWatcher
	ready *lineWatcher
}

func startChild(t *testing.T, bin, cfg, natsURL string, env []string) *child {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfg, "--nats-url", natsURL, "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug")
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logs: newLineWatcher("\x00never"), ready: newLineWatcher(`"msg":"notifier ready"`)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text() + "\n"
			c.logs.Write([]byte(line))
			c.ready.Write([]byte(line))
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	c.ready.wait(t)
	return c
}

// crashReceiver is a webhook receiver for the crash test. Until the kill it
// answers the first k requests and then holds every further request open,
// never answering: those sends are in flight when the notifier dies. After
// the kill it answers everything.
type crashReceiver struct {
	mu        sync.Mutex
	k         int
	requests  int
	afterKill bool
	seen      map[string]int // requests per webhook-id
	accepted  map[string]int // 200s answered per webhook-id
	held      map[string]bool
	mismatch  []string
	release   chan struct{}
	changed   chan struct{}
}

func (rc *crashReceiver) signal() {
	select {
	case rc.changed <- struct{}{}:
	default:
	}
}

func (rc *crashReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("Webhook-Id")
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &ev)
	rc.mu.Lock()
	rc.requests++
	rc.seen[id]++
	if ev.ID != id {
		rc.mismatch = append(rc.mismatch, id)
	}
	hold := !rc.afterKill && rc.requests > rc.k
	if hold {
		rc.held[id] = true
	} else {
		rc.accepted[id]++
	}
	rc.mu.Unlock()
	rc.signal()
	if hold {
		select {
		case <-rc.release:
		case <-r.Context().Done():
		}
		// The sender is gone by now; this answer reaches no one.
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestKillNineMidDeliveryAndRestart runs the real binary, kills it with
// SIGKILL while sends are in flight, restarts it and checks that every
// event reached the receiver, each accepted exactly once.
//
// The bound on duplicates: an event can reach the receiver twice only if a
// send of it was in flight — sent, but not answered — when the process
// died. The restarted notifier finds that event's delivery record still
// "sending", sees JetStream redeliver the very same message, and sends it
// again with the same webhook-id, so a receiver that deduplicates on
// webhook-id (as Standard Webhooks asks) processes it once. Every other
// event is delivered exactly once.
func TestKillNineMidDeliveryAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the notifier binary")
	}
	bin := buildNotifier(t)
	srv, _, js := startNATS(t)
	rc := &crashReceiver{k: 15, seen: map[string]int{}, accepted: map[string]int{}, held: map[string]bool{},
		release: make(chan struct{}), changed: make(chan struct{}, 1)}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	defer func() {
		select {
		case <-rc.release:
		default:
			close(rc.release)
		}
	}()
	const concurrency = 4
	cfg := writeFile(t, "n.yaml", fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: %q, secret_env: HOOK_SECRET, timeout: 4s}
default: {channels: [hook]}
delivery: {ack_wait: 5s, retry_initial: 100ms, retry_max: 1s, concurrency: %d}
`, hook.URL, concurrency))
	env := []string{"HOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}

	first := startChild(t, bin, cfg, srv.ClientURL(), env)
	var all []events.Envelope
	for i := range 40 {
		ev := quantityEvent(t, fmt.Sprintf("c%d", i%7), i, 1)
		all = append(all, ev)
		publish(t, js, ev)
	}

	// Wait until the first k deliveries are recorded durably (so no send that got
	// an answer is left unrecorded) and at least one send is held open.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, notify.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	recorded := map[string]bool{}
	for {
		rc.mu.Lock()
		held := len(rc.held)
		rc.mu.Unlock()
		if len(recorded) >= rc.k && held >= 1 {
			break
		}
		select {
		case u := <-watch.Updates():
			// Delivered batches: {"keys":["hook.<event id>",...]}.
			var b struct{ Keys []string }
			if u != nil && json.Unmarshal(u.Value(), &b) == nil {
				for _, k := range b.Keys {
					recorded[k] = true
				}
			}
		case <-rc.changed:
		case <-ctx.Done():
			t.Fatalf("waiting for deliveries and a held send: %d recorded\n%s", len(recorded), first.logs.String())
		}
	}

	// kill -9 with sends in flight.
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	rc.mu.Lock()
	rc.afterKill = true
	inFlight := map[string]bool{}
	for id := range rc.held {
		inFlight[id] = true
	}
	rc.mu.Unlock()
	close(rc.release)

	// Events published while the notifier is down.
	for i := range 10 {
		ev := quantityEvent(t, "late", 100+i, 1)
		all = append(all, ev)
		publish(t, js, ev)
	}

	second := startChild(t, bin, cfg, srv.ClientURL(), env)
	for {
		rc.mu.Lock()
		n := 0
		for _, ev := range all {
			if rc.accepted[ev.ID] > 0 {
				n++
			}
		}
		rc.mu.Unlock()
		if n == len(all) {
			break
		}
		select {
		case <-rc.changed:
		case <-ctx.Done():
			t.Fatalf("only %d of %d events delivered after the restart\n%s", n, len(all), second.logs.String())
		}
	}
	// A clean shutdown: SIGTERM, exit 0.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, second.logs.String())
	}

	if testing.Verbose() {
		for _, l := range strings.Split(second.logs.String(), "\n") {
			if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
				t.Log(l)
			}
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var dups []string
	for _, ev := range all {
		if rc.accepted[ev.ID] != 1 {
			t.Errorf("event %s accepted %d times", ev.ID, rc.accepted[ev.ID])
		}
		if rc.seen[ev.ID] > 1 {
			dups = append(dups, ev.ID)
			if !inFlight[ev.ID] {
				t.Errorf("event %s reached the receiver %d times but was not in flight at the kill", ev.ID, rc.seen[ev.ID])
			}
		}
	}
	if len(rc.seen) != len(all) {
		t.Errorf("the receiver saw %d distinct ids, want %d", len(rc.seen), len(all))
	}
	if len(rc.mismatch) > 0 {
		t.Errorf("requests whose body id differs from webhook-id: %v", rc.mismatch)
	}
	sort.Strings(dups)
	t.Logf("%d events; %d sends in flight at the kill; %d events reached the receiver twice (same webhook-id), all of them in flight at the kill",
		len(all), len(inFlight), len(dups))
	if len(dups) > len(inFlight) {
		t.Errorf("%d duplicates for %d sends in flight", len(dups), len(inFlight))
	}
}
