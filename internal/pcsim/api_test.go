package pcsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// snapshot renders every endpoint of every customer.
func snapshot(t *testing.T, s *Sim) []byte {
	t.Helper()
	var out bytes.Buffer
	out.Write(mustGet(t, s, "/v1/customers?size=500"))
	for _, c := range decode[pc.Collection[pc.Customer]](t, mustGet(t, s, "/v1/customers")).Items {
		subs := mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions")
		out.Write(subs)
		for _, sub := range decode[pc.Collection[pc.Subscription]](t, subs).Items {
			out.Write(mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions/"+sub.ID))
		}
		out.Write(mustGet(t, s, "/v1/customers/"+c.ID+"/managedservices"))
		out.Write(mustGet(t, s, "/v1/customers/"+c.ID+"/products?targetView=OnlineServices"))
	}
	return out.Bytes()
}

func TestDeterminism(t *testing.T) {
	a, _, _ := testSim(t, Options{Seed: 7, Customers: 30})
	b, _, _ := testSim(t, Options{Seed: 7, Customers: 30})
	c, _, _ := testSim(t, Options{Seed: 8, Customers: 30})
	sa, sb, sc := snapshot(t, a), snapshot(t, b), snapshot(t, c)
	if !bytes.Equal(sa, sb) {
		t.Fatal("same seed, count and start time gave different bytes")
	}
	if bytes.Equal(sa, sc) {
		t.Fatal("different seeds gave identical bytes")
	}
	// Customer i depends on (seed, i) only: a larger dataset contains the smaller.
	big, _, _ := testSim(t, Options{Seed: 7, Customers: 40})
	small := a.State()
	ids := map[string]bool{}
	for _, c := range big.State().Customers {
		ids[c.ID] = true
	}
	for _, c := range small.Customers {
		if !ids[c.ID] {
			t.Fatalf("customer %s of the 30-customer dataset missing from the 40-customer one", c.ID)
		}
	}
	// Random mutations are deterministic too (Wall is a fake clock here).
	ma, _ := json.Marshal(a.RandomMutations(40))
	mb, _ := json.Marshal(b.RandomMutations(40))
	if !bytes.Equal(ma, mb) {
		t.Fatal("RandomMutations differ between identical simulators")
	}
	if !bytes.Equal(snapshot(t, a), snapshot(t, b)) {
		t.Fatal("states differ after identical random mutations")
	}
}

func TestDecodesWithModelsAndMixIsComplete(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 60})
	kinds := map[string]int{}
	for _, c := range s.State().Customers {
		for _, sub := range c.Subscriptions {
			kinds[sub.Kind]++
		}
	}
	for _, k := range AllKinds {
		if kinds[k] == 0 {
			t.Errorf("dataset has no %s subscription (mix %v)", k, kinds)
		}
	}

	custs := decode[pc.Collection[pc.Customer]](t, mustGet(t, s, "/v1/customers"))
	if custs.TotalCount != 60 || len(custs.Items) != 60 || custs.Attributes.ObjectType != "Collection" {
		t.Fatalf("customers: totalCount %d, items %d, attributes %+v", custs.TotalCount, len(custs.Items), custs.Attributes)
	}
	var indirect, nceOpen, refundable, gotKinds int
	seen := map[string]bool{}
	fracDigits := regexp.MustCompile(`\.\d{7}Z$`)
	for _, c := range custs.Items {
		if c.CompanyProfile.TenantID != c.ID || !strings.HasSuffix(c.CompanyProfile.Domain, ".onmicrosoft.com") ||
			!c.RelationshipToPartner.Is(pc.RelationshipReseller) || c.Attributes.ObjectType != "Customer" || c.AllowDelegatedAccess == nil {
			t.Fatalf("customer shape: %s", c.Raw)
		}
		if c.AssociatedPartnerID != "" {
			indirect++
		}
		subs := decode[pc.Collection[pc.Subscription]](t, mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions"))
		if subs.Links.Self == nil || subs.TotalCount != len(subs.Items) {
			t.Fatalf("subscriptions envelope: %+v", subs.Links)
		}
		for _, sub := range subs.Items {
			if sub.RefundableQuantity != nil {
				t.Fatalf("list item carries refundableQuantity by default: %s", sub.Raw)
			}
			one := decode[pc.Subscription](t, mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions/"+sub.ID))
			raw := topLevel(t, one.Raw)
			switch {
			case one.ProductType == nil && strings.Count(one.OfferID, "-") == 4: // legacy
				if one.Attributes.Etag == "" || one.CancellationAllowedUntilDate.Present() || raw["productType"] != nil {
					t.Fatalf("legacy shape: %s", one.Raw)
				}
				if one.ParentSubscriptionID != "" {
					if one.Links["parentSubscription"].URI == "" {
						t.Fatalf("add-on without parentSubscription link: %s", one.Raw)
					}
					seen[KindLegacyAddon] = true
				}
			case one.IsNCE():
				if !fracDigits.MatchString(one.CreationDate.Raw) || !strings.HasSuffix(one.CommitmentEndDateTime.Raw, "T23:59:59Z") ||
					!strings.HasSuffix(one.CommitmentEndDate.Raw, "T00:00:00Z") || !one.CancellationAllowedUntilDate.Valid() ||
					one.RefundableQuantity == nil || one.Links["availability"].URI == "" {
					t.Fatalf("NCE shape: %s", one.Raw)
				}
				if one.CancellationAllowedUntilDate.T.After(t0) && one.Status.Is(pc.StatusActive) {
					nceOpen++
				}
				total := 0
				for _, d := range one.RefundableQuantity.Details {
					total += d.Quantity
					if !d.AllowedUntilDateTime.T.After(t0) {
						t.Fatalf("expired refundable detail rendered: %s", one.Raw)
					}
				}
				if total != one.RefundableQuantity.TotalQuantity {
					t.Fatalf("totalQuantity %d != sum of details %d", one.RefundableQuantity.TotalQuantity, total)
				}
				if total > 0 {
					refundable++
				}
				if one.IsTrial {
					seen[KindNCETrial] = true
				}
			case one.ProductType != nil && one.ProductType.ID == "Azure":
				if one.OfferID != "DZH318Z0BPS6:0001" || one.UnitType != "Usage-based" || !one.BillingType.Is(pc.BillingTypeUsage) || !one.BillingCycle.Is(pc.BillingCycleOneTime) {
					t.Fatalf("Azure plan shape: %s", one.Raw)
				}
				seen[KindAzurePlan] = true
			default: // marketplace
				if one.IsMicrosoftProduct || one.UnitType != "License(s)" || one.PublisherName == "" || strings.HasPrefix(one.PublisherName, "Microsoft") {
					t.Fatalf("marketplace shape: %s", one.Raw)
				}
				seen[KindMarketplaceSaaS] = true
			}
		}
		ms := decode[pc.Collection[pc.ManagedService]](t, mustGet(t, s, "/v1/customers/"+c.ID+"/managedservices"))
		for _, m := range ms.Items {
			if m.Attributes.ObjectType != "ManagedService" || m.Links["adminService"].URI == "" || m.Links["serviceHealth"].URI == "" || m.Links["serviceTicket"].URI == "" {
				t.Fatalf("managed service shape: %s", m.Raw)
			}
		}
	}
	gotKinds = len(seen)
	if indirect == 0 || nceOpen == 0 || refundable == 0 || gotKinds < 4 {
		t.Fatalf("dataset lacks variety: indirect %d, open NCE windows %d, refundable %d, kinds seen %v", indirect, nceOpen, refundable, seen)
	}
	for _, view := range []string{"Azure", "MicrosoftAzure", "OnlineServices", "onlineservices", "Software", "AzureReservations", "AzureReservationsVM", "AzureReservationsSQL"} {
		cid := custs.Items[0].ID
		p := decode[pc.Collection[pc.Product]](t, mustGet(t, s, "/v1/customers/"+cid+"/products?targetView="+view))
		if len(p.Items) == 0 || p.Items[0].Title == "" || p.Links.Self == nil {
			t.Fatalf("products %s: %+v", view, p)
		}
	}
}

func TestIncludeRefundableInList(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 10, IncludeRefundableInList: true})
	c := s.State().Customers[0]
	subs := decode[pc.Collection[pc.Subscription]](t, mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions"))
	for _, sub := range subs.Items {
		if sub.IsNCE() != (sub.RefundableQuantity != nil) {
			t.Fatalf("IncludeRefundableInList: NCE %v, refundableQuantity %v: %s", sub.IsNCE(), sub.RefundableQuantity, sub.Raw)
		}
	}
}

// sameOrder checks that the keys common to ours and doc appear in the same
// order, and that the differences are the expected ones.
func sameOrder(t *testing.T, what string, ours, doc []string, onlyOurs, onlyDoc []string) {
	t.Helper()
	var co, cd []string
	for _, k := range ours {
		if slices.Contains(doc, k) {
			co = append(co, k)
		} else if !slices.Contains(onlyOurs, k) {
			t.Errorf("%s: property %q is not in the documented example", what, k)
		}
	}
	for _, k := range doc {
		if slices.Contains(ours, k) {
			cd = append(cd, k)
		} else if !slices.Contains(onlyDoc, k) {
			t.Errorf("%s: documented property %q is missing", what, k)
		}
	}
	if !slices.Equal(co, cd) {
		t.Errorf("%s: property order differs\n ours: %v\n docs: %v", what, co, cd)
	}
}

func TestShapesMatchDocumentation(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 3, Customers: 80})
	byKind := map[string][]byte{}
	for _, c := range s.State().Customers {
		for _, sub := range c.Subscriptions {
			if _, ok := byKind[sub.Kind]; !ok && sub.Status == "active" {
				byKind[sub.Kind] = mustGet(t, s, "/v1/customers/"+c.ID+"/subscriptions/"+sub.ID)
			}
		}
	}
	first := func(b []byte) []byte {
		return decode[struct{ Items []json.RawMessage }](t, b).Items[0]
	}
	ncePlus := []string{"cancellationAllowedUntilDate", "billingCycleEndDate", "billingCycleEndDateTime", "commitmentEndDateTime", "scheduledNextTermInstructions"}
	cases := []struct {
		kind, file        string
		item              bool
		onlyOurs, onlyDoc []string
	}{
		{KindNCEMonthly, "repaired/subscription-nce-01.json", false, ncePlus, []string{"refundOptions"}},
		{KindNCEAnnual, "repaired/subscription-nce-02.json", false, ncePlus, []string{"refundOptions"}},
		{KindNCESoftware, "repaired/subscription-software-nce-scheduled-01.json", false,
			append(ncePlus, "refundableQuantity"), []string{"scheduledNextTermInstructions"}},
		{KindLegacyLicense, "partner-center/subscriptions-collection-by-partner-01.json", true, []string{"partnerId"}, []string{"partnerId"}},
		{KindLegacyAddon, "partner-center/subscription-legacy-addon-01.json", false, []string{"partnerId"}, nil},
		{KindMarketplaceSaaS, "partner-center/subscription-marketplace-deleted-01.json", false, nil, []string{"refundOptions"}},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			doc := corpusFile(t, tc.file)
			if tc.item {
				doc = first(doc)
			}
			ours, ok := byKind[tc.kind]
			if !ok {
				t.Fatalf("no active %s in the dataset", tc.kind)
			}
			sameOrder(t, tc.kind, keyOrder(t, ours), keyOrder(t, doc), tc.onlyOurs, tc.onlyDoc)
			var o, d struct {
				Links      map[string]json.RawMessage
				Attributes json.RawMessage
			}
			_ = json.Unmarshal(ours, &o)
			_ = json.Unmarshal(doc, &d)
			if len(keyOrder(t, o.Attributes)) != len(keyOrder(t, d.Attributes)) {
				t.Errorf("attributes differ: ours %s, docs %s", o.Attributes, d.Attributes)
			}
		})
	}
	t.Run("customer", func(t *testing.T) {
		doc := corpusFile(t, "partner-center/customer-created-indirect-01.json")
		c := first(mustGet(t, s, "/v1/customers"))
		sameOrder(t, "customer", keyOrder(t, c), keyOrder(t, doc), []string{"links"}, []string{"billingProfile", "userCredentials", "associatedPartnerId", "allowDelegatedAccess"})
	})
	t.Run("collection", func(t *testing.T) {
		doc := corpusFile(t, "partner-center/customers-collection-01.json")
		sameOrder(t, "collection", keyOrder(t, mustGet(t, s, "/v1/customers?size=5")), keyOrder(t, doc), nil, nil)
	})
	t.Run("managedservice", func(t *testing.T) {
		doc := corpusFile(t, "partner-center/managedservices-collection-01.txt")
		doc = append(bytes.TrimSpace(doc), "]}"...) // the documented example is cut short
		var cid string
		for _, c := range s.State().Customers {
			if len(c.ManagedServices) > 0 {
				cid = c.ID
				break
			}
		}
		ours := mustGet(t, s, "/v1/customers/"+cid+"/managedservices")
		sameOrder(t, "managed service", keyOrder(t, first(ours)), keyOrder(t, first(doc)), nil, nil)
	})
	t.Run("product", func(t *testing.T) {
		doc := corpusFile(t, "partner-center/product-nce-01.json")
		cid := s.State().Customers[0].ID
		ours := first(mustGet(t, s, "/v1/customers/"+cid+"/products?targetView=OnlineServices"))
		sameOrder(t, "product", keyOrder(t, ours), keyOrder(t, doc), nil, nil)
	})
	t.Run("errors", func(t *testing.T) {
		doc := corpusFile(t, "partner-center/error-800090-01.json")
		_, body := get(s, "/v1/customers/00000000-0000-0000-0000-000000000000")
		if !slices.Equal(keyOrder(t, body), keyOrder(t, doc)) {
			t.Errorf("error body %s, documented %s", body, doc)
		}
		doc429 := corpusFile(t, "partner-center/error-429-01.json")
		if !slices.Equal(keyOrder(t, throttleBody(57)), keyOrder(t, doc429)) {
			t.Errorf("429 body %s, documented %s", throttleBody(57), doc429)
		}
	})
}

func TestAPIBehaviour(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 5, Customers: 40, Token: "secret"})
	auth := http.Header{"Authorization": {"Bearer secret"}}
	st := s.State()
	var cid, mpn string
	for _, c := range st.Customers {
		if c.AssociatedPartnerID != "" {
			cid, mpn = c.ID, c.AssociatedPartnerID
			break
		}
	}
	if cid == "" {
		t.Fatal("no indirect customer")
	}
	missing := "00000000-0000-0000-0000-000000000000"
	cases := []struct {
		name     string
		method   string
		path     string
		hdr      http.Header
		want     int
		wantCode float64 // error body code, 0 to skip
	}{
		{"bad token", "GET", "/v1/customers", http.Header{"Authorization": {"Bearer nope"}}, 401, 401},
		{"no authorization", "GET", "/v1/customers", http.Header{}, 401, 401},
		{"basic auth", "GET", "/v1/customers", http.Header{"Authorization": {"Basic c2VjcmV0"}}, 401, 401},
		{"ok", "GET", "/v1/customers", auth, 200, 0},
		{"case-insensitive path", "GET", "/v1/Customers/" + strings.ToUpper(cid) + "/Subscriptions", auth, 200, 0},
		{"unknown customer", "GET", "/v1/customers/" + missing + "/subscriptions", auth, 404, 600026},
		{"unknown subscription", "GET", "/v1/customers/" + cid + "/subscriptions/" + missing, auth, 404, 20003},
		{"unknown route", "GET", "/v1/invoices", auth, 404, 404},
		{"method", "POST", "/v1/customers", auth, 405, 405},
		{"forbidden view", "GET", "/v1/customers/" + cid + "/products?targetView=AzureReservationsCosmosDb", auth, 403, 400036},
		{"unknown view", "GET", "/v1/customers/" + cid + "/products?targetView=Nope", auth, 400, 400},
		{"no view", "GET", "/v1/customers/" + cid + "/products", auth, 400, 400},
		{"size zero", "GET", "/v1/customers?size=0", auth, 400, 400},
		{"size text", "GET", "/v1/customers?size=ten", auth, 400, 400},
		{"next without token", "GET", "/v1/customers?size=10&seekOperation=Next", auth, 400, 400},
		{"forged token", "GET", "/v1/customers?size=10&seekOperation=Next", http.Header{"Authorization": {"Bearer secret"}, "Ms-Continuationtoken": {"AQEwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAAAAAAAAAAAAAAAAAAAAAA"}}, 400, 400},
		{"garbage token", "GET", "/v1/customers?size=10&seekOperation=Next", http.Header{"Authorization": {"Bearer secret"}, "Ms-Continuationtoken": {"!!!"}}, 400, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(s, tc.method, tc.path, tc.hdr, "")
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body.Bytes())
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			if rec.Header().Get("MS-RequestId") == "" || rec.Header().Get("Date") == "" {
				t.Fatalf("headers %v", rec.Header())
			}
			if tc.wantCode != 0 {
				var e map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
					t.Fatal(err)
				}
				if e["code"] != tc.wantCode || e["description"] == "" || e["source"] != "PartnerFD" {
					t.Fatalf("error body %s (code must be the JSON number %v)", rec.Body.Bytes(), tc.wantCode)
				}
				if _, ok := e["data"].([]any); !ok {
					t.Fatalf("error body without data array: %s", rec.Body.Bytes())
				}
			}
		})
	}

	t.Run("headers echoed", func(t *testing.T) {
		h := auth.Clone()
		h.Set("MS-CorrelationId", "corr-1")
		h.Set("MS-RequestId", "req-1")
		rec := call(s, "GET", "/v1/customers?size=1", h, "")
		if rec.Header().Get("MS-CorrelationId") != "corr-1" || rec.Header().Get("MS-RequestId") != "req-1" {
			t.Fatalf("headers not echoed: %v", rec.Header())
		}
		if rec.Header().Get("Date") != "Sun, 01 Jun 2025 12:00:00 GMT" {
			t.Fatalf("Date %q is not the business clock", rec.Header().Get("Date"))
		}
	})

	t.Run("mpn_id filter", func(t *testing.T) {
		rec := call(s, "GET", "/v1/customers/"+cid+"/subscriptions?mpn_id="+mpn, auth, "")
		all := call(s, "GET", "/v1/customers/"+cid+"/subscriptions", auth, "")
		got := decode[pc.Collection[pc.Subscription]](t, rec.Body.Bytes())
		every := decode[pc.Collection[pc.Subscription]](t, all.Body.Bytes())
		want := 0
		for _, sub := range every.Items {
			if sub.PartnerID == mpn {
				want++
			}
		}
		if want == 0 || len(got.Items) != want || got.TotalCount != want {
			t.Fatalf("mpn_id=%s kept %d of %d (want %d)", mpn, len(got.Items), len(every.Items), want)
		}
		none := decode[pc.Collection[pc.Subscription]](t, call(s, "GET", "/v1/customers/"+cid+"/subscriptions?mpn_id=999", auth, "").Body.Bytes())
		if none.TotalCount != 0 || none.Items == nil {
			t.Fatalf("mpn_id=999: %+v", none)
		}
	})

	t.Run("size clamped", func(t *testing.T) {
		big, _, _ := testSim(t, Options{Seed: 5, Customers: 600, SubscriptionsPerCustomer: 1})
		got := decode[pc.Collection[pc.Customer]](t, mustGet(t, big, "/v1/customers?size=5000"))
		if len(got.Items) != 500 || got.Links.Self.URI != "/v1/customers?size=500" || got.Links.Next == nil {
			t.Fatalf("size=5000 gave %d items, links %+v", len(got.Items), got.Links)
		}
	})
}
