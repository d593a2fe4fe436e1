// Package resource describes each kind of Partner Center entity pcwatch
// watches, in one descriptor per kind (see kinds.go): how the state file
// stores it, how events name it, how its compact view is built, how it is
// listed and scoped, and how it appears in --resources. Code that handles
// entities asks the descriptor instead of switching over kinds, so a new
// kind is its descriptor, its client endpoint (and model), its simulator
// part and its docs.
//
// The descriptors are built once and never change; they are compared by
// identity (*Kind). The package depends only on the event contract
// (internal/events) and the Partner Center models and client
// (internal/partnercenter); internal/state and everything above it import
// it.
package resource

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/pcwatch/pcwatch/internal/events"
)

// Kind describes one kind of watched entity. Its fields are read through
// its methods; the kinds are the package's variables (Customers,
// Subscriptions, ...), listed by All.
type Kind struct {
	name   string // storage name; see Name
	bucket string
	noun   string // in prose: "subscription"
	plural string // "subscriptions"
	count  string // its member in /api/state, camelCase
	option string // --resources name; "" for customers
	// defaultOn: polled when --resources is not given; inDemo: the demo
	// polls it.
	defaultOn, inDemo bool
	parent            *Kind

	resource                events.Resource
	added, removed, updated events.Type
	holdsMassRemoval        bool
	byTargetView            bool
	byReseller              bool

	// list lists the entities of one customer (of the partner, for a
	// kind without parent) within scope.
	list func(ctx context.Context, k *Kind, c Client, customerID string, s Scope) ([]Entity, error)
	// decode decodes a stored entity's JSON into its model.
	decode func(raw []byte) (any, error)
	// id is a model's own id (a product's without its target view).
	id func(model any) string
	// view builds the compact view of a model.
	view func(model any) events.View
	// changed, when set, splits a change of an entity into the kind's
	// typed change events (the rest goes to its updated type).
	changed func(old, cur any, changes []events.Change) []ChangeEvent

	decodes atomic.Uint64 // entities of item listings decoded (Decodes)
}

// Name is the kind's storage name ("subscription"; lower case, words run
// together): the prefix of its pending, tombstone and baseline keys in the
// state file, and how errors and logs name it. State files hold it: it
// never changes.
func (k *Kind) Name() string { return k.name }

// String is Name.
func (k *Kind) String() string { return k.name }

// Bucket is the state file's bucket of the kind's snapshots. State files
// hold it: it never changes.
func (k *Kind) Bucket() string { return k.bucket }

// Noun names one entity of the kind in prose ("subscription"; words apart);
// Plural several ("subscriptions").
func (k *Kind) Noun() string   { return k.noun }
func (k *Kind) Plural() string { return k.plural }

// Count is the kind's member in the record counts of /api/state and
// `watcher state --format json` ("subscriptions"; camelCase).
func (k *Kind) Count() string { return k.count }

// Option is the kind's name in --resources ("subscriptions"; lower case,
// words run together); "" for a kind that is always listed (customers).
func (k *Kind) Option() string { return k.option }

// DefaultOn reports whether the kind is polled when --resources is not
// given.
func (k *Kind) DefaultOn() bool { return k.defaultOn }

// InDemo reports whether `watcher demo` polls the kind.
func (k *Kind) InDemo() bool { return k.inDemo }

// Parent is the kind whose entities own this kind's (customers own
// every other kind today); nil for customers.
// Entities of a kind with a parent are listed per parent and stored under
// "<parentId>/<id>", and go when their parent goes.
func (k *Kind) Parent() *Kind { return k.parent }

// Resource is the resource of the kind's events (the part of their type
// after io.pcwatch.).
func (k *Kind) Resource() events.Resource { return k.resource }

// Added, Removed and Updated are the types of the events of an entity
// appearing, disappearing and changing. Updated is "" for a kind whose
// changes update the snapshot without an event (products).
func (k *Kind) Added() events.Type   { return k.added }
func (k *Kind) Removed() events.Type { return k.removed }
func (k *Kind) Updated() events.Type { return k.updated }

// HoldsMassRemoval reports whether removals are held when more than
// --mass-removal-share of the known entities vanish from one listing
// (ops.mass-removal-held).
func (k *Kind) HoldsMassRemoval() bool { return k.holdsMassRemoval }

// ByTargetView reports whether the kind is listed per catalog target view
// (--target-views): each entity's Scope is its view and its id
// "<targetView>/<id>", each view of a customer has its own baseline, and
// the entities of views no longer listed are out of scope.
func (k *Kind) ByTargetView() bool { return k.byTargetView }

// ByReseller reports whether --mpn-id restricts the kind's listing to the
// given resellers; the stored entities of other resellers are then out of
// scope. The reseller of a stored entity is in its deadline facts.
func (k *Kind) ByReseller() bool { return k.byReseller }

// Key is the state file's key of entity id of parent parentID:
// "<parentId>/<id>", or id for a kind without parent.
func (k *Kind) Key(parentID, id string) string {
	if k.parent == nil {
		return id
	}
	return parentID + "/" + id
}

// EntityKey names entity id of customer customerID as event ids and the
// relay do: <resource>/<customerId>/<id> (see events.EntityOf).
func (k *Kind) EntityKey(customerID, id string) string {
	return events.EntityOf(k.resource, customerID, id)
}

// Identify sets the members of d that name entity id of customer
// customerID: customerId and the kind's own id member.
func (k *Kind) Identify(d *events.Data, customerID, id string) {
	d.CustomerID = customerID
	d.SetEntityID(k.resource, id)
}

// ViewOf decodes a stored entity's JSON into its compact view (for
// removals and deadline events). JSON that does not decode gives a view
// with the id only.
func (k *Kind) ViewOf(id string, raw []byte) events.View {
	m, err := k.decode(raw)
	if err != nil {
		return events.View{ID: id}
	}
	return k.view(m)
}

// List lists the entities of the kind of one customer (customerID is
// ignored for a kind without parent) within scope, completely: a failed
// page fails the listing.
func (k *Kind) List(ctx context.Context, c Client, customerID string, s Scope) ([]Entity, error) {
	return k.list(ctx, k, c, customerID, s)
}

// ChangeEvent is one event a change of an entity produces: its type, the
// field changes it reports and, for typed events, the old and new values
// of the field it is about.
type ChangeEvent struct {
	Type     events.Type
	Changes  []events.Change
	Old, New json.RawMessage
	Delta    *int // quantity-changed: new - old
}

// Changed returns the events a change of entity cur produces, given its
// stored JSON oldRaw and its field changes (at least one). A kind with typed
// change events (subscriptions) splits the changes into them, each change
// reported once and the rest by its updated type; any other kind reports
// them all by its updated type, or, without one, produces none. A stored
// JSON that does not decode is an error.
func (k *Kind) Changed(oldRaw []byte, cur *Entity, changes []events.Change) ([]ChangeEvent, error) {
	if k.changed == nil {
		if k.updated == "" {
			return nil, nil
		}
		return []ChangeEvent{{Type: k.updated, Changes: changes}}, nil
	}
	if err := cur.Decode(); err != nil {
		return nil, err
	}
	old, err := k.decode(oldRaw)
	if err != nil {
		return nil, fmt.Errorf("stored %s %s: %w", k.noun, cur.ID, err)
	}
	return k.changed(old, cur.Model, changes), nil
}

// Decodes is the number of entities of the kind decoded from item
// listings (Entity.Decode) since the process started: with the differ
// comparing raw bytes first, it grows by the new and changed entities
// only. Tests read it; it is cheap enough to stay in production.
func (k *Kind) Decodes() uint64 { return k.decodes.Load() }

// Scope is what the configuration restricts listings to.
type Scope struct {
	TargetViews []string // catalog views of the kinds listed by target view
	MPNIDs      []string // resellers of the kinds listed by reseller; empty: all
}

// Entity is one entity of a fresh, complete listing.
//
// Entities of an item listing (the kinds' List with a client that is an
// ItemLister, or ItemEntities) start undecoded: only Raw (and Scope) are
// set, ID is "" and Model nil until Decode. The differ compares Raw with
// the stored record first and decodes only the entities that are new or
// changed; for an unchanged one it sets ID from the stored record (the
// same bytes decode to the same id) and leaves Model nil. View and the
// kind's Changed decode on demand.
type Entity struct {
	Kind *Kind
	// ID is the entity's id within its parent ("<targetView>/<id>" for a
	// kind listed by target view); a customer's is its customer id.
	ID string
	// Scope is the target view it was listed in, for a kind listed by
	// target view; "" otherwise.
	Scope string
	Raw   []byte // as received
	// Model is the decoded Partner Center object (*partnercenter.Subscription,
	// ...), which the kind's view and typed change events read; nil until
	// Decode for an entity of an item listing.
	Model any

	view  *events.View
	lazy  bool // of an item listing, not decoded yet
	index int  // its position in its item listing
}

// Decoded reports whether e's Model is set: always for the entities of
// typed listings, after Decode for those of item listings.
func (e *Entity) Decoded() bool { return !e.lazy }

// Decode decodes the raw JSON of an entity of an item listing into its
// model and sets Model and ID (from the model; "<targetView>/<id>" for a
// kind listed by target view). It does nothing for an entity already
// decoded. JSON that does not decode into the model (a property of the
// wrong type) is a *DecodeError: the listing it belongs to is as one the
// client could not decode, and must not be diffed.
func (e *Entity) Decode() error {
	if !e.lazy {
		return nil
	}
	m, err := e.Kind.decode(e.Raw)
	if err != nil {
		return &DecodeError{Kind: e.Kind, Scope: e.Scope, Index: e.index, Err: err}
	}
	e.Kind.decodes.Add(1)
	e.Model, e.lazy = m, false
	e.ID = e.Kind.id(m)
	if e.Kind.byTargetView {
		e.ID = e.Scope + "/" + e.ID
	}
	return nil
}

// View returns the entity's compact view, building it on first use (most
// entities of a listing are unchanged and never need one). An entity of an
// item listing is decoded first; one that does not decode has a view with
// its id only.
func (e *Entity) View() events.View {
	if e.view == nil {
		if e.Decode() != nil {
			return events.View{ID: e.ID}
		}
		v := e.Kind.view(e.Model)
		e.view = &v
	}
	return *e.view
}

// DecodeError is an entity of an item listing whose JSON does not decode
// into its kind's model. Like a listing the client could not decode, the
// listing it belongs to is not diffed (the differ returns this error
// before anything is committed) and is read again next cycle.
type DecodeError struct {
	Kind  *Kind
	Scope string // target view, for a kind listed by target view
	Index int    // position in its listing, from 0
	Err   error
}

func (e *DecodeError) Error() string {
	where := ""
	if e.Scope != "" {
		where = " (" + e.Scope + ")"
	}
	return fmt.Sprintf("%s listing%s: item %d does not decode as a %s: %v; the listing is not diffed and is read again next cycle",
		e.Kind.plural, where, e.Index, e.Kind.noun, e.Err)
}

// Unwrap returns the decoding error.
func (e *DecodeError) Unwrap() error { return e.Err }

// ItemEntities wraps the items of an item listing of kind k (raw JSON, in
// listing order; scope is their target view for a kind listed by target
// view, else "") as undecoded entities. The items are not copied.
func ItemEntities(k *Kind, scope string, items []json.RawMessage) []Entity {
	out := make([]Entity, len(items))
	for i, raw := range items {
		out[i] = Entity{Kind: k, Scope: scope, Raw: raw, lazy: true, index: i}
	}
	return out
}

// All returns every kind, parents first, in the order listings are polled
// and documented.
func All() []*Kind { return slices.Clone(all) }

// ByOption returns the kind named name in --resources (case-insensitive).
func ByOption(name string) (*Kind, bool) {
	for _, k := range all {
		if k.option != "" && strings.EqualFold(k.option, name) {
			return k, true
		}
	}
	return nil, false
}

// Options returns the --resources names of the kinds that have one, in
// order.
func Options() []string {
	var out []string
	for _, k := range all {
		if k.option != "" {
			out = append(out, k.option)
		}
	}
	return out
}

// ByResource returns the kind whose events have resource r.
func ByResource(r events.Resource) (*Kind, bool) {
	for _, k := range all {
		if k.resource == r {
			return k, true
		}
	}
	return nil, false
}

// decodeAs decodes raw JSON into a new T (its UnmarshalJSON keeps the raw
// bytes).
func decodeAs[T any](raw []byte) (any, error) {
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, err
	}
	return v, nil
}

// idAs adapts a typed id reader to the descriptor's.
func idAs[T any](f func(*T) string) func(any) string {
	return func(m any) string {
		if t, ok := m.(*T); ok && t != nil {
			return f(t)
		}
		return ""
	}
}

// viewAs adapts a typed view builder to the descriptor's. An entity
// without a model has an empty view.
func viewAs[T any](f func(*T) events.View) func(any) events.View {
	return func(m any) events.View {
		if t, ok := m.(*T); ok && t != nil {
			return f(t)
		}
		return events.View{}
	}
}
