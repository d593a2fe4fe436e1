package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/state"
)

// The relay's timers — the retry backoff, the idle look at the outbox, the
// wait for a PubAck — are tested on synctest's fake time, so instants are
// asserted exactly and nothing sleeps on the wall clock. A real NATS
// connection keeps goroutines and sockets outside any bubble, so these
// tests give the relay a fake connection and a fake JetStream (the conn and
// jetStream interfaces); what the relay does against a real nats-server is
// tested in relay_test.go and oversize_test.go.

// memOutbox is an Outbox in memory.
type memOutbox struct {
	mu   sync.Mutex
	recs []state.OutboxRecord
	seq  uint64
}

func (m *memOutbox) add(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.recs = append(m.recs, state.OutboxRecord{Seq: m.seq, Envelope: events.Envelope{
		ID: id, Subject: "pcwatch.events.test." + id, Entity: "test/" + id, Body: []byte(`{"id":"` + id + `"}`)}})
}

func (m *memOutbox) OutboxRead(n int) ([]state.OutboxRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.recs[:min(n, len(m.recs))]), nil
}

func (m *memOutbox) OutboxDelete(seqs []uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = slices.DeleteFunc(m.recs, func(r state.OutboxRecord) bool { return slices.Contains(seqs, r.Seq) })
	return nil
}

func (m *memOutbox) OutboxDeleteCounted(seqs []uint64, _ state.RelayCounts) error {
	return m.OutboxDelete(seqs)
}

func (m *memOutbox) OutboxLen() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs), nil
}

// fakeConn is a NATS connection that is up.
type fakeConn struct{}

func (fakeConn) MaxPayload() int64   { return 1 << 20 }
func (fakeConn) IsConnected() bool   { return true }
func (fakeConn) LastError() error    { return nil }
func (fakeConn) Status() nats.Status { return nats.CONNECTED }

// fakeStream is a stream that holds nothing the outbox does.
type fakeStream struct{ jetstream.Stream }

func (fakeStream) CachedInfo() *jetstream.StreamInfo { return &jetstream.StreamInfo{} }
func (fakeStream) GetLastMsgForSubject(context.Context, string) (*jetstream.RawStreamMsg, error) {
	return nil, jetstream.ErrMsgNotFound
}

// fakeFuture is a PubAckFuture settled by fakeJS.
type fakeFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
	msg *nats.Msg
}

func (f *fakeFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fakeFuture) Err() <-chan error            { return f.err }
func (f *fakeFuture) Msg() *nats.Msg               { return f.msg }

// fakeJS acknowledges every publish, fails it with fail when that is set,
// or, with hold, never answers. It notes when each publish was attempted,
// since start, and what was acknowledged.
type fakeJS struct {
	start time.Time

	mu       sync.Mutex
	fail     error
	hold     bool
	attempts []time.Duration
	acked    []string
}

var errNoAck = errors.New("nats: timeout")

func (f *fakeJS) Stream(context.Context, string) (jetstream.Stream, error) { return fakeStream{}, nil }

func (f *fakeJS) PublishMsgAsync(msg *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, time.Since(f.start))
	fut := &fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1), msg: msg}
	switch {
	case f.hold:
	case f.fail != nil:
		fut.err <- f.fail
	default:
		f.acked = append(f.acked, msg.Subject)
		fut.ok <- &jetstream.PubAck{Stream: "PCWATCH_EVENTS", Sequence: uint64(len(f.acked))}
	}
	return fut, nil
}

func (f *fakeJS) set(fail error, hold bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.hold = fail, hold
}

func (f *fakeJS) tries() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts)
}

func (f *fakeJS) published() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.acked)
}

// fakeRelay returns a relay on an in-memory outbox and fake NATS, in the
// calling synctest bubble.
func fakeRelay(o Options) (*Relay, *memOutbox, *fakeJS) {
	ob := &memOutbox{}
	js := &fakeJS{start: time.Now()}
	o.Outbox = ob
	return newRelay(o.withDefaults(), fakeConn{}, js), ob, js
}

func runRelay(r *Relay) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return done, cancel
}

// gaps returns the time between consecutive drains that published: the
// distinct instants of the attempts (one drain may publish several records
// at once).
func gaps(at []time.Duration) []time.Duration {
	at = slices.Compact(slices.Clone(at))
	var g []time.Duration
	for i := 1; i < len(at); i++ {
		g = append(g, at[i]-at[i-1])
	}
	return g
}

// wantBackoff checks that retry i (from 0) waited what the relay's
// exponential backoff allows: initial·1.5^i, capped at max, ±50%
// (cenkalti/backoff's randomisation, which the relay keeps).
func wantBackoff(t *testing.T, gaps []time.Duration, initial, ceiling time.Duration) {
	t.Helper()
	iv := float64(initial)
	for i, g := range gaps {
		lo, hi := time.Duration(0.5*iv), time.Duration(1.5*iv)
		if g < lo || g > hi {
			t.Errorf("retry %d came %s after the failure, want within [%s, %s] (backoff %s): gaps %v", i+1, g, lo, hi, time.Duration(iv), gaps)
		}
		iv = min(iv*1.5, float64(ceiling))
	}
}

// While publishing fails the relay retries with a backoff that grows to
// RetryMax and stays there; a kick does not cut a backoff short; a drain
// that publishes everything resets the backoff, and the next failure
// waits RetryInitial again.
func TestRelayBackoffGrowsAndResets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const initial, ceiling = time.Second, 8 * time.Second
		r, ob, js := fakeRelay(Options{RetryInitial: initial, RetryMax: ceiling, Idle: time.Hour})
		ob.add("e1")
		js.set(errNoAck, false)
		start := time.Now()
		done, cancel := runRelay(r)
		defer cancel()

		// 2 minutes of failures: 1s, 1.5s, 2.25s, ... then 8s at most.
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		at := js.tries()
		if len(at) < 12 {
			t.Fatalf("%d attempts in 2 minutes of failures: %v", len(at), at)
		}
		if at[0] != 0 {
			t.Errorf("first attempt at +%s, want at once", at[0])
		}
		wantBackoff(t, gaps(at), initial, ceiling)
		h := r.Health()
		if h.ConsecutiveFailures != len(at) || !h.FailingSince.Equal(start) || !errors.Is(h.LastError, errNoAck) {
			t.Errorf("Health = %+v after %d failed drains since %s", h, len(at), start)
		}
		if n, _ := ob.OutboxLen(); n != 1 {
			t.Errorf("outbox holds %d records after failed publishes, want 1", n)
		}

		// NATS is back and new events are kicked in: the relay still
		// sleeps out its backoff, then publishes everything at once.
		js.set(nil, false)
		ob.add("e2")
		r.Kick()
		kicked := time.Since(start)
		synctest.Wait()
		if js.published() != 0 {
			t.Fatalf("a kick cut the backoff short")
		}
		time.Sleep(12 * time.Second) // the longest backoff allowed
		synctest.Wait()
		at = js.tries()
		var retried time.Duration
		for _, a := range at {
			if a > kicked {
				retried = a
				break
			}
		}
		if js.published() != 2 || retried == 0 || retried-at[slices.Index(at, retried)-1] > 12*time.Second {
			t.Fatalf("after NATS came back: %d published, attempts %v", js.published(), at)
		}
		if h := r.Health(); h.ConsecutiveFailures != 0 || h.LastError != nil {
			t.Errorf("Health = %+v after a drain that published everything", h)
		}

		// The next failure starts the backoff afresh.
		js.set(errNoAck, false)
		before := len(js.tries())
		ob.add("e3")
		r.Kick()
		time.Sleep(time.Minute)
		synctest.Wait()
		again := js.tries()[before:]
		if len(again) < 2 {
			t.Fatalf("attempts after the reset: %v", again)
		}
		if again[0] != time.Since(start)-time.Minute {
			t.Errorf("a kicked record was tried at +%s, want at the kick (+%s)", again[0], time.Since(start)-time.Minute)
		}
		wantBackoff(t, gaps(again), initial, ceiling)

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// An idle relay publishes a kicked record at once, and one committed
// without a kick at its next idle look (every Idle).
func TestRelayKickAndIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 10 * time.Second
		r, ob, js := fakeRelay(Options{Idle: idle})
		start := time.Now()
		done, cancel := runRelay(r)
		defer cancel()

		time.Sleep(3 * time.Second)
		ob.add("quiet") // no kick: found at the idle tick, +10s
		time.Sleep(idle - 3*time.Second - time.Nanosecond)
		synctest.Wait()
		if got := js.tries(); len(got) != 0 {
			t.Fatalf("a record committed without a kick was published before the idle tick: %v", got)
		}
		time.Sleep(3*time.Second + time.Nanosecond)
		ob.add("kicked")
		r.Kick() // +13s: at once, not at the tick at +20s
		synctest.Wait()
		want := []time.Duration{idle, 13 * time.Second}
		if got := js.tries(); !slices.Equal(got, want) {
			t.Errorf("attempts %v, want %v", got, want)
		}
		if n, _ := ob.OutboxLen(); n != 0 || js.published() != 2 {
			t.Errorf("outbox holds %d, %d published; want both published", n, js.published())
		}
		if took := time.Since(start); took != 13*time.Second {
			t.Fatalf("test clock at +%s", took)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// A shutdown ends Run at once whatever it waits for: the backoff after a
// failure, a PubAck that does not come, the idle tick. Nothing leaves the
// outbox unacknowledged.
func TestRelayShutdownWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     error
		hold     bool
		attempts int
	}{
		{name: "backoff", fail: errNoAck, attempts: 1},
		{name: "ack", hold: true, attempts: 1},
		{name: "idle", attempts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r, ob, js := fakeRelay(Options{RetryInitial: time.Minute, RetryMax: time.Hour, Idle: time.Hour})
				ob.add("e1")
				js.set(tc.fail, tc.hold)
				done, cancel := runRelay(r)
				time.Sleep(10 * time.Second) // well inside any wait
				synctest.Wait()
				stop := time.Now()
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
				if took := time.Since(stop); took != 0 {
					t.Errorf("shutdown took %s", took)
				}
				if n := len(js.tries()); n != tc.attempts {
					t.Errorf("%d attempts, want %d", n, tc.attempts)
				}
				want := 1
				if tc.fail == nil && !tc.hold {
					want = 0
				}
				if n, _ := ob.OutboxLen(); n != want {
					t.Errorf("outbox holds %d records, want %d", n, want)
				}
			})
		})
	}
}

// Flush retries on the same backoff until the outbox is empty or ctx
// ends; then it says how many events are still waiting.
func TestFlushBackoffUntilDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const initial, ceiling = time.Second, 4 * time.Second
		r, ob, js := fakeRelay(Options{RetryInitial: initial, RetryMax: ceiling})
		ob.add("e1")
		ob.add("e2")
		js.set(errNoAck, false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		n, err := r.Flush(ctx)
		if took := time.Since(start); took != 30*time.Second {
			t.Errorf("Flush returned after %s, want at its deadline", took)
		}
		if n != 0 || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), "2 events still waiting") {
			t.Errorf("Flush = %d, %v", n, err)
		}
		at := js.tries()
		if len(gaps(at)) < 6 {
			t.Fatalf("%d attempts in 30s: %v", len(at), at)
		}
		wantBackoff(t, gaps(at), initial, ceiling)

		// NATS is back: Flush publishes everything and returns at once.
		js.set(nil, false)
		start = time.Now()
		if n, err := r.Flush(context.Background()); n != 2 || err != nil {
			t.Errorf("Flush = %d, %v; want both published", n, err)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("a Flush that succeeds at once took %s", took)
		}
	})
}
