package pcsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// auditPageJSON is one GET /v1/auditrecords page as the test reads it.
type auditPageJSON struct {
	TotalCount        int               `json:"totalCount"`
	Items             []json.RawMessage `json:"items"`
	ContinuationToken string            `json:"continuationToken"`
	Links             pc.CollectionLinks
}

// auditHTTP reads the activity log of a simulator through a real HTTP
// server, following next links as a client must.
type auditHTTP struct {
	t   *testing.T
	srv *httptest.Server
}

func newAuditHTTP(t *testing.T, s *Sim) *auditHTTP {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &auditHTTP{t: t, srv: srv}
}

// get does one GET and returns status and body.
func (a *auditHTTP) get(uri string, hdr []pc.Header) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.srv.URL+uri, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	for _, h := range hdr {
		req.Header.Set(h.Key, h.Value)
	}
	req.Header.Set("Authorization", "Bearer t")
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(a.t, resp.Body)
}

// all reads every page of query (the part after "?") and returns the
// records, decoded, and the number of pages.
func (a *auditHTTP) all(query string) ([]pc.AuditRecord, int) {
	a.t.Helper()
	uri, hdr := "/v1/auditrecords?"+query, []pc.Header(nil)
	var recs []pc.AuditRecord
	for pages := 1; ; pages++ {
		code, body := a.get(uri, hdr)
		if code != http.StatusOK {
			a.t.Fatalf("GET %s: %d %s", uri, code, body)
		}
		pg := decode[auditPageJSON](a.t, body)
		if pg.TotalCount != len(pg.Items) {
			a.t.Fatalf("page %d: totalCount %d for %d items", pages, pg.TotalCount, len(pg.Items))
		}
		for _, it := range pg.Items {
			recs = append(recs, decode[pc.AuditRecord](a.t, it))
		}
		next := pg.Links.Next
		if next == nil {
			if pg.ContinuationToken != "" {
				a.t.Fatalf("page %d: continuationToken without a next link", pages)
			}
			return recs, pages
		}
		if len(next.Headers) != 1 || next.Headers[0].Key != "MS-ContinuationToken" || next.Headers[0].Value != pg.ContinuationToken {
			a.t.Fatalf("page %d: next link headers %+v do not carry continuationToken %q", pages, next.Headers, pg.ContinuationToken)
		}
		if !strings.HasPrefix(next.URI, "/auditrecords?") || !strings.HasSuffix(next.URI, "&seekOperation=Next") {
			a.t.Fatalf("page %d: next link %q", pages, next.URI)
		}
		uri, hdr = "/v1"+next.URI, next.Headers
	}
}

// status returns the code of one first-page query.
func (a *auditHTTP) status(query string) int {
	a.t.Helper()
	code, _ := a.get("/v1/auditrecords?"+query, nil)
	return code
}

// pascal reads a resource value (a PascalCase JSON document in a string).
func pascal(t *testing.T, v string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		t.Fatalf("resource value is not a JSON object: %v\n%s", err, v)
	}
	return m
}

// today is the business day of t0.
const today = "2025-06-01"

func TestAuditRecordPerChange(t *testing.T) {
	type check func(t *testing.T, r pc.AuditRecord)
	// Each case may act on nce: a fresh annual NCE subscription (active,
	// auto-renewing, inside its cancellation window) whose purchase
	// record has been cleared.
	var fc, fid string
	nce := func(*Sim) (string, string) { return fc, fid }
	field := func(name string, old, new any) check {
		return func(t *testing.T, r pc.AuditRecord) {
			o, n := pascal(t, r.ResourceOldValue), pascal(t, r.ResourceNewValue)
			if o[name] != old || n[name] != new {
				t.Fatalf("%s: old %v new %v, want %v -> %v", name, o[name], n[name], old, new)
			}
		}
	}
	subKeys := []string{"SubscriptionId", "OfferId", "SubscriptionName"}
	var qty float64 // the seat increase's quantity before
	cases := []struct {
		name      string
		act       func(t *testing.T, s *Sim) (customer, subscription string)
		op        string // "": the change has no record
		resType   string
		keys      []string // customizedData keys, in order
		microsoft bool     // Microsoft-initiated: no user, FulfillmentService
		check     check
	}{
		{name: "seat increase", op: "update_subscription", resType: "subscription", keys: subKeys,
			act: func(t *testing.T, s *Sim) (string, string) {
				c, id := nce(s)
				qty = float64(getSub(t, s, c, id).Quantity)
				must(t, s.IncreaseSeats(c, id, 3))
				return c, id
			}, check: func(t *testing.T, r pc.AuditRecord) { field("Quantity", qty, qty+3)(t, r) }},
		{name: "auto-renew off", op: "update_subscription", resType: "subscription", keys: subKeys,
			act: func(t *testing.T, s *Sim) (string, string) {
				c, id := nce(s)
				must(t, s.SetAutoRenew(c, id, false))
				return c, id
			}, check: field("AutoRenewEnabled", true, false)},
		{name: "suspend", op: "update_subscription", resType: "subscription", keys: subKeys,
			act: func(t *testing.T, s *Sim) (string, string) {
				c, id := nce(s)
				must(t, s.Suspend(c, id))
				return c, id
			}, check: field("Status", "active", "suspended")},
		{name: "cancel", op: "update_subscription", resType: "subscription", keys: subKeys,
			act: func(t *testing.T, s *Sim) (string, string) {
				c, id := nce(s)
				must(t, s.Cancel(c, id))
				return c, id
			}, check: field("Status", "active", "deleted")},
		{name: "rename", op: "update_subscription", resType: "subscription", keys: subKeys,
			act: func(t *testing.T, s *Sim) (string, string) {
				c, id := nce(s)
				must(t, s.Rename(c, id, "Renamed by the test"))
				return c, id
			}, check: func(t *testing.T, r pc.AuditRecord) {
				if v, _ := r.Data("SubscriptionName"); v != "Renamed by the test" || pascal(t, r.ResourceNewValue)["FriendlyName"] != "Renamed by the test" {
					t.Fatalf("rename record: %s", r.Raw)
				}
			}},
		{name: "schedule next term", op: "update_subscription", resType: "subscription", keys: subKeys,
			act: func(t *testing.T, s *Sim) (string, string) {
				c, id := nce(s)
				must(t, s.ScheduleNextTerm(c, id, NextTerm{Quantity: 42}))
				return c, id
			}, check: func(t *testing.T, r pc.AuditRecord) {
				if _, had := pascal(t, r.ResourceOldValue)["ScheduledNextTermInstructions"]; had {
					t.Fatalf("old value already has instructions: %s", r.ResourceOldValue)
				}
				if _, has := pascal(t, r.ResourceNewValue)["ScheduledNextTermInstructions"]; !has {
					t.Fatalf("new value lacks instructions: %s", r.ResourceNewValue)
				}
			}},
		{name: "purchase", op: "create_order", resType: "order",
			keys: []string{"OrderId", "BillingCycle", "OfferId-0", "SubscriptionId-0", "SubscriptionName-0", "Quantity-0", "PartnerOnRecord-0"},
			act: func(t *testing.T, s *Sim) (string, string) {
				c := s.State().Customers[0].ID
				id, err := s.Purchase(c, PurchaseSpec{Quantity: 7, TermDuration: "P1M"})
				must(t, err)
				return c, id
			}, check: func(t *testing.T, r pc.AuditRecord) {
				order := pascal(t, r.ResourceNewValue)
				lines, _ := order["LineItems"].([]any)
				if len(lines) != 1 || r.ResourceOldValue != "" || order["Id"] == "" {
					t.Fatalf("order: %s", r.ResourceNewValue)
				}
				if q, _ := r.Data("Quantity-0"); q != "7" {
					t.Fatalf("Quantity-0 %q", q)
				}
				if bc, _ := r.Data("BillingCycle"); bc != "Monthly" {
					t.Fatalf("BillingCycle %q, want Monthly as documented", bc)
				}
			}},
		{name: "new customer", op: "add_customer", resType: "customer", keys: []string{"PrimaryDomainName", "Relationship"},
			act: func(t *testing.T, s *Sim) (string, string) { return s.AddCustomer(), "" },
			check: func(t *testing.T, r pc.AuditRecord) {
				c := pascal(t, r.ResourceNewValue)
				prof, _ := c["CompanyProfile"].(map[string]any)
				if d, _ := r.Data("PrimaryDomainName"); prof == nil || prof["Domain"] != d || r.CustomerName != prof["CompanyName"] {
					t.Fatalf("add_customer: %s", r.Raw)
				}
			}},
		{name: "customer removed", op: "remove_partner_customer_relationship", resType: "partner_customer_relationship", keys: []string{},
			act: func(t *testing.T, s *Sim) (string, string) {
				c := s.State().Customers[1]
				must(t, s.RemoveCustomer(c.ID))
				return c.ID, ""
			}, check: func(t *testing.T, r pc.AuditRecord) {
				if r.CustomerName == "" || pascal(t, r.ResourceOldValue)["Id"] != r.CustomerID {
					t.Fatalf("removal: %s", r.Raw)
				}
			}},
		{name: "trial converted by Microsoft", op: "convert_trial_subscription", resType: "subscription", keys: subKeys, microsoft: true,
			act: func(t *testing.T, s *Sim) (string, string) {
				c := s.State().Customers[0].ID
				id, err := s.Purchase(c, PurchaseSpec{OfferID: trialOffers[0].id})
				must(t, err)
				if _, err := s.AdvanceClock(32 * day); err != nil {
					t.Fatal(err)
				}
				return c, id
			}, check: field("IsTrial", true, false)},
		{name: "attention flag: none", act: func(t *testing.T, s *Sim) (string, string) {
			c, id := nce(s)
			must(t, s.SetAttentionNeeded(c, id, true))
			return c, id
		}},
		{name: "undocumented property: none", act: func(t *testing.T, s *Sim) (string, string) {
			c, id := nce(s)
			must(t, s.SetUnknownField(c, id, "newThing", `"x"`))
			return c, id
		}},
		{name: "subscription removed: none", act: func(t *testing.T, s *Sim) (string, string) {
			c, id := nce(s)
			must(t, s.RemoveSubscription(c, id))
			return c, id
		}},
		{name: "managed service: none", act: func(t *testing.T, s *Sim) (string, string) {
			c := s.State().Customers[0].ID
			must(t, s.AddManagedService(c, "PowerBI"))
			return c, ""
		}},
		{name: "refused change: none", act: func(t *testing.T, s *Sim) (string, string) {
			c, id := nce(s)
			if err := s.DecreaseSeats(c, id, 100000); err == nil {
				t.Fatal("an impossible decrease was allowed")
			}
			return c, id
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := testSim(t, Options{Seed: 3, Customers: 6})
			h := newAuditHTTP(t, s)
			fc = s.State().Customers[2].ID
			var err error
			if fid, err = s.Purchase(fc, PurchaseSpec{Quantity: 5, TermDuration: "P1Y"}); err != nil {
				t.Fatal(err)
			}
			s.ClearAudit()
			before := s.AuditStatus().Written
			cust, sub := tc.act(t, s)
			st := s.AuditStatus()
			if tc.op == "" {
				if st.Written != before {
					log := s.AuditLog(0)
					t.Fatalf("%d records written for a change that has none: %s", st.Written-before, log[len(log)-1].Record)
				}
				return
			}
			now := s.Now()
			all, _ := h.all("startDate=" + now.Add(-AuditMaxWindow).Format(time.DateOnly) + "&endDate=" + now.Format(time.DateOnly))
			var recs []pc.AuditRecord
			for _, r := range all {
				if strings.EqualFold(r.CustomerID, cust) && (sub == "" || slices.Contains(r.SubscriptionIDs(), sub)) {
					recs = append(recs, r)
				}
			}
			if len(recs) != 1 {
				t.Fatalf("%d records served for the change, want 1", len(recs))
			}
			r := recs[0]
			if r.OperationType != tc.op || r.ResourceType != tc.resType || r.OperationStatus != "succeeded" ||
				r.Attributes.ObjectType != "AuditRecord" || !r.OperationDate.Valid() || r.PartnerID != st.PartnerID ||
				!slices.Equal(r.Participants, []string{st.PartnerID}) || r.OriginalCorrelationID == "" {
				t.Fatalf("record: %s", r.Raw)
			}
			if !pc.KnownAuditOperationType(r.OperationType) {
				t.Fatalf("operation type %q is not documented", r.OperationType)
			}
			// partner_customer_[resource_]operation_ticks, the ticks those of
			// operationDate (a few more when changes share an instant).
			ticks, _ := strconv.ParseInt(r.ID[strings.LastIndexByte(r.ID, '_')+1:], 10, 64)
			if opTicks := dotnetTicks(r.OperationDate.T); !strings.HasPrefix(r.ID, st.PartnerID+"_"+strings.ToLower(cust)+"_") ||
				!strings.Contains(r.ID, "_"+strings.ReplaceAll(tc.op, "_", "")+"_") || ticks < opTicks || ticks > opTicks+100 {
				t.Fatalf("id %q does not follow the documented partner_customer_..._operation_ticks form", r.ID)
			}
			if tc.microsoft {
				if r.UserPrincipalName != "" || r.ApplicationID != AuditMicrosoftApp {
					t.Fatalf("Microsoft's change by %q/%q", r.UserPrincipalName, r.ApplicationID)
				}
			} else if r.UserPrincipalName != AuditExplicitUser || r.ApplicationID == "" {
				t.Fatalf("explicit change by %q/%q", r.UserPrincipalName, r.ApplicationID)
			}
			keys := []string{}
			for _, kv := range r.CustomizedData {
				keys = append(keys, kv.Key)
			}
			if !slices.Equal(keys, tc.keys) {
				t.Fatalf("customizedData keys %v, want %v", keys, tc.keys)
			}
			if sub != "" {
				if ids := r.SubscriptionIDs(); len(ids) != 1 || ids[0] != sub {
					t.Fatalf("record names subscriptions %v, want %s", ids, sub)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			var entry *AuditLogEntry
			for _, e := range s.AuditLog(0) {
				if decode[pc.AuditRecord](t, e.Record).ID == r.ID {
					entry = &e
				}
			}
			if entry == nil {
				t.Fatal("served record not in the audit log")
			}
			if m := s.Log(entry.MutationSeq - 1); len(m) == 0 || !strings.EqualFold(m[0].CustomerID, cust) || !m[0].At.Before(entry.OperationDate.Add(time.Microsecond)) {
				t.Fatalf("record links to mutation %d, which is not the change", entry.MutationSeq)
			}
		})
	}
}

// TestAuditNoRecordForRenewals: Microsoft's lifecycle changes (renewals,
// expiry, refund windows, billing periods) have no record; of them only
// trial conversions do.
func TestAuditNoRecordForRenewals(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 3, Customers: 30})
	muts, err := s.AdvanceClock(400 * day)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, m := range muts {
		ops[m.Op]++
	}
	if ops["subscription.renewed"] == 0 || ops["subscription.status"] == 0 || ops["subscription.billingcycle"] == 0 {
		t.Fatalf("no lifecycle to judge: %v", ops)
	}
	for _, e := range s.AuditLog(0) {
		if e.OperationType != AuditOpConvertTrialSubscription {
			t.Fatalf("lifecycle wrote a %s record", e.OperationType)
		}
	}
	if got := s.AuditStatus().Written; got != uint64(ops["subscription.trialconverted"]) {
		t.Fatalf("%d records for %d trial conversions", got, ops["subscription.trialconverted"])
	}
}

// seatSub returns an active subscription of customer i whose seats can
// change.
func seatSub(t *testing.T, s *Sim, i int) (string, string) {
	t.Helper()
	c := s.State().Customers[i]
	for _, x := range c.Subscriptions {
		if x.Status == "active" && !x.IsTrial && x.Kind != KindAzurePlan {
			return c.ID, x.ID
		}
	}
	id, err := s.Purchase(c.ID, PurchaseSpec{TermDuration: "P1Y"})
	must(t, err)
	return c.ID, id
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// TestAuditShapeAsDocumented compares a simulated create_order record with
// the documented one: the same properties in the same order.
func TestAuditShapeAsDocumented(t *testing.T) {
	body := corpusFile(t, "partner-center/auditrecords-collection-01.txt")
	// The documented body elides records with a literal "..."; drop it.
	body = regexp.MustCompile(`,\s*\.\.\.\s*`).ReplaceAll(body, nil)
	var doc struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("documented body, repaired: %v", err)
	}
	var order []string
	for _, it := range doc.Items {
		if r := decode[pc.AuditRecord](t, it); r.OperationType == "create_order" {
			order = keyOrder(t, it)
		}
	}
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 2})
	c := s.State().Customers[0].ID
	if _, err := s.Purchase(c, PurchaseSpec{}); err != nil {
		t.Fatal(err)
	}
	got := s.AuditLog(0)
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	if k := keyOrder(t, got[0].Record); !slices.Equal(k, order) {
		t.Fatalf("properties\n%v\nwant, as documented,\n%v", k, order)
	}
}

func TestAuditPaging(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 5, Customers: 40})
	h := newAuditHTTP(t, s)
	s.RandomMutations(400)
	log := s.AuditLog(0)
	if len(log) < 200 {
		t.Fatalf("only %d records from 400 random mutations", len(log))
	}
	for _, size := range []int{1, 7, 50, 500} {
		t.Run("size "+itoa(size), func(t *testing.T) {
			recs, pages := h.all("startDate=" + today + "&endDate=" + today + "&size=" + itoa(size))
			if want := (len(log) + size - 1) / size; pages != max(want, 1) {
				t.Fatalf("%d pages, want %d", pages, want)
			}
			if len(recs) != len(log) {
				t.Fatalf("%d records, want %d", len(recs), len(log))
			}
			for i, r := range recs { // newest first
				want := decode[pc.AuditRecord](t, log[len(log)-1-i].Record)
				if r.ID != want.ID || !bytes.Equal(r.Raw, want.Raw) {
					t.Fatalf("record %d: %s, want %s", i, r.ID, want.ID)
				}
				if i > 0 && r.OperationDate.T.After(recs[i-1].OperationDate.T) {
					t.Fatalf("record %d newer than record %d", i, i-1)
				}
			}
		})
	}
	t.Run("a change during paging waits for the next query", func(t *testing.T) {
		code, body := h.get("/v1/auditrecords?size=10&startDate="+today, nil)
		if code != http.StatusOK {
			t.Fatal(code)
		}
		first := decode[auditPageJSON](t, body)
		s.RandomMutations(5)
		code, body = h.get("/v1"+first.Links.Next.URI, first.Links.Next.Headers)
		if code != http.StatusOK {
			t.Fatal(code)
		}
		second := decode[auditPageJSON](t, body)
		last := decode[pc.AuditRecord](t, first.Items[len(first.Items)-1])
		written := map[string]int{} // record id -> write order
		for i, e := range s.AuditLog(0) {
			written[decode[pc.AuditRecord](t, e.Record).ID] = i
		}
		for _, it := range second.Items {
			if r := decode[pc.AuditRecord](t, it); written[r.ID] >= written[last.ID] {
				t.Fatalf("page 2 has a record written after page 1's last: %s", r.ID)
			}
		}
	})
	t.Run("tokens", func(t *testing.T) {
		_, body := h.get("/v1/auditrecords?size=3&startDate="+today, nil)
		next := decode[auditPageJSON](t, body).Links.Next
		forged := []pc.Header{{Key: "MS-ContinuationToken", Value: next.Headers[0].Value[:len(next.Headers[0].Value)-2] + "AA"}}
		_, cbody := h.get("/v1/customers?size=1", nil)
		custTok := decode[pc.Collection[pc.Customer]](t, cbody).Links.Next.Headers
		for _, tc := range []struct {
			name string
			uri  string
			hdr  []pc.Header
			want int
		}{
			{"valid", "/v1" + next.URI, next.Headers, http.StatusOK},
			{"forged", "/v1" + next.URI, forged, http.StatusBadRequest},
			{"missing", "/v1" + next.URI, nil, http.StatusBadRequest},
			{"a customers token", "/v1" + next.URI, custTok, http.StatusBadRequest},
			{"an audit token on customers", "/v1/customers?size=1&seekOperation=Next", next.Headers, http.StatusBadRequest},
			{"unknown seek", "/v1/auditrecords?seekOperation=Previous", next.Headers, http.StatusBadRequest},
		} {
			if code, body := h.get(tc.uri, tc.hdr); code != tc.want {
				t.Errorf("%s: %d, want %d: %s", tc.name, code, tc.want, body)
			}
		}
	})
}

func TestAuditDays(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 2, Customers: 3})
	h := newAuditHTTP(t, s)
	c := s.State().Customers[0].ID
	// One purchase a day, at noon, from 2025-06-01 to 2025-06-10.
	byDay := map[string]string{}
	for d := 0; d < 10; d++ {
		id, err := s.Purchase(c, PurchaseSpec{TermDuration: "P1Y"})
		if err != nil {
			t.Fatal(err)
		}
		byDay[s.Now().Format(time.DateOnly)] = id
		clk.Advance(day)
	}
	now := s.Now().Format(time.DateOnly) // 2025-06-11
	days := func(recs []pc.AuditRecord) []string {
		var out []string
		for _, r := range recs {
			if r.OperationType == "create_order" {
				out = append(out, r.OperationDate.T.Format(time.DateOnly))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		query string
		want  []string
	}{
		{"one day", "startDate=2025-06-03&endDate=2025-06-03", []string{"2025-06-03"}},
		{"both ends included", "startDate=2025-06-03&endDate=2025-06-05", []string{"2025-06-05", "2025-06-04", "2025-06-03"}},
		{"no endDate: up to today", "startDate=2025-06-08", []string{"2025-06-10", "2025-06-09", "2025-06-08"}},
		{"no dates: the last 30 days", "", []string{"2025-06-10", "2025-06-09", "2025-06-08", "2025-06-07", "2025-06-06", "2025-06-05", "2025-06-04", "2025-06-03", "2025-06-02", "2025-06-01"}},
		{"the SDK's date-time form", "startDate=" + url.QueryEscape("6/9/2025 12:00:00 AM") + "&endDate=" + url.QueryEscape("6/9/2025 12:00:00 AM"), []string{"2025-06-09"}},
		{"RFC 3339 counts the day only", "startDate=2025-06-02T23:59:59Z&endDate=2025-06-02T00:00:00Z", []string{"2025-06-02"}},
		{"a day without changes", "startDate=" + now + "&endDate=" + now, nil},
		{"the future", "startDate=2025-07-01&endDate=2025-07-02", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _ := h.all(tc.query)
			if got := days(recs); !slices.Equal(got, tc.want) {
				t.Fatalf("days %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		query string
		want  int
	}{
		{"start 90 days ago", "startDate=2025-03-13&endDate=2025-03-14", http.StatusOK},
		{"start 91 days ago", "startDate=2025-03-12&endDate=2025-03-14", http.StatusBadRequest},
		{"a 30-day window", "startDate=2025-05-10&endDate=2025-06-09", http.StatusOK},
		{"a 31-day window", "startDate=2025-05-10&endDate=2025-06-10", http.StatusBadRequest},
		{"end before start", "startDate=2025-06-05&endDate=2025-06-04", http.StatusBadRequest},
		{"not a date", "startDate=yesterday", http.StatusBadRequest},
		{"bad endDate", "startDate=2025-06-05&endDate=2025-13-01", http.StatusBadRequest},
		{"size 0", "size=0", http.StatusBadRequest},
		{"size x", "size=x", http.StatusBadRequest},
		{"size 5000 clamped", "size=5000", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.status(tc.query); got != tc.want {
				t.Fatalf("%s: %d, want %d", tc.query, got, tc.want)
			}
		})
	}
	t.Run("90-day refusal names the limit", func(t *testing.T) {
		code, body := h.get("/v1/auditrecords?startDate=2024-01-01", nil)
		e := decode[wireError](t, body)
		if code != http.StatusBadRequest || e.Code != 400 || !strings.Contains(e.Description, "90 days") {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("records expire after 90 days", func(t *testing.T) {
		var old uint64 // records of the days that will expire
		for _, e := range s.AuditLog(0) {
			if e.OperationDate.Format(time.DateOnly) < "2025-06-06" {
				old++
			}
		}
		clk.Advance(85 * day) // 2025-09-04: 2025-06-06 is the oldest day kept
		st := s.AuditStatus()
		if st.Expired != old || old < 5 || st.Oldest.Format(time.DateOnly) < "2025-06-06" {
			t.Fatalf("status %+v, %d records before 2025-06-06", st, old)
		}
		recs, _ := h.all("startDate=2025-06-06&endDate=2025-06-10")
		if got := days(recs); !slices.Equal(got, []string{"2025-06-10", "2025-06-09", "2025-06-08", "2025-06-07", "2025-06-06"}) {
			t.Fatalf("kept %v", got)
		}
	})
}

func TestAuditFilter(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 4, Customers: 8})
	h := newAuditHTTP(t, s)
	st := s.State()
	a, b := st.Customers[0], st.Customers[1]
	_, subA := seatSub(t, s, 0)
	_, subB := seatSub(t, s, 1)
	s.ClearAudit()
	must(t, s.IncreaseSeats(a.ID, subA, 1))
	if _, err := s.Purchase(a.ID, PurchaseSpec{}); err != nil {
		t.Fatal(err)
	}
	must(t, s.IncreaseSeats(b.ID, subB, 1))
	added := s.AddCustomer()
	q := func(field, value, op string) string {
		f, _ := json.Marshal(map[string]string{"Field": field, "Value": value, "Operator": op})
		return "startDate=" + today + "&filter=" + url.QueryEscape(string(f))
	}
	ops := func(recs []pc.AuditRecord) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.OperationType+"@"+r.CustomerID)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		query string
		want  []string
	}{
		{"customer id, any case", q("CustomerId", strings.ToUpper(a.ID), "equals"),
			[]string{"create_order@" + a.ID, "update_subscription@" + a.ID}},
		{"company name substring, any case", q("CompanyName", strings.ToLower(a.CompanyName[2:8]), "substring"),
			[]string{"create_order@" + a.ID, "update_subscription@" + a.ID}},
		{"resource type as the SDK names it", q("ResourceType", "Subscription", "equals"),
			[]string{"update_subscription@" + b.ID, "update_subscription@" + a.ID}},
		{"resource type as records spell it", q("ResourceType", "order", "equals"), []string{"create_order@" + a.ID}},
		{"customer resource", q("ResourceType", "Customer", "equals"), []string{"add_customer@" + added}},
		{"no match", q("CustomerId", "00000000-0000-0000-0000-000000000000", "equals"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _ := h.all(tc.query)
			if got := ops(recs); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, filter string }{
		{"unknown field", `{"Field":"OperationType","Value":"x","Operator":"equals"}`},
		{"unknown operator", `{"Field":"CustomerId","Value":"x","Operator":"like"}`},
		{"not JSON", `CustomerId eq x`},
		{"unknown key", `{"Field":"CustomerId","Value":"x","Operator":"equals","Other":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := h.status("filter=" + url.QueryEscape(tc.filter)); code != http.StatusBadRequest {
				t.Fatalf("%s: %d, want 400", tc.filter, code)
			}
		})
	}
}

func TestAuditLag(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 6, Customers: 3, Audit: AuditConfig{Lag: 10 * time.Minute}})
	h := newAuditHTTP(t, s)
	c, sub := seatSub(t, s, 0)
	must(t, s.IncreaseSeats(c, sub, 1))
	count := func() int { // the seat changes: lifecycle may convert trials meanwhile
		recs, _ := h.all("startDate=" + today)
		n := 0
		for _, r := range recs {
			if r.OperationType == AuditOpUpdateSubscription {
				n++
			}
		}
		return n
	}
	steps := []struct {
		advance time.Duration
		want    int
	}{{0, 0}, {10*time.Minute - time.Second, 0}, {time.Second, 1}, {time.Hour, 1}}
	for _, st := range steps {
		clk.Advance(st.advance)
		if got := count(); got != st.want {
			t.Fatalf("after +%s: %d records, want %d", st.advance, got, st.want)
		}
	}
	// A shorter lag applies to new records only: the old ones do not move.
	must(t, s.SetAudit(AuditConfig{Lag: time.Minute}))
	must(t, s.IncreaseSeats(c, sub, 1))
	if got := count(); got != 1 {
		t.Fatalf("a new record visible before its lag: %d", got)
	}
	clk.Advance(time.Minute)
	if got, st := count(), s.AuditStatus(); got != 2 || st.Visible != st.Retained {
		t.Fatalf("%d records, status %+v", got, st)
	}
	log := s.AuditLog(0)
	if d := log[len(log)-2].VisibleAt.Sub(log[len(log)-2].OperationDate); d != 10*time.Minute {
		t.Fatalf("first record visible %s after its change, want 10m", d)
	}
}

func TestAuditConfig(t *testing.T) {
	seats := func(s *Sim, n int) {
		c, sub := seatSub(t, s, 0)
		s.ClearAudit()
		for i := 0; i < n; i++ {
			must(t, s.IncreaseSeats(c, sub, 1))
		}
	}
	for _, tc := range []struct {
		name  string
		cfg   AuditConfig
		check func(t *testing.T, st AuditStatus, log []AuditLogEntry)
	}{
		{"off", AuditConfig{Off: true}, func(t *testing.T, st AuditStatus, log []AuditLogEntry) {
			if st.Written != 0 || len(log) != 0 {
				t.Fatalf("off wrote %d", st.Written)
			}
		}},
		{"all lost", AuditConfig{LossRate: 1}, func(t *testing.T, st AuditStatus, log []AuditLogEntry) {
			if st.Written != 0 || st.Lost != 10 {
				t.Fatalf("%+v", st)
			}
		}},
		{"some lost", AuditConfig{LossRate: 0.5}, func(t *testing.T, st AuditStatus, log []AuditLogEntry) {
			if st.Written+st.Lost != 10 || st.Lost == 0 || st.Written == 0 {
				t.Fatalf("%+v", st)
			}
		}},
		{"no ids", AuditConfig{OmitIDs: true}, func(t *testing.T, st AuditStatus, log []AuditLogEntry) {
			keys := map[string]bool{}
			for _, e := range log {
				r := decode[pc.AuditRecord](t, e.Record)
				if _, has := topLevel(t, e.Record)["id"]; has || r.ID != "" {
					t.Fatalf("record has an id: %s", e.Record)
				}
				keys[r.DedupKey()] = true
			}
			if len(keys) != 10 {
				t.Fatalf("%d distinct content keys for 10 records", len(keys))
			}
		}},
		{"bounded", AuditConfig{MaxRecords: 4}, func(t *testing.T, st AuditStatus, log []AuditLogEntry) {
			if st.Retained != 4 || st.Dropped != 6 || len(log) != 4 || log[0].Seq != 7 {
				t.Fatalf("%+v, first seq %d", st, log[0].Seq)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := testSim(t, Options{Seed: 7, Customers: 2, Audit: tc.cfg})
			seats(s, 10) // at one instant: ids still differ
			tc.check(t, s.AuditStatus(), s.AuditLog(0))
		})
	}
	t.Run("invalid", func(t *testing.T) {
		s, _, _ := testSim(t, Options{Seed: 7, Customers: 2})
		for _, c := range []AuditConfig{{Lag: -time.Second}, {LossRate: 1.5}, {LossRate: -0.1}, {MaxRecords: -1}} {
			if err := s.SetAudit(c); err == nil {
				t.Errorf("%+v accepted", c)
			}
		}
		if s.CurrentAudit() != (AuditConfig{}) {
			t.Fatalf("a refused configuration took effect: %+v", s.CurrentAudit())
		}
	})
}

func TestAuditAdmin(t *testing.T) {
	s, clk, _ := testSim(t, Options{Seed: 8, Customers: 2})
	var st AuditStatus
	admin(t, s, http.MethodPost, "/admin/audit", `{"lag":"5m","omitIds":true}`, http.StatusOK, &st)
	if st.Config.Lag != 5*time.Minute || !st.Config.OmitIDs {
		t.Fatalf("config %+v", st.Config)
	}
	for _, body := range []string{`{"lag":"-1s"}`, `{"lossRate":2}`, `{"maxRecords":-3}`, `{"lagg":"1s"}`, `not json`} {
		admin(t, s, http.MethodPost, "/admin/audit", body, http.StatusBadRequest, nil)
	}
	c, sub := seatSub(t, s, 0)
	s.ClearAudit()
	w0 := s.AuditStatus().Written
	admin(t, s, http.MethodPost, "/admin/mutate", `{"op":"increaseSeats","customerId":"`+c+`","subscriptionId":"`+sub+`","n":2}`, http.StatusOK, nil)
	admin(t, s, http.MethodGet, "/admin/audit", "", http.StatusOK, &st)
	if st.Retained != 1 || st.Visible != 0 {
		t.Fatalf("status %+v", st)
	}
	clk.Advance(5 * time.Minute)
	var log []AuditLogEntry
	admin(t, s, http.MethodGet, "/admin/audit/records?since=0", "", http.StatusOK, &log)
	if len(log) != 1 || log[0].OperationType != AuditOpUpdateSubscription || log[0].MutationSeq == 0 {
		t.Fatalf("log %+v", log)
	}
	admin(t, s, http.MethodGet, "/admin/audit/records?since="+itoa64(int64(log[0].Seq)), "", http.StatusOK, &log)
	if len(log) != 0 {
		t.Fatalf("log %+v", log)
	}
	admin(t, s, http.MethodGet, "/admin/audit/records?since=x", "", http.StatusBadRequest, nil)
	admin(t, s, http.MethodDelete, "/admin/audit/records", "", http.StatusNoContent, nil)
	admin(t, s, http.MethodGet, "/admin/audit", "", http.StatusOK, &st)
	if st.Retained != 0 || st.Written != w0+1 {
		t.Fatalf("after clear %+v", st)
	}
	admin(t, s, http.MethodPut, "/admin/audit", "", http.StatusMethodNotAllowed, nil)
	admin(t, s, http.MethodPost, "/admin/audit", `{"off":true}`, http.StatusOK, &st)
	admin(t, s, http.MethodPost, "/admin/mutate", `{"op":"addCustomer"}`, http.StatusOK, nil)
	if s.AuditStatus().Written != w0+1 {
		t.Fatal("off: a record was written")
	}
}

func TestAuditHostile(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 9, Customers: 4})
	h := newAuditHTTP(t, s)
	c, sub := seatSub(t, s, 0)
	s.ClearAudit()
	must(t, s.IncreaseSeats(c, sub, 1))
	_, real := h.get("/v1/auditrecords?startDate="+today, nil)
	if err := s.SetHostile(Hostile{Malformed: []MalformedRule{{Scope: Scope{Endpoint: EndpointAuditRecords}}}}); err != nil {
		t.Fatal(err)
	}
	for _, shape := range AllShapes {
		code, body := h.get("/v1/auditrecords?startDate="+today, nil)
		if code != http.StatusOK || bytes.Equal(body, real) || !json.Valid(body) {
			t.Fatalf("shape %s: %d %s", shape, code, body)
		}
	}
	if n := s.Stats().Faults["hostile-malformed"]; n != int64(len(AllShapes)) {
		t.Fatalf("%d malformed pages counted", n)
	}
	// Other endpoints are not hit.
	if code, _ := get(s, "/v1/customers/"+c+"/subscriptions"); code != http.StatusOK {
		t.Fatal(code)
	}
	if err := s.SetHostile(Hostile{AuditNoise: &AuditNoise{UnknownCustomers: true, UnknownOperations: true}}); err != nil {
		t.Fatal(err)
	}
	recs, _ := h.all("startDate=" + today)
	known := map[string]bool{}
	for _, x := range s.State().Customers {
		known[x.ID] = true
	}
	var unknownCust, unknownOp int
	for _, r := range recs {
		if !known[r.CustomerID] {
			unknownCust++
		}
		if !pc.KnownAuditOperationType(r.OperationType) {
			unknownOp++
		}
	}
	if len(recs) != 3 || unknownCust != 1 || unknownOp != 1 || len(s.AuditLog(0)) != 1 {
		t.Fatalf("%d records, %d unknown customers, %d unknown operations", len(recs), unknownCust, unknownOp)
	}
	if err := s.SetHostile(Hostile{Malformed: []MalformedRule{{Scope: Scope{Endpoint: "auditrecord"}}}}); err == nil {
		t.Fatal("an unknown endpoint accepted")
	}
}

// TestAuditDeterministic checks that the same seed, clock and calls give
// byte-identical pages.
func TestAuditDeterministic(t *testing.T) {
	run := func() []byte {
		s, clk, _ := testSim(t, Options{Seed: 11, Customers: 20})
		s.RandomMutations(60)
		clk.Advance(40 * day)
		s.RandomMutations(60)
		var all bytes.Buffer
		for _, d := range []string{"2025-06-01", "2025-07-11"} {
			all.Write(mustGet(t, s, "/v1/auditrecords?size=25&startDate="+d+"&endDate="+d))
		}
		return all.Bytes()
	}
	a, b := run(), run()
	if !bytes.Equal(a, b) {
		t.Fatal("two runs with the same seed served different audit pages")
	}
	if !bytes.Contains(a, []byte(`"operationType":"update_subscription"`)) {
		t.Fatalf("no records: %.300s", a)
	}
}
