package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

var binary string

func TestMain(m *testing.M) {
	if os.Getenv("PCWATCH_SKIP_BINARY_TESTS") == "" {
		dir, err := os.MkdirTemp("", "watcher-bin-")
		if err != nil {
			panic(err)
		}
		binary = filepath.Join(dir, "watcher")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building watcher: %v\n%s", err, out)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	if binary == "" {
		t.Skip("binary tests disabled")
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func simServer(t *testing.T, customers int) (*pcsim.Sim, string) {
	sim := pcsim.New(pcsim.Options{Seed: 5, Customers: customers, Token: "tok"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func runArgs(url, dir string, extra ...string) []string {
	return append([]string{"run", "--once", "--pc-url", url, "--data-dir", dir, "--nats-port", "-1", "--listen", "", "--log-format", "json", "--retry-budget", "500ms", "--rate", "60000"}, extra...)
}

// streamIDs reads the stream the watcher left in its data directory.
func streamIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	srv := natstest.StartAt(t, filepath.Join(dir, "nats"), -1)
	defer srv.Shutdown()
	ids := map[string]int{}
	for _, m := range natstest.ReadStream(t, natstest.Connect(t, srv.ClientURL()), stream.Name) {
		ids[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return ids
}

func TestOnceExitCodes(t *testing.T) {
	sim, url := simServer(t, 15)
	tok := []string{"PCWATCH_PC_TOKEN=tok"}

	t.Run("success", func(t *testing.T) {
		dir := t.TempDir()
		r := runBin(t, tok, runArgs(url, dir)...)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		s := runBin(t, nil, "state", "--data-dir", dir, "--format", "json")
		var sum struct {
			Customers int `json:"customers"`
			Outbox    int `json:"outboxDepth"`
		}
		if s.code != 0 || json.Unmarshal([]byte(s.stdout), &sum) != nil || sum.Customers != 15 || sum.Outbox != 0 {
			t.Fatalf("watcher state: exit %d, %s %s", s.code, s.stdout, s.stderr)
		}
		d := runBin(t, nil, "deadlines", "--data-dir", dir)
		if d.code != 0 || !strings.Contains(d.stdout, "CLOSES AT") {
			t.Fatalf("watcher deadlines: exit %d\n%s%s", d.code, d.stdout, d.stderr)
		}
		if ids := streamIDs(t, dir); len(ids) == 0 {
			t.Error("no events published (at least the cycle summary is expected)")
		}
	})

	t.Run("partial failure", func(t *testing.T) {
		victim := sim.State().Customers[2].ID
		sim.Inject(pcsim.Rule{PathPrefix: "/v1/customers/" + victim + "/subscriptions", Status: 500, Times: 1 << 30})
		defer sim.ClearInjected()
		r := runBin(t, tok, runArgs(url, t.TempDir())...)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
		}
		want := fmt.Sprintf("customer %s (", victim)
		lines := 0
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.HasPrefix(l, "customer ") {
				lines++
				if !strings.HasPrefix(l, want) || !strings.Contains(l, "HTTP 500") {
					t.Errorf("failure line %q", l)
				}
			}
		}
		if lines != 1 {
			t.Errorf("%d failure lines, want exactly one:\n%s", lines, r.stderr)
		}
	})

	bad := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown flag", tok, []string{"run", "--once", "--nope"}, "flag provided but not defined: -nope"},
		{"bad duration", tok, []string{"run", "--interval", "15 minutes"}, "flag --interval: \"15 minutes\" is not a positive duration"},
		{"bad env duration", append(tok, "PCWATCH_INTERVAL=soon"), []string{"run"}, "environment PCWATCH_INTERVAL"},
		{"bad URL", tok, []string{"run", "--pc-url", "ftp://pc"}, "--pc-url \"ftp://pc\": want an absolute https URL"},
		{"bad cloud", tok, []string{"run", "--cloud", "mars"}, "unknown cloud \"mars\": want global, usgov or china"},
		{"bad resource", tok, []string{"run", "--resources", "subscriptions,invoices"}, "unknown resource \"invoices\""},
		{"missing credentials", nil, runArgs(url, t.TempDir()), "no Partner Center credentials"},
		{"unreachable Partner Center", tok, runArgs("http://127.0.0.1:9", t.TempDir()), "Partner Center API at http://127.0.0.1:9 is not usable"},
		{"refused token", []string{"PCWATCH_PC_TOKEN=wrong"}, runArgs(url, t.TempDir()), "HTTP 401"},
		{"unknown command", nil, []string{"serve"}, "unknown command \"serve\""},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			r := runBin(t, b.env, b.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, b.want) {
				t.Errorf("stderr does not say %q:\n%s", b.want, r.stderr)
			}
			if strings.Contains(r.stderr, "tok") && strings.Contains(r.stderr, "PCWATCH_PC_TOKEN=") {
				t.Error("stderr leaks the token")
			}
		})
	}

	t.Run("config file and precedence", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "watcher.yaml")
		os.WriteFile(cfg, []byte("pc_url: "+url+"\ndata_dir: "+dir+"\nnats_port: -1\nlisten: \"\"\ninterval: 5m\nconcurrency: nope\n"), 0o600)
		r := runBin(t, tok, "run", "--once", "--config", cfg)
		if r.code != 2 || !strings.Contains(r.stderr, "line 6: concurrency") {
			t.Fatalf("bad file value: exit %d\n%s", r.code, r.stderr)
		}
		os.WriteFile(cfg, []byte("pc_url: http://127.0.0.1:9\ndata_dir: "+dir+"\nnats_port: -1\nlisten: \"\"\nresources: [subscriptions, managedservices]\n"), 0o600)
		// The environment wins over the file, the flag over both.
		r = runBin(t, append(tok, "PCWATCH_PC_URL=http://127.0.0.1:8"), "run", "--once", "--config", cfg, "--pc-url", url, "--rate", "60000")
		if r.code != 0 {
			t.Fatalf("flag over env over file: exit %d\n%s", r.code, r.stderr)
		}
		os.WriteFile(cfg, []byte("pc_url: "+url+"\nintervall: 5m\n"), 0o600)
		r = runBin(t, tok, "run", "--once", "--config", cfg)
		if r.code != 2 || !strings.Contains(r.stderr, `line 2: unknown key "intervall"`) {
			t.Fatalf("unknown key: exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("locked state file", func(t *testing.T) {
		dir := t.TempDir()
		st, err := state.Open(filepath.Join(dir, state.FileName), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		r := runBin(t, tok, runArgs(url, dir)...)
		if r.code != 2 || !strings.Contains(r.stderr, "locked by another process") || !strings.Contains(r.stderr, dir) {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	})
}

// TestSIGTERMMidCycle stops a watcher in the middle of a slow cycle. It
// must exit cleanly, leave a consistent state file, and a later run must
// complete without storing any event twice.
func TestSIGTERMMidCycle(t *testing.T) {
	sim, url := simServer(t, 60)
	sim.SetFaults(pcsim.Faults{Latency: 30 * time.Millisecond})
	dir := t.TempDir()
	tok := []string{"PCWATCH_PC_TOKEN=tok"}
	// A first complete run, then changes, then a run interrupted mid-cycle.
	if r := runBin(t, tok, runArgs(url, dir, "--concurrency", "2")...); r.code != 0 {
		t.Fatalf("first run: %d\n%s", r.code, r.stderr)
	}
	sim.RandomMutations(60)
	cmd := exec.Command(binary, "run", "--pc-url", url, "--data-dir", dir, "--nats-port", "-1", "--listen", "", "--concurrency", "2", "--log-format", "json", "--rate", "60000")
	cmd.Env = append(os.Environ(), tok...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "watcher started") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	before := sim.Stats().Total
	for sim.Stats().Total < before+30 { // some customers polled, the cycle still running
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("watcher did not exit cleanly on SIGTERM: %v", err)
	}
	st, err := state.Open(filepath.Join(dir, state.FileName), state.Options{})
	if err != nil {
		t.Fatalf("state after SIGTERM: %v", err)
	}
	if err := st.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Subscriptions, func(k string, rec state.Record) error {
			raw, err := rec.JSON()
			if err != nil || state.HashOf(raw) != rec.Hash {
				return fmt.Errorf("record %s does not match its hash (%v)", k, err)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	sim.SetFaults(pcsim.Faults{})
	if r := runBin(t, tok, runArgs(url, dir)...); r.code != 0 {
		t.Fatalf("run after SIGTERM: %d\n%s", r.code, r.stderr)
	}
	for id, n := range streamIDs(t, dir) {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
}

// TestDemoShowsEvents runs `watcher demo` and expects event lines within
// 30 seconds (the promise of the README), then a clean exit on Ctrl-C.
func TestDemoShowsEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	if binary == "" {
		t.Skip("binary tests disabled")
	}
	cmd := exec.Command(binary, "demo", "--customers", "20")
	cmd.Env = os.Environ()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	var header []string
	events := 0
	for events < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited early; output:\n%s", strings.Join(header, "\n"))
			}
			if strings.Contains(l, " subscription.") || strings.Contains(l, " customer.") || strings.Contains(l, " managed-service.") {
				events++
			} else {
				header = append(header, l)
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no events within 30 seconds; output:\n%s", strings.Join(header, "\n"))
		}
	}
	if !strings.Contains(strings.Join(header, "\n"), "nats://127.0.0.1:") {
		t.Errorf("the demo did not say how to connect to NATS:\n%s", strings.Join(header, "\n"))
	}
	checkDemoNATS(t, strings.Join(header, "\n"))
	cmd.Process.Signal(os.Interrupt)
	go func() {
		for range lines {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo did not exit cleanly on Ctrl-C: %v", err)
	}
}

var demoConnectRE = regexp.MustCompile(`PCWATCH_NATS_URL=(nats://\S+) PCWATCH_NATS_NKEY=(\S+) go run ./cmd/notifier run`)

// checkDemoNATS follows the demo's connection instructions: the notifier
// command line it prints connects, and nothing else does. With the
// notifier's identity, a forged event is refused.
func checkDemoNATS(t *testing.T, header string) {
	t.Helper()
	m := demoConnectRE.FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("the demo did not print the notifier's command line with PCWATCH_NATS_NKEY:\n%s", header)
	}
	url, seed := m[1], m[2]
	if !strings.Contains(header, "nats --server "+url+" --nkey "+seed+" sub") {
		t.Errorf("the demo did not print the nats CLI line with --nkey:\n%s", header)
	}
	if _, err := nats.Connect(url, nats.NoReconnect()); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("connecting to the demo's NATS without credentials: %v, want an authorization violation", err)
	}
	nc, err := natsconn.Connect(natsconn.Options{URL: url, NKeySeedFile: seed, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("pcwatch.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(30 * time.Second); err != nil {
		t.Errorf("the notifier's identity reads no events: %v", err)
	}
	if err := nc.Publish("pcwatch.events.subscription.created.c1.forged", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("publishing a forged event with the notifier's identity: %v, want a permission violation", err)
	}
}

// With PCWATCH_OPS_TOKEN set, a running watcher's operations server gives
// `watcher state` its view only with the token, and answers no request
// that names another host (DNS rebinding).
func TestStateThroughTheGuardedOpsServer(t *testing.T) {
	if binary == "" {
		t.Skip("binary tests disabled")
	}
	_, url := simServer(t, 3)
	dir := t.TempDir()
	const token = "ops-T0KEN-7"
	cmd := exec.Command(binary, "run", "--pc-url", url, "--data-dir", dir, "--nats-port", "-1", "--listen", "127.0.0.1:0", "--log-format", "json", "--rate", "60000")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PCWATCH_PC_TOKEN=tok", "PCWATCH_OPS_TOKEN=" + token}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stderr)
	var listen string
	for listen == "" && sc.Scan() {
		var l struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "watcher started" {
			listen = l.Listen
		}
	}
	if listen == "" {
		t.Fatal("the watcher did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	r := runBin(t, nil, "state", "--data-dir", dir, "--listen", listen, "--format", "json")
	if r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "PCWATCH_OPS_TOKEN") {
		t.Errorf("watcher state without the token: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runBin(t, []string{"PCWATCH_OPS_TOKEN=" + token}, "state", "--data-dir", dir, "--listen", listen, "--format", "json")
	var sum struct {
		Customers int `json:"customers"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil {
		t.Errorf("watcher state with the token: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	req, _ := http.NewRequest("GET", "http://"+listen+"/api/state", nil)
	req.Host = "evil.com"
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("/api/state with Host evil.com: %s, want 421", resp.Status)
	}
}
