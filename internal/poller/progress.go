package poller

import (
	"context"
	"log/slog"
	"time"
)

// DefaultProgressInterval is how often a sweep still running logs its
// progress (Options.ProgressInterval).
const DefaultProgressInterval = 30 * time.Second

// Progress is where the running sweep stands, or the last one once it is
// done: what a large tenant's first sweep, which lists every customer
// before anything else, is watched by (the log, /api/progress).
type Progress struct {
	Cycle   uint64
	Running bool
	// StartedAt is the wall time the sweep's customers started (after the
	// customer list).
	StartedAt time.Time
	// Total is the number of customers of the sweep; NeverListed those
	// of them never listed completely before (all of them in a first
	// sweep), which go first, at once, as fast as the request budget lets.
	Total       int
	NeverListed int
	// Polled are the customers done (OK + Failed).
	Polled, OK, Failed int
	// At is when this was read (wall time).
	At time.Time
}

// Elapsed is the wall time since the sweep's customers started (until At).
func (p Progress) Elapsed() time.Duration {
	if p.StartedAt.IsZero() {
		return 0
	}
	return p.At.Sub(p.StartedAt)
}

// ETA is the time left at the sweep's pace so far: the elapsed time per
// customer polled, times the customers left. ok is false when nothing is
// polled yet (no pace to go by) or the sweep is not running. A paced
// sweep (--sweep spread) spreads the customers listed before over its
// interval on purpose, so its ETA is the spread's end, not a slowness.
func (p Progress) ETA() (time.Duration, bool) {
	if !p.Running || p.Polled == 0 || p.Total <= p.Polled {
		return 0, p.Running && p.Total > 0 && p.Total <= p.Polled
	}
	per := p.Elapsed() / time.Duration(p.Polled)
	return per * time.Duration(p.Total-p.Polled), true
}

// Progress returns where the running sweep stands (or the last one).
func (p *Poller) Progress() Progress {
	p.progMu.Lock()
	pr := p.prog
	p.progMu.Unlock()
	pr.At = time.Now()
	return pr
}

func (p *Poller) progressStart(cycle uint64, total, never int) {
	p.progMu.Lock()
	p.prog = Progress{Cycle: cycle, Running: true, StartedAt: time.Now(), Total: total, NeverListed: never}
	p.progMu.Unlock()
}

func (p *Poller) progressPolled(ok bool) {
	p.progMu.Lock()
	p.prog.Polled++
	if ok {
		p.prog.OK++
	} else {
		p.prog.Failed++
	}
	p.progMu.Unlock()
}

func (p *Poller) progressDone() {
	p.progMu.Lock()
	p.prog.Running = false
	p.progMu.Unlock()
}

// logProgress logs the running sweep's progress every interval until
// done is closed. A sweep shorter than the interval logs nothing.
func (p *Poller) logProgress(ctx context.Context, interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			p.log.LogAttrs(ctx, slog.LevelInfo, "poll cycle progress", p.Progress().Attrs()...)
		}
	}
}

// Attrs are the progress's log attributes.
func (p Progress) Attrs() []slog.Attr {
	a := []slog.Attr{slog.Uint64("cycle", p.Cycle), slog.Int("polled", p.Polled), slog.Int("total", p.Total),
		slog.Int("failed", p.Failed), slog.Int("never_listed", p.NeverListed),
		slog.Duration("elapsed", p.Elapsed().Round(time.Second))}
	if eta, ok := p.ETA(); ok {
		a = append(a, slog.Duration("eta", eta.Round(time.Second)))
	}
	return a
}
