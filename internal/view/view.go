// Package view builds the compact entity views events carry (data.after
// and data.before) from Partner Center entities, and names entities the way
// event ids and the state store do.
package view

import (
	"encoding/json"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/state"
)

func ptr[T any](v T) *T { return &v }

func timePtr(t pc.Time) *time.Time {
	if !t.Valid() {
		return nil
	}
	return ptr(t.T)
}

// Subscription is the compact view carried in events.
func Subscription(s *pc.Subscription) events.View {
	v := events.View{
		ID: s.ID, OfferID: s.OfferID, OfferName: s.OfferName, FriendlyName: s.FriendlyName,
		Quantity: ptr(s.Quantity), UnitType: s.UnitType, Status: string(s.Status),
		AutoRenewEnabled: ptr(s.AutoRenewEnabled), IsTrial: ptr(s.IsTrial),
		TermDuration: s.TermDuration, BillingCycle: string(s.BillingCycle),
		CreationDate: timePtr(s.CreationDate), EffectiveStartDate: timePtr(s.EffectiveStartDate),
		CommitmentEndDate: timePtr(s.CommitmentEnd()), CancellationAllowedUntilDate: timePtr(s.CancellationAllowedUntilDate),
		PartnerID: s.PartnerID, ParentSubscriptionID: s.ParentSubscriptionID,
	}
	if s.ProductType != nil {
		v.ProductType = s.ProductType.ID
	}
	return v
}

// Customer is the compact view of a customer.
func Customer(c *pc.Customer) events.View {
	return events.View{ID: c.ID, CompanyName: c.CompanyProfile.CompanyName, Domain: c.CompanyProfile.Domain,
		TenantID: c.CompanyProfile.TenantID, RelationshipToPartner: string(c.RelationshipToPartner),
		AllowDelegatedAccess: c.AllowDelegatedAccess, AssociatedPartnerID: c.AssociatedPartnerID}
}

// Product is the compact view of a product.
func Product(p *pc.Product) events.View {
	v := events.View{ID: p.ID, Title: p.Title}
	if p.ProductType != nil {
		v.ProductType = p.ProductType.ID
	}
	return v
}

// Of decodes a stored raw entity into its compact view (for removals
// and deadline events). An undecodable record gives a view with the id only.
func Of(kind state.Kind, id string, raw []byte) events.View {
	switch kind {
	case state.KindSubscription:
		var s pc.Subscription
		if json.Unmarshal(raw, &s) == nil {
			return Subscription(&s)
		}
	case state.KindCustomer:
		var c pc.Customer
		if json.Unmarshal(raw, &c) == nil {
			return Customer(&c)
		}
	case state.KindManagedService:
		var m pc.ManagedService
		if json.Unmarshal(raw, &m) == nil {
			return events.View{ID: m.ID, Name: m.Name, GroupName: m.GroupName}
		}
	case state.KindProduct:
		var p pc.Product
		if json.Unmarshal(raw, &p) == nil {
			return Product(&p)
		}
	}
	return events.View{ID: id}
}

// Resource maps a kind to its event resource.
func Resource(k state.Kind) events.Resource {
	switch k {
	case state.KindCustomer:
		return events.ResourceCustomer
	case state.KindSubscription:
		return events.ResourceSubscription
	case state.KindManagedService:
		return events.ResourceManagedService
	case state.KindProduct:
		return events.ResourceProduct
	}
	return ""
}

// Entity is the id-derivation entity of a record: resource/customer/id.
func Entity(k state.Kind, customerID, id string) string {
	return string(Resource(k)) + "/" + customerID + "/" + id
}
