package oracle

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// SubState is what the model tracks of a subscription.
type SubState struct {
	Quantity  int
	Status    string
	AutoRenew bool
}

func (s SubState) String() string {
	return fmt.Sprintf("quantity %d, status %s, auto-renew %v", s.Quantity, s.Status, s.AutoRenew)
}

type custEntry struct {
	alive     bool
	removedAt time.Time // detection time of the customer.removed event
	removedBy string
	last      string // the last event applied, for messages
}

type subEntry struct {
	alive bool
	st    SubState
	last  string
}

type svcEntry struct {
	alive bool
	last  string
}

// group is the events of one observed change of an entity: they share a
// revision and are applied together, because their after views all show
// the entity after the whole change.
type group struct {
	rev uint64
	evs []Event
}

// Model is what a consumer that applies every event in stream order knows:
// which customers, subscriptions and managed services exist, and each
// subscription's quantity, status and auto-renew. It also checks, as it
// goes, that no event id, no (entity, type, revision) and no revision is
// skipped or repeated.
//
// Events of different entities may interleave in any order (the relay only
// keeps each entity's events in order), so the model keeps each entity's
// state separately; a customer's removal removes its subscriptions and
// managed services when the model is compared, not when it is applied.
type Model struct {
	customers map[string]*custEntry
	subs      map[Entity]*subEntry
	services  map[Entity]*svcEntry
	everSub   map[Entity]bool
	// removedAt is the detection time of each customer.removed, recorded
	// as soon as it is applied; changes holds every change of a
	// subscription or managed service, checked against it by Flush.
	removedAt map[string]Event
	changes   []Event

	// dropped counts, per entity, the change events an ops.event-dropped
	// notice says the relay could not publish (too large for NATS even
	// shrunk) and that no revision gap has accounted for yet.
	dropped map[Entity]int

	ids         map[string]string // event id -> description
	transitions map[string]string // entity|type|revision -> event id
	lastRev     map[Entity]uint64
	open        map[Entity]*group
	problems    []string

	// Types counts the events applied by type.
	Types map[events.Type]int
	// Applied counts the events applied.
	Applied int
	// Dropped lists the ops.event-dropped notices applied; Explained counts
	// the revisions missing from the stream that they account for (a
	// documented loss, not a silent one: no problem is reported for them).
	Dropped   []string
	Explained int
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{customers: map[string]*custEntry{}, subs: map[Entity]*subEntry{}, services: map[Entity]*svcEntry{},
		everSub: map[Entity]bool{}, removedAt: map[string]Event{}, dropped: map[Entity]int{}, ids: map[string]string{}, transitions: map[string]string{}, lastRev: map[Entity]uint64{},
		open: map[Entity]*group{}, Types: map[events.Type]int{}}
}

func (m *Model) problem(format string, a ...any) {
	m.problems = append(m.problems, fmt.Sprintf(format, a...))
}

// Apply applies one event and returns the problems found so far that were
// not returned before. The events of an entity's change are applied
// together once the next change of that entity (or Flush) shows the change
// is complete, so a problem may be returned by a later call.
func (m *Model) Apply(e Event) []string {
	m.Applied++
	m.Types[e.Type]++
	desc := e.String()
	if prev, ok := m.ids[e.ID]; ok {
		m.problem("duplicate: event id %s is in the stream twice: %s and %s", e.ID, prev, desc)
	} else {
		m.ids[e.ID] = desc
	}
	if e.Type == events.OpsEventDropped && e.Data.Dropped != nil {
		m.noteDropped(e)
	}
	en, ok := EntityOf(e)
	if !ok {
		return m.take()
	}
	if e.IsDeadline() {
		if en.Kind == KindSubscription && !m.everSub[en] {
			m.problem("%s: deadline event about a subscription no earlier event created: %s", en, desc)
		}
		return m.take()
	}
	switch {
	case e.Type == events.SubscriptionCreated:
		m.everSub[en] = true
	case e.Type == events.CustomerRemoved:
		if _, ok := m.removedAt[en.Customer]; !ok {
			m.removedAt[en.Customer] = e
		}
	case en.Kind == KindSubscription || en.Kind == KindManagedService:
		if e.Type != events.ManagedServiceAdded {
			m.changes = append(m.changes, e)
		}
	}
	rev := e.Data.Revision
	if rev == 0 {
		m.problem("%s: change event without a revision: %s", en, desc)
		return m.take()
	}
	tr := fmt.Sprintf("%s|%s|%d", en, e.Type, rev)
	if prev, ok := m.transitions[tr]; ok {
		m.problem("duplicate: %s: transition %s revision %d reported twice: events %s and %s", en, e.Short(), rev, prev, desc)
		return m.take()
	}
	m.transitions[tr] = e.ID
	last, seen := m.lastRev[en]
	switch {
	case !seen && rev != 1 && !m.explain(en, rev-1):
		m.problem("event lost: %s: its first event in the stream has revision %d, so revisions 1..%d never reached the stream: %s", en, rev, rev-1, desc)
	case seen && rev < last:
		m.problem("%s: revision went back from %d to %d: %s", en, last, rev, desc)
		return m.take()
	case seen && rev > last+1 && !m.explain(en, rev-last-1):
		m.problem("event lost: %s: revision %d follows revision %d, so revision(s) %s never reached the stream: %s", en, rev, last, revRange(last+1, rev-1), desc)
	}
	if g := m.open[en]; g != nil && g.rev == rev {
		g.evs = append(g.evs, e)
		return m.take()
	}
	if g := m.open[en]; g != nil {
		m.applyGroup(en, g)
	}
	m.lastRev[en] = rev
	m.open[en] = &group{rev: rev, evs: []Event{e}}
	return m.take()
}

// noteDropped records an ops.event-dropped notice about a change event.
// The relay publishes the notice in the dropped event's place in its
// entity's order, so it comes before the entity's next revision.
func (m *Model) noteDropped(e Event) {
	d := e.Data.Dropped
	m.Dropped = append(m.Dropped, fmt.Sprintf("%s of %s (id %s, %d bytes, limit %d)", strings.TrimPrefix(string(d.Type), events.TypePrefix), d.Entity, d.ID, d.Size, d.Limit))
	info, ok := events.Lookup(d.Type)
	if !ok || info.Resource == events.ResourceOps || info.Deadline {
		return
	}
	if en, ok := entityOfKey(d.Entity); ok {
		m.dropped[en]++
	}
}

// explain accounts for n revisions of en missing from the stream with the
// notices of dropped events not yet used; it reports whether they cover
// all n.
func (m *Model) explain(en Entity, n uint64) bool {
	if uint64(m.dropped[en]) < n {
		return false
	}
	m.dropped[en] -= int(n)
	m.Explained += int(n)
	return true
}

// entityOfKey reads an events.EntityKey: <resource>/<customerId>/<id>.
func entityOfKey(key string) (Entity, bool) {
	r, rest, ok := strings.Cut(key, "/")
	if !ok {
		return Entity{}, false
	}
	c, id, _ := strings.Cut(rest, "/")
	switch events.Resource(r) {
	case events.ResourceCustomer:
		return CustomerEntity(c), true
	case events.ResourceSubscription:
		return SubscriptionEntity(c, id), true
	case events.ResourceManagedService:
		return ServiceEntity(c, id), true
	case events.ResourceProduct:
		return Entity{Kind: KindProduct, Customer: c, ID: id}, true
	}
	return Entity{}, false
}

func revRange(a, b uint64) string {
	if a == b {
		return strconv.FormatUint(a, 10)
	}
	return fmt.Sprintf("%d..%d", a, b)
}

// Flush applies the changes still open and returns the problems not yet
// returned.
func (m *Model) Flush() []string {
	ens := make([]Entity, 0, len(m.open))
	for en := range m.open {
		ens = append(ens, en)
	}
	sort.Slice(ens, func(i, j int) bool { return ens[i].String() < ens[j].String() })
	for _, en := range ens {
		m.applyGroup(en, m.open[en])
		delete(m.open, en)
	}
	// The watcher stops polling a customer the cycle it removes it: no
	// change of its subscriptions or managed services can be detected at
	// or after that cycle's start (the removal's detection time).
	for _, e := range m.changes {
		en, _ := EntityOf(e)
		if r, ok := m.removedAt[en.Customer]; ok && !e.Time.Before(r.Time) {
			m.problem("%s: change detected after its customer was removed (%s): %s", en, r, e)
		}
	}
	m.changes = m.changes[:0]
	return m.take()
}

func (m *Model) take() []string {
	p := m.problems
	m.problems = nil
	return p
}

func (m *Model) applyGroup(en Entity, g *group) {
	switch en.Kind {
	case KindCustomer:
		m.applyCustomer(en, g)
	case KindSubscription:
		m.applySubscription(en, g)
	case KindManagedService:
		m.applyService(en, g)
	}
}

func (m *Model) cust(id string) *custEntry {
	c := m.customers[id]
	if c == nil {
		c = &custEntry{}
		m.customers[id] = c
	}
	return c
}

func (m *Model) applyCustomer(en Entity, g *group) {
	c := m.cust(en.Customer)
	for _, e := range g.evs {
		desc := e.String()
		switch e.Type {
		case events.CustomerAdded:
			if c.alive {
				m.problem("%s: added while it exists (last event %s): %s", en, c.last, desc)
			}
			c.alive, c.removedAt, c.removedBy = true, time.Time{}, ""
		case events.CustomerRemoved:
			if !c.alive {
				m.problem("%s: removed but no earlier event added it (or it was removed already): %s", en, desc)
			}
			c.alive, c.removedAt, c.removedBy = false, e.Time, desc
		default:
			if !c.alive {
				m.problem("%s: %s of a customer that does not exist (last event %s): %s", en, e.Short(), orNone(c.last), desc)
			}
		}
		c.last = desc
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (m *Model) applySubscription(en Entity, g *group) {
	s := m.subs[en]
	if s == nil {
		s = &subEntry{}
		m.subs[en] = s
	}
	before := s.st
	wasAlive := s.alive
	for _, e := range g.evs {
		d := e.Data
		desc := e.String()
		need := func(what string, ok bool) {
			if !ok {
				m.problem("%s: %s does not follow from the state the earlier events built (%s; exists %v; last event %s): %s",
					en, what, s.st, s.alive, orNone(s.last), desc)
			}
		}
		switch e.Type {
		case events.SubscriptionCreated:
			need("a new subscription", !wasAlive)
			st, err := subStateOf(d.After)
			if err != nil {
				m.problem("%s: %v: %s", en, err, desc)
				break
			}
			s.st, s.alive = st, true
		case events.SubscriptionRemoved:
			need("an existing subscription", wasAlive)
			if st, err := subStateOf(d.Before); err != nil {
				m.problem("%s: before: %v: %s", en, err, desc)
			} else if wasAlive && st != before {
				m.problem("%s: the removal's before view (%s) is not the state the earlier events built (%s; last event %s): %s", en, st, before, orNone(s.last), desc)
			}
			s.alive = false
		case events.SubscriptionQuantityChanged:
			need("old quantity "+string(d.Old), wasAlive && string(d.Old) == strconv.Itoa(before.Quantity))
			var nv int
			if err := json.Unmarshal(d.New, &nv); err != nil {
				m.problem("%s: new quantity %s: %v: %s", en, d.New, err, desc)
				break
			}
			if d.Delta == nil || *d.Delta != nv-before.Quantity {
				m.problem("%s: delta %v is not new %d - old %d: %s", en, deref(d.Delta), nv, before.Quantity, desc)
			}
			s.st.Quantity = nv
		case events.SubscriptionStatusChanged:
			need("old status "+string(d.Old), wasAlive && string(d.Old) == strconv.Quote(before.Status))
			var nv string
			if err := json.Unmarshal(d.New, &nv); err != nil {
				m.problem("%s: new status %s: %v: %s", en, d.New, err, desc)
				break
			}
			s.st.Status = nv
		case events.SubscriptionAutoRenewChanged:
			need("old auto-renew "+string(d.Old), wasAlive && string(d.Old) == strconv.FormatBool(before.AutoRenew))
			var nv bool
			if err := json.Unmarshal(d.New, &nv); err != nil {
				m.problem("%s: new auto-renew %s: %v: %s", en, d.New, err, desc)
				break
			}
			s.st.AutoRenew = nv
		default:
			need("an existing subscription", wasAlive)
		}
	}
	// Every event of the change shows the subscription after all of it.
	for _, e := range g.evs {
		if e.Type == events.SubscriptionRemoved || e.Data.After == nil {
			continue
		}
		st, err := subStateOf(e.Data.After)
		if err != nil {
			m.problem("%s: after: %v: %s", en, err, e)
			continue
		}
		if st != s.st {
			m.problem("%s: the after view (%s) contradicts the state the events built (%s, from %s): %s", en, st, s.st, orNone(s.last), e)
		}
	}
	s.last = g.evs[len(g.evs)-1].String()
}

func deref(p *int) any {
	if p == nil {
		return "absent"
	}
	return *p
}

func subStateOf(v *events.View) (SubState, error) {
	if v == nil {
		return SubState{}, fmt.Errorf("no view of the subscription")
	}
	if v.Quantity == nil || v.AutoRenewEnabled == nil {
		return SubState{}, fmt.Errorf("view without quantity or autoRenewEnabled")
	}
	return SubState{Quantity: *v.Quantity, Status: v.Status, AutoRenew: *v.AutoRenewEnabled}, nil
}

func (m *Model) applyService(en Entity, g *group) {
	s := m.services[en]
	if s == nil {
		s = &svcEntry{}
		m.services[en] = s
	}
	for _, e := range g.evs {
		desc := e.String()
		switch e.Type {
		case events.ManagedServiceAdded:
			if s.alive {
				m.problem("%s: added while it exists (last event %s): %s", en, s.last, desc)
			}
			s.alive = true
		case events.ManagedServiceRemoved:
			if !s.alive {
				m.problem("%s: removed but no earlier event added it (last event %s): %s", en, orNone(s.last), desc)
			}
			s.alive = false
		default:
			if !s.alive {
				m.problem("%s: %s of a managed service that does not exist (last event %s): %s", en, e.Short(), orNone(s.last), desc)
			}
		}
		s.last = desc
	}
}

// customerGone reports whether the customer of en was removed.
func (m *Model) customerGone(customer string) bool {
	c := m.customers[customer]
	return c == nil || !c.alive
}

// Subscription returns the model's state of a subscription and whether it
// exists (its customer too). Call Flush first.
func (m *Model) Subscription(customer, id string) (SubState, bool) {
	s := m.subs[SubscriptionEntity(customer, id)]
	if s == nil || !s.alive || m.customerGone(customer) {
		return SubState{}, false
	}
	return s.st, true
}

// Compare flushes the model and compares it with the simulator's state:
// every customer, subscription (quantity, status, auto-renew) and managed
// service the simulator has must exist in the model and nothing else.
func (m *Model) Compare(st pcsim.State) []string {
	problems := m.Flush()
	truthCust := map[string]bool{}
	truthSub := map[Entity]bool{}
	truthSvc := map[Entity]bool{}
	for _, c := range st.Customers {
		truthCust[c.ID] = true
		ce := m.customers[c.ID]
		switch {
		case ce == nil:
			problems = append(problems, fmt.Sprintf("completeness: customer %s (%s) exists in the simulator but no event added it", c.ID, c.CompanyName))
		case !ce.alive:
			problems = append(problems, fmt.Sprintf("completeness: customer %s (%s) exists in the simulator but the events removed it (last event %s)", c.ID, c.CompanyName, ce.last))
		}
		for _, s := range c.Subscriptions {
			en := SubscriptionEntity(c.ID, s.ID)
			truthSub[en] = true
			want := SubState{Quantity: s.Quantity, Status: s.Status, AutoRenew: s.AutoRenewEnabled}
			got, ok := m.Subscription(c.ID, s.ID)
			se := m.subs[en]
			switch {
			case se == nil:
				problems = append(problems, fmt.Sprintf("completeness: %s (%s) exists in the simulator (%s) but no event created it", en, s.OfferName, want))
			case !ok:
				problems = append(problems, fmt.Sprintf("completeness: %s (%s) exists in the simulator (%s) but the events removed it or its customer (last event %s)", en, s.OfferName, want, se.last))
			case got != want:
				problems = append(problems, fmt.Sprintf("completeness: %s: the events say %s, the simulator has %s (last event %s)", en, got, want, se.last))
			}
		}
		for _, id := range c.ManagedServices {
			en := ServiceEntity(c.ID, id)
			truthSvc[en] = true
			se := m.services[en]
			switch {
			case se == nil:
				problems = append(problems, fmt.Sprintf("completeness: %s exists in the simulator but no event added it", en))
			case !se.alive || m.customerGone(c.ID):
				problems = append(problems, fmt.Sprintf("completeness: %s exists in the simulator but the events removed it or its customer (last event %s)", en, se.last))
			}
		}
	}
	for id, ce := range m.customers {
		if ce.alive && !truthCust[id] {
			problems = append(problems, fmt.Sprintf("completeness: customer %s is gone from the simulator but no event removed it (last event %s)", id, ce.last))
		}
	}
	for en, se := range m.subs {
		if se.alive && !m.customerGone(en.Customer) && !truthSub[en] {
			problems = append(problems, fmt.Sprintf("completeness: %s is gone from the simulator but no event removed it (last event %s)", en, se.last))
		}
	}
	for en, se := range m.services {
		if se.alive && !m.customerGone(en.Customer) && !truthSvc[en] {
			problems = append(problems, fmt.Sprintf("completeness: %s is gone from the simulator but no event removed it (last event %s)", en, se.last))
		}
	}
	sort.Strings(problems)
	return problems
}

// Counts returns how many customers, subscriptions and managed services
// the model holds.
func (m *Model) Counts() (customers, subscriptions, services int) {
	for _, c := range m.customers {
		if c.alive {
			customers++
		}
	}
	for en := range m.subs {
		if _, ok := m.Subscription(en.Customer, en.ID); ok {
			subscriptions++
		}
	}
	for en, s := range m.services {
		if s.alive && !m.customerGone(en.Customer) {
			services++
		}
	}
	return
}

// TypeSummary renders counts by type, shortest names, sorted.
func TypeSummary(types map[events.Type]int) string {
	keys := make([]string, 0, len(types))
	for k, v := range types {
		keys = append(keys, fmt.Sprintf("%s=%d", strings.TrimPrefix(string(k), events.TypePrefix), v))
	}
	sort.Strings(keys)
	return strings.Join(keys, " ")
}
