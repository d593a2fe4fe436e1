package events

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Data is the data object of every pcwatch event. Which fields are set
// depends on the type (see Catalog and docs/events.md); absent fields are
// omitted from the JSON.
type Data struct {
	CustomerID       string `json:"customerId,omitempty"`
	CustomerName     string `json:"customerName,omitempty"`
	SubscriptionID   string `json:"subscriptionId,omitempty"`
	ManagedServiceID string `json:"managedServiceId,omitempty"`
	ProductID        string `json:"productId,omitempty"`
	TargetView       string `json:"targetView,omitempty"`
	// Revision counts the changes pcwatch has seen of this entity; it
	// increases by one per observed change and is part of the event id.
	Revision uint64 `json:"revision,omitempty"`

	After   *View    `json:"after,omitempty"`   // the entity now
	Before  *View    `json:"before,omitempty"`  // the entity as last seen (removals)
	Changes []Change `json:"changes,omitempty"` // field-level changes

	// Typed old/new values of the field a type is about (quantity: numbers,
	// status: strings, auto-renew: booleans, renewed: commitment ends,
	// scheduled changes: the instructions object).
	Old   json.RawMessage `json:"old,omitempty"`
	New   json.RawMessage `json:"new,omitempty"`
	Delta *int            `json:"delta,omitempty"` // quantity-changed: new - old

	// Deadline events.
	Deadline         *time.Time `json:"deadline,omitempty"`
	Threshold        string     `json:"threshold,omitempty"` // e.g. "72h"
	ThresholdSeconds int64      `json:"thresholdSeconds,omitempty"`
	Remaining        string     `json:"remaining,omitempty"` // e.g. "3h58m"
	RemainingSeconds *int64     `json:"remainingSeconds,omitempty"`
	Quantity         *int       `json:"quantity,omitempty"`         // refund window: seats of the batch
	AutoRenewEnabled *bool      `json:"autoRenewEnabled,omitempty"` // renewal, trial end
	// Timing says why a deadline event fires when it does: on time, first
	// seen inside its threshold, or late (see Timing).
	Timing Timing `json:"timing,omitempty"`
	// Late is timing == "late": the watcher knew the deadline in time but
	// fired after its threshold (it was down). Kept for consumers written
	// before timing; watchers before timing also set it for deadlines first
	// seen inside their threshold.
	Late *bool `json:"late,omitempty"`

	Cycle   *CycleSummary `json:"cycle,omitempty"`
	Failure *PollFailure  `json:"failure,omitempty"`
	Hold    *Hold         `json:"hold,omitempty"`
	Dropped *DroppedEvent `json:"dropped,omitempty"`

	// Actor is who made the change, when pcwatch read the entity again
	// because the activity log (or a webhook) said it changed and the
	// record named someone.
	Actor *Actor `json:"actor,omitempty"`

	// Truncated is set only on an event that was larger than NATS accepts
	// and was shrunk by the relay (see ShrinkEvent): one entry per value
	// that was cut or replaced, in document order.
	Truncated []Truncation `json:"truncated,omitempty"`
}

// Truncation describes one value ShrinkEvent cut from an oversized event.
// A string keeps its first bytes followed by "…"; any other value (an
// object, an array, a number) is replaced by the object {"size": n,
// "sha256": "..."}. Size and SHA256 are those of the original: the UTF-8
// bytes of a string, the JSON text of any other value.
type Truncation struct {
	Path   string `json:"path"`   // JSON Pointer (RFC 6901) into data, e.g. /changes/0/new
	Size   int    `json:"size"`   // bytes of the original value
	SHA256 string `json:"sha256"` // hex SHA-256 of those bytes
}

// DroppedEvent is the data of ops.event-dropped: the event that could not
// be published because even shrunk it exceeded the largest message NATS
// accepts. Strings longer than 256 bytes are cut (ending in "…").
type DroppedEvent struct {
	ID      string `json:"id"`      // the dropped event's id (its Nats-Msg-Id)
	Type    Type   `json:"type"`    // its type
	Subject string `json:"subject"` // the NATS subject it was for
	Entity  string `json:"entity"`  // the entity it was about: <resource>/<customerId>/<id>
	Size    int    `json:"size"`    // bytes of its message (body and headers), unshrunk
	Limit   int    `json:"limit"`   // the largest message the server and the stream accept
}

// Change is one field-level change. Path is a JSON Pointer (RFC 6901) into
// the entity's Partner Center JSON. Old is absent when the field appeared,
// New when it disappeared.
type Change struct {
	Path string          `json:"path"`
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// View is the compact view of an entity carried in after/before, so that a
// consumer rarely needs to call Partner Center. Fields that do not apply to
// the entity's kind are omitted.
type View struct {
	ID string `json:"id"`

	// Subscriptions.
	OfferID                      string     `json:"offerId,omitempty"`
	OfferName                    string     `json:"offerName,omitempty"`
	FriendlyName                 string     `json:"friendlyName,omitempty"`
	ProductType                  string     `json:"productType,omitempty"`
	Quantity                     *int       `json:"quantity,omitempty"`
	UnitType                     string     `json:"unitType,omitempty"`
	Status                       string     `json:"status,omitempty"`
	AutoRenewEnabled             *bool      `json:"autoRenewEnabled,omitempty"`
	IsTrial                      *bool      `json:"isTrial,omitempty"`
	TermDuration                 string     `json:"termDuration,omitempty"`
	BillingCycle                 string     `json:"billingCycle,omitempty"`
	CreationDate                 *time.Time `json:"creationDate,omitempty"`
	EffectiveStartDate           *time.Time `json:"effectiveStartDate,omitempty"`
	CommitmentEndDate            *time.Time `json:"commitmentEndDate,omitempty"`
	CancellationAllowedUntilDate *time.Time `json:"cancellationAllowedUntilDate,omitempty"`
	PartnerID                    string     `json:"partnerId,omitempty"`
	ParentSubscriptionID         string     `json:"parentSubscriptionId,omitempty"`

	// Customers.
	CompanyName           string `json:"companyName,omitempty"`
	Domain                string `json:"domain,omitempty"`
	TenantID              string `json:"tenantId,omitempty"`
	RelationshipToPartner string `json:"relationshipToPartner,omitempty"`
	AllowDelegatedAccess  *bool  `json:"allowDelegatedAccess,omitempty"`
	AssociatedPartnerID   string `json:"associatedPartnerId,omitempty"`

	// Managed services.
	Name      string `json:"name,omitempty"`
	GroupName string `json:"groupName,omitempty"`

	// Products.
	Title string `json:"title,omitempty"`
}

// CycleSummary is the data of ops.cycle-completed.
type CycleSummary struct {
	Number          uint64    `json:"number"`
	StartedAt       time.Time `json:"startedAt"`
	DurationSeconds float64   `json:"durationSeconds"`
	CustomersTotal  int       `json:"customersTotal"`
	CustomersOK     int       `json:"customersOk"`
	CustomersFailed int       `json:"customersFailed"`
	CustomerListOK  bool      `json:"customerListOk"`
	EventsEmitted   int       `json:"eventsEmitted"`
	APIRequests     uint64    `json:"apiRequests"`
	Throttled       uint64    `json:"throttled"`
	Retries         uint64    `json:"retries"`
}

// PollFailure is the data of ops.customer-poll-failed.
type PollFailure struct {
	ConsecutiveFailures int       `json:"consecutiveFailures"`
	FirstFailedAt       time.Time `json:"firstFailedAt"`
	LastError           string    `json:"lastError"`
	Cycle               uint64    `json:"cycle"`
}

// Hold is the data of ops.mass-removal-held.
type Hold struct {
	Resource  string   `json:"resource"`  // subscription, customer, ...
	Missing   int      `json:"missing"`   // entities that vanished
	Total     int      `json:"total"`     // entities known before
	Share     float64  `json:"share"`     // missing / total
	Threshold float64  `json:"threshold"` // configured maximum share
	IDs       []string `json:"ids"`       // the vanished ids (at most 100)
	Cycle     uint64   `json:"cycle"`
}

// JSONValue encodes v for Old/New; it panics only on values that cannot be
// JSON, which would be a programming error.
func JSONValue(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("events.JSONValue(%T): %v", v, err))
	}
	return b
}

// entities says, for each resource whose events name an entity of a
// customer, which data member holds the entity's id and how the
// CloudEvents subject names it. Customer events name only the customer
// (customerId); operational events no entity.
var entities = []struct {
	resource Resource
	path     string             // CloudEvents subject segment after customers/<customerId>/
	own      func(*Data) string // the member naming the entity; "" when the data names none
	id       func(*Data) string // its id within its customer, as subjects and entity keys show it
	set      func(d *Data, id string)
}{
	{ResourceSubscription, "subscriptions",
		func(d *Data) string { return d.SubscriptionID }, nil,
		func(d *Data, id string) { d.SubscriptionID = id }},
	{ResourceManagedService, "managedservices",
		func(d *Data) string { return d.ManagedServiceID }, nil,
		func(d *Data, id string) { d.ManagedServiceID = id }},
	// A product's id within its customer is <targetView>/<productId>.
	{ResourceProduct, "products",
		func(d *Data) string { return d.ProductID },
		func(d *Data) string {
			if d.TargetView != "" {
				return d.TargetView + "/" + d.ProductID
			}
			return d.ProductID
		},
		func(d *Data, id string) { d.TargetView, d.ProductID, _ = strings.Cut(id, "/") }},
}

// EntityID returns the id, within its customer, of the entity of resource
// r that d is about ("<targetView>/<productId>" for a product), or "" for
// a customer or operational event.
func (d *Data) EntityID(r Resource) string {
	for _, e := range entities {
		if e.resource == r {
			if e.id != nil {
				return e.id(d)
			}
			return e.own(d)
		}
	}
	return ""
}

// SetEntityID sets the data member that names the entity of resource r
// (for a product, targetView and productId from "<targetView>/<productId>").
// It sets nothing for a resource whose events name no entity beyond the
// customer.
func (d *Data) SetEntityID(r Resource, id string) {
	for _, e := range entities {
		if e.resource == r {
			e.set(d, id)
			return
		}
	}
}

// Named returns the resource of the entity, beyond its customer, that d
// names, and that entity's own id (a product's without its target view);
// "" and "" when it names none. It reads the data alone, so it also works
// for event types this build does not know.
func (d *Data) Named() (Resource, string) {
	for _, e := range entities {
		if id := e.own(d); id != "" {
			return e.resource, id
		}
	}
	return "", ""
}

// NATSSubject returns the subject an event is published on:
// pcwatch.events.<resource>.<change>.<customerId>[.<resourceId>] and
// pcwatch.ops.<change> for operational events. Ids are escaped with
// SubjectToken.
func NATSSubject(info Info, d *Data) string {
	if info.Resource == ResourceOps {
		return "pcwatch.ops." + info.Change
	}
	s := "pcwatch.events." + string(info.Resource) + "." + info.Change + "." + SubjectToken(d.CustomerID)
	if id := d.EntityID(info.Resource); id != "" {
		s += "." + SubjectToken(id)
	}
	return s
}

// SubjectToken makes an id safe as one NATS subject token: characters NATS
// reserves ('.', '*', '>', whitespace) and '%' itself are percent-encoded, so
// the mapping is reversible and GUIDs pass unchanged.
func SubjectToken(id string) string {
	if id == "" {
		return "_"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c == '.' || c == '*' || c == '>' || c == '%' || c <= ' ' || c == 0x7f:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// CESubject returns the CloudEvents subject:
// customers/<id>[/subscriptions/<id>|/managedservices/<id>|/products/<targetView>/<id>].
func CESubject(d *Data) string {
	if d.CustomerID == "" {
		return ""
	}
	s := "customers/" + d.CustomerID
	for _, e := range entities {
		if e.own(d) != "" {
			return s + "/" + e.path + "/" + d.EntityID(e.resource)
		}
	}
	return s
}

// EntityKey identifies the entity an event is about; the relay never has
// two events of one entity in flight, which keeps their order.
func EntityKey(r Resource, d *Data) string {
	if r == ResourceOps {
		return "ops/" + d.CustomerID
	}
	return EntityOf(r, d.CustomerID, d.EntityID(r))
}

// EntityOf names the entity of resource r with id (within its customer)
// of customer customerID: <resource>/<customerId>/<id>. Event ids derive
// from it (IDKey.Entity), and the relay orders events by it.
func EntityOf(r Resource, customerID, id string) string {
	return string(r) + "/" + customerID + "/" + id
}

// IDKey is what an event id is derived from: what happened, never when it
// was noticed. Change events use the entity revision; deadline events the
// deadline instant and threshold; operational events a cycle number or
// streak.
type IDKey struct {
	Source    string // set by New
	Type      Type   // set by New
	Entity    string // e.g. "subscription/<customer>/<id>"
	Revision  uint64
	Deadline  time.Time
	Threshold time.Duration
	Extra     string
}

// ID returns the deterministic event id, formatted as a UUID (version 8,
// name-based with SHA-256).
func (k IDKey) ID() string {
	h := sha256.New()
	for _, s := range []string{k.Source, string(k.Type), k.Entity, strconv.FormatUint(k.Revision, 10),
		strconv.FormatInt(k.Deadline.UnixNano(), 10), strconv.FormatInt(int64(k.Threshold), 10), k.Extra} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var b [32]byte
	h.Sum(b[:0])
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// FormatDuration renders a threshold or remaining time compactly: "72h",
// "720h" (30 days), "3h58m", "45s". Durations of an hour or more are
// rounded to the minute.
func FormatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	h, m, s := int64(d/time.Hour), int64(d%time.Hour/time.Minute), int64(d%time.Minute/time.Second)
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// Actor is who made a change, as Partner Center's activity log (or a
// webhook callback) recorded it. Partner Center names a user for changes
// made in Partner Center or by an app acting for a user, an application
// for app-only changes, and neither for changes Microsoft made (renewals,
// trial conversions by the fulfilment service).
type Actor struct {
	UserPrincipalName string    `json:"userPrincipalName,omitempty"`
	ApplicationID     string    `json:"applicationId,omitempty"`
	OperationType     string    `json:"operationType,omitempty"` // e.g. update_subscription
	OperationDate     time.Time `json:"operationDate,omitzero"`
	// Source is where pcwatch learnt it: "activity-log" or "webhook".
	Source string `json:"source,omitempty"`
}

// Timing is data.timing of a deadline event: why it fires when it does.
type Timing string

// The timings. A deadline event fired within the watcher's grace
// (--deadline-interval based, 5 minutes at least) of its threshold is
// on-time. One fired later is first-seen-inside when the watcher first saw
// the deadline (the subscription, its window, its seat batch or its
// commitment end) only after, or less than one poll cycle plus the grace
// before, the threshold was crossed: it could not have fired earlier. It
// is late when the watcher knew the deadline in time and still fired after
// its threshold (no evaluation ran: the watcher was down or stalled).
const (
	TimingOnTime          Timing = "on-time"
	TimingFirstSeenInside Timing = "first-seen-inside"
	TimingLate            Timing = "late"
)

// Timings lists the timings, in documentation order.
func Timings() []Timing { return []Timing{TimingOnTime, TimingFirstSeenInside, TimingLate} }

// Valid reports whether t is one of the timings.
func (t Timing) Valid() bool {
	return t == TimingOnTime || t == TimingFirstSeenInside || t == TimingLate
}
