package notify

import (
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

type titleText struct{ title, text *template.Template }

// presentation is how the notifier presents one event type.
type presentation struct {
	titleText
	severity string        // when not late; "" is info
	sample   func(*sample) // how its sample differs from the base sample
}

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
	// Timing (deadline events): late says pcwatch was down; first seen
	// inside says this is the first warning pcwatch could give; on time
	// adds nothing. An event without timing (an older watcher) that is late
	// says only that it is.
	tmplLateTag = `{{if .Late}}[LATE{{if eq .Timing "late"}}: watcher was down{{end}}] {{end}}`
	tmplSeenTag = `{{if .FirstSeenInside}} (first seen inside the {{with .Data.ThresholdSeconds}}{{dur .}}{{else}}{{.Threshold}}{{end}} window){{end}}`
	tmplLate    = `{{if eq .Timing "late"}} This alert is late: pcwatch knew this deadline but was not running when the {{.Threshold}} warning point passed.` +
		`{{else if .Late}} This alert is late: the {{.Threshold}} warning point had already passed when pcwatch noticed.{{end}}` +
		`{{if .FirstSeenInside}} pcwatch first saw this deadline only after the {{.Threshold}} warning point had passed: this is the first warning it could give.{{end}}`
	// cancellation-window-closed has no threshold.
	tmplClosedSeenTag = `{{if .FirstSeenInside}} (first seen just before it closed){{end}}`
	tmplClosedLate    = `{{if eq .Timing "late"}} This alert is late: pcwatch knew this window but was not running when it closed.` +
		`{{else if .Late}} This alert is late: the window had closed well before pcwatch noticed.{{end}}` +
		`{{if .FirstSeenInside}} pcwatch first saw this window open only just before it closed.{{end}}`
)

// genericTemplate renders event types this notifier does not know yet.
var genericTemplate = must("generic",
	`{{.CustomerName}}: {{.Type}}{{with .Product}} — {{.}}{{end}}`,
	`{{.Info.Summary}} {{if .CustomerID}}Customer: `+tmplWho+`.{{end}}`+tmplChanges)

// presentations say, for every catalog type (a test checks none is
// missing), how the notifier presents it: its default title and text, its
// severity when not late (a late deadline event is critical, any other
// deadline event a warning; unset: info), and how its sample event
// (SampleEvent) differs from the base sample.
var presentations = map[events.Type]presentation{
	events.CustomerAdded: {
		titleText: must("customer.added",
			`New customer: {{.CustomerName}}`,
			tmplWho+` appeared in your Partner Center customer list{{with .Data.After}}{{with .Domain}} (domain {{.}}){{end}}{{with .RelationshipToPartner}}, relationship {{.}}{{end}}{{end}}.`),
		sample: func(s *sample) { s.d.After = s.customer },
	},
	events.CustomerRemoved: {
		titleText: must("customer.removed",
			`Customer gone: {{.CustomerName}}`,
			tmplWho+` is no longer in your customer list (missing from two consecutive complete listings). This usually means the reseller relationship ended: check Partner Center.`),
		severity: "warning",
		sample:   func(s *sample) { s.d.Before = s.customer },
	},
	events.CustomerUpdated: {
		titleText: must("customer.updated",
			`{{.CustomerName}}: customer profile changed`,
			`The Partner Center profile of `+tmplWho+` changed.`+tmplChanges+
				`{{with .Data.After}}{{if .AllowDelegatedAccess}}{{if not (deref .AllowDelegatedAccess)}} Delegated admin access is off: pcwatch may no longer see this customer's subscriptions.{{end}}{{end}}{{end}}`),
		sample: func(s *sample) {
			s.customer.AllowDelegatedAccess = ptr(false)
			s.d.After = s.customer
			s.change("/allowDelegatedAccess", true, false)
			s.change("/companyProfile/companyName", "Contoso", sampleCustomerName)
		},
	},

	events.SubscriptionCreated: {
		titleText: must("subscription.created",
			`{{.CustomerName}}: new subscription {{.Product}} ({{short .SubscriptionID}}){{with .Data.After}}{{with .Quantity}}, {{deref .}} seats{{end}}{{end}}`,
			`New subscription `+tmplSubWho+`{{with .Data.After}}{{with .Quantity}}: {{deref .}} seats{{end}}{{with .TermDuration}}, term {{term .}}{{end}}{{with .BillingCycle}}, billed {{.}}{{end}}{{with .Status}}, {{.}}{{end}}{{end}}.`+
				`{{with .Data.After}}{{with .CancellationAllowedUntilDate}} It can be cancelled for a refund until {{when .}}.{{end}}{{end}}`),
		sample: func(s *sample) {
			s.sub.CreationDate, s.sub.EffectiveStartDate = ptr(s.at.Add(-time.Hour)), ptr(s.at.Add(-time.Hour))
			s.sub.CommitmentEndDate = ptr(s.at.AddDate(1, 0, 0).Truncate(24 * time.Hour))
			s.sub.CancellationAllowedUntilDate = ptr(s.at.Add(7 * 24 * time.Hour).Truncate(time.Minute))
		},
	},
	events.SubscriptionRemoved: {
		titleText: must("subscription.removed",
			`{{.CustomerName}}: subscription {{.Product}} ({{short .SubscriptionID}}) is gone`,
			`Subscription `+tmplSubWho+` is no longer listed (missing from two consecutive complete listings){{with .Data.Before}}{{with .Quantity}}; it had {{deref .}} seats{{end}}{{end}}.`),
		severity: "warning",
		sample:   func(s *sample) { s.d.After, s.d.Before = nil, s.sub },
	},
	events.SubscriptionQuantityChanged: {
		titleText: must("subscription.quantity-changed",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) seats {{.Old}} -> {{.New}}{{with .Delta}} ({{.}}){{end}}`,
			`Seats of `+tmplSubWho+` changed from {{.Old}} to {{.New}}{{with .Delta}} ({{.}}){{end}}.`+
				`{{with .Data.Delta}}{{if gt (deref .) 0}} The added seats can be reduced for a refund within 7 days (NCE).{{end}}{{end}}`),
		sample: func(s *sample) {
			s.sub.Quantity = ptr(10)
			s.d.Old, s.d.New, s.d.Delta = events.JSONValue(12), events.JSONValue(10), ptr(-2)
			s.change("/quantity", 12, 10)
		},
	},
	events.SubscriptionStatusChanged: {
		titleText: must("subscription.status-changed",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) status {{.Old}} -> {{.New}}`,
			`The status of `+tmplSubWho+` changed from {{.Old}} to {{.New}}.`+
				`{{if eq .New "suspended"}} Its users lose access while it is suspended.{{end}}`+
				`{{if or (eq .New "expired") (eq .New "deleted") (eq .New "disabled")}} Its users no longer have access.{{end}}`),
		sample: func(s *sample) {
			s.sub.Status = "suspended"
			s.d.Old, s.d.New = events.JSONValue("active"), events.JSONValue("suspended")
			s.change("/status", "active", "suspended")
		},
	},
	events.SubscriptionAutoRenewChanged: {
		titleText: must("subscription.auto-renew-changed",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) auto-renew {{.Old}} -> {{.New}}`,
			`Auto-renew of `+tmplSubWho+` was switched {{.New}}.`+
				`{{with .Data.After}}{{with .CommitmentEndDate}}{{if eq $.New "off"}} It will expire at the end of its term on {{when .}} unless auto-renew is switched back on.{{else}} It will renew on {{when .}}.{{end}}{{end}}{{end}}`),
		sample: func(s *sample) {
			s.sub.AutoRenewEnabled = ptr(false)
			s.d.Old, s.d.New = events.JSONValue(true), events.JSONValue(false)
			s.change("/autoRenewEnabled", true, false)
		},
	},
	events.SubscriptionRenewed: {
		titleText: must("subscription.renewed",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) renewed until {{date .Data.New}}`,
			tmplSubWho+` renewed: its commitment now ends {{when .Data.New}} (was {{when .Data.Old}}). A new 7-day window to cancel for a refund has opened{{with .Data.After}}{{with .CancellationAllowedUntilDate}} (until {{when .}}){{end}}{{end}}.`),
		sample: func(s *sample) {
			old := *s.sub.CommitmentEndDate
			s.sub.CommitmentEndDate = ptr(old.AddDate(1, 0, 0))
			s.sub.CancellationAllowedUntilDate = ptr(old.Add(7 * 24 * time.Hour))
			s.d.Old, s.d.New = events.JSONValue(old), events.JSONValue(*s.sub.CommitmentEndDate)
			s.change("/commitmentEndDate", old, *s.sub.CommitmentEndDate)
		},
	},
	events.SubscriptionTermChanged: {
		titleText: must("subscription.term-changed",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) term or billing changed`,
			`The term or billing cycle of `+tmplSubWho+` changed.`+tmplChanges),
		sample: func(s *sample) {
			s.sub.BillingCycle = "annual"
			s.change("/billingCycle", "monthly", "annual")
		},
	},
	events.SubscriptionScheduledChangeSet: {
		titleText: must("subscription.scheduled-change-set",
			`{{.CustomerName}}: change scheduled at renewal of {{.Product}} (sub {{short .SubscriptionID}})`,
			`A change was scheduled for the next term of `+tmplSubWho+`: {{.New}}.{{with .Data.After}}{{with .CommitmentEndDate}} It applies at renewal on {{when .}}.{{end}}{{end}}`),
		sample: func(s *sample) {
			next := map[string]any{"product": map[string]string{"productId": "CFQ7TTC0LF8Q", "skuId": "0001"}, "quantity": 15, "termDuration": "P1Y", "billingCycle": "Monthly"}
			s.d.New = events.JSONValue(next)
			s.change("/scheduledNextTermInstructions", nil, next)
		},
	},
	events.SubscriptionScheduledChangeCleared: {
		titleText: must("subscription.scheduled-change-cleared",
			`{{.CustomerName}}: scheduled change of {{.Product}} (sub {{short .SubscriptionID}}) removed`,
			`The change scheduled for the next term of `+tmplSubWho+` is gone (cancelled, or applied at renewal). It was: {{.Old}}.`),
		sample: func(s *sample) {
			prev := map[string]any{"product": map[string]string{"productId": "CFQ7TTC0LF8Q", "skuId": "0001"}, "quantity": 15, "termDuration": "P1Y"}
			s.d.Old = events.JSONValue(prev)
			s.change("/scheduledNextTermInstructions", prev, nil)
		},
	},
	events.SubscriptionAttentionNeeded: {
		titleText: must("subscription.attention-needed",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) needs attention`,
			`Partner Center flagged `+tmplSubWho+` as needing attention. Open the subscription in Partner Center to see why (often a payment or provisioning problem).`),
		severity: "warning",
		sample:   func(s *sample) { s.change("/attentionNeeded", false, true) },
	},
	events.SubscriptionUpdated: {
		titleText: must("subscription.updated",
			`{{.CustomerName}}: {{.Product}} (sub {{short .SubscriptionID}}) changed`,
			`Subscription `+tmplSubWho+` changed.`+tmplChanges),
		sample: func(s *sample) { s.change("/friendlyName", "M365 Basic", "Contoso M365 Basic") },
	},
	events.SubscriptionCancellationClosing: {
		titleText: must("subscription.cancellation-window-closing",
			tmplLateTag+`{{.CustomerName}}: cancellation window for {{.Product}} closes in {{.Remaining}}`+tmplSeenTag,
			`Cancellation window for {{.Product}} closes in {{.Remaining}} ({{.Deadline}}). Cancel or reduce seats in Partner Center before then for a full refund. Customer: `+tmplWho+`, subscription {{.SubscriptionID}}{{with .Data.After}}{{with .Quantity}}, {{deref .}} seats{{end}}{{end}}.`+tmplLate),
		sample: func(s *sample) {
			s.sub.OfferName = "Microsoft 365 E3"
			s.sub.CreationDate = ptr(s.at.Add(-7*24*time.Hour + 4*time.Hour))
			s.deadline(3*time.Hour+58*time.Minute, 4*time.Hour)
			s.sub.CancellationAllowedUntilDate = s.d.Deadline
		},
	},
	events.SubscriptionCancellationClosed: {
		titleText: must("subscription.cancellation-window-closed",
			tmplLateTag+`{{.CustomerName}}: cancellation window for {{.Product}} closed`+tmplClosedSeenTag,
			`The cancellation window for {{.Product}} closed at {{.Deadline}}: the commitment is now binding{{with .Data.After}}{{with .CommitmentEndDate}} until {{when .}}{{end}}{{end}} and it can no longer be cancelled for a refund. Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplClosedLate),
		sample: func(s *sample) {
			s.sub.OfferName = "Microsoft 365 E3"
			dl := s.at.Add(-2 * time.Minute).Truncate(time.Minute)
			s.d.Deadline, s.d.Timing, s.d.Late = &dl, events.TimingOnTime, ptr(false)
			s.sub.CancellationAllowedUntilDate = &dl
		},
	},
	events.SubscriptionRefundClosing: {
		titleText: must("subscription.refund-window-closing",
			tmplLateTag+`{{.CustomerName}}: refund window for {{with .Data.Quantity}}{{deref .}} {{end}}added seats of {{.Product}} closes in {{.Remaining}}`+tmplSeenTag,
			`{{with .Data.Quantity}}{{deref .}} seats{{else}}Seats{{end}} added to {{.Product}} can be reduced for a refund only until {{.Deadline}} (in {{.Remaining}}). If they are not needed, reduce the quantity in Partner Center before then. Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),
		sample: func(s *sample) {
			s.d.Quantity = ptr(3)
			s.deadline(46*time.Hour+10*time.Minute, 48*time.Hour)
		},
	},
	events.SubscriptionRenewalApproaching: {
		titleText: must("subscription.renewal-approaching",
			tmplLateTag+`{{.CustomerName}}: {{.Product}} {{if eq (onoff .Data.AutoRenewEnabled) "off"}}expires{{else}}renews{{end}} in {{.Remaining}}`+tmplSeenTag,
			`{{if eq (onoff .Data.AutoRenewEnabled) "off"}}{{.Product}} expires in {{.Remaining}} ({{.Deadline}}) because auto-renew is off. Switch auto-renew on in Partner Center to keep it.`+
				`{{else}}{{.Product}} renews automatically in {{.Remaining}} ({{.Deadline}}){{with .Data.After}}{{with .TermDuration}} for another term of {{term .}}{{end}}{{end}}. To change seats, the term or the product at renewal, schedule the change in Partner Center before then.{{end}}`+
				` Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),
		sample: func(s *sample) {
			s.deadline(6*24*time.Hour+23*time.Hour, 7*24*time.Hour)
			s.sub.CommitmentEndDate = s.d.Deadline
			s.d.AutoRenewEnabled = ptr(true)
		},
	},
	events.SubscriptionTrialEnding: {
		titleText: must("subscription.trial-ending",
			tmplLateTag+`{{.CustomerName}}: trial of {{.Product}} ends in {{.Remaining}}`+tmplSeenTag,
			`The trial of {{.Product}} ends in {{.Remaining}} ({{.Deadline}}). {{if eq (onoff .Data.AutoRenewEnabled) "off"}}It will not convert to a paid subscription: buy one before then to keep the users' access.{{else}}It converts to a paid subscription then: switch auto-renew off in Partner Center before then if the customer does not want it.{{end}}`+
				` Customer: `+tmplWho+`, subscription {{.SubscriptionID}}.`+tmplLate),
		sample: func(s *sample) {
			s.sub.OfferName, s.sub.IsTrial, s.sub.AutoRenewEnabled = "Microsoft 365 E3 (Trial)", ptr(true), ptr(false)
			s.sub.Quantity, s.sub.TermDuration = ptr(25), "P1M"
			s.deadline(23*time.Hour+15*time.Minute, 24*time.Hour)
			s.sub.CommitmentEndDate = s.d.Deadline
			s.d.AutoRenewEnabled = ptr(false)
		},
	},

	events.ManagedServiceAdded: {
		titleText: must("managed-service.added",
			`{{.CustomerName}}: managed service {{.Product}} added`,
			`You can now administer {{.Product}}{{with .Data.After}}{{with .GroupName}} ({{.}}){{end}}{{end}} for `+tmplWho+`.`),
		sample: func(s *sample) {
			s.d.ManagedServiceID = "exchange"
			s.d.After = sampleManagedService()
		},
	},
	events.ManagedServiceRemoved: {
		titleText: must("managed-service.removed",
			`{{.CustomerName}}: managed service {{.Product}} gone`,
			`{{.Product}} is no longer among the managed services of `+tmplWho+`: delegated admin privileges for it may have been lost. Check the customer's admin relationships in Partner Center.`),
		severity: "warning",
		sample: func(s *sample) {
			s.d.ManagedServiceID = "exchange"
			s.d.Before = sampleManagedService()
		},
	},
	events.ManagedServiceUpdated: {
		titleText: must("managed-service.updated",
			`{{.CustomerName}}: managed service {{.Product}} changed`,
			`The managed service {{.Product}} of `+tmplWho+` changed.`+tmplChanges),
		sample: func(s *sample) {
			s.d.ManagedServiceID = "exchange"
			s.d.After = sampleManagedService()
			s.change("/groupName", "Office 365", "Microsoft 365")
		},
	},

	events.ProductAdded: {
		titleText: must("product.added",
			`{{.CustomerName}}: {{.Product}} now available{{with .Data.TargetView}} ({{.}}){{end}}`,
			`{{.Product}} ({{.Data.ProductID}}) became available to `+tmplWho+`{{with .Data.TargetView}} in the {{.}} catalog view{{end}}.`),
		sample: func(s *sample) {
			s.d.ProductID, s.d.TargetView = "CFQ7TTC0LH18", "Microsoft365"
			s.d.After = &events.View{ID: "CFQ7TTC0LH18", Title: sampleOffer}
		},
	},
	events.ProductRemoved: {
		titleText: must("product.removed",
			`{{.CustomerName}}: {{.Product}} no longer available{{with .Data.TargetView}} ({{.}}){{end}}`,
			`{{.Product}} ({{.Data.ProductID}}) is no longer available to `+tmplWho+`{{with .Data.TargetView}} in the {{.}} catalog view{{end}}.`),
		sample: func(s *sample) {
			s.d.ProductID, s.d.TargetView = "CFQ7TTC0LH18", "Microsoft365"
			s.d.Before = &events.View{ID: "CFQ7TTC0LH18", Title: sampleOffer}
		},
	},

	events.OpsCycleCompleted: {
		titleText: must("ops.cycle-completed",
			`pcwatch poll cycle {{with .Data.Cycle}}{{.Number}} done: {{.CustomersOK}}/{{.CustomersTotal}} customers ok, {{.EventsEmitted}} events{{end}}`,
			`{{with .Data.Cycle}}Poll cycle {{.Number}} finished in {{dur .DurationSeconds}}: {{.CustomersOK}} of {{.CustomersTotal}} customers polled, {{.CustomersFailed}} failed{{if not .CustomerListOK}}, the customer list failed{{end}}; {{.EventsEmitted}} events emitted; {{.APIRequests}} API requests ({{.Throttled}} throttled, {{.Retries}} retries).{{end}}`),
		sample: func(s *sample) {
			s.d.CustomerID, s.d.CustomerName, s.d.Revision = "", "", 0
			s.d.Cycle = &events.CycleSummary{Number: 1042, StartedAt: s.at.Add(-93 * time.Second), DurationSeconds: 93.4,
				CustomersTotal: 2500, CustomersOK: 2498, CustomersFailed: 2, CustomerListOK: true, EventsEmitted: 17,
				APIRequests: 2611, Throttled: 12, Retries: 14}
		},
	},
	events.OpsCustomerPollFailed: {
		titleText: must("ops.customer-poll-failed",
			`pcwatch cannot poll {{.CustomerName}}{{with .Data.Failure}} ({{.ConsecutiveFailures}} cycles){{end}}`,
			`pcwatch could not poll `+tmplWho+`{{with .Data.Failure}} for {{.ConsecutiveFailures}} consecutive cycles, since {{when .FirstFailedAt}}. Last error: {{trunc 300 .LastError}}{{end}}. Its changes are not being watched: check the credentials, the customer relationship or Partner Center's status.`),
		severity: "critical",
		sample: func(s *sample) {
			s.d.Revision = 0
			s.d.Failure = &events.PollFailure{ConsecutiveFailures: 5, FirstFailedAt: s.at.Add(-25 * time.Minute), Cycle: 1042,
				LastError: "partner center GET /v1/customers/" + sampleCustomerID + "/subscriptions: HTTP 403 code 900200: the partner does not have a relationship with this customer"}
		},
	},
	events.OpsMassRemovalHeld: {
		titleText: must("ops.mass-removal-held",
			`pcwatch held back {{with .Data.Hold}}{{.Missing}} {{.Resource}} removals{{end}}{{if .CustomerID}} for {{.CustomerName}}{{end}}`,
			`{{with .Data.Hold}}{{.Missing}} of {{.Total}} {{.Resource}}s vanished at once{{end}}{{if .CustomerID}} for `+tmplWho+`{{end}}{{with .Data.Hold}}, more than the {{percent .Threshold}} pcwatch accepts in one listing{{end}}. No removed events were emitted; they follow if the entities stay missing after the hold is released. Check Partner Center before acting.`),
		severity: "critical",
		sample: func(s *sample) {
			s.d.Revision = 0
			ids := make([]string, 0, 40)
			for i := range 40 {
				ids = append(ids, fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1))
			}
			s.d.Hold = &events.Hold{Resource: "subscription", Missing: 40, Total: 48, Share: 40.0 / 48, Threshold: 0.5, IDs: ids, Cycle: 1042}
		},
	},
	events.OpsEventDropped: {
		titleText: must("ops.event-dropped",
			`pcwatch could not publish an event{{if .CustomerID}} for {{.CustomerName}}{{end}}{{with .Data.Dropped}}: {{.Type}} too large{{end}}`,
			`{{with .Data.Dropped}}Event {{.ID}} ({{.Type}}, entity {{.Entity}}) was {{.Size}} bytes, more than the {{.Limit}} NATS accepts even after shrinking, and was not published{{end}}{{if .CustomerID}}. Customer: `+tmplWho+`{{end}}. Look at the entity in Partner Center, or raise the NATS server's max_payload and the stream's max_msg_size.`),
		severity: "critical",
		sample: func(s *sample) {
			s.d.Revision = 0
			s.d.Dropped = &events.DroppedEvent{ID: "5f0c9a4e-1d2b-8c3a-9e4f-6a7b8c9d0e1f", Type: events.SubscriptionUpdated,
				Subject: "pcwatch.events.subscription.updated." + sampleCustomerID + "." + sampleSubID,
				Entity:  "subscription/" + sampleCustomerID + "/" + sampleSubID, Size: 3145728, Limit: 1048576}
		},
	},
}

// sampleManagedService is the managed service of the samples.
func sampleManagedService() *events.View {
	return &events.View{ID: "exchange", Name: "Exchange Online", GroupName: "Microsoft 365"}
}

// resourceFacts give, per resource, the fact that names the entity an
// event is about (a subscription's is among the common facts), when the
// event carries its view.
var resourceFacts = map[events.Resource]func(td *TemplateData, d *events.Data, v *events.View) Fact{
	events.ResourceManagedService: func(_ *TemplateData, _ *events.Data, v *events.View) Fact {
		return Fact{"Managed service", strings.TrimSpace(v.Name + " " + paren(v.GroupName))}
	},
	events.ResourceProduct: func(td *TemplateData, d *events.Data, _ *events.View) Fact {
		return Fact{"Product", fmt.Sprintf("%s (%s)", td.Product, d.ProductID)}
	},
}
