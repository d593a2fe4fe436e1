// The hostile-input phase of the chaos suite: see doc.go.

package chaos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/oracle"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

const (
	// hostileWindow is the length of one window of the hostile phase
	// (several poll cycles at --interval 1s); hostileGap the pause with
	// hostile mode off between two windows.
	hostileWindowLen = 4 * time.Second
	hostileGap       = 500 * time.Millisecond
	hostileStepMax   = 30 * time.Second
	// hostileSlack is how many customers a cycle during a window may leave
	// unpolled: customers the mutations of the phase added just before it,
	// which the watcher has not listed yet when the listing fails.
	hostileSlack = 5
)

// hostileStep is one configuration of a window. It stays on for at least
// its share of hostileWindowLen and until cycles cycles that started after
// it was switched on have completed (at most hostileStepMax).
type hostileStep struct {
	label string
	cfg   pcsim.Hostile
	// cycles is how many cycles must run under it (0 means 1): answers
	// that a careless watcher would take for removals must last the two
	// complete listings a removal needs.
	cycles int

	from, to time.Time // wall, when it was on
	ran      int       // cycles that started under it and completed while it was on
	capped   bool      // fewer than cycles completed within hostileStepMax
}

// oversizedTarget is a subscription whose field the hostile mode made huge.
type oversizedTarget struct{ customer, subscription, field string }

// hostileWin is one window of the hostile phase.
type hostileWin struct {
	label string
	steps []*hostileStep
	// listing: the customer listing itself is hostile, so a cycle's
	// customer list may fail (the known customers must still be polled).
	listing bool
	// targets are the customers whose polls the window makes fail (or may:
	// a same-origin redirect, a trickled body).
	targets []string
	// purchases are made on these customers while the window is on: the
	// change must be reported once their listing recovers.
	purchases []string
	oversized []oversizedTarget

	known int // customers in the simulator at its start
}

// hostilePicker hands out distinct customers of the simulator's state.
type hostilePicker struct {
	h    *harness
	st   pcsim.State
	used map[string]bool
}

// take returns up to n unused customers matching ok, in random order.
func (p *hostilePicker) take(n int, ok func(pcsim.CustomerState) bool) []string {
	var pool []string
	for _, c := range p.st.Customers {
		if !p.used[c.ID] && ok(c) {
			pool = append(pool, c.ID)
		}
	}
	p.h.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	pool = pool[:min(n, len(pool))]
	for _, id := range pool {
		p.used[id] = true
	}
	return pool
}

func withSubs(lo, hi int) func(pcsim.CustomerState) bool {
	return func(c pcsim.CustomerState) bool { return len(c.Subscriptions) >= lo && len(c.Subscriptions) <= hi }
}

func withServices(c pcsim.CustomerState) bool {
	return len(c.ManagedServices) > 0 && len(c.Subscriptions) >= 2
}

func scope(endpoint string, customers ...string) pcsim.Scope {
	return pcsim.Scope{Endpoint: endpoint, Customers: customers}
}

// hostileWindows draws one round of the hostile phase from the state.
func (h *harness) hostileWindows(p *hostilePicker) []*hostileWin {
	some, small := withSubs(2, 1000), withSubs(2, 3)
	var ws []*hostileWin

	// 1. Malformed 200 bodies: each shape on one customer's subscription
	// listing, every shape in turn on managed services, on every
	// get-subscription-by-id and on the customer listing's second page.
	// Small customers: two or three subscriptions are below the
	// mass-removal share, so an answer taken for an empty listing would
	// show as removals after two cycles.
	subs := p.take(len(pcsim.AllShapes), small)
	ms := p.take(2, withServices)
	// Get-subscription-by-id (the refund-window reads) of customers whose
	// listings are fine: a failed read must not fail the customer.
	byID := p.take(3, some)
	var mal []pcsim.MalformedRule
	for i, c := range subs {
		mal = append(mal, pcsim.MalformedRule{Scope: scope(pcsim.EndpointSubscriptions, c), Shapes: []string{pcsim.AllShapes[i]}})
	}
	mal = append(mal, pcsim.MalformedRule{Scope: scope(pcsim.EndpointManagedServices, ms...)},
		pcsim.MalformedRule{Scope: scope(pcsim.EndpointSubscription, byID...)},
		pcsim.MalformedRule{Scope: pcsim.Scope{Endpoint: pcsim.EndpointCustomers, Pages: []int{1}}})
	ws = append(ws, &hostileWin{label: "malformed 200 bodies (null, {}, [], string, number, items missing/null/empty/not an array; listings, get by id, customer page 1)",
		steps: []*hostileStep{{cfg: pcsim.Hostile{Malformed: mal}, cycles: 2}}, listing: true,
		targets: append(append([]string{}, subs...), ms...), purchases: subs[:min(2, len(subs))]})

	// 2. Redirects: off the origin (the off-origin server answers empty
	// collections and counts bearer tokens) and to the same origin.
	off, offMS, same := p.take(3, small), p.take(2, withServices), p.take(2, some)
	ws = append(ws, &hostileWin{label: "redirects: 302/307 to another origin (subscriptions, managed services, customer page 1), 302 to the same origin",
		steps: []*hostileStep{{cfg: pcsim.Hostile{Redirects: []pcsim.RedirectRule{
			{Scope: scope(pcsim.EndpointSubscriptions, off...), Status: 302, Target: pcsim.RedirectOffOrigin},
			{Scope: scope(pcsim.EndpointManagedServices, offMS...), Status: 307, Target: pcsim.RedirectOffOrigin},
			{Scope: pcsim.Scope{Endpoint: pcsim.EndpointCustomers, Pages: []int{1}}, Status: 307, Target: pcsim.RedirectOffOrigin},
			{Scope: scope(pcsim.EndpointSubscriptions, same...), Status: 302, Target: pcsim.RedirectSameOrigin},
		}}, cycles: 2}}, listing: true,
		targets: append(append(append([]string{}, off...), offMS...), same...), purchases: off[:min(1, len(off))]})

	// 3. Retry-After: 86400 on 429 (503 comes with window 7).
	ra := p.take(1, some)
	ws = append(ws, &hostileWin{label: "Retry-After: 86400 on 429 (a subscription listing, customer page 1)",
		steps: []*hostileStep{{cfg: pcsim.Hostile{Errors: []pcsim.ErrorRule{
			{Scope: scope(pcsim.EndpointSubscriptions, ra...), Status: 429, RetryAfter: 24 * time.Hour},
			{Scope: pcsim.Scope{Endpoint: pcsim.EndpointCustomers, Pages: []int{1}}, Status: 429, RetryAfter: 24 * time.Hour},
		}}}}, listing: true, targets: ra, purchases: ra})

	// 4. Oversized fields: a 1.2 MB friendlyName and a 1.2 MB custom field,
	// each changed every second (every poll): their events exceed NATS's
	// 1 MiB max payload. Both customers must still be polled.
	var over []oversizedTarget
	activeSub := func(c pcsim.CustomerState) string {
		for _, s := range c.Subscriptions {
			if s.Status == "active" {
				return s.ID
			}
		}
		return ""
	}
	for _, field := range []string{"friendlyName", "pcsimPadding"} {
		cs := p.take(1, func(c pcsim.CustomerState) bool { return len(c.Subscriptions) >= 2 && activeSub(c) != "" })
		for _, c := range p.st.Customers {
			if len(cs) == 1 && c.ID == cs[0] {
				over = append(over, oversizedTarget{customer: c.ID, subscription: activeSub(c), field: field})
			}
		}
	}
	var ovr []pcsim.OversizedRule
	for _, o := range over {
		ovr = append(ovr, pcsim.OversizedRule{Customer: o.customer, Subscription: o.subscription, Field: o.field, Every: time.Second})
	}
	ws = append(ws, &hostileWin{label: "oversized fields: a 1.2 MB friendlyName and a 1.2 MB custom field, changed every second",
		steps: []*hostileStep{{cfg: pcsim.Hostile{Oversized: ovr}}}, oversized: over})

	// 5. Endless paging: the customer listing never ends.
	ws = append(ws, &hostileWin{label: "endless customer listing", listing: true, steps: []*hostileStep{
		{label: "new customer ids on every page, 20 a page, from page 1", cfg: pcsim.Hostile{EndlessPaging: &pcsim.EndlessPaging{Mode: pcsim.EndlessNewIDs, FromPage: 1, PageSize: 20}}},
		{label: "page 1 repeated forever, a new token each time", cfg: pcsim.Hostile{EndlessPaging: &pcsim.EndlessPaging{Mode: pcsim.EndlessRepeat, FromPage: 2}}},
	}})

	// 6. A customer listed twice across pages.
	dup := p.take(1, some)
	ws = append(ws, &hostileWin{label: "a customer listed twice across pages", listing: true, steps: []*hostileStep{
		{label: "identical copies", cfg: pcsim.Hostile{DuplicateCustomer: &pcsim.DuplicateCustomer{}}},
		{label: "different copies", cfg: pcsim.Hostile{DuplicateCustomer: &pcsim.DuplicateCustomer{Customer: first(dup), Different: true}}},
	}})

	// 7. Slow and endless bodies; a persistent 500 that echoes the bearer
	// token in its body (it must never leave the watcher); a 503 with
	// Retry-After: 86400.
	trickle, endless, fail, raMS := p.take(1, withSubs(2, 4)), p.take(1, withServices), p.take(1, some), p.take(1, withServices)
	ws = append(ws, &hostileWin{label: "a trickled body (512 B every 100 ms), an endless body, a persistent 500 echoing the Authorization header, 503 with Retry-After: 86400",
		steps: []*hostileStep{{cfg: pcsim.Hostile{
			Slow: []pcsim.SlowRule{
				{Scope: scope(pcsim.EndpointSubscriptions, trickle...), Mode: pcsim.SlowTrickle, ChunkBytes: 512, Interval: 100 * time.Millisecond},
				{Scope: scope(pcsim.EndpointManagedServices, endless...), Mode: pcsim.SlowEndless},
			},
			Errors: []pcsim.ErrorRule{
				{Scope: scope(pcsim.EndpointSubscriptions, fail...), Status: 500, EchoAuthorization: true},
				{Scope: scope(pcsim.EndpointManagedServices, raMS...), Status: 503, RetryAfter: 24 * time.Hour},
			},
		}}},
		targets: slices.Concat(trickle, endless, fail, raMS), purchases: fail})
	return ws
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// waitAllReady waits until every program runs and is ready.
func (h *harness) waitAllReady() {
	for _, c := range []*component{h.nats, h.notifier, h.watcher} {
		h.setWant(c, true)
	}
	h.waitFor("every program running and ready", 2*time.Minute, func() (bool, string) {
		for _, c := range []*component{h.nats, h.notifier, h.watcher} {
			p := c.current()
			if p == nil || !p.running() {
				return false, c.name + " not running"
			}
			if r, _ := p.ready(); r.IsZero() {
				return false, fmt.Sprintf("%s #%d not ready", c.name, p.n)
			}
		}
		return true, "yes"
	})
}

// hostilePhase runs the hostile-input windows one after another, with
// random mutations throughout and purchases on the customers a window
// targets, after the faults of the chaos phase are cleared and one complete
// cycle has run.
func (h *harness) hostilePhase() {
	start := time.Now()
	if err := h.adm.faults(pcsim.Faults{}); err != nil {
		h.t.Fatal(err)
	}
	if err := h.adm.clearInjected(); err != nil {
		h.t.Fatal(err)
	}
	h.rcv.setDown(false)
	h.waitAllReady()
	nc, js, err := natsConn(h.natsURL)
	if err != nil {
		h.t.Fatal(err)
	}
	since := h.biz(time.Now())
	h.waitFor("a complete cycle before the hostile phase", time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, ok, err := lastCycle(ctx, js)
		if err != nil || !ok || !c.Complete() || !c.StartedAt.After(since) {
			return false, fmt.Sprintf("last cycle %+v (%v)", c, err)
		}
		return true, fmt.Sprintf("cycle %d", c.Number)
	})
	defer nc.Close()
	if err := h.adm.resetOffOrigin(); err != nil {
		h.t.Fatal(err)
	}
	for range h.prof.hostileRounds {
		st, err := h.adm.state()
		if err != nil {
			h.t.Fatal(err)
		}
		p := &hostilePicker{h: h, st: st, used: map[string]bool{}}
		for _, w := range h.hostileWindows(p) {
			h.hostileRun(w, js)
		}
	}
	if err := h.adm.hostile(pcsim.Hostile{}); err != nil {
		h.t.Fatal(err)
	}
	h.logf("hostile phase over after %s", time.Since(start).Round(time.Millisecond))
}

// hostileRun runs one window, step by step.
func (h *harness) hostileRun(w *hostileWin, js jetstream.JetStream) {
	st, err := h.adm.state()
	if err != nil {
		h.t.Fatal(err)
	}
	w.known = len(st.Customers)
	h.count("Partner Center hostile window: "+w.label, 1)
	share := hostileWindowLen / time.Duration(len(w.steps))
	for i, s := range w.steps {
		if err := h.adm.hostile(s.cfg); err != nil {
			h.t.Fatalf("hostile %s: %v", w.label, err)
		}
		s.from = time.Now()
		what := w.label
		if s.label != "" {
			what += ": " + s.label
		}
		if i == 0 {
			h.logf("Partner Center hostile on: %s (targets %s)", what, strings.Join(w.targets, ", "))
			for _, o := range w.oversized {
				h.logf("  oversized %s of subscription %s/%s", o.field, o.customer, o.subscription)
			}
		} else {
			h.logf("Partner Center hostile now: %s", what)
		}
		if i == 0 && len(w.purchases) > 0 {
			h.hostileBusy(share / 2)
			for _, c := range w.purchases {
				h.hostilePurchase(c)
			}
			h.hostileBusy(share - share/2)
		} else {
			h.hostileBusy(share)
		}
		// Until whole cycles ran under this step.
		since, ran := h.biz(s.from), map[uint64]bool{}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, ok, err := lastCycle(ctx, js)
			cancel()
			if err == nil && ok && !c.StartedAt.Before(since) && !ran[c.Number] {
				ran[c.Number] = true
				h.logf("  cycle %d ran under it (%s)", c.Number, c.Duration.Round(10*time.Millisecond))
			}
			s.ran = len(ran)
			if len(ran) >= max(s.cycles, 1) {
				break
			}
			if time.Since(s.from) > hostileStepMax {
				s.capped = true
				h.logf("  %d of %d cycles that started under it completed within %s (last %+v, %v)", len(ran), max(s.cycles, 1), hostileStepMax, c, err)
				break
			}
			h.hostileBusy(300 * time.Millisecond)
		}
		s.to = time.Now()
	}
	if err := h.adm.hostile(pcsim.Hostile{}); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.hostile = append(h.hostile, w)
	h.mu.Unlock()
	h.logf("Partner Center hostile off: %s", w.label)
	for _, o := range w.oversized {
		h.restoreOversized(o)
	}
	h.hostileBusy(hostileGap)
}

// hostileBusy waits d, applying random mutations at random instants as
// the chaos phase does.
func (h *harness) hostileBusy(d time.Duration) {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		h.sleep(min(left, dur(h.rng, 250*time.Millisecond, 1200*time.Millisecond)))
		if time.Until(end) <= 0 {
			return
		}
		r, err := h.adm.random(1 + h.rng.IntN(6))
		if err != nil {
			h.t.Fatalf("random mutations: %v", err)
		}
		h.count("mutation requests", 1)
		h.count("mutations applied by the harness", len(r.Mutations))
	}
}

// hostilePurchase buys seats for a customer whose polls a window makes fail.
func (h *harness) hostilePurchase(c string) {
	res, code, err := h.adm.mutate(pcsim.MutateRequest{Op: "purchase", CustomerID: c, Purchase: &pcsim.PurchaseSpec{Quantity: 1 + h.rng.IntN(20)}})
	switch {
	case err == nil:
		h.count("explicit purchase while the customer's polls were hostile", 1)
		h.logf("mutate purchase %s (hostile target): %d mutation(s) %s", c, len(res.Mutations), res.ID)
		h.purchases = append(h.purchases, c+"/"+res.ID)
	case code == 404 || code == 409:
		h.logf("mutate purchase %s refused: %v", c, err)
	default:
		h.t.Fatalf("purchase: %v", err)
	}
}

// restoreOversized shrinks what a window made huge (explicit mutations,
// whose events carry the huge old value once more).
func (h *harness) restoreOversized(o oversizedTarget) {
	req := pcsim.MutateRequest{Op: "rename", CustomerID: o.customer, SubscriptionID: o.subscription, FriendlyName: "renamed after the oversized window"}
	if o.field != "friendlyName" {
		req = pcsim.MutateRequest{Op: "setUnknownField", CustomerID: o.customer, SubscriptionID: o.subscription, Field: o.field}
	}
	res, code, err := h.adm.mutate(req)
	switch {
	case err == nil:
		h.logf("restored %s of %s/%s: %d mutation(s)", o.field, o.customer, o.subscription, len(res.Mutations))
	case code == 404 || code == 409:
		h.logf("restoring %s of %s/%s refused: %v", o.field, o.customer, o.subscription, err)
	default:
		h.t.Fatalf("restoring %s: %v", o.field, err)
	}
}

// checkHostile holds the run against what the hostile phase requires
// beyond the five invariants: the watcher polled the customers a window
// did not target, no credential reached the off-origin server or left the
// watcher, and every oversized change reached the stream shrunk or as an
// ops event.
func (h *harness) checkHostile(res *result) (problems, summary []string) {
	h.mu.Lock()
	wins := append([]*hostileWin(nil), h.hostile...)
	h.mu.Unlock()
	var cycles []*events.CycleSummary
	for _, e := range res.stream {
		if e.Type == events.OpsCycleCompleted && e.Data.Cycle != nil {
			cycles = append(cycles, e.Data.Cycle)
		}
	}
	slices.SortFunc(cycles, func(a, b *events.CycleSummary) int { return a.StartedAt.Compare(b.StartedAt) })
	// removedSince counts the customers the simulator removed after the
	// second-to-last cycle with a complete customer list before c started
	// (a customer leaves the watcher's known set only after two complete
	// listings miss it) and before c ended: polling those fails (404)
	// whenever the listing fails and the known customers are polled.
	removedSince := func(i int) int {
		from, lists := time.Time{}, 0
		for j := i - 1; j >= 0; j-- {
			if cycles[j].CustomerListOK {
				if lists++; lists == 2 {
					from = cycles[j].StartedAt
					break
				}
			}
		}
		// DurationSeconds is wall time; the calendar runs speed times faster.
		end := cycles[i].StartedAt.Add(time.Duration(cycles[i].DurationSeconds * speed * float64(time.Second)))
		n := 0
		for _, mu := range res.log {
			if mu.Op == "customer.removed" && mu.At.After(from) && !mu.At.After(end) {
				n++
			}
		}
		return n
	}
	for _, w := range wins {
		for _, s := range w.steps {
			from, to := h.biz(s.from), h.biz(s.to)
			label := w.label
			if s.label != "" {
				label += ": " + s.label
			}
			var started []string
			ok := false
			for i, c := range cycles {
				if c.StartedAt.Before(from) || !c.StartedAt.Before(to) {
					continue
				}
				gone := removedSince(i)
				started = append(started, fmt.Sprintf("#%d %d/%d ok, %d failed, %d removed meanwhile, list ok %v, %.1fs", c.Number, c.CustomersOK, c.CustomersTotal, c.CustomersFailed, gone, c.CustomerListOK, c.DurationSeconds))
				// Every customer the window did not target was polled, and
				// polled successfully; a customer removed meanwhile may
				// fail; one added meanwhile may be unknown.
				if c.CustomersFailed <= len(w.targets)+gone && c.CustomersTotal >= w.known-gone-hostileSlack && (w.listing || c.CustomerListOK) {
					ok = true
				}
			}
			summary = append(summary, fmt.Sprintf("%s: on %s, %d cycles started (%s)", label, s.to.Sub(s.from).Round(100*time.Millisecond), len(started), strings.Join(started, "; ")))
			if !ok {
				problems = append(problems, fmt.Sprintf("the watcher stopped polling the other customers during %q (%s to %s, %d customers, %d targeted%s): no cycle that started while it was on polled them all (at least %d, and no failure beyond the %d targets and the customers removed meanwhile)%s; cycles: %s",
					label, from.Format(time.RFC3339), to.Format(time.RFC3339), w.known, len(w.targets),
					map[bool]string{true: fmt.Sprintf(", only %d of the %d cycles it needed completed within %s", s.ran, max(s.cycles, 1), hostileStepMax), false: ""}[s.capped], w.known-hostileSlack, len(w.targets),
					map[bool]string{true: "", false: " with the customer list ok"}[w.listing], strings.Join(started, "; ")))
			}
		}
		from, to := h.biz(w.steps[0].from), h.biz(w.steps[len(w.steps)-1].to)
		// The oversized changes reached the stream, shrunk (data.truncated)
		// or as an ops event naming what was dropped.
		for _, o := range w.oversized {
			en := oracle.SubscriptionEntity(o.customer, o.subscription)
			shrunk, dropped, about := 0, 0, 0
			for _, e := range res.stream {
				var raw struct {
					Truncated []json.RawMessage `json:"truncated"`
					Dropped   *struct {
						Entity string `json:"entity"`
					} `json:"dropped"`
				}
				if x, ok := oracle.EntityOf(e); ok && x == en {
					about++
					if json.Unmarshal(e.Event.Data, &raw) == nil && len(raw.Truncated) > 0 {
						shrunk++
					}
				}
				if e.Type == events.OpsEventDropped && json.Unmarshal(e.Event.Data, &raw) == nil && raw.Dropped != nil &&
					strings.Contains(raw.Dropped.Entity, o.subscription) {
					dropped++
				}
			}
			summary = append(summary, fmt.Sprintf("  oversized %s of %s: %d events about it, %d shrunk (data.truncated), %d %s", o.field, en, about, shrunk, dropped, events.OpsEventDropped))
			if shrunk+dropped == 0 {
				problems = append(problems, fmt.Sprintf("the oversized %s of %s (1.2 MB, changed every second from %s to %s) never reached the stream: no event about it carries data.truncated and no %s names it (%d events about it)",
					o.field, en, from.Format(time.RFC3339), to.Format(time.RFC3339), events.OpsEventDropped, about))
			}
		}
	}
	off := res.offOrigin
	summary = append(summary, fmt.Sprintf("off-origin server: %d requests, %d with an Authorization header %v", off.Requests, off.WithAuthorization, off.Paths))
	if off.WithAuthorization > 0 {
		problems = append(problems, fmt.Sprintf("the off-origin server received %d requests with an Authorization header (of %d; paths %v): the bearer token left for another origin",
			off.WithAuthorization, off.Requests, off.Paths))
	}
	problems = append(problems, h.checkNoToken(res)...)
	return problems, summary
}

// checkNoToken looks for the bearer token, raw or base64, everywhere text
// leaves the watcher: the stream, the dead-letter queue, the programs'
// logs, the watcher's state output.
func (h *harness) checkNoToken(res *result) []string {
	needles := [][]byte{[]byte(token), []byte(base64.StdEncoding.EncodeToString([]byte(token))), []byte(base64.RawURLEncoding.EncodeToString([]byte(token)))}
	var problems []string
	look := func(where string, b []byte) {
		for _, n := range needles {
			if i := bytes.Index(b, n); i >= 0 {
				lo, hi := max(0, i-120), min(len(b), i+len(n)+60)
				problems = append(problems, fmt.Sprintf("the bearer token (%q) leaked into %s: ...%s...", n, where, bytes.ReplaceAll(b[lo:hi], []byte("\n"), []byte(" "))))
				return
			}
		}
	}
	for _, e := range res.stream {
		look("the stream ("+e.String()+")", e.Event.Data)
	}
	for i, d := range res.dlqRaw {
		look(fmt.Sprintf("dead letter %d", i), d)
	}
	look("`watcher state`", res.watcherState)
	for _, c := range []*component{h.watcher, h.notifier} {
		c.mu.Lock()
		procs := append([]*proc(nil), c.procs...)
		c.mu.Unlock()
		for _, p := range procs {
			for _, f := range []string{p.stdout, p.stderr} {
				if b, err := os.ReadFile(f); err == nil {
					look(filepath.Base(f), b)
				}
			}
		}
	}
	slices.Sort(problems)
	return slices.Compact(problems)
}
