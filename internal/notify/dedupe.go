package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// DeliveriesBucket is the JetStream key-value bucket that remembers, per
// channel and event id, whether an event was delivered.
const DeliveriesBucket = "PCWATCH_DELIVERIES"

// Delivery record states.
const (
	stateSending   = "sending"   // a send is (or was, if its process died) in flight
	stateDelivered = "delivered" // the channel accepted the event
	stateFailed    = "failed"    // the last attempt failed; another may follow
	stateDead      = "dead"      // sent to the dead-letter queue
)

// record is the value stored under <channel>.<event id>.
type record struct {
	State string    `json:"state"`
	Owner string    `json:"owner,omitempty"` // the notifier process (instance id) that wrote it
	At    time.Time `json:"at"`
	// StreamSeq and Delivery identify the JetStream delivery that wrote a
	// sending record: the stream sequence and its delivery count.
	StreamSeq uint64 `json:"seq,omitempty"`
	Delivery  uint64 `json:"delivery,omitempty"`
}

// EnsureDeliveries creates the deliveries bucket, or brings its TTL to ttl.
func EnsureDeliveries(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DeliveriesBucket,
		Description: "pcwatch notifier: deliveries per channel and event id (deduplication)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("JetStream key-value bucket %s: %w", DeliveriesBucket, err)
	}
	return kv, nil
}

var plainIDRE = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,200}$`)

// deliveryKey is the bucket key of an event on a channel: <channel>.<id>,
// with ids that are not plain tokens replaced by a hash.
func deliveryKey(channel, id string) string {
	if !plainIDRE.MatchString(id) {
		sum := sha256.Sum256([]byte(id))
		id = "h-" + hex.EncodeToString(sum[:16])
	}
	return channel + "." + id
}

// deliveryStore claims, records and releases deliveries in the bucket. A
// small in-memory set of recent deliveries answers duplicates without a
// round trip and covers a record that could not be written.
type deliveryStore struct {
	kv       jetstream.KeyValue
	instance string
	clk      clock.Clock
	// stale is how old another process's sending record must be before a
	// different copy of the event may take it over: ack_wait plus the
	// channel timeout, after which its sender must have finished.
	stale func(channel string) time.Duration

	mu       sync.Mutex
	inflight map[string]bool
	recent   map[string]bool
	ring     []string
	next     int
}

func newDeliveryStore(kv jetstream.KeyValue, instance string, clk clock.Clock, stale func(string) time.Duration) *deliveryStore {
	return &deliveryStore{kv: kv, instance: instance, clk: clk, stale: stale,
		inflight: map[string]bool{}, recent: map[string]bool{}, ring: make([]string, 8192)}
}

type claimOutcome int

const (
	claimed   claimOutcome = iota // go ahead and send
	duplicate                     // already delivered
	busy                          // another delivery is in flight; retry after wait
)

type claim struct {
	outcome  claimOutcome
	rev      uint64        // revision of our sending record
	wait     time.Duration // busy: when to look again
	takeover *record       // claimed over an interrupted delivery
}

func (s *deliveryStore) remember(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recent[key] {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.recent, old)
	}
	s.ring[s.next] = key
	s.recent[key] = true
	s.next = (s.next + 1) % len(s.ring)
}

func (s *deliveryStore) remembered(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent[key]
}

func (s *deliveryStore) setInflight(key string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.inflight[key] = true
	} else {
		delete(s.inflight, key)
	}
}

func (s *deliveryStore) isInflight(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight[key]
}

func decodeRecord(b []byte) record {
	var r record
	if json.Unmarshal(b, &r) != nil {
		r.State = stateFailed // unreadable: treat as not delivered
	}
	return r
}

// claim decides whether this delivery (stream sequence seq, delivery count
// n) of the event may be sent, and if so writes a sending record:
//
//   - no record, or failed/dead: claimed (compare-and-set, so two copies of
//     the event never both win);
//   - delivered: duplicate;
//   - sending by this very message (same stream sequence, a later
//     delivery): JetStream gave up on the earlier delivery (its process died
//     or stalled past ack_wait), so it is taken over — the at-least-once
//     window;
//   - sending by this process for a key it is not sending now: a leftover,
//     taken over;
//   - sending by another copy of the event: busy until it finishes, or
//     until the record is older than stale, when it is taken over.
func (s *deliveryStore) claim(ctx context.Context, channel, key string, seq, n uint64) (claim, error) {
	if s.remembered(key) {
		return claim{outcome: duplicate}, nil
	}
	mine := record{State: stateSending, Owner: s.instance, StreamSeq: seq, Delivery: n}
	for range 5 {
		mine.At = s.clk.Now().UTC()
		val, _ := json.Marshal(mine)
		// The common case is a new event: try to create the record first.
		rev, err := s.kv.Create(ctx, key, val)
		if err == nil {
			return claim{outcome: claimed, rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return claim{}, fmt.Errorf("writing delivery record %s: %w", key, err)
		}
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile: create again
		}
		if err != nil {
			return claim{}, fmt.Errorf("reading delivery record %s: %w", key, err)
		}
		r := decodeRecord(e.Value())
		var take *record
		switch r.State {
		case stateDelivered:
			s.remember(key)
			return claim{outcome: duplicate}, nil
		case stateSending:
			age := s.clk.Now().Sub(r.At)
			switch {
			case seq != 0 && r.StreamSeq == seq && n > r.Delivery:
				take = &r
			case r.Owner == s.instance && !s.isInflight(key):
				take = &r
			case age >= s.stale(channel):
				take = &r
			default:
				return claim{outcome: busy, wait: max(s.stale(channel)-age, time.Second)}, nil
			}
		}
		rev, err = s.kv.Update(ctx, key, val, e.Revision())
		if err != nil {
			if isWrongSequence(err) {
				continue
			}
			return claim{}, fmt.Errorf("writing delivery record %s: %w", key, err)
		}
		return claim{outcome: claimed, rev: rev, takeover: take}, nil
	}
	return claim{outcome: busy, wait: time.Second}, nil
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// delivered records a successful send. It retries briefly: the send
// happened, and a lost record means a possible duplicate later.
func (s *deliveryStore) delivered(ctx context.Context, key string) error {
	s.remember(key)
	val, _ := json.Marshal(record{State: stateDelivered, Owner: s.instance, At: s.clk.Now().UTC()})
	var err error
	for i := range 3 {
		if _, err = s.kv.Put(ctx, key, val); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		t := time.NewTimer(time.Duration(i+1) * 100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return fmt.Errorf("recording the delivery %s: %w", key, err)
}

// release marks our sending record failed (or dead), unless someone else
// has taken it over since.
func (s *deliveryStore) release(ctx context.Context, key string, rev uint64, state string) error {
	val, _ := json.Marshal(record{State: state, Owner: s.instance, At: s.clk.Now().UTC()})
	if _, err := s.kv.Update(ctx, key, val, rev); err != nil && !isWrongSequence(err) {
		return fmt.Errorf("updating delivery record %s: %w", key, err)
	}
	return nil
}
