package events

import (
	"strings"
	"testing"
	"time"
)

// The catalog is built once and handed out as copies: what a caller does
// with its copy changes neither the catalog nor what Lookup returns (it
// used to be an exported slice whose entries the package rewrote at init,
// and which any importer could rewrite too).
func TestCatalogIsNotShared(t *testing.T) {
	c := Catalog()
	if len(c) == 0 {
		t.Fatal("empty catalog")
	}
	first := c[0]
	wantFields := strings.Join(first.Fields, ",")
	c[0].Summary = "changed"
	c[0].Fields[0] = "changed"
	c[0].Resource = "changed"
	if again := Catalog()[0]; again.Summary != first.Summary || strings.Join(again.Fields, ",") != wantFields || again.Resource != first.Resource {
		t.Errorf("changing a copy changed the catalog: %+v", again)
	}
	in, ok := Lookup(first.Type)
	if !ok || in.Summary != first.Summary || strings.Join(in.Fields, ",") != wantFields {
		t.Errorf("changing a copy changed Lookup: %+v", in)
	}
	in.Fields[0] = "changed"
	if again, _ := Lookup(first.Type); strings.Join(again.Fields, ",") != wantFields {
		t.Errorf("changing Lookup's result changed the catalog: %v", again.Fields)
	}
}

// Every entry's Resource and Change are its type's two parts.
func TestCatalogResourceAndChange(t *testing.T) {
	for _, in := range Catalog() {
		if want := TypePrefix + string(in.Resource) + "." + in.Change; string(in.Type) != want || in.Resource == "" || in.Change == "" {
			t.Errorf("%s: resource %q, change %q", in.Type, in.Resource, in.Change)
		}
	}
}

// The subjects, entity keys and ids an event's data gives, for every kind
// of entity (the values the released watcher produces).
func TestEntityIDsAndSubjects(t *testing.T) {
	tests := []struct {
		typ       Type
		id        string // as the differ sets it (SetEntityID)
		wantData  Data
		ceSubject string
		nats      string
		entity    string
	}{
		{CustomerUpdated, "", Data{CustomerID: "c.1"}, "customers/c.1",
			"pcwatch.events.customer.updated.c%2E1", "customer/c.1/"},
		{SubscriptionUpdated, "s1", Data{CustomerID: "c.1", SubscriptionID: "s1"}, "customers/c.1/subscriptions/s1",
			"pcwatch.events.subscription.updated.c%2E1.s1", "subscription/c.1/s1"},
		{ManagedServiceAdded, "Exchange", Data{CustomerID: "c1", ManagedServiceID: "Exchange"}, "customers/c1/managedservices/Exchange",
			"pcwatch.events.managed-service.added.c1.Exchange", "managed-service/c1/Exchange"},
		{ProductAdded, "OnlineServices/P1", Data{CustomerID: "c1", ProductID: "P1", TargetView: "OnlineServices"},
			"customers/c1/products/OnlineServices/P1", "pcwatch.events.product.added.c1.OnlineServices/P1", "product/c1/OnlineServices/P1"},
		{OpsCustomerPollFailed, "", Data{CustomerID: "c1"}, "customers/c1", "pcwatch.ops.customer-poll-failed", "ops/c1"},
		{OpsCycleCompleted, "", Data{}, "", "pcwatch.ops.cycle-completed", "ops/"},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			info, ok := Lookup(tt.typ)
			if !ok {
				t.Fatal("not in the catalog")
			}
			d := Data{CustomerID: tt.wantData.CustomerID}
			d.SetEntityID(info.Resource, tt.id)
			if d.SubscriptionID != tt.wantData.SubscriptionID || d.ManagedServiceID != tt.wantData.ManagedServiceID ||
				d.ProductID != tt.wantData.ProductID || d.TargetView != tt.wantData.TargetView {
				t.Errorf("SetEntityID(%q) = %+v, want %+v", tt.id, d, tt.wantData)
			}
			if got := d.EntityID(info.Resource); got != tt.id {
				t.Errorf("EntityID = %q, want %q", got, tt.id)
			}
			if got := CESubject(&d); got != tt.ceSubject {
				t.Errorf("CESubject = %q, want %q", got, tt.ceSubject)
			}
			if got := NATSSubject(info, &d); got != tt.nats {
				t.Errorf("NATSSubject = %q, want %q", got, tt.nats)
			}
			if got := EntityKey(info.Resource, &d); got != tt.entity {
				t.Errorf("EntityKey = %q, want %q", got, tt.entity)
			}
			env, ev, err := New("src", tt.typ, IDKey{Entity: "e"}, time.Unix(0, 0), &d)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Subject != tt.ceSubject || env.Subject != tt.nats || env.Entity != tt.entity {
				t.Errorf("New: subject %q, NATS subject %q, entity %q", ev.Subject, env.Subject, env.Entity)
			}
		})
	}
}

// Named reads which entity the data names from the data alone.
func TestNamed(t *testing.T) {
	tests := []struct {
		d      Data
		res    Resource
		wantID string
	}{
		{Data{CustomerID: "c1"}, "", ""},
		{Data{CustomerID: "c1", SubscriptionID: "s1"}, ResourceSubscription, "s1"},
		{Data{CustomerID: "c1", ManagedServiceID: "m1"}, ResourceManagedService, "m1"},
		{Data{CustomerID: "c1", ProductID: "p1", TargetView: "Azure"}, ResourceProduct, "p1"},
	}
	for _, tt := range tests {
		if r, id := tt.d.Named(); r != tt.res || id != tt.wantID {
			t.Errorf("%+v: Named() = %q, %q; want %q, %q", tt.d, r, id, tt.res, tt.wantID)
		}
	}
}
