package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadlinequery"
)

const digestYAML = `
channels:
  hook: {kind: webhook, url: "https://example.com/h"}
  mail: {kind: email, smtp: {host: smtp.example.com}, from: a@example.com, to: [b@example.com]}
  bus: {kind: nats, subject: "alerts.pcwatch.{{.Type}}"}
default: {channels: [hook]}
digests:
  - name: weekday-morning
    schedule: "0 8 * * 1-5"
    time_zone: Europe/Paris
    within: 7d
    match:
      types: ["subscription.*-window-closing"]
      customers: [c1]
    channels: [mail, bus]
`

func TestDigestConfig(t *testing.T) {
	cfg := mustConfig(t, digestYAML, nil)
	if len(cfg.digests) != 1 {
		t.Fatalf("%d digests", len(cfg.digests))
	}
	d := cfg.digests[0]
	if d.within != 7*24*time.Hour || d.loc.String() != "Europe/Paris" || d.maxRows != DefaultDigestMaxRows || d.grace != time.Hour ||
		len(d.types) != 1 || d.customers[0] != "c1" {
		t.Errorf("compiled %+v", d)
	}
	for _, w := range cfg.Warnings() {
		if strings.Contains(w, `"mail" is not used`) || strings.Contains(w, `"bus" is not used`) {
			t.Errorf("a channel used by a digest is warned about: %s", w)
		}
	}
}

func TestDigestConfigErrors(t *testing.T) {
	base := "channels:\n  hook: {kind: webhook, url: \"https://example.com/h\"}\n  bus: {kind: nats, subject: \"alerts.{{.CustomerID}}\"}\ndefault: {channels: [hook]}\ndigests:\n"
	for _, tc := range []struct{ digest, want string }{
		{`  - {schedule: "0 8 * * *", channels: [hook]}`, "digests[0].name: missing"},
		{`  - {name: "a b", schedule: "0 8 * * *", channels: [hook]}`, "digests[0].name: bad digest name"},
		{"  - {name: a, schedule: \"0 8 * * *\", channels: [hook]}\n  - {name: a, schedule: \"0 9 * * *\", channels: [hook]}", "digests[1].name: a second digest"},
		{`  - {name: a, channels: [hook]}`, "digests[0].schedule: missing"},
		{`  - {name: a, schedule: "0 8 * *", channels: [hook]}`, "not a cron expression"},
		{`  - {name: a, schedule: "0 0 8 * * *", channels: [hook]}`, "not a cron expression"},
		{`  - {name: a, schedule: "CRON_TZ=Europe/Paris 0 8 * * *", channels: [hook]}`, "set time_zone instead"},
		{`  - {name: a, schedule: "@every 1h", channels: [hook]}`, "is an interval"},
		{`  - {name: a, schedule: "0 8 * * *", time_zone: Europe/Pariss, channels: [hook]}`, "digests[0].time_zone: unknown time zone"},
		{`  - {name: a, schedule: "0 8 * * *", time_zone: Local, channels: [hook]}`, "unknown time zone"},
		{`  - {name: a, schedule: "0 8 * * *", within: 30s, channels: [hook]}`, "digests[0].within"},
		{`  - {name: a, schedule: "0 8 * * *", within: 5000d, channels: [hook]}`, "digests[0].within"},
		{`  - {name: a, schedule: "0 8 * * *", max_rows: 500, channels: [hook]}`, "digests[0].max_rows: want 1 to 200"},
		{`  - {name: a, schedule: "0 8 * * *", grace: 5d, channels: [hook]}`, "digests[0].grace"},
		{`  - {name: a, schedule: "0 8 * * *", match: {types: [subscription.quantity-changed]}, channels: [hook]}`, "matches no deadline type"},
		{`  - {name: a, schedule: "0 8 * * *", match: {remaining_under: 1h}, channels: [hook]}`, "digests[0].match.remaining_under: not a condition of a digest"},
		{`  - {name: a, schedule: "0 8 * * *", match: {offers: ["["]}, channels: [hook]}`, "digests[0].match.offers[0]: bad glob"},
		{`  - {name: a, schedule: "0 8 * * *"}`, "digests[0].channels: no channels"},
		{`  - {name: a, schedule: "0 8 * * *", channels: [nope]}`, `digests[0].channels[0]: no channel named "nope"`},
		{`  - {name: a, schedule: "0 8 * * *", channels: [bus]}`, "channels.bus.subject: for digest a"},
		{`  - {name: a, schedule: "0 8 * * *", channels: [hook], nope: 1}`, "nope"},
	} {
		_, err := ParseConfig([]byte(base+tc.digest+"\n"), ParseOptions{File: "t.yaml"})
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant an error with %q", tc.digest, err, tc.want)
		}
	}
}

// Schedules are read in their time zone, DST included: a weekday 08:00 in
// Europe/Paris is 07:00 UTC before the last Sunday of March and 06:00
// after, and 06:00/07:00 around the last Sunday of October. A time the
// clocks skip (02:30 on 29 March 2026) does not happen that day; one they
// repeat (02:30 on 25 October 2026) is two instants with one key, so it is
// sent once.
func TestDigestScheduleDST(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	next := func(spec string, from time.Time, n int) []string {
		s, err := parseSchedule(spec, paris)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for range n {
			from = s.Next(from)
			out = append(out, from.UTC().Format("01-02T15:04Z"))
		}
		return out
	}
	check := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("got  %v\nwant %v", got, want)
		}
	}
	check(next("0 8 * * 1-5", time.Date(2026, 3, 26, 12, 0, 0, 0, time.UTC), 3), "03-27T07:00Z", "03-30T06:00Z", "03-31T06:00Z")
	check(next("0 8 * * 1-5", time.Date(2026, 10, 22, 12, 0, 0, 0, time.UTC), 3), "10-23T06:00Z", "10-26T07:00Z", "10-27T07:00Z")
	check(next("30 2 * * *", time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC), 2), "03-28T01:30Z", "03-30T00:30Z")
	check(next("30 2 * * *", time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC), 3), "10-25T00:30Z", "10-25T01:30Z", "10-26T01:30Z")
	d := &compiledDigest{name: "night", loc: paris}
	a, b := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)
	if digestKey(d, a, "hook") != digestKey(d, b, "hook") || runID(d, a) != "digest-night-20261025T0230" {
		t.Errorf("the repeated 02:30 has keys %s and %s, id %s", digestKey(d, a, "hook"), digestKey(d, b, "hook"), runID(d, a))
	}
}

func sampleDigest(rows int, name string) *digestMsg {
	paris, _ := time.LoadLocation("Europe/Paris")
	asOf := time.Date(2026, 3, 30, 6, 0, 3, 0, time.UTC)
	m := &digestMsg{ID: "digest-weekday-20260330T0800", Name: "weekday", Scheduled: asOf.Truncate(time.Minute), Zone: "Europe/Paris",
		Within: 7 * 24 * time.Hour, AsOf: asOf, Until: asOf.Add(7 * 24 * time.Hour), Total: rows + 7, loc: paris}
	for i := range rows {
		m.Rows = append(m.Rows, deadlinequery.Deadline{CustomerID: fmt.Sprintf("c%d", i), CustomerName: name, SubscriptionID: fmt.Sprintf("s%d", i),
			Offer: "Microsoft 365 E3 <&>", Kind: "cancellation", Type: "subscription.cancellation-window-closing",
			ClosesAt: asOf.Add(time.Duration(i+1) * time.Hour), Quantity: i + 1})
	}
	return m
}

// Every channel's rendering stays within its limits with many rows and
// long names, and counts what it leaves out.
func TestDigestRenderingLimits(t *testing.T) {
	long := strings.Repeat("Contoso Ltd ", 20)
	m := sampleDigest(MaxDigestRows, long)

	sl := slackDigestPayload(m)
	if len(sl.Blocks) > slackMaxBlocks {
		t.Errorf("slack: %d blocks", len(sl.Blocks))
	}
	shownRows := 0
	for _, b := range sl.Blocks {
		if b.Text != nil && len([]rune(b.Text.Text)) > slackSectionMax {
			t.Errorf("slack: a %s block of %d characters", b.Type, len([]rune(b.Text.Text)))
		}
		if b.Text != nil && strings.HasPrefix(b.Text.Text, "```") {
			shownRows += strings.Count(b.Text.Text, "\n") - 1 // the opening fence's line
		}
	}
	shownRows-- // the heading
	var all strings.Builder
	for _, b := range sl.Blocks {
		if b.Text != nil {
			all.WriteString(b.Text.Text)
		}
	}
	if !strings.Contains(all.String(), "&lt;&amp;&gt;") || !strings.Contains(all.String(), fmt.Sprintf("and %d more", m.Total-shownRows)) {
		t.Errorf("slack: not escaped, or no 'and N more'")
	}

	tb, err := teamsDigestPayload(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(tb) > TeamsMaxBytes {
		t.Errorf("teams: %d bytes", len(tb))
	}
	if !strings.Contains(string(tb), `"type":"Table"`) || !strings.Contains(string(tb), "more (watcher deadlines") {
		t.Errorf("teams: no table, or no 'and N more'")
	}

	e := &emailDigest{&emailSender{ch: &Channel{name: "mail", From: "pcwatch <p@example.com>", To: []string{"x@example.com"}}, clk: fixedClock{}}}
	mail := string(e.compose(sampleDigest(3, "Fabrikam")))
	for _, want := range []string{"Subject: pcwatch digest weekday: 10 deadlines close in the next 7d", "Message-ID: <digest-weekday-20260330T0800.mail@example.com>",
		"Closes            In", "Mon 30 Mar 09:00", "=E2=80=A6 and 7 more"} {
		if !strings.Contains(mail, want) {
			t.Errorf("mail lacks %q:\n%s", want, mail)
		}
	}

	empty := sampleDigest(0, "")
	empty.Total = 0
	if got := empty.title(); got != "pcwatch digest weekday: nothing closes in the next 7d" {
		t.Errorf("empty title %q", got)
	}
	b, _ := empty.body()
	var body DigestBody
	if err := json.Unmarshal(b, &body); err != nil || body.Deadlines == nil || body.Type != DigestType || body.Total != 0 {
		t.Errorf("empty body %s", b)
	}
}

// stubWatcher answers deadline queries with rows, counting the queries.
type stubWatcher struct {
	mu      sync.Mutex
	queries []deadlinequery.Request
	rows    []deadlinequery.Deadline
	err     error
}

func (s *stubWatcher) RequestWithContext(_ context.Context, _ string, data []byte) (*nats.Msg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r deadlinequery.Request
	_ = json.Unmarshal(data, &r)
	s.queries = append(s.queries, r)
	if s.err != nil {
		return nil, s.err
	}
	b, _ := json.Marshal(deadlinequery.Reply{Deadlines: s.rows, Total: len(s.rows)})
	return &nats.Msg{Data: b}, nil
}

func (s *stubWatcher) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queries)
}

// fakeTicker is the scheduler's sleep on a fake clock: each wait tells
// the test how long the scheduler would wait, and returns when the test
// has moved the clock.
type fakeTicker struct {
	waits chan time.Duration
	go_   chan struct{}
}

func newFakeTicker() *fakeTicker {
	return &fakeTicker{waits: make(chan time.Duration), go_: make(chan struct{})}
}

func (f *fakeTicker) sleep(ctx context.Context, d time.Duration) error {
	select {
	case f.waits <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-f.go_:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type digestResult struct {
	digest, channel, result string
	at                      time.Time
}

// On a fake clock: the scheduler fires at the scheduled instants in the
// digest's zone (across the March DST change), sends one webhook per run
// with the rows the watcher gave, catches up a run missed within grace at
// start, skips one missed beyond it, and a second scheduler (a restart, or
// another notifier) does not send a run again.
func TestDigestSchedulerFakeClock(t *testing.T) {
	srv := startNATS(t)
	nc := connectNATS(t, srv.ClientURL())
	js := jsOf(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kv, err := EnsureDeliveries(ctx, js, DefaultDedupeTTL)
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	cfg := mustConfig(t, `
channels:
  hook: {kind: webhook, url_env: U}
default: {channels: [hook]}
digests:
  - {name: morning, schedule: "0 8 * * 1-5", time_zone: Europe/Paris, within: 7d, channels: [hook], grace: 1h}
`, map[string]string{"U": rc.URL})
	// Friday 27 March 2026, 08:20 in Paris (07:20Z): the 08:00 run was
	// missed 20 minutes ago, within grace.
	clk := clock.NewFake(time.Date(2026, 3, 27, 7, 20, 0, 0, time.UTC))
	watcher := &stubWatcher{rows: []deadlinequery.Deadline{{CustomerID: "c1", CustomerName: "Contoso", SubscriptionID: "s1", Offer: "M365",
		Kind: "cancellation", Type: "subscription.cancellation-window-closing", ClosesAt: clk.Now().Add(30 * time.Hour)}}}
	results := make(chan digestResult, 16)
	start := func(ticker *fakeTicker, instance string) (stop func()) {
		s, err := newDigestSchedulerFor(cfg, Options{Clock: clk, HTTPClient: newHTTPClient(), digestHooks: &digestHooks{sleep: ticker.sleep,
			done: func(d string, at time.Time, ch, res string) { results <- digestResult{d, ch, res, at} }}},
			nc, testLogger(t), instance, newMetrics(cfg.names))
		if err != nil {
			t.Fatal(err)
		}
		s.query, s.kv, s.maxWait = watcher, kv, 0
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(sctx) }()
		return func() { scancel(); <-done }
	}
	expect := func(result string, at time.Time) {
		t.Helper()
		select {
		case r := <-results:
			if r.result != result || !r.at.Equal(at) || r.channel != "hook" || r.digest != "morning" {
				t.Fatalf("got %+v, want %s at %s", r, result, at)
			}
		case <-ctx.Done():
			t.Fatalf("no %s result for %s", result, at)
		}
	}
	fri := time.Date(2026, 3, 27, 7, 0, 0, 0, time.UTC)
	mon := time.Date(2026, 3, 30, 6, 0, 0, 0, time.UTC) // 08:00 CEST

	t1 := newFakeTicker()
	stop := start(t1, "n1")
	expect(DigestSent, fri) // caught up at start
	if d := <-t1.waits; d != mon.Sub(clk.Now()) {
		t.Errorf("the scheduler waits %s, want until Monday 08:00 CEST (%s)", d, mon.Sub(clk.Now()))
	}
	reqs := rc.requests()
	if len(reqs) != 1 || reqs[0].id != "digest-morning-20260327T0800" || reqs[0].header.Get("X-Pcwatch-Event-Type") != DigestType {
		t.Fatalf("webhook requests %+v", reqs)
	}
	var body DigestBody
	if err := json.Unmarshal(reqs[0].body, &body); err != nil || body.Total != 1 || body.Deadlines[0].CustomerName != "Contoso" || body.Digest != "morning" {
		t.Errorf("body %s", reqs[0].body)
	}

	// A second scheduler on the same records (a restart, or another
	// notifier) within grace: no second send, and no query either.
	t2 := newFakeTicker()
	stop2 := start(t2, "n2")
	expect(DigestDuplicate, fri)
	<-t2.waits
	stop2()
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d webhook requests after the restart, want 1", n)
	}
	if n := watcher.count(); n != 1 {
		t.Errorf("%d queries, want 1: a run already sent needs none", n)
	}

	// Monday 08:00 CEST: fired at its instant.
	clk.Set(mon)
	t1.go_ <- struct{}{}
	expect(DigestSent, mon)
	<-t1.waits
	stop()

	// Down from Monday to Wednesday 10:00 CEST: Tuesday's run and
	// Wednesday's 08:00 are older than grace, so a start then sends
	// neither (and says so in the log).
	clk.Set(time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC))
	t3 := newFakeTicker()
	stop3 := start(t3, "n3")
	<-t3.waits
	stop3()
	select {
	case r := <-results:
		t.Errorf("a run older than grace: %+v", r)
	default:
	}
	if n := len(rc.requests()); n != 2 {
		t.Errorf("%d webhook requests, want 2", n)
	}
	if !strings.Contains(string(rc.requests()[1].body), `"scheduledAt":"2026-03-30T06:00:00Z"`) {
		t.Errorf("Monday's body %s", rc.requests()[1].body)
	}

	// The watcher not answering: retried until grace is over, then given
	// up, with nothing sent.
	watcher.err = nats.ErrNoResponders
	clk.Set(time.Date(2026, 4, 2, 6, 0, 0, 0, time.UTC)) // Thursday 08:00 CEST
	t4 := newFakeTicker()
	stop4 := start(t4, "n4")
	defer stop4()
	for {
		select {
		case d := <-t4.waits:
			if d < 12*time.Hour {
				clk.Advance(d) // a retry's wait; the scheduler's is until Friday
			}
			t4.go_ <- struct{}{}
		case r := <-results:
			if r.result != DigestFailed {
				t.Fatalf("got %+v, want failed", r)
			}
			if n := len(rc.requests()); n != 2 {
				t.Errorf("%d webhook requests, want 2", n)
			}
			if clk.Now().Before(time.Date(2026, 4, 2, 6, 30, 0, 0, time.UTC)) || watcher.count() < 3 {
				t.Errorf("gave up at %s after %d queries: before the grace was over", clk.Now(), watcher.count())
			}
			return
		case <-ctx.Done():
			t.Fatal("the failing run was never given up")
		}
	}
}
