package poller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// HintMetrics receives the figures of hinted refreshes; the poller's
// Metrics may implement it.
type HintMetrics interface {
	// HintRefreshed counts a refresh by result: "ok", "failed",
	// "unknown-customer".
	HintRefreshed(result string)
	// HintLatency observes, for a refresh that produced change events,
	// the time from the first coalesced hint to their commit.
	HintLatency(d time.Duration)
	// ChangesFound counts change events (not deadlines, not ops) by what
	// found them: "sweep", "hint" or "hot" (the hot refresher, RunHot).
	// Changes that only the sweep finds are the ones the change feed
	// missed.
	ChangesFound(by string, n int)
}

// customerLocks serialises the sweep's and the refreshes' work on one
// customer: both read the customer's snapshot and then commit a diff
// against it, and two such diffs interleaved would compare against a
// snapshot the other has replaced. One lock per customer in use (not
// stripes: a refresh must never wait for the sweep of another customer,
// whose requests may be waiting behind that very refresh in the request
// budget); entries go when unused, so the map is bounded by the work in
// flight. The wait is on a channel, which synctest sees as durable.
type customerLocks struct {
	mu sync.Mutex
	m  map[string]*customerLock
}

type customerLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters
}

func (l *customerLocks) lock(customerID string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*customerLock{}
	}
	e := l.m[customerID]
	if e == nil {
		e = &customerLock{ch: make(chan struct{}, 1)}
		l.m[customerID] = e
	}
	e.users++
	l.mu.Unlock()
	e.ch <- struct{}{}
	return func() {
		<-e.ch
		l.mu.Lock()
		if e.users--; e.users == 0 {
			delete(l.m, customerID)
		}
		l.mu.Unlock()
	}
}

// Refreshed is what one hinted refresh did.
type Refreshed struct {
	CustomerID string
	// Result: "ok", "failed" (Failure says why; the hint stays for a
	// retry) or "unknown-customer" (not one the watcher knows yet: the
	// sweep's customer list brings it; the hint is dropped).
	Result  string
	Events  int
	ByType  map[events.Type]int
	Latency time.Duration // FirstAt of the hint to the commit, when events resulted
	Failure *Failure
}

// Refresh reads one customer again now because h says it changed: its
// listings of every configured kind, diffed and committed exactly as in a
// sweep (a failed or partial listing is never read as removals), plus the
// subscriptions h names read by id for their refund windows. Events about
// an entity h names an actor for carry that actor (data.actor).
//
// A refresh never confirms a removal: an entity missing from it is marked
// pending (or stays pending) and only a sweep's listing removes it, so a
// listing read right after a change, while Partner Center may still be
// settling, cannot remove anything.
//
// On success the hint is marked done up to h.Seq (a hint merged meanwhile
// stays) and the customer's last complete listing is now. Refresh may be
// called concurrently with Cycle and with other refreshes: work on one
// customer is serialised. A crash leaves the hint in the state file, so the
// refresh runs again after a restart (it is idempotent: same listing, no
// new events).
func (p *Poller) Refresh(ctx context.Context, h state.Hint) (Refreshed, error) {
	return p.refresh(ctx, h, "hint")
}

// refresh is Refresh for a hint (by "hint": the stored hint is marked
// done, the hint metrics count it) or for the hot refresher (by "hot": h
// is not stored, its customer is only read again).
func (p *Poller) refresh(ctx context.Context, h state.Hint, by string) (Refreshed, error) {
	o := p.o
	stored := by == "hint"
	out := Refreshed{CustomerID: h.CustomerID, ByType: map[events.Type]int{}}
	var name string
	var known bool
	if err := o.Store.View(func(r *state.ReadTx) error {
		rec, ok, err := r.Get(resource.Customers, h.CustomerID)
		if err != nil || !ok {
			return err
		}
		known = true
		if raw, err := rec.JSON(); err == nil {
			name = resource.Customers.ViewOf(h.CustomerID, raw).CompanyName
		}
		return nil
	}); err != nil {
		return out, fmt.Errorf("refreshing customer %s: %w", h.CustomerID, err)
	}
	inScope := len(o.Customers) == 0 || slices.Contains(o.Customers, h.CustomerID)
	if !known || !inScope {
		out.Result = "unknown-customer"
		if !stored {
			return out, nil
		}
		p.hintMetric(out.Result)
		return out, o.Store.Commit(&state.Change{HintsDone: []state.HintDone{{CustomerID: h.CustomerID, Seq: h.Seq}}})
	}

	unlock := p.locks.lock(h.CustomerID)
	defer unlock()
	cycle, err := o.Store.Cycle()
	if err != nil {
		return out, err
	}
	dopts := o.Diff
	dopts.Now, dopts.Cycle, dopts.KeepPending = o.Clock.Now(), cycle, true
	if len(h.Actors) > 0 {
		dopts.Actor = func(k *resource.Kind, _, id string) *events.Actor {
			if a := h.Actors[id]; a != nil && k != resource.Customers {
				return a
			}
			if k == resource.Customers {
				return h.Actors[""]
			}
			return nil
		}
	}
	// No refund look-ups for the listing's other candidates: those are
	// the sweep's (within its budget). A refresh reads by id only the
	// subscriptions the hint names, below, so it costs the listings plus
	// one request per named subscription.
	var none atomic.Int64
	res, _, f, err := p.pollCustomer(ctx, target{id: h.CustomerID, name: name}, dopts, &none)
	if err != nil {
		return out, err
	}
	if res != nil {
		out.Events = res.Events()
		for t, n := range res.Counts {
			out.ByType[t] += n
		}
		// Observed before the relay is kicked: by the time the events
		// can be seen on NATS, the latency is counted.
		if out.Events > 0 && stored && !h.FirstAt.IsZero() {
			out.Latency = o.Clock.Now().Sub(h.FirstAt)
			if hm, ok := o.Metrics.(HintMetrics); ok {
				hm.HintLatency(out.Latency)
			}
		}
		p.counted(res, by, h.CustomerID)
	}
	if f != nil {
		out.Result, out.Failure = "failed", f
		if stored {
			p.hintMetric(out.Result)
		}
		return out, nil
	}
	// The subscriptions the hint named, by id: a seat change moves their
	// refund windows, which the listing does not carry.
	extra := h.Subscriptions
	if len(extra) > 0 && o.RefundFetchBudget > 0 && slices.Contains(o.Kinds, resource.Subscriptions) {
		var budget atomic.Int64
		budget.Store(int64(len(extra)))
		fetched, _, ferr := p.fetchRefunds(ctx, h.CustomerID, extra, &budget)
		if ferr == nil && len(fetched) > 0 {
			ferr = diff.CommitRefunds(o.Store, h.CustomerID, fetched, dopts.Now)
		}
		if ferr != nil {
			return out, ferr
		}
	}
	if stored {
		if err := o.Store.Commit(&state.Change{HintsDone: []state.HintDone{{CustomerID: h.CustomerID, Seq: h.Seq}}}); err != nil {
			return out, err
		}
	}
	if err := o.Store.SetLastOK(map[string]time.Time{h.CustomerID: dopts.Now}); err != nil {
		return out, err
	}
	p.noteListed(h.CustomerID, time.Now())
	out.Result = "ok"
	if stored {
		p.hintMetric(out.Result)
	}
	return out, nil
}

func (p *Poller) hintMetric(result string) {
	if hm, ok := p.o.Metrics.(HintMetrics); ok {
		hm.HintRefreshed(result)
	}
}

// counted reports a committed result's events to the metrics and kicks the
// relay; by says what found them ("sweep", "hint" or "hot"), customerID
// whose they are ("" for the customer list and ops events): a customer
// with change events is hot for a while (hot.go).
func (p *Poller) counted(res *diff.Result, by, customerID string) {
	if res == nil || res.Events() == 0 {
		return
	}
	changes := 0
	for t, n := range res.Counts {
		if p.o.Metrics != nil {
			p.o.Metrics.EventsEmitted(t, n)
		}
		if in, ok := events.Lookup(t); ok && in.Resource != events.ResourceOps && !in.Deadline {
			changes += n
		}
	}
	if changes > 0 {
		p.noteChanged(customerID, time.Now())
	}
	if hm, ok := p.o.Metrics.(HintMetrics); ok && changes > 0 {
		hm.ChangesFound(by, changes)
	}
	if p.o.Committed != nil {
		p.o.Committed()
	}
}

// each calls f for the items, in their order, at most n at once, until
// ctx ends (items not yet started are then skipped); it returns when every
// call started has returned.
func each[T any](ctx context.Context, n int, items []T, f func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range min(n, max(1, len(items))) {
		wg.Go(func() {
			for it := range work {
				f(it)
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}

// HintOptions configure RunHints.
type HintOptions struct {
	// Kick wakes the loop when a hint was stored (non-blocking sends).
	Kick <-chan struct{}
	// Every bounds the wait between two looks at the stored hints without
	// a kick (hints stored by another process, retries). Default 15s.
	Every time.Duration
	// Concurrency is how many customers are refreshed at once; default 4.
	// Refreshes share the client's rate limiter with the sweep.
	Concurrency int
	// RetryInitial and RetryMax bound the backoff of a customer whose
	// refresh failed; defaults 30s and 10m. Its hint stays stored.
	RetryInitial, RetryMax time.Duration
	// Refreshed is called after each refresh (tests, logs). Optional.
	Refreshed func(Refreshed)
}

// RunHints refreshes the customers that have a stored hint, oldest first,
// until ctx ends: at start (hints left by a previous run), on each kick,
// and every opts.Every. It is an actor: it returns only when ctx ends (nil)
// or the state file fails (the error). A refresh that fails backs that
// customer off and keeps its hint; the sweep still lists it as usual.
func (p *Poller) RunHints(ctx context.Context, opts HintOptions) error {
	if opts.Every <= 0 {
		opts.Every = 15 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = 30 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 10 * time.Minute
	}
	type retry struct {
		bo   *backoff.ExponentialBackOff
		next time.Time
	}
	retries := map[string]*retry{}
	for {
		var due []state.Hint
		now := time.Now()
		err := p.o.Store.View(func(r *state.ReadTx) error {
			return r.Hints(func(h state.Hint) error {
				if rt := retries[h.CustomerID]; rt == nil || !now.Before(rt.next) {
					due = append(due, h)
				}
				return nil
			})
		})
		var de *state.DamagedError
		if errors.As(err, &de) {
			p.log.Warn("state file: hints that do not decode were skipped; the sweep covers their customers", "err", err)
		} else if err != nil {
			return fmt.Errorf("reading hints: %w", err)
		}
		slices.SortFunc(due, func(a, b state.Hint) int { return a.FirstAt.Compare(b.FirstAt) })
		var mu sync.Mutex
		var fatal error
		each(ctx, opts.Concurrency, due, func(h state.Hint) {
			r, err := p.Refresh(ctx, h)
			if ctx.Err() != nil {
				return
			}
			mu.Lock()
			switch {
			case err != nil:
				fatal = errors.Join(fatal, err)
			case r.Result == "failed":
				rt := retries[h.CustomerID]
				if rt == nil {
					rt = &retry{bo: backoff.NewExponentialBackOff(backoff.WithInitialInterval(opts.RetryInitial),
						backoff.WithMaxInterval(opts.RetryMax), backoff.WithMaxElapsedTime(0))}
					retries[h.CustomerID] = rt
				}
				wait := rt.bo.NextBackOff()
				rt.next = time.Now().Add(wait)
				p.log.Warn("hinted refresh failed; the hint is kept", "customer", h.CustomerID, "retry_in", wait.Round(time.Second), "err", r.Failure.Err)
			default:
				delete(retries, h.CustomerID)
			}
			mu.Unlock()
			if opts.Refreshed != nil {
				opts.Refreshed(r)
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if fatal != nil {
			return fmt.Errorf("hinted refresh: %w", fatal)
		}
		t := time.NewTimer(opts.Every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-opts.Kick:
			t.Stop()
		case <-t.C:
		}
	}
}
