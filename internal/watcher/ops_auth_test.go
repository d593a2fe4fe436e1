package watcher

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/secret"
	"github.com/pcwatch/pcwatch/internal/state"
)

// request asks the running operations server for path with the given Host
// header and bearer token ("" none) and returns the status and body.
func request(t *testing.T, addr, path, host, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
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

// The operations server answers only requests that name it in Host
// (before: /api/state with Host: evil.com answered 200, the DNS-rebinding
// hole), and with PCWATCH_OPS_TOKEN set, /metrics and /api/* need the
// token while /healthz and /readyz stay open for probes.
func TestOpsServerHostCheckAndToken(t *testing.T) {
	const token = "ops-T0KEN-42"
	t.Setenv(opsguard.TokenEnv, token)
	r := startWatcher(t, func(c *Config) { c.AllowedHosts = []string{"pcwatch.monitoring.svc"} })
	rt := <-r.rt
	r.waitCycle(t)
	_, port, _ := net.SplitHostPort(rt.Listen)
	for _, tc := range []struct {
		path, host, token string
		want              int
	}{
		{"/api/state", "evil.com", token, http.StatusMisdirectedRequest},
		{"/api/state", "evil.com:" + port, token, http.StatusMisdirectedRequest},
		{"/api/state", "127.0.0.1.evil.com:" + port, token, http.StatusMisdirectedRequest},
		{"/healthz", "evil.com:" + port, "", http.StatusMisdirectedRequest},
		{"/metrics", "localhost.evil.com", token, http.StatusMisdirectedRequest},
		{"/api/state", "", token, http.StatusOK}, // the bound address
		{"/api/state", "localhost:" + port, token, http.StatusOK},
		{"/api/state", "LOCALHOST", token, http.StatusOK},
		{"/api/deadlines", "127.0.0.1", token, http.StatusOK},
		{"/api/state", "[::1]:" + port, token, http.StatusOK},
		{"/api/state", "pcwatch.monitoring.svc:" + port, token, http.StatusOK},
		{"/api/state", "", "", http.StatusUnauthorized},
		{"/api/state", "", "wrong", http.StatusUnauthorized},
		{"/api/state", "", token + "x", http.StatusUnauthorized},
		{"/api/deadlines", "", "", http.StatusUnauthorized},
		{"/metrics", "", "", http.StatusUnauthorized},
		{"/metrics", "", token, http.StatusOK},
		{"/healthz", "", "", http.StatusOK},
		{"/readyz", "", "", http.StatusOK},
	} {
		code, body := request(t, rt.Listen, tc.path, tc.host, tc.token)
		if code != tc.want {
			t.Errorf("%s Host %q token %q: %d %.200q, want %d", tc.path, tc.host, tc.token, code, body, tc.want)
		}
		if code == http.StatusMisdirectedRequest && !strings.Contains(body, "not a name of this server") {
			t.Errorf("%s Host %q: reason %q", tc.path, tc.host, body)
		}
		if code == http.StatusUnauthorized && strings.Contains(body, token) {
			t.Errorf("the 401 answer repeats the token: %q", body)
		}
	}
}

// A failing /readyz tells its reasons to loopback callers and to callers
// with the token; another host without the token learns only the status.
func TestReadyzHidesDetailsFromStrangers(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nc := natstest.Connect(t, natstest.Start(t).ClientURL())
	// Started a day ago without a cycle: not ready.
	h := &health{store: st, nc: nc, interval: time.Minute, started: time.Now().Add(-24 * time.Hour), listFailures: 3}
	for _, tc := range []struct {
		name, token, remote, auth string
		details                   bool
	}{
		{"no token, remote", "", "10.1.2.3:40000", "", true},
		{"token, loopback", "t0k", "127.0.0.1:40000", "", true},
		{"token, remote with it", "t0k", "10.1.2.3:40000", "t0k", true},
		{"token, remote without it", "t0k", "10.1.2.3:40000", "", false},
		{"token, remote with a wrong one", "t0k", "[2001:db8::1]:40000", "nope", false},
	} {
		g, err := opsguard.New(opsguard.Options{Listen: "0.0.0.0:9464", Token: tc.token})
		if err != nil {
			t.Fatal(err)
		}
		hd := opsHandler(newMetrics(), h, st, deadline.DefaultConfig(), clock.Real{}, secret.New(), g)
		req := httptest.NewRequest("GET", "http://127.0.0.1:9464/readyz", nil)
		req.RemoteAddr = tc.remote
		if tc.auth != "" {
			req.Header.Set("Authorization", "Bearer "+tc.auth)
		}
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, req)
		body := w.Body.String()
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: /readyz %d, want 503", tc.name, w.Code)
		}
		if got := strings.Contains(body, "no poll cycle has completed"); got != tc.details {
			t.Errorf("%s: body %q, details shown %v, want %v", tc.name, body, got, tc.details)
		}
	}
}

// syncBuffer is a log sink tests read while the watcher writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runLogged runs the watcher on a simulator with listen and the given
// environment until it started, and returns its log and runtime.
func runLogged(t *testing.T, listen string, env map[string]string) (*syncBuffer, *Runtime) {
	t.Helper()
	sim := pcsim.New(pcsim.Options{Seed: 3, Customers: 2, Token: "tok"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c := Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen, c.Rate = srv.URL, t.TempDir(), -1, listen, 1e5
	logs := &syncBuffer{}
	started := make(chan *Runtime, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		done <- Run(ctx, Options{Config: c, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Getenv:      func(k string) string { return env[k] },
			TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}),
			Started:     func(rt *Runtime) { started <- rt }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case rt := <-started:
		return logs, rt
	case err := <-done:
		t.Fatalf("watcher stopped: %v\n%s", err, logs.String())
	}
	return nil, nil
}

// A non-loopback --listen without a token is warned about at start, in one
// line naming the flag and the fix; with a token, or on loopback, it is
// not. On a wildcard address the Host check still holds.
func TestListenWarning(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		env          map[string]string
		warn         bool
	}{
		{"wildcard without a token", "0.0.0.0:0", nil, true},
		{"wildcard with a token", "0.0.0.0:0", map[string]string{opsguard.TokenEnv: "t0k"}, false},
		{"loopback without a token", "127.0.0.1:0", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs, rt := runLogged(t, tc.listen, tc.env)
			var lines []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "without a token") {
					lines = append(lines, l)
				}
			}
			if tc.warn != (len(lines) == 1) || len(lines) > 1 {
				t.Fatalf("warning lines %q, want %v; log:\n%s", lines, tc.warn, logs.String())
			}
			if tc.warn && (!strings.Contains(lines[0], "--listen") || !strings.Contains(lines[0], opsguard.TokenEnv) || !strings.Contains(lines[0], "level=WARN")) {
				t.Errorf("warning %q does not name the flag and the fix", lines[0])
			}
			_, port, _ := net.SplitHostPort(rt.Listen)
			addr := "127.0.0.1:" + port
			if code, _ := request(t, addr, "/healthz", "evil.com", ""); code != http.StatusMisdirectedRequest {
				t.Errorf("Host evil.com on %s: %d, want 421", tc.listen, code)
			}
			if code, _ := request(t, addr, "/healthz", "", ""); code != http.StatusOK {
				t.Errorf("Host %s on %s: %d, want 200", addr, tc.listen, code)
			}
		})
	}
}

// A bad token setting stops the watcher at start with a configuration
// error naming the variables.
func TestBadOpsTokenRefused(t *testing.T) {
	c := Default()
	c.DataDir = t.TempDir()
	err := Run(context.Background(), Options{Config: c, Logger: slog.New(slog.DiscardHandler),
		Getenv: func(k string) string {
			return map[string]string{opsguard.TokenEnv: "a", opsguard.TokenFileEnv: "/x"}[k]
		}, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
	if _, ok := err.(*ConfigError); !ok || !strings.Contains(err.Error(), opsguard.TokenFileEnv) {
		t.Fatalf("Run: %v, want a ConfigError naming %s", err, opsguard.TokenFileEnv)
	}
}
