package notify

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// env is one test's NATS server, connection and event stream.
type env struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := startNATS(t)
	nc := connectNATS(t, srv.ClientURL())
	js := jsOf(t, nc)
	ensureEventStream(t, js)
	return &env{url: srv.ClientURL(), nc: nc, js: js}
}

func hookConfig(t testing.TB, url, delivery string) *Config {
	t.Helper()
	return mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s/hook?token=T0KEN", secret_env: S, timeout: 800ms}
default: {channels: [hook]}
delivery: {retry_initial: 10ms, retry_max: 40ms%s}
`, url, delivery), map[string]string{"S": testSecret})
}

// settled reports whether the channel's consumer has nothing pending or
// unacknowledged: nothing more will be delivered.
func settled(t testing.TB, js jetstream.JetStream, channel string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := js.Consumer(ctx, stream.Name, ConsumerName(channel))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0
}

// waitSettled waits until the channel's consumer has nothing pending:
// terminations and the settler's acks are not confirmed one by one.
func waitSettled(t testing.TB, js jetstream.JetStream, channel string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for !settled(t, js, channel) {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("channel %s: messages still pending (not acknowledged or terminated)", channel)
		}
	}
}

func TestRetriesThenExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
	}{
		{"503 with Retry-After 0", http.StatusServiceUnavailable, http.Header{"Retry-After": {"0"}}},
		{"500 with backoff", http.StatusInternalServerError, nil},
		{"429 with Retry-After 0", http.StatusTooManyRequests, http.Header{"Retry-After": {"0"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rc := newReceiver(t, func(n int, _ *http.Request) (int, http.Header) {
				if n <= 5 {
					return tc.status, tc.header
				}
				return http.StatusOK, nil
			})
			rec := newRecorder()
			startNotifier(t, hookConfig(t, rc.URL, ""), e.url, rec.hooks())
			ev := quantityEvent(t, "c1", 1, 1, 12, 10)
			publish(t, e.js, ev, "")
			waitFor(t, "delivery", func() bool { return slices.Contains(rec.get("hook", ev.ID), ResultDelivered) }, rec.changed)

			if got := rc.accepted(); got[ev.ID] != 1 || len(got) != 1 {
				t.Errorf("accepted %v, want the event once", got)
			}
			reqs := rc.requests()
			if len(reqs) != 6 {
				t.Fatalf("%d requests, want 6", len(reqs))
			}
			for i, r := range reqs {
				if r.id != ev.ID || r.header.Get("X-Pcwatch-Attempt") != fmt.Sprint(i+1) {
					t.Errorf("request %d: webhook-id %s attempt %s", i, r.id, r.header.Get("X-Pcwatch-Attempt"))
				}
				if err := verifyStandardWebhook(testSecret, r.header, r.body, time.Now()); err != nil {
					t.Errorf("request %d: %v", i, err)
				}
			}
			want := []string{ResultRetry, ResultRetry, ResultRetry, ResultRetry, ResultRetry, ResultDelivered}
			if got := rec.get("hook", ev.ID); !slices.Equal(got, want) {
				t.Errorf("results %v, want %v", got, want)
			}
			// Acks are not confirmed one by one (the settler flushes a
			// batch): wait for the server to apply it.
			waitSettled(t, e.js, "hook")
		})
	}
}

func TestPermanentFailureDeadLettersAndReplayDelivers(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	broken := true
	rc := newReceiver(t, func(int, *http.Request) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return http.StatusBadRequest, nil
		}
		return http.StatusOK, nil
	})
	rec := newRecorder()
	cfg := hookConfig(t, rc.URL, "")
	startNotifier(t, cfg, e.url, rec.hooks())
	ev := quantityEvent(t, "c1", 1, 1, 12, 10)
	publish(t, e.js, ev, "")
	waitFor(t, "dead-lettering", func() bool { return slices.Contains(rec.get("hook", ev.ID), ResultDLQ) }, rec.changed)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests for a 400, want 1 (no retry)", n)
	}

	ctx := context.Background()
	list, err := ListDLQ(ctx, e.js, "hook")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("DLQ holds %d entries, want 1", len(list))
	}
	d := list[0]
	if d.EventID != ev.ID || d.Channel != "hook" || d.Reason != ReasonHTTP4xx || d.Status != 400 || d.Attempts != 1 ||
		d.Subject != ev.Subject || d.Type != "subscription.quantity-changed" || d.CustomerID != "c1" || d.CustomerName != "Customer c1" ||
		!strings.Contains(d.Error, "HTTP 400") || string(d.Body) != string(ev.Body) || d.StreamSeq == 0 {
		t.Errorf("DLQ entry %+v", d)
	}
	if strings.Contains(d.Error, "T0KEN") {
		t.Errorf("DLQ error reveals the URL's token: %s", d.Error)
	}
	if all, _ := ListDLQ(ctx, e.js, ""); len(all) != 1 {
		t.Errorf("unfiltered list: %d", len(all))
	}
	if other, _ := ListDLQ(ctx, e.js, "other"); len(other) != 0 {
		t.Errorf("other channel: %d", len(other))
	}

	// Still broken: the replay fails, reported per entry, and the entry stays.
	res, err := ReplayDLQ(ctx, ReplayOptions{Config: cfg, Conn: e.nc, Channel: "hook"})
	if err != nil || len(res) != 1 || res[0].Err == nil || res[0].Delivered {
		t.Fatalf("replay while broken: %+v, %v", res, err)
	}
	if l, _ := ListDLQ(ctx, e.js, "hook"); len(l) != 1 {
		t.Fatalf("entry gone after a failed replay")
	}

	mu.Lock()
	broken = false
	mu.Unlock()
	res, err = ReplayDLQ(ctx, ReplayOptions{Config: cfg, Conn: e.nc, IDs: []string{ev.ID, "no-such-id"}})
	if err != nil {
		t.Fatal(err)
	}
	var delivered, missing int
	for _, r := range res {
		switch {
		case r.Delivered && r.Entry.EventID == ev.ID:
			delivered++
		case r.Err != nil && r.Entry.EventID == "no-such-id":
			missing++
		default:
			t.Errorf("unexpected result %+v", r)
		}
	}
	if delivered != 1 || missing != 1 {
		t.Errorf("replay results %+v", res)
	}
	if got := rc.accepted(); got[ev.ID] != 1 {
		t.Errorf("accepted %v", got)
	}
	reqs := rc.requests()
	if last := reqs[len(reqs)-1]; verifyStandardWebhook(testSecret, last.header, last.body, time.Now()) != nil || last.header.Get("X-Pcwatch-Attempt") != "2" {
		t.Errorf("replayed request: attempt %s", last.header.Get("X-Pcwatch-Attempt"))
	}
	if l, _ := ListDLQ(ctx, e.js, "hook"); len(l) != 0 {
		t.Errorf("DLQ still holds %d entries", len(l))
	}
	if res, _ := ReplayDLQ(ctx, ReplayOptions{Config: cfg, Conn: e.nc}); len(res) != 0 {
		t.Errorf("second replay: %+v", res)
	}
	// The replay recorded the delivery: the same event arriving again is a
	// duplicate.
	publish(t, e.js, ev, "again-"+ev.ID)
	waitFor(t, "duplicate", func() bool { return slices.Contains(rec.get("hook", ev.ID), ResultDuplicate) }, rec.changed)
	if got := rc.accepted(); got[ev.ID] != 1 {
		t.Errorf("accepted %v after the event came again", got)
	}
}

func TestLastAttemptDeadLetters(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusBadGateway, nil })
	rec := newRecorder()
	startNotifier(t, hookConfig(t, rc.URL, ", max_attempts: 3"), e.url, rec.hooks())
	ev := quantityEvent(t, "c1", 1, 1, 1, 2)
	publish(t, e.js, ev, "")
	waitFor(t, "dead-lettering", func() bool { return slices.Contains(rec.get("hook", ev.ID), ResultDLQ) }, rec.changed)
	if got, want := rec.get("hook", ev.ID), []string{ResultRetry, ResultRetry, ResultDLQ}; !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	l, err := ListDLQ(context.Background(), e.js, "hook")
	if err != nil || len(l) != 1 || l[0].Attempts != 3 || l[0].Reason != ReasonHTTP5xx || l[0].Status != 502 {
		t.Fatalf("DLQ %+v %v", l, err)
	}
	waitSettled(t, e.js, "hook") // the dead-lettered message is terminated
}

func TestSameEventPublishedTwiceIsDeliveredOnce(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	rec := newRecorder()
	startNotifier(t, hookConfig(t, rc.URL, ""), e.url, rec.hooks())
	ev := quantityEvent(t, "c1", 1, 1, 1, 2)
	publish(t, e.js, ev, "copy-1")
	publish(t, e.js, ev, "copy-2")
	waitFor(t, "both copies handled", func() bool { return len(rec.get("hook", ev.ID)) == 2 }, rec.changed)
	// The second copy may be recognised before the first's delivery is
	// reported: order does not matter, the count does.
	if got := slices.Sorted(slices.Values(rec.get("hook", ev.ID))); !slices.Equal(got, []string{ResultDelivered, ResultDuplicate}) {
		t.Errorf("results %v", got)
	}
	if got := rc.accepted(); got[ev.ID] != 1 || len(rc.requests()) != 1 {
		t.Errorf("accepted %v", got)
	}
}

func TestLostAckRedeliveryIsNotSentAgain(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	rec := newRecorder()
	h := rec.hooks()
	h.beforeAck = func(_, _ string, attempt int) bool { return attempt > 1 } // the first ack is lost
	startNotifier(t, hookConfig(t, rc.URL, ", ack_wait: 1s").withTimeout("hook", 500*time.Millisecond), e.url, h)
	ev := quantityEvent(t, "c1", 1, 1, 1, 2)
	publish(t, e.js, ev, "")
	waitFor(t, "redelivery", func() bool { return len(rec.get("hook", ev.ID)) == 2 }, rec.changed)
	// The second copy may be recognised before the first's delivery is
	// reported: order does not matter, the count does.
	if got := slices.Sorted(slices.Values(rec.get("hook", ev.ID))); !slices.Equal(got, []string{ResultDelivered, ResultDuplicate}) {
		t.Errorf("results %v", got)
	}
	if got := rc.accepted(); got[ev.ID] != 1 || len(rc.requests()) != 1 {
		t.Errorf("receiver saw %d requests, accepted %v", len(rc.requests()), got)
	}
}

// withTimeout changes a channel's timeout (tests with a short ack_wait).
func (c *Config) withTimeout(ch string, d time.Duration) *Config {
	c.Channels[ch].Timeout = Duration(d)
	return c
}

func TestLongSendIsKeptAliveWithInProgress(t *testing.T) {
	e := newEnv(t)
	rec := newRecorder()
	// The receiver answers only after the notifier told JetStream twice that
	// it is still working on the message.
	rc := newReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		id := r.Header.Get("Webhook-Id")
		deadline := time.After(testTimeout)
		for {
			rec.mu.Lock()
			n := rec.ips["hook/"+id]
			rec.mu.Unlock()
			if n >= 2 {
				return http.StatusOK, nil
			}
			select {
			case <-rec.ipc:
			case <-deadline:
				return http.StatusServiceUnavailable, nil
			}
		}
	})
	cfg := hookConfig(t, rc.URL, ", ack_wait: 1s").withTimeout("hook", 900*time.Millisecond)
	startNotifier(t, cfg, e.url, rec.hooks())
	ev := quantityEvent(t, "c1", 1, 1, 1, 2)
	publish(t, e.js, ev, "")
	waitFor(t, "delivery", func() bool { return slices.Contains(rec.get("hook", ev.ID), ResultDelivered) }, rec.changed)
	if got := rec.get("hook", ev.ID); !slices.Equal(got, []string{ResultDelivered}) {
		t.Errorf("results %v: the message was redelivered during the send", got)
	}
}

func TestUndecodableMessageIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	rec := newRecorder()
	startNotifier(t, hookConfig(t, rc.URL, ""), e.url, rec.hooks())
	msg := nats.NewMsg("pcwatch.events.subscription.quantity-changed.c1.s1")
	msg.Data = []byte(`{"specversion":"0.3","id":"x"}`)
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead-lettering", func() bool { return slices.Contains(rec.get("hook", ""), ResultDLQ) }, rec.changed)
	l, err := ListDLQ(context.Background(), e.js, "hook")
	if err != nil || len(l) != 1 || l[0].Reason != ReasonUndecodable || l[0].EventID != "" || !strings.Contains(l[0].Error, "specversion") {
		t.Fatalf("DLQ %+v %v", l, err)
	}
	if len(rc.requests()) != 0 {
		t.Error("undecodable message was sent")
	}
	// Term is not confirmed by the server: wait for it to be applied.
	waitSettled(t, e.js, "hook")
	// Replaying it fails, per entry.
	res, err := ReplayDLQ(context.Background(), ReplayOptions{Config: hookConfig(t, rc.URL, ""), Conn: e.nc})
	if err != nil || len(res) != 1 || res[0].Err == nil {
		t.Errorf("replay of an undecodable entry: %+v %v", res, err)
	}
}

func TestFailingChannelDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	slow := newReceiver(t, func(int, *http.Request) (int, http.Header) { <-release; return http.StatusOK, nil })
	fast := newReceiver(t, nil)
	rec := newRecorder()
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  slow: {kind: webhook, url: "%s", timeout: 50s}
  fast: {kind: webhook, url: "%s"}
default: {channels: [slow, fast]}
delivery: {ack_wait: 60s}
`, slow.URL, fast.URL), nil)
	startNotifier(t, cfg, e.url, rec.hooks())
	var ids []string
	for i := range 6 {
		ev := quantityEvent(t, "c1", i, 1, 1, 2)
		ids = append(ids, ev.ID)
		publish(t, e.js, ev, "")
	}
	waitFor(t, "fast channel deliveries", func() bool { return rec.count("fast", ResultDelivered) == len(ids) }, rec.changed)
	if n := rec.count("slow", ResultDelivered); n != 0 {
		t.Fatalf("slow channel delivered %d while its receiver is blocked", n)
	}
	close(release)
	waitFor(t, "slow channel deliveries", func() bool { return rec.count("slow", ResultDelivered) == len(ids) }, rec.changed)
	for _, id := range ids {
		if slow.accepted()[id] != 1 || fast.accepted()[id] != 1 {
			t.Errorf("event %s: slow %d fast %d", id, slow.accepted()[id], fast.accepted()[id])
		}
	}
}

func TestRoutingInTheConsumer(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	rec := newRecorder()
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s"}
routes:
  - match: {types: [subscription.quantity-changed], customers: [c1, quiet]}
    channels: [hook]
silences:
  - match: {customers: [quiet]}
    until: 2099-01-01T00:00:00Z
`, rc.URL), nil)
	startNotifier(t, cfg, e.url, rec.hooks())
	routed, silenced, filtered := quantityEvent(t, "c1", 1, 1, 1, 2), quantityEvent(t, "quiet", 1, 1, 1, 2), quantityEvent(t, "c2", 1, 1, 1, 2)
	outside := typedEvent(t, events.CustomerAdded, "c1", 1) // not in the consumer's filter at all
	publish(t, e.js, outside, "")
	for _, ev := range []events.Envelope{routed, silenced, filtered} {
		publish(t, e.js, ev, "")
	}
	waitFor(t, "three results", func() bool {
		return len(rec.get("hook", routed.ID))+len(rec.get("hook", silenced.ID))+len(rec.get("hook", filtered.ID)) == 3
	}, rec.changed)
	if rec.get("hook", routed.ID)[0] != ResultDelivered || rec.get("hook", silenced.ID)[0] != ResultSilenced || rec.get("hook", filtered.ID)[0] != ResultFiltered {
		t.Errorf("results %v %v %v", rec.get("hook", routed.ID), rec.get("hook", silenced.ID), rec.get("hook", filtered.ID))
	}
	if got := rc.accepted(); len(got) != 1 || got[routed.ID] != 1 {
		t.Errorf("accepted %v", got)
	}
	if len(rec.get("hook", outside.ID)) != 0 {
		t.Error("the consumer received an event outside its filter")
	}
	waitSettled(t, e.js, "hook") // silenced and filtered events are acknowledged
}

func TestConsumerLifecycle(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	before := quantityEvent(t, "c1", 1, 1, 1, 2)
	publish(t, e.js, before, "") // history: a new consumer must not deliver it
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s"}
routes:
  - match: {types: ["subscription.*-window-closing", subscription.quantity-changed]}
    channels: [hook]
delivery: {ack_wait: 90s, max_ack_pending: 7, start: new}
`, rc.URL), nil)
	rec := newRecorder()
	n := startNotifier(t, cfg, e.url, rec.hooks())
	ctx := context.Background()
	c, err := e.js.Consumer(ctx, stream.Name, "notify-hook")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.Durable != "notify-hook" || cc.AckPolicy != jetstream.AckExplicitPolicy || cc.DeliverPolicy != jetstream.DeliverNewPolicy ||
		cc.AckWait != 90*time.Second || cc.MaxAckPending != 7 || cc.FilterSubject != "pcwatch.events.subscription.>" {
		t.Errorf("consumer config %+v", cc)
	}
	first := quantityEvent(t, "c1", 1, 2, 2, 3)
	publish(t, e.js, first, "")
	waitFor(t, "delivery", func() bool { return len(rec.get("hook", first.ID)) == 1 }, rec.changed)
	n.stop()

	// Published while the notifier is down: delivered after the restart,
	// which also changes the filter.
	while := quantityEvent(t, "c1", 1, 3, 3, 4)
	publish(t, e.js, while, "")
	cfg2 := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s"}
routes:
  - match: {types: [subscription.quantity-changed, ops.mass-removal-held]}
    channels: [hook]
`, rc.URL), nil)
	startNotifier(t, cfg2, e.url, rec.hooks())
	waitFor(t, "delivery after restart", func() bool { return len(rec.get("hook", while.ID)) == 1 }, rec.changed)
	c, _ = e.js.Consumer(ctx, stream.Name, "notify-hook")
	cc = c.CachedInfo().Config
	if !slices.Equal(cc.FilterSubjects, []string{"pcwatch.events.subscription.quantity-changed.>", "pcwatch.ops.mass-removal-held"}) || cc.DeliverPolicy != jetstream.DeliverNewPolicy {
		t.Errorf("updated consumer %+v", cc)
	}
	if got := rc.accepted(); got[before.ID] != 0 || got[first.ID] != 1 || got[while.ID] != 1 {
		t.Errorf("accepted %v", got)
	}
}

func TestWaitsForTheEventStream(t *testing.T) {
	srv := startNATS(t)
	nc := connectNATS(t, srv.ClientURL())
	js := jsOf(t, nc)
	rc := newReceiver(t, nil)
	rec := newRecorder()
	h := rec.hooks()
	listening := make(chan string, 1)
	h.listening = func(addr string) { listening <- addr }
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: hookConfig(t, rc.URL, ""), NATS: natsconn.Options{URL: srv.ClientURL()}, Listen: "127.0.0.1:0",
			Logger: testLogger(t), hooks: h, Ready: func(ReadyInfo) { close(ready) }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	addr := <-listening
	if code, body := get(t, "http://"+addr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", code, body)
	}
	// The ready signal and /readyz wait for the stream.
	select {
	case <-ready:
		t.Fatal("ready without an event stream")
	default:
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != 503 {
		t.Errorf("/readyz %d %q", code, body)
	}
	ensureEventStream(t, js)
	select {
	case <-ready:
	case <-time.After(testTimeout):
		t.Fatal("not ready after the stream appeared")
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz %d %q", code, body)
	}
	ev := quantityEvent(t, "c1", 1, 1, 1, 2)
	publish(t, js, ev, "")
	waitFor(t, "delivery", func() bool { return len(rec.get("hook", ev.ID)) == 1 }, rec.changed)

	// Metrics.
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`pcwatch_notifier_notifications_total{channel="hook",result="delivered"} 1`,
		`pcwatch_notifier_notifications_total{channel="hook",result="dlq"} 0`,
		`pcwatch_notifier_events_received_total{channel="hook"} 1`,
		`pcwatch_notifier_attempts_total{channel="hook"} 1`,
		`pcwatch_notifier_send_duration_seconds_count{channel="hook"} 1`,
		`pcwatch_notifier_dlq_messages 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "T0KEN") {
		t.Error("/metrics reveals the webhook URL")
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAllChannelsEndToEnd(t *testing.T) {
	e := newEnv(t)
	hook, slack, teams := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	smtpSrv := startSMTP(t, false)
	host, port, _ := net.SplitHostPort(smtpSrv.addr)
	sub, err := e.nc.SubscribeSync("workflows.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = e.nc.Flush()
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook:  {kind: webhook, url: "%s", secret_env: S}
  slack: {kind: slack, url_env: SLACK}
  teams: {kind: teams, url_env: TEAMS}
  mail:
    kind: email
    smtp: {host: "%s", port: %s, username: pcwatch, password_env: PW, ca_file: "%s"}
    from: alerts@pcwatch.example.com
    to: [ops@example.com]
  wf: {kind: nats, subject: "workflows.{{.Type}}"}
routes:
  - match: {types: ["subscription.*-window-closing"]}
    channels: [hook, slack, teams, mail, wf]
`, hook.URL, host, port, smtpSrv.caFile), map[string]string{"S": testSecret, "SLACK": slack.URL + "/services/T/B/X", "TEAMS": teams.URL + "/wf?sig=x", "PW": "smtp-secret"})
	rec := newRecorder()
	startNotifier(t, cfg, e.url, rec.hooks())
	ev := typedEvent(t, events.SubscriptionCancellationClosing, "c9", 1)
	publish(t, e.js, ev, "")
	waitFor(t, "five deliveries", func() bool {
		n := 0
		for _, ch := range []string{"hook", "slack", "teams", "mail", "wf"} {
			n += rec.count(ch, ResultDelivered)
		}
		return n == 5
	}, rec.changed)
	for name, rc := range map[string]*receiver{"hook": hook, "slack": slack, "teams": teams} {
		if reqs := rc.requests(); len(reqs) != 1 {
			t.Errorf("%s got %d requests", name, len(reqs))
		}
	}
	if r := hook.requests()[0]; r.id != ev.ID || verifyStandardWebhook(testSecret, r.header, r.body, time.Now()) != nil {
		t.Error("webhook request")
	}
	if body := slack.requests()[0].body; !strings.Contains(string(body), `"blocks"`) || !strings.Contains(string(body), ev.ID) {
		t.Errorf("slack body %s", body)
	}
	checkAdaptiveCard(t, teams.requests()[0].body)
	smtpSrv.mu.Lock()
	if len(smtpSrv.mails) != 1 || !strings.Contains(string(smtpSrv.mails[0].data), "Message-ID: <"+ev.ID+".mail@pcwatch.example.com>") {
		t.Errorf("mail %d", len(smtpSrv.mails))
	}
	smtpSrv.mu.Unlock()
	m, err := sub.NextMsg(testTimeout)
	if err != nil || m.Subject != "workflows.subscription.cancellation-window-closing" || m.Header.Get("Nats-Msg-Id") != ev.ID || m.Header.Get("Pcwatch-Source-Subject") != ev.Subject {
		t.Errorf("republished %v %v", m, err)
	}
}

func TestUnusedChannelIsNotConsumed(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  used: {kind: webhook, url: "%s"}
  spare: {kind: webhook, url: "%s"}
routes:
  - channels: [used]
`, rc.URL, rc.URL), nil)
	n := startNotifier(t, cfg, e.url, nil)
	if !slices.Equal(n.info.Channels, []string{"used"}) {
		t.Errorf("consuming for %v", n.info.Channels)
	}
	if _, err := e.js.Consumer(context.Background(), stream.Name, ConsumerName("spare")); err == nil {
		t.Error("a consumer exists for the unused channel")
	}
}

// deadlineEvent is a cancellation-window-closing warning for customer c
// whose window closes at deadline.
func deadlineEvent(t *testing.T, c string, deadline time.Time) events.Envelope {
	t.Helper()
	info, _ := events.Lookup(events.SubscriptionCancellationClosing)
	d := sampleData(info, sampleTime)
	d.CustomerID, d.Deadline = c, &deadline
	env, _, err := events.New("https://pc.example/partner", events.SubscriptionCancellationClosing,
		events.IDKey{Entity: "subscription/" + c + "/sub-1", Extra: deadline.Format(time.RFC3339)}, sampleTime, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Bug 1 of issue 15: a channel started after the watcher lost the alerts
// published before its first start. A new channel's consumer starts a
// lookback (default 24h) back: what was published before it is delivered,
// except deadline warnings whose deadline has already passed (acknowledged
// as past-deadline).
func TestNewChannelStartsWithTheBacklog(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	open := deadlineEvent(t, "c1", time.Now().Add(48*time.Hour))
	gone := deadlineEvent(t, "c2", time.Now().Add(-time.Hour))
	change := quantityEvent(t, "c3", 1, 1, 1, 2)
	for _, env := range []events.Envelope{open, gone, change} {
		publish(t, e.js, env, "")
	}
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s"}
routes:
  - match: {types: ["subscription.*"]}
    channels: [hook]
`, rc.URL), nil)
	if cfg.Delivery.Start != DefaultStart {
		t.Fatalf("delivery.start defaults to %q", cfg.Delivery.Start)
	}
	rec := newRecorder()
	startNotifier(t, cfg, e.url, rec.hooks())
	waitFor(t, "the backlog", func() bool {
		return len(rec.get("hook", open.ID)) == 1 && len(rec.get("hook", change.ID)) == 1 && len(rec.get("hook", gone.ID)) == 1
	}, rec.changed)
	if got := rec.get("hook", gone.ID); got[0] != ResultPast {
		t.Errorf("the warning of a deadline already past: %v, want %s", got, ResultPast)
	}
	if got := rc.accepted(); got[open.ID] != 1 || got[change.ID] != 1 || got[gone.ID] != 0 {
		t.Errorf("accepted %v: want the open warning and the change, not the past warning", got)
	}
	c, err := e.js.Consumer(context.Background(), stream.Name, "notify-hook")
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.CachedInfo().Config; cc.DeliverPolicy != jetstream.DeliverByStartTimePolicy || cc.OptStartTime == nil ||
		time.Since(*cc.OptStartTime) < 24*time.Hour || time.Since(*cc.OptStartTime) > 25*time.Hour {
		t.Errorf("consumer starts %v at %v, want 24h back", cc.DeliverPolicy, cc.OptStartTime)
	}
}

func TestDeliveryStartValidation(t *testing.T) {
	for _, tc := range []struct {
		start string
		ok    bool
	}{{"new", true}, {"all", true}, {"7d", true}, {"90m", true}, {"0s", false}, {"-1h", false}, {"yesterday", false}} {
		_, err := ParseConfig([]byte("channels:\n  h: {kind: webhook, url: \"https://example.com/h\"}\nroutes:\n  - channels: [h]\ndelivery: {start: \""+tc.start+"\"}\n"), ParseOptions{})
		if (err == nil) != tc.ok {
			t.Errorf("delivery.start %q: %v", tc.start, err)
		}
		if err != nil && !strings.Contains(err.Error(), "delivery.start") {
			t.Errorf("delivery.start %q: the error does not name the setting: %v", tc.start, err)
		}
	}
}

// A second copy of a delivered event is not sent again, whatever happened
// to the claims bucket in between: intact (a new notifier process, with no
// in-memory memory of the first, reads it delivered), lost while no
// notifier ran, lost under a running notifier (a memory stream does not
// survive a server restart; here it is deleted), or never holding the
// event because an earlier version recorded it, one record per event, in
// the deliveries bucket. The claims bucket is made again and filled from
// the synced delivered records before anything is sent.
func TestDeliveredSurvivesLostClaims(t *testing.T) {
	for _, tc := range []struct {
		name              string
		loseStopped, lose bool // delete the claims bucket between, or under, the notifiers
		legacy            bool // the first copy was recorded by an earlier version
	}{
		{name: "claims intact"},
		{name: "claims lost between notifiers", loseStopped: true},
		{name: "claims lost under a running notifier", lose: true},
		{name: "legacy record", legacy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rc := newReceiver(t, nil)
			rec := newRecorder()
			ev := quantityEvent(t, "c1", 1, 1, 1, 2)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if tc.legacy {
				kv, err := EnsureDeliveries(ctx, e.js, DefaultDedupeTTL)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kv.Put(ctx, deliveryKey("hook", ev.ID), []byte(`{"state":"delivered","owner":"v0","at":"2026-01-01T00:00:00Z"}`)); err != nil {
					t.Fatal(err)
				}
			} else {
				first := startNotifier(t, hookConfig(t, rc.URL, ""), e.url, rec.hooks())
				publish(t, e.js, ev, "copy-1")
				waitFor(t, "first copy delivered", func() bool { return rec.count("hook", ResultDelivered) == 1 }, rec.changed)
				first.stop()
			}
			if tc.loseStopped {
				if err := e.js.DeleteKeyValue(ctx, ClaimsBucket); err != nil {
					t.Fatal(err)
				}
			}
			startNotifier(t, hookConfig(t, rc.URL, ""), e.url, rec.hooks())
			if tc.lose {
				warm := quantityEvent(t, "c1", 3, 1, 1, 2)
				publish(t, e.js, warm, "")
				waitFor(t, "an event delivered before the loss", func() bool { return len(rec.get("hook", warm.ID)) == 1 }, rec.changed)
				if err := e.js.DeleteKeyValue(ctx, ClaimsBucket); err != nil {
					t.Fatal(err)
				}
			}
			publish(t, e.js, ev, "copy-2")
			other := quantityEvent(t, "c1", 2, 1, 1, 2)
			publish(t, e.js, other, "")
			want := []string{ResultDelivered, ResultDuplicate}
			if tc.legacy {
				want = []string{ResultDuplicate}
			}
			// Under a running notifier the first claims after the loss fail
			// and are retried; nothing else may differ.
			settledResults := func(id string) []string {
				return slices.DeleteFunc(rec.get("hook", id), func(r string) bool { return tc.lose && r == ResultRetry })
			}
			waitFor(t, "both handled", func() bool { return len(settledResults(ev.ID)) == len(want) && len(settledResults(other.ID)) == 1 }, rec.changed)
			if got := settledResults(ev.ID); !slices.Equal(got, want) {
				t.Errorf("results %v, want %v", rec.get("hook", ev.ID), want)
			}
			if got := settledResults(other.ID); !slices.Equal(got, []string{ResultDelivered}) {
				t.Errorf("results of a new event %v", rec.get("hook", other.ID))
			}
			if got := rc.accepted(); got[ev.ID] != len(want)-1 || got[other.ID] != 1 {
				t.Errorf("accepted %v", got)
			}
			kv, err := e.js.KeyValue(ctx, ClaimsBucket)
			if err != nil {
				t.Fatalf("claims bucket: %v", err)
			}
			if _, err := kv.Get(ctx, restoredKey); err != nil {
				t.Errorf("claims bucket without its restored marker: %v", err)
			}
		})
	}
}
