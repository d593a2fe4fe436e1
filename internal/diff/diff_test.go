package diff

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

var now = time.Date(2026, 4, 10, 9, 0, 0, 0, time.UTC)

// Real-shaped subscriptions (after the documented examples).
const (
	nceJSON = `{"id":"bbbb1b1b-cc2c-dd3d-ee4e-ffffff5f5f5f","offerId":"CFQ7TTC0LH18:0001:CFQ7TTC0P0WS","offerName":"Microsoft 365 Business Basic",
"friendlyName":"Microsoft 365 Business Basic","productType":{"id":"OnlineServicesNCE","displayName":"OnlineServicesNCE"},"quantity":2,
"unitType":"Licenses","hasPurchasableAddons":false,"creationDate":"2026-04-05T19:26:38.3667635Z","effectiveStartDate":"2026-04-05T00:00:00Z",
"commitmentEndDate":"2027-04-04T00:00:00Z","commitmentEndDateTime":"2027-04-04T23:59:59Z","cancellationAllowedUntilDate":"2026-04-12T19:27:03.440527Z",
"billingCycleEndDate":"2026-05-04T00:00:00Z","billingCycleEndDateTime":"2026-05-04T23:59:59Z","status":"active","autoRenewEnabled":true,"isTrial":false,
"billingType":"license","billingCycle":"monthly","termDuration":"P1Y","renewalTermDuration":"","isMicrosoftProduct":true,"partnerId":"4847383",
"attentionNeeded":false,"actionTaken":false,"contractType":"subscription","links":{"self":{"uri":"/customers/c1/subscriptions/bbbb1b1b","method":"GET","headers":[]}},
"publisherName":"Microsoft Corporation","orderId":"79d9f5e2f43a","attributes":{"objectType":"Subscription"}}`
	legacyJSON = `{"id":"83ef9d05-4169-4ef9-9657-0e86b1eab1de","entitlementId":"a356ac8c-e310-44f4-bf85-C7f29044af99","offerId":"0CCA44D6-68E9-4762-94EE-31ECE98783B9",
"offerName":"Office 365 E3","friendlyName":"nickname","quantity":10,"unitType":"none","creationDate":"2015-11-25T06:41:12Z","effectiveStartDate":"2015-11-24T08:00:00Z",
"commitmentEndDate":"2016-12-12T08:00:00Z","status":"active","autoRenewEnabled":false,"billingType":"license","contractType":"subscription",
"links":{"offer":{"uri":"/v1/offers/0CCA44D6","method":"GET","headers":[]}},"orderId":"6183db3d","attributes":{"etag":"e1","objectType":"Subscription"}}`
	trialJSON = `{"id":"tr-1","offerId":"CFQ7TTC0LDPB:0001:CFQ7TTC0K5DJ","offerName":"Microsoft 365 Business Premium Trial","quantity":25,"unitType":"Licenses",
"productType":{"id":"OnlineServicesNCE","displayName":"OnlineServicesNCE"},"creationDate":"2026-04-01T00:00:00Z","commitmentEndDate":"2026-04-30T00:00:00Z",
"cancellationAllowedUntilDate":"2026-04-08T00:00:00Z","status":"active","autoRenewEnabled":false,"isTrial":true,"billingCycle":"monthly","termDuration":"P1M","attributes":{"objectType":"Subscription"}}`
	azureJSON = `{"id":"az-1","offerId":"DZH318Z0BPS6:0001","offerName":"Azure plan","quantity":1,"unitType":"Usage-based","productType":{"id":"Azure","displayName":"Azure"},
"creationDate":"2025-01-01T00:00:00Z","status":"active","autoRenewEnabled":false,"billingType":"usage","billingCycle":"one_time","attributes":{"objectType":"Subscription"}}`
)

// mutate returns raw JSON with fields set (nil deletes).
func mutate(t *testing.T, raw string, set map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func subEntity(t *testing.T, raw string) resource.Entity {
	t.Helper()
	var s pc.Subscription
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	return resource.SubscriptionEntities([]pc.Subscription{s})[0]
}

// snapWith builds a stored snapshot holding the given subscription JSONs,
// as a previous complete listing would have left it.
func snapWith(t *testing.T, raws ...string) *state.Snapshot {
	t.Helper()
	snap := &state.Snapshot{CustomerID: "c1", Records: map[*resource.Kind]map[string]state.Record{resource.Subscriptions: {}},
		Pending: map[*resource.Kind]map[string]state.Pending{resource.Subscriptions: {}}, Baselined: map[*resource.Kind]bool{resource.Subscriptions: true}}
	for _, raw := range raws {
		e := subEntity(t, raw)
		f := deadline.FactsOf(e.Model.(*pc.Subscription), nil, now.Add(-time.Hour))
		snap.Records[resource.Subscriptions][e.ID] = state.Record{Hash: state.HashOf(e.Raw), Rev: 4, Raw: e.Raw, Meta: f.Encode()}
	}
	return snap
}

type gotEvent struct {
	Type events.Type
	Data events.Data
}

func run(t *testing.T, snap *state.Snapshot, raws []string, o Options) ([]gotEvent, *Result) {
	t.Helper()
	l := &Listing{CustomerID: "c1", CustomerName: "Contoso", Kinds: []*resource.Kind{resource.Subscriptions}}
	for _, r := range raws {
		l.Entities = append(l.Entities, subEntity(t, r))
	}
	if o.Source == "" {
		o.Source = "https://pc.test"
	}
	o.Now = now
	res, err := Customer(snap, l, o)
	if err != nil {
		t.Fatal(err)
	}
	var out []gotEvent
	for _, env := range res.Change.Events {
		ev, err := events.Decode(env.Body)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ev.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gotEvent{ev.Type, *d})
	}
	return out, res
}

func paths(cs []events.Change) []string {
	var p []string
	for _, c := range cs {
		p = append(p, c.Path)
	}
	return p
}

func TestSubscriptionEvents(t *testing.T) {
	tests := []struct {
		name  string
		base  string
		set   map[string]any
		types []events.Type
		check func(t *testing.T, evs []gotEvent)
	}{
		{"NCE seats up", nceJSON, map[string]any{"quantity": 5}, []events.Type{events.SubscriptionQuantityChanged},
			func(t *testing.T, evs []gotEvent) {
				d := evs[0].Data
				if string(d.Old) != "2" || string(d.New) != "5" || *d.Delta != 3 || fmt.Sprint(paths(d.Changes)) != "[/quantity]" || *d.After.Quantity != 5 || d.Revision != 5 {
					t.Errorf("quantity data = old %s new %s delta %v changes %v rev %d", d.Old, d.New, *d.Delta, paths(d.Changes), d.Revision)
				}
			}},
		{"legacy seats down", legacyJSON, map[string]any{"quantity": 7}, []events.Type{events.SubscriptionQuantityChanged},
			func(t *testing.T, evs []gotEvent) {
				if *evs[0].Data.Delta != -3 {
					t.Errorf("delta = %d", *evs[0].Data.Delta)
				}
			}},
		{"suspended", nceJSON, map[string]any{"status": "suspended", "suspensionReasons": []string{"CustomerCancellation"}},
			[]events.Type{events.SubscriptionStatusChanged, events.SubscriptionUpdated},
			func(t *testing.T, evs []gotEvent) {
				if string(evs[0].Data.Old) != `"active"` || string(evs[0].Data.New) != `"suspended"` {
					t.Errorf("status old/new = %s %s", evs[0].Data.Old, evs[0].Data.New)
				}
				if fmt.Sprint(paths(evs[1].Data.Changes)) != "[/suspensionReasons]" {
					t.Errorf("updated changes = %v", paths(evs[1].Data.Changes))
				}
			}},
		{"auto-renew off", nceJSON, map[string]any{"autoRenewEnabled": false}, []events.Type{events.SubscriptionAutoRenewChanged},
			func(t *testing.T, evs []gotEvent) {
				if string(evs[0].Data.Old) != "true" || string(evs[0].Data.New) != "false" {
					t.Errorf("auto-renew old/new = %s %s", evs[0].Data.Old, evs[0].Data.New)
				}
			}},
		{"renewed", nceJSON, map[string]any{"commitmentEndDate": "2028-04-04T00:00:00Z", "commitmentEndDateTime": "2028-04-04T23:59:59Z",
			"cancellationAllowedUntilDate": "2027-04-12T00:00:00Z"}, []events.Type{events.SubscriptionRenewed},
			func(t *testing.T, evs []gotEvent) {
				d := evs[0].Data
				if len(d.Changes) != 3 || !strings.Contains(string(d.New), "2028-04-04T23:59:59") {
					t.Errorf("renewed data: changes %v new %s", paths(d.Changes), d.New)
				}
			}},
		{"commitment end moved back is an update", nceJSON, map[string]any{"commitmentEndDate": "2026-12-04T00:00:00Z", "commitmentEndDateTime": "2026-12-04T23:59:59Z"},
			[]events.Type{events.SubscriptionUpdated}, nil},
		{"term changed", nceJSON, map[string]any{"termDuration": "P3Y", "billingCycle": "annual"}, []events.Type{events.SubscriptionTermChanged},
			func(t *testing.T, evs []gotEvent) {
				if fmt.Sprint(paths(evs[0].Data.Changes)) != "[/billingCycle /termDuration]" {
					t.Errorf("term changes = %v", paths(evs[0].Data.Changes))
				}
			}},
		{"scheduled change set", nceJSON, map[string]any{"scheduledNextTermInstructions": map[string]any{"product": map[string]any{"productId": "CFQ7TTC0LH18", "skuId": "0001", "availabilityId": "X", "billingCycle": "monthly", "termDuration": "P1M"}, "quantity": 1}},
			[]events.Type{events.SubscriptionScheduledChangeSet},
			func(t *testing.T, evs []gotEvent) {
				if !strings.Contains(string(evs[0].Data.New), `"termDuration":"P1M"`) || evs[0].Data.Old != nil {
					t.Errorf("scheduled new = %s old = %s", evs[0].Data.New, evs[0].Data.Old)
				}
			}},
		{"attention needed", nceJSON, map[string]any{"attentionNeeded": true, "actionTaken": true},
			[]events.Type{events.SubscriptionAttentionNeeded, events.SubscriptionUpdated}, nil},
		{"unknown new field", nceJSON, map[string]any{"migratedTo": map[string]any{"id": "x", "date": "2026-01-01"}}, []events.Type{events.SubscriptionUpdated},
			func(t *testing.T, evs []gotEvent) {
				if fmt.Sprint(paths(evs[0].Data.Changes)) != "[/migratedTo]" || string(evs[0].Data.Changes[0].New) != `{"date":"2026-01-01","id":"x"}` {
					t.Errorf("changes = %+v", evs[0].Data.Changes)
				}
			}},
		{"friendly name", legacyJSON, map[string]any{"friendlyName": "Finance team"}, []events.Type{events.SubscriptionUpdated}, nil},
		{"trial converted", trialJSON, map[string]any{"isTrial": false, "offerName": "Microsoft 365 Business Premium", "quantity": 10},
			[]events.Type{events.SubscriptionQuantityChanged, events.SubscriptionUpdated}, nil},
		{"Azure plan expired", azureJSON, map[string]any{"status": "expired"}, []events.Type{events.SubscriptionStatusChanged}, nil},
		{"volatile fields only", legacyJSON, map[string]any{"attributes": map[string]any{"etag": "e2", "objectType": "Subscription"}, "links": map[string]any{}}, nil, nil},
		{"refundable quantity is a deadline input", nceJSON, map[string]any{"refundableQuantity": map[string]any{"totalQuantity": 1, "details": []any{}}}, nil, nil},
		{"several at once, each change once", nceJSON, map[string]any{"quantity": 9, "status": "suspended", "autoRenewEnabled": false, "friendlyName": "x", "partnerId": "123"},
			[]events.Type{events.SubscriptionStatusChanged, events.SubscriptionQuantityChanged, events.SubscriptionAutoRenewChanged, events.SubscriptionUpdated},
			func(t *testing.T, evs []gotEvent) {
				seen := map[string]bool{}
				for _, e := range evs {
					for _, p := range paths(e.Data.Changes) {
						if seen[p] {
							t.Errorf("change %s reported twice", p)
						}
						seen[p] = true
					}
				}
				if len(seen) != 5 {
					t.Errorf("%d changes reported, want 5", len(seen))
				}
				ids := map[string]bool{}
				for _, e := range evs {
					if e.Data.Revision != 5 {
						t.Errorf("revision %d, want 5", e.Data.Revision)
					}
					ids[string(e.Type)] = true
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapWith(t, tt.base)
			fresh := mutate(t, tt.base, tt.set)
			evs, res := run(t, snap, []string{fresh}, Options{})
			var types []events.Type
			for _, e := range evs {
				types = append(types, e.Type)
				if e.Data.CustomerID != "c1" || e.Data.CustomerName != "Contoso" || e.Data.SubscriptionID == "" || e.Data.After == nil {
					t.Errorf("%s lacks ids or after: %+v", e.Type, e.Data)
				}
			}
			if !slices.Equal(types, tt.types) {
				t.Fatalf("types = %v, want %v", types, tt.types)
			}
			if len(res.Change.Puts) != 1 {
				t.Errorf("%d puts, want the changed record", len(res.Change.Puts))
			}
			if tt.types == nil && res.Change.Puts[0].Record.Rev != 4 {
				t.Errorf("a change without events bumped the revision to %d", res.Change.Puts[0].Record.Rev)
			}
			if tt.check != nil {
				tt.check(t, evs)
			}
		})
	}
}

func TestUnchangedWritesNothing(t *testing.T) {
	snap := snapWith(t, nceJSON, legacyJSON)
	_, res := run(t, snap, []string{nceJSON, legacyJSON}, Options{})
	if !res.Change.Empty() {
		t.Errorf("unchanged listing produced a change: %+v", res.Change)
	}
}

func TestRemovalNeedsTwoListings(t *testing.T) {
	snap := snapWith(t, nceJSON, legacyJSON, trialJSON, azureJSON)
	fresh := []string{nceJSON, legacyJSON, trialJSON}
	evs, res := run(t, snap, fresh, Options{})
	if len(evs) != 0 || len(res.Change.PendingPuts) != 1 || res.Change.PendingPuts[0].Key != "c1/az-1" {
		t.Fatalf("first miss: events %v pending %+v", evs, res.Change.PendingPuts)
	}
	snap.Pending[resource.Subscriptions]["az-1"] = res.Change.PendingPuts[0].Pending
	// Back again: the mark is cleared, nothing emitted.
	evs, res = run(t, snap, append(fresh, azureJSON), Options{})
	if len(evs) != 0 || len(res.Change.PendingDeletes) != 1 {
		t.Fatalf("reappearance: events %v pending deletes %v", evs, res.Change.PendingDeletes)
	}
	// Still missing from the next complete listing: removed.
	evs, res = run(t, snap, fresh, Options{})
	if len(evs) != 1 || evs[0].Type != events.SubscriptionRemoved || evs[0].Data.Before.OfferName != "Azure plan" || evs[0].Data.Revision != 5 {
		t.Fatalf("second miss: %+v", evs)
	}
	if len(res.Change.Deletes) != 1 || res.Change.Deletes[0].Key != "c1/az-1" {
		t.Errorf("deletes = %+v", res.Change.Deletes)
	}
}

func TestMassRemovalIsHeld(t *testing.T) {
	snap := snapWith(t, nceJSON, legacyJSON, trialJSON, azureJSON)
	o := Options{HoldCycles: 2}
	evs, res := run(t, snap, []string{nceJSON}, o)
	if len(evs) != 1 || evs[0].Type != events.OpsMassRemovalHeld {
		t.Fatalf("events = %+v", evs)
	}
	h := evs[0].Data.Hold
	if h.Missing != 3 || h.Total != 4 || h.Resource != "subscription" || len(h.IDs) != 3 || h.Share != 0.75 {
		t.Errorf("hold = %+v", h)
	}
	for _, p := range res.Change.PendingPuts {
		snap.Pending[resource.Subscriptions][strings.TrimPrefix(p.Key, "c1/")] = p.Pending
	}
	// Next listing: same set still missing; no second announcement, and
	// with HoldCycles 2 the hold is released: the removals follow.
	evs, _ = run(t, snap, []string{nceJSON}, o)
	if len(evs) != 3 {
		t.Fatalf("after the hold: %+v", evs)
	}
	for _, e := range evs {
		if e.Type != events.SubscriptionRemoved {
			t.Errorf("got %s, want removed", e.Type)
		}
	}
}

func TestBaselineAndCreated(t *testing.T) {
	empty := &state.Snapshot{CustomerID: "c1", Records: map[*resource.Kind]map[string]state.Record{}, Pending: map[*resource.Kind]map[string]state.Pending{}, Baselined: map[*resource.Kind]bool{}}
	evs, res := run(t, empty, []string{nceJSON, legacyJSON}, Options{})
	if len(evs) != 0 || len(res.Change.Puts) != 2 || len(res.Change.Baselines) != 1 {
		t.Fatalf("baseline: events %v puts %d baselines %v", evs, len(res.Change.Puts), res.Change.Baselines)
	}
	evs, _ = run(t, empty, []string{nceJSON}, Options{CreatedOnFirstSighting: true})
	if len(evs) != 1 || evs[0].Type != events.SubscriptionCreated {
		t.Fatalf("configured created: %+v", evs)
	}
	// After the baseline, a new subscription is created.
	snap := snapWith(t, nceJSON)
	evs, _ = run(t, snap, []string{nceJSON, trialJSON}, Options{})
	if len(evs) != 1 || evs[0].Type != events.SubscriptionCreated || evs[0].Data.After.ID != "tr-1" || evs[0].Data.Revision != 1 {
		t.Fatalf("created: %+v", evs)
	}
}

func TestCustomerList(t *testing.T) {
	cust := func(id, name string, delegated bool) resource.Entity {
		raw := fmt.Sprintf(`{"id":%q,"companyProfile":{"tenantId":%q,"domain":"x.onmicrosoft.com","companyName":%q},"relationshipToPartner":"reseller","allowDelegatedAccess":%v,"attributes":{"objectType":"Customer"}}`, id, id, name, delegated)
		var c pc.Customer
		json.Unmarshal([]byte(raw), &c)
		return resource.CustomerEntities([]pc.Customer{c})[0]
	}
	o := Options{Source: "s", Now: now}
	// First listing: baseline.
	res, err := CustomerList(nil, nil, nil, false, []resource.Entity{cust("a", "A", true), cust("b", "B", true)}, o)
	if err != nil || res.Events() != 0 || len(res.Change.Puts) != 2 {
		t.Fatalf("baseline: %v %v", res, err)
	}
	known := map[string]state.Record{}
	for _, p := range res.Change.Puts {
		known[p.Key] = p.Record
	}
	// c added, a lost delegated admin, b gone (pending first).
	res, _ = CustomerList(known, map[string]state.Pending{}, nil, true, []resource.Entity{cust("a", "A", false), cust("c", "C", true)}, o)
	var types []string
	for _, e := range res.Change.Events {
		ev, _ := events.Decode(e.Body)
		types = append(types, string(ev.Type)+":"+ev.Subject)
	}
	want := []string{"io.pcwatch.customer.updated:customers/a", "io.pcwatch.customer.added:customers/c"}
	if !slices.Equal(types, want) {
		t.Errorf("events = %v, want %v", types, want)
	}
	if len(res.Change.PendingPuts) != 1 {
		t.Fatalf("pending = %+v", res.Change.PendingPuts)
	}
	res, _ = CustomerList(known, map[string]state.Pending{"b": res.Change.PendingPuts[0].Pending}, nil, true, []resource.Entity{cust("a", "A", false), cust("c", "C", true)}, o)
	ev, _ := events.Decode(res.Change.Events[len(res.Change.Events)-1].Body)
	if ev.Type != events.CustomerRemoved || !slices.Contains(res.Change.ForgetCustomers, "b") || len(res.Change.DeletePrefixes) != 3 {
		t.Errorf("removal: %s, change %+v", ev.Type, res.Change)
	}
}

func TestChanges(t *testing.T) {
	tests := []struct {
		old, new string
		want     string
	}{
		{`{"a":1}`, `{"a":1}`, `[]`},
		{`{"a":1}`, `{"a":2}`, `[/a:1->2]`},
		{`{"Quantity":1,"Status":"active"}`, `{"quantity":2,"status":"active"}`, `[/quantity:1->2]`},
		{`{"a/b":1,"c~d":{"e":true}}`, `{"a/b":2,"c~d":{"e":false}}`, `[/a~1b:1->2 /c~0d/e:true->false]`},
		{`{"x":[1,2]}`, `{"x":[1,2,3]}`, `[/x:[1,2]->[1,2,3]]`},
		{`{"x":1}`, `{}`, `[/x:1->]`},
		{`{}`, `{"x":{"y":1}}`, `[/x:->{"y":1}]`},
		{`{"x":null}`, `{}`, `[]`},
		{`{"attributes":{"etag":"1"},"links":{"a":1}}`, `{"attributes":{"etag":"2"},"links":{"a":2}}`, `[]`},
		{`{"n":1.50}`, `{"n":1.5}`, `[]`},
		{`{"n":1}`, `{"n":"1"}`, `[/n:1->"1"]`},
	}
	for _, tt := range tests {
		cs, err := Changes([]byte(tt.old), []byte(tt.new), DefaultIgnored)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, fmt.Sprintf("%s:%s->%s", c.Path, c.Old, c.New))
		}
		if s := "[" + strings.Join(got, " ") + "]"; s != tt.want {
			t.Errorf("Changes(%s, %s) = %s, want %s", tt.old, tt.new, s, tt.want)
		}
	}
	if _, err := Changes([]byte(`{`), []byte(`{}`), nil); err == nil {
		t.Error("bad stored JSON accepted")
	}
}

func TestScopeChangesAreNotEvents(t *testing.T) {
	prod := func(view, id string) resource.Entity {
		var p pc.Product
		json.Unmarshal([]byte(fmt.Sprintf(`{"id":%q,"title":"P %s"}`, id, id)), &p)
		return resource.ProductEntities(view, []pc.Product{p})[0]
	}
	empty := func() *state.Snapshot {
		return &state.Snapshot{CustomerID: "c1", Records: map[*resource.Kind]map[string]state.Record{resource.Products: {}, resource.Subscriptions: {}},
			Pending: map[*resource.Kind]map[string]state.Pending{}, Baselined: map[*resource.Kind]bool{},
			BaselinedScopes: map[*resource.Kind]map[string]bool{resource.Products: {}}}
	}
	o := Options{Source: "s", Now: now}
	// Baseline of view A.
	snap := empty()
	res, _ := Customer(snap, &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Products}, TargetViews: []string{"A"},
		Entities: []resource.Entity{prod("A", "p1")}}, o)
	if res.Events() != 0 || len(res.Change.Baselines) != 1 || res.Change.Baselines[0].Key != "c1/A" {
		t.Fatalf("baseline of A: %+v", res.Change)
	}
	snap.BaselinedScopes[resource.Products]["A"] = true
	snap.Records[resource.Products]["A/p1"] = res.Change.Puts[0].Record
	// View B added to the configuration: a silent baseline, not a flood.
	res, _ = Customer(snap, &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Products}, TargetViews: []string{"A", "B"},
		Entities: []resource.Entity{prod("A", "p1"), prod("B", "p2"), prod("B", "p3")}}, o)
	if res.Events() != 0 || len(res.Change.Puts) != 2 {
		t.Fatalf("adding view B emitted %d events", res.Events())
	}
	// View A dropped from the configuration: its products leave silently.
	res, _ = Customer(snap, &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Products}, TargetViews: []string{"B"},
		Entities: []resource.Entity{prod("B", "p2")}}, o)
	if res.Events() != 0 || len(res.Change.Deletes) != 1 || len(res.Change.BaselineDeletes) != 1 || len(res.Change.PendingPuts) != 0 {
		t.Fatalf("dropping view A: events %d, change %+v", res.Events(), res.Change)
	}
	// A new product in a baselined view is an event.
	res, _ = Customer(snap, &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Products}, TargetViews: []string{"A"},
		Entities: []resource.Entity{prod("A", "p1"), prod("A", "p9")}}, o)
	ev, _ := events.Decode(res.Change.Events[0].Body)
	if res.Events() != 1 || ev.Type != events.ProductAdded || ev.Subject != "customers/c1/products/A/p9" {
		t.Fatalf("new product: %+v", res.Change.Events)
	}

	// Subscriptions outside a new mpn_id filter leave silently.
	sn := snapWith(t, nceJSON, legacyJSON) // partner 4847383 and direct
	res, _ = Customer(sn, &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Subscriptions}, MPNIDs: []string{"4847383"},
		Entities: []resource.Entity{subEntity(t, nceJSON)}}, o)
	if res.Events() != 0 || len(res.Change.Deletes) != 1 || res.Change.Deletes[0].Key != "c1/83ef9d05-4169-4ef9-9657-0e86b1eab1de" || len(res.Change.PendingPuts) != 0 {
		t.Fatalf("narrowing to a reseller: events %d, change %+v", res.Events(), res.Change)
	}
}

// The diff picks the subscriptions whose refund batches are due a reading
// by id, reading stored facts only where a window can be open: an
// unchanged subscription whose window closed is skipped on its record
// header alone. CommitRefunds records what was read.
func TestRefundCandidates(t *testing.T) {
	st, err := state.Open(t.TempDir()+"/s.db", state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	commit := func(at time.Time, raw string) *Result {
		t.Helper()
		res, err := CommitCustomer(st, &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Subscriptions},
			Entities: []resource.Entity{subEntity(t, raw)}}, Options{Source: "s", Now: at})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	e := subEntity(t, nceJSON) // cancellation window open until 2026-04-12T19:27Z
	if res := commit(now, nceJSON); fmt.Sprint(res.RefundCandidates) != "["+e.ID+"]" {
		t.Fatalf("open window, never read: candidates %v", res.RefundCandidates)
	}
	var watch time.Time
	st.View(func(r *state.ReadTx) error {
		snap, _ := r.Customer("c1", resource.Subscriptions)
		watch = snap.Records[resource.Subscriptions][e.ID].Watch
		return nil
	})
	if want := time.Date(2026, 4, 12, 19, 27, 3, 440527000, time.UTC); !watch.Equal(want) {
		t.Errorf("record watch = %v, want the window's end %v", watch, want)
	}
	// Unchanged and still unread: a candidate again next cycle.
	if res := commit(now.Add(time.Hour), nceJSON); len(res.RefundCandidates) != 1 {
		t.Errorf("unchanged, unread: %v", res.RefundCandidates)
	}
	// Read now: not a candidate until the refresh interval has passed.
	rq := &pc.RefundableQuantity{TotalQuantity: 2, Details: []pc.RefundableDetail{{Quantity: 2, AllowedUntilDateTime: pc.NewTime(watch)}}}
	if err := CommitRefunds(st, "c1", map[string]*pc.RefundableQuantity{e.ID: rq}, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if res := commit(now.Add(2*time.Hour), nceJSON); len(res.RefundCandidates) != 0 || !res.Change.Empty() {
		t.Errorf("just read: candidates %v, change %+v", res.RefundCandidates, res.Change)
	}
	if res := commit(now.Add(8*time.Hour), nceJSON); len(res.RefundCandidates) != 1 {
		t.Errorf("read 7h ago, window open: %v", res.RefundCandidates)
	}
	later := watch.Add(time.Hour)
	if res := commit(later, nceJSON); len(res.RefundCandidates) != 0 {
		t.Errorf("closed window, unchanged: %v", res.RefundCandidates)
	}
	// Seats added after the window: the record changed and the new batch
	// is a candidate.
	if res := commit(later, mutate(t, nceJSON, map[string]any{"quantity": 9})); len(res.RefundCandidates) != 1 {
		t.Errorf("seats added after the window: %v", res.RefundCandidates)
	}
}

// An entity listed twice with the same content is kept once and reported;
// with different content the listing cannot be diffed (which copy is
// current?) and fails with a *DuplicateError, committing nothing.
func TestDuplicatesInOneListing(t *testing.T) {
	snap := snapWith(t, nceJSON)
	_, res := run(t, snap, []string{nceJSON, legacyJSON, nceJSON}, Options{})
	e := subEntity(t, nceJSON)
	if !slices.Equal(res.Duplicates, []string{"subscription " + e.ID}) {
		t.Fatalf("duplicates = %v", res.Duplicates)
	}
	if res.Counts[events.SubscriptionCreated] != 1 || len(res.Change.Puts) != 1 {
		t.Fatalf("identical duplicate: counts %v, puts %d (want the legacy one added once)", res.Counts, len(res.Change.Puts))
	}

	l := &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Subscriptions},
		Entities: []resource.Entity{subEntity(t, nceJSON), subEntity(t, mutate(t, nceJSON, map[string]any{"quantity": 7}))}}
	_, err := Customer(snap, l, Options{Source: "s", Now: now})
	var de *DuplicateError
	if !errors.As(err, &de) || de.ID != e.ID || de.Kind != resource.Subscriptions {
		t.Fatalf("conflicting duplicate: err = %v, want a *DuplicateError for %s", err, e.ID)
	}
}
