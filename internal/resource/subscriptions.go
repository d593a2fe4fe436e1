package resource

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// SubscriptionEntities wraps a listing's subscriptions.
func SubscriptionEntities(subs []pc.Subscription) []Entity {
	return subscriptionEntities(Subscriptions, subs)
}

func subscriptionEntities(k *Kind, subs []pc.Subscription) []Entity {
	out := make([]Entity, len(subs))
	for i := range subs {
		out[i] = Entity{Kind: k, ID: subs[i].ID, Raw: subs[i].Raw, Model: &subs[i]}
	}
	return out
}

// listSubscriptions lists a customer's subscriptions, or the union of
// those of the resellers in scope (Partner Center's mpn_id filter). The
// former is an item listing when c is an ItemLister; the union is decoded,
// since it is deduplicated by id.
func listSubscriptions(ctx context.Context, k *Kind, c Client, customerID string, s Scope) ([]Entity, error) {
	if il, ok := c.(ItemLister); ok && len(s.MPNIDs) == 0 {
		items, err := il.ListSubscriptionItems(ctx, customerID, pc.SubscriptionFilter{})
		if err != nil {
			return nil, err
		}
		return ItemEntities(k, "", items), nil
	}
	if len(s.MPNIDs) == 0 {
		subs, err := c.ListSubscriptions(ctx, customerID, pc.SubscriptionFilter{})
		if err != nil {
			return nil, err
		}
		return subscriptionEntities(k, subs), nil
	}
	var out []pc.Subscription
	seen := map[string]bool{}
	for _, mpn := range s.MPNIDs {
		subs, err := c.ListSubscriptions(ctx, customerID, pc.SubscriptionFilter{MPNID: mpn})
		if err != nil {
			return nil, fmt.Errorf("subscriptions of reseller %s: %w", mpn, err)
		}
		for _, sub := range subs {
			if !seen[sub.ID] {
				seen[sub.ID] = true
				out = append(out, sub)
			}
		}
	}
	return subscriptionEntities(k, out), nil
}

func ptr[T any](v T) *T { return &v }

func timePtr(t pc.Time) *time.Time {
	if !t.Valid() {
		return nil
	}
	return ptr(t.T)
}

// subscriptionView is the compact view of a subscription.
func subscriptionView(s *pc.Subscription) events.View {
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

// renewalPaths move together when a term renews.
var renewalPaths = []string{"/commitmentEndDate", "/commitmentEndDateTime", "/cancellationAllowedUntilDate",
	"/billingCycleEndDate", "/billingCycleEndDateTime"}

// subscriptionEvents turns a subscription's field changes into catalog
// events. Every change belongs to exactly one event: the specific types
// claim their fields and subscription.updated gets whatever is left.
func subscriptionEvents(old, cur *pc.Subscription, changes []events.Change) []ChangeEvent {
	claimed := make([]bool, len(changes))
	take := func(match func(path string) bool) []events.Change {
		var out []events.Change
		for i, c := range changes {
			if !claimed[i] && match(c.Path) {
				claimed[i] = true
				out = append(out, c)
			}
		}
		return out
	}
	is := func(paths ...string) func(string) bool {
		return func(p string) bool {
			for _, x := range paths {
				if p == x || strings.HasPrefix(p, x+"/") {
					return true
				}
			}
			return false
		}
	}
	var out []ChangeEvent
	if cs := take(is("/status")); len(cs) > 0 {
		out = append(out, ChangeEvent{Type: events.SubscriptionStatusChanged, Changes: cs,
			Old: events.JSONValue(string(old.Status)), New: events.JSONValue(string(cur.Status))})
	}
	if cs := take(is("/quantity")); len(cs) > 0 {
		d := cur.Quantity - old.Quantity
		out = append(out, ChangeEvent{Type: events.SubscriptionQuantityChanged, Changes: cs,
			Old: events.JSONValue(old.Quantity), New: events.JSONValue(cur.Quantity), Delta: &d})
	}
	if cs := take(is("/autoRenewEnabled")); len(cs) > 0 {
		out = append(out, ChangeEvent{Type: events.SubscriptionAutoRenewChanged, Changes: cs,
			Old: events.JSONValue(old.AutoRenewEnabled), New: events.JSONValue(cur.AutoRenewEnabled)})
	}
	if oe, ne := old.CommitmentEnd(), cur.CommitmentEnd(); oe.Valid() && ne.Valid() && ne.T.After(oe.T) {
		if cs := take(is(renewalPaths...)); len(cs) > 0 {
			out = append(out, ChangeEvent{Type: events.SubscriptionRenewed, Changes: cs,
				Old: events.JSONValue(oe.T), New: events.JSONValue(ne.T)})
		}
	}
	if cs := take(is("/termDuration", "/billingCycle", "/renewalTermDuration")); len(cs) > 0 {
		out = append(out, ChangeEvent{Type: events.SubscriptionTermChanged, Changes: cs})
	}
	if cs := take(is("/scheduledNextTermInstructions")); len(cs) > 0 {
		var oldJ, newJ json.RawMessage
		if old.ScheduledNextTermInstructions != nil {
			oldJ = rawField(old.Raw, "scheduledNextTermInstructions")
		}
		if cur.ScheduledNextTermInstructions != nil {
			newJ = rawField(cur.Raw, "scheduledNextTermInstructions")
			out = append(out, ChangeEvent{Type: events.SubscriptionScheduledChangeSet, Changes: cs, Old: oldJ, New: newJ})
		} else {
			out = append(out, ChangeEvent{Type: events.SubscriptionScheduledChangeCleared, Changes: cs, Old: oldJ})
		}
	}
	if !old.AttentionNeeded && cur.AttentionNeeded {
		if cs := take(is("/attentionNeeded")); len(cs) > 0 {
			out = append(out, ChangeEvent{Type: events.SubscriptionAttentionNeeded, Changes: cs})
		}
	}
	if cs := take(func(string) bool { return true }); len(cs) > 0 {
		out = append(out, ChangeEvent{Type: events.SubscriptionUpdated, Changes: cs})
	}
	return out
}

// rawField returns one top-level property of a JSON object, compacted,
// matching the name case-insensitively.
func rawField(raw []byte, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			if string(v) == "null" {
				return nil
			}
			return v
		}
	}
	return nil
}
