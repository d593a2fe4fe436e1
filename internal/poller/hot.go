package poller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pcwatch/pcwatch/internal/budget"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Why a customer is hot, most urgent first.
const (
	// HotPreAlert: a deadline alert of one of its subscriptions fires
	// within HotOptions.PreAlert; the subscription is read again (by id,
	// with its refund windows) once before, so the alert uses fresh facts.
	HotPreAlert = "pre-alert"
	// HotDue: a renewal or trial end (when scheduled changes apply too) has
	// passed and the stored facts still show it: Partner Center is acting
	// on it now.
	HotDue = "due"
	// HotDeadline: a deadline or one of its thresholds falls within
	// HotOptions.Ahead.
	HotDeadline = "deadline"
	// HotChanged: a change of it was evented within HotOptions.Recent
	// (changes come in bursts: a seat change, then its refund window).
	HotChanged = "changed"
)

var hotRank = map[string]int{HotPreAlert: 0, HotDue: 1, HotDeadline: 2, HotChanged: 3}

// HotMetrics receives the hot refresher's figures; the poller's Metrics
// may implement it.
type HotMetrics interface {
	// HotRefreshed counts a refresh by reason (HotPreAlert, ...) and result
	// ("ok", "failed").
	HotRefreshed(reason, result string)
	// HotCustomers is the size of the hot set at the last pass.
	HotCustomers(n int)
}

// HotOptions configure RunHot. Zero values take the defaults.
type HotOptions struct {
	// Every is the time between two passes over the stored facts;
	// default 1m.
	Every time.Duration
	// Interval: a hot customer is listed at most once per Interval (a
	// sweep's or a hinted listing counts); default 5m.
	Interval time.Duration
	// Recent: a customer changed within Recent is hot; default 1h.
	Recent time.Duration
	// Ahead: a deadline or threshold within Ahead makes its customer hot;
	// default 24h. DueFor: how long after a renewal or trial end the
	// customer stays hot while its facts still show it; default 24h.
	Ahead, DueFor time.Duration
	// PreAlert: how long before each deadline alert its subscription is
	// read again; default 10m. It should exceed Every plus the time one
	// refresh takes.
	PreAlert time.Duration
	// Deadlines must be the evaluator's configuration (its thresholds say
	// when alerts fire).
	Deadlines deadline.Config
	// MaxPerPass bounds the refreshes of one pass, most urgent first, so
	// the hot set cannot take the whole budget; default 50. The sweep is
	// protected anyway: its overdue customers outrank every hot one.
	MaxPerPass int
	// Concurrency: refreshes at once; default 2.
	Concurrency int
	// Refreshed is called after each refresh (tests, logs). Optional.
	Refreshed func(HotRefresh)
}

func (o *HotOptions) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.Every, time.Minute)
	set(&o.Interval, 5*time.Minute)
	set(&o.Recent, time.Hour)
	set(&o.Ahead, 24*time.Hour)
	set(&o.DueFor, 24*time.Hour)
	set(&o.PreAlert, 10*time.Minute)
	if o.MaxPerPass <= 0 {
		o.MaxPerPass = 50
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
}

// Hot is one customer the hot refresher will read again.
type Hot struct {
	CustomerID string
	Reason     string    // HotPreAlert, HotDue, HotDeadline or HotChanged
	At         time.Time // the instant that makes it hot (business time); the change's wall time for HotChanged
	// Subscriptions to read by id (pre-alerts), and the alerts (ledger
	// keys) they are read for.
	Subscriptions []string
	Alerts        []string
}

// HotRefresh is what one hot refresh did.
type HotRefresh struct {
	Hot
	Refreshed
}

// hotState is the refresher's memory; it is not state: after a restart
// the first sweep lists everything anyway.
type hotState struct {
	mu       sync.Mutex
	fresh    map[string]time.Time // wall time of a customer's last complete listing of any kind
	prefetch map[string]time.Time // alert ledger key -> its threshold instant, once read
}

func (p *Poller) noteListed(customerID string, at time.Time) {
	p.hot.mu.Lock()
	p.hot.fresh[customerID] = at
	p.hot.mu.Unlock()
}

func (p *Poller) noteChanged(customerID string, at time.Time) {
	if customerID == "" {
		return
	}
	p.mu.Lock()
	p.changed[customerID] = at
	p.mu.Unlock()
}

// HotSet computes the customers to read again now: the stored facts of
// every subscription (business time now) and the customers changed
// recently (wall time wall). Pre-alerts already read are left out; each
// customer appears once, for its most urgent reason, most urgent first.
// It reads the store and the poller's memory; it calls nothing outside.
func (p *Poller) HotSet(now, wall time.Time, o HotOptions) ([]Hot, error) {
	o.defaults()
	by := map[string]*Hot{}
	add := func(h Hot) {
		cur := by[h.CustomerID]
		switch {
		case cur == nil:
			by[h.CustomerID] = &h
		case hotRank[h.Reason] < hotRank[cur.Reason] || (h.Reason == cur.Reason && h.At.Before(cur.At)):
			h.Subscriptions = append(h.Subscriptions, cur.Subscriptions...)
			h.Alerts = append(h.Alerts, cur.Alerts...)
			by[h.CustomerID] = &h
		default:
			cur.Subscriptions = append(cur.Subscriptions, h.Subscriptions...)
			cur.Alerts = append(cur.Alerts, h.Alerts...)
		}
	}
	p.hot.mu.Lock()
	read := make(map[string]bool, len(p.hot.prefetch))
	for k := range p.hot.prefetch {
		read[k] = true
	}
	p.hot.mu.Unlock()
	done := func(k string) bool { return read[k] }
	err := p.o.Store.View(func(r *state.ReadTx) error {
		err := r.ForEach(resource.Subscriptions, func(key string, rec state.Record) error {
			f, err := deadline.StoredFacts(key, rec)
			if err != nil || f == nil {
				return nil // a damaged record: the evaluator reports it
			}
			custID, subID := state.SplitKey(key)
			entity := resource.Subscriptions.EntityKey(custID, subID)
			for _, d := range deadline.Deadlines(*f, o.Deadlines) {
				if !d.At.After(now) {
					if (d.Rule == deadline.Renewal || d.Rule == deadline.Trial) && now.Sub(d.At) <= o.DueFor {
						add(Hot{CustomerID: custID, Reason: HotDue, At: d.At})
					}
					continue
				}
				soonest := d.At
				for _, th := range d.Thresholds {
					at := d.At.Add(-th)
					if !at.After(now) {
						continue
					}
					if at.Before(soonest) {
						soonest = at
					}
					if k := deadline.LedgerKey(entity, d.Rule, d.At, th); at.Sub(now) <= o.PreAlert && !done(k) && !r.LedgerHas(k) {
						add(Hot{CustomerID: custID, Reason: HotPreAlert, At: at, Subscriptions: []string{subID}, Alerts: []string{k}})
					}
				}
				if soonest.Sub(now) <= o.Ahead {
					add(Hot{CustomerID: custID, Reason: HotDeadline, At: soonest})
				}
			}
			return nil
		})
		var de *state.DamagedError
		if errors.As(err, &de) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("computing hot customers: %w", err)
	}
	p.mu.Lock()
	for id, at := range p.changed {
		if wall.Sub(at) > o.Recent {
			delete(p.changed, id)
			continue
		}
		add(Hot{CustomerID: id, Reason: HotChanged, At: at})
	}
	p.mu.Unlock()
	out := make([]Hot, 0, len(by))
	for _, h := range by {
		slices.Sort(h.Subscriptions)
		h.Subscriptions = slices.Compact(h.Subscriptions)
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b Hot) int {
		return cmp.Or(cmp.Compare(hotRank[a.Reason], hotRank[b.Reason]), a.At.Compare(b.At), cmp.Compare(a.CustomerID, b.CustomerID))
	})
	return out, nil
}

// due filters a hot set down to what a pass refreshes now: pre-alerts
// always, the others when the customer was not listed within Interval;
// at most MaxPerPass, most urgent first.
func (p *Poller) due(set []Hot, wall time.Time, o HotOptions) []Hot {
	p.hot.mu.Lock()
	defer p.hot.mu.Unlock()
	var out []Hot
	for _, h := range set {
		if len(out) >= o.MaxPerPass {
			break
		}
		if last, ok := p.hot.fresh[h.CustomerID]; h.Reason != HotPreAlert && ok && wall.Sub(last) < o.Interval {
			continue
		}
		out = append(out, h)
	}
	return out
}

// RunHot keeps hot customers fresh until ctx ends: every o.Every it
// computes the hot set (HotSet) and refreshes, within the request budget
// and behind hints (budget.Hot; pre-alerts as budget.Hint), the customers
// that are due. A refresh is a hinted refresh without a hint (Refresh):
// it never removes anything. It is an actor: it returns nil when ctx ends,
// or the error when the state file fails.
func (p *Poller) RunHot(ctx context.Context, o HotOptions) error {
	o.defaults()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		if err := p.hotPass(ctx, o); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// hotPass is one pass of RunHot.
func (p *Poller) hotPass(ctx context.Context, o HotOptions) error {
	o.defaults()
	set, err := p.HotSet(p.o.Clock.Now(), time.Now(), o)
	if err != nil {
		return err
	}
	if hm, ok := p.o.Metrics.(HotMetrics); ok {
		hm.HotCustomers(len(set))
	}
	due := p.due(set, time.Now(), o)
	var mu sync.Mutex
	var fatal error
	each(ctx, o.Concurrency, due, func(h Hot) {
		class := budget.Hot
		if h.Reason == HotPreAlert {
			class = budget.Hint
		}
		r, err := p.refresh(budget.WithClass(ctx, class), state.Hint{CustomerID: h.CustomerID, Subscriptions: h.Subscriptions}, "hot")
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			mu.Lock()
			fatal = errors.Join(fatal, err)
			mu.Unlock()
			return
		}
		if r.Result == "ok" {
			p.hot.mu.Lock()
			for _, k := range h.Alerts {
				p.hot.prefetch[k] = h.At
			}
			p.hot.mu.Unlock()
		} else if r.Failure != nil {
			p.log.Warn("hot refresh failed; the sweep lists the customer as usual", "customer", h.CustomerID, "reason", h.Reason, "err", r.Failure.Err)
		}
		if hm, ok := p.o.Metrics.(HotMetrics); ok && r.Result != "" {
			hm.HotRefreshed(h.Reason, r.Result)
		}
		if o.Refreshed != nil {
			o.Refreshed(HotRefresh{Hot: h, Refreshed: r})
		}
	})
	// Forget pre-alerts whose instant has passed: the ledger has them now.
	now := p.o.Clock.Now()
	p.hot.mu.Lock()
	for k, at := range p.hot.prefetch {
		if at.Before(now.Add(-o.PreAlert)) {
			delete(p.hot.prefetch, k)
		}
	}
	p.hot.mu.Unlock()
	if fatal != nil {
		return fmt.Errorf("hot refresh: %w", fatal)
	}
	return nil
}
