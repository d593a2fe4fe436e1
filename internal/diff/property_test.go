package diff_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/oracle"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/resource"
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
	if _, err := diff.CommitCustomerList(w.store, resource.CustomerEntities(custs), o, nil); err != nil {
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
			Kinds:    []*resource.Kind{resource.Subscriptions, resource.ManagedServices},
			Entities: append(resource.SubscriptionEntities(subs), resource.ManagedServiceEntities(ms)...)}
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

// model wraps oracle.Model, the same model the chaos suite replays the
// stream into: it fails the test at the first problem.
type model struct{ m *oracle.Model }

func newModel() *model { return &model{m: oracle.NewModel()} }

// apply applies one event to the state built so far: typed old values and
// views must match it, and no event id, (entity, type, revision) or
// revision may repeat or be skipped.
func (m *model) apply(t testing.TB, ev *events.Event) {
	t.Helper()
	e, err := oracle.FromEvent(0, ev)
	if err != nil {
		t.Fatal(err)
	}
	if problems := m.m.Apply(e); len(problems) > 0 {
		t.Fatalf("%s", strings.Join(problems, "\n"))
	}
}

// compare applies what is still pending and compares the model with the
// simulator's state.
func (m *model) compare(t testing.TB, st pcsim.State) {
	t.Helper()
	if problems := m.m.Compare(st); len(problems) > 0 {
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
