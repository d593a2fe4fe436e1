package demo

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/events"
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

// TestDemoFirstSightingsNotLate runs the tour and reads its deadline
// events: the watcher is never down, so none is late (issue 15: almost
// every line was [late], because deadlines first seen inside a threshold
// counted as late and the grace was not scaled to the calendar's speed).
// It waits for deadline events first seen inside their threshold (the
// first cycle sees every simulated subscription) and a few evaluations
// beyond (a simulated hour each).
func TestDemoFirstSightingsNotLate(t *testing.T) {
	out := &lines{want: -1, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	var deadlines []*events.Data
	var lines []string
	cycles := 0
	enough := make(chan struct{})
	check := func() {
		fsi := 0
		for _, d := range deadlines {
			if d.Timing == events.TimingFirstSeenInside {
				fsi++
			}
		}
		// 15 cycles: a few evaluations (a simulated hour each) after the
		// first sighting.
		if fsi > 0 && cycles >= 15 && enough != nil {
			close(enough)
			enough = nil
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Customers: 10, Interval: 100 * time.Millisecond, MutateEvery: 200 * time.Millisecond,
			DataDir: t.TempDir(), NATSPort: -1, Listen: "127.0.0.1:0", Out: out, Logger: slog.New(slog.DiscardHandler),
			Started: func(rt *watcher.Runtime) {
				_, err := rt.Conn.Subscribe("pcwatch.>", func(m *nats.Msg) {
					ev, err := events.Decode(m.Data)
					if err != nil {
						return
					}
					d, err := ev.DecodeData()
					if err != nil {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					switch {
					case ev.Type == events.OpsCycleCompleted:
						cycles++
					case d.Deadline != nil:
						deadlines = append(deadlines, d)
						lines = append(lines, FormatEvent(ev, d))
					}
					check()
				})
				if err != nil {
					t.Errorf("subscribing: %v", err)
				}
			}})
	}()
	bound := time.NewTimer(90 * time.Second) // a bound on a hang, not a measurement
	defer bound.Stop()
	mu.Lock()
	wait := enough
	mu.Unlock()
	select {
	case <-wait:
	case err := <-done:
		t.Fatalf("Run returned %v; output:\n%s", err, out)
	case <-bound.C:
		mu.Lock()
		t.Fatalf("after %d cycles, no deadline event first seen inside its threshold among %d:\n%s", cycles, len(deadlines), strings.Join(lines, "\n"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	byTiming := map[events.Timing]int{}
	for i, d := range deadlines {
		byTiming[d.Timing]++
		if !d.Timing.Valid() || d.Late == nil || *d.Late != (d.Timing == events.TimingLate) {
			t.Errorf("timing %q, late %v: %s", d.Timing, d.Late, lines[i])
		}
		if d.Timing == events.TimingLate || strings.Contains(lines[i], "[late]") || strings.Contains(lines[i], "LATE") {
			t.Errorf("late, though the demo's watcher is never down: %s", lines[i])
		}
		if d.Timing == events.TimingFirstSeenInside && !strings.Contains(lines[i], "(first seen inside") && !strings.Contains(lines[i], "(first seen just before)") {
			t.Errorf("the line does not say first seen inside: %s", lines[i])
		}
	}
	t.Logf("%d cycles, deadline events by timing: %v", cycles, byTiming)
}
