package relay_test

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
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
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
	nc, err := natsconn.Connect(natsconn.Options{URL: srv.ClientURL(), User: "svc", Password: pass,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ensureStream(t, nc, stream.Options{})
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
