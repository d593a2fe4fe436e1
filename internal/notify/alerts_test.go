package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
)

// alertStart is the fake clock's start in the alert tests.
var alertStart = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// warningEvent is a deadline warning of type typ about subscription sub of
// customer c, detected at `at`, for a deadline at deadline.
func warningEvent(t testing.TB, typ events.Type, c string, sub int, at, deadline time.Time, threshold time.Duration) events.Envelope {
	t.Helper()
	left := int64(deadline.Sub(at) / time.Second)
	d := &events.Data{CustomerID: c, CustomerName: "Customer " + c, SubscriptionID: fmt.Sprintf("sub-%d", sub),
		After:    &events.View{ID: fmt.Sprintf("sub-%d", sub), OfferName: "Microsoft 365 Business Basic"},
		Deadline: &deadline, Threshold: events.FormatDuration(threshold), ThresholdSeconds: int64(threshold / time.Second),
		RemainingSeconds: &left, Remaining: events.FormatDuration(deadline.Sub(at))}
	env, _, err := events.New("https://pc.example/partner", typ,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/sub-%d", c, sub), Deadline: deadline, Threshold: threshold}, at, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// alertEnv is a notifier on a fake clock whose alert scheduler and silence
// poller run every few milliseconds of real time.
type alertEnv struct {
	*env
	clk *clock.Fake
	rc  *receiver
	rec *recorder
	n   *notifier
	cfg *Config
}

func startAlerts(t *testing.T, routes string) *alertEnv {
	t.Helper()
	e := newEnv(t)
	a := &alertEnv{env: e, clk: clock.NewFake(alertStart), rc: newReceiver(t, nil), rec: newRecorder()}
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s/hook", secret_env: S, timeout: 2s}
%s
delivery: {retry_initial: 10ms, retry_max: 40ms}
`, a.rc.URL, routes), map[string]string{"S": testSecret})
	h := a.rec.hooks()
	h.alertEvery = 5 * time.Millisecond
	a.cfg = cfg
	a.n = startNotifierWith(t, Options{Config: cfg, NATS: natsconn.Options{URL: e.url}, Clock: a.clk, hooks: h})
	return a
}

// sent returns the webhook requests the receiver accepted, in order.
func (a *alertEnv) sent() []recorded {
	var out []recorded
	for _, r := range a.rc.requests() {
		if r.status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

func (a *alertEnv) waitSent(t *testing.T, what string, n int) []recorded {
	t.Helper()
	waitFor(t, what, func() bool { return len(a.sent()) >= n }, a.rc.changed, every(t, 10*time.Millisecond))
	return a.sent()
}

// quiet checks that nothing more is sent over a few scheduler rounds.
func (a *alertEnv) quiet(t *testing.T, n int) {
	t.Helper()
	for range 20 {
		waitFor(t, "a scheduler round", func() bool { return true }, every(t, 5*time.Millisecond))
	}
	if got := a.sent(); len(got) != n {
		t.Fatalf("%d webhooks sent, want %d: %v", len(got), n, notices(got))
	}
}

// settled waits until the channel reported the event delivered: its alert
// record is written before that.
func (a *alertEnv) settled(t *testing.T, id string) {
	t.Helper()
	waitFor(t, "delivered "+id, func() bool { return slices.Contains(a.rec.get("hook", id), ResultDelivered) }, a.rec.changed)
}

func notices(rs []recorded) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.header.Get("X-Pcwatch-Notice")+":"+r.id)
	}
	return out
}

func addSilence(t *testing.T, a *alertEnv, m Match, start, end time.Time) string {
	t.Helper()
	id, err := AddSilence(context.Background(), a.js, RuntimeSilence{Match: m, StartsAt: start, EndsAt: end, CreatedBy: "ops@example.com", Comment: "maintenance"}, a.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The poller reads it within a round.
	waitFor(t, "the silence in force", func() bool {
		rt := a.cfg.runtime.Load()
		return rt != nil && slices.ContainsFunc(*rt, func(s compiledSilence) bool { return s.id == id })
	}, every(t, 5*time.Millisecond))
	return id
}

// A runtime silence holds a deadline warning until it ends, then it is
// sent, marked as released; other events under the silence are dropped.
func TestSilenceHoldsDeadlineWarningUntilItEnds(t *testing.T) {
	a := startAlerts(t, "default: {channels: [hook]}")
	addSilence(t, a, Match{Customers: []string{"c1"}}, alertStart, alertStart.Add(2*time.Hour))
	warn := warningEvent(t, events.SubscriptionCancellationClosing, "c1", 1, alertStart, alertStart.Add(72*time.Hour), 72*time.Hour)
	other := quantityEvent(t, "c1", 2, 1, 5, 6)
	publish(t, a.js, warn, "")
	publish(t, a.js, other, "")
	waitFor(t, "held and silenced", func() bool {
		return slices.Equal(a.rec.get("hook", warn.ID), []string{ResultHeld}) && slices.Equal(a.rec.get("hook", other.ID), []string{ResultSilenced})
	}, a.rec.changed)
	a.quiet(t, 0)

	a.clk.Set(alertStart.Add(2*time.Hour + time.Second))
	got := a.waitSent(t, "the held warning after the silence", 1)
	if got[0].id != warn.ID || got[0].header.Get("X-Pcwatch-Notice") != NoticeReleased || !strings.Contains(got[0].header.Get("X-Pcwatch-Notice-Reason"), "maintenance (ops@example.com)") {
		t.Fatalf("sent %v %v", got[0].id, got[0].header)
	}
	if string(got[0].body) != string(warn.Body) {
		t.Error("the held warning's body is not the event")
	}
	a.quiet(t, 1)
}

// A silence that lasts past the deadline is overridden silence_lead before
// it; a warning that arrives inside the lead is sent at once.
func TestSilencePastTheDeadlineIsOverridden(t *testing.T) {
	a := startAlerts(t, "default: {channels: [hook]}\nalerts: {silence_lead: 12h}")
	addSilence(t, a, Match{Types: []string{"subscription.*"}}, alertStart, alertStart.Add(30*24*time.Hour))
	deadline := alertStart.Add(72 * time.Hour)
	warn := warningEvent(t, events.SubscriptionRenewalApproaching, "c1", 1, alertStart, deadline, 72*time.Hour)
	late := warningEvent(t, events.SubscriptionRefundClosing, "c2", 2, alertStart, alertStart.Add(6*time.Hour), 24*time.Hour)
	publish(t, a.js, warn, "")
	publish(t, a.js, late, "")
	got := a.waitSent(t, "the warning inside the lead", 1)
	if got[0].id != late.ID || got[0].header.Get("X-Pcwatch-Notice") != NoticeOverride {
		t.Fatalf("sent %v", notices(got))
	}
	waitFor(t, "held", func() bool { return slices.Equal(a.rec.get("hook", warn.ID), []string{ResultHeld}) }, a.rec.changed)

	a.clk.Set(deadline.Add(-12*time.Hour - time.Minute))
	a.quiet(t, 1)
	a.clk.Set(deadline.Add(-12 * time.Hour))
	got = a.waitSent(t, "the override before the deadline", 2)
	if got[1].id != warn.ID || got[1].header.Get("X-Pcwatch-Notice") != NoticeOverride {
		t.Fatalf("sent %v", notices(got))
	}
	a.quiet(t, 2)
}

// Reminders repeat an open warning every repeat_interval, each with its
// own webhook-id and the first one's as thread; the user's action (seats
// reduced) resolves it: one resolved notice, no more reminders.
func TestRemindersUntilTheUserActs(t *testing.T) {
	a := startAlerts(t, `
routes:
  - match: {types: ["subscription.*-window-closing"]}
    channels: [hook]
    repeat_interval: 24h
`)
	deadline := alertStart.Add(7 * 24 * time.Hour)
	warn := warningEvent(t, events.SubscriptionCancellationClosing, "c1", 1, alertStart, deadline, 7*24*time.Hour)
	publish(t, a.js, warn, "")
	a.waitSent(t, "the warning", 1)
	a.settled(t, warn.ID)
	for i := 1; i <= 2; i++ {
		a.clk.Set(alertStart.Add(time.Duration(i) * 24 * time.Hour))
		got := a.waitSent(t, fmt.Sprintf("reminder %d", i), 1+i)
		r := got[i]
		if r.id != fmt.Sprintf("%s-reminder-%d", warn.ID, i) || r.header.Get("X-Pcwatch-Notice") != NoticeReminder || r.header.Get("X-Pcwatch-Thread-Id") != warn.ID {
			t.Fatalf("reminder %d: %v %v", i, r.id, r.header)
		}
	}
	// A quantity change of another subscription resolves nothing; an
	// increase of this one neither; a reduction does.
	publish(t, a.js, quantityEvent(t, "c1", 9, 1, 5, 3), "")
	publish(t, a.js, quantityEvent(t, "c1", 1, 1, 5, 6), "")
	a.quiet(t, 3)
	publish(t, a.js, quantityEvent(t, "c1", 1, 2, 6, 2), "")
	got := a.waitSent(t, "the resolved notice", 4)
	if r := got[3]; r.id != warn.ID+"-resolved" || r.header.Get("X-Pcwatch-Notice") != NoticeResolved || !strings.Contains(r.header.Get("X-Pcwatch-Notice-Reason"), "seats reduced (6 -> 2)") {
		t.Fatalf("resolved: %v %v", r.id, r.header)
	}
	a.clk.Set(alertStart.Add(5 * 24 * time.Hour))
	a.quiet(t, 4)
}

// Reminders stop when the deadline passes, with a resolved notice; a
// route without send_resolved only stops.
func TestRemindersStopAtTheDeadline(t *testing.T) {
	for _, sendResolved := range []bool{true, false} {
		t.Run(fmt.Sprintf("send_resolved=%v", sendResolved), func(t *testing.T) {
			a := startAlerts(t, fmt.Sprintf(`
routes:
  - match: {types: [subscription.renewal-approaching]}
    channels: [hook]
    repeat_interval: 10h
    send_resolved: %v
`, sendResolved))
			deadline := alertStart.Add(24 * time.Hour)
			warn := warningEvent(t, events.SubscriptionRenewalApproaching, "c1", 1, alertStart, deadline, 24*time.Hour)
			publish(t, a.js, warn, "")
			a.waitSent(t, "the warning", 1)
			a.settled(t, warn.ID)
			a.clk.Set(alertStart.Add(10 * time.Hour))
			a.waitSent(t, "reminder 1", 2)
			a.clk.Set(alertStart.Add(20 * time.Hour))
			a.waitSent(t, "reminder 2", 3)
			// The next reminder would fall after the deadline.
			a.clk.Set(deadline)
			want := 3
			if sendResolved {
				want = 4
				got := a.waitSent(t, "resolved at the deadline", 4)
				if got[3].header.Get("X-Pcwatch-Notice") != NoticeResolved || !strings.Contains(got[3].header.Get("X-Pcwatch-Notice-Reason"), "deadline passed") {
					t.Fatalf("sent %v", notices(got))
				}
			}
			a.clk.Set(deadline.Add(48 * time.Hour))
			a.quiet(t, want)
		})
	}
}

// A notifier restart keeps the open alerts (they are in NATS): the
// reminder comes from the new process, once.
func TestRemindersSurviveARestart(t *testing.T) {
	a := startAlerts(t, `
routes:
  - match: {types: [subscription.trial-ending]}
    channels: [hook]
    repeat_interval: 1h
`)
	deadline := alertStart.Add(24 * time.Hour)
	warn := warningEvent(t, events.SubscriptionTrialEnding, "c1", 1, alertStart, deadline, 24*time.Hour)
	publish(t, a.js, warn, "")
	a.waitSent(t, "the warning", 1)
	a.settled(t, warn.ID)
	cfg := a.cfg
	a.n.stop()
	h := a.rec.hooks()
	h.alertEvery = 5 * time.Millisecond
	a.n = startNotifierWith(t, Options{Config: cfg, NATS: natsconn.Options{URL: a.url}, Clock: a.clk, hooks: h})
	a.clk.Set(alertStart.Add(time.Hour))
	got := a.waitSent(t, "the reminder after the restart", 2)
	if got[1].id != warn.ID+"-reminder-1" {
		t.Fatalf("sent %v", notices(got))
	}
	// auto-renew turned off resolves a trial.
	off := autoRenewEvent(t, "c1", 1, false)
	publish(t, a.js, off, "")
	got = a.waitSent(t, "resolved", 3)
	if got[2].header.Get("X-Pcwatch-Notice") != NoticeResolved || !strings.Contains(got[2].header.Get("X-Pcwatch-Notice-Reason"), "auto-renew turned off") {
		t.Fatalf("sent %v", notices(got))
	}
	a.clk.Set(alertStart.Add(3 * time.Hour))
	a.quiet(t, 3)
}

func autoRenewEvent(t testing.TB, c string, sub int, on bool) events.Envelope {
	t.Helper()
	d := &events.Data{CustomerID: c, CustomerName: "Customer " + c, SubscriptionID: fmt.Sprintf("sub-%d", sub), Revision: 7,
		After: &events.View{ID: fmt.Sprintf("sub-%d", sub)}, Old: events.JSONValue(!on), New: events.JSONValue(on)}
	env, _, err := events.New("https://pc.example/partner", events.SubscriptionAutoRenewChanged,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/sub-%d", c, sub), Revision: 7}, alertStart, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Property: whatever the silences (any number, overlapping, starting
// before or after the warning, ending before, at or long after the
// deadline), the lead and the scheduler's period (at most half the lead),
// a deadline warning is sent before its deadline, and never while a
// silence mutes it unless the deadline is within the lead. The decisions
// are the notifier's own: Config.Route with runtime silences, and
// holdDecision, as handle and fire call them, stepped on a fake timeline.
func TestPropertyNoSilenceDelaysADeadlinePastIt(t *testing.T) {
	cfg := mustConfig(t, "channels:\n  hook: {kind: webhook, url: \"https://e.com\"}\ndefault: {channels: [hook]}\n", nil)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		lead := time.Duration(1+rnd.IntN(48)) * time.Hour
		tick := time.Duration(1+rnd.Int64N(int64(lead/2/time.Second))) * time.Second
		arrive := alertStart.Add(time.Duration(rnd.Int64N(int64(240 * time.Hour))))
		deadline := arrive.Add(time.Duration(1+rnd.Int64N(int64(500*time.Hour/time.Second))) * time.Second)
		var set []compiledSilence
		for range rnd.IntN(5) {
			from := arrive.Add(time.Duration(rnd.Int64N(int64(400*time.Hour))) - 100*time.Hour)
			until := from.Add(time.Duration(1+rnd.Int64N(int64(900*time.Hour/time.Second))) * time.Second)
			cs, err := compileSilence(RuntimeSilence{ID: fmt.Sprint(len(set)), Match: Match{Customers: []string{"c1"}}, StartsAt: from, EndsAt: until})
			if err != nil {
				t.Fatal(err)
			}
			set = append(set, cs)
		}
		cfg.runtime.Store(&set)
		env := warningEvent(t, events.SubscriptionCancellationClosing, "c1", 1, arrive, deadline, 72*time.Hour)
		ev, d, err := decodeEvent(env.Body)
		if err != nil {
			t.Fatal(err)
		}

		// handle at arrival, then fire at every tick while held.
		now := arrive
		sentAt := time.Time{}
		for step := 0; sentAt.IsZero(); step++ {
			if now.After(deadline) || step > 1_000_000 {
				t.Fatalf("case %d: never sent before the deadline %s (lead %s, tick %s, arrive %s, silences %v)", i, deadline, lead, tick, arrive, set)
			}
			dec := cfg.Route(ev, d, now)
			hold, until, override := holdDecision(now, deadline, lead, dec)
			switch {
			case !hold:
				sentAt = now
				if override && deadline.Sub(now) > lead {
					t.Fatalf("case %d: a silence was overridden %s before the deadline, more than the lead %s", i, deadline.Sub(now), lead)
				}
				if !override && dec.Silenced {
					t.Fatalf("case %d: sent while silenced without override", i)
				}
			case !until.After(now):
				t.Fatalf("case %d: held until %s, not after now %s", i, until, now)
			default:
				// The scheduler fires on the first tick at or after until.
				next := now.Add(tick)
				for next.Before(until) {
					next = next.Add(tick)
				}
				now = next
			}
		}
		if !sentAt.Before(deadline) {
			t.Fatalf("case %d: sent at %s, deadline %s", i, sentAt, deadline)
		}
	}
}

// A hostile or broken silences value never takes effect: the last good
// list stays in force; add and expire refuse bad input with the reason.
func TestRuntimeSilencesValidation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := alertStart
	if _, err := AddSilence(ctx, e.js, RuntimeSilence{Match: Match{}, EndsAt: now.Add(time.Hour)}, now); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty match: %v", err)
	}
	if _, err := AddSilence(ctx, e.js, RuntimeSilence{Match: Match{Types: []string{"nope.*"}}, EndsAt: now.Add(time.Hour)}, now); err == nil || !strings.Contains(err.Error(), "matches no event type") {
		t.Errorf("bad type: %v", err)
	}
	if _, err := AddSilence(ctx, e.js, RuntimeSilence{Match: Match{Customers: []string{"c"}}, EndsAt: now.Add(-time.Hour)}, now); err == nil {
		t.Error("a silence in the past was accepted")
	}
	id, err := AddSilence(ctx, e.js, RuntimeSilence{Match: Match{Customers: []string{"c"}}, EndsAt: now.Add(time.Hour), Comment: "ok"}, now)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ListSilences(ctx, e.js)
	if err != nil || len(l) != 1 || l[0].ID != id || !l[0].Active(now) {
		t.Fatalf("list %+v %v", l, err)
	}
	if err := ExpireSilence(ctx, e.js, id, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ExpireSilence(ctx, e.js, "nope", now); err == nil || !strings.Contains(err.Error(), "no silence with id") {
		t.Errorf("expire unknown: %v", err)
	}
	if l, _ := ListSilences(ctx, e.js); len(l) != 1 || l[0].Active(now.Add(2*time.Minute)) {
		t.Errorf("expired silence still active: %+v", l)
	}

	cfg := mustConfig(t, "channels:\n  hook: {kind: webhook, url: \"https://e.com\"}\ndefault: {channels: [hook]}\n", nil)
	kv, err := e.js.KeyValue(ctx, SilencesBucket)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	p := &silencePoller{kv: kv, cfg: cfg, log: slog.New(slog.NewTextHandler(logs, nil))}
	p.refresh(ctx)
	if rt := cfg.runtime.Load(); rt == nil || len(*rt) != 1 {
		t.Fatalf("runtime %v", rt)
	}
	for _, bad := range []string{
		`not json`,
		`{"silences":[{"id":"x","match":{},"startsAt":"2026-01-01T00:00:00Z","endsAt":"2027-01-01T00:00:00Z"}]}`,
		`{"silences":[],"extra":1}`,
		`{"silences":[{"id":"x","match":{"customers":["c"]},"startsAt":"2027-01-01T00:00:00Z","endsAt":"2026-01-01T00:00:00Z"}]}`,
		`{"silences":[{"id":"x","match":{"customers":["c"]},"endsAt":"2027-01-01T00:00:00Z"},{"id":"x","match":{"customers":["d"]},"endsAt":"2027-01-01T00:00:00Z"}]}`,
	} {
		if _, err := kv.Put(ctx, silencesKey, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		p.refresh(ctx)
		if rt := cfg.runtime.Load(); rt == nil || len(*rt) != 1 || (*rt)[0].id != id {
			t.Errorf("%s: the last good silences were replaced: %v", bad, rt)
		}
		if _, err := ListSilences(ctx, e.js); err == nil || !strings.Contains(err.Error(), "notifier silence") {
			t.Errorf("%s: list: %v", bad, err)
		}
	}
	if !strings.Contains(logs.String(), "runtime silences not applied") {
		t.Errorf("no error logged: %s", logs.String())
	}
}

func TestRepeatIntervalValidation(t *testing.T) {
	base := "channels:\n  a: {kind: webhook, url: \"https://e.com\"}\nroutes:\n"
	for _, tc := range []struct{ y, want string }{
		{"  - {match: {types: [subscription.quantity-changed]}, channels: [a], repeat_interval: 1h}", "routes[0].repeat_interval: the route matches no deadline warning"},
		{"  - {match: {types: [subscription.renewal-approaching]}, channels: [a], repeat_interval: 30s}", "routes[0].repeat_interval: must be at least 1m"},
		{"  - {match: {types: [subscription.updated]}, drop: true, repeat_interval: 1h}", "a drop route sends nothing"},
		{"  - {channels: [a]}\nalerts: {silence_lead: 10s}", "alerts.silence_lead: must be at least 1m"},
	} {
		_, err := ParseConfig([]byte(base+tc.y+"\n"), ParseOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.y, err, tc.want)
		}
	}
	cfg := mustConfig(t, base+"  - {match: {types: [\"subscription.*-window-closing\"]}, channels: [a], repeat_interval: 1d}\n", nil)
	subs := cfg.FilterSubjects("a")
	for _, want := range []string{"pcwatch.events.subscription.>"} {
		if !slices.Contains(subs, want) {
			t.Errorf("filter %v lacks %s", subs, want)
		}
	}
	cfg = mustConfig(t, base+"  - {match: {types: [subscription.renewal-approaching]}, channels: [a], repeat_interval: 1d}\n", nil)
	subs = cfg.FilterSubjects("a")
	for _, typ := range resolverTypes {
		if !slices.ContainsFunc(subs, func(s string) bool { return subjectCovers(s, subjectsForGlob(shortType(typ))[0]) }) {
			t.Errorf("filter %v does not read %s, which resolves reminders", subs, typ)
		}
	}
}

func renewalAt(t testing.TB, c string, sub int, at time.Time) events.Envelope {
	return warningEvent(t, events.SubscriptionRenewalApproaching, c, sub, at, at.Add(30*24*time.Hour), 30*24*time.Hour)
}

// Forty renewals of one customer in one cycle are one message; another
// customer gets its own; events after a message wait for group_interval.
// The webhook body is a signed CloudEvents batch.
func TestGroupingOneMessagePerCustomer(t *testing.T) {
	a := startAlerts(t, `
routes:
  - match: {types: ["subscription.*"]}
    channels: [hook]
    group_by: [customer]
    group_wait: 30s
    group_interval: 5m
`)
	var c1 []events.Envelope
	for i := range 40 {
		ev := renewalAt(t, "c1", i, alertStart)
		c1 = append(c1, ev)
		publish(t, a.js, ev, "")
	}
	c2 := quantityEvent(t, "c2", 1, 1, 5, 7)
	publish(t, a.js, c2, "")
	publish(t, a.js, c1[3], "copy") // a second copy: not grouped twice
	waitFor(t, "all grouped", func() bool {
		return a.rec.count("hook", ResultGrouped) == 41 && a.rec.count("hook", ResultDuplicate) == 1
	}, a.rec.changed)
	a.clk.Set(alertStart.Add(29 * time.Second))
	a.quiet(t, 0)

	a.clk.Set(alertStart.Add(30 * time.Second))
	got := a.waitSent(t, "two grouped messages", 2)
	sizes := map[string]int{}
	for _, r := range got {
		if ct := r.header.Get("Content-Type"); ct != "application/cloudevents-batch+json" {
			t.Errorf("content type %q", ct)
		}
		var batch []map[string]any
		if err := json.Unmarshal(r.body, &batch); err != nil {
			t.Fatalf("not a JSON batch: %v", err)
		}
		ts := r.header.Get("Webhook-Timestamp")
		key, _ := signingKey(testSecret)
		if want := Sign(key, r.id, ts, r.body); r.header.Get("Webhook-Signature") != want {
			t.Error("the batch is not signed with its webhook-id")
		}
		data := batch[0]["data"].(map[string]any)
		sizes[data["customerId"].(string)] = len(batch)
		if r.header.Get("X-Pcwatch-Group-Size") != strconv.Itoa(len(batch)) {
			t.Errorf("group size header %q for %d", r.header.Get("X-Pcwatch-Group-Size"), len(batch))
		}
	}
	if sizes["c1"] != 40 || sizes["c2"] != 1 {
		t.Fatalf("group sizes %v", sizes)
	}
	waitFor(t, "members reported delivered", func() bool { return a.rec.count("hook", ResultDelivered) == 41 }, a.rec.changed)

	// group_interval: the next c1 event waits for 5m after the message.
	late := renewalAt(t, "c1", 99, alertStart.Add(time.Minute))
	a.clk.Set(alertStart.Add(time.Minute))
	publish(t, a.js, late, "")
	waitFor(t, "grouped", func() bool { return slices.Contains(a.rec.get("hook", late.ID), ResultGrouped) }, a.rec.changed)
	a.clk.Set(alertStart.Add(5*time.Minute + 29*time.Second))
	a.quiet(t, 2)
	a.clk.Set(alertStart.Add(5*time.Minute + 30*time.Second))
	got = a.waitSent(t, "the next message", 3)
	if !strings.Contains(string(got[2].body), late.ID) || strings.Count(string(got[2].body), `"specversion"`) != 1 {
		t.Fatalf("third message %s", got[2].body)
	}
	if got[0].id == got[2].id {
		t.Error("two grouped messages share a webhook-id")
	}
}

// A group survives a notifier restart and is sent once; a deadline
// warning too close to its deadline is not held for its group.
func TestGroupSurvivesRestart(t *testing.T) {
	a := startAlerts(t, `
routes:
  - match: {types: ["subscription.*"]}
    channels: [hook]
    group_by: [customer, type]
`)
	ev := renewalAt(t, "c1", 1, alertStart)
	publish(t, a.js, ev, "")
	urgent := warningEvent(t, events.SubscriptionCancellationClosing, "c1", 2, alertStart, alertStart.Add(time.Minute), time.Hour)
	publish(t, a.js, urgent, "")
	got := a.waitSent(t, "the urgent warning, alone", 1)
	if got[0].id != urgent.ID || got[0].header.Get("X-Pcwatch-Group-Size") != "" {
		t.Fatalf("sent %v", notices(got))
	}
	waitFor(t, "grouped", func() bool { return slices.Contains(a.rec.get("hook", ev.ID), ResultGrouped) }, a.rec.changed)
	a.n.stop()
	h := a.rec.hooks()
	h.alertEvery = 5 * time.Millisecond
	a.n = startNotifierWith(t, Options{Config: a.cfg, NATS: natsconn.Options{URL: a.url}, Clock: a.clk, hooks: h})
	a.clk.Set(alertStart.Add(DefaultGroupWait))
	got = a.waitSent(t, "the group after the restart", 2)
	if !strings.Contains(string(got[1].body), ev.ID) {
		t.Fatalf("sent %s", got[1].body)
	}
	a.clk.Set(alertStart.Add(time.Hour))
	a.quiet(t, 2)
}

func TestGroupRendering(t *testing.T) {
	var rows []GroupRow
	for i := range 60 {
		rows = append(rows, GroupRow{Title: fmt.Sprintf("Renewal of subscription %d in 30 days: %s", i, strings.Repeat("x", 300)), Product: "Microsoft 365 E3", Detail: "2026-12-24 00:00 UTC (30d left)"})
	}
	m := &TemplateData{Title: "60 events: Contoso", Text: "subscription.renewal-approaching x60", Footer: "pcwatch", Severity: "warning", Group: rows}
	s := slackPayload(m)
	if len(s.Blocks) > 50 {
		t.Errorf("%d Slack blocks, more than 50", len(s.Blocks))
	}
	if b, _ := json.Marshal(s); !strings.Contains(string(b), "and 20 more events") {
		t.Error("Slack: the cut is not said")
	}
	b, err := teamsPayload(m)
	if err != nil || len(b) > TeamsMaxBytes {
		t.Fatalf("Teams: %d bytes, %v", len(b), err)
	}
	if !strings.Contains(string(b), `"Table"`) || !strings.Contains(string(b), "more events not shown") {
		t.Errorf("Teams card: %.300s", b)
	}
	var out strings.Builder
	td, err := template.New("b").Parse(DefaultEmailBody)
	if err != nil {
		t.Fatal(err)
	}
	if err := td.Execute(&out, m); err != nil || strings.Count(out.String(), "- Renewal of subscription") != 60 {
		t.Errorf("email body: %v\n%.500s", err, out.String())
	}
}

func TestGroupValidation(t *testing.T) {
	base := "channels:\n  a: {kind: webhook, url: \"https://e.com\"}\nroutes:\n"
	for _, tc := range []struct{ y, want string }{
		{"  - {channels: [a], group_by: [tenant]}", `routes[0].group_by[0]: "tenant": want one of customer`},
		{"  - {channels: [a], group_wait: 10s}", "routes[0].group_by: group_wait and group_interval need group_by"},
		{"  - {channels: [a], group_by: [customer], group_wait: 2h}", "routes[0].group_wait: must be between 1s and 1h"},
		{"  - {match: {customers: [x]}, drop: true, group_by: [customer]}", "group_by does not apply"},
	} {
		_, err := ParseConfig([]byte(base+tc.y+"\n"), ParseOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.y, err, tc.want)
		}
	}
}
