package budget

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
)

// order records the classes in the order the gate let them through.
type order struct {
	mu  sync.Mutex
	got []Class
	at  []time.Time
}

func (o *order) add(c Class) {
	o.mu.Lock()
	o.got = append(o.got, c)
	o.at = append(o.at, time.Now())
	o.mu.Unlock()
}

func (o *order) snapshot() ([]Class, []time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Class(nil), o.got...), append([]time.Time(nil), o.at...)
}

// With requests of every class waiting, the most urgent class goes first
// and arrival order holds within a class; the caller holding the turn when
// they arrived keeps its token.
func TestGateServesMostUrgentFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(rate.NewLimiter(1, 1), nil, nil) // one a second
		ctx := context.Background()
		if err := g.Wait(WithClass(ctx, Sweep)); err != nil { // spends the burst
			t.Fatal(err)
		}
		var o order
		var wg sync.WaitGroup
		start := func(c Class) {
			wg.Go(func() {
				if err := g.Wait(WithClass(ctx, c)); err != nil {
					t.Error(err)
				}
				o.add(c)
			})
			synctest.Wait() // queued (or holding the turn) before the next
		}
		start(Sweep) // takes the turn and sleeps for the next token
		start(Sweep)
		start(Hot)
		start(Sweep)
		start(Hint)
		start(Overdue)
		wg.Wait()
		got, at := o.snapshot()
		want := []Class{Sweep, Overdue, Hint, Hot, Sweep, Sweep}
		if len(got) != len(want) {
			t.Fatalf("granted %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("granted %v, want %v", got, want)
			}
		}
		for i := 1; i < len(at); i++ {
			if d := at[i].Sub(at[i-1]); d < time.Second {
				t.Errorf("grant %d came %s after the previous one, faster than the limiter's 1/s", i, d)
			}
		}
		s := g.Stats()
		if s.Granted[Sweep] != 4 || s.Granted[Hint] != 1 || s.Granted[Overdue] != 1 || s.Granted[Hot] != 1 {
			t.Errorf("granted per class %v", s.Granted)
		}
		if s.Waiting != [nClasses]int{} {
			t.Errorf("still waiting: %v", s.Waiting)
		}
	})
}

// Whatever the mix of classes and cancellations, the grants never exceed
// the limiter: in any window of length w at most burst + rate*w.
func TestGateNeverExceedsTheRate(t *testing.T) {
	for seed := range uint64(5) {
		synctest.Test(t, func(t *testing.T) {
			const perSec, burst = 5.0, 3
			g := New(rate.NewLimiter(perSec, burst), nil, nil)
			rnd := rand.New(rand.NewPCG(seed, 7))
			var o order
			var wg sync.WaitGroup
			for i := range 40 {
				c := Class(rnd.IntN(nClasses))
				delay := time.Duration(rnd.IntN(4000)) * time.Millisecond
				cancelAfter := time.Duration(0)
				if i%5 == 0 {
					cancelAfter = time.Duration(rnd.IntN(3000)) * time.Millisecond
				}
				wg.Go(func() {
					time.Sleep(delay)
					ctx := WithClass(context.Background(), c)
					if cancelAfter > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, cancelAfter)
						defer cancel()
					}
					err := g.Wait(ctx)
					switch {
					case err == nil:
						o.add(c)
					case !errors.Is(err, context.DeadlineExceeded):
						t.Error(err)
					}
				})
			}
			wg.Wait()
			_, at := o.snapshot()
			if len(at) < 30 {
				t.Fatalf("seed %d: only %d of 40 granted", seed, len(at))
			}
			for i := range at {
				for j := i; j < len(at); j++ {
					w := at[j].Sub(at[i]).Seconds()
					if n := j - i + 1; float64(n) > burst+perSec*w+1e-6 {
						t.Fatalf("seed %d: %d grants within %.3fs, over %d + %.0f/s", seed, n, w, burst, perSec)
					}
				}
			}
			if s := g.Stats(); s.Waiting != [nClasses]int{} {
				t.Errorf("seed %d: still waiting: %v", seed, s.Waiting)
			}
		})
	}
}

// A waiter whose context ends leaves the queue; one that ends while it
// holds the turn gives its token back and passes the turn on, so nobody
// behind it is stuck.
func TestGateCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(rate.NewLimiter(rate.Every(10*time.Second), 1), nil, nil)
		bg := context.Background()
		if err := g.Wait(bg); err != nil {
			t.Fatal(err)
		}
		holderCtx, cancelHolder := context.WithCancel(WithClass(bg, Sweep))
		queuedCtx, cancelQueued := context.WithCancel(WithClass(bg, Hint))
		errs := make(chan error, 3)
		var last time.Time
		go func() { errs <- g.Wait(holderCtx) }() // holds the turn, sleeping 10s
		synctest.Wait()
		go func() { errs <- g.Wait(queuedCtx) }()
		synctest.Wait()
		go func() { err := g.Wait(WithClass(bg, Sweep)); last = time.Now(); errs <- err }()
		synctest.Wait()
		t0 := time.Now()
		cancelQueued()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("queued waiter: %v, want canceled", err)
		}
		cancelHolder()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("turn holder: %v, want canceled", err)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		// The holder's reserved token went back: the last waiter got the
		// token due 10s after the first grant, not a second one later.
		if d := last.Sub(t0); d != 10*time.Second {
			t.Errorf("the waiter behind the cancelled ones waited %s, want 10s", d)
		}
		if s := g.Stats(); s.Waiting != [nClasses]int{} || s.Granted[Sweep] != 1 || s.Granted[Hint] != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestClassOf(t *testing.T) {
	if c := ClassOf(context.Background()); c != Hint {
		t.Errorf("unmarked context: %s, want hint", c)
	}
	for _, c := range Classes() {
		if got := ClassOf(WithClass(context.Background(), c)); got != c {
			t.Errorf("ClassOf(WithClass(%s)) = %s", c, got)
		}
	}
	if s := Class(9).String(); s != "unknown" {
		t.Errorf("Class(9) = %q", s)
	}
	if err := New(rate.NewLimiter(1, 0), nil, nil).Wait(context.Background()); !errors.Is(err, ErrZeroBurst) {
		t.Errorf("zero burst: %v", err)
	}
}

// A flood of hints takes every token, but a sweep request whose promotion
// instant passes is served next, as overdue; one without a promotion
// waits for the flood to end.
func TestGatePromotionBeatsAFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(rate.NewLimiter(10, 1), nil, nil) // a token every 100ms
		ctx, stop := context.WithCancel(context.Background())
		var flood sync.WaitGroup
		for range 4 { // four hint callers, always waiting
			flood.Go(func() {
				for g.Wait(WithClass(ctx, Hint)) == nil {
				}
			})
		}
		synctest.Wait()
		t0 := time.Now()
		served := make(chan time.Duration, 2)
		go func() {
			_ = g.Wait(WithPromotion(WithClass(context.Background(), Sweep), t0.Add(5*time.Second)))
			served <- time.Since(t0)
		}()
		go func() {
			_ = g.Wait(WithClass(context.Background(), Sweep))
			served <- -time.Since(t0) // negative: the unpromoted one
		}()
		first := <-served
		if first < 5*time.Second || first > 5*time.Second+200*time.Millisecond {
			t.Errorf("the promoted sweep request was served at +%s, want just after +5s", first)
		}
		time.Sleep(time.Minute)
		select {
		case d := <-served:
			t.Errorf("an unpromoted sweep request was served during the flood, at +%s", -d)
		default:
		}
		stop()
		flood.Wait()
		if d := <-served; d > 0 {
			t.Errorf("wrong request last: %s", d)
		}
		if s := g.Stats(); s.Granted[Overdue] != 1 || s.Granted[Sweep] != 1 {
			t.Errorf("granted %v, want one overdue (the promoted one) and one sweep", s.Granted)
		}
	})
}
