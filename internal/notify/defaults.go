package notify

import (
	"text/template"

	"github.com/pcwatch/pcwatch/internal/events"
)

type titleText struct{ title, text *template.Template }

func must(name, title, text string) titleText {
	t, err := parseTemplate(name+".title", title)
	if err != nil {
		panic(err)
	}
	x, err := parseTemplate(name+".text", text)
	if err != nil {
		panic(err)
	}
	return titleText{t, x}
}

// Shared pieces of the default texts.
const (
	tmplWho     = `{{.CustomerName}} (customer {{.CustomerID}})`
	tmplSubWho  = `{{.Product}} for {{.CustomerName}} (customer {{.CustomerID}}, subscription {{.SubscriptionID}})`
	tmplChanges = `{{with .Changes}} Changed: {{range $i, $c := .}}{{if $i}}; {{end}}{{$c.Field}} {{$c.Old}} -> {{$c.New}}{{if ge $i 4}}{{break}}{{end}}{{end}}{{if gt (len $.Changes) 5}} and {{len $.Changes}} changes in all{{end}}.{{end}}`
	tmplLate    = `{{if .Late}} This alert is late: the {{.Threshold}} warning point had already passed when pcwatch noticed.{{end}}`
	tmplLateTag = `{{if .Late}}[LATE] {{end}}`
)

// genericTemplate renders event types this notifier does not know yet.
var genericTemplate = must("generic",
	`{{.CustomerName}}: {{.Type}}{{with .Product}} — {{.}}{{end}}`,
	`{{.Info.Summary}} {{if .CustomerID}}Customer: `+tmplWho+`.{{end}}`+tmplChanges)

// defaultTemplates has a title and a text for every catalog type; a test
// checks none is missing.
var defaultTemplates = map[events.Type]titleText{
	events.CustomerAdded: must("customer.added",
		`New customer: {{.CustomerName}}`,
		tmplWho+` appeared in your Partner Center customer list{{with .Data.After}}{{with .Domain}} (domain {{.}}){{end}}{{with .RelationshipToPartner}}, relationship {{.}}{{end}}{{end}}.`),
	events.CustomerRemoved: must("customer.removed",
		`Customer gone: {{.CustomerName}}`,
		tmplWho+` is no longer in your customer list (missing from two consecutive complete listings). This usually means the reseller relationship ended: check Partner Center.`),
	events.CustomerUpdated: must("customer.updated",
		`{{.CustomerName}}: customer profile changed`,
		`The Partner Center profile of `+tmplWho+` changed.`+tmplChanges+
			`{{with .Data.After}}{{if .AllowDelegatedAccess}}{{if not (deref .AllowDelegatedAccess)}} Delegated admin access is off: pcwatch may no longer see this customer's subscriptions.{{end}}{{end}}{{end}}`),

	events.SubscriptionCreated: must("subscription.created",
		`{{.CustomerName}}: new subscription {{.Product}} ({{short .SubscriptionID}}){{with .Data.After}}{{with .Quantity}}, {{deref .}} seats{{end}}{{end}}`,
		`New subscription `+tmplSubWho+`{{with .Data.After}}{{with .Quantity}}: {{deref .}} seats{{end}}{{with .TermDuration}}, term {{term .}}{{end}}{{with .BillingCycle}}, billed {{.}}{{end}}{{with .Status}}, {{.}}{{end}}{{end}}.`+
			`{{with .Data.After}}{{with .CancellationAllowedUntilDate}} It can be cancelled for a refund until {{when .}}.{{end}}{{end}}`),
	events.SubscriptionRemoved: must("subscription.removed",
		`{{.CustomerName}}: subscription {{.Product}} ({{short .SubscriptionID}}) is gone`,
		`Subscription `+tmplSubWho+` is no longer listed (missing from two consecutive complete listings){{with .Data.Before}}{{with .Quantity}}; it had {{deref .}} seats{{end}}{{end}}.`),
	events.SubscriptionQuantityChanged: must("subscription.quantity-changed",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) seats {{.Old}} -> {{.New}}{{with .Delta}} ({{.}}){{end}}`,
		`Seats of `+tmplSubWho+` changed from {{.Old}} to {{.New}}{{with .Delta}} ({{.}}){{end}}.`+
			`{{with .Data.Delta}}{{if gt (deref .) 0}} The added seats can be reduced for a refund within 7 days (NCE).{{end}}{{end}}`),
	events.SubscriptionStatusChanged: must("subscription.status-changed",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) status {{.Old}} -> {{.New}}`,
		`The status of `+tmplSubWho+` changed from {{.Old}} to {{.New}}.`+
			`{{if eq .New "suspended"}} Its users lose access while it is suspended.{{end}}`+
			`{{if or (eq .New "expired") (eq .New "deleted") (eq .New "disabled")}} Its users no longer have access.{{end}}`),
	events.SubscriptionAutoRenewChanged: must("subscription.auto-renew-changed",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) auto-renew {{.Old}} -> {{.New}}`,
		`Auto-renew of `+tmplSubWho+` was switched {{.New}}.`+
			`{{with .Data.After}}{{with .CommitmentEndDate}}{{if eq $.New "off"}} It will expire at the end of its term on {{when .}} unless auto-renew is switched back on.{{else}} It will renew on {{when .}}.{{end}}{{end}}{{end}}`),
	events.SubscriptionRenewed: must("subscription.renewed",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) renewed until {{date .Data.New}}`,
		tmplSubWho+` renewed: its commitment now ends {{when .Data.New}} (was {{when .Data.Old}}). A new 7-day window to cancel for a refund has opened{{with .Data.After}}{{with .CancellationAllowedUntilDate}} (until {{when .}}){{end}}{{end}}.`),
	events.SubscriptionTermChanged: must("subscription.term-changed",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) term or billing changed`,
		`The term or billing cycle of `+tmplSubWho+` changed.`+tmplChanges),
	events.SubscriptionScheduledChangeSet: must("subscription.scheduled-change-set",
		`{{.CustomerName}}: change scheduled at renewal of {{.Product}} (sub {{short .SubscriptionID}})`,
		`A change was scheduled for the next term of `+tmplSubWho+`: {{.New}}.{{with .Data.After}}{{with .CommitmentEndDate}} It applies at renewal on {{when .}}.{{end}}{{end}}`),
	events.SubscriptionScheduledChangeCleared: must("subscription.scheduled-change-cleared",
		`{{.CustomerName}}: scheduled change of {{.Product}} (sub {{short .SubscriptionID}}) removed`,
		`The change scheduled for the next term of `+tmplSubWho+` is gone (cancelled, or applied at renewal). It was: {{.Old}}.`),
	events.SubscriptionAttentionNeeded: must("subscription.attention-needed",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) needs attention`,
		`Partner Center flagged `+tmplSubWho+` as needing attention. Open the subscription in Partner Center to see why (often a payment or provisioning problem).`),
	events.SubscriptionUpdated: must("subscription.updated",
		`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) changed`,
		`Subscription `+tmplSubWho+` changed.`+tmplChanges),
	events.SubscriptionCancellationClosing: must("subscription.cancellation-window-closing",
		tmplLateTag+`{{.CustomerName}}: cancellation window for {{.Product}} closes in {{.Remaining}}`,
		`Cancellation window for {{.Product}} closes in {{.Remaining}} ({{.Deadline}}). Cancel or reduce seats in Partner Center before then for a full refund. Customer: `+tmplWho+`, subscription {{.SubscriptionID}}{{with .Data.After}}{{with .Quantity}}, {{deref .}} seats{{end}}{{end}}.`+tmplLate),
	events.SubscriptionCancellationClosed: must("subscription.cancellation-window-closed",
		tmplLateTag+`{{.CustomerName}}: cancellation window for {{.Product}} closed`,
		`The cancellation window for {{.Product}} closed at {{.Deadline}}: the commitment is now binding{{with .Data.After}}{{with .CommitmentEndDate}} until {{when .}}{{end}}{{end}} and it can no longer be cancelled for a refund. Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),
	events.SubscriptionRefundClosing: must("subscription.refund-window-closing",
		tmplLateTag+`{{.CustomerName}}: refund window for {{with .Data.Quantity}}{{deref .}} {{end}}added seats of {{.Product}} closes in {{.Remaining}}`,
		`{{with .Data.Quantity}}{{deref .}} seats{{else}}Seats{{end}} added to {{.Product}} can be reduced for a refund only until {{.Deadline}} (in {{.Remaining}}). If they are not needed, reduce the quantity in Partner Center before then. Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),
	events.SubscriptionRenewalApproaching: must("subscription.renewal-approaching",
		tmplLateTag+`{{.CustomerName}}: {{.Product}} {{if eq (onoff .Data.AutoRenewEnabled) "off"}}expires{{else}}renews{{end}} in {{.Remaining}}`,
		`{{if eq (onoff .Data.AutoRenewEnabled) "off"}}{{.Product}} expires in {{.Remaining}} ({{.Deadline}}) because auto-renew is off. Switch auto-renew on in Partner Center to keep it.`+
			`{{else}}{{.Product}} renews automatically in {{.Remaining}} ({{.Deadline}}){{with .Data.After}}{{with .TermDuration}} for another term of {{term .}}{{end}}{{end}}. To change seats, the term or the product at renewal, schedule the change in Partner Center before then.{{end}}`+
			` Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),
	events.SubscriptionTrialEnding: must("subscription.trial-ending",
		tmplLateTag+`{{.CustomerName}}: trial of {{.Product}} ends in {{.Remaining}}`,
		`The trial of {{.Product}} ends in {{.Remaining}} ({{.Deadline}}). {{if eq (onoff .Data.AutoRenewEnabled) "off"}}It will not convert to a paid subscription: buy one before then to keep the users' access.{{else}}It converts to a paid subscription then: switch auto-renew off in Partner Center before then if the customer does not want it.{{end}}`+
			` Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),

	events.ManagedServiceAdded: must("managed-service.added",
		`{{.CustomerName}}: managed service {{.Product}} added`,
		`You can now administer {{.Product}}{{with .Data.After}}{{with .GroupName}} ({{.}}){{end}}{{end}} for `+tmplWho+`.`),
	events.ManagedServiceRemoved: must("managed-service.removed",
		`{{.CustomerName}}: managed service {{.Product}} gone`,
		`{{.Product}} is no longer among the managed services of `+tmplWho+`: delegated admin privileges for it may have been lost. Check the customer's admin relationships in Partner Center.`),
	events.ManagedServiceUpdated: must("managed-service.updated",
		`{{.CustomerName}}: managed service {{.Product}} changed`,
		`The managed service {{.Product}} of `+tmplWho+` changed.`+tmplChanges),

	events.ProductAdded: must("product.added",
		`{{.CustomerName}}: {{.Product}} now available{{with .Data.TargetView}} ({{.}}){{end}}`,
		`{{.Product}} ({{.Data.ProductID}}) became available to `+tmplWho+`{{with .Data.TargetView}} in the {{.}} catalog view{{end}}.`),
	events.ProductRemoved: must("product.removed",
		`{{.CustomerName}}: {{.Product}} no longer available{{with .Data.TargetView}} ({{.}}){{end}}`,
		`{{.Product}} ({{.Data.ProductID}}) is no longer available to `+tmplWho+`{{with .Data.TargetView}} in the {{.}} catalog view{{end}}.`),

	events.OpsCycleCompleted: must("ops.cycle-completed",
		`pcwatch poll cycle {{with .Data.Cycle}}{{.Number}} done: {{.CustomersOK}}/{{.CustomersTotal}} customers ok, {{.EventsEmitted}} events{{end}}`,
		`{{with .Data.Cycle}}Poll cycle {{.Number}} finished in {{dur .DurationSeconds}}: {{.CustomersOK}} of {{.CustomersTotal}} customers polled, {{.CustomersFailed}} failed{{if not .CustomerListOK}}, the customer list failed{{end}}; {{.EventsEmitted}} events emitted; {{.APIRequests}} API requests ({{.Throttled}} throttled, {{.Retries}} retries).{{end}}`),
	events.OpsCustomerPollFailed: must("ops.customer-poll-failed",
		`pcwatch cannot poll {{.CustomerName}}{{with .Data.Failure}} ({{.ConsecutiveFailures}} cycles){{end}}`,
		`pcwatch could not poll `+tmplWho+`{{with .Data.Failure}} for {{.ConsecutiveFailures}} consecutive cycles, since {{when .FirstFailedAt}}. Last error: {{trunc 300 .LastError}}{{end}}. Its changes are not being watched: check the credentials, the customer relationship or Partner Center's status.`),
	events.OpsMassRemovalHeld: must("ops.mass-removal-held",
		`pcwatch held back {{with .Data.Hold}}{{.Missing}} {{.Resource}} removals{{end}}{{if .CustomerID}} for {{.CustomerName}}{{end}}`,
		`{{with .Data.Hold}}{{.Missing}} of {{.Total}} {{.Resource}}s vanished at once{{end}}{{if .CustomerID}} for `+tmplWho+`{{end}}{{with .Data.Hold}}, more than the {{percent .Threshold}} pcwatch accepts in one listing{{end}}. No removed events were emitted; they follow if the entities stay missing after the hold is released. Check Partner Center before acting.`),
	events.OpsEventDropped: must("ops.event-dropped",
		`pcwatch could not publish an event{{if .CustomerID}} for {{.CustomerName}}{{end}}{{with .Data.Dropped}}: {{.Type}} too large{{end}}`,
		`{{with .Data.Dropped}}Event {{.ID}} ({{.Type}}, entity {{.Entity}}) was {{.Size}} bytes, more than the {{.Limit}} NATS accepts even after shrinking, and was not published{{end}}{{if .CustomerID}}. Customer: `+tmplWho+`{{end}}. Look at the entity in Partner Center, or raise the NATS server's max_payload and the stream's max_msg_size.`),
}
