package deadline

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// The Evaluator's Run loop is tested on synctest's fake time: its ticker is
// a real time.Ticker, which inside the bubble advances only when every
// goroutine waits, so the tests below assert exact instants without
// sleeping. Business time — which deadlines are due — stays on the
// injected clock (a clock.Fake), and the two are moved independently: a
// deadline that comes due on the business clock is noticed at the next
// tick, not before.

// primeStateCodec makes package state create its shared zstd codec
// outside any synctest bubble. The codec is made once per process and
// keeps channels; made inside one bubble, it could not be used from the
// next (a fatal "receive on synctest channel from outside bubble").
func primeStateCodec(t *testing.T) {
	t.Helper()
	st, _ := evalStore(t, filepath.Join(t.TempDir(), state.FileName), clock.NewFake(t0), Facts{Quantity: 1})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// tickClock is an Evaluator's business clock that notes, on synctest's
// clock, when each evaluation starts: EvaluateOnce reads the clock once,
// first. onRead, when set, is called with the number of the read (from 1).
type tickClock struct {
	*clock.Fake
	start  time.Time
	onRead func(n int)

	mu    sync.Mutex // the race detector does not count synctest.Wait as synchronisation
	reads []time.Duration
}

func (c *tickClock) Now() time.Time {
	c.mu.Lock()
	c.reads = append(c.reads, time.Since(c.start))
	n := len(c.reads)
	c.mu.Unlock()
	if c.onRead != nil {
		c.onRead(n)
	}
	return c.Fake.Now()
}

func (c *tickClock) evaluations() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads)
}

// logSink keeps the messages logged, by level.
type logSink struct {
	mu   sync.Mutex
	msgs []string
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, r.Level.String()+" "+r.Message)
	return nil
}

// count returns how often msg (level and message) was logged.
func (s *logSink) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func (s *logSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

const (
	logFailed  = "ERROR deadline evaluation failed; retrying at the next tick"
	logDamaged = "ERROR deadline evaluation skipped damaged records; every other subscription was evaluated"
)

// committedLog records the Committed callback's calls.
type committedLog struct {
	mu sync.Mutex
	ns []int
}

func (c *committedLog) add(n int) { c.mu.Lock(); c.ns = append(c.ns, n); c.mu.Unlock() }
func (c *committedLog) get() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ns)
}

// pendingCancelBy is when the cancellation window of runFixture's
// subscription closes: nothing is due at t0, its 72h threshold an hour
// later.
var pendingCancelBy = t0.Add(73 * time.Hour)

// pendingFacts are the facts of runFixture's subscription c1/s1.
var pendingFacts = Facts{NCE: true, Status: "active", Quantity: 10, AutoRenew: true, CancelBy: pendingCancelBy, CancelSeenOpen: pendingCancelBy, Term: "P1Y"}

// runFixture is an Evaluator ticking every runInterval on a real state
// file that holds subscription c1/s1 (pendingFacts), its business clock
// (biz) started at bizStart, its evaluations (tc), commits and logs
// recorded. It is made inside the bubble; the store closes with the test.
type runFixture struct {
	st        *state.Store
	ev        *Evaluator
	biz       *clock.Fake
	tc        *tickClock
	logs      *logSink
	committed *committedLog
}

const runInterval = time.Minute

func newRunFixture(t *testing.T, bizStart time.Time) *runFixture {
	t.Helper()
	x := &runFixture{biz: clock.NewFake(bizStart), logs: &logSink{}, committed: &committedLog{}}
	x.st, x.ev = evalStore(t, filepath.Join(t.TempDir(), state.FileName), x.biz, pendingFacts)
	t.Cleanup(func() { x.st.Close() })
	x.tc = &tickClock{Fake: x.biz}
	x.ev.Clock, x.ev.Interval, x.ev.Committed, x.ev.Logger = x.tc, runInterval, x.committed.add, slog.New(x.logs)
	return x
}

// run starts the Evaluator's Run, evaluations counted from now, and
// returns its result channel and the function that cancels it.
func (x *runFixture) run() (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	x.tc.start = time.Now()
	done := make(chan error, 1)
	go func() { done <- x.ev.Run(ctx) }()
	return done, cancel
}

func wantEvaluations(t *testing.T, tc *tickClock, want ...time.Duration) {
	t.Helper()
	if got := tc.evaluations(); !slices.Equal(got, want) {
		t.Errorf("evaluations at %v, want at %v", got, want)
	}
}

// Run evaluates at once, then every Interval; a deadline that comes due on
// the business clock fires at the next tick and only once; a cancellation
// during the wait ends Run at that instant.
func TestEvaluatorRunTicks(t *testing.T) {
	primeStateCodec(t)
	synctest.Test(t, func(t *testing.T) {
		const iv = runInterval
		cancelBy := pendingCancelBy
		x := newRunFixture(t, t0)
		st, biz, tc, logs, committed := x.st, x.biz, x.tc, x.logs, x.committed
		done, cancel := x.run()
		defer cancel()

		synctest.Wait()
		wantEvaluations(t, tc, 0)
		if c := committed.get(); len(c) != 0 {
			t.Fatalf("nothing is due at start, yet Committed(%v)", c)
		}

		// The 72h threshold comes due on the business clock; synctest's
		// clock has not reached the next tick.
		time.Sleep(iv / 2)
		biz.Set(cancelBy.Add(-72 * time.Hour))
		time.Sleep(iv/2 - time.Nanosecond)
		synctest.Wait()
		wantEvaluations(t, tc, 0)
		if c := committed.get(); len(c) != 0 {
			t.Fatalf("fired before the tick: Committed(%v)", c)
		}

		time.Sleep(iv/2 + time.Nanosecond) // the tick, and the commit after it
		synctest.Wait()
		wantEvaluations(t, tc, 0, iv)
		if c := committed.get(); !slices.Equal(c, []int{1}) {
			t.Fatalf("Committed(%v) after the tick, want one event", c)
		}

		// Further ticks keep their rhythm and fire nothing again.
		time.Sleep(2 * iv)
		synctest.Wait()
		wantEvaluations(t, tc, 0, iv, 2*iv, 3*iv)
		if c := committed.get(); !slices.Equal(c, []int{1}) {
			t.Errorf("Committed(%v), want the one event once", c)
		}
		if n := len(outbox(t, st)); n != 1 {
			t.Errorf("outbox holds %d events, want 1", n)
		}

		// Shutdown during the wait: at once, not at the next tick.
		stop := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after a cancellation", err)
		}
		if took := time.Since(stop); took != 0 {
			t.Errorf("shutdown during the wait took %s", took)
		}
		wantEvaluations(t, tc, 0, iv, 2*iv, 3*iv)
		if l := logs.all(); slices.Contains(l, logFailed) || slices.Contains(l, logDamaged) {
			t.Errorf("a clean run logged a failure: %q", l)
		}
	})
}

// A failing evaluation is logged and retried at the next tick; Run goes on.
// A damaged record is skipped while the others fire, and a repaired one is
// evaluated at the next tick; a store that cannot be read at all fails
// every tick, logged each time, until the watcher stops Run.
func TestEvaluatorRunSurvivesFailures(t *testing.T) {
	primeStateCodec(t)
	synctest.Test(t, func(t *testing.T) {
		const iv = runInterval
		x := newRunFixture(t, pendingCancelBy.Add(-72*time.Hour)) // c1/s1 is due
		st, tc, logs, committed := x.st, x.tc, x.logs, x.committed
		raw := []byte(`{"id":"s2","offerName":"Microsoft 365 E5","quantity":3,"status":"active"}`)
		put := func(meta []byte) {
			t.Helper()
			err := st.Commit(&state.Change{Puts: []state.Put{{Kind: resource.Subscriptions, Key: "c2/s2",
				Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: meta}}}})
			if err != nil {
				t.Fatal(err)
			}
		}
		put([]byte(`{"nce":tru`)) // facts that do not decode
		done, cancel := x.run()
		defer cancel()

		time.Sleep(iv + iv/2)
		synctest.Wait()
		wantEvaluations(t, tc, 0, iv)
		if n := logs.count(logDamaged); n != 2 {
			t.Errorf("the damaged record was reported %d times in two evaluations, want 2: %q", n, logs.all())
		}
		if c := committed.get(); !slices.Equal(c, []int{1}) {
			t.Errorf("Committed(%v): the sound subscription must fire despite the damaged one", c)
		}

		// The poller rewrites the record (here: the test, between ticks).
		put(pendingFacts.Encode())
		time.Sleep(iv)
		synctest.Wait()
		wantEvaluations(t, tc, 0, iv, 2*iv)
		if n := logs.count(logDamaged); n != 2 {
			t.Errorf("a repaired record is still reported damaged (%d reports)", n)
		}
		if c := committed.get(); !slices.Equal(c, []int{1, 1}) {
			t.Errorf("Committed(%v): the repaired subscription must fire at the next tick", c)
		}

		// The state file goes away: every tick fails, is logged, and Run
		// keeps its rhythm.
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * iv)
		synctest.Wait()
		wantEvaluations(t, tc, 0, iv, 2*iv, 3*iv, 4*iv, 5*iv)
		if n := logs.count(logFailed); n != 3 {
			t.Errorf("%d failures logged in three failing ticks, want 3: %q", n, logs.all())
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned after failed evaluations: %v", err)
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after failures and a cancellation, want nil", err)
		}
	})
}

// A cancellation that arrives while an evaluation runs ends Run when the
// evaluation returns, without waiting for the next tick; the abandoned
// evaluation commits nothing and logs no failure, and what it would have
// fired fires at the next start.
func TestEvaluatorRunShutdownDuringEvaluation(t *testing.T) {
	primeStateCodec(t)
	synctest.Test(t, func(t *testing.T) {
		const iv = runInterval
		x := newRunFixture(t, t0)
		st, ev, biz, tc, logs, committed := x.st, x.ev, x.biz, x.tc, x.logs, x.committed
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tc.onRead = func(n int) {
			if n == 2 {
				cancel() // the second evaluation has begun
			}
		}
		// Nothing is due at the first evaluation; by the second, the 72h
		// threshold is.
		time.AfterFunc(iv/2, func() { biz.Set(pendingCancelBy.Add(-72 * time.Hour)) })
		start := time.Now()
		tc.start = start

		if err := ev.Run(ctx); err != nil {
			t.Errorf("Run = %v, want nil after a cancellation", err)
		}
		if took := time.Since(start); took != iv {
			t.Errorf("Run returned after %s, want at the tick the cancellation came in (%s)", took, iv)
		}
		wantEvaluations(t, tc, 0, iv)
		if c := committed.get(); len(c) != 0 {
			t.Errorf("the abandoned evaluation committed: Committed(%v)", c)
		}
		if n := len(outbox(t, st)); n != 0 {
			t.Errorf("the abandoned evaluation left %d events in the outbox", n)
		}
		if l := logs.all(); slices.Contains(l, logFailed) || slices.Contains(l, logDamaged) {
			t.Errorf("a cancellation was logged as a failure: %q", l)
		}
		// Nothing was lost: the next start fires it.
		ev.Clock = biz
		if n, err := ev.EvaluateOnce(context.Background()); n != 1 || err != nil {
			t.Errorf("after the abandoned evaluation, EvaluateOnce = %d, %v; want the event", n, err)
		}
	})
}
