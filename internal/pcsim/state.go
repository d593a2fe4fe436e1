package pcsim

import (
	"encoding/json"
	"time"
)

// State is the simulator's full ground truth at one instant, for comparing
// what a watcher saw with what is. It serialises to JSON.
type State struct {
	At        time.Time       `json:"at"`  // business time of the snapshot
	Seq       uint64          `json:"seq"` // the last mutation reflected
	Customers []CustomerState `json:"customers"`
}

// CustomerState is one customer, in listing (id) order.
type CustomerState struct {
	ID                   string              `json:"id"`
	CompanyName          string              `json:"companyName"`
	Domain               string              `json:"domain"`
	AssociatedPartnerID  string              `json:"associatedPartnerId,omitempty"`
	AllowDelegatedAccess bool                `json:"allowDelegatedAccess"`
	Subscriptions        []SubscriptionState `json:"subscriptions"`
	ManagedServices      []string            `json:"managedServices"`
	JSON                 json.RawMessage     `json:"json,omitempty"` // the rendering (StateWithJSON)
}

// SubscriptionState is one subscription, in listing order.
type SubscriptionState struct {
	ID                       string                     `json:"id"`
	Kind                     string                     `json:"kind"` // a Kind* constant
	OfferID                  string                     `json:"offerId"`
	OfferName                string                     `json:"offerName"`
	FriendlyName             string                     `json:"friendlyName"`
	Quantity                 int                        `json:"quantity"`
	Status                   string                     `json:"status"`
	StatusSince              *time.Time                 `json:"statusSince,omitempty"`
	AutoRenewEnabled         bool                       `json:"autoRenewEnabled"`
	IsTrial                  bool                       `json:"isTrial"`
	TermDuration             string                     `json:"termDuration,omitempty"`
	BillingCycle             string                     `json:"billingCycle"`
	PartnerID                string                     `json:"partnerId"`
	ParentSubscriptionID     string                     `json:"parentSubscriptionId,omitempty"`
	CreationDate             time.Time                  `json:"creationDate"`
	EffectiveStartDate       time.Time                  `json:"effectiveStartDate"`
	CommitmentEndDate        time.Time                  `json:"commitmentEndDate"` // the end day (SaaS: instant); year 9999 for the Azure plan
	CancellationAllowedUntil *time.Time                 `json:"cancellationAllowedUntil,omitempty"`
	BillingCycleEndDate      *time.Time                 `json:"billingCycleEndDate,omitempty"`
	AttentionNeeded          bool                       `json:"attentionNeeded"`
	RefundableQuantity       int                        `json:"refundableQuantity"`
	Refundable               []RefundableBatch          `json:"refundable,omitempty"`
	ScheduledNextTerm        *NextTerm                  `json:"scheduledNextTerm,omitempty"`
	UnknownFields            map[string]json.RawMessage `json:"unknownFields,omitempty"`
	JSON                     json.RawMessage            `json:"json,omitempty"` // the GET-by-id rendering (StateWithJSON)
}

// RefundableBatch is a refundable seat batch.
type RefundableBatch struct {
	Quantity     int       `json:"quantity"`
	AllowedUntil time.Time `json:"allowedUntil"`
}

// State returns the current ground truth (after applying due transitions).
func (s *Sim) State() State { return s.state(false) }

// StateWithJSON is State with each customer's and subscription's exact
// rendering (subscriptions in their GET-by-id form) attached.
func (s *Sim) StateWithJSON() State { return s.state(true) }

func (s *Sim) state(withJSON bool) State {
	now := s.lock()
	defer s.mu.Unlock()
	st := State{At: now, Seq: uint64(len(s.log)), Customers: make([]CustomerState, 0, len(s.custs))}
	for _, c := range s.custs {
		cs := CustomerState{ID: c.id, CompanyName: c.name, Domain: c.domain, AssociatedPartnerID: c.partnerID,
			AllowDelegatedAccess: c.delegated, Subscriptions: make([]SubscriptionState, 0, len(c.subs)),
			ManagedServices: append([]string{}, c.services...)}
		if withJSON {
			cs.JSON = rawJSON(c.wire())
		}
		for _, sub := range c.subs {
			cs.Subscriptions = append(cs.Subscriptions, sub.state(withJSON))
		}
		st.Customers = append(st.Customers, cs)
	}
	return st
}

func tptr(t time.Time) *time.Time { return &t }

func (sub *subscription) state(withJSON bool) SubscriptionState {
	ss := SubscriptionState{
		ID: sub.id, Kind: sub.kind(), OfferID: sub.off.id, OfferName: sub.off.name, FriendlyName: sub.friendly,
		Quantity: sub.quantity, Status: sub.status.String(), AutoRenewEnabled: sub.autoRenew, IsTrial: sub.trial,
		BillingCycle: cycleName(sub.billMonths), PartnerID: sub.partnerID, ParentSubscriptionID: sub.parentID,
		CreationDate: sub.created, EffectiveStartDate: sub.effStart, CommitmentEndDate: sub.commitEnd,
		AttentionNeeded: sub.attention, RefundableQuantity: sub.refundTotal(),
	}
	if !sub.since.IsZero() {
		ss.StatusSince = tptr(sub.since)
	}
	if sub.hasTerm() && sub.fam != famLegacy && sub.fam != famLegacyAddon {
		ss.TermDuration = termName(sub.termMonths)
	}
	if sub.fam == famAzurePlan {
		ss.CommitmentEndDate = time.Date(9999, sub.effStart.Month(), sub.effStart.Day(), 0, 0, 0, 0, time.UTC)
	}
	if sub.isNCE() {
		ss.CancellationAllowedUntil = tptr(sub.cancelUntil)
		ss.BillingCycleEndDate = tptr(sub.billEnd)
	}
	for _, r := range sub.refunds {
		ss.Refundable = append(ss.Refundable, RefundableBatch{Quantity: r.qty, AllowedUntil: r.until})
	}
	if n := sub.next; n != nil {
		ss.ScheduledNextTerm = &NextTerm{ProductID: n.off.productID, SkuID: n.off.skuID, AvailabilityID: n.off.availID,
			BillingCycle: cycleName(n.billMonths), TermDuration: termName(n.termMonths), PromotionID: n.promo, Quantity: n.quantity}
	}
	if len(sub.extra) > 0 {
		ss.UnknownFields = make(map[string]json.RawMessage, len(sub.extra))
		for _, e := range sub.extra {
			ss.UnknownFields[e.name] = e.value
		}
	}
	if withJSON {
		ss.JSON = subJSON(sub.wire(true))
	}
	return ss
}
