package resource

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// The kinds. A new kind is one more descriptor here (and in all), its
// client endpoint and model in internal/partnercenter (and a method in
// Client), its event types and id member in internal/events (catalog.go,
// data.go), its notifier texts (internal/notify/defaults.go), its
// simulator part and its docs.
//
// One thing the descriptor cannot do alone yet: state.Open refuses a file
// that lacks a bucket of a known kind (as damaged), so the first new kind
// also needs Open to create the buckets of kinds added after a file was
// written; TestReadsAStateFileOfTheRelease (internal/diff) fails until it
// does.
var (
	// Customers are the partner's customer list. They are always listed,
	// first: every other kind is listed per customer.
	Customers = &Kind{
		name: "customer", bucket: "customers", noun: "customer", plural: "customers", count: "customers",
		resource: events.ResourceCustomer,
		added:    events.CustomerAdded, removed: events.CustomerRemoved, updated: events.CustomerUpdated,
		holdsMassRemoval: true,
		list: func(ctx context.Context, k *Kind, c Client, _ string, _ Scope) ([]Entity, error) {
			cs, err := c.ListCustomers(ctx)
			if err != nil {
				return nil, err
			}
			return customerEntities(k, cs), nil
		},
		decode: decodeAs[pc.Customer],
		id:     idAs(func(c *pc.Customer) string { return c.ID }),
		view:   viewAs(customerView),
	}

	// Subscriptions are a customer's subscriptions, legacy and new
	// commerce; their changes are split into typed events (see
	// subscriptions.go) and their deadlines computed (internal/deadline).
	Subscriptions = &Kind{
		name: "subscription", bucket: "subscriptions", noun: "subscription", plural: "subscriptions", count: "subscriptions",
		option: "subscriptions", defaultOn: true, inDemo: true, parent: Customers,
		resource: events.ResourceSubscription,
		added:    events.SubscriptionCreated, removed: events.SubscriptionRemoved, updated: events.SubscriptionUpdated,
		holdsMassRemoval: true, byReseller: true,
		list:   listSubscriptions,
		decode: decodeAs[pc.Subscription],
		id:     idAs(func(s *pc.Subscription) string { return s.ID }),
		view:   viewAs(subscriptionView),
		changed: func(old, cur any, changes []events.Change) []ChangeEvent {
			return subscriptionEvents(old.(*pc.Subscription), cur.(*pc.Subscription), changes)
		},
	}

	// ManagedServices are the services the partner administers for a
	// customer (the DAP-era view of admin access). Partner Center lists
	// them only to App+User credentials.
	ManagedServices = &Kind{
		name: "managedservice", bucket: "managedservices", noun: "managed service", plural: "managed services", count: "managedServices",
		option: "managedservices", inDemo: true, parent: Customers,
		resource: events.ResourceManagedService,
		added:    events.ManagedServiceAdded, removed: events.ManagedServiceRemoved, updated: events.ManagedServiceUpdated,
		list: func(ctx context.Context, k *Kind, c Client, customerID string, _ Scope) ([]Entity, error) {
			if il, ok := c.(ItemLister); ok {
				items, err := il.ListManagedServiceItems(ctx, customerID)
				if err != nil {
					return nil, err
				}
				return ItemEntities(k, "", items), nil
			}
			ms, err := c.ListManagedServices(ctx, customerID)
			if err != nil {
				return nil, err
			}
			return managedServiceEntities(k, ms), nil
		},
		decode: decodeAs[pc.ManagedService],
		id:     idAs(func(m *pc.ManagedService) string { return m.ID }),
		view:   viewAs(managedServiceView),
	}

	// Products are the catalog products available to a customer, per
	// target view. A product changing is not an operational event: the
	// catalog has no product.updated.
	Products = &Kind{
		name: "product", bucket: "products", noun: "product", plural: "products", count: "products",
		option: "products", parent: Customers,
		resource: events.ResourceProduct,
		added:    events.ProductAdded, removed: events.ProductRemoved,
		byTargetView: true,
		list: func(ctx context.Context, k *Kind, c Client, customerID string, s Scope) ([]Entity, error) {
			var out []Entity
			il, lazy := c.(ItemLister)
			for _, tv := range s.TargetViews {
				if lazy {
					items, err := il.ListProductItems(ctx, customerID, tv)
					if err != nil {
						return nil, fmt.Errorf("products (%s): %w", tv, err)
					}
					out = append(out, ItemEntities(k, tv, items)...)
					continue
				}
				ps, err := c.ListProducts(ctx, customerID, tv)
				if err != nil {
					return nil, fmt.Errorf("products (%s): %w", tv, err)
				}
				out = append(out, productEntities(k, tv, ps)...)
			}
			return out, nil
		},
		decode: decodeAs[pc.Product],
		id:     idAs(func(p *pc.Product) string { return p.ID }),
		view:   viewAs(productView),
	}

	all = []*Kind{Customers, Subscriptions, ManagedServices, Products}
)

// Client is what listing the kinds needs of the Partner Center client.
type Client interface {
	ListCustomers(ctx context.Context) ([]pc.Customer, error)
	ListSubscriptions(ctx context.Context, customerID string, f pc.SubscriptionFilter) ([]pc.Subscription, error)
	ListManagedServices(ctx context.Context, customerID string) ([]pc.ManagedService, error)
	ListProducts(ctx context.Context, customerID, targetView string) ([]pc.Product, error)
}

// ItemLister is what listing the kinds without decoding their items needs
// of the Partner Center client (*partnercenter.Client has it): each
// listing's items as raw JSON, validated and split but not decoded. With a
// client that has it, List returns undecoded entities (see Entity) for the
// kinds with a parent, except subscriptions restricted to resellers (the
// union of several listings, deduplicated by id, is decoded); customers
// are always decoded (every cycle reads their names).
type ItemLister interface {
	ListSubscriptionItems(ctx context.Context, customerID string, f pc.SubscriptionFilter) ([]json.RawMessage, error)
	ListManagedServiceItems(ctx context.Context, customerID string) ([]json.RawMessage, error)
	ListProductItems(ctx context.Context, customerID, targetView string) ([]json.RawMessage, error)
}

// CustomerEntities wraps the customer list.
func CustomerEntities(cs []pc.Customer) []Entity { return customerEntities(Customers, cs) }

// ManagedServiceEntities wraps a listing's managed services.
func ManagedServiceEntities(ms []pc.ManagedService) []Entity {
	return managedServiceEntities(ManagedServices, ms)
}

// ProductEntities wraps the products of one target view; their ids are
// "<targetView>/<productId>".
func ProductEntities(targetView string, ps []pc.Product) []Entity {
	return productEntities(Products, targetView, ps)
}

// The wrappers take their kind as an argument: a descriptor's list
// function may not refer to the descriptor's variable (an initialization
// cycle).

func customerEntities(k *Kind, cs []pc.Customer) []Entity {
	out := make([]Entity, len(cs))
	for i := range cs {
		out[i] = Entity{Kind: k, ID: cs[i].ID, Raw: cs[i].Raw, Model: &cs[i]}
	}
	return out
}

func managedServiceEntities(k *Kind, ms []pc.ManagedService) []Entity {
	out := make([]Entity, len(ms))
	for i := range ms {
		out[i] = Entity{Kind: k, ID: ms[i].ID, Raw: ms[i].Raw, Model: &ms[i]}
	}
	return out
}

func productEntities(k *Kind, targetView string, ps []pc.Product) []Entity {
	out := make([]Entity, len(ps))
	for i := range ps {
		out[i] = Entity{Kind: k, ID: targetView + "/" + ps[i].ID, Scope: targetView, Raw: ps[i].Raw, Model: &ps[i]}
	}
	return out
}

func customerView(c *pc.Customer) events.View {
	return events.View{ID: c.ID, CompanyName: c.CompanyProfile.CompanyName, Domain: c.CompanyProfile.Domain,
		TenantID: c.CompanyProfile.TenantID, RelationshipToPartner: string(c.RelationshipToPartner),
		AllowDelegatedAccess: c.AllowDelegatedAccess, AssociatedPartnerID: c.AssociatedPartnerID}
}

func managedServiceView(m *pc.ManagedService) events.View {
	return events.View{ID: m.ID, Name: m.Name, GroupName: m.GroupName}
}

func productView(p *pc.Product) events.View {
	v := events.View{ID: p.ID, Title: p.Title}
	if p.ProductType != nil {
		v.ProductType = p.ProductType.ID
	}
	return v
}
