package relay_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

func startNATS(t testing.TB, dir string, port int) *natsembed.Server {
	if port == 0 {
		port = -1
	}
	return natstest.StartAt(t, dir, port)
}

func connect(t testing.TB, url string) *nats.Conn { return natstest.Connect(t, url) }

func openStore(t testing.TB) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// makeEvent builds a real subscription quantity event for entity e at
// revision rev.
func makeEvent(t testing.TB, customer string, sub int, rev uint64) events.Envelope {
	t.Helper()
	d := &events.Data{CustomerID: customer, SubscriptionID: fmt.Sprintf("sub-%d", sub), Revision: rev,
		Old: events.JSONValue(int(rev)), New: events.JSONValue(int(rev) + 1), Delta: new(int)}
	*d.Delta = 1
	env, _, err := events.New("https://pc.example", events.SubscriptionQuantityChanged,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/sub-%d", customer, sub), Revision: rev},
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

type stored struct {
	seq     uint64
	subject string
	id      string
	body    string
	ctype   string
}

// readStream returns every message in PCWATCH_EVENTS in stream order.
func readStream(t testing.TB, nc *nats.Conn) []stored {
	t.Helper()
	var out []stored
	for _, m := range natstest.ReadStream(t, nc, stream.Name) {
		out = append(out, stored{seq: m.Sequence, subject: m.Subject, id: m.Header.Get(jetstream.MsgIDHeader),
			body: string(m.Data), ctype: m.Header.Get("Content-Type")})
	}
	return out
}

func ensureStream(t testing.TB, nc *nats.Conn, o stream.Options) {
	natstest.EnsureEvents(t, nc, o)
}

func newRelay(t testing.TB, nc *nats.Conn, ob relay.Outbox, m relay.Metrics) *relay.Relay {
	t.Helper()
	r, err := relay.New(relay.Options{Conn: nc, Outbox: ob, Metrics: m, RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func flush(t testing.TB, r *relay.Relay) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := r.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPublishOnceWithSubjectHeadersAndBody(t *testing.T) {
	srv := startNATS(t, t.TempDir(), 0)
	nc := connect(t, srv.ClientURL())
	ensureStream(t, nc, stream.Options{})
	st := openStore(t)
	e := makeEvent(t, "c1", 7, 3)
	if err := st.Commit(&state.Change{Events: []events.Envelope{e}}); err != nil {
		t.Fatal(err)
	}
	if n := flush(t, newRelay(t, nc, st, nil)); n != 1 {
		t.Fatalf("published %d, want 1", n)
	}
	msgs := readStream(t, nc)
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.subject != "pcwatch.events.subscription.quantity-changed.c1.sub-7" || m.id != e.ID ||
		m.ctype != "application/cloudevents+json" || m.body != string(e.Body) {
		t.Errorf("stored message = %+v", m)
	}
	ev, err := events.Decode([]byte(m.body))
	if err != nil || ev.ID != e.ID || ev.Subject != "customers/c1/subscriptions/sub-7" {
		t.Errorf("decoded = %+v, %v", ev, err)
	}
	if n, _ := st.OutboxLen(); n != 0 {
		t.Errorf("outbox still holds %d", n)
	}
}

func TestRepublishIsDeduplicated(t *testing.T) {
	srv := startNATS(t, t.TempDir(), 0)
	nc := connect(t, srv.ClientURL())
	ensureStream(t, nc, stream.Options{})
	st := openStore(t)
	e := makeEvent(t, "c1", 1, 1)
	// The same event committed twice (a retried cycle, a replay) and the
	// same event id produced by a second watcher.
	st.Commit(&state.Change{Events: []events.Envelope{e}})
	st.Commit(&state.Change{Events: []events.Envelope{e, makeEvent(t, "c1", 1, 2)}})
	flush(t, newRelay(t, nc, st, nil))
	other := openStore(t)
	other.Commit(&state.Change{Events: []events.Envelope{makeEvent(t, "c1", 1, 1)}})
	flush(t, newRelay(t, nc, other, nil))
	msgs := readStream(t, nc)
	if len(msgs) != 2 {
		t.Fatalf("stream holds %d messages, want 2 (revisions 1 and 2 once each): %+v", len(msgs), msgs)
	}
}

type countingMetrics struct {
	published atomic.Int64
	failed    atomic.Int64
	depth     atomic.Int64
	truncated atomic.Int64
	dropped   atomic.Int64
	onPublish func(total int64)
	onFail    func()
}

func (m *countingMetrics) EventsTruncated(n int) { m.truncated.Add(int64(n)) }
func (m *countingMetrics) EventsDropped(n int)   { m.dropped.Add(int64(n)) }

func (m *countingMetrics) OutboxDepth(n int) { m.depth.Store(int64(n)) }
func (m *countingMetrics) Published(n int) {
	total := m.published.Add(int64(n))
	if m.onPublish != nil {
		m.onPublish(total)
	}
}
func (m *countingMetrics) PublishFailed() {
	m.failed.Add(1)
	if m.onFail != nil {
		m.onFail()
	}
}

// TestServerRestartMidDrain stops the NATS server while the relay is
// draining and starts it again: every event ends up stored exactly once and
// the events of each entity stay in order, events over NATS's 1 MiB
// max_payload (published shrunk) among them.
func TestServerRestartMidDrain(t *testing.T) {
	natsDir := t.TempDir()
	srv := startNATS(t, natsDir, 0)
	url, port := srv.ClientURL(), srv.Port()
	nc := connect(t, url)
	ensureStream(t, nc, stream.Options{})
	st := openStore(t)

	const entities, revs = 40, 50
	var all []events.Envelope
	for rev := uint64(1); rev <= revs; rev++ {
		var batch []events.Envelope
		for e := 0; e < entities; e++ {
			if e == 3 && (rev == 5 || rev == 30) {
				batch = append(batch, renameSub(t, "c1", e, rev, strings.Repeat("x", 1_200_000))) // the 1.2 MB field of the bug report
				continue
			}
			batch = append(batch, makeEvent(t, "c1", e, rev))
		}
		all = append(all, batch...)
		if err := st.Commit(&state.Change{Events: batch}); err != nil {
			t.Fatal(err)
		}
	}

	var once sync.Once
	stopped := make(chan struct{})
	m := &countingMetrics{}
	m.onPublish = func(total int64) {
		if total >= 300 {
			once.Do(func() { srv.Shutdown(); close(stopped) })
		}
	}
	failed := make(chan struct{}, 1)
	m.onFail = func() {
		select {
		case failed <- struct{}{}:
		default:
		}
	}
	r := newRelay(t, nc, st, m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	<-stopped
	// The relay fails while the server is down; the outbox keeps everything
	// not yet acknowledged.
	<-failed
	if n, _ := st.OutboxLen(); n == 0 || n >= len(all) {
		t.Fatalf("outbox holds %d while NATS is down, want some but not all of %d", n, len(all))
	}
	natstest.StartAt(t, natsDir, port)
	flush(t, r) // drains alongside Run until the outbox is empty
	cancel()
	<-done

	msgs := readStream(t, nc)
	count := map[string]int{}
	for _, m := range msgs {
		count[m.id]++
	}
	for _, e := range all {
		if count[e.ID] != 1 {
			t.Errorf("event %s (%s) stored %d times, want 1", e.ID, e.Subject, count[e.ID])
		}
	}
	if len(msgs) != len(all) {
		t.Errorf("stream holds %d messages, want %d", len(msgs), len(all))
	}
	if m.truncated.Load() != 2 {
		t.Errorf("%d events published shrunk, want the 2 over 1 MiB", m.truncated.Load())
	}
	// Per-entity order: revisions of each subscription are increasing.
	last := map[string]uint64{}
	for _, m := range msgs {
		ev, _ := events.Decode([]byte(m.body))
		d, _ := ev.DecodeData()
		if d.Revision <= last[d.SubscriptionID] {
			t.Errorf("entity %s: revision %d stored after %d", d.SubscriptionID, d.Revision, last[d.SubscriptionID])
		}
		last[d.SubscriptionID] = d.Revision
	}
}

// TestReconcileAfterCrashBetweenAckAndDelete: the relay published events
// and JetStream acknowledged them, but the process died before deleting
// them from the outbox. On restart they must not be published again, even
// when the duplicate window has passed; later events still go out.
func TestReconcileAfterCrashBetweenAckAndDelete(t *testing.T) {
	srv := startNATS(t, t.TempDir(), 0)
	nc := connect(t, srv.ClientURL())
	ensureStream(t, nc, stream.Options{})
	st := openStore(t)
	var evs []events.Envelope
	for rev := uint64(1); rev <= 3; rev++ {
		for sub := 0; sub < 4; sub++ {
			evs = append(evs, makeEvent(t, "c9", sub, rev))
		}
	}
	st.Commit(&state.Change{Events: evs})
	// What the crashed relay had already published: revisions 1 and 2 of
	// subscriptions 0-2 and revision 1 of subscription 3.
	js, _ := jetstream.New(nc)
	published := map[string]bool{}
	for i, e := range evs {
		rev := i/4 + 1
		sub := i % 4
		if rev <= 2 && sub < 3 || rev == 1 && sub == 3 {
			msg := nats.NewMsg(e.Subject)
			msg.Data = e.Body
			msg.Header.Set(jetstream.MsgIDHeader, e.ID)
			if _, err := js.PublishMsg(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			published[e.ID] = true
		}
	}
	m := &countingMetrics{}
	n := flush(t, newRelay(t, nc, st, m))
	if want := len(evs) - len(published); n != want || m.published.Load() != int64(want) {
		t.Errorf("relay published %d (metrics %d), want only the %d not yet stored", n, m.published.Load(), want)
	}
	msgs := readStream(t, nc)
	count := map[string]int{}
	for _, m := range msgs {
		count[m.id]++
	}
	for _, e := range evs {
		if count[e.ID] != 1 {
			t.Errorf("event %s stored %d times", e.Subject, count[e.ID])
		}
	}
}

func TestNATSUnreachableKeepsEverything(t *testing.T) {
	// A server that is started to learn a free port and stopped again.
	srv := startNATS(t, t.TempDir(), 0)
	url := srv.ClientURL()
	srv.Shutdown()
	nc := connect(t, url)
	st := openStore(t)
	st.Commit(&state.Change{Events: []events.Envelope{makeEvent(t, "c1", 1, 1), makeEvent(t, "c1", 2, 1)}})
	r := newRelay(t, nc, st, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := r.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 events still waiting") {
		t.Fatalf("Flush with NATS down = %v", err)
	}
	if n, _ := st.OutboxLen(); n != 2 {
		t.Errorf("outbox holds %d, want 2", n)
	}
}
