package oracle

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

const (
	src  = "https://pc.test"
	cust = "c1"
	sub  = "s1"
)

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func intp(n int) *int       { return &n }
func boolp(b bool) *bool    { return &b }
func i64p(n int64) *int64   { return &n }
func hours(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }

type builder struct {
	t   *testing.T
	seq uint64
}

// ev builds a real CloudEvent (events.New) and wraps it.
func (b *builder) ev(typ events.Type, rev uint64, at time.Time, d *events.Data) Event {
	b.t.Helper()
	info, _ := events.Lookup(typ)
	key := events.IDKey{Revision: rev}
	if d.Deadline != nil {
		key = events.IDKey{Deadline: *d.Deadline, Threshold: time.Duration(d.ThresholdSeconds) * time.Second}
	}
	key.Entity = events.EntityKey(info.Resource, d)
	d.Revision = rev
	_, ce, err := events.New(src, typ, key, at, d)
	if err != nil {
		b.t.Fatal(err)
	}
	b.seq++
	e, err := FromEvent(b.seq, ce)
	if err != nil {
		b.t.Fatal(err)
	}
	return e
}

func subView(q int, status string, ar bool) *events.View {
	return &events.View{ID: sub, Quantity: intp(q), Status: status, AutoRenewEnabled: boolp(ar)}
}

func subData(v *events.View) *events.Data {
	return &events.Data{CustomerID: cust, SubscriptionID: sub, After: v}
}

func quantity(old, nw int, v *events.View) *events.Data {
	d := subData(v)
	d.Old, d.New, d.Delta = events.JSONValue(old), events.JSONValue(nw), intp(nw-old)
	return d
}

func state(q int, status string, ar bool, services ...string) pcsim.State {
	return pcsim.State{At: hours(10), Customers: []pcsim.CustomerState{{ID: cust, CompanyName: "Contoso",
		Subscriptions:   []pcsim.SubscriptionState{{ID: sub, Quantity: q, Status: status, AutoRenewEnabled: ar}},
		ManagedServices: services}}}
}

// history is a consistent run: customer, subscription and managed service
// added, then seats 5 -> 8 and auto-renew off.
func history(b *builder) []Event {
	return []Event{
		b.ev(events.CustomerAdded, 1, hours(1), &events.Data{CustomerID: cust, After: &events.View{ID: cust}}),
		b.ev(events.SubscriptionCreated, 1, hours(1), subData(subView(5, "active", true))),
		b.ev(events.ManagedServiceAdded, 1, hours(1), &events.Data{CustomerID: cust, ManagedServiceID: "Exchange", After: &events.View{ID: "Exchange"}}),
		b.ev(events.SubscriptionQuantityChanged, 2, hours(3), quantity(5, 8, subView(8, "active", true))),
		b.ev(events.SubscriptionAutoRenewChanged, 3, hours(4), func() *events.Data {
			d := subData(subView(8, "active", false))
			d.Old, d.New = events.JSONValue(true), events.JSONValue(false)
			return d
		}()),
	}
}

func apply(m *Model, evs []Event) []string {
	var p []string
	for _, e := range evs {
		p = append(p, m.Apply(e)...)
	}
	return p
}

func wantProblem(t *testing.T, problems []string, substrs ...string) {
	t.Helper()
	joined := strings.Join(problems, "\n")
	for _, s := range substrs {
		if !strings.Contains(joined, s) {
			t.Errorf("want a problem containing %q; got:\n%s", s, joined)
		}
	}
}

func TestModelReplaysToState(t *testing.T) {
	b := &builder{t: t}
	m := NewModel()
	if p := apply(m, history(b)); len(p) > 0 {
		t.Fatal(p)
	}
	if p := m.Compare(state(8, "active", false, "Exchange")); len(p) > 0 {
		t.Fatal(p)
	}
	if st, ok := m.Subscription(cust, sub); !ok || st != (SubState{8, "active", false}) {
		t.Fatalf("subscription %+v %v", st, ok)
	}
}

func TestModelCatchesWhatWentWrong(t *testing.T) {
	t.Run("completeness", func(t *testing.T) {
		b := &builder{t: t}
		m := NewModel()
		apply(m, history(b))
		wantProblem(t, m.Compare(state(9, "active", false)),
			"completeness: subscription c1/s1: the events say quantity 8, status active, auto-renew false, the simulator has quantity 9",
			"completeness: managed service c1/Exchange is gone from the simulator but no event removed it")
	})
	t.Run("duplicate id", func(t *testing.T) {
		b := &builder{t: t}
		evs := history(b)
		m := NewModel()
		wantProblem(t, append(apply(m, evs), m.Apply(evs[3])...), "duplicate: event id "+evs[3].ID+" is in the stream twice")
	})
	t.Run("lost revision", func(t *testing.T) {
		b := &builder{t: t}
		evs := history(b)
		m := NewModel()
		p := apply(m, append(evs[:3:3], evs[4]))
		wantProblem(t, append(p, m.Flush()...), "event lost: subscription c1/s1: revision 3 follows revision 1, so revision(s) 2 never reached the stream: subscription.auto-renew-changed")
	})
	t.Run("dropped revision", func(t *testing.T) {
		// An ops.event-dropped notice in the dropped event's place accounts
		// for its revision; a notice about another entity does not.
		for _, tc := range []struct {
			name   string
			entity string
			lost   bool
		}{
			{"notice about it", "subscription/" + cust + "/" + sub, false},
			{"notice about another subscription", "subscription/" + cust + "/s2", true},
			{"notice about a customer", "customer/" + cust + "/", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := &builder{t: t}
				evs := history(b)
				notice := b.ev(events.OpsEventDropped, 0, hours(3), &events.Data{CustomerID: cust, Dropped: &events.DroppedEvent{
					ID: evs[3].ID, Type: evs[3].Type, Subject: "pcwatch.events.subscription.quantity-changed.c1.s1", Entity: tc.entity, Size: 2 << 20, Limit: 1 << 20}})
				m := NewModel()
				p := apply(m, append(evs[:3:3], notice, evs[4]))
				p = append(p, m.Flush()...)
				lost := strings.Contains(strings.Join(p, "\n"), "event lost: subscription c1/s1: revision 3 follows revision 1")
				if lost != tc.lost {
					t.Errorf("revision 2 reported lost: %v, want %v; problems:\n%s", lost, tc.lost, strings.Join(p, "\n"))
				}
				if len(m.Dropped) != 1 || !strings.Contains(m.Dropped[0], evs[3].ID) || (m.Explained == 1) == tc.lost {
					t.Errorf("dropped %q, explained %d", m.Dropped, m.Explained)
				}
			})
		}
	})
	t.Run("wrong old value", func(t *testing.T) {
		b := &builder{t: t}
		evs := history(b)
		evs[3] = b.ev(events.SubscriptionQuantityChanged, 2, hours(3), quantity(6, 8, subView(8, "active", true)))
		m := NewModel()
		p := apply(m, evs)
		wantProblem(t, append(p, m.Flush()...), "subscription c1/s1: old quantity 6 does not follow from the state the earlier events built (quantity 5")
	})
	t.Run("same transition twice", func(t *testing.T) {
		b := &builder{t: t}
		evs := history(b)
		again := b.ev(events.SubscriptionQuantityChanged, 2, hours(5), quantity(5, 9, subView(9, "active", true)))
		m := NewModel()
		wantProblem(t, apply(m, append(evs, again)), "duplicate: subscription c1/s1: transition subscription.quantity-changed revision 2 reported twice")
	})
	t.Run("change after its customer's removal", func(t *testing.T) {
		b := &builder{t: t}
		evs := history(b)
		gone := b.ev(events.CustomerRemoved, 2, hours(3), &events.Data{CustomerID: cust, Before: &events.View{ID: cust}})
		m := NewModel()
		p := apply(m, append(evs[:3:3], gone, evs[4]))
		wantProblem(t, append(p, m.Flush()...), "subscription c1/s1: change detected after its customer was removed")
	})
}

func mut(seq uint64, at time.Time, op, kind, id string) pcsim.Mutation {
	return pcsim.Mutation{Seq: seq, At: at, Op: op, CustomerID: cust, ResourceKind: kind, ResourceID: id}
}

func TestInventions(t *testing.T) {
	b := &builder{t: t}
	evs := history(b)
	cycles := Cycles{{Number: 1, StartedAt: hours(1)}, {Number: 2, StartedAt: hours(2)}, {Number: 3, StartedAt: hours(3)},
		{Number: 4, StartedAt: hours(4)}, {Number: 5, StartedAt: hours(5)}, {Number: 6, StartedAt: hours(6)}}
	initial := pcsim.State{Customers: []pcsim.CustomerState{{ID: cust, Subscriptions: []pcsim.SubscriptionState{{ID: sub}}, ManagedServices: []string{"Exchange"}}}}
	good := []pcsim.Mutation{
		mut(1, hours(2).Add(30*time.Minute), "subscription.quantity", pcsim.ResourceSubscription, sub),
		mut(2, hours(4).Add(10*time.Minute), "subscription.autorenew", pcsim.ResourceSubscription, sub),
	}
	if p, st := CheckInventions(evs, Truth{Initial: initial, Log: good}, cycles); len(p) > 0 || st.ChangeRevisions != 2 {
		t.Fatalf("%v %+v", p, st)
	}
	// One mutation for two change revisions; a removal nobody made.
	removed := b.ev(events.SubscriptionRemoved, 4, hours(5), &events.Data{CustomerID: cust, SubscriptionID: sub, Before: subView(8, "active", false)})
	p, _ := CheckInventions(append(evs, removed), Truth{Initial: initial, Log: good[:1]}, cycles)
	wantProblem(t, p, "invented change: subscription c1/s1 has 2 change revisions but the simulator logged only 1 mutation(s) of it",
		"invented removal: subscription c1/s1 removed but the simulator never removed it: subscription.removed")
	// A change noticed before the simulator made it.
	late := []pcsim.Mutation{mut(1, hours(4).Add(30*time.Minute), "subscription.quantity", pcsim.ResourceSubscription, sub), good[1]}
	p, _ = CheckInventions(evs, Truth{Initial: initial, Log: late}, cycles)
	wantProblem(t, p, "invented change: subscription c1/s1: its change number 1 was detected at 2026-03-02T11:00:00Z but the simulator had logged only 0 mutation(s) of it")
	// An entity the simulator never had.
	other := b.ev(events.SubscriptionCreated, 1, hours(2), &events.Data{CustomerID: cust, SubscriptionID: "ghost", After: subView(1, "active", true)})
	p, _ = CheckInventions([]Event{other}, Truth{Initial: initial}, cycles)
	wantProblem(t, p, "invented entity: subscription c1/ghost appeared but the simulator never had it")
}

func deadlineEvent(b *builder, typ events.Type, d time.Time, th time.Duration, at time.Time, late bool) Event {
	data := subData(subView(5, "active", true))
	data.Deadline, data.ThresholdSeconds, data.Late = &d, int64(th/time.Second), boolp(late)
	if typ != events.SubscriptionCancellationClosed {
		data.Threshold, data.RemainingSeconds = events.FormatDuration(th), i64p(int64(d.Sub(at)/time.Second))
		data.Remaining = events.FormatDuration(d.Sub(at))
	} else {
		data.ThresholdSeconds = 0
	}
	return b.ev(typ, 0, at, data)
}

func TestDeadlines(t *testing.T) {
	cancelBy := hours(100)
	created := func(b *builder) Event {
		v := subView(5, "active", true)
		v.CancellationAllowedUntilDate = &cancelBy
		return b.ev(events.SubscriptionCreated, 1, hours(1), subData(v))
	}
	sim := pcsim.State{At: hours(0), Customers: []pcsim.CustomerState{{ID: cust, Subscriptions: []pcsim.SubscriptionState{
		{ID: sub, Status: "active", Quantity: 5, AutoRenewEnabled: true, CancellationAllowedUntil: &cancelBy}}}}}
	var cycles Cycles
	for h := 1; h <= 120; h++ {
		cycles = append(cycles, Cycle{Number: uint64(h), StartedAt: hours(h)})
	}
	in := func(evs []Event, up ...Span) DeadlineInput {
		return DeadlineInput{Events: evs, Truth: Truth{Initial: sim, Final: sim}, Cycles: cycles, Up: up, End: hours(110),
			MinUp: 3 * time.Hour, Cancellation: []time.Duration{72 * time.Hour, 24 * time.Hour, 4 * time.Hour}}
	}
	allUp := Span{From: hours(0), To: hours(120)}
	t.Run("all fired", func(t *testing.T) {
		b := &builder{t: t}
		evs := []Event{created(b),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 72*time.Hour, hours(28).Add(20*time.Minute), false),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 24*time.Hour, hours(76).Add(5*time.Minute), true),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 4*time.Hour, hours(96).Add(5*time.Minute), true),
			deadlineEvent(b, events.SubscriptionCancellationClosed, cancelBy, 0, hours(100).Add(time.Minute), false)}
		p, st := CheckDeadlines(in(evs, allUp))
		if len(p) > 0 || st.Required != 3 {
			t.Fatalf("%v %+v", p, st)
		}
	})
	t.Run("lost, early, twice", func(t *testing.T) {
		b := &builder{t: t}
		evs := []Event{created(b),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 72*time.Hour, hours(27), false), // before its threshold
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 4*time.Hour, hours(96).Add(5*time.Minute), true),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 4*time.Hour, hours(97), true)}
		p, _ := CheckDeadlines(in(evs, allUp))
		wantProblem(t, p, "fired at 2026-03-03T11:00:00Z, outside its threshold [2026-03-03T12:00:00Z, 2026-03-06T12:00:00Z)",
			"deadline missed (event lost?): subscription c1/s1: cancellation window at 2026-03-06T12:00:00Z (from the initial state): threshold 24h crossed at 2026-03-05T12:00:00Z never fired",
			"duplicate: subscription c1/s1: cancellation window at 2026-03-06T12:00:00Z threshold 14400s fired 2 times")
	})
	t.Run("watcher down: a tighter late event covers", func(t *testing.T) {
		b := &builder{t: t}
		evs := []Event{created(b),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 72*time.Hour, hours(28).Add(20*time.Minute), false),
			deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 4*time.Hour, hours(97), true)}
		p, st := CheckDeadlines(in(evs, Span{From: hours(0), To: hours(50)}, Span{From: hours(97), To: hours(120)}))
		if len(p) > 0 || st.Required != 2 || st.Excluded["watcher down for the threshold"] != 1 {
			t.Fatalf("%v %+v", p, st)
		}
	})
	t.Run("timing and late disagree", func(t *testing.T) {
		b := &builder{t: t}
		fsi := deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 72*time.Hour, hours(28).Add(20*time.Minute), true)
		fsi.Data.Timing = events.TimingFirstSeenInside
		bogus := deadlineEvent(b, events.SubscriptionCancellationClosing, cancelBy, 24*time.Hour, hours(76).Add(5*time.Minute), false)
		bogus.Data.Timing = "whenever"
		p, _ := CheckDeadlines(in([]Event{created(b), fsi, bogus}, allUp))
		wantProblem(t, p, `timing "first-seen-inside" with late true`, `timing "whenever" with late false`)
	})
	t.Run("closed for a window never seen open", func(t *testing.T) {
		b := &builder{t: t}
		v := subView(5, "active", true)
		v.CancellationAllowedUntilDate = &cancelBy
		evs := []Event{b.ev(events.SubscriptionCreated, 1, hours(101), subData(v)),
			deadlineEvent(b, events.SubscriptionCancellationClosed, cancelBy, 0, hours(101), false)}
		p, _ := CheckDeadlines(in(evs, allUp))
		wantProblem(t, p, "cancellation-window-closed for a window no earlier event showed open")
	})
}

func TestDelivery(t *testing.T) {
	b := &builder{t: t}
	evs := history(b)
	all := func(Event) bool { return true }
	broken := func(e Event) bool { return e.Type == events.ManagedServiceAdded }
	w0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rs []Receipt
	for i, e := range evs {
		rs = append(rs, Receipt{EventID: e.ID, WebhookID: e.ID, At: w0.Add(time.Duration(i) * time.Second)})
	}
	dlq := []DLQEntry{{Seq: 1, EventID: evs[2].ID, Channel: "broken"}}
	in := DeliveryInput{Stream: evs, Routed: all, Receipts: rs, DLQ: dlq, DLQChannel: "broken", DLQRouted: broken}
	if p, st := CheckDelivery(in); len(p) > 0 || st.Expected != len(evs) {
		t.Fatalf("%v %+v", p, st)
	}
	// A resend after a notifier kill is the documented window; without a
	// kill it is a duplicate.
	in.Receipts = append(rs, Receipt{EventID: evs[1].ID, WebhookID: evs[1].ID, At: w0.Add(10 * time.Second)})
	in.NotifierKills = []time.Time{w0.Add(5 * time.Second)}
	if p, st := CheckDelivery(in); len(p) > 0 || st.Duplicates != 1 {
		t.Fatalf("%v %+v", p, st)
	}
	// Handled just after the kill, sent before it.
	in.NotifierKills = []time.Time{w0.Add(500 * time.Millisecond)}
	in.KillSlack = time.Second
	if p, st := CheckDelivery(in); len(p) > 0 || st.Duplicates != 1 {
		t.Fatalf("%v %+v", p, st)
	}
	in.NotifierKills, in.KillSlack = nil, 0
	p, _ := CheckDelivery(in)
	wantProblem(t, p, "delivery: duplicate: subscription.created customers/c1/subscriptions/s1")
	// Lost, and a dead letter too many.
	in.Receipts = rs[1:]
	in.DLQ = append(dlq, DLQEntry{Seq: 2, EventID: evs[2].ID, Channel: "broken"}, DLQEntry{Seq: 3, EventID: evs[3].ID, Channel: "hook"})
	p, _ = CheckDelivery(in)
	wantProblem(t, p, "event lost on the way to the webhook: customer.added customers/c1",
		"is in the dead-letter queue 2 times", "the dead-letter queue holds subscription.quantity-changed")
}

func TestReconstructionFollowsTheLog(t *testing.T) {
	// A purchase, a renewal, a cancellation: the windows and their spans.
	created, _ := json.Marshal(map[string]any{"status": "active", "cancellationAllowedUntilDate": hours(168).Format(time.RFC3339Nano)})
	var newSub any
	_ = json.Unmarshal(created, &newSub)
	log := []pcsim.Mutation{
		{Seq: 1, At: hours(0), Op: "subscription.created", CustomerID: cust, ResourceKind: pcsim.ResourceSubscription, ResourceID: sub, New: newSub},
		{Seq: 2, At: hours(200), Op: "subscription.renewed", CustomerID: cust, ResourceKind: pcsim.ResourceSubscription, ResourceID: sub},
		{Seq: 3, At: hours(250), Op: "subscription.status", CustomerID: cust, ResourceKind: pcsim.ResourceSubscription, ResourceID: sub, New: "deleted"},
	}
	wins, subs, p := reconstruct(Truth{Log: log})
	if len(p) > 0 || len(wins) != 2 {
		t.Fatalf("%v %d windows", p, len(wins))
	}
	got := fmt.Sprintf("%s..%s %s; %s..%s %s", wins[0].from.Format("02T15"), wins[0].until.Format("02T15"), wins[0].d.Format("02T15"),
		wins[1].from.Format("02T15"), wins[1].until.Format("02T15"), wins[1].d.Format("02T15"))
	if want := "02T08..10T16 09T08; 10T16..12T18 17T16"; got != want {
		t.Fatalf("windows %s, want %s", got, want)
	}
	final := pcsim.State{Customers: []pcsim.CustomerState{{ID: cust, Subscriptions: []pcsim.SubscriptionState{{ID: sub, Status: "deleted"}}}}}
	if p := selfCheck(subs, final); len(p) > 0 {
		t.Fatal(p)
	}
}

func TestSightings(t *testing.T) {
	b := &builder{t: t}
	var cycles Cycles
	for h := 1; h <= 4; h++ {
		cycles = append(cycles, Cycle{Number: uint64(h), StartedAt: hours(h), CustomerListOK: true})
	}
	log := []pcsim.Mutation{
		mut(1, hours(1).Add(10*time.Minute), "subscription.created", pcsim.ResourceSubscription, "brief"),
		mut(2, hours(1).Add(50*time.Minute), "subscription.removed", pcsim.ResourceSubscription, "brief"),
		mut(3, hours(1).Add(30*time.Minute), "subscription.created", pcsim.ResourceSubscription, "seen"),
		mut(4, hours(3).Add(30*time.Minute), "subscription.removed", pcsim.ResourceSubscription, "seen"),
	}
	// "brief" never spanned a cycle: nobody had to see it. "seen" spanned
	// cycle 2 (hours 2..3) and must be in the stream.
	p, n := CheckSightings(nil, Truth{Log: log}, cycles)
	wantProblem(t, p, "event lost: subscription c1/seen (from mutation 3 (subscription.created) until 2026-03-02T11:30:00Z) lived through a complete cycle")
	if n != 1 || len(p) != 1 {
		t.Fatalf("%d checked: %v", n, p)
	}
	seen := b.ev(events.SubscriptionCreated, 1, hours(2), &events.Data{CustomerID: cust, SubscriptionID: "seen", After: subView(1, "active", true)})
	if p, _ := CheckSightings([]Event{seen}, Truth{Log: log}, cycles); len(p) > 0 {
		t.Fatal(p)
	}
}
