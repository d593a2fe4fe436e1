package resource

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// The names a kind is known by outside the process: in state files
// (storage name, bucket), in events, in --resources and /api/state. They are
// formats: a change breaks state files, consumers or configurations.
func TestKindNames(t *testing.T) {
	tests := []struct {
		k                              *Kind
		name, bucket, option, count    string
		res                            events.Resource
		added, removed, updated        events.Type
		parent                         *Kind
		defaultOn, hold, byView, byMPN bool
		noun, plural                   string
	}{
		{Customers, "customer", "customers", "", "customers", events.ResourceCustomer,
			events.CustomerAdded, events.CustomerRemoved, events.CustomerUpdated, nil, false, true, false, false, "customer", "customers"},
		{Subscriptions, "subscription", "subscriptions", "subscriptions", "subscriptions", events.ResourceSubscription,
			events.SubscriptionCreated, events.SubscriptionRemoved, events.SubscriptionUpdated, Customers, true, true, false, true, "subscription", "subscriptions"},
		{ManagedServices, "managedservice", "managedservices", "managedservices", "managedServices", events.ResourceManagedService,
			events.ManagedServiceAdded, events.ManagedServiceRemoved, events.ManagedServiceUpdated, Customers, false, false, false, false, "managed service", "managed services"},
		{Products, "product", "products", "products", "products", events.ResourceProduct,
			events.ProductAdded, events.ProductRemoved, "", Customers, false, false, true, false, "product", "products"},
	}
	if got := All(); len(got) != len(tests) {
		t.Fatalf("%d kinds, want %d", len(got), len(tests))
	}
	for i, tt := range tests {
		k := tt.k
		if All()[i] != k {
			t.Errorf("All()[%d] = %s, want %s", i, All()[i], k)
		}
		if k.Name() != tt.name || k.String() != tt.name || k.Bucket() != tt.bucket || k.Option() != tt.option || k.Count() != tt.count ||
			k.Resource() != tt.res || k.Noun() != tt.noun || k.Plural() != tt.plural {
			t.Errorf("%s: names %q %q %q %q %q %q %q", tt.name, k.Name(), k.Bucket(), k.Option(), k.Count(), k.Resource(), k.Noun(), k.Plural())
		}
		if k.Added() != tt.added || k.Removed() != tt.removed || k.Updated() != tt.updated {
			t.Errorf("%s: types %s %s %s", tt.name, k.Added(), k.Removed(), k.Updated())
		}
		if k.Parent() != tt.parent || k.DefaultOn() != tt.defaultOn || k.HoldsMassRemoval() != tt.hold ||
			k.ByTargetView() != tt.byView || k.ByReseller() != tt.byMPN {
			t.Errorf("%s: parent %v, default %v, hold %v, by view %v, by reseller %v", tt.name, k.Parent(), k.DefaultOn(),
				k.HoldsMassRemoval(), k.ByTargetView(), k.ByReseller())
		}
		for _, typ := range []events.Type{k.Added(), k.Removed(), k.Updated()} {
			if in, ok := events.Lookup(typ); typ != "" && (!ok || in.Resource != k.Resource()) {
				t.Errorf("%s: %s is not an event of %s in the catalog", tt.name, typ, k.Resource())
			}
		}
		if got, ok := ByResource(k.Resource()); !ok || got != k {
			t.Errorf("ByResource(%s) = %v", k.Resource(), got)
		}
	}
	// A parent comes before its children.
	for i, k := range All() {
		if p := k.Parent(); p != nil && slices.Index(All(), p) > i {
			t.Errorf("%s comes before its parent %s", k, p)
		}
	}
}

func TestOptions(t *testing.T) {
	if got := strings.Join(Options(), ","); got != "subscriptions,managedservices,products" {
		t.Errorf("Options() = %s", got)
	}
	for _, name := range []string{"subscriptions", "ManagedServices", "PRODUCTS"} {
		if k, ok := ByOption(name); !ok || !strings.EqualFold(k.Option(), name) {
			t.Errorf("ByOption(%q) = %v, %v", name, k, ok)
		}
	}
	for _, name := range []string{"", "customers", "managed-services"} {
		if k, ok := ByOption(name); ok {
			t.Errorf("ByOption(%q) = %v", name, k)
		}
	}
	all := All()
	all[0] = nil
	if All()[0] != Customers {
		t.Error("All hands out the package's slice")
	}
}

func TestKeysAndIDs(t *testing.T) {
	if got := Customers.Key("ignored", "c1"); got != "c1" {
		t.Errorf("customer key %q", got)
	}
	if got := Products.Key("c1", "OnlineServices/P1"); got != "c1/OnlineServices/P1" {
		t.Errorf("product key %q", got)
	}
	if got := ManagedServices.EntityKey("c1", "Exchange"); got != "managed-service/c1/Exchange" {
		t.Errorf("entity key %q", got)
	}
	var d events.Data
	Products.Identify(&d, "c1", "Azure/P9")
	if d.CustomerID != "c1" || d.TargetView != "Azure" || d.ProductID != "P9" {
		t.Errorf("Identify: %+v", d)
	}
	d = events.Data{}
	Customers.Identify(&d, "c1", "c1")
	if d.CustomerID != "c1" || d.SubscriptionID != "" || d.ManagedServiceID != "" || d.ProductID != "" {
		t.Errorf("Identify customer: %+v", d)
	}
}

func TestViews(t *testing.T) {
	raw := []byte(`{"id":"Exchange","name":"Exchange Online","groupName":"Office","links":{}}`)
	if v := ManagedServices.ViewOf("Exchange", raw); v != (events.View{ID: "Exchange", Name: "Exchange Online", GroupName: "Office"}) {
		t.Errorf("ViewOf = %+v", v)
	}
	for _, k := range All() {
		if v := k.ViewOf("x1", []byte(`{"id":`)); v != (events.View{ID: "x1"}) {
			t.Errorf("%s: an undecodable record's view = %+v, want the id only", k, v)
		}
	}
	e := Entity{Kind: Subscriptions, ID: "s1"}
	if v := e.View(); v != (events.View{}) {
		t.Errorf("an entity without model: %+v", v)
	}
	var s pc.Subscription
	if err := json.Unmarshal([]byte(`{"id":"s1","offerName":"M365","quantity":3,"status":"active"}`), &s); err != nil {
		t.Fatal(err)
	}
	e = SubscriptionEntities([]pc.Subscription{s})[0]
	if v := e.View(); v.ID != "s1" || v.OfferName != "M365" || *v.Quantity != 3 || v.Status != "active" {
		t.Errorf("subscription view %+v", v)
	}
}

func TestChanged(t *testing.T) {
	changes := []events.Change{{Path: "/groupName", Old: json.RawMessage(`"Office"`), New: json.RawMessage(`"M365"`)}}
	ms := ManagedServiceEntities([]pc.ManagedService{{ID: "Exchange"}})[0]
	got, err := ManagedServices.Changed([]byte(`{"id":"Exchange"}`), &ms, changes)
	if err != nil || len(got) != 1 || got[0].Type != events.ManagedServiceUpdated || len(got[0].Changes) != 1 {
		t.Errorf("managed service: %+v, %v", got, err)
	}
	p := ProductEntities("OnlineServices", []pc.Product{{ID: "P1"}})[0]
	if got, err := Products.Changed([]byte(`{"id":"P1"}`), &p, changes); err != nil || len(got) != 0 {
		t.Errorf("product: %+v, %v (a product's change is no event)", got, err)
	}

	var cur pc.Subscription
	if err := json.Unmarshal([]byte(`{"id":"s1","status":"suspended","friendlyName":"new"}`), &cur); err != nil {
		t.Fatal(err)
	}
	sub := SubscriptionEntities([]pc.Subscription{cur})[0]
	subChanges := []events.Change{{Path: "/friendlyName"}, {Path: "/status"}}
	got, err = Subscriptions.Changed([]byte(`{"id":"s1","status":"active","friendlyName":"old"}`), &sub, subChanges)
	if err != nil || len(got) != 2 || got[0].Type != events.SubscriptionStatusChanged || string(got[0].Old) != `"active"` ||
		string(got[0].New) != `"suspended"` || got[1].Type != events.SubscriptionUpdated || got[1].Changes[0].Path != "/friendlyName" {
		t.Errorf("subscription: %+v, %v", got, err)
	}
	if _, err := Subscriptions.Changed([]byte(`[1]`), &sub, subChanges); err == nil || !strings.HasPrefix(err.Error(), "stored subscription s1: ") {
		t.Errorf("undecodable stored subscription: %v", err)
	}
}

// fakeClient serves fixed listings and records what was asked.
type fakeClient struct {
	subs  map[string][]pc.Subscription // by mpn id ("" all)
	prods map[string][]pc.Product      // by target view
	fail  string                       // mpn id or target view that fails
	asked []string
}

var errListing = errors.New("listing failed")

func (f *fakeClient) ListCustomers(context.Context) ([]pc.Customer, error) {
	return []pc.Customer{{ID: "c1", CompanyProfile: pc.CompanyProfile{CompanyName: "Contoso"}}}, nil
}

func (f *fakeClient) ListSubscriptions(_ context.Context, _ string, filter pc.SubscriptionFilter) ([]pc.Subscription, error) {
	f.asked = append(f.asked, "subscriptions "+filter.MPNID)
	if filter.MPNID != "" && filter.MPNID == f.fail {
		return nil, errListing
	}
	return f.subs[filter.MPNID], nil
}

func (f *fakeClient) ListManagedServices(context.Context, string) ([]pc.ManagedService, error) {
	f.asked = append(f.asked, "managedservices")
	return []pc.ManagedService{{ID: "Exchange"}}, nil
}

func (f *fakeClient) ListProducts(_ context.Context, _, tv string) ([]pc.Product, error) {
	f.asked = append(f.asked, "products "+tv)
	if tv == f.fail {
		return nil, errListing
	}
	return f.prods[tv], nil
}

func ids(ents []Entity) string {
	var s []string
	for _, e := range ents {
		s = append(s, e.Kind.Name()+":"+e.ID+"@"+e.Scope)
	}
	return strings.Join(s, ",")
}

func TestList(t *testing.T) {
	ctx := context.Background()
	fc := &fakeClient{
		subs:  map[string][]pc.Subscription{"": {{ID: "s1"}, {ID: "s2"}}, "m1": {{ID: "s1"}}, "m2": {{ID: "s1"}, {ID: "s3"}}},
		prods: map[string][]pc.Product{"OnlineServices": {{ID: "P1"}}, "Azure": {{ID: "P1"}, {ID: "P2"}}},
	}
	tests := []struct {
		k       *Kind
		scope   Scope
		fail    string
		want    string
		wantErr string
	}{
		{Customers, Scope{}, "", "customer:c1@", ""},
		{Subscriptions, Scope{}, "", "subscription:s1@,subscription:s2@", ""},
		// The union of the resellers' listings, each subscription once.
		{Subscriptions, Scope{MPNIDs: []string{"m1", "m2"}}, "", "subscription:s1@,subscription:s3@", ""},
		{Subscriptions, Scope{MPNIDs: []string{"m1", "m2"}}, "m2", "", "subscriptions of reseller m2: listing failed"},
		{ManagedServices, Scope{}, "", "managedservice:Exchange@", ""},
		{Products, Scope{TargetViews: []string{"OnlineServices", "Azure"}}, "",
			"product:OnlineServices/P1@OnlineServices,product:Azure/P1@Azure,product:Azure/P2@Azure", ""},
		{Products, Scope{TargetViews: []string{"OnlineServices", "Azure"}}, "Azure", "", "products (Azure): listing failed"},
	}
	for _, tt := range tests {
		fc.fail = tt.fail
		got, err := tt.k.List(ctx, fc, "c1", tt.scope)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, errListing) || got != nil {
				t.Errorf("%s %+v: %v, %v; want error %q", tt.k, tt.scope, ids(got), err, tt.wantErr)
			}
			continue
		}
		if err != nil || ids(got) != tt.want {
			t.Errorf("%s %+v: %s, %v; want %s", tt.k, tt.scope, ids(got), err, tt.want)
		}
	}
}

// itemClient serves fakeClient's listings as item listings too, their
// items encoded as JSON; bad, when set, is appended to every listing.
type itemClient struct {
	*fakeClient
	t   *testing.T
	bad json.RawMessage
}

func encodeItems[T any](t *testing.T, vs []T, bad json.RawMessage) []json.RawMessage {
	out := []json.RawMessage{}
	for _, v := range vs {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if bad != nil {
		out = append(out, bad)
	}
	return out
}

func (c *itemClient) ListSubscriptionItems(ctx context.Context, id string, f pc.SubscriptionFilter) ([]json.RawMessage, error) {
	subs, err := c.ListSubscriptions(ctx, id, f)
	if err != nil {
		return nil, err
	}
	return encodeItems(c.t, subs, c.bad), nil
}

func (c *itemClient) ListManagedServiceItems(ctx context.Context, id string) ([]json.RawMessage, error) {
	ms, err := c.ListManagedServices(ctx, id)
	if err != nil {
		return nil, err
	}
	return encodeItems(c.t, ms, c.bad), nil
}

func (c *itemClient) ListProductItems(ctx context.Context, id, tv string) ([]json.RawMessage, error) {
	ps, err := c.ListProducts(ctx, id, tv)
	if err != nil {
		return nil, err
	}
	return encodeItems(c.t, ps, c.bad), nil
}

// TestListItems: with an ItemLister, the kinds with a parent come back
// undecoded (no id, no model) and decode, on demand, into the entities the
// typed listing gives; customers and reseller-filtered subscriptions stay
// decoded. An item that does not decode is a *DecodeError naming it.
func TestListItems(t *testing.T) {
	ctx := context.Background()
	fc := &fakeClient{
		subs:  map[string][]pc.Subscription{"": {{ID: "s1"}, {ID: "s2"}}, "m1": {{ID: "s1"}}, "m2": {{ID: "s1"}, {ID: "s3"}}},
		prods: map[string][]pc.Product{"OnlineServices": {{ID: "P1"}}, "Azure": {{ID: "P1"}, {ID: "P2"}}},
	}
	ic := &itemClient{fakeClient: fc, t: t}
	for _, tt := range []struct {
		k     *Kind
		scope Scope
		lazy  bool
		want  string
	}{
		{Customers, Scope{}, false, "customer:c1@"},
		{Subscriptions, Scope{}, true, "subscription:s1@,subscription:s2@"},
		{Subscriptions, Scope{MPNIDs: []string{"m1", "m2"}}, false, "subscription:s1@,subscription:s3@"},
		{ManagedServices, Scope{}, true, "managedservice:Exchange@"},
		{Products, Scope{TargetViews: []string{"OnlineServices", "Azure"}}, true,
			"product:OnlineServices/P1@OnlineServices,product:Azure/P1@Azure,product:Azure/P2@Azure"},
	} {
		got, err := tt.k.List(ctx, ic, "c1", tt.scope)
		if err != nil {
			t.Fatalf("%s: %v", tt.k, err)
		}
		n0 := tt.k.Decodes()
		for i := range got {
			e := &got[i]
			if e.Decoded() == tt.lazy || tt.lazy && (e.ID != "" || e.Model != nil) {
				t.Fatalf("%s: entity %d decoded %v, id %q; want lazy %v", tt.k, i, e.Decoded(), e.ID, tt.lazy)
			}
			if err := e.Decode(); err != nil || !e.Decoded() || e.Model == nil {
				t.Fatalf("%s: decoding entity %d: %v", tt.k, i, err)
			}
		}
		if ids(got) != tt.want {
			t.Errorf("%s %+v: %s; want %s", tt.k, tt.scope, ids(got), tt.want)
		}
		if want := map[bool]uint64{true: uint64(len(got))}[tt.lazy]; tt.k.Decodes()-n0 != want {
			t.Errorf("%s: %d decodes counted, want %d", tt.k, tt.k.Decodes()-n0, want)
		}
		// Decoding again costs nothing.
		got[0].Decode()
		if tt.k.Decodes()-n0 != map[bool]uint64{true: uint64(len(got))}[tt.lazy] {
			t.Errorf("%s: a second Decode decoded again", tt.k)
		}
	}

	// View decodes on demand.
	got, _ := Subscriptions.List(ctx, ic, "c1", Scope{})
	if v := got[1].View(); v.ID != "s2" || got[1].ID != "s2" {
		t.Errorf("view of an undecoded entity: %+v, id %q", v, got[1].ID)
	}

	ic.bad = json.RawMessage(`{"id":"x","title":7}`)
	got, err := Products.List(ctx, ic, "c1", Scope{TargetViews: []string{"Azure"}})
	if err != nil || len(got) != 3 {
		t.Fatalf("listing with an undecodable item: %d, %v", len(got), err)
	}
	var de *DecodeError
	if err := got[2].Decode(); !errors.As(err, &de) || de.Scope != "Azure" || !strings.Contains(err.Error(), "products listing (Azure): item 2 does not decode as a product") {
		t.Fatalf("undecodable product: %v", err)
	}
	ic.bad = json.RawMessage(`{"id":"s9","quantity":"seven"}`)
	got, err = Subscriptions.List(ctx, ic, "c1", Scope{})
	if err != nil || len(got) != 3 {
		t.Fatalf("listing with an undecodable item: %d, %v", len(got), err)
	}
	err = got[2].Decode()
	if !errors.As(err, &de) || de.Kind != Subscriptions || de.Index != 2 || got[2].Decoded() ||
		!strings.Contains(err.Error(), "subscriptions listing: item 2 does not decode as a subscription") {
		t.Fatalf("undecodable item: %v", err)
	}
	if v := got[2].View(); v.ID != "" {
		t.Errorf("view of an undecodable entity: %+v", v)
	}
}
