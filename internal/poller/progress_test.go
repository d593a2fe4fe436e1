package poller_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/poller"
)

// progressProbe reads the poller's progress each time a customer is done.
type progressProbe struct {
	p    *poller.Poller
	mu   sync.Mutex
	seen []poller.Progress
	// hold, when set, blocks the first customer's report until closed.
	hold chan struct{}
	once sync.Once
}

func (m *progressProbe) CustomerPolled(bool) {
	pr := m.p.Progress()
	m.mu.Lock()
	m.seen = append(m.seen, pr)
	m.mu.Unlock()
	if m.hold != nil {
		m.once.Do(func() { <-m.hold })
	}
}
func (m *progressProbe) EventsEmitted(events.Type, int)  {}
func (m *progressProbe) CycleCompleted(r *poller.Report) {}

// A first sweep counts every customer as never listed, and Progress grows
// one customer at a time to the total; the second sweep has none never
// listed; after a sweep Progress is not running and has no ETA.
func TestProgressCountsCustomers(t *testing.T) {
	e := newEnv(t, 12)
	probe := &progressProbe{}
	p := e.poller(func(o *poller.Options) { o.Metrics = probe })
	probe.p = p
	rep := e.cycle(p)
	if len(probe.seen) != rep.Customers || rep.Customers != 12 {
		t.Fatalf("%d progress reads for %d customers", len(probe.seen), rep.Customers)
	}
	polled := map[int]bool{}
	for _, pr := range probe.seen {
		if !pr.Running || pr.Total != 12 || pr.NeverListed != 12 || pr.Cycle != rep.Number || pr.Polled < 1 || pr.Polled > 12 {
			t.Errorf("during the first sweep: %+v", pr)
		}
		if _, ok := pr.ETA(); !ok {
			t.Errorf("no ETA with %d of %d polled", pr.Polled, pr.Total)
		}
		polled[pr.Polled] = true
	}
	if len(polled) != 12 {
		t.Errorf("polled counts seen: %v, want each of 1..12 once", polled)
	}
	done := p.Progress()
	if done.Running || done.Polled != 12 || done.OK != 12 || done.Failed != 0 {
		t.Errorf("after the sweep: %+v", done)
	}
	if _, ok := done.ETA(); ok {
		t.Error("a finished sweep has an ETA")
	}
	probe.seen = nil
	e.cycle(p)
	for _, pr := range probe.seen {
		if pr.NeverListed != 0 {
			t.Errorf("second sweep: %d never listed", pr.NeverListed)
		}
	}
}

// While a sweep runs longer than ProgressInterval, it logs its progress.
func TestProgressLogged(t *testing.T) {
	e := newEnv(t, 3)
	probe := &progressProbe{hold: make(chan struct{})}
	logged := make(chan string, 100)
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p := e.poller(func(o *poller.Options) {
		o.Metrics, o.ProgressInterval, o.Logger, o.Concurrency = probe, time.Millisecond, log, 1
	})
	probe.p = p
	buf.onWrite = func(line string) {
		// The first customer is done and held: the progress says 1 of 3.
		if strings.Contains(line, "poll cycle progress") && strings.Contains(line, "polled=1 ") {
			select {
			case logged <- line:
			default:
			}
		}
	}
	go func() {
		line := <-logged // the first customer is held until a progress line is out
		logged <- line
		close(probe.hold)
	}()
	if _, err := p.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := <-logged
	for _, want := range []string{"polled=1", "total=3", "never_listed=3", "eta="} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %s", line, want)
		}
	}
}

type syncBuf struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func(string)
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(string(p))
	}
	return s.b.Write(p)
}

func TestProgressETA(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pr := poller.Progress{Running: true, StartedAt: t0, At: t0.Add(10 * time.Minute), Total: 10000, Polled: 2500}
	if eta, ok := pr.ETA(); !ok || eta != 30*time.Minute {
		t.Errorf("ETA = %v, %v; want 30m", eta, ok)
	}
	pr.Polled = 0
	if _, ok := pr.ETA(); ok {
		t.Error("ETA with nothing polled")
	}
}
