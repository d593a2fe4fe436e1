package demo

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/watcher"
)

// lines collects the demo's output and says when enough event lines came.
type lines struct {
	mu     sync.Mutex
	buf    strings.Builder
	events int
	want   int
	done   chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for _, s := range strings.Split(string(p), "\n") {
		if strings.Contains(s, " subscription.") || strings.Contains(s, " customer.") || strings.Contains(s, " managed-service.") {
			l.events++
			if l.events == l.want {
				close(l.done)
			}
		}
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestRunPrintsEvents embeds the tour as cmd/watcher does and expects its
// header, event lines from the simulator's changes, and a clean return
// when the context ends.
func TestRunPrintsEvents(t *testing.T) {
	out := &lines{want: 3, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *watcher.Runtime, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Customers: 5, Interval: 100 * time.Millisecond, MutateEvery: 50 * time.Millisecond,
			DataDir: t.TempDir(), NATSPort: -1, Listen: "127.0.0.1:0", Out: out,
			Started: func(rt *watcher.Runtime) { started <- rt }})
	}()
	bound := time.NewTimer(60 * time.Second) // a bound on a hang, not a measurement
	defer bound.Stop()
	select {
	case <-out.done:
	case err := <-done:
		t.Fatalf("Run returned %v before any event; output:\n%s", err, out)
	case <-bound.C:
		t.Fatalf("no %d event lines; output:\n%s", out.want, out)
	}
	rt := <-started
	header := out.String()
	for _, want := range []string{"pcwatch demo: 5 simulated customers", rt.NATSURL, "--nkey " + rt.NATSCredentials.NotifierSeed, "http://" + rt.Listen + "/metrics"} {
		if !strings.Contains(header, want) {
			t.Errorf("output lacks %q:\n%s", want, header)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if !strings.Contains(out.String(), "pcwatch demo stopped after ") {
		t.Errorf("no closing line:\n%s", out)
	}
}
