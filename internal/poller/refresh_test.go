package poller_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/state"
)

// hintMetrics records what the poller reports of refreshes.
type hintMetrics struct {
	mu       sync.Mutex
	results  map[string]int
	found    map[string]int
	latency  []time.Duration
	emitted  int
	polled   int
	complete int
}

func newHintMetrics() *hintMetrics {
	return &hintMetrics{results: map[string]int{}, found: map[string]int{}}
}
func (m *hintMetrics) CustomerPolled(bool)                { m.mu.Lock(); m.polled++; m.mu.Unlock() }
func (m *hintMetrics) EventsEmitted(_ events.Type, n int) { m.mu.Lock(); m.emitted += n; m.mu.Unlock() }
func (m *hintMetrics) CycleCompleted(*poller.Report)      { m.mu.Lock(); m.complete++; m.mu.Unlock() }
func (m *hintMetrics) HintRefreshed(r string)             { m.mu.Lock(); m.results[r]++; m.mu.Unlock() }
func (m *hintMetrics) HintLatency(d time.Duration) {
	m.mu.Lock()
	m.latency = append(m.latency, d)
	m.mu.Unlock()
}
func (m *hintMetrics) ChangesFound(by string, n int) { m.mu.Lock(); m.found[by] += n; m.mu.Unlock() }

func (e *env) hint(h state.Hint) state.Hint {
	e.t.Helper()
	if err := e.store.Commit(&state.Change{Hints: []state.Hint{h}}); err != nil {
		e.t.Fatal(err)
	}
	var got state.Hint
	_ = e.store.View(func(r *state.ReadTx) error { got, _, _ = r.Hint(h.CustomerID); return nil })
	return got
}

func (e *env) hints() []state.Hint {
	e.t.Helper()
	var out []state.Hint
	if err := e.store.View(func(r *state.ReadTx) error {
		return r.Hints(func(h state.Hint) error { out = append(out, h); return nil })
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// A hinted refresh turns a change into its event without a sweep, carries
// the actor of the record, reads the named subscription by id, and marks
// the hint done; the sweep afterwards finds nothing more.
func TestRefreshEmitsWithActor(t *testing.T) {
	e := newEnv(t, 10)
	m := newHintMetrics()
	p := e.poller(func(o *poller.Options) { o.Metrics = m })
	e.cycle(p)
	sub := pick(t, e.sim, 1)[0]
	cust := custOf(e.sim, sub.ID)
	if err := e.sim.IncreaseSeats(cust, sub.ID, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetAutoRenew(custOf(e.sim, pick(t, e.sim, 2)[1].ID), pick(t, e.sim, 2)[1].ID, false); err != nil {
		t.Fatal(err) // a change on another customer: no hint, the sweep finds it
	}
	who := &events.Actor{UserPrincipalName: "alice@partner.example", OperationType: "update_subscription",
		OperationDate: e.clk.Now(), Source: "activity-log"}
	h := e.hint(state.Hint{CustomerID: cust, Subscriptions: []string{sub.ID}, FirstAt: e.clk.Now(), LastAt: e.clk.Now(),
		Actors: map[string]*events.Actor{sub.ID: who}})
	e.clk.Advance(20 * time.Second)
	n := len(e.stream())
	e.sim.ResetStats()
	r, err := p.Refresh(context.Background(), h)
	if err != nil || r.Result != "ok" {
		t.Fatalf("Refresh = %+v, %v", r, err)
	}
	e.flush()
	evs := since(e.stream(), n)
	if got := types(evs); !slices.Equal(got, []string{"subscription.quantity-changed"}) {
		t.Fatalf("refresh events %v", got)
	}
	d := evs[0].data
	if d.SubscriptionID != sub.ID || d.Actor == nil || *d.Actor != *who {
		t.Errorf("event data: subscription %s actor %+v, want %s by %+v", d.SubscriptionID, d.Actor, sub.ID, who)
	}
	if r.Latency != 20*time.Second || m.latency[0] != 20*time.Second {
		t.Errorf("latency %v (metric %v), want 20s", r.Latency, m.latency)
	}
	if st := e.sim.Stats(); st.Requests["subscription"]["200"] < 1 {
		t.Errorf("the named subscription was not read by id: %+v", st.Requests)
	}
	if hs := e.hints(); len(hs) != 0 {
		t.Errorf("hints left after the refresh: %+v", hs)
	}
	n = len(e.stream())
	e.cycle(p)
	if got := types(since(e.stream(), n)); !slices.Equal(got, []string{"subscription.auto-renew-changed"}) {
		t.Errorf("the sweep after the refresh found %v, want only the unhinted change", got)
	}
	if m.found["hint"] != 1 || m.found["sweep"] != 1 || m.results["ok"] != 1 {
		t.Errorf("metrics: found %v, results %v", m.found, m.results)
	}
}

// A refresh never judges absences: a subscription gone from its listing is
// neither marked pending nor removed; the next two sweeps remove it.
func TestRefreshNeverRemoves(t *testing.T) {
	e := newEnv(t, 6)
	p := e.poller(nil)
	e.cycle(p)
	sub := pick(t, e.sim, 1)[0]
	cust := custOf(e.sim, sub.ID)
	if err := e.sim.RemoveSubscription(cust, sub.ID); err != nil {
		t.Fatal(err)
	}
	n := len(e.stream())
	for range 3 {
		h := e.hint(state.Hint{CustomerID: cust, FirstAt: e.clk.Now()})
		if r, err := p.Refresh(context.Background(), h); err != nil || r.Result != "ok" {
			t.Fatalf("Refresh = %+v, %v", r, err)
		}
	}
	e.flush()
	if got := types(since(e.stream(), n)); len(got) != 0 {
		t.Fatalf("refreshes emitted %v for an absence", got)
	}
	e.cycle(p)
	if got := types(since(e.stream(), n)); len(got) != 0 {
		t.Fatalf("first sweep after the refreshes emitted %v (the removal needs two sweeps)", got)
	}
	e.cycle(p)
	if got := types(since(e.stream(), n)); !slices.Equal(got, []string{"subscription.removed"}) {
		t.Fatalf("second sweep: %v, want the removal", got)
	}
}

// A refresh whose listing fails keeps the hint (for a retry) and emits
// nothing; a hint for a customer the watcher does not know is dropped.
func TestRefreshFailureKeepsHint(t *testing.T) {
	e := newEnv(t, 6)
	p := e.poller(nil)
	e.cycle(p)
	cust := e.sim.State().Customers[2].ID
	e.sim.Inject(pcsim.Rule{PathPrefix: "/v1/customers/" + cust + "/subscriptions", Status: 500, Times: 1 << 30})
	n := len(e.stream())
	h := e.hint(state.Hint{CustomerID: cust, FirstAt: e.clk.Now()})
	r, err := p.Refresh(context.Background(), h)
	if err != nil || r.Result != "failed" || r.Failure == nil {
		t.Fatalf("Refresh = %+v, %v", r, err)
	}
	e.flush()
	if got := types(since(e.stream(), n)); len(got) != 0 {
		t.Errorf("a failed refresh emitted %v", got)
	}
	if hs := e.hints(); len(hs) != 1 || hs[0].CustomerID != cust {
		t.Errorf("hints after a failed refresh: %+v", hs)
	}
	e.sim.ClearInjected()
	u := e.hint(state.Hint{CustomerID: "00000000-0000-0000-0000-00000000dead", FirstAt: e.clk.Now()})
	if r, err := p.Refresh(context.Background(), u); err != nil || r.Result != "unknown-customer" {
		t.Fatalf("unknown customer: %+v, %v", r, err)
	}
	if hs := e.hints(); len(hs) != 1 {
		t.Errorf("the unknown customer's hint was kept: %+v", hs)
	}
}

// RunHints picks up hints stored before it started and on a kick, and
// returns when its context ends.
func TestRunHints(t *testing.T) {
	e := newEnv(t, 6)
	p := e.poller(nil)
	e.cycle(p)
	custs := e.sim.State().Customers
	e.hint(state.Hint{CustomerID: custs[0].ID, FirstAt: e.clk.Now()})
	kick := make(chan struct{}, 1)
	done := make(chan Refreshed, 4)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- p.RunHints(ctx, poller.HintOptions{Kick: kick, Every: time.Hour, Refreshed: func(r poller.Refreshed) { done <- Refreshed(r) }})
	}()
	if r := <-done; r.CustomerID != custs[0].ID || r.Result != "ok" {
		t.Fatalf("first refresh %+v", r)
	}
	e.hint(state.Hint{CustomerID: custs[1].ID, FirstAt: e.clk.Now()})
	kick <- struct{}{}
	if r := <-done; r.CustomerID != custs[1].ID || r.Result != "ok" {
		t.Fatalf("kicked refresh %+v", r)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("RunHints = %v", err)
	}
	if hs := e.hints(); len(hs) != 0 {
		t.Errorf("hints left: %+v", hs)
	}
}

type Refreshed poller.Refreshed
