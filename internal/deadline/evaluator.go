package deadline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Evaluator fires deadline events from the stored snapshots on a timer of
// its own, independent of how long a poll cycle takes. Its events and their
// ledger entries commit in one transaction, so a crash never loses a firing
// nor repeats one. Only one Evaluator may run against a store.
//
// A subscription whose stored record is damaged is skipped and reported
// (logged, counted, named in EvaluateOnce's error); every other
// subscription is evaluated and committed as usual, and the damaged one's
// ledger entries are kept.
type Evaluator struct {
	Store  *state.Store
	Clock  clock.Clock // default clock.Real
	Config Config
	Source string // CloudEvents source
	// Interval between evaluations in Run; default one minute.
	Interval time.Duration
	// Retention is the margin after a deadline before its ledger entries may
	// be forgotten; default 45 days. Entries that could still fire are kept
	// past it (see collectable).
	Retention time.Duration
	// GCInterval is how often the ledger is garbage-collected; default one
	// hour.
	GCInterval time.Duration
	Logger     *slog.Logger
	// Committed is called after events were committed (to kick the relay).
	Committed func(n int)
	// Metrics, when set, receives the ledger size after each evaluation
	// that changed it. If it also has a method RecordsDamaged(n int), that
	// receives the number of damaged records the last evaluation skipped.
	Metrics interface{ LedgerSize(n int) }

	lastGC time.Time
}

// Run evaluates every Interval until ctx ends. It evaluates once at start.
func (e *Evaluator) Run(ctx context.Context) error {
	iv := e.Interval
	if iv <= 0 {
		iv = time.Minute
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if _, err := e.EvaluateOnce(ctx); err != nil && ctx.Err() == nil {
			if errors.Is(err, state.ErrCorrupt) {
				e.log().Error("deadline evaluation skipped damaged records; every other subscription was evaluated", "err", err)
			} else {
				e.log().Error("deadline evaluation failed; retrying at the next tick", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (e *Evaluator) log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// EvaluateOnce evaluates every subscription's deadlines now and commits
// what fires. It returns the number of events emitted. Damaged records are
// skipped: what fired for the others is committed, and the error returned
// is a *state.DamagedError naming them (errors.Is state.ErrCorrupt).
func (e *Evaluator) EvaluateOnce(ctx context.Context) (int, error) {
	clk := e.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	now := clk.Now()
	gcEvery := e.GCInterval
	if gcEvery <= 0 {
		gcEvery = time.Hour
	}
	gcDue := e.lastGC.IsZero() || now.Sub(e.lastGC) >= gcEvery
	var ch state.Change
	names := map[string]string{}
	dmg := &state.DamagedError{Path: e.Store.Path()}
	err := e.Store.View(func(r *state.ReadTx) error {
		err := r.ForEach(resource.Subscriptions, func(key string, rec state.Record) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var re *state.RecordError
			err := e.evaluate(r, key, rec, now, names, &ch)
			if errors.As(err, &re) {
				dmg.Add(re)
				return nil
			}
			return err
		})
		var de *state.DamagedError
		if errors.As(err, &de) {
			dmg.Merge(de)
		} else if err != nil {
			return err
		}
		if gcDue {
			ch.LedgerDeletes, err = e.collectable(r, now)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("evaluating deadlines: %w", err)
	}
	if err := e.Store.Commit(&ch); err != nil {
		return 0, fmt.Errorf("committing deadline events: %w", err)
	}
	if e.Metrics != nil && (len(ch.Ledger) > 0 || len(ch.LedgerDeletes) > 0 || e.lastGC.IsZero()) {
		if n, err := e.Store.LedgerLen(); err == nil {
			e.Metrics.LedgerSize(n)
		}
	}
	if m, ok := e.Metrics.(interface{ RecordsDamaged(n int) }); ok {
		m.RecordsDamaged(dmg.Count)
	}
	if gcDue {
		e.lastGC = now
	}
	if n := len(ch.Events); n > 0 {
		e.log().Info("deadline events", "count", n)
		if e.Committed != nil {
			e.Committed(n)
		}
	}
	if dmg.Count > 0 {
		for _, r := range dmg.Records {
			e.log().Warn("damaged state record; its deadlines are not evaluated", "kind", r.Kind, "key", r.Key, "err", r.Err)
		}
		return len(ch.Events), dmg
	}
	return len(ch.Events), nil
}

// evaluate adds what fires now for one stored subscription to ch. A record
// that does not decode gives a *state.RecordError.
func (e *Evaluator) evaluate(r *state.ReadTx, key string, rec state.Record, now time.Time, names map[string]string, ch *state.Change) error {
	f, err := StoredFacts(key, rec)
	if err != nil || f == nil {
		return err // no facts, no deadlines
	}
	custID, subID := state.SplitKey(key)
	entity := resource.Subscriptions.EntityKey(custID, subID)
	firings := Evaluate(entity, *f, now, e.Config, r.LedgerHas)
	if len(firings) == 0 {
		return nil
	}
	raw, err := rec.JSON()
	if err != nil {
		return err
	}
	name, ok := names[custID]
	if !ok {
		name = customerName(r, custID)
		names[custID] = name
	}
	after := resource.Subscriptions.ViewOf(subID, raw)
	for _, fi := range firings {
		env, err := e.event(fi, custID, subID, name, after, *f, now)
		if err != nil {
			return err
		}
		ch.Events = append(ch.Events, env)
		ch.Ledger = append(ch.Ledger, fi.Ledger...)
	}
	return nil
}

// collectable lists the ledger entries that can be forgotten: forgetting
// one must never let it fire again. Evaluate fires a threshold of a
// deadline only before the deadline, so once the deadline is Retention
// past (a margin for clock steps), its threshold entries can go. The one
// firing after a deadline, cancellation-window-closed, fires while the
// stored facts say the window was seen open (CancelSeenOpen == CancelBy
// == the deadline) — whatever the status, which can flip back to active —
// so its entry is kept while the subscription's stored facts still name
// that deadline, or cannot be read (a damaged record). A subscription no
// longer stored can go: if it comes back, the diff starts its facts afresh
// (FactsOf with no previous facts), and a window whose deadline is past is
// never marked seen open again.
//
// The ledger is thus bounded by the deadlines of the last Retention and the
// future, plus at most two entries per stored subscription.
func (e *Evaluator) collectable(r *state.ReadTx, now time.Time) ([]string, error) {
	ret := e.Retention
	if ret <= 0 {
		ret = 45 * day
	}
	prefix := string(resource.Subscriptions.Resource()) + "/"
	var old []string
	err := r.LedgerForEach(func(k string) error {
		entity, rule, at, _, ok := ParseLedgerKey(k)
		if !ok || now.Sub(at) <= ret {
			return nil
		}
		if rule == CancellationClosed {
			key, ok := strings.CutPrefix(entity, prefix)
			if !ok || mayFireClosed(r, key, at) {
				return nil
			}
		}
		old = append(old, k)
		return nil
	})
	return old, err
}

// mayFireClosed reports whether the stored subscription key could still
// fire cancellation-window-closed for deadline at.
func mayFireClosed(r *state.ReadTx, key string, at time.Time) bool {
	rec, stored, err := r.Get(resource.Subscriptions, key)
	if !stored {
		return false
	}
	if err != nil {
		return true
	}
	f, err := StoredFacts(key, rec)
	if err != nil {
		return true
	}
	if f == nil {
		return false
	}
	return (!f.CancelSeenOpen.IsZero() && f.CancelSeenOpen.Unix() == at.Unix()) || (!f.CancelBy.IsZero() && f.CancelBy.Unix() == at.Unix())
}

func customerName(r *state.ReadTx, custID string) string {
	snap, err := r.Customer(custID, resource.Customers)
	if err != nil {
		return ""
	}
	rec, ok := snap.Records[resource.Customers][""]
	if !ok {
		return ""
	}
	var c pc.Customer
	raw, err := rec.JSON()
	if err != nil || json.Unmarshal(raw, &c) != nil {
		return ""
	}
	return c.CompanyProfile.CompanyName
}

func (e *Evaluator) event(fi Firing, custID, subID, name string, after events.View, f Facts, now time.Time) (events.Envelope, error) {
	deadline := fi.Deadline
	late := fi.Late()
	d := &events.Data{
		CustomerID: custID, CustomerName: name, SubscriptionID: subID, After: &after,
		Deadline: &deadline, Timing: fi.Timing, Late: &late,
	}
	if fi.Rule.HasThresholds() {
		rem := fi.Deadline.Sub(now)
		remS := int64(rem / time.Second)
		d.Threshold, d.ThresholdSeconds = events.FormatDuration(fi.Threshold), int64(fi.Threshold/time.Second)
		d.Remaining, d.RemainingSeconds = events.FormatDuration(rem), &remS
	}
	if fi.Rule.CarriesQuantity() {
		q := fi.Quantity
		d.Quantity = &q
	}
	if fi.Rule.CarriesAutoRenew() {
		ar := f.AutoRenew
		d.AutoRenewEnabled = &ar
	}
	env, _, err := events.New(e.Source, fi.Rule.Event(),
		events.IDKey{Entity: resource.Subscriptions.EntityKey(custID, subID), Deadline: fi.Deadline, Threshold: fi.Threshold}, now, d)
	return env, err
}
