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
