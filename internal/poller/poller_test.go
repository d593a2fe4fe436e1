package poller_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natstest"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// env is the real thing, in one process: the simulator over HTTP, the
// client, a bbolt state file, an in-process nats-server with JetStream and
// the outbox relay.
type env struct {
	t      *testing.T
	sim    *pcsim.Sim
	clk    *clock.Fake
	client *pc.Client
	store  *state.Store
	nc     *nats.Conn
	relay  *relay.Relay
	dir    string
}

func newEnv(t *testing.T, customers int) *env {
	t.Helper()
	e := &env{t: t, clk: clock.NewFake(start), dir: t.TempDir()}
	e.sim = pcsim.New(pcsim.Options{Seed: 11, Customers: customers, Clock: e.clk, Token: "tok"})
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	var err error
	e.client, err = pc.New(pc.Options{BaseURL: srv.URL, HTTPClient: srv.Client(), RequestsPerMinute: 1e6, Burst: 1000,
		RetryBudget: 200 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
	if err != nil {
		t.Fatal(err)
	}
	e.nc = natstest.Connect(t, natstest.Start(t).ClientURL())
	natstest.EnsureEvents(t, e.nc, stream.Options{})
	e.open()
	return e
}

// open (re)opens the state file and the relay, as a restarted watcher does.
func (e *env) open() {
	st, err := state.Open(filepath.Join(e.dir, state.FileName), state.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	e.store = st
	e.relay, err = relay.New(relay.Options{Conn: e.nc, Outbox: st})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) poller(mod func(*poller.Options)) *poller.Poller {
	o := poller.Options{Client: e.client, Store: e.store, Clock: e.clk, Source: "https://pc.test", Concurrency: 4,
		Kinds: []*resource.Kind{resource.Subscriptions, resource.ManagedServices}}
	if mod != nil {
		mod(&o)
	}
	p, err := poller.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) cycle(p *poller.Poller) *poller.Report {
	e.t.Helper()
	rep, err := p.Cycle(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	e.flush()
	return rep
}

func (e *env) flush() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.relay.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}

type got struct {
	subject string
	ev      *events.Event
	data    *events.Data
}

// stream returns everything in PCWATCH_EVENTS, in order.
func (e *env) stream() []got {
	e.t.Helper()
	var out []got
	for _, m := range natstest.ReadStream(e.t, e.nc, stream.Name) {
		ev, err := events.Decode(m.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.ID {
			e.t.Fatalf("Nats-Msg-Id %q != event id %s", m.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
		d, _ := ev.DecodeData()
		out = append(out, got{m.Subject, ev, d})
	}
	return out
}

func since(all []got, n int) []got { return all[n:] }

func types(gs []got) []string {
	var out []string
	for _, g := range gs {
		if g.ev.Type != events.OpsCycleCompleted {
			out = append(out, strings.TrimPrefix(string(g.ev.Type), "io.pcwatch."))
		}
	}
	sort.Strings(out)
	return out
}

// pick finds a customer with an active NCE subscription inside its
// cancellation window (where seats can go down and it can be cancelled).
func pick(t *testing.T, sim *pcsim.Sim, n int) []pcsim.SubscriptionState {
	var out []pcsim.SubscriptionState
	for _, c := range sim.State().Customers {
		for _, s := range c.Subscriptions {
			if s.Status == "active" && s.CancellationAllowedUntil != nil && s.CancellationAllowedUntil.After(sim.Now().Add(48*time.Hour)) && !s.IsTrial {
				out = append(out, s)
				break
			}
		}
		if len(out) == n {
			return out
		}
	}
	t.Fatalf("dataset has fewer than %d customers with an open NCE window", n)
	return nil
}

func custOf(sim *pcsim.Sim, subID string) string {
	for _, c := range sim.State().Customers {
		for _, s := range c.Subscriptions {
			if s.ID == subID {
				return c.ID
			}
		}
	}
	return ""
}

func TestMutationsBecomeEventsWithinOneCycle(t *testing.T) {
	e := newEnv(t, 30)
	p := e.poller(nil)
	rep := e.cycle(p)
	if !rep.Complete() || rep.OK != 30 {
		t.Fatalf("baseline cycle: %+v", rep)
	}
	base := len(e.stream())
	for _, g := range e.stream() {
		if g.ev.Type != events.OpsCycleCompleted && !strings.Contains(string(g.ev.Type), "window") && !strings.Contains(string(g.ev.Type), "ending") && !strings.Contains(string(g.ev.Type), "approaching") {
			t.Errorf("baseline cycle emitted %s; the first listing must be silent", g.ev.Type)
		}
	}

	subs := pick(t, e.sim, 4)
	c0, c1, c2, c3 := custOf(e.sim, subs[0].ID), custOf(e.sim, subs[1].ID), custOf(e.sim, subs[2].ID), custOf(e.sim, subs[3].ID)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.sim.IncreaseSeats(c0, subs[0].ID, 3))
	must(e.sim.Suspend(c1, subs[1].ID))
	must(e.sim.SetAutoRenew(c2, subs[2].ID, false))
	newID, err := e.sim.Purchase(c3, pcsim.PurchaseSpec{Quantity: 7})
	must(err)
	must(e.sim.RemoveSubscription(c3, subs[3].ID))

	if rep := e.cycle(p); !rep.Complete() {
		t.Fatalf("cycle after the mutations: %+v", rep.Failures)
	}
	evs := since(e.stream(), base)
	want := []string{"subscription.auto-renew-changed", "subscription.created", "subscription.quantity-changed", "subscription.status-changed"}
	if got := types(evs); !slices.Equal(got, want) {
		t.Fatalf("events of the cycle after the mutations = %v, want %v", got, want)
	}
	for _, g := range evs {
		d := g.data
		switch g.ev.Type {
		case events.SubscriptionQuantityChanged:
			if d.SubscriptionID != subs[0].ID || string(d.Old) != fmt.Sprint(subs[0].Quantity) || *d.Delta != 3 ||
				g.subject != "pcwatch.events.subscription.quantity-changed."+c0+"."+subs[0].ID {
				t.Errorf("quantity event: subject %s data %+v", g.subject, d)
			}
		case events.SubscriptionStatusChanged:
			if d.SubscriptionID != subs[1].ID || string(d.New) != `"suspended"` {
				t.Errorf("status event: %+v", d)
			}
		case events.SubscriptionAutoRenewChanged:
			if d.SubscriptionID != subs[2].ID || string(d.New) != "false" {
				t.Errorf("auto-renew event: %+v", d)
			}
		case events.SubscriptionCreated:
			if d.SubscriptionID != newID || *d.After.Quantity != 7 {
				t.Errorf("created event: %+v", d)
			}
		}
		if d.CustomerName == "" && g.ev.Type != events.OpsCycleCompleted {
			t.Errorf("%s lacks the customer name", g.ev.Type)
		}
	}
	// The removal needs a second complete listing.
	n := len(e.stream())
	e.cycle(p)
	if got := types(since(e.stream(), n)); !slices.Equal(got, []string{"subscription.removed"}) {
		t.Fatalf("second cycle events = %v, want the removal", got)
	}
	last := e.stream()[len(e.stream())-1]
	if last.ev.Type != events.OpsCycleCompleted || last.data.Cycle.Number != 3 || last.data.Cycle.CustomersOK != 30 {
		t.Errorf("cycle summary = %+v", last.data.Cycle)
	}
}

func TestFailingCustomerEmitsNoRemovals(t *testing.T) {
	e := newEnv(t, 12)
	p := e.poller(func(o *poller.Options) { o.FailureThreshold = 2 })
	e.cycle(p)
	victim := e.sim.State().Customers[3]
	// Its subscriptions listing fails persistently (5xx after retries).
	e.sim.Inject(pcsim.Rule{PathPrefix: "/v1/customers/" + victim.ID + "/subscriptions", Status: 500, Times: 1 << 30})
	n := len(e.stream())
	var reps []*poller.Report
	for i := 0; i < 4; i++ {
		reps = append(reps, e.cycle(p))
	}
	for i, r := range reps {
		if len(r.Failures) != 1 || r.Failures[0].CustomerID != victim.ID || r.Failures[0].Kinds[0] != resource.Subscriptions {
			t.Fatalf("cycle %d failures = %+v", i, r.Failures)
		}
		if !errors.Is(r.Failures[0].Err, pc.ErrServer) {
			t.Errorf("failure error = %v", r.Failures[0].Err)
		}
	}
	var failed []*events.PollFailure
	for _, g := range since(e.stream(), n) {
		switch g.ev.Type {
		case events.SubscriptionRemoved, events.CustomerRemoved:
			t.Errorf("a failing listing produced %s for %s", g.ev.Type, g.data.CustomerID)
		case events.OpsCustomerPollFailed:
			failed = append(failed, g.data.Failure)
			if g.data.CustomerID != victim.ID || g.subject != "pcwatch.ops.customer-poll-failed" {
				t.Errorf("poll-failed event for %s on %s", g.data.CustomerID, g.subject)
			}
		}
	}
	if len(failed) != 2 || failed[0].ConsecutiveFailures != 2 || failed[1].ConsecutiveFailures != 4 || !strings.Contains(failed[0].LastError, "HTTP 500") {
		t.Fatalf("customer-poll-failed events = %+v; want one at 2 and one at 4 failures", failed)
	}
	// Managed services of the victim were still listed and diffed.
	if reps[0].OK != 11 {
		t.Errorf("OK customers = %d, want 11", reps[0].OK)
	}

	// The customer list failing mid-way removes nobody; known customers are
	// still polled.
	e.sim.ClearInjected()
	e.sim.SetFaults(pcsim.Faults{FailCustomerPage: pcsim.PageFault{Page: 1, Times: -1, Status: 503}})
	n = len(e.stream())
	p3, _ := poller.New(poller.Options{Client: &smallPages{e.client}, Store: e.store, Clock: e.clk, Source: "https://pc.test",
		Kinds: []*resource.Kind{resource.Subscriptions}})
	for i := 0; i < 2; i++ {
		rep, err := p3.Cycle(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.CustomerListOK || rep.CustomerList == nil || rep.OK != 12 {
			t.Fatalf("failed customer list: ok=%v err=%v polled ok=%d", rep.CustomerListOK, rep.CustomerList, rep.OK)
		}
	}
	e.flush()
	for _, g := range since(e.stream(), n) {
		if g.ev.Type == events.CustomerRemoved || g.ev.Type == events.SubscriptionRemoved {
			t.Errorf("a failed customer listing produced %s", g.ev.Type)
		}
	}
}

// smallPages makes the customer listing span several pages (the client's
// page size is 500 and the dataset is small).
type smallPages struct{ *pc.Client }

func (s *smallPages) ListCustomers(ctx context.Context) ([]pc.Customer, error) {
	c, err := pc.New(pc.Options{BaseURL: s.BaseURL(), PageSize: 5, RequestsPerMinute: 1e6, Burst: 1000, RetryBudget: 200 * time.Millisecond,
		RetryInitial: time.Millisecond, RetryMax: time.Millisecond, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
	if err != nil {
		return nil, err
	}
	return c.ListCustomers(ctx)
}

type cancelAfter struct {
	n      int64
	polled atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) CustomerPolled(bool) {
	if c.polled.Add(1) == c.n {
		c.cancel()
	}
}
func (c *cancelAfter) EventsEmitted(events.Type, int) {}
func (c *cancelAfter) CycleCompleted(*poller.Report)  {}

// TestRestartMidCycle: a watcher stopped in the middle of a cycle and
// restarted on the same state file produces exactly the events of a run
// that was never interrupted: no gaps, no doubles.
func TestRestartMidCycle(t *testing.T) {
	run := func(interrupt bool) map[string]string {
		e := newEnv(t, 20)
		e.cycle(e.poller(nil))
		e.sim.RandomMutations(40)
		e.clk.Advance(36 * time.Hour)
		if interrupt {
			ctx, cancel := context.WithCancel(context.Background())
			ca := &cancelAfter{n: 7, cancel: cancel}
			p := e.poller(func(o *poller.Options) { o.Metrics = ca; o.Concurrency = 2 })
			if _, err := p.Cycle(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted cycle: %v", err)
			}
			// Restart: reopen the state file with a new poller and relay.
			e.store.Close()
			e.open()
		}
		p := e.poller(nil)
		e.cycle(p)
		e.cycle(p) // confirms removals
		out := map[string]string{}
		for _, g := range e.stream() {
			if g.ev.Type == events.OpsCycleCompleted {
				continue
			}
			if prev, dup := out[g.ev.ID]; dup {
				t.Fatalf("event %s stored twice (%s)", g.ev.ID, prev)
			}
			out[g.ev.ID] = string(g.ev.Type) + " " + g.ev.Subject
		}
		return out
	}
	clean, interrupted := run(false), run(true)
	for id, d := range clean {
		if _, ok := interrupted[id]; !ok {
			t.Errorf("the interrupted run lost %s", d)
		}
	}
	for id, d := range interrupted {
		if _, ok := clean[id]; !ok {
			t.Errorf("the interrupted run invented %s", d)
		}
	}
	if len(clean) < 10 {
		t.Fatalf("only %d events; the mutations did not exercise the test", len(clean))
	}
}
