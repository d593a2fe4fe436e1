package partnercenter_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// auditAll lists q against the simulator and returns the records and the
// number of pages.
func auditAll(t *testing.T, e *simEnv, q pc.AuditQuery) ([]pc.AuditRecord, int, error) {
	t.Helper()
	var recs []pc.AuditRecord
	pages := 0
	err := e.client.ListAuditRecords(context.Background(), q, func(p pc.AuditPage) error {
		pages++
		recs = append(recs, p.Records...)
		return nil
	})
	return recs, pages, err
}

// seatSub returns a customer's subscription whose seats can change,
// buying one when it has none.
func seatSub(t *testing.T, s *pcsim.Sim, i int) (string, string) {
	t.Helper()
	c := s.State().Customers[i]
	for _, x := range c.Subscriptions {
		if x.Status == "active" && !x.IsTrial && x.Kind != pcsim.KindAzurePlan {
			return c.ID, x.ID
		}
	}
	id, err := s.Purchase(c.ID, pcsim.PurchaseSpec{TermDuration: "P1Y"})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, id
}

func TestSimAuditRecords(t *testing.T) {
	e := newSimEnv(t, 30, nil)
	s := e.sim
	s.RandomMutations(120)
	cust, sub := seatSub(t, s, 3)
	if err := s.IncreaseSeats(cust, sub, 2); err != nil {
		t.Fatal(err)
	}
	log := s.AuditLog(0)
	today := s.Now()
	q := func(mod func(*pc.AuditQuery)) pc.AuditQuery {
		q := pc.AuditQuery{StartDate: today, EndDate: today, Size: 17}
		if mod != nil {
			mod(&q)
		}
		return q
	}
	t.Run("every record, over several pages, newest first", func(t *testing.T) {
		recs, pages, err := auditAll(t, e, q(nil))
		if err != nil {
			t.Fatal(err)
		}
		if want := (len(log) + 16) / 17; pages != want || len(recs) != len(log) || len(log) < 60 {
			t.Fatalf("%d records in %d pages, want %d in %d", len(recs), pages, len(log), want)
		}
		seen := map[string]bool{}
		for i, r := range recs {
			if seen[r.DedupKey()] {
				t.Fatalf("record %s listed twice", r.ID)
			}
			seen[r.DedupKey()] = true
			if !strings.EqualFold(r.CustomerID, log[len(log)-1-i].CustomerID) {
				t.Fatalf("record %d is not the %d-th newest", i, i)
			}
		}
		if r := recs[0]; r.OperationType != pc.AuditOpUpdateSubscription || !slices.Equal(r.SubscriptionIDs(), []string{sub}) ||
			r.UserPrincipalName != pcsim.AuditExplicitUser {
			t.Fatalf("newest record %s", r.Raw)
		}
	})
	t.Run("filter by customer", func(t *testing.T) {
		recs, _, err := auditAll(t, e, q(func(q *pc.AuditQuery) {
			q.Filter = &pc.AuditFilter{Field: pc.AuditFieldCustomerID, Value: strings.ToUpper(cust), Operator: pc.AuditOperatorEquals}
		}))
		want := 0
		for _, l := range log {
			if strings.EqualFold(l.CustomerID, cust) {
				want++
			}
		}
		if err != nil || len(recs) != want || want == 0 {
			t.Fatalf("%v: %d records, want %d", err, len(recs), want)
		}
		for _, r := range recs {
			if !strings.EqualFold(r.CustomerID, cust) {
				t.Fatalf("record of customer %s", r.CustomerID)
			}
		}
	})
	t.Run("filter by resource type", func(t *testing.T) {
		recs, _, err := auditAll(t, e, q(func(q *pc.AuditQuery) {
			q.Filter = &pc.AuditFilter{Field: pc.AuditFieldResourceType, Value: "Order", Operator: pc.AuditOperatorEquals}
		}))
		if err != nil || len(recs) == 0 {
			t.Fatalf("%v: %d orders", err, len(recs))
		}
		for _, r := range recs {
			if r.OperationType != pc.AuditOpCreateOrder || len(r.SubscriptionIDs()) != 1 {
				t.Fatalf("order record %s", r.Raw)
			}
		}
	})
	t.Run("a startDate older than 90 days is refused", func(t *testing.T) {
		_, _, err := auditAll(t, e, pc.AuditQuery{StartDate: today.AddDate(0, 0, -91), EndDate: today.AddDate(0, 0, -80)})
		var ae *pc.APIError
		if !errors.Is(err, pc.ErrBadRequest) || !errors.As(err, &ae) || !strings.Contains(ae.Description, "90 days") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("yesterday has none", func(t *testing.T) {
		recs, pages, err := auditAll(t, e, q(func(q *pc.AuditQuery) { q.StartDate, q.EndDate = today.AddDate(0, 0, -1), today.AddDate(0, 0, -1) }))
		if err != nil || len(recs) != 0 || pages != 1 {
			t.Fatalf("%v: %d records in %d pages", err, len(recs), pages)
		}
	})
}

func TestSimAuditLag(t *testing.T) {
	e := newSimEnv(t, 3, nil)
	s := e.sim
	if err := s.SetAudit(pcsim.AuditConfig{Lag: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	cust, sub := seatSub(t, s, 0)
	s.ClearAudit()
	if err := s.IncreaseSeats(cust, sub, 1); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		recs, _, err := auditAll(t, e, pc.AuditQuery{StartDate: s.Now(), EndDate: s.Now(),
			Filter: &pc.AuditFilter{Field: pc.AuditFieldCustomerID, Value: cust, Operator: pc.AuditOperatorEquals}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if slices.Contains(r.SubscriptionIDs(), sub) {
				n++
			}
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("visible before its lag: %d", n)
	}
	if _, err := s.AdvanceClock(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after its lag: %d", n)
	}
}

// TestSimAuditHostile: the simulator's malformed audit pages are errors,
// never an empty log; its noise records decode, and a client can tell
// them apart (unknown customer, undocumented operation).
func TestSimAuditHostile(t *testing.T) {
	e := newSimEnv(t, 4, nil)
	s := e.sim
	cust, sub := seatSub(t, s, 0)
	if err := s.IncreaseSeats(cust, sub, 1); err != nil {
		t.Fatal(err)
	}
	day := pc.AuditQuery{StartDate: s.Now(), EndDate: s.Now()}
	for _, shape := range pcsim.AllShapes {
		t.Run(shape, func(t *testing.T) {
			if err := s.SetHostile(pcsim.Hostile{Malformed: []pcsim.MalformedRule{{Scope: pcsim.Scope{Endpoint: pcsim.EndpointAuditRecords}, Shapes: []string{shape}}}}); err != nil {
				t.Fatal(err)
			}
			recs, _, err := auditAll(t, e, day)
			if !errors.Is(err, pc.ErrAuditPage) || !errors.Is(err, pc.ErrNotCollection) || len(recs) != 0 {
				t.Fatalf("%v, %d records", err, len(recs))
			}
		})
	}
	if err := s.SetHostile(pcsim.Hostile{AuditNoise: &pcsim.AuditNoise{UnknownCustomers: true, UnknownOperations: true}}); err != nil {
		t.Fatal(err)
	}
	recs, _, err := auditAll(t, e, day)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, c := range s.State().Customers {
		known[c.ID] = true
	}
	var unknownCustomer, unknownOp int
	for _, r := range recs {
		if !known[r.CustomerID] {
			unknownCustomer++
		}
		if !pc.KnownAuditOperationType(r.OperationType) {
			unknownOp++
		}
	}
	if unknownCustomer != 1 || unknownOp != 1 {
		t.Fatalf("%d records: %d of unknown customers, %d of undocumented operations", len(recs), unknownCustomer, unknownOp)
	}
}
