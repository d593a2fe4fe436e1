// Package events defines pcwatch's public API: the catalog of CloudEvents
// it publishes, their envelope, ids and data. It knows nothing of
// transport: internal/relay carries events from the watcher's bbolt outbox
// onto NATS JetStream (internal/stream), internal/notify takes them off it.
//
// Envelope: CloudEvents 1.0, structured JSON mode, carried as the NATS
// message body with Content-Type application/cloudevents+json and
// Nats-Msg-Id set to the event id. Ids are deterministic (see ID), so a
// retry, a replay or a second watcher that sees the same change produces the
// same id and JetStream's duplicate window drops the copy.
//
// docs/events.md is the human catalog; docs/events.schema.json the machine
// one. Both are checked against the code by tests.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CloudEvents attributes pcwatch sets.
const (
	SpecVersion     = "1.0"
	DataContentType = "application/json"
	// ContentType is the NATS Content-Type header of a structured-mode event.
	ContentType = "application/cloudevents+json"
	// SchemaBase prefixes dataschema; the fragment names the type.
	SchemaBase = "https://pcwatch.io/schemas/events/v1"
)

// Event is a CloudEvent in structured JSON mode. Data holds the type's data
// object (see Data) already encoded.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            Type            `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Errors of this package. Decode returns the first two; ShrinkEvent
// ErrEventTooLarge.
var (
	ErrNotCloudEvent   = errors.New("not a pcwatch CloudEvent")
	ErrUnsupportedSpec = errors.New("unsupported CloudEvents specversion")
	// ErrEventTooLarge: the event exceeds the size limit even with every
	// value ShrinkEvent may cut cut.
	ErrEventTooLarge = errors.New("event too large even when shrunk")
)

// Decode reads a structured-mode CloudEvent as the notifier receives it and
// checks the attributes pcwatch relies on. Data is not interpreted; use
// DecodeData.
func Decode(b []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotCloudEvent, err)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return &e, nil
}

// check checks the attributes pcwatch relies on.
func (e *Event) check() error {
	switch {
	case e.SpecVersion != SpecVersion:
		return fmt.Errorf("%w %q (want %s)", ErrUnsupportedSpec, e.SpecVersion, SpecVersion)
	case e.ID == "" || e.Source == "" || e.Type == "":
		return fmt.Errorf("%w: id, source and type are required", ErrNotCloudEvent)
	case len(e.Data) == 0 || e.Data[0] != '{':
		return fmt.Errorf("%w: data must be a JSON object", ErrNotCloudEvent)
	}
	return nil
}

// DecodeData reads the event's data object.
func (e *Event) DecodeData() (*Data, error) {
	var d Data
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, fmt.Errorf("event %s (%s): data: %w", e.ID, e.Type, err)
	}
	return &d, nil
}

// Envelope is an event ready for the outbox: the encoded CloudEvent and the
// NATS subject it is published on.
type Envelope struct {
	ID      string // == the CloudEvent id and the Nats-Msg-Id
	Subject string // NATS subject
	Entity  string // ordering key: events of one entity are published in order
	Body    []byte // the CloudEvent JSON
}

// New builds the CloudEvent for data of type t, derives its id from key (see
// ID) and returns it ready for the outbox. source identifies the partner
// (see Source); at is the detection instant.
func New(source string, t Type, key IDKey, at time.Time, d *Data) (Envelope, *Event, error) {
	info, ok := Lookup(t)
	if !ok {
		return Envelope{}, nil, fmt.Errorf("unknown event type %q", t)
	}
	if d.CustomerID == "" && info.Resource != ResourceOps {
		return Envelope{}, nil, fmt.Errorf("event %s: customerId is required", t)
	}
	data, err := json.Marshal(d)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("event %s: encoding data: %w", t, err)
	}
	key.Source, key.Type = source, t
	ev := &Event{
		SpecVersion:     SpecVersion,
		ID:              key.ID(),
		Source:          source,
		Type:            t,
		Subject:         CESubject(d),
		Time:            at.UTC(),
		DataContentType: DataContentType,
		DataSchema:      SchemaBase + "#" + string(t),
		Data:            data,
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("event %s: encoding envelope: %w", t, err)
	}
	return Envelope{ID: ev.ID, Subject: NATSSubject(info, d), Entity: EntityKey(info.Resource, d), Body: body}, ev, nil
}
