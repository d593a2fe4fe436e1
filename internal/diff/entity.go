package diff

import (
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/view"
)

// Entity is one entity of a fresh listing.
type Entity struct {
	Kind       state.Kind
	ID         string           // resource id within the customer; "" for the customer itself
	Raw        []byte           // as received
	View       events.View      // compact view; see view()
	Sub        *pc.Subscription // subscriptions: the typed view
	TargetView string           // products

	hash    state.Hash
	hashSet bool
}

// Hash is the content hash of Raw, computed once.
func (e *Entity) Hash() state.Hash {
	if !e.hashSet {
		e.hash, e.hashSet = state.HashOf(e.Raw), true
	}
	return e.hash
}

// Subscriptions wraps a listing's subscriptions.
func Subscriptions(subs []pc.Subscription) []Entity {
	out := make([]Entity, len(subs))
	for i := range subs {
		s := &subs[i]
		// The compact view is built only for entities that produce events.
		out[i] = Entity{Kind: state.KindSubscription, ID: s.ID, Raw: s.Raw, Sub: s}
	}
	return out
}

// ManagedServices wraps a listing's managed services.
func ManagedServices(ms []pc.ManagedService) []Entity {
	out := make([]Entity, len(ms))
	for i, m := range ms {
		out[i] = Entity{Kind: state.KindManagedService, ID: m.ID, Raw: m.Raw, View: events.View{ID: m.ID, Name: m.Name, GroupName: m.GroupName}}
	}
	return out
}

// Products wraps the products of one target view; their ids are
// "<targetView>/<productId>".
func Products(targetView string, ps []pc.Product) []Entity {
	out := make([]Entity, len(ps))
	for i, p := range ps {
		out[i] = Entity{Kind: state.KindProduct, ID: targetView + "/" + p.ID, Raw: p.Raw, TargetView: targetView, View: view.Product(&p)}
	}
	return out
}

// Customers wraps the customer list.
func Customers(cs []pc.Customer) []Entity {
	out := make([]Entity, len(cs))
	for i := range cs {
		out[i] = Entity{Kind: state.KindCustomer, ID: cs[i].ID, Raw: cs[i].Raw, View: view.Customer(&cs[i])}
	}
	return out
}

// view returns the entity's compact view, building it from the typed
// subscription when it was not set.
func (e *Entity) view() events.View {
	if e.View.ID == "" && e.Sub != nil {
		e.View = view.Subscription(e.Sub)
	}
	return e.View
}
