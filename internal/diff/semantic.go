package diff

import (
	"encoding/json"
	"strings"

	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

type semEvent struct {
	t        events.Type
	changes  []events.Change
	old, new json.RawMessage
	delta    *int
}

// renewalPaths move together when a term renews.
var renewalPaths = []string{"/commitmentEndDate", "/commitmentEndDateTime", "/cancellationAllowedUntilDate",
	"/billingCycleEndDate", "/billingCycleEndDateTime"}

// subscriptionEvents turns a subscription's field changes into catalog
// events. Every change belongs to exactly one event: the specific types
// claim their fields and subscription.updated gets whatever is left.
func subscriptionEvents(old, cur *pc.Subscription, changes []events.Change) []semEvent {
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
	var out []semEvent
	if cs := take(is("/status")); len(cs) > 0 {
		out = append(out, semEvent{t: events.SubscriptionStatusChanged, changes: cs,
			old: events.JSONValue(string(old.Status)), new: events.JSONValue(string(cur.Status))})
	}
	if cs := take(is("/quantity")); len(cs) > 0 {
		d := cur.Quantity - old.Quantity
		out = append(out, semEvent{t: events.SubscriptionQuantityChanged, changes: cs,
			old: events.JSONValue(old.Quantity), new: events.JSONValue(cur.Quantity), delta: &d})
	}
	if cs := take(is("/autoRenewEnabled")); len(cs) > 0 {
		out = append(out, semEvent{t: events.SubscriptionAutoRenewChanged, changes: cs,
			old: events.JSONValue(old.AutoRenewEnabled), new: events.JSONValue(cur.AutoRenewEnabled)})
	}
	if oe, ne := old.CommitmentEnd(), cur.CommitmentEnd(); oe.Valid() && ne.Valid() && ne.T.After(oe.T) {
		if cs := take(is(renewalPaths...)); len(cs) > 0 {
			out = append(out, semEvent{t: events.SubscriptionRenewed, changes: cs,
				old: events.JSONValue(oe.T), new: events.JSONValue(ne.T)})
		}
	}
	if cs := take(is("/termDuration", "/billingCycle", "/renewalTermDuration")); len(cs) > 0 {
		out = append(out, semEvent{t: events.SubscriptionTermChanged, changes: cs})
	}
	if cs := take(is("/scheduledNextTermInstructions")); len(cs) > 0 {
		var oldJ, newJ json.RawMessage
		if old.ScheduledNextTermInstructions != nil {
			oldJ = rawField(old.Raw, "scheduledNextTermInstructions")
		}
		if cur.ScheduledNextTermInstructions != nil {
			newJ = rawField(cur.Raw, "scheduledNextTermInstructions")
			out = append(out, semEvent{t: events.SubscriptionScheduledChangeSet, changes: cs, old: oldJ, new: newJ})
		} else {
			out = append(out, semEvent{t: events.SubscriptionScheduledChangeCleared, changes: cs, old: oldJ})
		}
	}
	if !old.AttentionNeeded && cur.AttentionNeeded {
		if cs := take(is("/attentionNeeded")); len(cs) > 0 {
			out = append(out, semEvent{t: events.SubscriptionAttentionNeeded, changes: cs})
		}
	}
	if cs := take(func(string) bool { return true }); len(cs) > 0 {
		out = append(out, semEvent{t: events.SubscriptionUpdated, changes: cs})
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
