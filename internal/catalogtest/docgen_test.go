package catalogtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// fieldDoc documents one member of a type's data object.
type fieldDoc struct {
	name, typ string
	always    bool // present in every event of the type (the schema requires it)
	meaning   string
}

func isChangeType(in events.Info) bool {
	return in.Resource != events.ResourceOps && !in.Deadline && !isAddition(in.Type) && !isRemoval(in.Type)
}

// typeFields lists the data members of one type, in documentation order.
// Every type may carry truncated, last.
func typeFields(in events.Info) []fieldDoc {
	fs := dataFields(in)
	return append(fs, fieldDoc{"truncated", "array of [Truncation](#truncation)", false,
		"Only on an event that was larger than NATS accepts and was published shrunk: what was cut (see [Oversized events](#oversized-events))."})
}

func dataFields(in events.Info) []fieldDoc {
	var fs []fieldDoc
	add := func(name, typ string, always bool, meaning string) {
		fs = append(fs, fieldDoc{name, typ, always, meaning})
	}
	noun := map[events.Resource]string{events.ResourceCustomer: "customer", events.ResourceSubscription: "subscription",
		events.ResourceManagedService: "managed service", events.ResourceProduct: "product"}[in.Resource]

	switch in.Type {
	case events.OpsCycleCompleted:
		add("cycle", "[CycleSummary](#cyclesummary)", true, "The cycle's figures.")
		return fs
	case events.OpsCustomerPollFailed:
		add("customerId", "string", true, "The customer that could not be polled.")
		add("customerName", "string", false, "Its company name, when known.")
		add("failure", "[PollFailure](#pollfailure)", true, "The failure streak.")
		return fs
	case events.OpsMassRemovalHeld:
		add("customerId", "string", false, "The customer whose subscriptions vanished; absent when the customer list itself is held.")
		add("customerName", "string", false, "Its company name, when known.")
		add("hold", "[Hold](#hold)", true, "What vanished, and the rule that held it.")
		return fs
	case events.OpsEventDropped:
		add("customerId", "string", false, "The customer the dropped event was about, when it had one.")
		add("customerName", "string", false, "Its company name, when known.")
		add("dropped", "[DroppedEvent](#droppedevent)", true, "The event that was not published.")
		return fs
	}

	if in.Resource == events.ResourceCustomer {
		add("customerId", "string", true, "The customer's Partner Center id (its tenant id).")
		add("customerName", "string", false, "Its company name (as now, or as last seen for a removal).")
	} else {
		add("customerId", "string", true, "The Partner Center id of the customer the "+noun+" belongs to.")
		add("customerName", "string", false, "The customer's company name, when known.")
	}
	switch in.Resource {
	case events.ResourceSubscription:
		add("subscriptionId", "string", true, "The subscription's id.")
	case events.ResourceManagedService:
		add("managedServiceId", "string", true, "The managed service's id (e.g. `Exchange`).")
	case events.ResourceProduct:
		add("productId", "string", true, "The product's id.")
		add("targetView", "string", true, "The catalog view it is (or was) listed in (e.g. `OnlineServices`, `Software`).")
	}
	if !in.Deadline {
		add("revision", "integer", true, "How many changes pcwatch has seen of this "+noun+
			" (1 at its first sighting); the event id derives from it. Events split from one observed change share it.")
	}
	switch {
	case isRemoval(in.Type):
		add("before", "[View](#view)", true, "The "+noun+" as last listed.")
	case isAddition(in.Type):
		add("after", "[View](#view)", true, "The "+noun+" as first listed.")
	case in.Deadline:
		add("after", "[View](#view)", true, "The subscription as last listed.")
	default:
		add("after", "[View](#view)", true, "The "+noun+" as now listed.")
	}
	if isChangeType(in) {
		changes := map[events.Type]string{
			events.CustomerUpdated:                    "The changes (at least one).",
			events.SubscriptionQuantityChanged:        "The `/quantity` change.",
			events.SubscriptionStatusChanged:          "The `/status` change.",
			events.SubscriptionAutoRenewChanged:       "The `/autoRenewEnabled` change.",
			events.SubscriptionRenewed:                "The changes of `/commitmentEndDate`, `/commitmentEndDateTime`, `/cancellationAllowedUntilDate` and the billing cycle end that the renewal moved.",
			events.SubscriptionTermChanged:            "The changes of `/termDuration`, `/billingCycle` and/or `/renewalTermDuration`.",
			events.SubscriptionScheduledChangeSet:     "The changes under `/scheduledNextTermInstructions`.",
			events.SubscriptionScheduledChangeCleared: "The changes under `/scheduledNextTermInstructions`.",
			events.SubscriptionAttentionNeeded:        "The `/attentionNeeded` change (false to true).",
			events.SubscriptionUpdated:                "Every change of the subscription not reported by a more specific type of the same observation (at least one).",
			events.ManagedServiceUpdated:              "The changes of `/name` and/or `/groupName`.",
		}[in.Type]
		add("changes", "array of [Change](#change)", true, changes)
	}

	switch in.Type {
	case events.SubscriptionQuantityChanged:
		add("old", "integer", true, "Seats before.")
		add("new", "integer", true, "Seats now.")
		add("delta", "integer", true, "`new - old`: positive for an increase, negative for a decrease.")
	case events.SubscriptionStatusChanged:
		add("old", "string", true, "The status before, as Partner Center spells it (`active`, `suspended`, `expired`, `disabled`, `deleted`, ...).")
		add("new", "string", true, "The status now.")
	case events.SubscriptionAutoRenewChanged:
		add("old", "boolean", true, "autoRenewEnabled before.")
		add("new", "boolean", true, "autoRenewEnabled now.")
	case events.SubscriptionRenewed:
		add("old", "date-time", true, "The commitment end before.")
		add("new", "date-time", true, "The commitment end now.")
	case events.SubscriptionScheduledChangeSet:
		add("old", "object", false, "The instructions scheduled before, when they were replaced rather than set.")
		add("new", "object", true, "The scheduledNextTermInstructions as Partner Center sent them.")
	case events.SubscriptionScheduledChangeCleared:
		add("old", "object", true, "The instructions that were scheduled.")
	}

	if in.Resource == events.ResourceSubscription && !in.Deadline && !isRemoval(in.Type) {
		add("actor", "[Actor](#actor)", false, "Who made the change, when the activity log named someone and the change was found by the refresh that record triggered (not by the sweep).")
	}

	if in.Deadline {
		rule, ok := deadline.RuleOf(in.Type)
		if !ok {
			panic("no deadline rule fires " + string(in.Type))
		}
		docs := rule.Docs()
		add("deadline", "date-time", true, docs.Deadline)
		if rule.HasThresholds() {
			add("threshold", "duration", true, "The threshold that fired: how long before the deadline it warns (e.g. `72h`, `720h` for 30 days).")
			add("thresholdSeconds", "integer", true, "The threshold in seconds.")
			add("remaining", "duration", true, "Time left when the event fired (e.g. `71h59m`).")
			add("remainingSeconds", "integer", true, "Time left in seconds.")
		}
		if rule.CarriesQuantity() {
			add("quantity", "integer", true, docs.Quantity)
		}
		if rule.CarriesAutoRenew() {
			add("autoRenewEnabled", "boolean", true, docs.AutoRenew)
		}
		timing := "`on-time` when it fired within the grace of its threshold (and of any wider one it skipped); `first-seen-inside` when the watcher first saw the deadline after (or less than a poll cycle plus the grace before) the threshold passed, so it could not have fired earlier; `late` when the watcher knew the deadline in time but fired after its threshold (it was down) (see [timing](#deadlines-and-their-timing))."
		if docs.Timing != "" {
			timing = docs.Timing
		}
		add("timing", "string", true, timing)
		late := "`timing == \"late\"`: the watcher knew the deadline in time but was down when the threshold passed. Kept for consumers written before `timing`; watchers before it also set it for deadlines first seen inside their threshold."
		if docs.Late != "" {
			late = docs.Late
		}
		add("late", "boolean", true, late)
	}
	return fs
}

// Documentation of the shared objects' members, by JSON name. The test
// fails when the Go type gains a member this does not describe.
var objectDocs = map[string]map[string]string{
	"View": {
		"id":                           "The entity's id (for a product, without the target view).",
		"offerId":                      "Subscriptions: the offer (`product:sku:availability` for new commerce, a GUID for legacy).",
		"offerName":                    "Subscriptions: the offer's name.",
		"friendlyName":                 "Subscriptions: the name the partner gave it.",
		"productType":                  "Subscriptions and products: productType.id (`OnlineServicesNCE`, `Software`, `Azure`, ...).",
		"quantity":                     "Subscriptions: seats.",
		"unitType":                     "Subscriptions: `Licenses`, `Usage-based`, ...",
		"status":                       "Subscriptions: `active`, `suspended`, `expired`, `disabled`, `deleted`, ...",
		"autoRenewEnabled":             "Subscriptions: whether the term renews.",
		"isTrial":                      "Subscriptions: a trial.",
		"termDuration":                 "Subscriptions: ISO 8601 term (`P1M`, `P1Y`, `P3Y`).",
		"billingCycle":                 "Subscriptions: `monthly`, `annual`, `triennial`, `one_time`, ...",
		"creationDate":                 "Subscriptions: when it was created.",
		"effectiveStartDate":           "Subscriptions: when its first term started.",
		"commitmentEndDate":            "Subscriptions: the current term's end (commitmentEndDateTime when Partner Center sends it).",
		"cancellationAllowedUntilDate": "NCE subscriptions: the end of the cancellation window.",
		"partnerId":                    "Subscriptions: the MPN id of the indirect reseller, if any.",
		"parentSubscriptionId":         "Legacy add-ons: the base subscription.",
		"companyName":                  "Customers: the company name.",
		"domain":                       "Customers: the default domain.",
		"tenantId":                     "Customers: the Microsoft Entra tenant id.",
		"relationshipToPartner":        "Customers: e.g. `reseller`.",
		"allowDelegatedAccess":         "Customers: whether the partner has delegated admin access.",
		"associatedPartnerId":          "Customers: the indirect reseller's MPN id, if any.",
		"name":                         "Managed services: the service's name.",
		"groupName":                    "Managed services: its group (`Office`, `Intune`, `Azure`).",
		"title":                        "Products: the product's title.",
	},
	"Change": {
		"path": "A JSON Pointer (RFC 6901) into the entity's Partner Center JSON, e.g. `/quantity`. Keys are compared case-insensitively in their first letter (Partner Center sends both `Quantity` and `quantity`); arrays that differ are one change of the whole array.",
		"old":  "The value before, as JSON; absent when the field appeared.",
		"new":  "The value now, as JSON; absent when the field disappeared.",
	},
	"CycleSummary": {
		"number":          "The cycle number (1, 2, ...), kept across restarts.",
		"startedAt":       "When the cycle started; also the event's time and the time of every change event of the cycle.",
		"durationSeconds": "How long the cycle took (wall-clock time).",
		"customersTotal":  "Customers polled.",
		"customersOk":     "Customers polled completely.",
		"customersFailed": "Customers whose listings (some or all) failed; they are retried next cycle.",
		"customerListOk":  "Whether the customer list itself was read; if not, the known customers were polled and the list was not diffed.",
		"eventsEmitted":   "Events the cycle emitted before this one.",
		"apiRequests":     "HTTP requests sent to Partner Center, retries included.",
		"throttled":       "429 answers.",
		"retries":         "Retried requests.",
	},
	"PollFailure": {
		"consecutiveFailures": "Failed cycles in a row: the configured threshold (default 3) or a multiple of it.",
		"firstFailedAt":       "When the streak began (a cycle's start).",
		"lastError":           "The last error, on one line, without credentials.",
		"cycle":               "The cycle that reached the count.",
	},
	"Hold": {
		"resource":  "`subscription` (one customer's) or `customer` (the customer list).",
		"missing":   "How many vanished.",
		"total":     "How many were known before.",
		"share":     "missing / total.",
		"threshold": "The configured maximum share (`--mass-removal-share`).",
		"ids":       "The vanished ids (at most 100).",
		"cycle":     "The cycle that saw them vanish.",
	},
	"Truncation": {
		"path":   "A JSON Pointer into `data`, e.g. `/changes/0/new` or `/after/friendlyName`.",
		"size":   "Bytes of the original value: the UTF-8 bytes of a string, the JSON text of any other value.",
		"sha256": "The hex SHA-256 of those bytes, to compare with what Partner Center returns.",
	},
	"Actor": {
		"userPrincipalName": "The user who made it (in Partner Center, or an app acting for the user).",
		"applicationId":     "The application that made it, for app-only changes.",
		"operationType":     "The activity log's operation type, e.g. `update_subscription`, `create_order`.",
		"operationDate":     "When Partner Center recorded it.",
		"source":            "Where pcwatch learnt it: `activity-log` or `webhook`.",
	},
	"DroppedEvent": {
		"id":      "The dropped event's id (its `Nats-Msg-Id`); a republish of it would have had the same.",
		"type":    "Its type.",
		"subject": "The NATS subject it was for.",
		"entity":  "The entity it was about: `<resource>/<customerId>/<id>`.",
		"size":    "Bytes of its message, body and headers, before shrinking.",
		"limit":   "The largest message the NATS server (`max_payload`) and the stream (`max_msg_size`) accept.",
	},
}

var objectTypes = []struct {
	name string
	typ  reflect.Type
	text string
}{
	{"View", reflect.TypeFor[events.View](), "The compact view of an entity in `after` and `before`, so that a consumer rarely needs to call Partner Center. Members that do not apply to the entity's kind are absent; new members may be added."},
	{"Change", reflect.TypeFor[events.Change](), "One field-level change. Volatile fields (`/attributes/etag`, `/links`) and the inputs of the deadline events (`/refundableQuantity`, `/refundOptions`) are never reported; an absent field and an explicit `null` are the same."},
	{"CycleSummary", reflect.TypeFor[events.CycleSummary](), "`data.cycle` of [ops.cycle-completed](#iopcwatchopscycle-completed)."},
	{"PollFailure", reflect.TypeFor[events.PollFailure](), "`data.failure` of [ops.customer-poll-failed](#iopcwatchopscustomer-poll-failed)."},
	{"Hold", reflect.TypeFor[events.Hold](), "`data.hold` of [ops.mass-removal-held](#iopcwatchopsmass-removal-held)."},
	{"Truncation", reflect.TypeFor[events.Truncation](), fmt.Sprintf("One entry of `data.truncated`: a value cut from an event too large for NATS. A string keeps its first %d bytes followed by `…`; any other value (an object, an array, a number) becomes `{\"size\": <n>, \"sha256\": \"<hex>\"}`. See [Oversized events](#oversized-events).", events.ShrinkKeep)},
	{"Actor", reflect.TypeFor[events.Actor](), "`data.actor`: who made a change, as Partner Center's activity log recorded it. A change Microsoft made (a renewal, a trial conversion) names neither a user nor an application; absent members are unknown."},
	{"DroppedEvent", reflect.TypeFor[events.DroppedEvent](), "`data.dropped` of [ops.event-dropped](#iopcwatchopsevent-dropped). Strings longer than 256 bytes are cut and end in `…`."},
}

func jsonType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "date-time"
	case t == reflect.TypeFor[json.RawMessage]():
		return "any JSON"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "array of " + jsonType(t.Elem())
	}
	return t.Kind().String()
}

// natsPattern and cePattern are the documented subject patterns of a type.
func natsPattern(in events.Info) string {
	if in.Resource == events.ResourceOps {
		return "pcwatch.ops." + in.Change
	}
	p := "pcwatch.events." + string(in.Resource) + "." + in.Change + ".<customerId>"
	switch in.Resource {
	case events.ResourceSubscription:
		p += ".<subscriptionId>"
	case events.ResourceManagedService:
		p += ".<managedServiceId>"
	case events.ResourceProduct:
		p += ".<targetView>/<productId>"
	}
	return p
}

// cePattern is the CloudEvents subject pattern of a type, "" when the type
// has no subject.
func cePattern(in events.Info) string {
	switch in.Resource {
	case events.ResourceSubscription:
		return "customers/<customerId>/subscriptions/<subscriptionId>"
	case events.ResourceManagedService:
		return "customers/<customerId>/managedservices/<managedServiceId>"
	case events.ResourceProduct:
		return "customers/<customerId>/products/<targetView>/<productId>"
	}
	if in.Type == events.OpsCycleCompleted {
		return ""
	}
	return "customers/<customerId>"
}

// fillPattern puts an event's ids into a subject pattern.
func fillPattern(p string, d *events.Data, nats bool) string {
	tok := func(s string) string {
		if nats {
			return events.SubjectToken(s)
		}
		return s
	}
	r := strings.NewReplacer("<customerId>", tok(d.CustomerID), "<subscriptionId>", tok(d.SubscriptionID),
		"<managedServiceId>", tok(d.ManagedServiceID), "<targetView>/<productId>", tok(d.TargetView+"/"+d.ProductID),
		"<productId>", tok(d.ProductID))
	return r.Replace(p)
}

// anchor is GitHub's heading anchor.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

var (
	durationSeconds = regexp.MustCompile(`"durationSeconds": [0-9.e+-]+`)
	requestIDs      = regexp.MustCompile(`\[request-id [0-9a-f-]{36}, correlation-id [0-9a-f-]{36}\]`)
)

// exampleJSON pretty-prints an emitted event. The only values replaced are
// the two that vary between identical runs: a wall-clock duration and the
// random request and correlation ids inside an error message.
func exampleJSON(body []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, body, "", "  "); err != nil {
		panic(err)
	}
	s := durationSeconds.ReplaceAllString(b.String(), `"durationSeconds": 0.25`)
	return requestIDs.ReplaceAllString(s, "[request-id 00000000-0000-4000-8000-000000000001, correlation-id 00000000-0000-4000-8000-000000000002]")
}

func fmtThresholds(ds []time.Duration, days bool) string {
	var out []string
	for _, d := range ds {
		if days && d%(24*time.Hour) == 0 {
			out = append(out, fmt.Sprintf("%dd", d/(24*time.Hour)))
		} else {
			out = append(out, events.FormatDuration(d))
		}
	}
	return strings.Join(out, ", ")
}

func short(t events.Type) string { return strings.TrimPrefix(string(t), events.TypePrefix) }

// renderDoc writes docs/events.md.
func renderDoc(out *outcome, examples map[events.Type]emitted, byType map[events.Type][]emitted) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	dl := deadline.DefaultConfig()

	w("# pcwatch event catalog\n\n")
	w("<!-- Generated by `go test ./internal/catalogtest -run TestEventCatalog -update`. Do not edit: the test fails when this file differs from what it generates. -->\n\n")
	w("pcwatch publishes every change it sees in Partner Center, and every NCE deadline it computes, as a typed\n")
	w("[CloudEvent](https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md) on NATS JetStream. This page is\n")
	w("the human catalog; [`events.schema.json`](events.schema.json) is the machine one (JSON Schema 2020-12).\n\n")
	w("Both are kept true by `internal/catalogtest`: it drives the Partner Center simulator through a scripted scenario\n")
	w("in which the real poller, differ and deadline evaluator emit every type below (%d events in %d poll cycles) and the\n", len(out.records), out.cycles)
	w("real relay publishes them on NATS JetStream; it validates each event as stored in the stream against the schema, the\n")
	w("CloudEvents SDK and the rules on this page, and regenerates this page from them.\n")
	w("Every example is an event of that run, unedited except for `durationSeconds` (wall-clock time) and the random\n")
	w("request and correlation ids inside `lastError`, which differ between runs.\n\n")

	w("| Type | Summary |\n|---|---|\n")
	for _, in := range events.Catalog() {
		w("| [`%s`](#%s) | %s |\n", short(in.Type), anchor(string(in.Type)), in.Summary)
	}
	w("\n")

	w("## Envelope\n\n")
	w("Every event is a CloudEvents %s event in structured JSON mode: the whole event is the NATS message body.\n\n", events.SpecVersion)
	w("| Attribute | Value |\n|---|---|\n")
	w("| `specversion` | `%s` |\n", events.SpecVersion)
	w("| `id` | Deterministic, UUID-shaped (version 8, SHA-256): see [Event ids](#event-ids). |\n")
	w("| `source` | The partner: by default the Partner Center API URL plus `/tenants/<partner tenant id>` (`--source` overrides it). |\n")
	w("| `type` | `%s<resource>.<change>`, one of the types below. |\n", events.TypePrefix)
	w("| `subject` | `customers/<customerId>[/subscriptions/<id>\\|/managedservices/<id>\\|/products/<targetView>/<id>]`; absent on `ops.cycle-completed` and on a hold of the customer list. A product's subject names its catalog view: `products/<targetView>/<productId>`. |\n")
	w("| `time` | When pcwatch detected the change (the start of the poll cycle that saw it) or evaluated the deadline; UTC, RFC 3339. |\n")
	w("| `datacontenttype` | `%s` |\n", events.DataContentType)
	w("| `dataschema` | `%s#<type>`: the `$anchor` of the type's data schema in `events.schema.json`. |\n", events.SchemaBase)
	w("| `data` | A JSON object; its members depend on the type (below). Members may be added in later versions: ignore the ones you do not know. |\n\n")
	w("NATS headers of every message:\n\n")
	w("```\nContent-Type: %s\nNats-Msg-Id: <the event id>\n```\n\n", events.ContentType)

	w("### Event ids\n\n")
	w("An id is derived from what happened, never from when it was noticed: a SHA-256 over the source, the type, the\n")
	w("entity and the fields below, formatted as a version-8 UUID. A retried publish, a replay after a crash or a\n")
	w("second watcher that sees the same change produces the same id, and JetStream drops the copy (`Nats-Msg-Id`).\n\n")
	w("| Events | The id derives from |\n|---|---|\n")
	w("| changes (added, created, removed, updated, `subscription.*-changed`, renewed, ...) | the entity (`<resource>/<customerId>/<id>`) and its `revision` |\n")
	w("| deadlines (`subscription.*-closing`, `-closed`, `renewal-approaching`, `trial-ending`) | the entity, the `deadline` instant and the `threshold` |\n")
	w("| `ops.cycle-completed` | the cycle number |\n")
	w("| `ops.customer-poll-failed` | the customer, the start of the failure streak and its length |\n")
	w("| `ops.mass-removal-held` | the customer and the kind, and the set of vanished ids |\n")
	w("| `ops.event-dropped` | the id of the event it replaces |\n\n")
	w("Several events split from one observed change of a subscription (for example `renewed`, `term-changed` and\n")
	w("`scheduled-change-cleared` at a renewal that applied scheduled instructions) share its `revision`; their types differ.\n\n")

	w("### NATS subjects\n\n")
	w("Change and deadline events are published on `pcwatch.events.<resource>.<change>.<customerId>[.<resourceId>]`, operational\n")
	w("events on `pcwatch.ops.<change>`. `<resourceId>` is the subscription id, the managed service id, or\n")
	w("`<targetView>/<productId>` for a product; customer events have none. Characters NATS reserves (`.`, `*`, `>`,\n")
	w("whitespace) and `%%` are percent-encoded in ids (`%%2E` for `.`); GUIDs pass unchanged.\n\n")
	w("| Filter | Receives |\n|---|---|\n")
	for _, f := range out.filters {
		w("| `%s` | %s |\n", f.doc, f.means)
	}
	w("\nSubscribe to `pcwatch.events.*.*.<customerId>` and `pcwatch.events.*.*.<customerId>.>` together for everything about one customer.\n\n")

	w("### Stream\n\n")
	w("The watcher creates (or updates) the JetStream stream `%s` on `%s`: limits retention, file storage,\n", stream.Name, strings.Join(stream.Subjects, "`, `"))
	w("events kept %d days (`--stream-max-age`) and at most %d GiB (`--stream-max-bytes`), oldest discarded first, and a\n", stream.DefaultMaxAge/(24*time.Hour), stream.DefaultMaxBytes>>30)
	w("%s duplicate window for `Nats-Msg-Id`. Consumers create their own (durable) consumers on it.\n\n", events.FormatDuration(stream.DefaultDuplicates))

	w("### Delivery and order\n\n")
	w("Events are committed to the watcher's state file in the same transaction as the snapshot that caused them, and\n")
	w("an outbox relay publishes them; a record leaves the outbox only after JetStream acknowledged it. Nothing is lost,\n")
	w("and a republish is dropped by the duplicate window (at start-up the relay also checks the stream for events it\n")
	w("published but could not yet delete). Consumers should still be idempotent on the event id.\n\n")
	w("Events of one entity (one customer, subscription, managed service or product) are published in the order they\n")
	w("were detected: the relay never has two of them in flight. Events of different entities may interleave.\n\n")

	w("### Oversized events\n\n")
	w("NATS refuses a message larger than the server's `max_payload` (1 MiB by default) or the stream's `max_msg_size`,\n")
	w("headers included, and a Partner Center field can be of any size. The relay reads both limits (the stream's again\n")
	w("whenever the stream rejects a message for its size) and publishes an event that exceeds them in another form,\n")
	w("so that it never holds up the events after it:\n\n")
	w("- **Shrunk**, with the same id, type, subjects and time: the values that save the most are cut until it fits. A\n")
	w("  string keeps its first %d bytes followed by `…`; any other value (`changes[].old`/`new`, `old`/`new`) becomes\n", events.ShrinkKeep)
	w("  `{\"size\": <n>, \"sha256\": \"<hex>\"}`. `data.truncated` lists every cut ([Truncation](#truncation)). Ids, paths,\n")
	w("  numbers and times are never cut. Shrinking is deterministic, so a republish is recognised as a duplicate.\n")
	w("- **Dropped**, when even that does not fit (nothing long enough to cut: thousands of changes, or an id of a\n")
	w("  megabyte): an [ops.event-dropped](#iopcwatchopsevent-dropped) notice takes its place in the order of its\n")
	w("  entity's events and names it.\n\n")
	w("Both are logged and counted: `pcwatch_events_truncated_total` and `pcwatch_events_dropped_total`, and `watcher state`\n")
	w("shows the totals since the state file was created. The state file keeps the event as it was detected.\n\n")
	if out.shrunk != nil {
		w("In the run above a subscription's friendly name grew to 1.2 MB; its `subscription.updated` event (%d bytes as\n", out.shrunkSize)
		w("detected) was published as:\n\n")
		w("```json\n%s\n```\n\n", exampleJSON(out.shrunk.Body))
	}

	w("## How changes are detected\n\n")
	w("- **Complete listings only.** Each cycle lists the customers, then each customer's subscriptions (and managed\n")
	w("  services and products when configured). Only a complete listing is diffed; a failed or partial one is retried\n")
	w("  next cycle and never read as removals.\n")
	w("- **Baseline.** The first complete listing of the customer list, and of each customer's subscriptions, managed\n")
	w("  services and products, is a silent baseline: no added/created events for what already exists. A customer that\n")
	w("  appears later emits `customer.added`, but its own first listing is again a baseline. `--created-on-first-sighting`\n")
	w("  emits added/created events for first listings instead.\n")
	w("- **Field changes.** The raw Partner Center JSON is diffed, so fields pcwatch does not know are reported too.\n")
	w("  A subscription's changes are split into the specific types; each field change is reported by exactly one event,\n")
	w("  and `subscription.updated` gets whatever no specific type claims.\n")
	w("- **Removal needs two listings.** An entity missing from one complete listing is only marked; the removed event\n")
	w("  fires when it is missing from the next complete listing too. If it comes back in between, nothing fires. A\n")
	w("  removed customer takes its subscriptions, managed services and products with it (one `customer.removed`).\n")
	w("- **Mass-removal holds.** When more than `--mass-removal-share` (default 0.5) of a customer's subscriptions, or of\n")
	w("  all customers, vanish from one listing (with at least 4 known), no removed events are emitted:\n")
	w("  `ops.mass-removal-held` fires once, and the removed events follow only if the entities stay missing for\n")
	w("  `--hold-cycles` (default 3) complete listings. Entities that come back are simply unmarked; once the share still\n")
	w("  missing is no longer above the threshold, the hold ends and those still missing are removed at that listing.\n\n")

	w("### Deadlines and their timing\n\n")
	w("Partner Center never announces NCE deadlines; pcwatch computes them from the last listing (and, for seat\n")
	w("batches, from get-subscription-by-id) and evaluates them every `--deadline-interval` (default 1m), independently\n")
	w("of the poll cycle. Default thresholds:\n\n")
	w("| Deadline | Warned | Flag |\n|---|---|---|\n")
	for _, r := range deadline.Rules() {
		if docs := r.Docs(); docs.Window != "" {
			w("| %s | %s before | `--%s`%s |\n", docs.Window, fmtThresholds(dl.ThresholdsOf(r), docs.Days), r.Option(), docs.Flags)
		}
	}
	w("\n")
	w("Each (subscription, deadline, threshold) fires at most once, ever. When several thresholds of one deadline have\n")
	w("passed unfired (the watcher was down, or first saw the subscription inside them), only the tightest fires, and the\n")
	w("others are recorded as skipped. Nothing fires for a deadline that has already passed, except\n")
	w("`cancellation-window-closed`, once, for a window the watcher saw open.\n\n")
	w("Every deadline event says in `timing` why it fires when it does:\n\n")
	w("| `timing` | When | `late` |\n|---|---|---|\n")
	w("| `on-time` | it fires within the grace of its threshold (and of every wider threshold it skips): twice `--deadline-interval`, at least %s | false |\n", events.FormatDuration(dl.LateAfter))
	w("| `first-seen-inside` | it fires later, but the watcher first saw the deadline (the subscription, its cancellation window, the seat batch, the commitment end) only after its threshold had passed, or less than the sighting lag before (one `--interval`, its 10%% jitter and the grace: a cycle records what it lists with its start and may commit a customer up to a cycle later): it could not have fired earlier. A trial first seen 5 days before it ends fires its 7-day warning at that sighting, `first-seen-inside`, and its 1-day warning later, `on-time` | false |\n")
	w("| `late` | it fires later although the watcher knew the deadline in time: no evaluation ran when the threshold passed (the watcher was down or stalled). When a fired threshold also skips wider ones, it is late if any of them was missed so | true |\n\n")
	w("`late` is `timing == \"late\"`, kept for consumers written before `timing` (watchers before it set `late` for deadlines first\n")
	w("seen inside their threshold too). The watcher keeps when it first saw each deadline with the subscription's state; state\n")
	w("written by a watcher before that has no such time, and a deadline in it counts as first seen at the subscription's last\n")
	w("stored change: what passed before that is `first-seen-inside`, never a false `late`. On an accelerated calendar\n")
	w("(`--clock`, the demo) the grace and the sighting lag are scaled by its speed.\n\n")

	w("## Shared objects\n\n")
	for _, o := range objectTypes {
		w("### %s\n\n%s\n\n| Member | Type | Meaning |\n|---|---|---|\n", o.name, o.text)
		for i := range o.typ.NumField() {
			f := o.typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			w("| `%s` | %s | %s |\n", name, jsonType(f.Type), objectDocs[o.name][name])
		}
		w("\n")
	}

	w("## Event types\n\n")
	w("Data members marked *always* are in every event of the type (the schema requires them); the others appear when\n")
	w("they apply. `duration` is a string such as `72h`, `3h58m` or `45s`; `date-time` an RFC 3339 string.\n\n")
	res := events.Resource("")
	for _, in := range events.Catalog() {
		if in.Resource != res {
			res = in.Resource
			w("---\n\n")
		}
		e := examples[in.Type]
		w("### %s\n\n", in.Type)
		w("%s\n\n", in.Summary)
		w("| | |\n|---|---|\n")
		w("| NATS subject | `%s` |\n", natsPattern(in))
		switch p := cePattern(in); {
		case p == "":
			w("| CloudEvents subject | none |\n")
		case in.Type == events.OpsMassRemovalHeld:
			w("| CloudEvents subject | `%s` (none for a hold of the customer list) |\n", p)
		case in.Type == events.OpsEventDropped:
			w("| CloudEvents subject | `%s` (none when the dropped event was about no customer) |\n", p)
		default:
			w("| CloudEvents subject | `%s` |\n", p)
		}
		w("| dataschema | `%s#%s` |\n\n", events.SchemaBase, in.Type)
		w("%s\n\n", in.Meaning)
		w("| Data member | Type | Always | Meaning |\n|---|---|---|---|\n")
		for _, f := range typeFields(in) {
			always := ""
			if f.always {
				always = "always"
			}
			w("| `%s` | %s | %s | %s |\n", f.name, f.typ, always, f.meaning)
		}
		w("\nExample (%d emitted in the run) — %s Published on `%s` with `Nats-Msg-Id: %s`:\n\n", len(byType[in.Type]), out.examples[in.Type].how, e.rec.Subject, e.rec.ID)
		w("```json\n%s\n```\n\n", exampleJSON(e.rec.Body))
	}
	return []byte(b.String())
}
