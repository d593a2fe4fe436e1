package watcher

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pcwatch/pcwatch/internal/poller"
)

func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{
		{0, 54 * time.Second},
		{0.5, time.Minute},
		{0.75, 63 * time.Second},
		{0.9999999, 66 * time.Second},
	} {
		if got := jitter(time.Minute, tc.r).Round(time.Millisecond); got != tc.want {
			t.Errorf("jitter(1m, %g) = %s, want %s", tc.r, got, tc.want)
		}
	}
}

// The poll loop, on synctest's fake time: a cycle, then the interval with
// its jitter, measured from the end of the cycle; a failing cycle is
// recorded for /readyz and the next one comes on time; a cancellation
// during the wait ends the loop at once, and one during a cycle too.
func TestPollLoopTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval, cycleTook = time.Minute, 30 * time.Second
		draws := []float64{0, 0.5, 0.9999999}
		// The race detector does not count synctest.Wait as
		// synchronisation: what the loop writes is read under mu.
		var mu sync.Mutex
		var starts []time.Time
		nStarts := func() int { mu.Lock(); defer mu.Unlock(); return len(starts) }
		failing := errors.New("state file: disk on fire")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		h := &health{}
		var cycled []uint64
		l := &pollLoop{interval: interval, health: h, log: slog.New(slog.DiscardHandler),
			rnd:    func() float64 { d := draws[0]; draws = append(draws[1:], d); return d },
			cycled: func(r *poller.Report) { mu.Lock(); cycled = append(cycled, r.Number); mu.Unlock() },
			cycle: func(ctx context.Context) (*poller.Report, error) {
				mu.Lock()
				starts = append(starts, time.Now())
				n := len(starts)
				mu.Unlock()
				time.Sleep(cycleTook)
				if n == 2 {
					return nil, failing
				}
				return &poller.Report{Number: uint64(n), CustomerListOK: true}, nil
			}}
		done := make(chan error, 1)
		t0 := time.Now()
		go func() { done <- l.run(ctx) }()

		time.Sleep(cycleTook + 54*time.Second + cycleTook/2) // inside the second cycle
		synctest.Wait()
		if n := nStarts(); n != 2 {
			t.Fatalf("%d cycles started, want 2", n)
		}
		time.Sleep(cycleTook) // the second cycle failed
		synctest.Wait()
		h.mu.Lock()
		cerr := h.cycleErr
		h.mu.Unlock()
		if !errors.Is(cerr, failing) {
			t.Errorf("the failed cycle is not recorded for /readyz: %v", cerr)
		}
		// The failed cycle drew the middle value (the interval itself): the
		// third cycle starts a minute after its end; then the wait after
		// the third cycle (1.1 intervals) is under way.
		time.Sleep(100 * time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		want := []time.Duration{0, cycleTook + 54*time.Second, 2*cycleTook + 54*time.Second + time.Minute}
		if len(starts) != len(want) {
			t.Errorf("%d cycles started, want %d", len(starts), len(want))
		}
		for i, w := range want {
			if i >= len(starts) {
				t.Fatalf("only %d cycles: %v", len(starts), starts)
			}
			if got := starts[i].Sub(t0); got != w {
				t.Errorf("cycle %d started at +%s, want +%s", i+1, got, w)
			}
		}
		if len(cycled) != 2 || cycled[0] != 1 || cycled[1] != 3 {
			t.Errorf("Cycled called for %v, want cycles 1 and 3 (not the failed one)", cycled)
		}
		h.mu.Lock()
		cerr = h.cycleErr
		h.mu.Unlock()
		if cerr != nil {
			t.Errorf("a good cycle does not clear the failure: %v", cerr)
		}

		// Shutdown during the wait: at once, not at the next tick.
		synctest.Wait()
		stop := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v", err)
		}
		if took := time.Since(stop); took != 0 {
			t.Errorf("shutdown during the wait took %s", took)
		}
	})
}

// A cancellation during a cycle: the cycle's result is dropped (customers
// in flight were abandoned) and the loop ends without waiting.
func TestPollLoopShutdownDuringCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		h := &health{}
		var logs lockedBuffer
		called := false
		l := &pollLoop{interval: time.Hour, health: h, rnd: func() float64 { return 0.5 }, log: slog.New(slog.NewTextHandler(&logs, nil)),
			cycled: func(*poller.Report) { called = true },
			cycle: func(ctx context.Context) (*poller.Report, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}}
		time.AfterFunc(time.Minute, cancel)
		start := time.Now()
		if err := l.run(ctx); err != nil {
			t.Errorf("run = %v", err)
		}
		if took := time.Since(start); took != time.Minute {
			t.Errorf("run returned after %s, want at the cancellation", took)
		}
		if called || h.cycleErr != nil {
			t.Errorf("an abandoned cycle was recorded (Cycled %v, failure %v)", called, h.cycleErr)
		}
		if !strings.Contains(logs.String(), "customers in flight were abandoned") {
			t.Errorf("log: %s", logs.String())
		}
	})
}

// A paced loop (--sweep spread) measures the interval from each cycle's
// start: a 30s cycle is followed by the next one a (jittered) interval
// after it began; a cycle that overruns the interval is followed at once,
// and one that overruns --max-staleness is warned about.
func TestPacedPollLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Minute
		took := []time.Duration{30 * time.Second, 90 * time.Second, 3 * time.Minute, 10 * time.Second}
		var mu sync.Mutex
		var starts []time.Time
		var logs lockedBuffer
		ctx, cancel := context.WithCancel(context.Background())
		l := &pollLoop{interval: interval, paced: true, maxStaleness: 2 * time.Minute, health: &health{},
			rnd: func() float64 { return 0.5 }, log: slog.New(slog.NewTextHandler(&logs, nil)),
			cycle: func(ctx context.Context) (*poller.Report, error) {
				mu.Lock()
				n := len(starts)
				starts = append(starts, time.Now())
				mu.Unlock()
				if n >= len(took) {
					cancel()
					<-ctx.Done()
					return nil, ctx.Err()
				}
				time.Sleep(took[n])
				return &poller.Report{Number: uint64(n + 1), CustomerListOK: true, Customers: 7}, nil
			}}
		t0 := time.Now()
		if err := l.run(ctx); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, time.Minute, time.Minute + 90*time.Second, time.Minute + 90*time.Second + 3*time.Minute,
			time.Minute + 90*time.Second + 3*time.Minute + time.Minute}
		mu.Lock()
		defer mu.Unlock()
		if len(starts) != len(want) {
			t.Fatalf("%d cycles started, want %d", len(starts), len(want))
		}
		for i, w := range want {
			if got := starts[i].Sub(t0); got != w {
				t.Errorf("cycle %d started at +%s, want +%s", i+1, got, w)
			}
		}
		if n := strings.Count(logs.String(), "a sweep took longer than --max-staleness"); n != 1 {
			t.Errorf("warned %d times about a sweep over --max-staleness, want once (the 3-minute cycle):\n%s", n, logs.String())
		}
	})
}
