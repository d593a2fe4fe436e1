package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/opsguard"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runHealth runs the notifier with o's listen, token and hosts until it
// is ready; it returns the health address and the log.
func runHealth(t *testing.T, cfg *Config, o Options) (string, *logBuffer) {
	t.Helper()
	e := newEnv(t)
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan ReadyInfo, 1)
	done := make(chan error, 1)
	o.Config, o.NATS = cfg, natsconn.Options{URL: e.url}
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o.Ready = func(i ReadyInfo) { ready <- i }
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case i := <-ready:
		_, port, _ := net.SplitHostPort(i.Addr)
		return "127.0.0.1:" + port, logs
	case err := <-done:
		t.Fatalf("notifier: %v\n%s", err, logs)
	}
	return "", nil
}

func getHealth(t *testing.T, addr, path, host, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The health endpoint answers only its own names (before: any Host), and
// with a token /metrics needs it while the probes stay open.
func TestHealthEndpointHostCheckAndToken(t *testing.T) {
	rc := newReceiver(t, nil)
	cfg := mustConfig(t, "channels:\n  hook: {kind: webhook, url_env: U}\ndefault: {channels: [hook]}\nallowed_hosts: [from-config.svc]\n",
		map[string]string{"U": rc.URL})
	addr, logs := runHealth(t, cfg, Options{Listen: "127.0.0.1:0", OpsToken: "n0tifier-tok", AllowedHosts: []string{"from-flag.svc"}})
	for _, tc := range []struct {
		path, host, token string
		want              int
	}{
		{"/healthz", "evil.com", "", http.StatusMisdirectedRequest},
		{"/metrics", "evil.com", "n0tifier-tok", http.StatusMisdirectedRequest},
		{"/readyz", "evil.com:9465", "", http.StatusMisdirectedRequest},
		{"/healthz", "", "", http.StatusOK},
		{"/healthz", "localhost", "", http.StatusOK},
		{"/healthz", "from-config.svc", "", http.StatusOK},
		{"/healthz", "from-flag.svc:9465", "", http.StatusOK},
		{"/readyz", "", "", http.StatusOK},
		{"/metrics", "", "", http.StatusUnauthorized},
		{"/metrics", "", "wrong", http.StatusUnauthorized},
		{"/metrics", "", "n0tifier-tok", http.StatusOK},
	} {
		if code, body := getHealth(t, addr, tc.path, tc.host, tc.token); code != tc.want {
			t.Errorf("%s Host %q token %q: %d %.200q, want %d", tc.path, tc.host, tc.token, code, body, tc.want)
		}
	}
	if strings.Contains(logs.String(), "without a token") {
		t.Errorf("warned with a token on loopback:\n%s", logs)
	}
}

// A non-loopback listen address without a token, and every secret written
// inline in the configuration, are warned about at start, one line each.
func TestHealthStartWarnings(t *testing.T) {
	rc := newReceiver(t, nil)
	cfg := mustConfig(t, fmt.Sprintf("channels:\n  hook: {kind: webhook, url: %q, secret: inline-s3cret}\ndefault: {channels: [hook]}\n", rc.URL+"/T0KEN"), nil)
	addr, logs := runHealth(t, cfg, Options{Listen: "0.0.0.0:0"})
	out := logs.String()
	var listen, inline int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "without a token") && strings.Contains(l, "listen") && strings.Contains(l, opsguard.TokenEnv) {
			listen++
		}
		if strings.Contains(l, "is written inline") {
			inline++
		}
	}
	if listen != 1 || inline != 2 {
		t.Errorf("%d listen warnings (want 1), %d inline-secret warnings (want 2):\n%s", listen, inline, out)
	}
	if strings.Contains(out, "T0KEN") || strings.Contains(out, "inline-s3cret") {
		t.Errorf("a warning reveals a secret:\n%s", out)
	}
	// Bound to every interface, the Host check still holds.
	if code, _ := getHealth(t, addr, "/healthz", "evil.com", ""); code != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.com on 0.0.0.0: %d", code)
	}
	if code, _ := getHealth(t, addr, "/metrics", "", ""); code != http.StatusOK {
		t.Errorf("/metrics without a token configured: %d", code)
	}
}

// On the watcher's embedded server the notifier may not reconfigure the
// deliveries bucket the watcher created: a different dedupe_ttl is warned
// about and the bucket used as it is, rather than the notifier never
// getting ready.
func TestDedupeTTLOnTheEmbeddedServer(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir(), CredentialsDir: filepath.Join(t.TempDir(), "auth")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	wc, err := natsconn.Connect(natsconn.Options{URL: srv.ClientURL(), NKeySeedFile: srv.Credentials().WatcherSeed})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wjs := jsOf(t, wc)
	ensureEventStream(t, wjs)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := Provision(ctx, wjs); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	cfg := mustConfig(t, "channels:\n  hook: {kind: webhook, url_env: U}\ndefault: {channels: [hook]}\ndelivery: {dedupe_ttl: 72h}\n", map[string]string{"U": rc.URL})
	logs := &logBuffer{}
	nctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(nctx, Options{Config: cfg, Listen: "127.0.0.1:0", NATS: natsconn.Options{URL: srv.ClientURL(), NKeySeedFile: srv.Credentials().NotifierSeed},
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})), Ready: func(ReadyInfo) { close(ready) }})
	}()
	defer func() { stop(); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("notifier: %v", err)
	case <-ctx.Done():
		t.Fatalf("notifier not ready:\n%s", logs)
	}
	for _, b := range []string{DeliveriesBucket, ClaimsBucket} {
		if !strings.Contains(logs.String(), "could not be changed to delivery.dedupe_ttl") || !strings.Contains(logs.String(), "bucket="+b+" bucket_ttl=168h0m0s") {
			t.Errorf("no warning about the TTL of bucket %s:\n%s", b, logs)
		}
	}
}
