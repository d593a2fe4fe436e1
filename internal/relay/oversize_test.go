package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// startServer runs an in-process nats-server with JetStream on a free port,
// its store in a temporary directory, with edit applied to its options.
func startServer(t testing.TB, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	if edit != nil {
		edit(o)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// eventSchema compiles docs/events.schema.json.
func eventSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "events.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(events.SchemaBase, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(events.SchemaBase)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, body []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("event fails docs/events.schema.json: %v\n%.2000s", err, body)
	}
}

const subEntity = "subscription/c1/sub-1"

// renameEvent is subscription sub-1's friendly name changing to n bytes at
// revision rev: the name is in after and in the change's new value. It is
// made of characters JSON escapes (<, &, >) and of multi-byte ones.
func renameEvent(t testing.TB, rev uint64, n int) events.Envelope {
	return renameSub(t, "c1", 1, rev, strings.Repeat("Ab<&>é", n/7+1)[:n])
}

// renameSub is customer c's subscription sub-<sub> renamed to name.
func renameSub(t testing.TB, c string, sub int, rev uint64, name string) events.Envelope {
	t.Helper()
	id := fmt.Sprintf("sub-%d", sub)
	d := &events.Data{CustomerID: c, CustomerName: "Contoso", SubscriptionID: id, Revision: rev,
		After:   &events.View{ID: id, OfferName: "Microsoft 365 E3", FriendlyName: name, Status: "active"},
		Changes: []events.Change{{Path: "/friendlyName", Old: events.JSONValue("Sales"), New: events.JSONValue(name)}}}
	env, _, err := events.New("https://pc.example", events.SubscriptionUpdated,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/%s", c, id), Revision: rev}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// manyFieldsEvent is sub-1 gaining n fields with long names: nothing of it
// may be cut (paths are identities), so it cannot be shrunk.
func manyFieldsEvent(t testing.TB, rev uint64, n int) events.Envelope {
	t.Helper()
	d := &events.Data{CustomerID: "c1", SubscriptionID: "sub-1", Revision: rev, After: &events.View{ID: "sub-1"}}
	for i := range n {
		d.Changes = append(d.Changes, events.Change{Path: fmt.Sprintf("/extension%04d%s", i, strings.Repeat("x", 100)), New: events.JSONValue(i)})
	}
	env, _, err := events.New("https://pc.example", events.SubscriptionUpdated, events.IDKey{Entity: subEntity, Revision: rev},
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// seatsEvent is a small, complete quantity-changed event of customer c's
// subscription sub-<sub> (makeEvent's entity) at revision rev.
func seatsEvent(t testing.TB, c string, sub int, rev uint64) events.Envelope {
	t.Helper()
	id := fmt.Sprintf("sub-%d", sub)
	old, now, delta := int(rev), int(rev)+1, 1
	d := &events.Data{CustomerID: c, SubscriptionID: id, Revision: rev, After: &events.View{ID: id, Quantity: &now},
		Changes: []events.Change{{Path: "/quantity", Old: events.JSONValue(old), New: events.JSONValue(now)}},
		Old:     events.JSONValue(old), New: events.JSONValue(now), Delta: &delta}
	env, _, err := events.New("https://pc.example", events.SubscriptionQuantityChanged,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/%s", c, id), Revision: rev}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// quantityEvent is a small event of sub-1.
func quantityEvent(t testing.TB, rev uint64) events.Envelope { return seatsEvent(t, "c1", 1, rev) }

// TestOversizedEventsDoNotBlockTheOutbox: an event over the message size
// limit used to fail its publish forever ("nats: maximum payload
// exceeded") and hold every event after it. Now it is published shrunk,
// or, when it cannot be, as an ops.event-dropped notice; everything after
// it flows, per-entity order holds, nothing is lost or doubled, and the
// counts move.
func TestOversizedEventsDoNotBlockTheOutbox(t *testing.T) {
	const limit = 32 << 10
	for _, tc := range []struct {
		name   string
		server func(*server.Options)
		stream func(*jetstream.StreamConfig)
	}{
		{"server max_payload", func(o *server.Options) { o.MaxPayload = limit }, nil},
		{"stream max_msg_size", nil, func(c *jetstream.StreamConfig) { c.MaxMsgSize = limit }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startServer(t, tc.server)
			nc := connect(t, ns.ClientURL())
			ensureStream(t, nc, stream.Options{})
			if tc.stream != nil {
				js := natstest.JetStream(t, nc)
				s, err := js.Stream(context.Background(), stream.Name)
				if err != nil {
					t.Fatal(err)
				}
				cfg := s.CachedInfo().Config
				tc.stream(&cfg)
				if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
					t.Fatal(err)
				}
			}
			st := openStore(t)
			big := renameEvent(t, 2, 100<<10)
			huge := manyFieldsEvent(t, 4, 400)
			if len(huge.Body) <= limit {
				t.Fatalf("the unshrinkable event is only %d bytes", len(huge.Body))
			}
			// sub-1 revisions 1..5 with the two oversized ones among them,
			// and another entity in between.
			evs := []events.Envelope{quantityEvent(t, 1), big, seatsEvent(t, "c2", 9, 1), quantityEvent(t, 3), huge, quantityEvent(t, 5)}
			if err := st.Commit(&state.Change{Events: evs}); err != nil {
				t.Fatal(err)
			}
			m := &countingMetrics{}
			if n := flush(t, newRelay(t, nc, st, m)); n != len(evs) {
				t.Fatalf("published %d, want %d", n, len(evs))
			}
			if n, _ := st.OutboxLen(); n != 0 {
				t.Fatalf("outbox still holds %d", n)
			}
			msgs := readStream(t, nc)
			if len(msgs) != len(evs) {
				t.Fatalf("stream holds %d messages, want %d", len(msgs), len(evs))
			}
			schema := eventSchema(t)
			var revs []uint64
			for i, msg := range msgs {
				if len(msg.body) > limit {
					t.Errorf("message %d is %d bytes, over the limit %d", i, len(msg.body), limit)
				}
				validate(t, schema, []byte(msg.body))
				ev, err := events.Decode([]byte(msg.body))
				if err != nil {
					t.Fatal(err)
				}
				d, err := ev.DecodeData()
				if err != nil {
					t.Fatal(err)
				}
				switch msg.id {
				case big.ID:
					if ev.ID != big.ID || msg.subject != big.Subject || ev.Type != events.SubscriptionUpdated {
						t.Errorf("the shrunk event changed identity: id %s subject %s type %s", ev.ID, msg.subject, ev.Type)
					}
					want := []string{"/after/friendlyName", "/changes/0/new"}
					var got []string
					for _, tr := range d.Truncated {
						got = append(got, tr.Path)
						if tr.Size != 100<<10 || len(tr.SHA256) != 64 {
							t.Errorf("truncation %+v: want the size %d and a SHA-256", tr, 100<<10)
						}
					}
					if strings.Join(got, " ") != strings.Join(want, " ") {
						t.Errorf("truncated %v, want %v", got, want)
					}
					if !strings.HasSuffix(d.After.FriendlyName, "…") || !strings.HasPrefix(d.After.FriendlyName, "Ab<&>é") {
						t.Errorf("friendlyName not cut to a marked prefix: %q", d.After.FriendlyName)
					}
					if d.After.OfferName != "Microsoft 365 E3" || d.Changes[0].Path != "/friendlyName" || string(d.Changes[0].Old) != `"Sales"` {
						t.Errorf("values that fit were changed: %+v", d)
					}
				case huge.ID:
					t.Errorf("the unshrinkable event was published as is")
				}
				switch {
				case ev.Type == events.OpsEventDropped:
					dr := d.Dropped
					if dr == nil || dr.ID != huge.ID || dr.Type != events.SubscriptionUpdated || dr.Subject != huge.Subject ||
						dr.Entity != subEntity || dr.Size <= limit || dr.Limit != limit || d.CustomerID != "c1" {
						t.Errorf("notice does not say what was dropped: %+v (data %s)", dr, ev.Data)
					}
					if msg.subject != "pcwatch.ops.event-dropped" || ev.Subject != "customers/c1" || ev.Source != "https://pc.example" {
						t.Errorf("notice subject %s / %s, source %s", msg.subject, ev.Subject, ev.Source)
					}
					revs = append(revs, 4)
				case d.SubscriptionID == "sub-1":
					revs = append(revs, d.Revision)
				}
			}
			if fmt.Sprint(revs) != "[1 2 3 4 5]" {
				t.Errorf("sub-1's events in stream order: revisions %v, want [1 2 3 4 5]", revs)
			}
			if m.truncated.Load() != 1 || m.dropped.Load() != 1 || m.published.Load() != int64(len(evs)) {
				t.Errorf("metrics: truncated %d dropped %d published %d", m.truncated.Load(), m.dropped.Load(), m.published.Load())
			}
			if c, err := st.RelayCounts(); err != nil || c != (state.RelayCounts{Truncated: 1, Dropped: 1}) {
				t.Errorf("durable counts %+v, %v; want 1 truncated, 1 dropped", c, err)
			}
		})
	}
}

// TestOversizedRepublishAfterCrash: the relay published the shrunk event
// and the notice and died before deleting them from the outbox. A new
// relay finds them in the stream (by what it would publish for them) and
// neither doubles them nor loses the count.
func TestOversizedRepublishAfterCrash(t *testing.T) {
	const limit = 32 << 10
	ns := startServer(t, func(o *server.Options) { o.MaxPayload = limit })
	nc := connect(t, ns.ClientURL())
	ensureStream(t, nc, stream.Options{})
	st := openStore(t)
	big, huge, after := renameEvent(t, 2, 100<<10), manyFieldsEvent(t, 3, 400), quantityEvent(t, 4)
	st.Commit(&state.Change{Events: []events.Envelope{big, huge, after}})

	// What the crashed relay had published: big shrunk, huge's notice.
	// (The relay fits the body under the limit minus its headers; any
	// headroom gives the same shrunk bytes for this event.)
	js := natstest.JetStream(t, nc)
	shrunk, _, err := events.ShrinkEvent(big.Body, limit-512)
	if err != nil {
		t.Fatal(err)
	}
	notice, err := events.DroppedNotice(huge, len(huge.Body)+200, limit)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		subject, id string
		body        []byte
	}{{big.Subject, big.ID, shrunk}, {notice.Subject, notice.ID, notice.Body}} {
		msg := nats.NewMsg(m.subject)
		msg.Data = m.body
		if _, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(m.id)); err != nil {
			t.Fatal(err)
		}
	}
	m := &countingMetrics{}
	if n := flush(t, newRelay(t, nc, st, m)); n != 1 {
		t.Errorf("published %d, want only the event after them", n)
	}
	msgs := readStream(t, nc)
	count := map[string]int{}
	for _, m := range msgs {
		count[m.id]++
	}
	if len(msgs) != 3 || count[big.ID] != 1 || count[notice.ID] != 1 || count[after.ID] != 1 {
		t.Errorf("stream holds %d messages, by id %v", len(msgs), count)
	}
	if c, _ := st.RelayCounts(); c != (state.RelayCounts{Truncated: 1, Dropped: 1}) {
		t.Errorf("durable counts %+v after the restart, want the two from before the crash", c)
	}
}

// TestStreamLimitLoweredWhileRunning: the stream's max_msg_size is read at
// start; when it is lowered later the stream rejects the next big message,
// the relay reads the limit again and publishes it shrunk.
func TestStreamLimitLoweredWhileRunning(t *testing.T) {
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	ensureStream(t, nc, stream.Options{})
	st := openStore(t)
	st.Commit(&state.Change{Events: []events.Envelope{quantityEvent(t, 1)}})
	r := newRelay(t, nc, st, &countingMetrics{})
	flush(t, r)

	js := natstest.JetStream(t, nc)
	s, _ := js.Stream(context.Background(), stream.Name)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 8 << 10
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	big := renameEvent(t, 2, 20<<10)
	st.Commit(&state.Change{Events: []events.Envelope{big, quantityEvent(t, 3)}})
	if n := flush(t, r); n != 2 {
		t.Fatalf("published %d, want 2", n)
	}
	msgs := readStream(t, nc)
	if len(msgs) != 3 || msgs[1].id != big.ID || len(msgs[1].body) > 8<<10 || !strings.Contains(msgs[1].body, `"truncated"`) {
		t.Fatalf("stream: %d messages; second %s, %d bytes", len(msgs), msgs[1].id, len(msgs[1].body))
	}
	if h := r.Health(); h.ConsecutiveFailures != 0 {
		t.Errorf("health after a clean drain: %+v", h)
	}
}

// TestLimitBelowANotice: a limit so small that not even a notice fits is a
// configuration error: the relay keeps the events and says what to raise.
func TestLimitBelowANotice(t *testing.T) {
	ns := startServer(t, nil)
	nc := connect(t, ns.ClientURL())
	ensureStream(t, nc, stream.Options{})
	js := natstest.JetStream(t, nc)
	s, _ := js.Stream(context.Background(), stream.Name)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 400
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	st.Commit(&state.Change{Events: []events.Envelope{quantityEvent(t, 1), quantityEvent(t, 2)}})
	r := newRelay(t, nc, st, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := r.Flush(ctx)
	h := r.Health()
	if err == nil || !errors.Is(h.LastError, relay.ErrLimitTooSmall) || !strings.Contains(h.LastError.Error(), "max_msg_size") {
		t.Fatalf("Flush = %v; last error %v: want ErrLimitTooSmall naming the limit to raise", err, h.LastError)
	}
	if h.ConsecutiveFailures == 0 || h.FailingSince.IsZero() {
		t.Errorf("health %+v does not record the failures", h)
	}
	if n, _ := st.OutboxLen(); n != 2 {
		t.Errorf("outbox holds %d, want both events kept", n)
	}
}
