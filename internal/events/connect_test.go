package events_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/secret"
	"github.com/pcwatch/pcwatch/internal/state"
)

// syncBuffer is a log sink tests can read while handlers write to it, and
// that signals each line containing watch.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	watch string
	hit   chan struct{}
}

func newLogSink(watch string) *syncBuffer {
	return &syncBuffer{watch: watch, hit: make(chan struct{}, 100)}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watch != "" && bytes.Contains(p, []byte(s.watch)) {
		select {
		case s.hit <- struct{}{}:
		default:
		}
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noSecrets fails if text holds any of the secrets in any encoding.
func noSecrets(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, enc := range secret.Encodings(s) {
			if strings.Contains(text, enc) {
				t.Errorf("%s holds the secret %q (as %q): %s", what, s, enc, text)
			}
		}
	}
}

func authServer(t *testing.T, port int, user, pass, token string) *server.Server {
	return startServer(t, func(o *server.Options) {
		o.Username, o.Password, o.Authorization = user, pass, token
		if port > 0 {
			o.Port = port
		}
	})
}

// TestAuthRefusedAtConnect: a server refusing the credentials used to
// leave a connection retrying in silence, whose publishes failed with
// "outbound buffer limit exceeded". Now Connect says the server refused
// them, names the auth mode, and holds no secret.
func TestAuthRefusedAtConnect(t *testing.T) {
	const pass, token = "s3cret-pa/ss@word", "t0ken-abcdef"
	userSrv := authServer(t, 0, "svc", pass, "")
	tokenSrv := authServer(t, 0, "", "", token)
	host := func(s *server.Server) string { return strings.TrimPrefix(s.ClientURL(), "nats://") }
	for _, tc := range []struct {
		name     string
		o        events.NATSOptions
		wantAuth string // in the error; "" means the connection succeeds
	}{
		{"right user and password", events.NATSOptions{URL: userSrv.ClientURL(), User: "svc", Password: pass}, ""},
		{"wrong password", events.NATSOptions{URL: userSrv.ClientURL(), User: "svc", Password: pass + "x"}, `auth user "svc" and password`},
		{"no credentials", events.NATSOptions{URL: userSrv.ClientURL()}, "auth none"},
		{"wrong password in the URL", events.NATSOptions{URL: "nats://svc:" + "wr%2Fong-" + "pa%40ss@" + host(userSrv)}, `user "svc" and password in the URL`},
		{"right token", events.NATSOptions{URL: tokenSrv.ClientURL(), Token: token}, ""},
		{"wrong token", events.NATSOptions{URL: tokenSrv.ClientURL(), Token: token + "x"}, "auth token"},
		{"wrong token in the URL", events.NATSOptions{URL: "nats://" + token + "x@" + host(tokenSrv)}, "token in the URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := newLogSink("")
			tc.o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			nc, err := events.Connect(tc.o)
			if tc.wantAuth == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if !nc.IsConnected() {
					t.Fatalf("not connected: %v", nc.LastError())
				}
				return
			}
			var ae *events.AuthError
			if !errors.As(err, &ae) || !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("Connect = %v, want an *AuthError wrapping nats.ErrAuthorization", err)
			}
			msg := err.Error()
			for _, want := range []string{"refused the credentials", tc.wantAuth, "authorization violation"} {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(want)) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "outbound buffer") {
				t.Errorf("error %q still blames the buffer", msg)
			}
			noSecrets(t, "the error", msg, pass, pass+"x", token, token+"x", "wr/ong-pa@ss")
			noSecrets(t, "the log", logs.String(), pass, pass+"x", token, token+"x", "wr/ong-pa@ss")
		})
	}
}

// TestAuthRefusedAtReconnect: credentials that stop working while the
// watcher runs (the server's were rotated) are logged as a refusal, the
// relay's failure says why instead of "outbound buffer limit exceeded",
// and once the server accepts them again everything flows.
func TestAuthRefusedAtReconnect(t *testing.T) {
	const pass = "first-password"
	dir := t.TempDir()
	serve := func(port int, password string) *server.Server {
		return startServer(t, func(o *server.Options) {
			o.Port, o.StoreDir, o.Username, o.Password = port, dir, "svc", password
		})
	}
	srv := serve(-1, pass)
	port := srv.Addr().(*net.TCPAddr).Port
	logs := newLogSink("NATS refused the credentials")
	nc, err := events.Connect(events.NATSOptions{URL: srv.ClientURL(), User: "svc", Password: pass,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ensureStream(t, nc, events.StreamOptions{})
	st := openStore(t)
	failed := make(chan struct{}, 100)
	m := &countingMetrics{onFail: func() {
		select {
		case failed <- struct{}{}:
		default:
		}
	}}
	r := newRelay(t, nc, st, m)
	st.Commit(&state.Change{Events: []events.Envelope{quantityEvent(t, 1)}})
	flush(t, r)

	// The same port, the same store, another password.
	srv.Shutdown()
	srv.WaitForShutdown()
	rotated := serve(port, "rotated-password")
	<-logs.hit // the reconnect was refused, and logged as such
	if strings.Contains(logs.String(), pass) {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), `auth="user \"svc\" and password"`) {
		t.Errorf("the refusal is not an error naming the auth mode:\n%s", logs.String())
	}

	st.Commit(&state.Change{Events: []events.Envelope{quantityEvent(t, 2)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.Flush(ctx); done <- err }()
	<-failed
	cancel()
	<-done
	h := r.Health()
	if h.LastError == nil || !errors.Is(h.LastError, nats.ErrAuthorization) || !strings.Contains(strings.ToLower(h.LastError.Error()), "refused the credentials (nats: authorization violation)") {
		t.Errorf("relay error %v does not say the credentials were refused", h.LastError)
	}

	// The server accepts the credentials again: the connection, which
	// kept trying, recovers and the event goes out.
	rotated.Shutdown()
	rotated.WaitForShutdown()
	serve(port, pass)
	if n := flush(t, r); n != 1 {
		t.Errorf("published %d after the credentials were accepted again, want 1", n)
	}
}

// TestNATSDescriptions: String and Describe tell the auth mode in use and
// never a secret, whatever form the URL takes.
func TestNATSDescriptions(t *testing.T) {
	const pw = "p@ss/w:rd%"
	esc := "p%40ss%2Fw%3Ard%25"
	for _, tc := range []struct {
		name string
		o    events.NATSOptions
		want string
	}{
		{"none", events.NATSOptions{URL: "nats://h:4222"}, "NATS nats://h:4222 (auth none)"},
		{"user", events.NATSOptions{URL: "nats://h:4222", User: "svc", Password: pw}, `NATS nats://h:4222 (auth user "svc" and password)`},
		{"token", events.NATSOptions{URL: "h:4222", Token: pw}, "NATS nats://h:4222 (auth token)"},
		{"files", events.NATSOptions{URL: "tls://h:4222", CredsFile: "/c.creds", TLSCAFile: "/ca.pem", TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem"},
			"NATS tls://h:4222 (auth creds file /c.creds + TLS client certificate /c.pem, tls-ca /ca.pem)"},
		{"password in the URL", events.NATSOptions{URL: "nats://svc:" + esc + "@h:4222"}, `NATS nats://h:4222 (auth user "svc" and password in the URL)`},
		{"token in the URL", events.NATSOptions{URL: "nats://" + esc + "@h:4222"}, "NATS nats://h:4222 (auth token in the URL)"},
		{"several URLs", events.NATSOptions{URL: "nats://a:" + esc + "@h1:4222,nats://b:" + esc + "@h2:4222"}, `NATS nats://h1:4222,nats://h2:4222 (auth user "a" and password in the URL)`},
		{"raw password that breaks the URL", events.NATSOptions{URL: "nats://svc:" + pw + "@h:4222"}, "(a URL that does not parse)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.o.String()
			if !strings.Contains(got, tc.want) {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			noSecrets(t, "String()", got, pw, esc)
		})
	}

	srv := authServer(t, 0, "svc", pw, "")
	nc, err := events.Connect(events.NATSOptions{URL: srv.ClientURL(), User: "svc", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := events.Describe(nc); !strings.Contains(got, `auth user "svc" and password`) || !strings.HasPrefix(got, "NATS nats://127.0.0.1:") {
		t.Errorf("Describe = %q", got)
	}
	u := strings.Replace(srv.ClientURL(), "nats://", "nats://svc:"+esc+"@", 1)
	nc2, err := events.Connect(events.NATSOptions{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	got := events.Describe(nc2)
	if !strings.Contains(got, "password in the URL") {
		t.Errorf("Describe = %q", got)
	}
	noSecrets(t, "Describe", got, pw, esc)
}
