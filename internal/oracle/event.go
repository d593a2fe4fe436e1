package oracle

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// Event is one event as a consumer sees it: the CloudEvent, its decoded
// data and, when it was read from JetStream, its stream sequence.
type Event struct {
	Seq uint64 // stream sequence; 0 when the event did not come from a stream
	*events.Event
	Data *events.Data
	Info events.Info
}

// Decode reads a CloudEvent body (a NATS message or an outbox record).
func Decode(seq uint64, body []byte) (Event, error) {
	ev, err := events.Decode(body)
	if err != nil {
		return Event{}, fmt.Errorf("stream seq %d: %w", seq, err)
	}
	return FromEvent(seq, ev)
}

// FromEvent wraps an already decoded CloudEvent.
func FromEvent(seq uint64, ev *events.Event) (Event, error) {
	d, err := ev.DecodeData()
	if err != nil {
		return Event{}, fmt.Errorf("stream seq %d: %w", seq, err)
	}
	info, ok := events.Lookup(ev.Type)
	if !ok {
		return Event{}, fmt.Errorf("stream seq %d: event %s has unknown type %q", seq, ev.ID, ev.Type)
	}
	return Event{Seq: seq, Event: ev, Data: d, Info: info}, nil
}

// Short is the type without the io.pcwatch. prefix.
func (e Event) Short() string { return strings.TrimPrefix(string(e.Type), events.TypePrefix) }

// String names the event the way every problem does: type, subject, id,
// revision, detection time and stream sequence.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Short())
	if e.Subject != "" {
		b.WriteString(" " + e.Subject)
	}
	fmt.Fprintf(&b, " (id %s", e.ID)
	if e.Data != nil && e.Data.Revision > 0 {
		fmt.Fprintf(&b, ", revision %d", e.Data.Revision)
	}
	if e.Data != nil && e.Data.Deadline != nil {
		fmt.Fprintf(&b, ", deadline %s", e.Data.Deadline.UTC().Format(time.RFC3339))
		if e.Data.Threshold != "" {
			fmt.Fprintf(&b, ", threshold %s", e.Data.Threshold)
		}
		switch {
		case e.Data.Timing != "" && e.Data.Timing != events.TimingOnTime:
			b.WriteString(", " + string(e.Data.Timing))
		case e.Data.Timing == "" && e.Data.Late != nil && *e.Data.Late:
			b.WriteString(", late")
		}
	}
	fmt.Fprintf(&b, ", time %s", e.Time.UTC().Format(time.RFC3339))
	if e.Seq > 0 {
		fmt.Fprintf(&b, ", stream seq %d", e.Seq)
	}
	b.WriteString(")")
	return b.String()
}

// IsDeadline reports a deadline event (closing, closed, renewal, trial).
func (e Event) IsDeadline() bool { return e.Info.Deadline }

// IsOps reports an operational event.
func (e Event) IsOps() bool { return e.Info.Resource == events.ResourceOps }

// IsChange reports a change event: it carries a revision of an entity.
func (e Event) IsChange() bool { return !e.IsOps() && !e.IsDeadline() }

// Kind is the kind of an entity.
type Kind string

// Entity kinds.
const (
	KindCustomer       Kind = "customer"
	KindSubscription   Kind = "subscription"
	KindManagedService Kind = "managed service"
	KindProduct        Kind = "product"
)

// Entity identifies a customer, subscription, managed service or product.
type Entity struct {
	Kind     Kind
	Customer string
	ID       string // empty for a customer
}

func (en Entity) String() string {
	if en.Kind == KindCustomer {
		return "customer " + en.Customer
	}
	return string(en.Kind) + " " + en.Customer + "/" + en.ID
}

// CustomerEntity returns the entity of a customer.
func CustomerEntity(id string) Entity { return Entity{Kind: KindCustomer, Customer: id} }

// SubscriptionEntity returns the entity of a subscription.
func SubscriptionEntity(customer, id string) Entity {
	return Entity{Kind: KindSubscription, Customer: customer, ID: id}
}

// ServiceEntity returns the entity of a managed service.
func ServiceEntity(customer, id string) Entity {
	return Entity{Kind: KindManagedService, Customer: customer, ID: id}
}

// EntityOf returns the entity an event is about; false for operational
// events.
func EntityOf(e Event) (Entity, bool) {
	d := e.Data
	switch e.Info.Resource {
	case events.ResourceCustomer:
		return CustomerEntity(d.CustomerID), true
	case events.ResourceSubscription:
		return SubscriptionEntity(d.CustomerID, d.SubscriptionID), true
	case events.ResourceManagedService:
		return ServiceEntity(d.CustomerID, d.ManagedServiceID), true
	case events.ResourceProduct:
		return Entity{Kind: KindProduct, Customer: d.CustomerID, ID: d.TargetView + "/" + d.ProductID}, true
	}
	return Entity{}, false
}

// Cycle is one ops.cycle-completed summary.
type Cycle struct {
	Number          uint64
	StartedAt       time.Time
	Duration        time.Duration
	CustomersFailed int
	CustomerListOK  bool
	EventID         string
}

// Complete reports a cycle in which the customer list and every customer
// were polled.
func (c Cycle) Complete() bool { return c.CustomerListOK && c.CustomersFailed == 0 }

// Cycles are the completed cycles of a run, ordered by start.
type Cycles []Cycle

// CyclesOf extracts the ops.cycle-completed summaries of evs.
func CyclesOf(evs []Event) Cycles {
	var cs Cycles
	for _, e := range evs {
		if e.Type != events.OpsCycleCompleted || e.Data.Cycle == nil {
			continue
		}
		c := e.Data.Cycle
		cs = append(cs, Cycle{Number: c.Number, StartedAt: c.StartedAt, Duration: time.Duration(c.DurationSeconds * float64(time.Second)),
			CustomersFailed: c.CustomersFailed, CustomerListOK: c.CustomerListOK, EventID: e.ID})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].StartedAt.Before(cs[j].StartedAt) })
	return cs
}

// NextStart returns the start of the first completed cycle that started
// after t. A listing done by the cycle that started at t (the detection
// time of its events) happened before that instant: cycles of one watcher
// run one after another, and a restarted watcher starts after the one it
// replaces died. ok is false when no cycle started after t.
func (cs Cycles) NextStart(t time.Time) (time.Time, bool) {
	i := sort.Search(len(cs), func(i int) bool { return cs[i].StartedAt.After(t) })
	if i == len(cs) {
		return time.Time{}, false
	}
	return cs[i].StartedAt, true
}
