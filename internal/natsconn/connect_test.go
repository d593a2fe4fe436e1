package natsconn_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/secret"
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

// startServer runs an in-process nats-server on a free port, its store in a
// temporary directory, with edit applied to its options.
func startServer(t testing.TB, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	if edit != nil {
		edit(o)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
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
		o        natsconn.Options
		wantAuth string // in the error; "" means the connection succeeds
	}{
		{"right user and password", natsconn.Options{URL: userSrv.ClientURL(), User: "svc", Password: pass}, ""},
		{"wrong password", natsconn.Options{URL: userSrv.ClientURL(), User: "svc", Password: pass + "x"}, `auth user "svc" and password`},
		{"no credentials", natsconn.Options{URL: userSrv.ClientURL()}, "auth none"},
		{"wrong password in the URL", natsconn.Options{URL: "nats://svc:" + "wr%2Fong-" + "pa%40ss@" + host(userSrv)}, `user "svc" and password in the URL`},
		{"right token", natsconn.Options{URL: tokenSrv.ClientURL(), Token: token}, ""},
		{"wrong token", natsconn.Options{URL: tokenSrv.ClientURL(), Token: token + "x"}, "auth token"},
		{"wrong token in the URL", natsconn.Options{URL: "nats://" + token + "x@" + host(tokenSrv)}, "token in the URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := newLogSink("")
			tc.o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			nc, err := natsconn.Connect(tc.o)
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
			var ae *natsconn.AuthError
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

// TestNATSDescriptions: String and Describe tell the auth mode in use and
// never a secret, whatever form the URL takes.
func TestNATSDescriptions(t *testing.T) {
	const pw = "p@ss/w:rd%"
	esc := "p%40ss%2Fw%3Ard%25"
	for _, tc := range []struct {
		name string
		o    natsconn.Options
		want string
	}{
		{"none", natsconn.Options{URL: "nats://h:4222"}, "NATS nats://h:4222 (auth none)"},
		{"user", natsconn.Options{URL: "nats://h:4222", User: "svc", Password: pw}, `NATS nats://h:4222 (auth user "svc" and password)`},
		{"token", natsconn.Options{URL: "h:4222", Token: pw}, "NATS nats://h:4222 (auth token)"},
		{"files", natsconn.Options{URL: "tls://h:4222", CredsFile: "/c.creds", TLSCAFile: "/ca.pem", TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem"},
			"NATS tls://h:4222 (auth creds file /c.creds + TLS client certificate /c.pem, tls-ca /ca.pem)"},
		{"password in the URL", natsconn.Options{URL: "nats://svc:" + esc + "@h:4222"}, `NATS nats://h:4222 (auth user "svc" and password in the URL)`},
		{"token in the URL", natsconn.Options{URL: "nats://" + esc + "@h:4222"}, "NATS nats://h:4222 (auth token in the URL)"},
		{"several URLs", natsconn.Options{URL: "nats://a:" + esc + "@h1:4222,nats://b:" + esc + "@h2:4222"}, `NATS nats://h1:4222,nats://h2:4222 (auth user "a" and password in the URL)`},
		{"raw password that breaks the URL", natsconn.Options{URL: "nats://svc:" + pw + "@h:4222"}, "(a URL that does not parse)"},
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
	nc, err := natsconn.Connect(natsconn.Options{URL: srv.ClientURL(), User: "svc", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := natsconn.Describe(nc); !strings.Contains(got, `auth user "svc" and password`) || !strings.HasPrefix(got, "NATS nats://127.0.0.1:") {
		t.Errorf("Describe = %q", got)
	}
	u := strings.Replace(srv.ClientURL(), "nats://", "nats://svc:"+esc+"@", 1)
	nc2, err := natsconn.Connect(natsconn.Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	got := natsconn.Describe(nc2)
	if !strings.Contains(got, "password in the URL") {
		t.Errorf("Describe = %q", got)
	}
	noSecrets(t, "Describe", got, pw, esc)
}
