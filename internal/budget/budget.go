// Package budget shares one Partner Center request budget between the
// watcher's kinds of work, most urgent first.
//
// Partner Center allows a tenant about 500 requests a minute; the watcher
// spends them on hinted refreshes (something said a customer changed), hot
// customers (a deadline is near, a renewal is due) and the sweep that lists
// every customer. A Gate hands out the rate limiter's tokens by Class: when
// requests of several classes wait, the most urgent class is served first,
// in arrival order within a class. The total never exceeds the limiter's
// rate, whatever the mix.
//
// The sweep is not starved: a customer the sweep has not listed for almost
// its staleness budget is fetched as Overdue, the most urgent class, so the
// budget goes to it before any hint; and a request already waiting is
// promoted to Overdue when the instant its context names passes
// (WithPromotion), so a flood of hints cannot hold a queued sweep request
// back past its customer's staleness budget (see internal/poller).
package budget

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// Class is how urgent a request is; a smaller value is served first.
type Class int

// The classes, most urgent first.
const (
	// Overdue: the sweep's listing of a customer whose staleness budget
	// is nearly spent, or that was never listed since the start.
	Overdue Class = iota
	// Hint: a refresh something asked for (the activity log, a webhook
	// callback, a deadline alert about to fire), and requests no class
	// was given to (commands, the activity log itself).
	Hint
	// Hot: a refresh of a customer with a deadline or a change near.
	Hot
	// Sweep: the regular listing of every customer.
	Sweep

	nClasses = int(Sweep) + 1
)

var classNames = [nClasses]string{"overdue", "hint", "hot", "sweep"}

// String names the class as the metrics label it ("overdue", "hint",
// "hot", "sweep").
func (c Class) String() string {
	if c < 0 || int(c) >= nClasses {
		return "unknown"
	}
	return classNames[c]
}

// Classes returns every class, most urgent first.
func Classes() []Class { return []Class{Overdue, Hint, Hot, Sweep} }

type classKey struct{}

// WithClass returns ctx marking the requests made with it as class c.
func WithClass(ctx context.Context, c Class) context.Context {
	return context.WithValue(ctx, classKey{}, c)
}

type promoteKey struct{}

// WithPromotion returns ctx marking its requests to be served as Overdue
// once at has passed (on the gate's clock), whatever their class.
func WithPromotion(ctx context.Context, at time.Time) context.Context {
	return context.WithValue(ctx, promoteKey{}, at)
}

func promotionOf(ctx context.Context) time.Time {
	at, _ := ctx.Value(promoteKey{}).(time.Time)
	return at
}

// Effective is the class ctx's requests are served as at now: Overdue
// once its promotion instant (WithPromotion) has passed, else ClassOf.
func Effective(ctx context.Context, now time.Time) Class {
	if at := promotionOf(ctx); !at.IsZero() && !now.Before(at) {
		return Overdue
	}
	return ClassOf(ctx)
}

// ClassOf returns the class ctx carries; Hint when it carries none.
func ClassOf(ctx context.Context) Class {
	if c, ok := ctx.Value(classKey{}).(Class); ok && c >= 0 && int(c) < nClasses {
		return c
	}
	return Hint
}

// ErrZeroBurst is returned by Wait when the limiter can never grant a
// request.
var ErrZeroBurst = errors.New("request budget: the rate limiter's burst is zero")

// Gate hands a rate limiter's tokens to waiting requests by class. It is
// safe for concurrent use. One waiter at a time (the one holding the turn)
// reserves the next token and sleeps until it is due, then passes the turn
// to the most urgent waiter; so a more urgent request that arrives waits at
// most one token's interval behind a less urgent one. The queues hold one
// entry per blocked caller, so they are bounded by the callers.
type Gate struct {
	lim   *rate.Limiter
	clk   clock.Clock
	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	held   bool // a caller holds the turn
	queues [nClasses][]*waiter

	granted [nClasses]atomic.Uint64
	waited  [nClasses]atomic.Int64 // nanoseconds
}

type waiter struct {
	turn    chan struct{} // closed when the turn is handed to this waiter
	promote time.Time     // served as Overdue from then on (zero: never)
	served  Class         // the class it was handed the turn as
}

// New returns a gate over lim. clk and sleep drive the waits (tests pass
// a fake clock and a sleep that advances it); nil means the wall clock and
// clock.Sleep.
func New(lim *rate.Limiter, clk clock.Clock, sleep func(context.Context, time.Duration) error) *Gate {
	if clk == nil {
		clk = clock.Real{}
	}
	if sleep == nil {
		sleep = clock.Sleep
	}
	return &Gate{lim: lim, clk: clk, sleep: sleep}
}

// Limiter returns the rate limiter the gate hands out.
func (g *Gate) Limiter() *rate.Limiter { return g.lim }

// Wait blocks until the request made with ctx may be sent: its class's
// turn has come (ClassOf(ctx)) and the limiter granted a token. It returns
// ctx's error when ctx ends first; the token, if reserved, is given back.
func (g *Gate) Wait(ctx context.Context) error {
	start := g.clk.Now()
	c := Effective(ctx, start)
	g.mu.Lock()
	if !g.held && g.empty() {
		g.held = true
		g.mu.Unlock()
	} else {
		w := &waiter{turn: make(chan struct{}), promote: promotionOf(ctx)}
		g.queues[c] = append(g.queues[c], w)
		g.mu.Unlock()
		select {
		case <-w.turn:
			c = w.served
		case <-ctx.Done():
			g.mu.Lock()
			if g.remove(c, w) {
				g.mu.Unlock()
				return ctx.Err()
			}
			// The turn was handed over as ctx ended: pass it on.
			g.mu.Unlock()
			g.pass()
			return ctx.Err()
		}
	}
	// This caller holds the turn.
	now := g.clk.Now()
	r := g.lim.ReserveN(now, 1)
	if !r.OK() {
		g.pass()
		return ErrZeroBurst
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := g.sleep(ctx, d); err != nil {
			r.CancelAt(g.clk.Now())
			g.pass()
			return err
		}
	}
	g.granted[c].Add(1)
	g.waited[c].Add(int64(g.clk.Now().Sub(start)))
	g.pass()
	return nil
}

// pass hands the turn to the most urgent waiter, or frees it: a waiter
// whose promotion instant has passed first (the earliest instant), then
// the head of the most urgent class.
func (g *Gate) pass() {
	now := g.clk.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	pc, pi := -1, -1
	for c := int(Overdue) + 1; c < nClasses; c++ {
		for i, w := range g.queues[c] {
			if !w.promote.IsZero() && !now.Before(w.promote) && (pc < 0 || w.promote.Before(g.queues[pc][pi].promote)) {
				pc, pi = c, i
			}
		}
	}
	if pc >= 0 && len(g.queues[Overdue]) == 0 {
		w := g.queues[pc][pi]
		g.queues[pc] = slices.Delete(g.queues[pc], pi, pi+1)
		w.served = Overdue
		close(w.turn)
		return
	}
	for c := range g.queues {
		if q := g.queues[c]; len(q) > 0 {
			w := q[0]
			q[0] = nil
			g.queues[c] = q[1:]
			w.served = Class(c)
			close(w.turn)
			return
		}
	}
	g.held = false
}

// remove takes w out of class c's queue; false when it is not there (the
// turn was handed to it). g.mu is held.
func (g *Gate) remove(c Class, w *waiter) bool {
	q := g.queues[c]
	for i, x := range q {
		if x == w {
			g.queues[c] = append(q[:i:i], q[i+1:]...)
			return true
		}
	}
	return false
}

func (g *Gate) empty() bool {
	for _, q := range g.queues {
		if len(q) > 0 {
			return false
		}
	}
	return true
}

// Stats are a gate's figures, indexed by Class.
type Stats struct {
	Granted [nClasses]uint64        // requests let through
	Waited  [nClasses]time.Duration // their total wait
	Waiting [nClasses]int           // callers waiting now
}

// Stats returns the gate's figures.
func (g *Gate) Stats() Stats {
	var s Stats
	g.mu.Lock()
	for c := range g.queues {
		s.Waiting[c] = len(g.queues[c])
	}
	g.mu.Unlock()
	for c := range s.Granted {
		s.Granted[c] = g.granted[c].Load()
		s.Waited[c] = time.Duration(g.waited[c].Load())
	}
	return s
}
