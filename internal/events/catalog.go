package events

import (
	"slices"
	"strings"
)

// Type is a CloudEvents type: io.pcwatch.<resource>.<change>.
type Type string

// Resource is the first part of a type after the prefix.
type Resource string

// Resources.
const (
	ResourceCustomer       Resource = "customer"
	ResourceSubscription   Resource = "subscription"
	ResourceManagedService Resource = "managed-service"
	ResourceProduct        Resource = "product"
	ResourceOps            Resource = "ops"
)

// TypePrefix starts every pcwatch event type.
const TypePrefix = "io.pcwatch."

// The catalog. Keep Catalog, docs/events.md and docs/events.schema.json in
// step; tests fail when they drift.
const (
	CustomerAdded   Type = "io.pcwatch.customer.added"
	CustomerRemoved Type = "io.pcwatch.customer.removed"
	CustomerUpdated Type = "io.pcwatch.customer.updated"

	SubscriptionCreated                Type = "io.pcwatch.subscription.created"
	SubscriptionRemoved                Type = "io.pcwatch.subscription.removed"
	SubscriptionQuantityChanged        Type = "io.pcwatch.subscription.quantity-changed"
	SubscriptionStatusChanged          Type = "io.pcwatch.subscription.status-changed"
	SubscriptionAutoRenewChanged       Type = "io.pcwatch.subscription.auto-renew-changed"
	SubscriptionRenewed                Type = "io.pcwatch.subscription.renewed"
	SubscriptionTermChanged            Type = "io.pcwatch.subscription.term-changed"
	SubscriptionScheduledChangeSet     Type = "io.pcwatch.subscription.scheduled-change-set"
	SubscriptionScheduledChangeCleared Type = "io.pcwatch.subscription.scheduled-change-cleared"
	SubscriptionAttentionNeeded        Type = "io.pcwatch.subscription.attention-needed"
	SubscriptionUpdated                Type = "io.pcwatch.subscription.updated"
	SubscriptionCancellationClosing    Type = "io.pcwatch.subscription.cancellation-window-closing"
	SubscriptionCancellationClosed     Type = "io.pcwatch.subscription.cancellation-window-closed"
	SubscriptionRefundClosing          Type = "io.pcwatch.subscription.refund-window-closing"
	SubscriptionRenewalApproaching     Type = "io.pcwatch.subscription.renewal-approaching"
	SubscriptionTrialEnding            Type = "io.pcwatch.subscription.trial-ending"

	ManagedServiceAdded   Type = "io.pcwatch.managed-service.added"
	ManagedServiceRemoved Type = "io.pcwatch.managed-service.removed"
	ManagedServiceUpdated Type = "io.pcwatch.managed-service.updated"

	ProductAdded   Type = "io.pcwatch.product.added"
	ProductRemoved Type = "io.pcwatch.product.removed"

	OpsCycleCompleted     Type = "io.pcwatch.ops.cycle-completed"
	OpsCustomerPollFailed Type = "io.pcwatch.ops.customer-poll-failed"
	OpsMassRemovalHeld    Type = "io.pcwatch.ops.mass-removal-held"
	OpsEventDropped       Type = "io.pcwatch.ops.event-dropped"
)

// Info describes one event type. Resource and Change are derived from
// Type.
type Info struct {
	Type     Type
	Resource Resource
	Change   string // the last part of the type
	Deadline bool   // a deadline event (carries deadline, threshold, remaining)
	Summary  string // one line
	Meaning  string // when it fires and what to do about it
	Fields   []string
}

// catalog lists every event type pcwatch publishes, in documentation order.
// It is built once, by build, and never changed: Catalog and Lookup hand
// out copies.
var catalog = build([]Info{
	{Type: CustomerAdded, Summary: "A customer appeared in the partner's customer list.",
		Meaning: "A new customer relationship (or one the watcher had not seen). Not emitted for the customers of the very first cycle, which is a baseline.",
		Fields:  []string{"after"}},
	{Type: CustomerRemoved, Summary: "A customer is gone from the customer list.",
		Meaning: "Missing from two consecutive complete customer listings (a failed or partial listing never counts). Often a lost reseller relationship: check Partner Center.",
		Fields:  []string{"before"}},
	{Type: CustomerUpdated, Summary: "A customer's profile or relationship changed.",
		Meaning: "Any change of the customer object except volatile fields (etag, links): company name, domain, relationshipToPartner, allowDelegatedAccess (a lost admin relationship), associatedPartnerId.",
		Fields:  []string{"after", "changes"}},

	{Type: SubscriptionCreated, Summary: "A new subscription was purchased or first appeared.",
		Meaning: "A subscription not in the previous listing of a customer already known. The first sighting of a customer is a baseline and emits no created events unless configured.",
		Fields:  []string{"after"}},
	{Type: SubscriptionRemoved, Summary: "A subscription is gone from its customer's listing.",
		Meaning: "Missing from two consecutive complete listings. Held back (see ops.mass-removal-held) when too many vanish at once.",
		Fields:  []string{"before"}},
	{Type: SubscriptionQuantityChanged, Summary: "Seats (quantity) changed.",
		Meaning: "old, new and delta carry the seat counts. An NCE increase opens a 7-day refund window for the added seats.",
		Fields:  []string{"after", "changes", "old", "new", "delta"}},
	{Type: SubscriptionStatusChanged, Summary: "Status changed (active, suspended, expired, disabled, deleted, ...).",
		Meaning: "old and new carry the statuses as Partner Center spells them.",
		Fields:  []string{"after", "changes", "old", "new"}},
	{Type: SubscriptionAutoRenewChanged, Summary: "Auto-renew was switched on or off.",
		Meaning: "old and new are booleans. Off means the subscription will expire at its commitment end.",
		Fields:  []string{"after", "changes", "old", "new"}},
	{Type: SubscriptionRenewed, Summary: "The term renewed: the commitment end moved forward.",
		Meaning: "old and new are the commitment end instants. An NCE renewal opens a new 7-day cancellation window.",
		Fields:  []string{"after", "changes", "old", "new"}},
	{Type: SubscriptionTermChanged, Summary: "Term duration or billing cycle changed.",
		Meaning: "changes carries /termDuration and/or /billingCycle.",
		Fields:  []string{"after", "changes"}},
	{Type: SubscriptionScheduledChangeSet, Summary: "A change was scheduled for the next term.",
		Meaning: "scheduledNextTermInstructions appeared or changed; new carries them.",
		Fields:  []string{"after", "changes", "old", "new"}},
	{Type: SubscriptionScheduledChangeCleared, Summary: "A scheduled next-term change was removed.",
		Meaning: "scheduledNextTermInstructions disappeared (cancelled or applied at renewal); old carries what was scheduled.",
		Fields:  []string{"after", "changes", "old"}},
	{Type: SubscriptionAttentionNeeded, Summary: "Partner Center flagged the subscription as needing attention.",
		Meaning: "attentionNeeded went from false to true.",
		Fields:  []string{"after", "changes"}},
	{Type: SubscriptionUpdated, Summary: "Any other change of the subscription.",
		Meaning: "Every change not reported by a more specific type (friendly name, partnerId, billing cycle end, fields Partner Center adds later...). One change is reported once.",
		Fields:  []string{"after", "changes"}},
	{Type: SubscriptionCancellationClosing, Deadline: true, Summary: "The NCE cancellation window closes soon.",
		Meaning: "Fires once per threshold (default 72h, 24h, 4h before cancellationAllowedUntilDate). After the deadline the subscription can no longer be cancelled for a refund.",
		Fields:  []string{"after", "deadline", "threshold", "remaining", "timing", "late"}},
	{Type: SubscriptionCancellationClosed, Deadline: true, Summary: "The NCE cancellation window closed.",
		Meaning: "Fires once, only for a window the watcher saw open. The commitment is now binding.",
		Fields:  []string{"after", "deadline", "timing", "late"}},
	{Type: SubscriptionRefundClosing, Deadline: true, Summary: "A batch of added seats can be refunded only until soon.",
		Meaning: "Each NCE seat increase can be reduced for a refund until its allowedUntilDateTime (default thresholds 48h, 4h). quantity is the seats of that batch.",
		Fields:  []string{"after", "deadline", "threshold", "remaining", "quantity", "timing", "late"}},
	{Type: SubscriptionRenewalApproaching, Deadline: true, Summary: "The commitment end approaches.",
		Meaning: "Default 30d, 7d, 1d before the commitment end, for terms of a year or more. autoRenewEnabled tells whether it will renew or expire.",
		Fields:  []string{"after", "deadline", "threshold", "remaining", "autoRenewEnabled", "timing", "late"}},
	{Type: SubscriptionTrialEnding, Deadline: true, Summary: "A trial ends soon.",
		Meaning: "Default 7d and 1d before a trial's commitment end; autoRenewEnabled tells whether it converts to paid.",
		Fields:  []string{"after", "deadline", "threshold", "remaining", "autoRenewEnabled", "timing", "late"}},

	{Type: ManagedServiceAdded, Summary: "The partner can now administer a service for the customer.",
		Meaning: "A managed service appeared.", Fields: []string{"after"}},
	{Type: ManagedServiceRemoved, Summary: "A managed service is gone.",
		Meaning: "Missing from two consecutive complete listings: delegated admin privileges for it may have been lost.",
		Fields:  []string{"before"}},
	{Type: ManagedServiceUpdated, Summary: "A managed service changed (name or group).",
		Meaning: "Links are volatile and ignored.", Fields: []string{"after", "changes"}},

	{Type: ProductAdded, Summary: "A product became available to the customer in a target view.",
		Meaning: "targetView says which catalog view.", Fields: []string{"after", "targetView"}},
	{Type: ProductRemoved, Summary: "A product is no longer available to the customer in a target view.",
		Meaning: "Missing from two consecutive complete listings of that view.", Fields: []string{"before", "targetView"}},

	{Type: OpsCycleCompleted, Summary: "A poll cycle finished.",
		Meaning: "Summarises the cycle: customers ok/failed, events emitted, duration, API requests and 429s.",
		Fields:  []string{"cycle"}},
	{Type: OpsCustomerPollFailed, Summary: "A customer failed to poll several cycles in a row.",
		Meaning: "Fires when the configured number of consecutive failures is reached, and again at each further multiple. Its changes are not being watched: check credentials, the relationship, or Partner Center status.",
		Fields:  []string{"failure"}},
	{Type: OpsMassRemovalHeld, Summary: "Too many entities vanished at once; removals were held.",
		Meaning: "More than the configured share of a customer's subscriptions (or of all customers) disappeared in one listing. No removed events were emitted; they follow if the entities stay missing after the hold is released.",
		Fields:  []string{"hold"}},
	{Type: OpsEventDropped, Summary: "An event too large for NATS was replaced by this notice.",
		Meaning: "An event exceeded the largest message the NATS server (max_payload, 1 MiB by default) or the stream (max_msg_size) accepts even after shrinking (see truncated). dropped names it: its id, type, subject and entity. Nothing else is lost and later events are published; look at the entity in Partner Center, or raise the limit.",
		Fields:  []string{"dropped"}},
})

// build derives each entry's Resource and Change from its Type.
func build(in []Info) []Info {
	out := make([]Info, len(in))
	for i, e := range in {
		res, change, _ := strings.Cut(strings.TrimPrefix(string(e.Type), TypePrefix), ".")
		e.Resource, e.Change = Resource(res), change
		out[i] = e
	}
	return out
}

var byType = func() map[Type]int {
	m := make(map[Type]int, len(catalog))
	for i, in := range catalog {
		m[in.Type] = i
	}
	return m
}()

// Catalog returns every event type pcwatch publishes, in documentation
// order. The slice is the caller's: changing it changes nothing else.
func Catalog() []Info {
	out := make([]Info, len(catalog))
	for i, in := range catalog {
		out[i] = in.clone()
	}
	return out
}

// Lookup returns the catalog entry of t.
func Lookup(t Type) (Info, bool) {
	i, ok := byType[t]
	if !ok {
		return Info{}, false
	}
	return catalog[i].clone(), true
}

func (in Info) clone() Info {
	in.Fields = slices.Clone(in.Fields)
	return in
}
