package deadline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// TestFiresOnceOverYears is the property behind "each (subscription,
// deadline, threshold) fires once, ever": random NCE subscriptions (monthly
// and annual terms, trials, renewals moving the commitment end and the
// cancellation window, or leaving the window in the past; seat increases
// with their refund batches; cancellations, expiries, suspensions and
// reactivations; removals and returns) live through six years of calendar
// on an injected clock that advances in random steps, polled into a real
// state file as the diff does (FactsOf from the stored facts, none for an
// entity that was not stored), with deadline evaluations, evaluator
// restarts and ledger collections at random instants. Asserted throughout:
//   - no ledger key (entity, kind, deadline, threshold) is emitted twice;
//   - after each evaluation, every deadline of a stored, live subscription
//     whose threshold has been crossed has fired its tightest crossed
//     threshold (so it fired, exactly once), and every window seen open and
//     now closed has fired cancellation-window-closed;
//   - the ledger holds nothing the collection could have dropped: past the
//     retention, only cancellation-closed entries of stored subscriptions
//     whose facts still name that deadline.
func TestFiresOnceOverYears(t *testing.T) {
	seeds, years := []uint64{1, 2, 3}, 6
	if testing.Short() || raceEnabled {
		seeds, years = seeds[:1], 5
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { simulateYears(t, seed, years) })
	}
}

type simSub struct {
	cust, id  string
	annual    bool
	trial     bool
	start     time.Time // of the current term
	end       time.Time // commitment end
	cancelBy  time.Time // cancellationAllowedUntilDate
	staleDate bool      // Partner Center leaves cancellationAllowedUntilDate at the first term's
	qty       int
	batches   []pc.RefundableDetail
	status    string
	autoRenew bool
	listed    bool // in Partner Center's listing
}

func (s *simSub) key() string { return s.cust + "/" + s.id }

func (s *simSub) term() time.Duration {
	if s.annual {
		return 365 * 24 * time.Hour
	}
	return 30 * 24 * time.Hour
}

// listing is the subscription as Partner Center lists it at now.
func (s *simSub) listing(now time.Time) *pc.Subscription {
	term := "P1M"
	if s.annual {
		term = "P1Y"
	}
	ps := &pc.Subscription{ID: s.id, OfferName: "Microsoft 365 E3", Quantity: s.qty, Status: pc.SubscriptionStatus(s.status),
		AutoRenewEnabled: s.autoRenew, IsTrial: s.trial, TermDuration: term, ProductType: &pc.ProductType{ID: "OnlineServicesNCE"},
		CommitmentEndDate: pc.NewTime(s.end), CancellationAllowedUntilDate: pc.NewTime(s.cancelBy),
		RefundableQuantity: &pc.RefundableQuantity{}}
	for _, b := range s.batches {
		if now.Before(b.AllowedUntilDateTime.T) {
			ps.RefundableQuantity.Details = append(ps.RefundableQuantity.Details, b)
			ps.RefundableQuantity.TotalQuantity += b.Quantity
		}
	}
	return ps
}

// evolve is Partner Center's calendar moving to now: renewals and expiries.
func (s *simSub) evolve(now time.Time) {
	for !now.Before(s.end) && (s.status == "active" || s.status == "suspended") {
		if !s.autoRenew || s.trial {
			s.status = "expired"
			return
		}
		s.start, s.end = s.end, s.end.Add(s.term())
		if !s.staleDate {
			s.cancelBy = s.start.Add(7 * 24 * time.Hour)
		}
	}
}

type firedKey struct {
	typ, entity string
	at          int64
	threshold   int64
}

type world struct {
	t      *testing.T
	r      *rand.Rand
	now    time.Time
	clk    *clock.Fake
	st     *state.Store
	ev     *deadline.Evaluator
	subs   []*simSub
	fired  map[firedKey]time.Time
	kept   int // most old entries the ledger rightly kept at a check
	cfg    deadline.Config
	ret    time.Duration
	nextID int
	evals  int
	// forgotten subscriptions: their records are removed by the next poll.
	forgotten int
	gone      []string
}

func simulateYears(t *testing.T, seed uint64, years int) {
	w := &world{t: t, r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC),
		fired: map[firedKey]time.Time{}, cfg: deadline.DefaultConfig(), ret: 45 * 24 * time.Hour}
	w.clk = clock.NewFake(w.now)
	var err error
	if w.st, err = state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{}); err != nil {
		t.Fatal(err)
	}
	defer w.st.Close()
	w.restart()
	for range 12 {
		w.newSub()
	}
	end := w.now.AddDate(years, 0, 0)
	steps := 0
	for w.now.Before(end) {
		w.now = w.now.Add(w.step())
		w.clk.Set(w.now)
		w.mutate()
		if w.r.IntN(10) < 8 {
			w.poll()
		}
		if w.r.IntN(20) == 0 {
			w.restart() // a watcher restart: a new evaluator, which collects at once
		}
		if w.r.IntN(10) < 7 {
			w.evaluate()
		}
		if steps++; steps%50 == 0 {
			// A restart collects at once: the ledger then holds only
			// what could still fire.
			w.restart()
			w.evaluate()
			w.checkLedger()
		}
		if t.Failed() {
			return
		}
	}
	w.restart()
	w.evaluate()
	w.checkLedger()
	n, _ := w.st.LedgerLen()
	t.Logf("%d steps, %d evaluations, %d subscriptions (%d forgotten), %d events fired once each; ledger %d entries, up to %d of them kept past the retention",
		steps, w.evals, w.nextID, w.forgotten, len(w.fired), n, w.kept)
	t.Logf("%d commits", w.st.WriteStats().Commits)
	if w.kept == 0 {
		t.Error("the ledger never had to keep an old entry: the simulation does not exercise the collection")
	}
	kinds := map[string]int{}
	for k := range w.fired {
		kinds[k.typ]++
	}
	for _, typ := range []string{"window-closing", "window-closed", "refund", "renewal", "trial"} {
		found := false
		for k := range kinds {
			found = found || strings.Contains(k, typ)
		}
		if !found {
			t.Errorf("no %s event fired in %d years: the simulation does not exercise it (%v)", typ, years, kinds)
		}
	}
}

// step is the clock's next advance: mostly minutes to hours, sometimes
// days, now and then weeks (a watcher down, a laptop asleep).
func (w *world) step() time.Duration {
	switch n := w.r.IntN(20); {
	case n < 11:
		return time.Duration(10+w.r.IntN(6*60)) * time.Minute
	case n < 18:
		return time.Duration(6+w.r.IntN(66)) * time.Hour
	default:
		return time.Duration(3*24+w.r.IntN(17*24)) * time.Hour
	}
}

func (w *world) restart() {
	w.ev = &deadline.Evaluator{Store: w.st, Clock: w.clk, Source: "https://pc.test", Config: w.cfg, Retention: w.ret,
		GCInterval: time.Duration(1+w.r.IntN(240)) * time.Hour}
}

func (w *world) newSub() {
	w.nextID++
	s := &simSub{cust: fmt.Sprintf("c%d", w.nextID%4), id: fmt.Sprintf("s%03d", w.nextID), annual: w.r.IntN(2) == 0,
		trial: w.r.IntN(8) == 0, start: w.now, qty: 1 + w.r.IntN(20), status: "active", autoRenew: w.r.IntN(5) > 0,
		staleDate: w.r.IntN(3) == 0, listed: true}
	s.end = s.start.Add(s.term())
	s.cancelBy = s.start.Add(7 * 24 * time.Hour)
	w.subs = append(w.subs, s)
}

// mutate is what customers and Microsoft do between two instants.
func (w *world) mutate() {
	live := 0
	for _, s := range w.subs {
		if s.status == "active" || s.status == "suspended" {
			live++
		}
	}
	if w.r.IntN(6) == 0 && live < 30 {
		w.newSub()
	}
	// Partner Center drops ended subscriptions from its listing after a
	// while; some of those are forgotten for good.
	kept := w.subs[:0]
	for _, s := range w.subs {
		ended := s.status == "expired" || s.status == "deleted"
		if ended && s.listed && w.r.IntN(60) == 0 {
			s.listed = false
		}
		if ended && !s.listed && w.r.IntN(40) == 0 {
			w.forgotten++
			w.gone = append(w.gone, s.key())
			continue
		}
		kept = append(kept, s)
	}
	w.subs = kept
	for _, s := range w.subs {
		s.evolve(w.now)
		live := s.status == "active" || s.status == "suspended"
		switch n := w.r.IntN(400); {
		case n < 8 && live && s.status == "active": // seats added: refundable for 7 days
			k := 1 + w.r.IntN(5)
			s.qty += k
			s.batches = append(s.batches, pc.RefundableDetail{Quantity: k, AllowedUntilDateTime: pc.NewTime(w.now.Add(7 * 24 * time.Hour))})
		case n < 11 && live:
			s.status = map[string]string{"active": "suspended", "suspended": "active"}[s.status]
		case n < 12 && live:
			s.status = "deleted" // cancelled
		case n < 13 && s.status == "deleted":
			s.status = "active" // reinstated by support
		case n < 15 && s.listed:
			s.listed = false // removed from the listing
		case n < 18 && !s.listed:
			s.listed = true // back, same dates
		case n < 19:
			s.autoRenew = !s.autoRenew
		}
	}
}

// poll commits the listing as the diff does: an unchanged entity is left
// as stored; a changed one gets facts from its stored facts, a new or
// returning one facts of its own (no previous facts); unlisted entities
// are removed.
func (w *world) poll() {
	var ch state.Change
	for _, k := range w.gone {
		ch.Deletes = append(ch.Deletes, state.Ref{Kind: resource.Subscriptions, Key: k})
	}
	w.gone = nil
	err := w.st.View(func(r *state.ReadTx) error {
		for _, s := range w.subs {
			rec, stored, err := r.Get(resource.Subscriptions, s.key())
			if err != nil {
				return err
			}
			if !s.listed {
				if stored {
					ch.Deletes = append(ch.Deletes, state.Ref{Kind: resource.Subscriptions, Key: s.key()})
				}
				continue
			}
			l := l(w.t, s.listing(w.now))
			if stored && rec.Hash == state.HashOf(l.Raw) {
				continue // unchanged: the diff keeps the stored facts
			}
			var prev *deadline.Facts
			if stored {
				meta, err := rec.MetaJSON()
				if err != nil {
					return err
				}
				f, err := deadline.DecodeFacts(meta)
				if err != nil {
					return err
				}
				prev = &f
			}
			f := deadline.FactsOf(l, prev, w.now)
			ch.Puts = append(ch.Puts, state.Put{Kind: resource.Subscriptions, Key: s.key(),
				Record: state.Record{Hash: state.HashOf(l.Raw), Rev: rec.Rev + 1, Updated: w.now, Raw: l.Raw, Meta: f.Encode()}})
		}
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.st.Commit(&ch); err != nil {
		w.t.Fatal(err)
	}
}

// l round-trips a listing through JSON, as the poller receives it.
func l(t *testing.T, s *pc.Subscription) *pc.Subscription {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out pc.Subscription
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func (w *world) evaluate() {
	w.evals++
	if _, err := w.ev.EvaluateOnce(context.Background()); err != nil {
		w.t.Fatalf("at %v: %v", w.now, err)
	}
	// The relay: publish and delete.
	recs, err := w.st.OutboxRead(1 << 20)
	if err != nil {
		w.t.Fatal(err)
	}
	var seqs []uint64
	for _, rec := range recs {
		seqs = append(seqs, rec.Seq)
		var e struct {
			Type string `json:"type"`
			Data struct {
				CustomerID       string    `json:"customerId"`
				SubscriptionID   string    `json:"subscriptionId"`
				Deadline         time.Time `json:"deadline"`
				ThresholdSeconds int64     `json:"thresholdSeconds"`
			} `json:"data"`
		}
		if err := json.Unmarshal(rec.Body, &e); err != nil {
			w.t.Fatal(err)
		}
		k := firedKey{typ: e.Type, entity: resource.Subscriptions.EntityKey(e.Data.CustomerID, e.Data.SubscriptionID),
			at: e.Data.Deadline.Unix(), threshold: e.Data.ThresholdSeconds}
		if first, dup := w.fired[k]; dup {
			w.t.Errorf("at %v: %s for %s (deadline %v, threshold %ds) fired again; it first fired at %v",
				w.now, k.typ, k.entity, time.Unix(k.at, 0).UTC(), k.threshold, first)
		}
		w.fired[k] = w.now
	}
	if err := w.st.OutboxDelete(seqs); err != nil {
		w.t.Fatal(err)
	}
	w.checkFired()
}

// checkFired: every deadline of a stored, live subscription with a crossed
// threshold has fired its tightest crossed threshold; every window seen
// open and now closed has fired closed.
func (w *world) checkFired() {
	err := w.st.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Subscriptions, func(key string, rec state.Record) error {
			meta, err := rec.MetaJSON()
			if err != nil {
				return err
			}
			f, err := deadline.DecodeFacts(meta)
			if err != nil {
				return err
			}
			cust, id := state.SplitKey(key)
			entity := resource.Subscriptions.EntityKey(cust, id)
			for _, d := range deadline.Deadlines(f, w.cfg) {
				if !w.now.Before(d.At) {
					continue
				}
				ths := slices.Clone(d.Thresholds)
				slices.Sort(ths)
				for _, th := range ths {
					if w.now.Before(d.At.Add(-th)) {
						continue
					}
					k := firedKey{typ: string(d.Rule.Event()), entity: entity, at: d.At.Unix(), threshold: int64(th / time.Second)}
					if _, ok := w.fired[k]; !ok {
						w.t.Errorf("at %v: %s of %s (deadline %v) crossed its %v threshold but never fired it", w.now, d.Rule, entity, d.At, th)
					}
					break // the tightest crossed
				}
			}
			live := f.Status == "active" || f.Status == "suspended"
			if f.NCE && live && !f.CancelBy.IsZero() && f.CancelSeenOpen.Equal(f.CancelBy) && !w.now.Before(f.CancelBy) {
				k := firedKey{typ: string(deadline.CancellationClosed.Event()), entity: entity, at: f.CancelBy.Unix()}
				if _, ok := w.fired[k]; !ok {
					w.t.Errorf("at %v: the window of %s seen open until %v closed but closed never fired", w.now, entity, f.CancelBy)
				}
			}
			return nil
		})
	})
	if err != nil {
		w.t.Fatal(err)
	}
}

// checkLedger: the ledger keeps past the retention only what could fire
// again, so it stays bounded by the recent deadlines plus at most two
// entries per stored subscription.
func (w *world) checkLedger() {
	var keep, recent int
	err := w.st.View(func(r *state.ReadTx) error {
		return r.LedgerForEach(func(k string) error {
			entity, kind, at, _, ok := deadline.ParseLedgerKey(k)
			if !ok {
				w.t.Errorf("unreadable ledger key %q", k)
				return nil
			}
			if w.now.Sub(at) <= w.ret {
				recent++
				return nil
			}
			if kind != deadline.CancellationClosed {
				w.t.Errorf("at %v: ledger entry %s outlived its retention though it can never fire again", w.now, k)
				return nil
			}
			rec, stored, err := r.Get(resource.Subscriptions, strings.TrimPrefix(entity, "subscription/"))
			if err != nil {
				return err
			}
			if !stored {
				w.t.Errorf("at %v: ledger entry %s outlived its subscription and its retention", w.now, k)
				return nil
			}
			meta, _ := rec.MetaJSON()
			f, _ := deadline.DecodeFacts(meta)
			if f.CancelSeenOpen.Unix() != at.Unix() && f.CancelBy.Unix() != at.Unix() {
				w.t.Errorf("at %v: ledger entry %s kept, but its subscription's facts no longer name that deadline (%+v)", w.now, k, f)
			}
			keep++
			return nil
		})
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.kept = max(w.kept, keep)
	stored := 0
	w.st.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Subscriptions, func(string, state.Record) error { stored++; return nil })
	})
	if keep > 2*stored {
		w.t.Errorf("ledger keeps %d old entries for %d stored subscriptions", keep, stored)
	}
}
