package oracle

import (
	"fmt"
	"sort"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// Truth is the simulator's ground truth for a run.
type Truth struct {
	// Initial is the state before the watcher's first listing.
	Initial pcsim.State
	// Log holds every mutation with Seq > Initial.Seq, in order.
	Log []pcsim.Mutation
	// Final is the state at the end of the run.
	Final pcsim.State
}

// MutationEntity returns the entity a mutation is about.
func MutationEntity(mu pcsim.Mutation) Entity {
	switch mu.ResourceKind {
	case pcsim.ResourceCustomer:
		return CustomerEntity(mu.CustomerID)
	case pcsim.ResourceManagedService:
		return ServiceEntity(mu.CustomerID, mu.ResourceID)
	}
	return SubscriptionEntity(mu.CustomerID, mu.ResourceID)
}

// Creation and removal ops of the mutation log.
var (
	creationOps = map[string]bool{"customer.added": true, "subscription.created": true, "managedservice.added": true}
	removalOps  = map[string]bool{"customer.removed": true, "subscription.removed": true, "managedservice.removed": true}
)

// index groups the log by entity.
type index struct {
	created map[Entity][]pcsim.Mutation
	removed map[Entity][]pcsim.Mutation
	changed map[Entity][]pcsim.Mutation // every other op
	initial map[Entity]bool
}

func newIndex(t Truth) *index {
	ix := &index{created: map[Entity][]pcsim.Mutation{}, removed: map[Entity][]pcsim.Mutation{},
		changed: map[Entity][]pcsim.Mutation{}, initial: map[Entity]bool{}}
	for _, c := range t.Initial.Customers {
		ix.initial[CustomerEntity(c.ID)] = true
		for _, s := range c.Subscriptions {
			ix.initial[SubscriptionEntity(c.ID, s.ID)] = true
		}
		for _, id := range c.ManagedServices {
			ix.initial[ServiceEntity(c.ID, id)] = true
		}
	}
	for _, mu := range t.Log {
		en := MutationEntity(mu)
		switch {
		case creationOps[mu.Op]:
			ix.created[en] = append(ix.created[en], mu)
		case removalOps[mu.Op]:
			ix.removed[en] = append(ix.removed[en], mu)
		default:
			ix.changed[en] = append(ix.changed[en], mu)
		}
	}
	for _, m := range []map[Entity][]pcsim.Mutation{ix.created, ix.removed, ix.changed} {
		for _, ms := range m {
			sort.SliceStable(ms, func(i, j int) bool { return ms[i].At.Before(ms[j].At) })
		}
	}
	return ix
}

// InventionStats says what CheckInventions looked at.
type InventionStats struct {
	Mutations       int            // mutations in the log
	MutationsByOp   map[string]int // by op
	Removals        int            // removed events checked
	Creations       int            // created/added events checked
	ChangeRevisions int            // change revisions checked
}

// CheckInventions holds the change events against the mutation log:
//   - every removed event matches a removal of that entity in the log that
//     happened before the listing that noticed it, and an entity is never
//     removed more often than the log removes it;
//   - every created/added event is about an entity that existed at the
//     start or that the log creates;
//   - every change of an entity (each revision after its first sighting)
//     has a mutation of that entity behind it: the k-th change revision
//     needs k mutations of the entity logged before the listing that saw it.
//
// "Before the listing" is bounded by cycles.NextStart(detection time): the
// listing of the cycle that started at the event's time happened before the
// next cycle started.
func CheckInventions(evs []Event, t Truth, cycles Cycles) ([]string, InventionStats) {
	ix := newIndex(t)
	st := InventionStats{Mutations: len(t.Log), MutationsByOp: map[string]int{}}
	for _, mu := range t.Log {
		st.MutationsByOp[mu.Op]++
	}
	var problems []string
	bound := func(at time.Time) (time.Time, string) {
		if nb, ok := cycles.NextStart(at); ok {
			return nb, "the start of the next cycle, " + nb.UTC().Format(time.RFC3339)
		}
		return time.Unix(1<<40, 0), "the end of the run"
	}
	removals := map[Entity]int{}
	type revKey struct {
		en  Entity
		rev uint64
	}
	changeRevs := map[Entity][]Event{} // first event of each change revision
	seenRev := map[revKey]bool{}
	for _, e := range evs {
		if !e.IsChange() {
			continue
		}
		en, _ := EntityOf(e)
		if en.Kind == KindProduct {
			continue
		}
		switch e.Type {
		case events.SubscriptionRemoved, events.CustomerRemoved, events.ManagedServiceRemoved:
			st.Removals++
			k := removals[en]
			removals[en]++
			rm := ix.removed[en]
			if len(rm) == 0 {
				problems = append(problems, fmt.Sprintf("invented removal: %s removed but the simulator never removed it: %s", en, e))
				continue
			}
			if k >= len(rm) {
				problems = append(problems, fmt.Sprintf("invented removal: %s removed %d times but the simulator removed it %d time(s): %s", en, k+1, len(rm), e))
				continue
			}
			if b, what := bound(e.Time); rm[k].At.After(b) {
				problems = append(problems, fmt.Sprintf("invented removal: %s removed by an event detected at %s, but the simulator removed it only at %s (mutation %d), after %s: %s",
					en, e.Time.UTC().Format(time.RFC3339), rm[k].At.UTC().Format(time.RFC3339), rm[k].Seq, what, e))
			}
		case events.SubscriptionCreated, events.CustomerAdded, events.ManagedServiceAdded:
			st.Creations++
			if !ix.initial[en] && len(ix.created[en]) == 0 && len(ix.removed[en]) == 0 {
				problems = append(problems, fmt.Sprintf("invented entity: %s appeared but the simulator never had it: %s", en, e))
			}
		default:
			k := revKey{en, e.Data.Revision}
			if seenRev[k] {
				continue
			}
			seenRev[k] = true
			changeRevs[en] = append(changeRevs[en], e)
		}
	}
	ens := make([]Entity, 0, len(changeRevs))
	for en := range changeRevs {
		ens = append(ens, en)
	}
	sort.Slice(ens, func(i, j int) bool { return ens[i].String() < ens[j].String() })
	for _, en := range ens {
		revs := changeRevs[en]
		sort.Slice(revs, func(i, j int) bool { return revs[i].Data.Revision < revs[j].Data.Revision })
		muts := ix.changed[en]
		st.ChangeRevisions += len(revs)
		if len(muts) == 0 {
			problems = append(problems, fmt.Sprintf("invented change: %s changed but the simulator never changed it (no mutation of it in the log): %s", en, revs[0]))
			continue
		}
		if len(revs) > len(muts) {
			problems = append(problems, fmt.Sprintf("invented change: %s has %d change revisions but the simulator logged only %d mutation(s) of it; the last: %s", en, len(revs), len(muts), revs[len(revs)-1]))
			continue
		}
		for k, e := range revs {
			b, what := bound(e.Time)
			n := sort.Search(len(muts), func(i int) bool { return muts[i].At.After(b) })
			if n < k+1 {
				problems = append(problems, fmt.Sprintf("invented change: %s: its change number %d was detected at %s but the simulator had logged only %d mutation(s) of it by %s: %s",
					en, k+1, e.Time.UTC().Format(time.RFC3339), n, what, e))
				break
			}
		}
	}
	return problems, st
}

// CheckSightings closes the hole the final-state comparison leaves: an
// entity created and removed during the run, whose every event was lost,
// is in neither the model nor the final state. Every customer, subscription
// and managed service the simulator had throughout some complete cycle
// (from its start until the next cycle started, which bounds its listings)
// must appear in the stream. It returns the problems and how many
// lifetimes it checked.
func CheckSightings(evs []Event, t Truth, cycles Cycles) ([]string, int) {
	mentioned := map[Entity]bool{}
	for _, e := range evs {
		if en, ok := EntityOf(e); ok {
			mentioned[en] = true
		}
	}
	type life struct {
		from, to time.Time // zero from: before the run; zero to: still there
		what     string
	}
	lives := map[Entity][]*life{}
	open := map[Entity]*life{}
	for _, c := range t.Initial.Customers {
		ens := []Entity{CustomerEntity(c.ID)}
		for _, s := range c.Subscriptions {
			ens = append(ens, SubscriptionEntity(c.ID, s.ID))
		}
		for _, id := range c.ManagedServices {
			ens = append(ens, ServiceEntity(c.ID, id))
		}
		for _, en := range ens {
			l := &life{what: "the initial state"}
			lives[en], open[en] = append(lives[en], l), l
		}
	}
	for _, mu := range t.Log {
		en := MutationEntity(mu)
		switch {
		case creationOps[mu.Op]:
			l := &life{from: mu.At, what: fmt.Sprintf("mutation %d (%s)", mu.Seq, mu.Op)}
			lives[en], open[en] = append(lives[en], l), l
		case removalOps[mu.Op]:
			if l := open[en]; l != nil {
				l.to = mu.At
				delete(open, en)
			}
		}
	}
	var problems []string
	checked := 0
	for en, ls := range lives {
		for _, l := range ls {
			covered := false
			for _, c := range cycles {
				if !c.Complete() || c.StartedAt.Before(l.from) {
					continue
				}
				end, ok := cycles.NextStart(c.StartedAt)
				if ok && (l.to.IsZero() || !end.After(l.to)) {
					covered = true
					break
				}
			}
			if !covered {
				continue
			}
			checked++
			if !mentioned[en] {
				until := "the end"
				if !l.to.IsZero() {
					until = l.to.UTC().Format(time.RFC3339)
				}
				problems = append(problems, fmt.Sprintf("event lost: %s (from %s until %s) lived through a complete cycle but no event in the stream mentions it", en, l.what, until))
			}
		}
	}
	sort.Strings(problems)
	return problems, checked
}
