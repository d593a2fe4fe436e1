package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/stream"
)

const testTimeout = 60 * time.Second

var exampleEnv = map[string]string{
	"PCWATCH_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	"PCWATCH_WEBHOOK_URL":    "https://hooks.example.net/pcwatch/T0KEN-IN-PATH",
	"SLACK_WEBHOOK_URL":      "https://hooks.slack.com/services/T000/B000/XXXX",
	"TEAMS_WORKFLOW_URL":     "https://prod-01.westeurope.logic.azure.com/workflows/abc?sig=x",
	"SMTP_PASSWORD":          "hunter2",
}

func envFunc(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCheckAcceptsTheExample(t *testing.T) {
	for k, v := range exampleEnv {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check", "--config", "../../deploy/notifier.example.yaml"}, &out, &errOut, os.Getenv)
	if code != 0 || out.String() != "config OK: 5 channels, 8 routes\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

// The demo configuration the watcher's demo points to needs no secret.
func TestCheckAcceptsTheDemoConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check", "--config", "../../deploy/notifier.demo.yaml"}, &out, &errOut, func(string) string { return "" })
	if code != 0 || out.String() != "config OK: 1 channel, 2 routes\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadFlagsAndConfigExit2WithOneLine(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "channels:\n  hook: {kind: webhook, url: \"https://e.com\"}\nroutes:\n  - channels: [hook, teams]\n")
	good := writeFile(t, "good.yaml", "channels:\n  hook: {kind: webhook, url: \"https://e.com\"}\ndefault: {channels: [hook]}\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"serve"}, `unknown command "serve"`},
		{[]string{"run"}, "--config is required"},
		{[]string{"run", "--config", good, "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"run", "--config", good, "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"run", "--config", good, "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"run", "--config", bad}, `bad.yaml:4: routes[0].channels[1]: no channel named "teams" (defined: hook)`},
		{[]string{"check", "--config", "/nonexistent/n.yaml"}, "/nonexistent/n.yaml: cannot read the configuration: no such file or directory"},
		{[]string{"check", "--config", bad}, `routes[0].channels[1]: no channel named "teams"`},
		{[]string{"check", "--config", good, "extra"}, `unexpected argument "extra"`},
		{[]string{"dlq"}, "dlq: want a subcommand"},
		{[]string{"dlq", "purge"}, `dlq: unknown subcommand "purge"`},
		{[]string{"dlq", "list", "--format", "xml"}, `--format "xml": want table or json`},
		{[]string{"dlq", "replay"}, "--config is required"},
		{[]string{"test", "--config", good}, "test: --channel is required"},
		{[]string{"test", "--config", good, "--channel", "nope"}, `test: --channel "nope" is not in`},
		{[]string{"test", "--config", good, "--channel", "hook", "--type", "subscription.teleported"}, `--type "subscription.teleported" is not an event type`},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut, envFunc(nil))
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", tc.args, code, errOut.String())
		}
		if s := errOut.String(); strings.Count(s, "\n") != 1 || !strings.HasPrefix(s, "notifier: ") || !strings.Contains(s, tc.want) || out.Len() != 0 {
			t.Errorf("%v: stderr %q (want one line with %q), stdout %q", tc.args, s, tc.want, out.String())
		}
	}
}

func TestHelpExits0(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"run", "-h"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut, envFunc(nil)); code != 0 || !strings.Contains(errOut.String(), "dlq replay") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

func TestNATSOptionsFromFlagsAndEnv(t *testing.T) {
	env := envFunc(map[string]string{"PCWATCH_NATS_URL": "nats://env:4222", "PCWATCH_NATS_USER": "u", "PCWATCH_NATS_PASSWORD": "p",
		"PCWATCH_NATS_TOKEN": "tok", "PCWATCH_NATS_CREDS": "/c.creds", "PCWATCH_NATS_NKEY": "/k.nk",
		"PCWATCH_NATS_TLS_CA": "/ca.pem", "PCWATCH_NATS_TLS_CERT": "/c.pem", "PCWATCH_NATS_TLS_KEY": "/k.pem"})
	resolve := func(env func(string) string, args ...string) natsconn.Options {
		t.Helper()
		fs := newFlags("x")
		get := natsFlags(fs, env)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		o, err := get()
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := resolve(env); o.URL != "nats://env:4222" || o.User != "u" || o.Password != "p" || o.Token != "tok" || o.CredsFile != "/c.creds" || o.NKeySeedFile != "/k.nk" ||
		o.TLSCAFile != "/ca.pem" || o.TLSCertFile != "/c.pem" || o.TLSKeyFile != "/k.pem" || o.Name != "pcwatch-notifier" {
		t.Errorf("from env: %+v", o)
	}
	if o := resolve(env, "--nats-url", "nats://flag:4222"); o.URL != "nats://flag:4222" {
		t.Errorf("flag: %s", o.URL)
	}
	if o := resolve(env, "--nats-nkey", "/flag.nk", "--nats-creds", "/flag.creds"); o.NKeySeedFile != "/flag.nk" || o.CredsFile != "/flag.creds" {
		t.Errorf("--nats-nkey/--nats-creds over the environment: %+v", o)
	}
	if o := resolve(env, "--nats-tls-ca", "/f-ca.pem", "--nats-tls-cert", "/f-c.pem", "--nats-tls-key", "/f-k.pem"); o.TLSCAFile != "/f-ca.pem" || o.TLSCertFile != "/f-c.pem" || o.TLSKeyFile != "/f-k.pem" {
		t.Errorf("--nats-tls-* over the environment: %+v", o)
	}
	if o := resolve(envFunc(nil)); o.URL != "nats://127.0.0.1:4222" {
		t.Errorf("default: %s", o.URL)
	}
	// A credential that cannot be read is a usage error naming the
	// variable, before anything connects.
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"dlq", "list"}, &out, &errOut, envFunc(map[string]string{"PCWATCH_NATS_PASSWORD_FILE": "/nonexistent/pw"}))
	if code != 2 || !strings.Contains(errOut.String(), "PCWATCH_NATS_PASSWORD_FILE") {
		t.Errorf("unreadable PCWATCH_NATS_PASSWORD_FILE: exit %d, stderr %q", code, errOut.String())
	}
}

// Against the watcher's authenticated embedded server, the one-shot
// commands connect with --nats-nkey (or PCWATCH_NATS_NKEY) and the
// notifier's seed; without it they cannot.
func TestCommandsWithTheNotifierSeed(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: filepath.Join(t.TempDir(), natsembed.CredentialsDirName)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	seed := srv.Credentials().NotifierSeed
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"dlq", "list", "--nats-url", srv.ClientURL(), "--nats-nkey", seed}, nil},
		{"environment", []string{"dlq", "list"}, map[string]string{"PCWATCH_NATS_URL": srv.ClientURL(), "PCWATCH_NATS_NKEY": seed}},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), tc.args, &out, &errOut, envFunc(tc.env)); code != 0 || out.String() != "no dead-lettered events\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.name, code, out.String(), errOut.String())
		}
	}
	// Without it, the commands say the server refused the credentials and
	// how to give them, rather than that NATS cannot be reached; so does
	// run, instead of waiting forever.
	cfg := writeFile(t, "n.yaml", "channels:\n  hook: {kind: webhook, url_env: U}\ndefault: {channels: [hook]}\n")
	t.Setenv("U", "https://e.com")
	for _, args := range [][]string{
		{"dlq", "list", "--nats-url", srv.ClientURL()},
		{"run", "--config", cfg, "--nats-url", srv.ClientURL(), "--listen", "127.0.0.1:0"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut, envFunc(nil))
		if code != 1 || !strings.Contains(errOut.String(), "Authorization Violation") || !strings.Contains(errOut.String(), "--nats-nkey") || strings.Contains(errOut.String(), "cannot reach") {
			t.Errorf("%v without the seed: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

func TestRunRefusesBadHealthSettings(t *testing.T) {
	good := writeFile(t, "good.yaml", "channels:\n  hook: {kind: webhook, url_env: U}\ndefault: {channels: [hook]}\n")
	t.Setenv("U", "https://e.com")
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"run", "--config", good, "--allowed-hosts", "pcwatch:9465"}, nil, `allowed host "pcwatch:9465": not a host name or IP address`},
		{[]string{"run", "--config", good}, map[string]string{"PCWATCH_OPS_TOKEN": "a", "PCWATCH_OPS_TOKEN_FILE": "/x"}, "both PCWATCH_OPS_TOKEN and PCWATCH_OPS_TOKEN_FILE are set"},
		{[]string{"run", "--config", good}, map[string]string{"PCWATCH_OPS_TOKEN_FILE": "/nonexistent/tok"}, "PCWATCH_OPS_TOKEN_FILE"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut, envFunc(tc.env))
		if code != 2 || !strings.Contains(errOut.String(), tc.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v %v: exit %d, stderr %q, want one line with %q", tc.args, tc.env, code, errOut.String(), tc.want)
		}
	}
}

func TestTestCommand(t *testing.T) {
	var mu sync.Mutex
	status := http.StatusOK
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = r.Header.Clone()
		w.WriteHeader(status)
	}))
	defer srv.Close()
	cfg := writeFile(t, "n.yaml", "channels:\n  hook: {kind: webhook, url_env: HOOK_URL, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}\ndefault: {channels: [hook]}\n")
	t.Setenv("HOOK_URL", srv.URL+"/hooks/SECRETPATH")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"test", "--config", cfg, "--channel", "hook", "--type", "subscription.cancellation-window-closing"}, &out, &errOut, os.Getenv)
	if code != 0 || !strings.HasPrefix(out.String(), "sent sample subscription.cancellation-window-closing event ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	mu.Lock()
	if got.Get("Webhook-Signature") == "" || got.Get("X-Pcwatch-Event-Type") != "io.pcwatch.subscription.cancellation-window-closing" {
		t.Errorf("headers %v", got)
	}
	status = http.StatusInternalServerError
	mu.Unlock()
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), []string{"test", "--config", cfg, "--channel", "hook"}, &out, &errOut, os.Getenv)
	if code != 1 || !strings.Contains(errOut.String(), "HTTP 500") || strings.Contains(errOut.String(), "SECRETPATH") {
		t.Errorf("failing receiver: exit %d, stderr %q", code, errOut.String())
	}
}

// lineWatcher is an io.Writer that keeps what is written and signals when
// a line containing a wanted text arrives.
type lineWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
	once  sync.Once
}

func newLineWatcher(want string) *lineWatcher {
	return &lineWatcher{want: want, found: make(chan struct{})}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.found) })
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *lineWatcher) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.found:
	case <-time.After(testTimeout):
		t.Fatalf("%q never appeared in:\n%s", w.want, w.String())
	}
}

func startNATS(t *testing.T) (*natsembed.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.ClientURL())
	natstest.EnsureEvents(t, nc, stream.Options{})
	return srv, nc, natstest.JetStream(t, nc)
}

func quantityEvent(t *testing.T, c string, sub, rev int) events.Envelope {
	t.Helper()
	delta := -1
	d := &events.Data{CustomerID: c, CustomerName: "Customer " + c, SubscriptionID: fmt.Sprintf("sub-%d", sub), Revision: uint64(rev),
		Old: events.JSONValue(rev + 1), New: events.JSONValue(rev), Delta: &delta}
	env, _, err := events.New("https://pc.example", events.SubscriptionQuantityChanged,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/sub-%d", c, sub), Revision: uint64(rev)}, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func publish(t *testing.T, js jetstream.JetStream, env events.Envelope) {
	t.Helper()
	msg := nats.NewMsg(env.Subject)
	msg.Data = env.Body
	msg.Header.Set("Content-Type", events.ContentType)
	if _, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(env.ID)); err != nil {
		t.Fatal(err)
	}
}

func TestRunDLQListAndReplay(t *testing.T) {
	srv, nc, js := startNATS(t)
	var mu sync.Mutex
	broken := true
	accepted := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"unknown customer"}`)
			return
		}
		accepted[r.Header.Get("Webhook-Id")]++
	}))
	defer hook.Close()
	cfg := writeFile(t, "n.yaml", fmt.Sprintf("channels:\n  hook: {kind: webhook, url: %q}\ndefault: {channels: [hook]}\n", hook.URL))
	env := envFunc(map[string]string{"PCWATCH_NATS_URL": srv.ClientURL()})

	dlq, err := nc.SubscribeSync(notify.DLQSubjectPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	ctx, cancel := context.WithCancel(context.Background())
	logs := newLineWatcher(`"msg":"notifier ready"`)
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"run", "--config", cfg, "--listen", "127.0.0.1:0", "--log-format", "json"}, io.Discard, logs, env)
	}()
	logs.wait(t)

	ev1, ev2 := quantityEvent(t, "c1", 1, 1), quantityEvent(t, "c2", 2, 1)
	for _, ev := range []events.Envelope{ev1, ev2} {
		publish(t, js, ev)
		if _, err := dlq.NextMsg(testTimeout); err != nil {
			t.Fatalf("no dead-letter for %s: %v\n%s", ev.ID, err, logs.String())
		}
	}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"dlq", "list", "--format", "json"}, &out, &errOut, env); code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errOut.String())
	}
	var entries []map[string]any
	if err := json.Unmarshal(out.Bytes(), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("dlq list json: %v %s", err, out.String())
	}
	if e := entries[0]; e["eventId"] != ev1.ID || e["reason"] != "http_4xx" || e["status"] != 400.0 || e["channel"] != "hook" || e["customerId"] != "c1" {
		t.Errorf("entry %v", e)
	}
	out.Reset()
	if code := run(context.Background(), []string{"dlq", "list", "--channel", "hook", "--nats-url", srv.ClientURL()}, &out, &errOut, envFunc(nil)); code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errOut.String())
	}
	table := out.String()
	for _, want := range []string{"TIME", "CHANNEL", "TYPE", "EVENT ID", "CUSTOMER", "REASON", ev1.ID, "subscription.quantity-changed", "Customer c1 (c1)", "http_4xx 400, 1 attempts", "unknown customer"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	// Still broken: replay fails, exit 1, entries stay.
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"dlq", "replay", "--config", cfg, "--id", ev1.ID}, &out, &errOut, env); code != 1 || !strings.Contains(out.String(), "FAILED     hook "+ev1.ID) {
		t.Errorf("replay while broken: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"dlq", "replay", "--config", cfg, "--id", ev1.ID}, &out, &errOut, env); code != 0 || out.String() != "delivered  hook "+ev1.ID+" subscription.quantity-changed\n" {
		t.Errorf("replay: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"dlq", "replay", "--config", cfg, "--channel", "hook"}, &out, &errOut, env); code != 0 || !strings.Contains(out.String(), "delivered  hook "+ev2.ID) {
		t.Errorf("replay of the rest: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"dlq", "list"}, &out, &errOut, env); code != 0 || out.String() != "no dead-lettered events\n" {
		t.Errorf("list after replay: exit %d, %q", code, out.String())
	}
	mu.Lock()
	if accepted[ev1.ID] != 1 || accepted[ev2.ID] != 1 {
		t.Errorf("accepted %v", accepted)
	}
	mu.Unlock()

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("run exited %d after cancellation", code)
		}
	case <-time.After(testTimeout):
		t.Fatal("run did not stop")
	}
}

func TestOneShotCommandsNeedNATS(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	srv.Shutdown()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	code := run(ctx, []string{"dlq", "list", "--nats-url", url}, &out, &errOut, envFunc(nil))
	if code != 1 || !strings.Contains(errOut.String(), "cannot reach NATS "+url) {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

// silence add, list and expire, as the notifier identity on the watcher's
// embedded server (which provisions the bucket).
func TestSilenceCommands(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: filepath.Join(t.TempDir(), natsembed.CredentialsDirName)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	wc, err := notify.Dial(context.Background(), natsconn.Options{URL: srv.ClientURL(), NKeySeedFile: srv.Credentials().WatcherSeed})
	if err != nil {
		t.Fatal(err)
	}
	wjs, _ := jetstream.New(wc)
	if err := notify.Provision(context.Background(), wjs); err != nil {
		t.Fatal(err)
	}
	wc.Close()
	env := envFunc(map[string]string{"PCWATCH_NATS_URL": srv.ClientURL(), "PCWATCH_NATS_NKEY": srv.Credentials().NotifierSeed, "USER": "alice"})
	cmd := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut, env)
		return code, out.String(), errOut.String()
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"silence", "add", "--customer", "c1"}, "say until when"},
		{[]string{"silence", "add", "--duration", "2h"}, "no matcher"},
		{[]string{"silence", "add", "--customer", "c1", "--duration", "soon"}, `--duration "soon"`},
		{[]string{"silence", "add", "--customer", "c1", "--end", "tomorrow"}, "want RFC 3339"},
		{[]string{"silence", "expire"}, "want the silence id"},
		{[]string{"silence", "mute"}, `unknown subcommand "mute"`},
	} {
		if code, _, errOut := cmd(tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := cmd("silence", "add", "--type", "nope.*", "--duration", "1h"); code != 2 || !strings.Contains(errOut, "matches no event type") {
		t.Errorf("bad type: exit %d, %q", code, errOut)
	}
	code, out, errOut := cmd("silence", "add", "--customer", "c1", "--type", "subscription.*", "--duration", "7d", "--comment", "offboarding")
	if code != 0 || !strings.HasPrefix(out, "silence ") {
		t.Fatalf("add: exit %d, %q %q", code, out, errOut)
	}
	id := strings.Fields(out)[1]
	code, out, _ = cmd("silence", "list", "--format", "json")
	var l []notify.RuntimeSilence
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l) != 1 || l[0].ID != id || l[0].CreatedBy != "alice" ||
		l[0].Comment != "offboarding" || !slices.Equal(l[0].Match.Customers, []string{"c1"}) || l[0].EndsAt.Sub(l[0].StartsAt) != 7*24*time.Hour {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, out, _ := cmd("silence", "list"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "active") || !strings.Contains(out, "offboarding") {
		t.Errorf("table: %d %q", code, out)
	}
	if code, out, errOut := cmd("silence", "expire", id); code != 0 || !strings.Contains(out, "expired") {
		t.Fatalf("expire: %d %q %q", code, out, errOut)
	}
	if code, out, _ := cmd("silence", "list"); code != 0 || out != "no silences\n" {
		t.Errorf("after expire: %d %q", code, out)
	}
	if code, out, _ := cmd("silence", "list", "--all"); code != 0 || !strings.Contains(out, "expired") {
		t.Errorf("--all: %d %q", code, out)
	}
	if code, _, errOut := cmd("silence", "expire", id); code != 1 || !strings.Contains(errOut, "already ended") {
		t.Errorf("expire twice: %d %q", code, errOut)
	}
}
