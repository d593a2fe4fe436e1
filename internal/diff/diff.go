package diff

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Options tune the differ. The zero value gives the documented defaults.
type Options struct {
	Source string    // CloudEvents source
	Now    time.Time // detection instant
	Cycle  uint64    // poll cycle number
	// CreatedOnFirstSighting emits created/added events for the entities of
	// a customer seen for the first time; by default that listing is a
	// silent baseline.
	CreatedOnFirstSighting bool
	// MassRemovalShare: when more than this share of a customer's
	// subscriptions (or of all customers) vanish in one listing, removals
	// are held and ops.mass-removal-held is emitted. Default 0.5; 1 turns it
	// off.
	MassRemovalShare float64
	// MassRemovalMin: the rule applies only when at least this many
	// entities were known. Default 4.
	MassRemovalMin int
	// HoldCycles: after this many complete listings in which held entities
	// stay missing, the hold is released and they are removed. Default 3.
	HoldCycles int
	// Ignored JSON Pointers; default DefaultIgnored.
	Ignored []string
	// RefundRefresh: refund batches read by id are read again after this
	// while a window is open (deadline.Facts.NeedsRefundFetch). Default 6h.
	RefundRefresh time.Duration
	// KeepPending makes the listing judge only what it holds: entities
	// missing from it are neither marked pending nor removed nor held.
	// A hinted refresh (poller.Refresh) sets it: absences are the
	// sweep's to judge, so a listing read while Partner Center settles
	// after a change never counts towards a removal.
	KeepPending bool
	// Actor, when set, names who made the changes of the entity id of
	// kind k (from the activity log); the events about it carry it as
	// data.actor. Nil for an entity it knows nothing of.
	Actor func(k *resource.Kind, customerID, id string) *events.Actor
}

func (o Options) withDefaults() Options {
	if o.MassRemovalShare <= 0 {
		o.MassRemovalShare = 0.5
	}
	if o.MassRemovalMin <= 0 {
		o.MassRemovalMin = 4
	}
	if o.HoldCycles <= 0 {
		o.HoldCycles = 3
	}
	if o.Ignored == nil {
		o.Ignored = DefaultIgnored
	}
	if o.RefundRefresh <= 0 {
		o.RefundRefresh = 6 * time.Hour
	}
	return o
}

// Result is what a diff produced: the state change to commit (events
// included, already enveloped), a count of events by type, and the
// subscriptions whose refund batches should be read by id now (see
// CommitRefunds).
type Result struct {
	Change           state.Change
	Counts           map[events.Type]int
	RefundCandidates []string
	// Duplicates are entities listed more than once with identical
	// content ("<kind name> <id>"): kept once. The caller warns about them.
	Duplicates []string
}

// DuplicateError is a listing that holds one entity twice with different
// content: which copy is current cannot be told, so the listing is not
// diffed (Partner Center shifting items between pages while it was read).
type DuplicateError struct {
	Kind *resource.Kind
	ID   string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s %s listed twice with different content in one listing (the listing changed while it was read); it is not diffed and is read again next cycle", e.Kind, e.ID)
}

// Events returns the number of events produced.
func (r *Result) Events() int { return len(r.Change.Events) }

type builder struct {
	o      Options
	res    *Result
	custID string
	name   string
}

func (b *builder) emit(t events.Type, key events.IDKey, d *events.Data) error {
	d.CustomerID = b.custID
	if d.CustomerName == "" {
		d.CustomerName = b.name
	}
	env, _, err := events.New(b.o.Source, t, key, b.o.Now, d)
	if err != nil {
		return err
	}
	b.res.Change.Events = append(b.res.Change.Events, env)
	b.res.Counts[t]++
	return nil
}

// Listing is a complete fresh listing of one customer's entities of the
// kinds in Kinds. Entities of kinds not in Kinds must not appear; kinds not
// listed (or whose listing failed) are left untouched. Entities may be
// undecoded (of item listings, see resource.Entity): the differ compares
// their raw bytes with the stored records' hashes first and decodes only
// the new and changed ones (and unchanged subscriptions inside a refund
// window), setting their ids; the result is the same as for decoded
// entities.
type Listing struct {
	CustomerID   string
	CustomerName string
	Kinds        []*resource.Kind
	Entities     []resource.Entity
	// TargetViews are the catalog views listed (of the kinds listed by
	// target view). Known entities of other views are out of scope:
	// dropped silently, not removed, and a view listed for the first time
	// is a silent baseline.
	TargetViews []string
	// MPNIDs, when set, are the resellers whose entities were listed (of
	// the kinds listed by reseller: the mpn_id filter). Known entities of
	// other resellers are out of scope: dropped silently, not removed.
	MPNIDs []string
}

// Without returns a copy of l without kind k and its entities (a kind
// whose listing turned out not to be diffable).
func (l *Listing) Without(k *resource.Kind) *Listing {
	out := *l
	out.Kinds = slices.DeleteFunc(slices.Clone(l.Kinds), func(x *resource.Kind) bool { return x == k })
	out.Entities = make([]resource.Entity, 0, len(l.Entities))
	for _, e := range l.Entities {
		if e.Kind != k {
			out.Entities = append(out.Entities, e)
		}
	}
	return &out
}

// Customer diffs one customer's listing against its stored snapshot (which
// must hold the listed kinds). It never reads or writes the store itself:
// the caller commits Result.Change, in one transaction. An undecoded
// entity that does not decode fails it with a *resource.DecodeError naming
// its kind: that kind's listing is not diffable (as one the client could
// not decode), the other kinds can be diffed without it (Listing.Without).
func Customer(snap *state.Snapshot, l *Listing, o Options) (*Result, error) {
	o = o.withDefaults()
	b := &builder{o: o, res: &Result{Counts: map[events.Type]int{}}, custID: l.CustomerID, name: l.CustomerName}
	byKind := map[*resource.Kind][]resource.Entity{}
	for _, e := range l.Entities {
		byKind[e.Kind] = append(byKind[e.Kind], e)
	}
	for _, k := range l.Kinds {
		known := b.scope(k, snap, l)
		baseline := func(*resource.Entity) bool { return !snap.Baselined[k] }
		if k.ByTargetView() {
			// Each target view of a customer has its own baseline.
			baseline = func(e *resource.Entity) bool { return !snap.BaselinedScopes[k][e.Scope] }
			for _, tv := range l.TargetViews {
				if !snap.BaselinedScopes[k][tv] {
					b.res.Change.Baselines = append(b.res.Change.Baselines, state.Ref{Kind: k, Key: l.CustomerID + "/" + tv})
				}
			}
		} else if !snap.Baselined[k] {
			b.res.Change.Baselines = append(b.res.Change.Baselines, state.Ref{Kind: k, Key: l.CustomerID})
		}
		if err := b.diffKind(k, known, snap.Pending[k], snap.Tombs[k], byKind[k], baseline); err != nil {
			return nil, fmt.Errorf("customer %s, %ss: %w", l.CustomerID, k, err)
		}
	}
	return b.res, nil
}

// scope returns the known records of kind k that the listing covers, and
// silently drops the others (entities of target views no longer listed, of
// resellers outside the mpn_id filter): a narrower configuration is not a
// mass removal.
func (b *builder) scope(k *resource.Kind, snap *state.Snapshot, l *Listing) map[string]state.Record {
	known := snap.Records[k]
	var out func(id string, rec state.Record) bool
	switch {
	case k.ByTargetView():
		out = func(id string, _ state.Record) bool {
			tv, _, _ := strings.Cut(id, "/")
			return !slices.Contains(l.TargetViews, tv)
		}
		for tv := range snap.BaselinedScopes[k] {
			if !slices.Contains(l.TargetViews, tv) {
				b.res.Change.BaselineDeletes = append(b.res.Change.BaselineDeletes, state.Ref{Kind: k, Key: l.CustomerID + "/" + tv})
			}
		}
	case k.ByReseller() && len(l.MPNIDs) > 0:
		out = func(id string, rec state.Record) bool {
			f, _ := deadline.StoredFacts(k.Key(l.CustomerID, id), rec)
			return f != nil && !slices.Contains(l.MPNIDs, f.PartnerID)
		}
	default:
		return known
	}
	in := make(map[string]state.Record, len(known))
	for id, rec := range known {
		if out(id, rec) {
			b.res.Change.Deletes = append(b.res.Change.Deletes, state.Ref{Kind: k, Key: k.Key(l.CustomerID, id)})
			continue
		}
		in[id] = rec
	}
	return in
}

// CustomerList diffs the complete customer list. known holds the stored
// customer records by id, pending their pending marks; baselined tells
// whether a customer list was ever committed. A removed customer takes its
// entities of every other kind with it (one customer.removed event; their
// removals are implied).
func CustomerList(known map[string]state.Record, pending map[string]state.Pending, tombs map[string]uint64, baselined bool, fresh []resource.Entity, o Options) (*Result, error) {
	o = o.withDefaults()
	b := &builder{o: o, res: &Result{Counts: map[events.Type]int{}}}
	if err := b.diffKind(resource.Customers, known, pending, tombs, fresh, func(*resource.Entity) bool { return !baselined }); err != nil {
		return nil, fmt.Errorf("customer list: %w", err)
	}
	if !baselined {
		b.res.Change.Baselines = append(b.res.Change.Baselines, state.Ref{Kind: resource.Customers, Key: ""})
	}
	return b.res, nil
}

// customerOf returns the customer an entity of kind k belongs to: the
// customer being diffed, or the entity itself for a customer (the customer
// list differ emits for many customers).
func (b *builder) customerOf(k *resource.Kind, id string) string {
	if k == resource.Customers {
		return id
	}
	return b.custID
}

func (b *builder) diffKind(k *resource.Kind, known map[string]state.Record, pending map[string]state.Pending, tombs map[string]uint64, fresh []resource.Entity, baseline func(*resource.Entity) bool) error {
	o := b.o
	seen := make(map[string]state.Hash, len(fresh))
	var stored *storedIDs // of known, built for the first undecoded entity
	for i := range fresh {
		e := &fresh[i]
		hash := state.HashOf(e.Raw)
		if !e.Decoded() {
			// Of an item listing: byte-identical to a stored entity, it
			// is that entity (the same bytes decode to the same id) and
			// is not decoded; anything else is decoded now.
			if stored == nil {
				stored = storedIDsOf(k, known)
			}
			if id, ok := stored.lookup(e.Scope, hash, e.Raw); ok {
				e.ID = id
			} else if err := e.Decode(); err != nil {
				return err
			}
		}
		if h, dup := seen[e.ID]; dup {
			if h != hash {
				// The listing is not diffable; but if it holds an item
				// that does not decode, it is as a listing the client
				// could not decode, as with decoded entities.
				for j := i + 1; j < len(fresh); j++ {
					if err := fresh[j].Decode(); err != nil {
						return err
					}
				}
				return &DuplicateError{Kind: k, ID: e.ID}
			}
			b.res.Duplicates = append(b.res.Duplicates, k.Name()+" "+e.ID)
			continue
		}
		seen[e.ID] = hash
		custID := b.customerOf(k, e.ID)
		key := k.Key(b.custID, e.ID)
		ref := state.Ref{Kind: k, Key: key}
		if _, ok := pending[e.ID]; ok {
			b.res.Change.PendingDeletes = append(b.res.Change.PendingDeletes, ref)
		}
		old, existed := known[e.ID]
		if existed && hash == old.Hash {
			// Unchanged: its facts cannot have changed either (they
			// derive from the raw JSON, and refund batches are written by
			// CommitRefunds). The common case costs a hash (and, for an
			// item listing, no decoding); a subscription still inside a
			// refund window (its header says so) has its facts read to
			// see whether its batches are due a reading.
			if k == resource.Subscriptions && old.Watch.After(o.Now) {
				if f, _ := deadline.StoredFacts(key, old); f != nil && f.NeedsRefundFetch(o.Now, o.RefundRefresh) {
					none, err := listsNoRefundBatches(e)
					if err != nil {
						return err
					}
					if none {
						b.res.RefundCandidates = append(b.res.RefundCandidates, e.ID)
					}
				}
			}
			continue
		}
		// New or changed, hence decoded above (an entity resolved to a
		// stored one is unchanged by construction): this Decode is a
		// no-op that keeps the models below from ever being nil.
		if err := e.Decode(); err != nil {
			return err
		}

		var facts *deadline.Facts
		if sub := subscriptionOf(e); sub != nil {
			var prev *deadline.Facts // none at first sighting, or unreadable
			if existed {
				prev, _ = deadline.StoredFacts(key, old)
			}
			f := deadline.FactsOf(sub, prev, o.Now)
			facts = &f
			if sub.RefundableQuantity == nil && f.NeedsRefundFetch(o.Now, o.RefundRefresh) {
				b.res.RefundCandidates = append(b.res.RefundCandidates, e.ID)
			}
		}
		meta := func() []byte {
			if facts == nil {
				return nil
			}
			return facts.Encode()
		}
		watch := func() time.Time {
			if facts == nil {
				return time.Time{}
			}
			return facts.RefundWatchUntil()
		}

		raw := append([]byte(nil), e.Raw...)
		if !existed {
			// A returning entity continues after the revision of its
			// removal, so its events never reuse an id.
			rev := tombs[e.ID] + 1
			rec := state.Record{Hash: hash, Rev: rev, FirstSeen: o.Now, Updated: o.Now, Watch: watch(), Meta: meta(), Raw: raw}
			b.res.Change.Puts = append(b.res.Change.Puts, state.Put{Kind: k, Key: key, Record: rec})
			if baseline(e) && !o.CreatedOnFirstSighting {
				continue
			}
			if err := b.emitAdded(k, custID, e, rev); err != nil {
				return err
			}
			continue
		}
		oldRaw, err := old.JSON()
		if err != nil {
			return fmt.Errorf("%s %s: %w", k, e.ID, err)
		}
		changes, err := Changes(oldRaw, e.Raw, o.Ignored)
		if err != nil {
			return fmt.Errorf("%s %s: %w", k, e.ID, err)
		}
		rec := state.Record{Hash: hash, Rev: old.Rev, FirstSeen: old.FirstSeen, Updated: o.Now, Watch: watch(), Meta: meta(), Raw: raw}
		if len(changes) > 0 {
			rec.Rev++
			if err := b.emitChanged(k, custID, e, oldRaw, rec.Rev, changes); err != nil {
				return err
			}
		}
		b.res.Change.Puts = append(b.res.Change.Puts, state.Put{Kind: k, Key: key, Record: rec})
	}

	// Entities known but missing from this complete listing.
	var missing []string
	for id := range known {
		if _, listed := seen[id]; !listed {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 || o.KeepPending {
		return nil
	}
	slices.Sort(missing)
	mass := k.HoldsMassRemoval() && len(known) >= o.MassRemovalMin && float64(len(missing))/float64(len(known)) > o.MassRemovalShare
	if mass {
		return b.hold(k, known, pending, missing)
	}
	for _, id := range missing {
		if _, wasPending := pending[id]; wasPending {
			// Missing from a second complete listing (or still missing
			// after a hold dissolved): removed.
			if err := b.remove(k, id, known[id]); err != nil {
				return err
			}
			continue
		}
		p := state.Pending{Since: o.Now, Cycle: o.Cycle, Misses: 1}
		b.res.Change.PendingPuts = append(b.res.Change.PendingPuts, state.PendingPut{Ref: state.Ref{Kind: k, Key: k.Key(b.custID, id)}, Pending: p})
	}
	return nil
}

// hold keeps entities of a mass disappearance pending. It announces the
// hold once per new set of missing entities, and releases it (removing the
// entities) once they have stayed missing for HoldCycles listings.
func (b *builder) hold(k *resource.Kind, known map[string]state.Record, pending map[string]state.Pending, missing []string) error {
	o := b.o
	newlyHeld := false
	release := true
	for _, id := range missing {
		p, ok := pending[id]
		if !ok || !p.Held {
			newlyHeld = true
		}
		if !ok || !p.Held || p.HoldCount+1 < o.HoldCycles {
			release = false
		}
	}
	if release {
		for _, id := range missing {
			if err := b.remove(k, id, known[id]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, id := range missing {
		p, ok := pending[id]
		if !ok {
			p = state.Pending{Since: o.Now, Cycle: o.Cycle}
		}
		p.Held = true
		p.Misses++
		p.HoldCount++
		b.res.Change.PendingPuts = append(b.res.Change.PendingPuts, state.PendingPut{Ref: state.Ref{Kind: k, Key: k.Key(b.custID, id)}, Pending: p})
	}
	if !newlyHeld {
		return nil
	}
	ids := missing
	if len(ids) > 100 {
		ids = ids[:100]
	}
	h := sha256.New()
	for _, id := range missing {
		h.Write([]byte(id + "\n"))
	}
	hold := &events.Hold{Resource: string(k.Resource()), Missing: len(missing), Total: len(known),
		Share: float64(len(missing)) / float64(len(known)), Threshold: o.MassRemovalShare, IDs: ids, Cycle: o.Cycle}
	return b.emit(events.OpsMassRemovalHeld, events.IDKey{Entity: "ops/" + b.custID + "/" + k.Name(), Extra: hex.EncodeToString(h.Sum(nil))},
		&events.Data{Hold: hold})
}

func (b *builder) remove(k *resource.Kind, id string, old state.Record) error {
	ref := state.Ref{Kind: k, Key: k.Key(b.custID, id)}
	b.res.Change.Deletes = append(b.res.Change.Deletes, ref)
	custID := b.customerOf(k, id)
	// The entity's own entities go with it.
	for _, child := range resource.All() {
		if child.Parent() == k {
			b.res.Change.DeletePrefixes = append(b.res.Change.DeletePrefixes, state.Ref{Kind: child, Key: id})
		}
	}
	if k == resource.Customers {
		b.res.Change.ForgetCustomers = append(b.res.Change.ForgetCustomers, id)
	}
	oldRaw, err := old.JSON()
	if err != nil {
		return fmt.Errorf("%s %s: %w", k, id, err)
	}
	before := k.ViewOf(id, oldRaw)
	d := b.data(k, custID, id, old.Rev+1, nil, &before)
	return b.emitFor(custID, k.Removed(), events.IDKey{Entity: k.EntityKey(custID, id), Revision: old.Rev + 1}, d)
}

// data starts the data of an event about entity id of kind k: its ids,
// revision and view (after, or before for a removal). A customer's own
// events carry its name from the view.
func (b *builder) data(k *resource.Kind, custID, id string, rev uint64, after, before *events.View) *events.Data {
	d := &events.Data{After: after, Before: before, Revision: rev}
	k.Identify(d, custID, id)
	if b.o.Actor != nil {
		d.Actor = b.o.Actor(k, custID, id)
	}
	if k == resource.Customers {
		if after != nil {
			d.CustomerName = after.CompanyName
		} else {
			d.CustomerName = before.CompanyName
		}
	}
	return d
}

// emitFor emits an event about customer custID (the customer list differ
// emits for many customers).
func (b *builder) emitFor(custID string, t events.Type, key events.IDKey, d *events.Data) error {
	saved := b.custID
	b.custID = custID
	defer func() { b.custID = saved }()
	return b.emit(t, key, d)
}

func (b *builder) emitAdded(k *resource.Kind, custID string, e *resource.Entity, rev uint64) error {
	after := e.View()
	return b.emitFor(custID, k.Added(), events.IDKey{Entity: k.EntityKey(custID, e.ID), Revision: rev}, b.data(k, custID, e.ID, rev, &after, nil))
}

// emitChanged emits the events of a change of entity e (stored as oldRaw),
// as its kind splits them (resource.Kind.Changed); they share its revision.
func (b *builder) emitChanged(k *resource.Kind, custID string, e *resource.Entity, oldRaw []byte, rev uint64, changes []events.Change) error {
	evs, err := k.Changed(oldRaw, e, changes)
	if err != nil {
		return err
	}
	key := events.IDKey{Entity: k.EntityKey(custID, e.ID), Revision: rev}
	for _, ce := range evs {
		after := e.View()
		d := b.data(k, custID, e.ID, rev, &after, nil)
		d.Changes = ce.Changes
		d.Old, d.New, d.Delta = ce.Old, ce.New, ce.Delta
		if err := b.emitFor(custID, ce.Type, key, d); err != nil {
			return err
		}
	}
	return nil
}

// storedIDs finds the stored entity whose raw JSON an undecoded entity
// repeats byte for byte, by (scope, hash): an entity of a kind listed by
// target view can repeat another view's bytes, so the view is part of the
// key. A hash two stored entities share (which their own ids in their
// bytes make impossible, short of a damaged file) finds neither.
type storedIDs struct {
	byKey  map[storedKey]storedID
	quoted []byte // the entities' own ids (without target view) as JSON strings, one after the other
}

type storedKey struct {
	scope string
	hash  state.Hash
}

type storedID struct {
	id     string
	q0, q1 int // its own id as a JSON string: quoted[q0:q1]
}

func storedIDsOf(k *resource.Kind, known map[string]state.Record) *storedIDs {
	s := &storedIDs{byKey: make(map[storedKey]storedID, len(known))}
	n := 0
	for id := range known {
		n += len(id) + 2
	}
	s.quoted = make([]byte, 0, n)
	for id, rec := range known {
		sk, own := storedKey{hash: rec.Hash}, id
		if k.ByTargetView() {
			sk.scope, own, _ = strings.Cut(id, "/")
		}
		if _, twice := s.byKey[sk]; twice {
			s.byKey[sk] = storedID{}
			continue
		}
		q0 := len(s.quoted)
		s.quoted = append(append(append(s.quoted, '"'), own...), '"')
		s.byKey[sk] = storedID{id: id, q0: q0, q1: len(s.quoted)}
	}
	return s
}

// lookup returns the id of the stored entity of scope whose hash is hash.
// As a guard against a record stored under another id than its bytes
// carry, the entity's own id must appear in raw as a JSON string (an id
// written with escapes does not, and is decoded instead).
func (s *storedIDs) lookup(scope string, hash state.Hash, raw []byte) (string, bool) {
	st := s.byKey[storedKey{scope, hash}]
	if st.id == "" || !bytes.Contains(raw, s.quoted[st.q0:st.q1]) {
		return "", false
	}
	return st.id, true
}

// listsNoRefundBatches reports whether e is a subscription listed without
// refund batches (refundableQuantity absent or null), without decoding an
// undecoded one when its bytes settle it: JSON that holds neither the
// property's name, in any case, nor an escape (which could spell it; the
// name has no letter that folds to a non-ASCII one) has none.
func listsNoRefundBatches(e *resource.Entity) (bool, error) {
	if !e.Decoded() && bytes.IndexByte(e.Raw, '\\') < 0 && !containsFoldASCII(e.Raw, "refundablequantity") {
		return true, nil
	}
	if err := e.Decode(); err != nil {
		return false, err
	}
	sub := subscriptionOf(e)
	return sub != nil && sub.RefundableQuantity == nil, nil
}

// containsFoldASCII reports whether b holds lower (lower-case ASCII
// letters) in any case.
func containsFoldASCII(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		j := 0
		for j < len(lower) && b[i+j]|0x20 == lower[j] {
			j++
		}
		if j == len(lower) {
			return true
		}
	}
	return false
}

// subscriptionOf returns a listed entity's subscription, nil if it is not
// one. Subscriptions are the kind with deadlines: their records carry
// deadline facts (internal/deadline) and may need their refund batches read
// by id.
func subscriptionOf(e *resource.Entity) *pc.Subscription {
	s, _ := e.Model.(*pc.Subscription)
	return s
}
