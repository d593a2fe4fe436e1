package notify

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsembed"
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
	wc, err := events.Connect(events.NATSOptions{URL: srv.ClientURL(), NKeySeedFile: srv.Credentials().WatcherSeed})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wjs := jsOf(t, wc)
	ensureEventStream(t, wjs)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := EnsureDLQ(ctx, wjs); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDeliveries(ctx, wjs, DefaultDedupeTTL); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	cfg := mustConfig(t, "channels:\n  hook: {kind: webhook, url_env: U}\ndefault: {channels: [hook]}\ndelivery: {dedupe_ttl: 72h}\n", map[string]string{"U": rc.URL})
	logs := &logBuffer{}
	nctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(nctx, Options{Config: cfg, Listen: "127.0.0.1:0", NATS: events.NATSOptions{URL: srv.ClientURL(), NKeySeedFile: srv.Credentials().NotifierSeed},
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
	if !strings.Contains(logs.String(), "the deliveries bucket could not be changed to delivery.dedupe_ttl") || !strings.Contains(logs.String(), "bucket_ttl=168h0m0s") {
		t.Errorf("no warning about the bucket's TTL:\n%s", logs)
	}
}
