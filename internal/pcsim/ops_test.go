package pcsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// changedKeys lists the top-level properties that differ between two
// renderings.
func changedKeys(t *testing.T, a, b []byte) []string {
	t.Helper()
	ma, mb := topLevel(t, a), topLevel(t, b)
	var out []string
	for k, v := range mb {
		if !bytes.Equal(ma[k], v) {
			out = append(out, k)
		}
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// checkLogged asserts that the log grew by exactly one entry of op whose
// Changed matches what the API rendering shows changed.
func checkLogged(t *testing.T, s *Sim, since uint64, op, custID, subID string, before []byte) Mutation {
	t.Helper()
	log := s.Log(since)
	if len(log) != 1 {
		t.Fatalf("want 1 mutation, got %d: %+v", len(log), log)
	}
	m := log[0]
	if m.Op != op || m.CustomerID != custID || m.ResourceID != subID || m.Cause != CauseExplicit || m.Seq != since+1 || !m.At.Equal(s.Now()) {
		t.Fatalf("mutation %+v, want op %s on %s/%s at %v", m, op, custID, subID, s.Now())
	}
	if before != nil {
		after := mustGet(t, s, "/v1/customers/"+custID+"/subscriptions/"+subID)
		if got, want := sorted(m.Changed), changedKeys(t, before, after); !slices.Equal(got, want) {
			t.Fatalf("Changed %v, rendering changed %v", got, want)
		}
	}
	return m
}

func seq(s *Sim) uint64 { return s.State().Seq }

func subURL(c, sub string) string { return "/v1/customers/" + c + "/subscriptions/" + sub }

func getSub(t *testing.T, s *Sim, c, sub string) pc.Subscription {
	t.Helper()
	return decode[pc.Subscription](t, mustGet(t, s, subURL(c, sub)))
}

func TestSeatRules(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 2, Customers: 20})
	cust := s.State().Customers[0].ID
	id, err := s.Purchase(cust, PurchaseSpec{OfferID: "CFQ7TTC0LDPB:0001:CFQ7TTC0K5QN", Quantity: 10, TermDuration: "P1Y", BillingCycle: "annual"})
	if err != nil {
		t.Fatal(err)
	}
	sub := getSub(t, s, cust, id)
	if sub.Quantity != 10 || !sub.CancellationAllowedUntilDate.T.Equal(t0.Add(168*time.Hour)) || sub.RefundableQuantity.TotalQuantity != 10 ||
		sub.TermDuration != "P1Y" || !sub.BillingCycle.Is(pc.BillingCycleAnnual) || sub.CommitmentEndDate.Raw != "2026-05-31T00:00:00Z" {
		t.Fatalf("purchase: %s", sub.Raw)
	}
	if m := s.Log(0); len(m) != 1 || m[0].Op != "subscription.created" {
		t.Fatalf("purchase log: %+v", m)
	}

	// Inside the window any decrease (to at least one seat) is allowed.
	clk.Advance(24 * time.Hour)
	before := mustGet(t, s, subURL(cust, id))
	n := seq(s)
	if err := s.DecreaseSeats(cust, id, 4); err != nil {
		t.Fatal(err)
	}
	m := checkLogged(t, s, n, "subscription.quantity", cust, id, before)
	if m.Old != 10 || m.New != 6 {
		t.Fatalf("old/new %v/%v", m.Old, m.New)
	}
	if err := s.DecreaseSeats(cust, id, 6); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("decrease to zero: %v", err)
	}

	// After the window: an increase opens a refundable batch of its own.
	clk.Advance(7 * 24 * time.Hour)
	if got := getSub(t, s, cust, id).RefundableQuantity; got.TotalQuantity != 0 || len(got.Details) != 0 {
		t.Fatalf("refundable after window: %+v", got)
	}
	var re *RuleError
	if err := s.DecreaseSeats(cust, id, 1); !errors.As(err, &re) || re.Code != 800090 || !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("decrease outside every window: %v", err)
	}
	before = mustGet(t, s, subURL(cust, id))
	n = seq(s)
	if err := s.IncreaseSeats(cust, id, 3); err != nil {
		t.Fatal(err)
	}
	checkLogged(t, s, n, "subscription.quantity", cust, id, before)
	clk.Advance(time.Hour)
	if err := s.IncreaseSeats(cust, id, 2); err != nil {
		t.Fatal(err)
	}
	rq := getSub(t, s, cust, id).RefundableQuantity
	if rq.TotalQuantity != 5 || len(rq.Details) != 2 || rq.Details[1].Quantity != 2 ||
		!rq.Details[1].AllowedUntilDateTime.T.Equal(s.Now().Add(168*time.Hour)) {
		t.Fatalf("refundable after increases: %+v", rq)
	}
	if err := s.DecreaseSeats(cust, id, 6); !errors.As(err, &re) || re.Code != 800090 {
		t.Fatalf("decrease beyond refundable: %v", err)
	}
	// Newest batch first: 3 seats take the 2-seat batch and 1 of the 3-seat one.
	if err := s.DecreaseSeats(cust, id, 3); err != nil {
		t.Fatal(err)
	}
	rq = getSub(t, s, cust, id).RefundableQuantity
	if rq.TotalQuantity != 2 || len(rq.Details) != 1 || rq.Details[0].Quantity != 2 {
		t.Fatalf("refundable after consuming newest first: %+v", rq)
	}
	// The remaining batch expires 168h after its increase.
	clk.Advance(166 * time.Hour)
	if getSub(t, s, cust, id).RefundableQuantity.TotalQuantity != 2 {
		t.Fatal("batch expired early")
	}
	n = seq(s)
	clk.Advance(time.Hour)
	got := getSub(t, s, cust, id)
	if got.RefundableQuantity.TotalQuantity != 0 || got.Quantity != 8 {
		t.Fatalf("after expiry: %s", got.Raw)
	}
	exp := s.Log(n)
	if len(exp) != 1 || exp[0].Op != "subscription.refundable" || exp[0].Cause != CauseLifecycle || exp[0].Old != 2 || exp[0].New != 0 ||
		!exp[0].At.Equal(t0.Add(24*time.Hour+7*24*time.Hour+168*time.Hour)) {
		t.Fatalf("expiry log: %+v", exp)
	}

	// Trials and the Azure plan have no seats to change; bad arguments fail.
	trial, _ := s.Purchase(cust, PurchaseSpec{OfferID: trialOffers[0].id})
	azureCust, azure := findSub(t, s, func(_ CustomerState, x SubscriptionState) bool {
		return x.Kind == KindAzurePlan && x.Status == "active"
	})
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"trial increase", s.IncreaseSeats(cust, trial, 1), ErrNotAllowed},
		{"azure increase", s.IncreaseSeats(azureCust, azure.ID, 1), ErrNotAllowed},
		{"zero increase", s.IncreaseSeats(cust, id, 0), ErrInvalid},
		{"negative decrease", s.DecreaseSeats(cust, id, -1), ErrInvalid},
		{"unknown subscription", s.IncreaseSeats(cust, "nope", 1), ErrNotFound},
		{"unknown customer", s.IncreaseSeats("nope", id, 1), ErrNotFound},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func TestOperationsAreLoggedAndRuled(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 4, Customers: 40})
	cust := s.State().Customers[1].ID
	fresh, err := s.Purchase(cust, PurchaseSpec{Quantity: 5})
	if err != nil {
		t.Fatal(err)
	}
	oldCust, old := findSub(t, s, func(_ CustomerState, x SubscriptionState) bool {
		return x.Kind == KindNCEAnnual && x.Status == "active" && x.AutoRenewEnabled && x.CancellationAllowedUntil.Before(t0) && x.RefundableQuantity == 0
	})
	legCust, leg := findSub(t, s, func(_ CustomerState, x SubscriptionState) bool {
		return x.Kind == KindLegacyLicense && x.Status == "active"
	})
	saasCust, saas := findSub(t, s, func(_ CustomerState, x SubscriptionState) bool {
		return x.Kind == KindMarketplaceSaaS && x.Status == "active"
	})

	type step struct {
		name     string
		cust, id string
		op       string // expected Op; "" expects an error
		do       func() error
		want     error
	}
	steps := []step{
		{"cancel outside window", oldCust, old.ID, "", func() error { return s.Cancel(oldCust, old.ID) }, ErrNotAllowed},
		{"cancel legacy", legCust, leg.ID, "", func() error { return s.Cancel(legCust, leg.ID) }, ErrNotAllowed},
		{"rename", oldCust, old.ID, "subscription.friendlyname", func() error { return s.Rename(oldCust, old.ID, "Head office") }, nil},
		{"rename empty", oldCust, old.ID, "", func() error { return s.Rename(oldCust, old.ID, " ") }, ErrInvalid},
		{"schedule", oldCust, old.ID, "subscription.scheduled", func() error {
			return s.ScheduleNextTerm(oldCust, old.ID, NextTerm{Quantity: 3, TermDuration: "P1M", BillingCycle: "monthly"})
		}, nil},
		{"schedule bad term", oldCust, old.ID, "", func() error { return s.ScheduleNextTerm(oldCust, old.ID, NextTerm{TermDuration: "P5Y"}) }, ErrInvalid},
		{"schedule legacy", legCust, leg.ID, "", func() error { return s.ScheduleNextTerm(legCust, leg.ID, NextTerm{}) }, ErrNotAllowed},
		{"clear schedule", oldCust, old.ID, "subscription.scheduled", func() error { return s.ClearScheduledNextTerm(oldCust, old.ID) }, nil},
		{"clear nothing", oldCust, old.ID, "", func() error { return s.ClearScheduledNextTerm(oldCust, old.ID) }, ErrNotAllowed},
		{"attention", oldCust, old.ID, "subscription.attention", func() error { return s.SetAttentionNeeded(oldCust, old.ID, true) }, nil},
		{"attention legacy", legCust, leg.ID, "", func() error { return s.SetAttentionNeeded(legCust, leg.ID, true) }, ErrNotAllowed},
		{"autorenew off", oldCust, old.ID, "subscription.autorenew", func() error { return s.SetAutoRenew(oldCust, old.ID, false) }, nil},
		{"autorenew legacy", legCust, leg.ID, "subscription.autorenew", func() error { return s.SetAutoRenew(legCust, leg.ID, !leg.AutoRenewEnabled) }, nil},
		{"legacy seats", legCust, leg.ID, "subscription.quantity", func() error { return s.IncreaseSeats(legCust, leg.ID, 2) }, nil},
		{"suspend", oldCust, old.ID, "subscription.status", func() error { return s.Suspend(oldCust, old.ID) }, nil},
		{"suspend again", oldCust, old.ID, "", func() error { return s.Suspend(oldCust, old.ID) }, ErrNotAllowed},
		{"seats while suspended", oldCust, old.ID, "", func() error { return s.IncreaseSeats(oldCust, old.ID, 1) }, ErrNotAllowed},
		{"reactivate", oldCust, old.ID, "subscription.status", func() error { return s.Reactivate(oldCust, old.ID) }, nil},
		{"reactivate active", oldCust, old.ID, "", func() error { return s.Reactivate(oldCust, old.ID) }, ErrNotAllowed},
		{"unknown field", oldCust, old.ID, "subscription.field", func() error { return s.SetUnknownField(oldCust, old.ID, "migrationInfo", `{"from": "legacy"}`) }, nil},
		{"unknown field change", oldCust, old.ID, "subscription.field", func() error { return s.SetUnknownField(oldCust, old.ID, "migrationInfo", `{"from":"nce"}`) }, nil},
		{"known field refused", oldCust, old.ID, "", func() error { return s.SetUnknownField(oldCust, old.ID, "quantity", `3`) }, ErrInvalid},
		{"bad json refused", oldCust, old.ID, "", func() error { return s.SetUnknownField(oldCust, old.ID, "x", `{`) }, ErrInvalid},
		{"unknown field removed", oldCust, old.ID, "subscription.field", func() error { return s.SetUnknownField(oldCust, old.ID, "migrationInfo", "") }, nil},
		{"cancel fresh", cust, fresh, "subscription.status", func() error { return s.Cancel(cust, fresh) }, nil},
		{"cancel twice", cust, fresh, "", func() error { return s.Cancel(cust, fresh) }, ErrNotAllowed},
		{"cancel saas", saasCust, saas.ID, "subscription.status", func() error { return s.Cancel(saasCust, saas.ID) }, nil},
	}
	for _, st := range steps {
		before := mustGet(t, s, subURL(st.cust, st.id))
		n := seq(s)
		err := st.do()
		if st.op == "" {
			if !errors.Is(err, st.want) {
				t.Fatalf("%s: err %v, want %v", st.name, err, st.want)
			}
			if len(s.Log(n)) != 0 {
				t.Fatalf("%s: refused operation was logged: %+v", st.name, s.Log(n))
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		checkLogged(t, s, n, st.op, st.cust, st.id, before)
	}

	// Unknown fields reach the client's Raw, and a no-op logs nothing.
	_ = s.SetUnknownField(oldCust, old.ID, "newThing", `[1,2]`)
	if raw := topLevel(t, getSub(t, s, oldCust, old.ID).Raw); string(raw["newThing"]) != "[1,2]" {
		t.Fatalf("unknown field not rendered: %s", mustGet(t, s, subURL(oldCust, old.ID)))
	}
	n := seq(s)
	if err := s.SetAutoRenew(oldCust, old.ID, false); err != nil || len(s.Log(n)) != 0 {
		t.Fatalf("no-op auto-renew: %v, %d mutations", err, len(s.Log(n)))
	}
	c := getSub(t, s, cust, fresh)
	if !c.Status.Is(pc.StatusDeleted) || c.Quantity != 5 || c.AutoRenewEnabled {
		t.Fatalf("cancelled: %s", c.Raw)
	}

	// Removal, customers and managed services.
	n = seq(s)
	if err := s.RemoveSubscription(oldCust, old.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(s, subURL(oldCust, old.ID)); code != http.StatusNotFound {
		t.Fatalf("removed subscription still served: %d", code)
	}
	if l := s.Log(n); len(l) != 1 || l[0].Op != "subscription.removed" || l[0].Old == nil {
		t.Fatalf("removal log: %+v", l)
	}
	newID := s.AddCustomer()
	if l := s.Log(n + 1); len(l) != 1 || l[0].Op != "customer.added" || l[0].ResourceID != newID {
		t.Fatalf("add customer log: %+v", l)
	}
	mustGet(t, s, "/v1/customers/"+newID+"/subscriptions")
	if err := s.AddManagedService(newID, "Exchange"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddManagedService(newID, "exchange"); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("duplicate managed service: %v", err)
	}
	if _, err := s.Purchase(newID, PurchaseSpec{OfferID: softwareOffers[0].id}); err != nil {
		t.Fatal(err)
	}
	ms := decode[pc.Collection[pc.ManagedService]](t, mustGet(t, s, "/v1/customers/"+newID+"/managedservices"))
	if len(ms.Items) != 1 || ms.Items[0].ID != "Exchange" {
		t.Fatalf("managed services: %+v", ms)
	}
	n = seq(s)
	if err := s.RemoveCustomer(newID); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, m := range s.Log(n) {
		ops = append(ops, m.Op)
	}
	if !slices.Equal(ops, []string{"subscription.removed", "managedservice.removed", "customer.removed"}) {
		t.Fatalf("remove customer logged %v", ops)
	}
	if code, _ := get(s, "/v1/customers/"+newID+"/subscriptions"); code != http.StatusNotFound {
		t.Fatal("removed customer still served")
	}
	if err := s.RemoveManagedService(cust, "NoSuchService"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown service: %v", err)
	}

	// Purchase validation.
	for _, spec := range []PurchaseSpec{
		{OfferID: "NOPE"}, {OfferID: legacyOffers[0].id}, {OfferID: azurePlanOffer.id}, {TermDuration: "P3Y"},
		{BillingCycle: "annual"}, {Quantity: -1}, {OfferID: saasOffers[0].id, BillingCycle: "annual"},
	} {
		if _, err := s.Purchase(cust, spec); err == nil {
			t.Errorf("purchase %+v accepted", spec)
		}
	}
	// Cancelling a fresh purchase after its window closes is refused.
	late, _ := s.Purchase(cust, PurchaseSpec{TermDuration: "P1M"})
	clk.Advance(168 * time.Hour)
	if err := s.Cancel(cust, late); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("cancel after window: %v", err)
	}
}

func TestChangedMatchesRenderingForRandomMutations(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 9, Customers: 25})
	for round := 0; round < 6; round++ {
		before := map[string][]byte{}
		for _, c := range s.StateWithJSON().Customers {
			for _, sub := range c.Subscriptions {
				before[sub.ID] = sub.JSON
			}
		}
		muts := s.RandomMutations(30)
		if len(muts) < 30 {
			t.Fatalf("round %d: only %d mutations", round, len(muts))
		}
		ops := map[string]bool{}
		for _, m := range muts {
			ops[m.Op] = true
			if m.Cause != CauseRandom {
				t.Fatalf("cause %q", m.Cause)
			}
		}
		// Replay per subscription: the union of Changed must equal the
		// rendering's change (for subscriptions touched once).
		touched := map[string][]Mutation{}
		for _, m := range muts {
			if m.ResourceKind == ResourceSubscription {
				touched[m.ResourceID] = append(touched[m.ResourceID], m)
			}
		}
		after := s.StateWithJSON()
		for _, c := range after.Customers {
			for _, sub := range c.Subscriptions {
				ms := touched[sub.ID]
				if len(ms) != 1 || before[sub.ID] == nil {
					continue
				}
				if got, want := sorted(ms[0].Changed), changedKeys(t, before[sub.ID], sub.JSON); !slices.Equal(got, want) {
					t.Fatalf("%s: Changed %v, rendering changed %v", ms[0].Op, got, want)
				}
			}
		}
		clk.Advance(9 * 24 * time.Hour)
	}
}

func TestMutationJSON(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 4, Customers: 5})
	s.RandomMutations(10)
	b, err := json.Marshal(s.Log(0))
	if err != nil {
		t.Fatal(err)
	}
	var back []Mutation
	if err := json.Unmarshal(b, &back); err != nil || len(back) != len(s.Log(0)) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := json.Marshal(s.State()); err != nil {
		t.Fatal(err)
	}
}
