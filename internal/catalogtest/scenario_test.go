package catalogtest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natstest"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// The scenario's fixed inputs: together with the simulator's determinism
// they make every emitted event, and so docs/events.md, reproducible.
const (
	simSeed  = 42
	simToken = "catalog-test-token"
	// source is what the watcher derives for a partner tenant by default:
	// the Partner Center URL plus /tenants/<partner tenant id>.
	source = pc.GlobalBaseURL + "/tenants/4c2f9a7e-1b3d-4e5f-8a6b-7c8d9e0f1a2b"
)

// t0 is the business clock's start: a Monday morning.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Catalog offers the scenario buys ("product:sku:availability").
const (
	offerBusinessBasic    = "CFQ7TTC0LH18:0001:CFQ7TTC0P0WS"
	offerBusinessStandard = "CFQ7TTC0LDPB:0001:CFQ7TTC0K5QN"
	offerBusinessPremium  = "CFQ7TTC0LCHC:0002:CFQ7TTC0KTLS"
	offerO365E3           = "CFQ7TTC0LF8Q:0001:CFQ7TTC0M1X2"
	offerM365E3           = "CFQ7TTC0LFLZ:0001:CFQ7TTC0L9JB"
	offerExchangeP1       = "CFQ7TTC0LH16:0001:CFQ7TTC0QVQM"
	offerIntuneP1         = "CFQ7TTC0LHXL:0001:CFQ7TTC0LFKT"
	offerPremiumTrial     = "CFQ7TTC0LCHC:0002:CFQ7TTC0LF1R"
)

// hiddenProduct is the Software product that enters and leaves the
// catalog view of the main customer.
const (
	hiddenView    = "Software"
	hiddenProduct = "DG7GMGF0D5RK"
)

// example designates, for one type, the event docs/events.md shows: the
// first event of that type in outbox order that match accepts.
type example struct {
	match func(d *events.Data) bool
	how   string // what in the scenario produced it, for the reader
}

// outcome is what the scenario produced.
type outcome struct {
	// records are the events as JetStream stored them, in stream order
	// (Seq is the stream sequence, Entity the relay's ordering key).
	records []state.OutboxRecord
	// shrunk is the first event the relay published shrunk, shrunkSize
	// its size in the outbox.
	shrunk     *state.OutboxRecord
	shrunkSize int
	examples   map[events.Type]example
	// filters are NATS subject filters documented in docs/events.md with
	// the scenario's ids filled in, and which events they must match.
	filters []subjectFilter
	cycles  int
}

type subjectFilter struct {
	doc    string // as documented, with placeholders
	filter string // with the scenario's ids
	means  string
	want   func(info events.Info, d *events.Data) bool
}

// world is the system under test: the simulator behind an editing proxy,
// the real client, a real state file, the real poller and the real
// deadline evaluator, on a fake business clock and a fake wall clock for
// the client's waits.
type world struct {
	t      *testing.T
	ctx    context.Context
	biz    *clock.Fake // business time: simulator, poller, evaluator
	wall   *clock.Fake // the client's waits (rate limiter, backoff, Retry-After)
	sim    *pcsim.Sim
	proxy  *pcProxy
	client *pc.Client
	store  *state.Store
	poller *poller.Poller
	eval   *deadline.Evaluator
	// failing are customers expected to fail to poll.
	failing map[string]bool
	cycles  int
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, ctx: context.Background(), biz: clock.NewFake(t0), wall: clock.NewFake(t0), failing: map[string]bool{}}
	w.sim = pcsim.New(pcsim.Options{Seed: simSeed, Customers: 3, Clock: w.biz, Wall: w.wall, Token: simToken})
	w.proxy = newProxy(w.sim)
	srv := httptest.NewServer(w.proxy)
	t.Cleanup(srv.Close)
	var err error
	w.client, err = pc.New(pc.Options{
		BaseURL:     srv.URL,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: simToken}),
		HTTPClient:  srv.Client(),
		// The limiter never delays, so the only waits are the
		// backoff's, which keeps the retry count deterministic.
		RequestsPerMinute: 1e6,
		Burst:             1000,
		Clock:             w.wall,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			w.wall.Advance(d)
			return nil
		},
	})
	w.must(err, "partner center client")
	w.store, err = state.Open(filepath.Join(t.TempDir(), "pcwatch.db"), state.Options{})
	w.must(err, "state store")
	t.Cleanup(func() { _ = w.store.Close() })
	w.poller, err = poller.New(poller.Options{
		Client: w.client, Store: w.store, Clock: w.biz, Source: source,
		// One worker: commits, and so the outbox, in a fixed order.
		Concurrency: 1,
		Kinds:       []*resource.Kind{resource.Subscriptions, resource.ManagedServices, resource.Products},
		TargetViews: []string{"OnlineServices", hiddenView},
	})
	w.must(err, "poller")
	w.eval = &deadline.Evaluator{Store: w.store, Clock: w.biz, Source: source}
	return w
}

func (w *world) must(err error, what string, args ...any) {
	w.t.Helper()
	if err != nil {
		w.t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// advanceTo moves business time forward to at; the simulator applies the
// lifecycle transitions that fell due.
func (w *world) advanceTo(at time.Time) {
	w.t.Helper()
	d := at.Sub(w.biz.Now())
	if d < 0 {
		w.t.Fatalf("advanceTo %v: the clock already reads %v", at, w.biz.Now())
	}
	_, err := w.sim.AdvanceClock(d)
	w.must(err, "advancing the clock to %v", at)
}

// cycle runs one poll cycle and one deadline evaluation, as the watcher
// does on its two timers.
func (w *world) cycle() *poller.Report {
	w.t.Helper()
	rep, err := w.poller.Cycle(w.ctx)
	w.must(err, "poll cycle at %v", w.biz.Now())
	w.cycles++
	if !rep.CustomerListOK {
		w.t.Fatalf("cycle %d: customer list failed: %v", rep.Number, rep.CustomerList)
	}
	for _, f := range rep.Failures {
		if !w.failing[f.CustomerID] {
			w.t.Fatalf("cycle %d: customer %s failed unexpectedly: %v", rep.Number, f.CustomerID, f.Err)
		}
	}
	if len(rep.Failures) != len(w.failing) {
		w.t.Fatalf("cycle %d: %d customers failed, want %d", rep.Number, len(rep.Failures), len(w.failing))
	}
	_, err = w.eval.EvaluateOnce(w.ctx)
	w.must(err, "deadline evaluation at %v", w.biz.Now())
	return rep
}

// hinted stores a hint that customerID's subscription subID was changed
// by who, and runs the refresh it triggers, as the watcher's activity-log
// tail and hint loop do.
func (w *world) hinted(customerID, subID string, who *events.Actor) {
	w.t.Helper()
	h := state.Hint{CustomerID: customerID, Subscriptions: []string{subID}, FirstAt: w.biz.Now(), LastAt: w.biz.Now(),
		Origin: who.Source, Actors: map[string]*events.Actor{subID: who}}
	w.must(w.store.Commit(&state.Change{Hints: []state.Hint{h}}), "storing a hint")
	w.must(w.store.View(func(r *state.ReadTx) error { h, _, _ = r.Hint(customerID); return nil }), "reading the hint")
	r, err := w.poller.Refresh(w.ctx, h)
	w.must(err, "refresh of %s", customerID)
	if r.Result != "ok" {
		w.t.Fatalf("refresh of %s: %+v", customerID, r)
	}
}

func (w *world) buy(customerID string, spec pcsim.PurchaseSpec) string {
	w.t.Helper()
	id, err := w.sim.Purchase(customerID, spec)
	w.must(err, "purchase of %s", spec.OfferID)
	return id
}

func (w *world) customer(id string) pcsim.CustomerState {
	w.t.Helper()
	for _, c := range w.sim.State().Customers {
		if c.ID == id {
			return c
		}
	}
	w.t.Fatalf("customer %s not in the simulator", id)
	return pcsim.CustomerState{}
}

// commitmentEnd reads a subscription's commitment end the way the watcher
// does (commitmentEndDateTime, else commitmentEndDate).
func (w *world) commitmentEnd(customerID, subID string) time.Time {
	w.t.Helper()
	s, err := w.client.GetSubscription(w.ctx, customerID, subID)
	w.must(err, "reading subscription %s", subID)
	return s.CommitmentEnd().T
}

// runScenario drives the simulator through a script that makes the real
// producers emit every type of the catalog, and returns the outbox.
func runScenario(t *testing.T) *outcome {
	w := newWorld(t)
	out := &outcome{examples: map[events.Type]example{}}
	ex := func(typ events.Type, how string, match func(d *events.Data) bool) {
		out.examples[typ] = example{match: match, how: how}
	}
	sub := func(id string) func(d *events.Data) bool {
		return func(d *events.Data) bool { return d.SubscriptionID == id }
	}

	custs := w.sim.State().Customers
	if len(custs) < 3 {
		t.Fatalf("the simulator generated %d customers, want 3", len(custs))
	}
	// A carries the scripted changes, B loses most of its subscriptions at
	// once, C's subscription listing fails for a while.
	a, b, c := custs[0], custs[1], custs[2]

	// ---- t0: set the stage, then the first cycle: a silent baseline ----

	// A has Exchange and Skype for Business managed, not Intune.
	for _, svc := range []string{"Exchange", "MicrosoftCommunicationsOnline"} {
		if !slices.Contains(a.ManagedServices, svc) {
			w.must(w.sim.AddManagedService(a.ID, svc), "adding %s", svc)
		}
	}
	if slices.Contains(a.ManagedServices, "Intune") {
		w.must(w.sim.RemoveManagedService(a.ID, "Intune"), "removing Intune")
	}
	// B needs enough subscriptions for the mass-removal rule to apply.
	for n := len(b.Subscriptions); n < 5; n++ {
		w.buy(b.ID, pcsim.PurchaseSpec{OfferID: offerBusinessBasic, Quantity: 3})
	}
	// A's purchases; their seats and cancellation windows start now.
	p1y := func(offer, cycle string, qty int, name string) pcsim.PurchaseSpec {
		return pcsim.PurchaseSpec{OfferID: offer, Quantity: qty, TermDuration: "P1Y", BillingCycle: cycle, FriendlyName: name}
	}
	p1m := func(offer string, qty int, name string) pcsim.PurchaseSpec {
		return pcsim.PurchaseSpec{OfferID: offer, Quantity: qty, TermDuration: "P1M", FriendlyName: name}
	}
	sSeats := w.buy(a.ID, p1y(offerBusinessStandard, "monthly", 10, "Business Standard (HQ)"))
	sAuto := w.buy(a.ID, p1y(offerO365E3, "annual", 25, "Office 365 E3"))
	sStatus := w.buy(a.ID, p1m(offerExchangeP1, 3, "Exchange Online (Warehouse)"))
	sTerm := w.buy(a.ID, p1m(offerBusinessBasic, 10, "Business Basic (Sales)"))
	sClear := w.buy(a.ID, p1m(offerBusinessPremium, 5, "Business Premium (Finance)"))
	sAttn := w.buy(a.ID, p1m(offerIntuneP1, 20, "Intune Plan 1"))
	sRename := w.buy(a.ID, p1m(offerM365E3, 2, "Microsoft 365 E3"))
	sWindow := w.buy(a.ID, p1m(offerBusinessBasic, 4, "Business Basic (Engineering)"))
	sGone := w.buy(a.ID, p1m(offerBusinessBasic, 1, "Business Basic (Contractors)"))
	sTrial := w.buy(a.ID, pcsim.PurchaseSpec{OfferID: offerPremiumTrial})
	// One Software product is not in A's catalog yet.
	productPath := "/v1/customers/" + a.ID + "/products"
	w.proxy.set("product", itemEdit{path: productPath, targetView: hiddenView, itemID: hiddenProduct, hide: true})

	if rep := w.cycle(); rep.Events != 1 { // baseline: only the cycle summary
		t.Fatalf("baseline cycle emitted %d events, want 1 (ops.cycle-completed)", rep.Events)
	}

	// ---- t0+1h: one change of each kind ----
	w.advanceTo(t0.Add(time.Hour))
	sNew := w.buy(a.ID, p1y(offerBusinessPremium, "annual", 12, "Business Premium (Operations)"))
	ex(events.SubscriptionCreated, "`Purchase` of a Microsoft 365 Business Premium subscription for a known customer.", sub(sNew))
	w.must(w.sim.IncreaseSeats(a.ID, sSeats, 5), "increase seats")
	ex(events.SubscriptionQuantityChanged, "`IncreaseSeats` added 5 seats to an NCE subscription.", sub(sSeats))
	w.must(w.sim.SetAutoRenew(a.ID, sAuto, false), "auto-renew off")
	ex(events.SubscriptionAutoRenewChanged, "`SetAutoRenew(false)` on an annual subscription.", sub(sAuto))
	w.must(w.sim.Suspend(a.ID, sStatus), "suspend")
	ex(events.SubscriptionStatusChanged, "`Suspend` of an active subscription.", sub(sStatus))
	w.must(w.sim.ScheduleNextTerm(a.ID, sTerm, pcsim.NextTerm{TermDuration: "P1Y"}), "schedule next term")
	ex(events.SubscriptionScheduledChangeSet, "`ScheduleNextTerm`: renew the monthly subscription for a year.", sub(sTerm))
	w.must(w.sim.ScheduleNextTerm(a.ID, sClear, pcsim.NextTerm{Quantity: 8}), "schedule next term")
	w.must(w.sim.SetAttentionNeeded(a.ID, sAttn, true), "attention needed")
	ex(events.SubscriptionAttentionNeeded, "`SetAttentionNeeded(true)`.", sub(sAttn))
	w.must(w.sim.Rename(a.ID, sRename, "Microsoft 365 E3 (Finance)"), "rename")
	ex(events.SubscriptionUpdated, "`Rename`: the friendly name changed, which no more specific type reports.", sub(sRename))
	w.must(w.sim.RemoveSubscription(a.ID, sGone), "remove subscription")
	ex(events.SubscriptionRemoved, "`RemoveSubscription`; the event fired at the second listing without it.", sub(sGone))
	d := w.sim.AddCustomer()
	ex(events.CustomerAdded, "`AddCustomer` after the baseline.", func(x *events.Data) bool { return x.CustomerID == d })
	w.must(w.sim.AddManagedService(a.ID, "Intune"), "add managed service")
	ex(events.ManagedServiceAdded, "`AddManagedService(Intune)`.", func(x *events.Data) bool { return x.ManagedServiceID == "Intune" })
	w.must(w.sim.RemoveManagedService(a.ID, "Exchange"), "remove managed service")
	ex(events.ManagedServiceRemoved, "`RemoveManagedService(Exchange)`; the event fired at the second listing without it.",
		func(x *events.Data) bool { return x.ManagedServiceID == "Exchange" })
	// What the simulator has no operation for, Partner Center changes
	// behind the proxy: A's profile, a managed service's name, A's catalog.
	delegated := fmt.Sprintf(`"allowDelegatedAccess":%t`, a.AllowDelegatedAccess)
	w.proxy.set("customer", itemEdit{path: "/v1/customers", itemID: a.ID,
		old: delegated, new: fmt.Sprintf(`"allowDelegatedAccess":%t`, !a.AllowDelegatedAccess)})
	ex(events.CustomerUpdated, "Partner Center (the test's proxy in front of the simulator) reports a changed allowDelegatedAccess.",
		func(x *events.Data) bool { return x.CustomerID == a.ID })
	w.proxy.set("skype", itemEdit{path: "/v1/customers/" + a.ID + "/managedservices", itemID: "MicrosoftCommunicationsOnline",
		old: `"name":"SkypeforBusiness"`, new: `"name":"MicrosoftTeams"`})
	ex(events.ManagedServiceUpdated, "Partner Center (the test's proxy) renames a managed service.",
		func(x *events.Data) bool { return x.ManagedServiceID == "MicrosoftCommunicationsOnline" })
	w.proxy.drop("product")
	ex(events.ProductAdded, "A Software product appears in the customer's catalog view (the test's proxy had hidden it).",
		func(x *events.Data) bool { return x.ProductID == hiddenProduct })
	// C's subscription listing fails from now on: 503 with Retry-After,
	// retried by the client until its 3-minute budget is spent.
	w.sim.Inject(pcsim.Rule{PathPrefix: "/v1/customers/" + c.ID + "/subscriptions", Status: 503, RetryAfter: time.Minute, Times: 1000})
	w.failing[c.ID] = true
	ex(events.OpsCustomerPollFailed, "Persistent 503s (`Inject`) on one customer's subscription listing for three cycles.",
		func(x *events.Data) bool { return x.CustomerID == c.ID })
	ex(events.OpsCycleCompleted, "The second poll cycle, in which one customer failed.",
		func(x *events.Data) bool { return x.Cycle.Number == 2 })
	w.cycle()

	// ---- t0+2h ----
	w.advanceTo(t0.Add(2 * time.Hour))
	w.must(w.sim.ClearScheduledNextTerm(a.ID, sClear), "clear scheduled next term")
	ex(events.SubscriptionScheduledChangeCleared, "`ClearScheduledNextTerm`, found before the cycle by a refresh of the customer that an activity-log record triggered; the record named who did it (`actor`).", sub(sClear))
	w.hinted(a.ID, sClear, &events.Actor{UserPrincipalName: "admin@contoso-partner.example", OperationType: "update_subscription",
		OperationDate: w.biz.Now().Add(-time.Minute), Source: "activity-log"})
	w.must(w.sim.RemoveCustomer(d), "remove customer")
	ex(events.CustomerRemoved, "`RemoveCustomer`; the event fired at the second customer listing without it.",
		func(x *events.Data) bool { return x.CustomerID == d })
	w.proxy.set("product", itemEdit{path: productPath, targetView: hiddenView, itemID: hiddenProduct, hide: true})
	ex(events.ProductRemoved, "The product leaves the catalog view again; the event fired at the second listing without it.",
		func(x *events.Data) bool { return x.ProductID == hiddenProduct })
	w.cycle()

	// ---- t0+3h: B loses all subscriptions but one ----
	w.advanceTo(t0.Add(3 * time.Hour))
	bSubs := w.customer(b.ID).Subscriptions
	for _, s := range bSubs[1:] {
		w.must(w.sim.RemoveSubscription(b.ID, s.ID), "remove subscription of B")
	}
	ex(events.OpsMassRemovalHeld, fmt.Sprintf("`RemoveSubscription` of %d of a customer's %d subscriptions at once.", len(bSubs)-1, len(bSubs)),
		func(x *events.Data) bool { return x.CustomerID == b.ID })
	w.cycle() // C's third failure
	w.sim.ClearInjected()
	delete(w.failing, c.ID)

	// ---- t0+4h: everything polls again ----
	w.advanceTo(t0.Add(4 * time.Hour))
	w.cycle()

	// ---- the NCE deadlines of the purchases made at t0 ----
	cancelBy := t0.Add(pcsim.CancellationWindow)
	w.advanceTo(cancelBy.Add(-72 * time.Hour))
	ex(events.SubscriptionCancellationClosing, "The evaluator, 72 hours before the cancellation window of a subscription bought at t0 closes.",
		func(x *events.Data) bool { return x.SubscriptionID == sWindow && x.Threshold == "72h" })
	w.cycle()
	w.advanceTo(cancelBy.Add(-48 * time.Hour)) // the purchases' own seat batches
	w.cycle()
	w.advanceTo(t0.Add(time.Hour + pcsim.CancellationWindow - 48*time.Hour)) // the 5 seats added at t0+1h
	ex(events.SubscriptionRefundClosing, "The evaluator, 48 hours before the refund window of the 5 seats added by `IncreaseSeats` closes.",
		func(x *events.Data) bool { return x.SubscriptionID == sSeats && x.Quantity != nil && *x.Quantity == 5 })
	w.cycle()
	w.advanceTo(cancelBy)
	ex(events.SubscriptionCancellationClosed, "The evaluator, when the cancellation window it had seen open closed.", sub(sWindow))
	w.cycle()

	// ---- the trial's end, the first monthly renewal ----
	trialEnd := w.commitmentEnd(a.ID, sTrial)
	w.advanceTo(trialEnd.Add(-7 * 24 * time.Hour))
	ex(events.SubscriptionTrialEnding, "The evaluator, 7 days before a trial's commitment end.", sub(sTrial))
	w.cycle()
	w.advanceTo(w.commitmentEnd(a.ID, sWindow).Add(9*time.Hour + time.Second)) // the next morning
	ex(events.SubscriptionRenewed, "The simulator's lifecycle renewed a monthly subscription at its term end.", sub(sWindow))
	ex(events.SubscriptionTermChanged, "The renewal applied the scheduled next term (P1M to P1Y).", sub(sTerm))
	w.cycle()

	// ---- 30 days before the annual subscriptions end ----
	w.advanceTo(w.commitmentEnd(a.ID, sAuto).Add(-30 * 24 * time.Hour))
	ex(events.SubscriptionRenewalApproaching, "The evaluator, 30 days before the commitment end of an annual subscription whose auto-renew is off.", sub(sAuto))
	w.cycle()

	// ---- an hour later: values larger than NATS accepts ----
	w.advanceTo(w.biz.Now().Add(time.Hour))
	// A 1.2 MB friendly name: the event carries it twice (after and the
	// change) and is published shrunk.
	w.must(w.sim.Rename(a.ID, sRename, strings.Repeat("Finance and Operations ", 1_200_000/23)), "renaming to 1.2 MB")
	ex(events.OpsEventDropped, "A subscription gained 10,000 fields with long names at once (the test's proxy): the event has nothing to cut and is over 1 MiB.",
		func(x *events.Data) bool { return x.Dropped != nil })
	var fields strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&fields, `,"partnerCenterExtensionAttributeWithAVeryLongNameThatPartnerCenterMightAddSomeDay%05d":%d`, i, i)
	}
	w.proxy.set("wide", itemEdit{path: "/v1/customers/" + a.ID + "/subscriptions", itemID: sNew,
		old: `"id":"` + sNew + `"`, new: `"id":"` + sNew + `"` + fields.String()})
	w.cycle()

	if p := w.proxy.problems(); len(p) > 0 {
		t.Fatalf("proxy edits not applied:\n%s", p)
	}
	recs, err := w.store.OutboxRead(1 << 20)
	w.must(err, "reading the outbox")
	out.cycles = w.cycles
	out.records, out.shrunk = publishAll(t, w.store, len(recs))
	if out.shrunk == nil {
		t.Fatal("no event was published shrunk")
	}
	for _, r := range recs {
		if r.ID == out.shrunk.ID {
			out.shrunkSize = len(r.Body)
		}
	}

	out.filters = []subjectFilter{
		{"pcwatch.events.>", "pcwatch.events.>", "every change and deadline event",
			func(in events.Info, _ *events.Data) bool { return in.Resource != events.ResourceOps }},
		{"pcwatch.events.subscription.>", "pcwatch.events.subscription.>", "every subscription event, of every customer",
			func(in events.Info, _ *events.Data) bool { return in.Resource == events.ResourceSubscription }},
		{"pcwatch.events.subscription.quantity-changed.>", "pcwatch.events.subscription.quantity-changed.>", "seat changes only",
			func(in events.Info, _ *events.Data) bool { return in.Type == events.SubscriptionQuantityChanged }},
		{"pcwatch.events.*.*.<customerId>.>", "pcwatch.events.*.*." + events.SubjectToken(a.ID) + ".>",
			"every subscription, managed-service and product event of one customer (not its customer.* events: they have no resource token)",
			func(in events.Info, d *events.Data) bool {
				return d.CustomerID == a.ID && in.Resource != events.ResourceOps && in.Resource != events.ResourceCustomer
			}},
		{"pcwatch.events.customer.*.<customerId>", "pcwatch.events.customer.*." + events.SubjectToken(a.ID),
			"the customer.* events of one customer",
			func(in events.Info, d *events.Data) bool {
				return d.CustomerID == a.ID && in.Resource == events.ResourceCustomer
			}},
		{"pcwatch.events.subscription.*.<customerId>.<subscriptionId>",
			"pcwatch.events.subscription.*." + events.SubjectToken(a.ID) + "." + events.SubjectToken(sSeats),
			"everything about one subscription",
			func(_ events.Info, d *events.Data) bool { return d.SubscriptionID == sSeats }},
		{"pcwatch.ops.>", "pcwatch.ops.>", "operational events",
			func(in events.Info, _ *events.Data) bool { return in.Resource == events.ResourceOps }},
	}
	return out
}

// publishAll publishes the outbox as the watcher does: the real relay onto
// PCWATCH_EVENTS on an in-process nats-server with the default limits
// (max_payload 1 MiB). It returns the stream's messages as records, and the
// first one that was published shrunk.
func publishAll(t *testing.T, store *state.Store, want int) ([]state.OutboxRecord, *state.OutboxRecord) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := natsconn.Connect(natsconn.Options{URL: ns.ClientURL(), Name: "catalogtest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	natstest.EnsureEvents(t, nc, stream.Options{Memory: true})
	rel, err := relay.New(relay.Options{Conn: nc, Outbox: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if n, err := rel.Flush(ctx); err != nil || n != want {
		t.Fatalf("relay published %d of %d events: %v", n, want, err)
	}
	var (
		recs   []state.OutboxRecord
		shrunk *state.OutboxRecord
	)
	for _, m := range natstest.ReadStream(t, nc, stream.Name) {
		ev, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("stream message %d: %v", m.Sequence, err)
		}
		d, err := ev.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		info, _ := events.Lookup(ev.Type)
		rec := state.OutboxRecord{Seq: m.Sequence, Envelope: events.Envelope{ID: m.Header.Get(jetstream.MsgIDHeader),
			Subject: m.Subject, Entity: events.EntityKey(info.Resource, d), Body: m.Data}}
		if len(d.Truncated) > 0 && shrunk == nil {
			shrunk = &rec
		}
		recs = append(recs, rec)
	}
	return recs, shrunk
}
