package pcsim

import (
	"errors"
	"net/http"
	"testing"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNothingIsDueAtStart(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		s, _, _ := testSim(t, Options{Seed: seed, Customers: 150})
		if m := s.Advance(); len(m) != 0 {
			t.Fatalf("seed %d: %d transitions due at start, first %+v", seed, len(m), m[0])
		}
	}
}

func TestRenewal(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 1, Customers: 3})
	cust := s.State().Customers[0].ID
	id, err := s.Purchase(cust, PurchaseSpec{Quantity: 4, TermDuration: "P1M"})
	if err != nil {
		t.Fatal(err)
	}
	sub := getSub(t, s, cust, id)
	if sub.CommitmentEndDate.Raw != "2025-06-30T00:00:00Z" || sub.CommitmentEndDateTime.Raw != "2025-06-30T23:59:59Z" || sub.BillingCycleEndDate.Raw != "2025-06-30T00:00:00Z" {
		t.Fatalf("first term: %s", sub.Raw)
	}
	n := seq(s)
	clk.Set(date("2025-06-30T23:59:59Z"))
	if got := getSub(t, s, cust, id); got.CommitmentEndDate.Raw != "2025-06-30T00:00:00Z" {
		t.Fatal("renewed before commitmentEndDateTime passed")
	}
	clk.Set(date("2025-07-01T00:00:01Z"))
	got := getSub(t, s, cust, id)
	if got.CommitmentEndDate.Raw != "2025-07-31T00:00:00Z" || got.CommitmentEndDateTime.Raw != "2025-07-31T23:59:59Z" ||
		!got.CancellationAllowedUntilDate.T.Equal(date("2025-07-08T00:00:00Z")) || got.BillingCycleEndDate.Raw != "2025-07-31T00:00:00Z" ||
		!got.Status.Is(pc.StatusActive) || got.Quantity != 4 {
		t.Fatalf("renewed: %s", got.Raw)
	}
	var renewed *Mutation
	for _, m := range s.Log(n) {
		if m.Op == "subscription.renewed" && m.ResourceID == id {
			renewed = &m
		}
	}
	if renewed == nil || renewed.Cause != CauseLifecycle || !renewed.At.Equal(date("2025-07-01T00:00:00Z")) ||
		renewed.Old != "2025-06-30T00:00:00Z" || renewed.New != "2025-07-31T00:00:00Z" {
		t.Fatalf("renewal log: %+v", renewed)
	}
	// The renewal opened a new window: a decrease is allowed again.
	if err := s.DecreaseSeats(cust, id, 1); err != nil {
		t.Fatalf("decrease in the renewal window: %v", err)
	}
	clk.Set(date("2025-07-08T00:00:00Z"))
	if err := s.DecreaseSeats(cust, id, 1); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("decrease after the renewal window: %v", err)
	}
}

func TestScheduledNextTermAndBillingCycle(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 3})
	cust := s.State().Customers[0].ID
	id, _ := s.Purchase(cust, PurchaseSpec{OfferID: nceOffers[3].id, Quantity: 10, TermDuration: "P1Y", BillingCycle: "monthly"})
	if err := s.ScheduleNextTerm(cust, id, NextTerm{ProductID: "CFQ7TTC0LFLZ", SkuID: "0001", AvailabilityID: "CFQ7TTC0L9JB", Quantity: 4, TermDuration: "P1M", BillingCycle: "monthly"}); err != nil {
		t.Fatal(err)
	}
	sched := getSub(t, s, cust, id).ScheduledNextTermInstructions
	if sched == nil || sched.Quantity != 4 || sched.Product.ProductID != "CFQ7TTC0LFLZ" || sched.Product.TermDuration != "P1M" {
		t.Fatalf("scheduled: %+v", sched)
	}
	n := seq(s)
	if _, err := s.AdvanceClock(31 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	got := getSub(t, s, cust, id)
	if got.BillingCycleEndDate.Raw != "2025-07-31T00:00:00Z" || got.CommitmentEndDate.Raw != "2026-05-31T00:00:00Z" {
		t.Fatalf("billing cycle: %s", got.Raw)
	}
	var l []Mutation
	for _, m := range s.Log(n) {
		if m.ResourceID == id && m.Op == "subscription.billingcycle" {
			l = append(l, m)
		}
	}
	if len(l) == 0 || l[0].Op != "subscription.billingcycle" || !l[0].At.Equal(date("2025-07-01T00:00:00Z")) ||
		l[0].Old != "2025-06-30T00:00:00Z" || l[0].New != "2025-07-31T00:00:00Z" {
		t.Fatalf("billing log: %+v", l)
	}
	if _, err := s.AdvanceClock(335 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	got = getSub(t, s, cust, id)
	if got.Quantity != 4 || got.OfferID != "CFQ7TTC0LFLZ:0001:CFQ7TTC0L9JB" || got.TermDuration != "P1M" || got.ScheduledNextTermInstructions != nil ||
		got.CommitmentEndDate.Raw != "2026-06-30T00:00:00Z" {
		t.Fatalf("after renewal with instructions: %s", got.Raw)
	}
}

func TestExpiryDisableRemove(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 3})
	cust := s.State().Customers[0].ID
	off := false
	id, _ := s.Purchase(cust, PurchaseSpec{TermDuration: "P1M", AutoRenew: &off})
	n := seq(s)
	muts, err := s.AdvanceClock(130 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var mine []Mutation
	for _, m := range muts {
		if m.ResourceID == id {
			mine = append(mine, m)
		}
	}
	want := []struct {
		op, newStatus string
		at            string
	}{
		{"subscription.refundable", "", "2025-06-08T12:00:00Z"},
		{"subscription.status", "expired", "2025-07-01T00:00:00Z"},
		{"subscription.status", "disabled", "2025-07-31T00:00:00Z"},
		{"subscription.removed", "", "2025-09-29T00:00:00Z"},
	}
	if len(mine) != len(want) {
		t.Fatalf("got %+v", mine)
	}
	for i, w := range want {
		m := mine[i]
		if m.Op != w.op || !m.At.Equal(date(w.at)) || (w.newStatus != "" && m.New != w.newStatus) || m.Cause != CauseLifecycle {
			t.Fatalf("step %d: %+v, want %+v", i, m, w)
		}
	}
	if code, _ := get(s, subURL(cust, id)); code != http.StatusNotFound {
		t.Fatalf("removed subscription answered %d", code)
	}
	// The log is in due-time order.
	all := s.Log(n)
	for i := 1; i < len(all); i++ {
		if all[i].At.Before(all[i-1].At) || all[i].Seq != all[i-1].Seq+1 {
			t.Fatalf("log out of order at %d: %v then %v", i, all[i-1].At, all[i].At)
		}
	}
}

func TestTrials(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 1, Customers: 3})
	cust := s.State().Customers[0].ID
	on, off := true, false
	conv, _ := s.Purchase(cust, PurchaseSpec{OfferID: trialOffers[0].id, AutoRenew: &on})
	exp, _ := s.Purchase(cust, PurchaseSpec{OfferID: trialOffers[1].id, AutoRenew: &off})
	tr := getSub(t, s, cust, conv)
	if !tr.IsTrial || tr.Quantity != 25 || tr.TermDuration != "P1M" || tr.RefundableQuantity.TotalQuantity != 0 {
		t.Fatalf("trial: %s", tr.Raw)
	}
	// A trial can be cancelled at any time, even after the 168h window.
	third, _ := s.Purchase(cust, PurchaseSpec{OfferID: trialOffers[2].id})
	clk.Advance(10 * 24 * time.Hour)
	if err := s.Cancel(cust, third); err != nil {
		t.Fatalf("cancel trial: %v", err)
	}
	clk.Set(date("2025-07-01T00:00:00Z"))
	got := getSub(t, s, cust, conv)
	if got.IsTrial || got.OfferID != trialOffers[0].paid.id || !got.CancellationAllowedUntilDate.T.Equal(date("2025-07-08T00:00:00Z")) ||
		got.CommitmentEndDate.Raw != "2025-07-31T00:00:00Z" || !got.Status.Is(pc.StatusActive) {
		t.Fatalf("converted trial: %s", got.Raw)
	}
	if e := getSub(t, s, cust, exp); !e.Status.Is(pc.StatusExpired) || !e.IsTrial {
		t.Fatalf("trial without auto-renew: %s", e.Raw)
	}
	var ops []string
	for _, m := range s.Log(0) {
		if (m.ResourceID == conv || m.ResourceID == exp) && m.Op != "subscription.created" {
			ops = append(ops, m.Op)
		}
	}
	if len(ops) != 2 || ops[0] != "subscription.trialconverted" || ops[1] != "subscription.status" {
		t.Fatalf("trial log ops %v", ops)
	}
}

func TestLegacyRenewalBumpsEtag(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 6, Customers: 40})
	cust, leg := findSub(t, s, func(_ CustomerState, x SubscriptionState) bool {
		return x.Kind == KindLegacyLicense && x.Status == "active" && x.AutoRenewEnabled
	})
	before := getSub(t, s, cust, leg.ID)
	due := leg.CommitmentEndDate.Add(24*time.Hour + time.Second)
	if _, err := s.AdvanceClock(due.Sub(s.Now())); err != nil {
		t.Fatal(err)
	}
	after := getSub(t, s, cust, leg.ID)
	if after.Attributes.Etag == before.Attributes.Etag || !after.CommitmentEndDate.T.Equal(leg.CommitmentEndDate.AddDate(1, 0, 0)) {
		t.Fatalf("legacy renewal: before %s after %s", before.Raw, after.Raw)
	}
}

func TestLongRunInvariants(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 11, Customers: 30})
	r := seeded(11, 99)
	for i := 0; i < 40; i++ {
		clk.Advance(time.Duration(r.Int64N(int64(20 * 24 * time.Hour))))
		s.RandomMutations(5)
	}
	s.Advance()
	log := s.Log(0)
	for i := range log {
		if log[i].Seq != uint64(i+1) {
			t.Fatalf("seq %d at %d", log[i].Seq, i)
		}
		if i > 0 && log[i].At.Before(log[i-1].At) {
			t.Fatalf("log At goes back at %d: %v < %v (%s)", i, log[i].At, log[i-1].At, log[i].Op)
		}
	}
	s.mu.Lock()
	if len(s.dueq) > 0 && !s.dueq[0].due.After(s.Now()) {
		t.Errorf("a transition is still due: %v", s.dueq[0].due)
	}
	s.mu.Unlock()
	st := s.State()
	if st.Seq != uint64(len(log)) {
		t.Fatalf("state seq %d, log %d", st.Seq, len(log))
	}
	seen := map[string]bool{}
	for _, m := range log {
		seen[m.Op] = true
	}
	for _, op := range []string{"subscription.renewed", "subscription.status", "subscription.billingcycle", "subscription.removed", "subscription.quantity", "subscription.created"} {
		if !seen[op] {
			t.Errorf("a long run logged no %s (ops %v)", op, seen)
		}
	}
	// The API agrees with State.
	for _, c := range st.Customers[:5] {
		subs := decode[pc.Collection[pc.Subscription]](t, mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions"))
		if len(subs.Items) != len(c.Subscriptions) {
			t.Fatalf("customer %s: API %d subscriptions, state %d", c.ID, len(subs.Items), len(c.Subscriptions))
		}
		for i, sub := range subs.Items {
			ss := c.Subscriptions[i]
			if sub.ID != ss.ID || sub.Quantity != ss.Quantity || string(sub.Status) != ss.Status || sub.AutoRenewEnabled != ss.AutoRenewEnabled {
				t.Fatalf("API %s disagrees with state %+v", sub.Raw, ss)
			}
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 12, Customers: 20})
	s.SetFaults(Faults{ErrorRate: 0.1, MalformedRate: 0.1})
	ids := s.State().Customers
	done := make(chan struct{})
	for g := 0; g < 3; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 60; i++ {
				c := ids[(g*7+i)%len(ids)].ID
				get(s, "/v1/customers/"+c+"/subscriptions")
				get(s, "/v1/customers?size=7")
			}
		}(g)
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for i := 0; i < 20; i++ {
			s.RandomMutations(3)
			if _, err := s.AdvanceClock(36 * time.Hour); err != nil {
				t.Error(err)
			}
			_ = s.Stats()
			_ = s.Log(0)
		}
	}()
	for i := 0; i < 4; i++ {
		<-done
	}
	if s.Stats().Total != 3*120 {
		t.Fatalf("stats total %d", s.Stats().Total)
	}
}
