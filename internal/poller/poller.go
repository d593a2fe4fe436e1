// Package poller runs pcwatch's poll cycle: list customers (complete,
// paged), then poll each customer's entities of the configured kinds
// (internal/resource) through a bounded worker pool that shares the
// client's rate limiter, diff each complete listing against the snapshot
// and commit it with its events in one transaction.
//
// A customer whose listing fails is retried next cycle; nothing of a failed
// or partial listing is diffed, so a failure is never read as removals.
// After a configurable number of consecutive failures an
// ops.customer-poll-failed event is published; every cycle ends with an
// ops.cycle-completed summary.
package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pcwatch/pcwatch/internal/budget"
	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// PartnerCenter is what the poller needs from the API client: the
// listings of every kind, and subscriptions by id (their refund batches).
type PartnerCenter interface {
	resource.Client
	GetSubscription(ctx context.Context, customerID, subscriptionID string) (*pc.Subscription, error)
	Stats() pc.Stats
}

// Metrics receives the poller's figures. Nil is allowed.
type Metrics interface {
	CustomerPolled(ok bool)
	EventsEmitted(t events.Type, n int)
	CycleCompleted(r *Report)
}

// Options configure a Poller.
type Options struct {
	Client PartnerCenter
	Store  *state.Store
	Clock  clock.Clock // default clock.Real
	Source string      // CloudEvents source
	// Concurrency is the number of customers polled at once; default 8.
	// All workers share the client's rate limiter.
	Concurrency int
	// Kinds are the kinds polled per customer, in this order (kinds with a
	// parent; customers are always listed). Default the kinds on by default
	// (resource.Kind.DefaultOn).
	Kinds []*resource.Kind
	// TargetViews are the catalog views polled of the kinds listed by
	// target view; default OnlineServices.
	TargetViews []string
	// Customers, when set, restricts polling to these customer ids.
	Customers []string
	// MPNIDs, when set, lists only the entities (of the kinds listed by
	// reseller: subscriptions) these resellers (partner MPN ids) provided,
	// through Partner Center's mpn_id filter.
	MPNIDs []string
	// FailureThreshold: consecutive failed polls of a customer before
	// ops.customer-poll-failed fires (again at each multiple). Default 3.
	FailureThreshold int
	// RefundFetchBudget caps get-subscription-by-id calls per cycle made to
	// read per-seat refund windows. Default 200; negative disables.
	RefundFetchBudget int
	// RefundRefresh: refund batches older than this are fetched again
	// while a window is open. Default 6h.
	RefundRefresh time.Duration
	Diff          diff.Options
	Logger        *slog.Logger
	Metrics       Metrics
	// Committed is called after each commit that added events (to kick
	// the outbox relay). It must not block.
	Committed func()
	// Spread, when positive, paces the sweep: instead of starting every
	// customer at once, the customers swept before are started evenly
	// over Spread from the cycle's start (the watcher gives 80% of its
	// interval), so the request budget is spent evenly and hinted
	// refreshes find room in it. Overdue customers are not paced.
	Spread time.Duration
	// MaxStaleness bounds how long a customer may go without a sweep's
	// listing: once it has gone 90% of it unswept, its requests are
	// served as budget.Overdue, ahead of every hint (customers never
	// listed completely are overdue from the start, as an informer lists
	// before it watches; after a restart the state file's last complete
	// listings count). Zero: only customers never listed are overdue.
	MaxStaleness time.Duration
	// ProgressInterval is how often a sweep still running logs its
	// progress (customers polled of the total, ETA); default
	// DefaultProgressInterval, negative never.
	ProgressInterval time.Duration
	// Redact, when set, removes secrets from failure messages before they
	// are stored (the state file's failure streaks) and published
	// (ops.customer-poll-failed): a peer may echo credentials in an error.
	Redact func(string) string
}

// Poller runs cycles and hinted refreshes. Cycle must not be called
// concurrently with itself; Refresh may run beside it (work on one
// customer is serialised).
type Poller struct {
	o     Options
	log   *slog.Logger
	locks customerLocks

	mu      sync.Mutex
	swept   map[string]time.Time // wall time of each customer's last complete sweep listing
	changed map[string]time.Time // wall time of each customer's last change event (see hot.go)
	hot     hotState
	seeded  bool // swept was seeded from the state file's last complete listings

	progMu sync.Mutex
	prog   Progress // of the running (or last) sweep
}

// New returns a poller.
func New(o Options) (*Poller, error) {
	if o.Client == nil || o.Store == nil {
		return nil, errors.New("poller needs a Partner Center client and a state store")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if len(o.Kinds) == 0 {
		for _, k := range resource.All() {
			if k.DefaultOn() {
				o.Kinds = append(o.Kinds, k)
			}
		}
	}
	for _, k := range o.Kinds {
		if k.Parent() == nil {
			return nil, fmt.Errorf("poller: %s are listed once per cycle, not per customer", k.Plural())
		}
	}
	if len(o.TargetViews) == 0 {
		o.TargetViews = []string{"OnlineServices"}
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 3
	}
	if o.RefundFetchBudget == 0 {
		o.RefundFetchBudget = 200
	}
	if o.RefundRefresh <= 0 {
		o.RefundRefresh = 6 * time.Hour
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o.Diff.Source, o.Diff.RefundRefresh = o.Source, o.RefundRefresh
	return &Poller{o: o, log: log, swept: map[string]time.Time{}, changed: map[string]time.Time{},
		hot: hotState{fresh: map[string]time.Time{}, prefetch: map[string]time.Time{}}}, nil
}

// Failure is one customer that could not be polled completely.
type Failure struct {
	CustomerID string
	Name       string
	Kinds      []*resource.Kind // kinds whose listing failed
	Err        error
}

// Report summarises a cycle.
type Report struct {
	Number         uint64
	StartedAt      time.Time
	Duration       time.Duration
	CustomerListOK bool
	CustomerList   error // why the customer list failed, if it did
	Customers      int   // customers polled
	OK             int
	Failures       []Failure
	Events         int
	ByType         map[events.Type]int
	APIRequests    uint64
	Throttled      uint64
	Retries        uint64
	RefundFetches  int
	// Duplicates are entities a listing held twice with identical
	// content ("customer <id>" for the customer list, "<customer id>:
	// subscription <id>" for a customer's listing); each was kept once.
	Duplicates []string
}

// Complete reports whether every customer (and the customer list) was
// polled successfully.
func (r *Report) Complete() bool { return r.CustomerListOK && len(r.Failures) == 0 }

type target struct {
	id, name string
	class    budget.Class // of the sweep's requests for it
	promote  time.Time    // when its requests become overdue (zero: never)
}

// ctx marks a sweep's requests for t with its class and promotion.
func (t target) ctx(ctx context.Context) context.Context {
	ctx = budget.WithClass(ctx, t.class)
	if !t.promote.IsZero() {
		ctx = budget.WithPromotion(ctx, t.promote)
	}
	return ctx
}

// Cycle runs one poll cycle. It returns an error only when the cycle could
// not run at all (the store failed, ctx ended); customer failures are in the
// report. Cancelling ctx stops new work; a customer in flight is abandoned
// without committing anything of it.
func (p *Poller) Cycle(ctx context.Context) (*Report, error) {
	o := p.o
	start := o.Clock.Now()
	wallStart := time.Now()
	stats0 := o.Client.Stats()
	n, err := o.Store.NextCycle()
	if err != nil {
		return nil, fmt.Errorf("starting cycle: %w", err)
	}
	rep := &Report{Number: n, StartedAt: start, ByType: map[events.Type]int{}}
	ctx = pc.WithCorrelationID(ctx, pc.NewID())
	dopts := o.Diff
	dopts.Now, dopts.Cycle = start, n

	var mu sync.Mutex // guards rep
	count := func(res *diff.Result, customerID string) {
		if res == nil || res.Events() == 0 {
			return
		}
		mu.Lock()
		rep.Events += res.Events()
		for t, c := range res.Counts {
			rep.ByType[t] += c
		}
		mu.Unlock()
		p.counted(res, "sweep", customerID)
	}

	// The customer list is the sweep's base: it goes first.
	targets, err := p.customers(budget.WithClass(ctx, budget.Overdue), dopts, rep, count)
	if err != nil {
		return nil, err
	}
	rep.Customers = len(targets)
	p.seedSwept()
	targets, paced := p.plan(targets, time.Now())
	never := 0
	for _, t := range targets {
		if t.class == budget.Overdue {
			never++
		}
	}
	p.progressStart(n, len(targets), never)
	defer p.progressDone()
	if o.ProgressInterval > 0 {
		stopLog := make(chan struct{})
		defer close(stopLog)
		go p.logProgress(ctx, o.ProgressInterval, stopLog)
	}

	var refunds atomic.Int64
	refunds.Store(int64(o.RefundFetchBudget))
	lastOK := map[string]time.Time{}
	work := make(chan target)
	var wg sync.WaitGroup
	for w := 0; w < min(o.Concurrency, max(1, len(targets))); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				unlock := p.locks.lock(t.id)
				res, fetches, f, err := p.pollCustomer(t.ctx(ctx), t, dopts, &refunds)
				unlock()
				if err != nil && ctx.Err() == nil {
					// A store failure: nothing of this customer committed.
					f = &Failure{CustomerID: t.id, Name: t.name, Err: err}
				}
				if ctx.Err() != nil {
					continue // abandoned: not counted, retried next cycle
				}
				count(res, t.id)
				failRes, ferr := p.recordFailure(t, f, dopts)
				if ferr != nil {
					p.log.Error("recording a customer's failure streak", "customer", t.id, "err", ferr)
				}
				count(failRes, "")
				mu.Lock()
				rep.RefundFetches += fetches
				if res != nil {
					for _, d := range res.Duplicates {
						rep.Duplicates = append(rep.Duplicates, t.id+": "+d)
					}
				}
				if f != nil {
					rep.Failures = append(rep.Failures, *f)
				} else {
					rep.OK++
					lastOK[t.id] = start
				}
				mu.Unlock()
				if f == nil {
					now := time.Now()
					p.mu.Lock()
					p.swept[t.id] = now
					p.mu.Unlock()
					p.noteListed(t.id, now)
				}
				p.progressPolled(f == nil)
				if o.Metrics != nil {
					o.Metrics.CustomerPolled(f == nil)
				}
			}
		}()
	}
	// Customers never swept or past their promotion first, at once;
	// then the others evenly over the spread. A feed behind its schedule (workers busy, budget
	// short) catches up without waiting.
	first := len(targets) - paced
feed:
	for i, t := range targets {
		if i >= first && o.Spread > 0 {
			at := wallStart.Add(o.Spread * time.Duration(i-first) / time.Duration(paced))
			if err := clock.Sleep(ctx, time.Until(at)); err != nil {
				break feed
			}
		}
		select {
		case work <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := o.Store.SetLastOK(lastOK); err != nil {
		p.log.Error("recording last successful polls", "err", err)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	sort.Slice(rep.Failures, func(i, j int) bool { return rep.Failures[i].CustomerID < rep.Failures[j].CustomerID })

	st := o.Client.Stats()
	rep.APIRequests, rep.Throttled, rep.Retries = st.Requests-stats0.Requests, st.Throttled-stats0.Throttled, st.Retries-stats0.Retries
	rep.Duration = time.Since(wallStart)
	if err := p.emitCycle(rep, dopts, count); err != nil {
		return rep, err
	}
	if o.Metrics != nil {
		o.Metrics.CycleCompleted(rep)
	}
	lvl := slog.LevelInfo
	if !rep.Complete() {
		lvl = slog.LevelWarn
	}
	p.log.Log(ctx, lvl, "poll cycle", "cycle", rep.Number, "customers", rep.Customers, "ok", rep.OK, "failed", len(rep.Failures),
		"customer_list_ok", rep.CustomerListOK, "events", rep.Events, "requests", rep.APIRequests, "throttled", rep.Throttled,
		"retries", rep.Retries, "refund_fetches", rep.RefundFetches, "duration", rep.Duration.Round(time.Millisecond))
	return rep, nil
}

// plan orders a sweep's customers: those never listed completely first,
// at once, as budget.Overdue (a new customer is listed before anything
// is followed, as an informer lists before it watches); then those already
// past their promotion instant, at once; then the others, longest unswept
// first, paced over the spread. A swept customer's requests are
// budget.Sweep, promoted to overdue in the gate once it has gone 90% of
// MaxStaleness unswept, so that neither hints nor hot customers can hold
// it past the bound, while a customer within the bound never outranks a
// hint. It returns the number of paced customers and forgets customers no
// longer listed.
func (p *Poller) plan(targets []target, now time.Time) ([]target, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var never, regular []target
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		seen[t.id] = true
		last, ok := p.swept[t.id]
		if !ok {
			t.class = budget.Overdue
			never = append(never, t)
			continue
		}
		t.class = budget.Sweep
		if p.o.MaxStaleness > 0 {
			t.promote = last.Add(p.o.MaxStaleness - p.o.MaxStaleness/10)
		}
		regular = append(regular, t)
	}
	slices.SortStableFunc(regular, func(a, b target) int { return p.swept[a.id].Compare(p.swept[b.id]) })
	late := 0 // regular customers already past their promotion: not paced
	for late < len(regular) && !regular[late].promote.IsZero() && !now.Before(regular[late].promote) {
		late++
	}
	for id := range p.swept {
		if !seen[id] {
			delete(p.swept, id)
		}
	}
	return append(never, regular...), len(regular) - late
}

// seedSwept fills, once, the sweep times of customers this poller has not
// swept from the state file's last complete listings, so that a restart
// does not make every customer overdue (their first sweep would then
// outrank every hint for a whole sweep): only customers never listed
// completely are. A time ahead of the wall clock (an accelerated business
// clock) counts as now. A state file that cannot be read seeds nothing.
func (p *Poller) seedSwept() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seeded {
		return
	}
	p.seeded = true
	last, err := p.o.Store.LastOK()
	if err != nil {
		p.log.Warn("reading the last complete listings; every customer counts as never swept", "err", err)
		return
	}
	now := time.Now()
	for id, at := range last {
		if _, ok := p.swept[id]; !ok && !at.IsZero() {
			if at.After(now) {
				at = now
			}
			p.swept[id] = at
		}
	}
}

// customers lists and diffs the customer list, returning the customers to
// poll. When the listing fails, the customers already known are polled and
// the list itself is not diffed.
func (p *Poller) customers(ctx context.Context, dopts diff.Options, rep *Report, count func(*diff.Result, string)) ([]target, error) {
	o := p.o
	inScope := func(id string) bool { return len(o.Customers) == 0 || slices.Contains(o.Customers, id) }
	list, listErr := resource.Customers.List(ctx, o.Client, "", p.scope())
	if listErr == nil {
		var fresh []resource.Entity
		for _, c := range list {
			if inScope(c.ID) {
				fresh = append(fresh, c)
			}
		}
		res, err := diff.CommitCustomerList(o.Store, fresh, dopts, inScope)
		var dup *diff.DuplicateError
		switch {
		case errors.As(err, &dup):
			// Not diffable, but not a reason to stop watching: fall
			// through to the customers already known.
			listErr = err
		case err != nil:
			return nil, err
		default:
			count(res, "")
			rep.CustomerListOK = true
			if len(res.Duplicates) > 0 {
				p.log.Warn("customer list held customers twice with identical content; kept once", "duplicates", res.Duplicates)
				rep.Duplicates = append(rep.Duplicates, res.Duplicates...)
			}
			targets := make([]target, 0, len(fresh))
			listed := make(map[string]bool, len(fresh))
			for i := range fresh {
				if c := &fresh[i]; !listed[c.ID] {
					listed[c.ID] = true
					targets = append(targets, target{id: c.ID, name: c.View().CompanyName})
				}
			}
			return targets, nil
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	rep.CustomerList = listErr
	p.log.Warn("customer list failed; polling the customers already known, without diffing the list", "err", listErr)
	var targets []target
	damaged := &state.DamagedError{Path: o.Store.Path()}
	err := o.Store.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Customers, func(id string, rec state.Record) error {
			if inScope(id) {
				name := ""
				if raw, err := rec.JSON(); err == nil {
					name = resource.Customers.ViewOf(id, raw).CompanyName
				} else {
					// The name is lost, the customer is not: poll it.
					var re *state.RecordError
					if errors.As(err, &re) {
						damaged.Add(re)
					}
				}
				targets = append(targets, target{id: id, name: name})
			}
			return nil
		})
	})
	var de *state.DamagedError
	if errors.As(err, &de) {
		damaged.Merge(de)
		err = nil
	}
	if damaged.Count > 0 {
		// Damaged records are skipped by the store and named; every
		// readable customer is still polled.
		p.log.Error("state file: damaged customer records; polling the others", "err", damaged)
	}
	return targets, err
}

// pollCustomer lists one customer's resources and commits what changed.
// Kinds whose listing fails are left out (and reported); the others are
// complete and committed.
func (p *Poller) pollCustomer(ctx context.Context, t target, dopts diff.Options, refunds *atomic.Int64) (*diff.Result, int, *Failure, error) {
	o := p.o
	l := &diff.Listing{CustomerID: t.id, CustomerName: t.name, TargetViews: o.TargetViews, MPNIDs: o.MPNIDs}
	var failed []*resource.Kind
	var errs []error
	for _, k := range o.Kinds {
		ents, err := k.List(ctx, o.Client, t.id, p.scope())
		ents, err = listed(k, ents, err)
		if err != nil {
			failed, errs = append(failed, k), append(errs, err)
			continue
		}
		l.Kinds = append(l.Kinds, k)
		l.Entities = append(l.Entities, ents...)
	}
	if ctx.Err() != nil {
		return nil, 0, nil, ctx.Err()
	}
	var res *diff.Result
	fetches := 0
	if len(l.Kinds) > 0 {
		var err error
		res, err = diff.CommitCustomer(o.Store, l, dopts)
		// An item that does not decode (the differ decodes new and
		// changed items only) fails its kind's listing, as a body the
		// client could not decode does: the other kinds are diffed.
		for de := (*resource.DecodeError)(nil); errors.As(err, &de) && slices.Contains(l.Kinds, de.Kind); {
			failed, errs = append(failed, de.Kind), append(errs, err)
			if l = l.Without(de.Kind); len(l.Kinds) == 0 {
				res, err = nil, nil
				break
			}
			res, err = diff.CommitCustomer(o.Store, l, dopts)
		}
		var dup *diff.DuplicateError
		switch {
		case errors.As(err, &dup):
			// The listing changed while it was read: nothing of it is
			// committed, the customer is read again next cycle.
			failed, errs = append(failed, l.Kinds...), append(errs, err)
			l.Kinds, res = nil, nil
		case err != nil:
			return nil, 0, nil, err
		case res != nil && len(res.Duplicates) > 0:
			p.log.Warn("listing held entities twice with identical content; kept once", "customer", t.id, "duplicates", res.Duplicates)
		}
		// The listing is committed; now read the refund batches the diff
		// asked for (open windows, recent seat increases) and record them.
		if res != nil && len(res.RefundCandidates) > 0 && o.RefundFetchBudget > 0 {
			var fetched map[string]*pc.RefundableQuantity
			fetched, fetches, err = p.fetchRefunds(ctx, t.id, res.RefundCandidates, refunds)
			if err == nil {
				err = diff.CommitRefunds(o.Store, t.id, fetched, dopts.Now)
			}
			if err != nil && ctx.Err() == nil {
				return res, fetches, nil, err
			}
		}
	}
	if len(failed) > 0 {
		return res, fetches, &Failure{CustomerID: t.id, Name: t.name, Kinds: failed, Err: errors.Join(errs...)}, nil
	}
	return res, fetches, nil, nil
}

// scope is what the configuration restricts listings to.
func (p *Poller) scope() resource.Scope {
	return resource.Scope{TargetViews: p.o.TargetViews, MPNIDs: p.o.MPNIDs}
}

// fetchRefunds reads refundableQuantity by id for NCE subscriptions that
// need it (an open cancellation window or seats added in the last 7 days,
// and no fresh batches), within the cycle's budget. A failed fetch is
// logged and skipped: the listing stays complete, only the refund windows of
// that subscription are not refreshed.
func (p *Poller) fetchRefunds(ctx context.Context, customerID string, ids []string, refunds *atomic.Int64) (map[string]*pc.RefundableQuantity, int, error) {
	var out map[string]*pc.RefundableQuantity
	fetches := 0
	for _, id := range ids {
		if n := refunds.Add(-1); n < 0 {
			if n == -1 { // the first request past the budget: said once
				p.log.Debug("refund fetch budget spent", "customer", customerID, "subscription", id)
			}
			return out, fetches, nil
		}
		s, err := p.o.Client.GetSubscription(ctx, customerID, id)
		fetches++
		if err != nil {
			if ctx.Err() != nil {
				return nil, fetches, ctx.Err()
			}
			p.log.Warn("reading refund windows failed; will retry", "customer", customerID, "subscription", id, "err", err)
			continue
		}
		if out == nil {
			out = map[string]*pc.RefundableQuantity{}
		}
		out[id] = s.RefundableQuantity
	}
	return out, fetches, nil
}

// recordFailure updates a customer's failure streak and emits
// ops.customer-poll-failed when it reaches the threshold (and each further
// multiple); a success clears the streak.
func (p *Poller) recordFailure(t target, f *Failure, dopts diff.Options) (*diff.Result, error) {
	var cur state.Failure
	var had bool
	if err := p.o.Store.View(func(r *state.ReadTx) error {
		cur, had = r.Failure(t.id)
		return nil
	}); err != nil {
		return nil, err
	}
	if f == nil {
		if !had {
			return nil, nil
		}
		return nil, p.o.Store.Commit(&state.Change{Failures: map[string]*state.Failure{t.id: nil}})
	}
	if !had {
		cur = state.Failure{FirstAt: dopts.Now}
	}
	cur.Count++
	cur.LastAt = dopts.Now
	cur.LastError = lastError(f.Err)
	if p.o.Redact != nil {
		cur.LastError = p.o.Redact(cur.LastError)
	}
	ch := &state.Change{Failures: map[string]*state.Failure{t.id: &cur}}
	res := &diff.Result{Counts: map[events.Type]int{}}
	if cur.Count%p.o.FailureThreshold == 0 {
		d := &events.Data{CustomerID: t.id, CustomerName: t.name, Failure: &events.PollFailure{
			ConsecutiveFailures: cur.Count, FirstFailedAt: cur.FirstAt, LastError: cur.LastError, Cycle: dopts.Cycle}}
		env, _, err := events.New(p.o.Source, events.OpsCustomerPollFailed,
			events.IDKey{Entity: "ops/" + t.id, Extra: fmt.Sprintf("%d/%d", cur.FirstAt.UnixNano(), cur.Count)}, dopts.Now, d)
		if err != nil {
			return nil, err
		}
		ch.Events = append(ch.Events, env)
		res.Counts[events.OpsCustomerPollFailed]++
	}
	res.Change = *ch
	return res, p.o.Store.Commit(ch)
}

func (p *Poller) emitCycle(rep *Report, dopts diff.Options, count func(*diff.Result, string)) error {
	d := &events.Data{Cycle: &events.CycleSummary{
		Number: rep.Number, StartedAt: rep.StartedAt, DurationSeconds: rep.Duration.Seconds(),
		CustomersTotal: rep.Customers, CustomersOK: rep.OK, CustomersFailed: len(rep.Failures), CustomerListOK: rep.CustomerListOK,
		EventsEmitted: rep.Events, APIRequests: rep.APIRequests, Throttled: rep.Throttled, Retries: rep.Retries,
	}}
	env, _, err := events.New(p.o.Source, events.OpsCycleCompleted, events.IDKey{Entity: "ops/cycle", Revision: rep.Number}, dopts.Now, d)
	if err != nil {
		return err
	}
	if err := p.o.Store.Commit(&state.Change{Events: []events.Envelope{env}}); err != nil {
		return fmt.Errorf("committing the cycle summary: %w", err)
	}
	res := &diff.Result{Change: state.Change{Events: []events.Envelope{env}}, Counts: map[events.Type]int{events.OpsCycleCompleted: 1}}
	count(res, "")
	return nil
}

// maxLastError bounds a customer's stored last error (state.Failure).
const maxLastError = 500

// lastError is err as a customer's failure record keeps it: on one line
// (cli.ErrorLine), cut after maxLastError bytes and marked "...".
func lastError(err error) string {
	s := cli.ErrorLine(err)
	if len(s) > maxLastError {
		s = s[:maxLastError] + "..."
	}
	return s
}
