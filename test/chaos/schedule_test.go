package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// profile sizes a run.
type profile struct {
	name          string
	customers     int           // > 500: the customer listing has two pages
	chaos         time.Duration // length of the chaos phase (wall)
	watcherKills  int
	natsRestarts  int // the first is the long outage
	notifierKills int
	receiverDowns int
	faultRounds   int // rounds of the five Partner Center fault windows
	listingFails  int // customers whose subscription listing fails for several cycles
	hostileRounds int // rounds of the seven hostile-input windows
}

var profiles = map[string]profile{
	"short": {name: "short", customers: 520, chaos: 90 * time.Second, watcherKills: 10, natsRestarts: 2, notifierKills: 1, receiverDowns: 1, faultRounds: 1, listingFails: 3, hostileRounds: 1},
	"long":  {name: "long", customers: 520, chaos: 7 * time.Minute, watcherKills: 50, natsRestarts: 5, notifierKills: 3, receiverDowns: 3, faultRounds: 3, listingFails: 9, hostileRounds: 2},
}

// actionKind is what one scheduled action does.
type actionKind int

const (
	actMutateRandom   actionKind = iota // POST /admin/random
	actMutateExplicit                   // POST /admin/mutate (addCustomer, removeCustomer, purchase, cancel)
	actKillWatcher                      // kill -9, restarted after Pause
	actKillNATS                         // kill -9, restarted after Pause
	actKillNotifier                     // kill -9, restarted after Pause
	actReceiverDown                     // 503 with Retry-After for Pause
	actFaults                           // POST /admin/faults for Pause, then {}
	actFailListing                      // POST /admin/inject: one customer's subscription listing fails N times
)

// action is one step of the chaos phase, at an offset from its start.
type action struct {
	at     time.Duration
	kind   actionKind
	pause  time.Duration // outage or window length
	n      int           // random mutations
	op     string        // explicit op
	faults pcsim.Faults
	label  string
}

func (a action) String() string {
	switch a.kind {
	case actKillWatcher:
		return fmt.Sprintf("%6.1fs kill -9 watcher (restart after %s)", a.at.Seconds(), a.pause)
	case actKillNATS:
		return fmt.Sprintf("%6.1fs kill -9 nats-server (down %s)", a.at.Seconds(), a.pause)
	case actKillNotifier:
		return fmt.Sprintf("%6.1fs kill -9 notifier (restart after %s)", a.at.Seconds(), a.pause)
	case actReceiverDown:
		return fmt.Sprintf("%6.1fs webhook receiver down (503) for %s", a.at.Seconds(), a.pause)
	case actFaults:
		return fmt.Sprintf("%6.1fs Partner Center fault %s for %s", a.at.Seconds(), a.label, a.pause)
	case actMutateExplicit:
		return fmt.Sprintf("%6.1fs mutate %s", a.at.Seconds(), a.op)
	case actFailListing:
		return fmt.Sprintf("%6.1fs subscription listing of a customer with %s fails %d times (500)", a.at.Seconds(), a.op, a.n)
	}
	return fmt.Sprintf("%6.1fs %d random mutations", a.at.Seconds(), a.n)
}

func dur(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// spread places n instants in [lo, hi) at least gap apart, at random.
func spread(r *rand.Rand, n int, lo, hi, gap time.Duration) []time.Duration {
	for attempt := 0; ; attempt++ {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = dur(r, lo, hi)
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		ok := true
		for i := 1; i < n; i++ {
			if out[i]-out[i-1] < gap {
				ok = false
			}
		}
		if ok || attempt > 1000 {
			return out
		}
	}
}

// faultWindows are the Partner Center fault windows of one round.
func faultWindows(r *rand.Rand) []action {
	return []action{
		{kind: actFaults, label: "5xx rate 10%", pause: dur(r, 8*time.Second, 12*time.Second),
			faults: pcsim.Faults{ErrorRate: 0.10}},
		{kind: actFaults, label: "429 bursts (40 req/s, Retry-After 2s)", pause: dur(r, 6*time.Second, 9*time.Second),
			faults: pcsim.Faults{RateLimit: pcsim.RateLimit{Requests: 40, Per: time.Second, RetryAfter: 2 * time.Second}}},
		{kind: actFaults, label: "truncated bodies 30%", pause: dur(r, 5*time.Second, 8*time.Second),
			faults: pcsim.Faults{TruncateRate: 0.3}},
		{kind: actFaults, label: "malformed JSON 30%", pause: dur(r, 6*time.Second, 9*time.Second),
			faults: pcsim.Faults{MalformedRate: 0.3}},
		{kind: actFaults, label: "customer page 1 (of 2) failing with 500", pause: dur(r, 5*time.Second, 8*time.Second),
			faults: pcsim.Faults{FailCustomerPage: pcsim.PageFault{Page: 1, Times: -1, Status: 500}}},
	}
}

// makeSchedule draws the chaos phase from the seed.
func makeSchedule(p profile, r *rand.Rand) []action {
	var acts []action
	c := p.chaos
	// Partner Center fault windows: disjoint slots, in random order.
	var windows []action
	for range p.faultRounds {
		windows = append(windows, faultWindows(r)...)
	}
	r.Shuffle(len(windows), func(i, j int) { windows[i], windows[j] = windows[j], windows[i] })
	slot := (c * 85 / 100) / time.Duration(len(windows))
	for i, w := range windows {
		start := c*5/100 + time.Duration(i)*slot
		room := slot - w.pause - time.Second
		if room < 0 {
			room = 0
		}
		w.at = start + dur(r, 0, room)
		acts = append(acts, w)
	}
	// NATS: one restart (more in the long profile) is a long outage of
	// several poll cycles; the others come back at once.
	long := r.IntN(p.natsRestarts)
	for i, at := range spread(r, p.natsRestarts, c/10, c*75/100, 12*time.Second) {
		pause := dur(r, 200*time.Millisecond, 1500*time.Millisecond)
		if i == long || i%3 == 2 {
			pause = dur(r, 5*time.Second, 8*time.Second)
		}
		acts = append(acts, action{at: at, kind: actKillNATS, pause: pause})
	}
	for _, at := range spread(r, p.watcherKills, c*3/100, c*95/100, 1500*time.Millisecond) {
		acts = append(acts, action{at: at, kind: actKillWatcher, pause: dur(r, 0, 1500*time.Millisecond)})
	}
	// The first notifier kill comes while it is still delivering the
	// baseline (thousands of events in flight): the at-least-once window.
	nk := []time.Duration{dur(r, 200*time.Millisecond, 1500*time.Millisecond)}
	nk = append(nk, spread(r, p.notifierKills-1, c/5, c*60/100, 10*time.Second)...)
	for _, at := range nk {
		acts = append(acts, action{at: at, kind: actKillNotifier, pause: dur(r, 300*time.Millisecond, 3*time.Second)})
	}
	for _, at := range spread(r, p.receiverDowns, c/10, c*70/100, 15*time.Second) {
		acts = append(acts, action{at: at, kind: actReceiverDown, pause: dur(r, 5*time.Second, 10*time.Second)})
	}
	// One customer's subscription listing failing for several cycles in a
	// row (each listing spends about four requests of its retry budget):
	// small customers (removals need two listings) and large ones
	// (mass-removal holds need three).
	for i, at := range spread(r, p.listingFails, c/20, c*70/100, 3*time.Second) {
		size := "2-3 subscriptions"
		if i%3 == 2 {
			size = "4 or more subscriptions"
		}
		acts = append(acts, action{at: at, kind: actFailListing, op: size, n: 28})
	}
	// Mutations: random batches at random instants, and explicit
	// customer additions and removals, purchases and cancellations.
	for at := dur(r, 0, time.Second); at < c*97/100; at += dur(r, 250*time.Millisecond, 1200*time.Millisecond) {
		acts = append(acts, action{at: at, kind: actMutateRandom, n: 1 + r.IntN(6)})
	}
	explicit := []string{"addCustomer", "addCustomer", "removeCustomer", "removeCustomer", "purchase", "purchase", "purchase", "cancelPurchase", "cancelPurchase", "purchaseTrial"}
	for range p.chaos / (90 * time.Second) {
		for _, op := range explicit {
			lo := time.Duration(0)
			if op == "cancelPurchase" {
				lo = c / 3 // after some purchases were made
			}
			acts = append(acts, action{at: dur(r, lo, c*95/100), kind: actMutateExplicit, op: op})
		}
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	return acts
}
