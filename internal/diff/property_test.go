package diff_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/state"
)

// world is a simulator, a client to it, and a real state file: enough to
// run the same listing-diff-commit steps the poller runs.
type world struct {
	t      testing.TB
	sim    *pcsim.Sim
	clk    *clock.Fake
	client *pc.Client
	store  *state.Store
	opts   diff.Options
}

func newWorld(t testing.TB, seed int64, customers int) *world {
	clk := clock.NewFake(time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: seed, Customers: customers, Clock: clk, Token: "t"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := pc.New(pc.Options{BaseURL: srv.URL, HTTPClient: srv.Client(), RequestsPerMinute: 1e6, Burst: 1000,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &world{t: t, sim: sim, clk: clk, client: c, store: st,
		opts: diff.Options{Source: "https://pc.test", CreatedOnFirstSighting: true, MassRemovalShare: 1}}
}

// poll runs one complete cycle and returns the events it committed, in
// commit order (drained from the outbox).
func (w *world) poll() []*events.Event {
	w.t.Helper()
	ctx := context.Background()
	o := w.opts
	o.Now = w.clk.Now()
	custs, err := w.client.ListCustomers(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := diff.CommitCustomerList(w.store, diff.Customers(custs), o, nil); err != nil {
		w.t.Fatal(err)
	}
	for _, c := range custs {
		subs, err := w.client.ListSubscriptions(ctx, c.ID, pc.SubscriptionFilter{})
		if err != nil {
			w.t.Fatal(err)
		}
		ms, err := w.client.ListManagedServices(ctx, c.ID)
		if err != nil {
			w.t.Fatal(err)
		}
		l := &diff.Listing{CustomerID: c.ID, CustomerName: c.CompanyProfile.CompanyName,
			Kinds:    []state.Kind{state.KindSubscription, state.KindManagedService},
			Entities: append(diff.Subscriptions(subs), diff.ManagedServices(ms)...)}
		if _, err := diff.CommitCustomer(w.store, l, o); err != nil {
			w.t.Fatal(err)
		}
	}
	recs, err := w.store.OutboxRead(1 << 20)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []*events.Event
	var seqs []uint64
	for _, r := range recs {
		ev, err := events.Decode(r.Body)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, ev)
		seqs = append(seqs, r.Seq)
	}
	if err := w.store.OutboxDelete(seqs); err != nil {
		w.t.Fatal(err)
	}
	return out
}

type subModel struct {
	quantity  int
	status    string
	autoRenew bool
}

// model is what a consumer that applies every event in order knows.
type model struct {
	customers map[string]bool
	subs      map[string]subModel // customer/sub
	services  map[string]bool     // customer/service
	seen      map[string]string   // event id -> description
	revs      map[string]string   // entity/type/revision -> event id
}

func newModel() *model {
	return &model{customers: map[string]bool{}, subs: map[string]subModel{}, services: map[string]bool{},
		seen: map[string]string{}, revs: map[string]string{}}
}

func (m *model) apply(t testing.TB, ev *events.Event) {
	t.Helper()
	d, err := ev.DecodeData()
	if err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf("%s %s rev %d", ev.Type, ev.Subject, d.Revision)
	if prev, ok := m.seen[ev.ID]; ok {
		t.Fatalf("event id %s reported twice: %s and %s", ev.ID, prev, desc)
	}
	m.seen[ev.ID] = desc
	tr := fmt.Sprintf("%s|%s|%d", ev.Subject, ev.Type, d.Revision)
	if prev, ok := m.revs[tr]; ok && ev.Type != events.OpsMassRemovalHeld {
		t.Fatalf("transition %s reported twice (events %s and %s)", tr, prev, ev.ID)
	}
	m.revs[tr] = ev.ID
	sk := d.CustomerID + "/" + d.SubscriptionID
	cur, known := m.subs[sk]
	need := func(what string, ok bool) {
		if !ok {
			t.Fatalf("%s: %s does not follow from the state the earlier events built (%+v, known %v)", desc, what, cur, known)
		}
	}
	switch ev.Type {
	case events.CustomerAdded:
		m.customers[d.CustomerID] = true
	case events.CustomerRemoved:
		need("customer exists", m.customers[d.CustomerID])
		delete(m.customers, d.CustomerID)
		for k := range m.subs {
			if strings.HasPrefix(k, d.CustomerID+"/") {
				delete(m.subs, k)
			}
		}
		for k := range m.services {
			if strings.HasPrefix(k, d.CustomerID+"/") {
				delete(m.services, k)
			}
		}
	case events.SubscriptionCreated:
		need("new subscription", !known)
		m.subs[sk] = subModel{*d.After.Quantity, d.After.Status, *d.After.AutoRenewEnabled}
	case events.SubscriptionRemoved:
		need("subscription exists", known)
		delete(m.subs, sk)
	case events.SubscriptionQuantityChanged:
		need("old quantity "+string(d.Old), known && fmt.Sprint(cur.quantity) == string(d.Old) && *d.Delta == *d.After.Quantity-cur.quantity)
		cur.quantity = *d.After.Quantity
		m.subs[sk] = cur
	case events.SubscriptionStatusChanged:
		need("old status "+string(d.Old), known && `"`+cur.status+`"` == string(d.Old))
		cur.status = d.After.Status
		m.subs[sk] = cur
	case events.SubscriptionAutoRenewChanged:
		need("old auto-renew "+string(d.Old), known && fmt.Sprint(cur.autoRenew) == string(d.Old))
		cur.autoRenew = *d.After.AutoRenewEnabled
		m.subs[sk] = cur
	case events.ManagedServiceAdded:
		m.services[d.CustomerID+"/"+d.ManagedServiceID] = true
	case events.ManagedServiceRemoved:
		need("service exists", m.services[d.CustomerID+"/"+d.ManagedServiceID])
		delete(m.services, d.CustomerID+"/"+d.ManagedServiceID)
	default:
		if strings.HasPrefix(string(ev.Type), "io.pcwatch.subscription.") {
			need("subscription exists", known)
			if a := d.After; a != nil && (*a.Quantity != cur.quantity || a.Status != cur.status || *a.AutoRenewEnabled != cur.autoRenew) {
				t.Fatalf("%s: after %+v contradicts the state built so far %+v", desc, *a, cur)
			}
		}
	}
}

func (m *model) compare(t testing.TB, st pcsim.State) {
	t.Helper()
	var problems []string
	truth := map[string]bool{}
	for _, c := range st.Customers {
		truth[c.ID] = true
		if !m.customers[c.ID] {
			problems = append(problems, "customer "+c.ID+" exists but no event added it")
		}
		for _, s := range c.Subscriptions {
			k := c.ID + "/" + s.ID
			got, ok := m.subs[k]
			want := subModel{s.Quantity, s.Status, s.AutoRenewEnabled}
			if !ok {
				problems = append(problems, fmt.Sprintf("subscription %s (%s) exists but events never created it", k, s.OfferName))
			} else if got != want {
				problems = append(problems, fmt.Sprintf("subscription %s: events say %+v, simulator has %+v", k, got, want))
			}
			truth[k] = true
		}
		for _, ms := range c.ManagedServices {
			k := c.ID + "/" + ms
			if !m.services[k] {
				problems = append(problems, "managed service "+k+" exists but no event added it")
			}
			truth["ms:"+k] = true
		}
	}
	for id := range m.customers {
		if !truth[id] {
			problems = append(problems, "customer "+id+" was removed but no event said so")
		}
	}
	for k := range m.subs {
		if !truth[k] {
			problems = append(problems, "subscription "+k+" was removed but no event said so")
		}
	}
	for k := range m.services {
		if !truth["ms:"+k] {
			problems = append(problems, "managed service "+k+" was removed but no event said so")
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Fatalf("events applied to the baseline do not give the simulator's state (%d problems):\n%s", len(problems), strings.Join(problems[:min(20, len(problems))], "\n"))
	}
}

// TestEventsReplayToState is the property test: for random sequences of
// simulator mutations (explicit, random and lifecycle, with the clock
// moving), the events emitted, applied in order to the previous state, give
// exactly the new state, and no event or transition is reported twice.
func TestEventsReplayToState(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			w := newWorld(t, seed, 25)
			m := newModel()
			for _, ev := range w.poll() {
				m.apply(t, ev)
			}
			m.compare(t, w.sim.State())
			types := map[events.Type]int{}
			for round := 0; round < 12; round++ {
				w.sim.RandomMutations(15)
				w.clk.Advance(time.Duration(1+round%4) * 24 * time.Hour)
				// Two complete listings with nothing changing in between:
				// enough for removals to be confirmed.
				evs := append(w.poll(), w.poll()...)
				for _, ev := range evs {
					m.apply(t, ev)
					types[ev.Type]++
				}
				m.compare(t, w.sim.State())
			}
			for _, want := range []events.Type{events.SubscriptionQuantityChanged, events.SubscriptionStatusChanged,
				events.SubscriptionAutoRenewChanged, events.SubscriptionCreated, events.SubscriptionRenewed} {
				if types[want] == 0 {
					t.Errorf("the random sequence never produced %s (got %v); the property is not exercised", want, types)
				}
			}
			keys := make([]string, 0, len(types))
			for k, v := range types {
				keys = append(keys, fmt.Sprintf("%s=%d", strings.TrimPrefix(string(k), "io.pcwatch."), v))
			}
			slices.Sort(keys)
			t.Logf("events checked: %s", strings.Join(keys, " "))
		})
	}
}
