package poller_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pcwatch/pcwatch/internal/budget"
	"github.com/pcwatch/pcwatch/internal/deadline"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

func hotOf(set []poller.Hot, customerID string) *poller.Hot {
	for i := range set {
		if set[i].CustomerID == customerID {
			return &set[i]
		}
	}
	return nil
}

func storedFacts(t *testing.T, e *env, customerID, subID string) *deadline.Facts {
	t.Helper()
	var f *deadline.Facts
	key := resource.Subscriptions.Key(customerID, subID)
	if err := e.store.View(func(r *state.ReadTx) error {
		rec, ok, err := r.Get(resource.Subscriptions, key)
		if err != nil || !ok {
			return err
		}
		f, err = deadline.StoredFacts(key, rec)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if f == nil {
		t.Fatalf("no stored facts for %s", key)
	}
	return f
}

// A deadline alert about to fire has its subscription read again first:
// a cancellation made in Partner Center that no hint reported is seen
// before the alert, so the alert does not fire on stale facts. The read
// happens once per alert, and only for alerts not yet fired.
func TestPreAlertRefreshUsesFreshFacts(t *testing.T) {
	e := newEnv(t, 4)
	p := e.poller(nil)
	cust := e.sim.State().Customers[0].ID
	subID, err := e.sim.Purchase(cust, pcsim.PurchaseSpec{})
	if err != nil {
		t.Fatal(err)
	}
	e.cycle(p)
	f := storedFacts(t, e, cust, subID)
	if !f.NCE || f.CancelBy.IsZero() {
		t.Fatalf("the purchase has no cancellation window: %+v", f)
	}
	cfg := deadline.DefaultConfig()
	entity := resource.Subscriptions.EntityKey(cust, subID)
	alert := deadline.LedgerKey(entity, deadline.Cancellation, f.CancelBy, 72*time.Hour)
	o := poller.HotOptions{Deadlines: cfg, PreAlert: 10 * time.Minute}

	// Ten minutes before the 72h alert: the subscription is due a pre-alert
	// read, and the stored facts would fire the alert.
	e.clk.Set(f.CancelBy.Add(-72*time.Hour - 8*time.Minute))
	set, err := p.HotSet(e.clk.Now(), time.Now(), o)
	if err != nil {
		t.Fatal(err)
	}
	h := hotOf(set, cust)
	if h == nil || h.Reason != poller.HotPreAlert || !slices.Contains(h.Subscriptions, subID) || !slices.Contains(h.Alerts, alert) {
		t.Fatalf("hot set entry for %s = %+v, want a pre-alert of %s", cust, h, alert)
	}
	fires := func() bool {
		got := storedFacts(t, e, cust, subID)
		for _, fi := range deadline.Evaluate(entity, *got, f.CancelBy.Add(-72*time.Hour+time.Minute), cfg, func(string) bool { return false }) {
			if fi.Rule == deadline.Cancellation {
				return true
			}
		}
		return false
	}
	if !fires() {
		t.Fatal("the stale facts would not fire the alert: the test proves nothing")
	}

	// Cancelled in Partner Center, nothing tells the watcher.
	if err := e.sim.Cancel(cust, subID); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var done []poller.HotRefresh
	o.Refreshed = func(r poller.HotRefresh) { mu.Lock(); done = append(done, r); mu.Unlock() }
	if err := p.HotPass(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	e.flush()
	i := slices.IndexFunc(done, func(r poller.HotRefresh) bool { return r.Hot.CustomerID == cust })
	if i < 0 || done[i].Result != "ok" || done[i].Reason != poller.HotPreAlert {
		t.Fatalf("pre-alert refresh of %s: %+v", cust, done)
	}
	if fires() {
		t.Error("after the pre-alert read the alert still fires for a cancelled subscription")
	}
	if got := storedFacts(t, e, cust, subID).Status; got == "active" {
		t.Errorf("stored status still %q", got)
	}

	// Read once: the next pass does not read it again for that alert.
	set, err = p.HotSet(e.clk.Now(), time.Now(), o)
	if err != nil {
		t.Fatal(err)
	}
	if h := hotOf(set, cust); h != nil && slices.Contains(h.Alerts, alert) {
		t.Errorf("the alert's subscription is due another pre-alert read: %+v", h)
	}
}

// The hot set: a customer changed recently is hot; a customer with a
// deadline threshold within Ahead is hot; a renewal whose commitment end
// has passed while the facts still show it is due. Customers listed within
// Interval are left out of a pass except for pre-alerts.
func TestHotSet(t *testing.T) {
	e := newEnv(t, 12)
	p := e.poller(nil)
	e.cycle(p)
	st := e.sim.State()

	// Changed: a seat increase found by the sweep.
	changed := pick(t, e.sim, 1)[0]
	changedCust := custOf(e.sim, changed.ID)
	if err := e.sim.IncreaseSeats(changedCust, changed.ID, 1); err != nil {
		t.Fatal(err)
	}
	e.cycle(p)
	// A yearly renewal, active and not a trial.
	var renewCust, renewSub string
	var renewAt time.Time
	for _, c := range st.Customers {
		for _, s := range c.Subscriptions {
			if s.Status == "active" && !s.IsTrial && s.TermDuration == "P1Y" && s.CommitmentEndDate.Year() < 9999 && c.ID != changedCust {
				f := storedFacts(t, e, c.ID, s.ID)
				if !f.CommitmentEnd.IsZero() && (renewAt.IsZero() || f.CommitmentEnd.Before(renewAt)) {
					renewCust, renewSub, renewAt = c.ID, s.ID, f.CommitmentEnd
				}
			}
		}
	}
	if renewSub == "" {
		t.Fatal("dataset has no yearly renewal")
	}
	o := poller.HotOptions{Deadlines: deadline.DefaultConfig(), Interval: 5 * time.Minute, Recent: time.Hour}

	set, err := p.HotSet(e.clk.Now(), time.Now(), o)
	if err != nil {
		t.Fatal(err)
	}
	if h := hotOf(set, changedCust); h == nil {
		t.Errorf("customer %s changed a moment ago but is not hot: %+v", changedCust, set)
	}
	// The hot set is ordered most urgent first.
	rank := map[string]int{poller.HotPreAlert: 0, poller.HotDue: 1, poller.HotDeadline: 2, poller.HotChanged: 3}
	for i := 1; i < len(set); i++ {
		if rank[set[i-1].Reason] > rank[set[i].Reason] {
			t.Errorf("hot set out of order at %d: %s before %s", i, set[i-1].Reason, set[i].Reason)
		}
	}

	// Twelve hours before the renewal's 1-day threshold: hot by deadline
	// (or by something more urgent).
	day := 24 * time.Hour
	set, err = p.HotSet(renewAt.Add(-day-12*time.Hour), time.Now(), o)
	if err != nil {
		t.Fatal(err)
	}
	if h := hotOf(set, renewCust); h == nil || rank[h.Reason] > rank[poller.HotDeadline] {
		t.Errorf("renewal at %s, 12h before its 1-day threshold: hot entry %+v", renewAt, h)
	}
	// An hour after the commitment end, the facts unchanged: due.
	set, err = p.HotSet(renewAt.Add(time.Hour), time.Now(), o)
	if err != nil {
		t.Fatal(err)
	}
	if h := hotOf(set, renewCust); h == nil || rank[h.Reason] > rank[poller.HotDue] {
		t.Errorf("renewal at %s, an hour after: hot entry %+v, want due", renewAt, h)
	}
	// Changes are hot for Recent only.
	set, err = p.HotSet(e.clk.Now(), time.Now().Add(2*time.Hour), o)
	if err != nil {
		t.Fatal(err)
	}
	if h := hotOf(set, changedCust); h != nil && h.Reason == poller.HotChanged {
		t.Errorf("a change two hours old keeps %s hot", changedCust)
	}

	// Everyone was just listed: a pass refreshes nothing but pre-alerts.
	var mu sync.Mutex
	var reasons []string
	o.Refreshed = func(r poller.HotRefresh) { mu.Lock(); reasons = append(reasons, r.Reason); mu.Unlock() }
	if err := p.HotPass(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, r := range reasons {
		if r != poller.HotPreAlert {
			t.Errorf("a pass right after a sweep refreshed a customer as %q", r)
		}
	}
}

// pacedClient is a Partner Center of n customers without subscriptions
// that notes when, and at which budget class, each listing was asked for.
type pacedClient struct {
	poller.PartnerCenter // nil: only the methods below are called
	n                    int
	mu                   sync.Mutex
	calls                []pacedCall
}

type pacedCall struct {
	customer string
	at       time.Time
	class    budget.Class
}

func (c *pacedClient) ListCustomers(ctx context.Context) ([]pc.Customer, error) {
	c.note(ctx, "")
	out := make([]pc.Customer, c.n)
	for i := range out {
		out[i].ID = fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
	}
	return out, nil
}

func (c *pacedClient) ListSubscriptions(ctx context.Context, customerID string, _ pc.SubscriptionFilter) ([]pc.Subscription, error) {
	c.note(ctx, customerID)
	return []pc.Subscription{}, nil
}

func (c *pacedClient) Stats() pc.Stats { return pc.Stats{} }

func (c *pacedClient) note(ctx context.Context, customer string) {
	c.mu.Lock()
	c.calls = append(c.calls, pacedCall{customer, time.Now(), budget.Effective(ctx, time.Now())})
	c.mu.Unlock()
}

func (c *pacedClient) take() []pacedCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// The sweep, on synctest's clock: after a start every customer is
// overdue and listed at once, ahead of hints; the next sweep starts the
// customers evenly over the spread, at the sweep's class; customers not
// swept for 90% of MaxStaleness are overdue again and listed at once;
// after a restart the state file's last listings count.
func TestSweepIsSpreadAndNeverStarved(t *testing.T) {
	dir := t.TempDir()
	primeCodec(t)
	synctest.Test(t, func(t *testing.T) {
		const n, spread = 10, 10 * time.Minute
		st, err := state.Open(filepath.Join(dir, state.FileName), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		c := &pacedClient{n: n}
		p, err := poller.New(poller.Options{Client: c, Store: st, Source: "https://pc.test", Concurrency: 3,
			Kinds: []*resource.Kind{resource.Subscriptions}, Spread: spread, MaxStaleness: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cycle := func() (time.Time, []pacedCall) {
			t.Helper()
			t0 := time.Now()
			rep, err := p.Cycle(context.Background())
			if err != nil || !rep.Complete() || rep.OK != n {
				t.Fatalf("cycle: %v %+v", err, rep)
			}
			return t0, c.take()
		}
		check := func(name string, t0 time.Time, calls []pacedCall, class budget.Class, gap time.Duration) {
			t.Helper()
			if len(calls) != n+1 || calls[0].customer != "" || calls[0].class != budget.Overdue {
				t.Fatalf("%s: calls %+v, want the customer list (overdue) and %d listings", name, calls, n)
			}
			// A commit may take bbolt's batch delay (milliseconds).
			for i, cl := range calls[1:] {
				want := t0.Add(gap * time.Duration(i))
				if d := cl.at.Sub(want); d < 0 || d > time.Second || cl.class != class {
					t.Errorf("%s: listing %d (%s) at +%s as %s, want +%s as %s", name, i, cl.customer, cl.at.Sub(t0), cl.class, want.Sub(t0), class)
				}
			}
		}
		t0, calls := cycle()
		check("first sweep", t0, calls, budget.Overdue, 0)
		t0, calls = cycle()
		check("second sweep", t0, calls, budget.Sweep, spread/n)
		// The last customer was swept almost a spread after t0; 55
		// minutes after that, every customer has gone more than 90% of
		// MaxStaleness without a sweep.
		time.Sleep(spread + 55*time.Minute - time.Since(t0))
		t0, calls = cycle()
		check("sweep after the staleness budget", t0, calls, budget.Overdue, 0)

		// A restart: the state file's last complete listings count, so
		// the new poller's first sweep is paced, not overdue.
		time.Sleep(time.Minute)
		p, err = poller.New(poller.Options{Client: c, Store: st, Source: "https://pc.test", Concurrency: 3,
			Kinds: []*resource.Kind{resource.Subscriptions}, Spread: spread, MaxStaleness: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t0, calls = cycle()
		check("first sweep after a restart", t0, calls, budget.Sweep, spread/n)
	})
}

// primeCodec makes package state create its shared zstd codec outside
// any synctest bubble (it keeps channels; made inside one bubble, it
// could not be used from the next): a cycle against the simulator stores
// compressed records.
func primeCodec(t *testing.T) {
	t.Helper()
	e := newEnv(t, 1)
	e.cycle(e.poller(nil))
}
