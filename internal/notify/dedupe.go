package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// DeliveriesBucket is the JetStream key-value bucket (file storage, TTL
// delivery.dedupe_ttl) that keeps the delivered events durably: each value
// is a batch of delivery keys (<channel>.<event id>) under
// _d.<instance>.<n>, written once for all the sends that finished while the
// previous batch was being written (a group commit: one synced write for
// many events, see docs/performance.md, figure 7). Earlier versions wrote
// one record per key; those are still read.
const DeliveriesBucket = "PCWATCH_DELIVERIES"

// ClaimsBucket is the key-value bucket the consumers ask before every send
// (memory storage, TTL delivery.dedupe_ttl), one record per delivery key:
// who is sending it and for which JetStream delivery, failed and
// dead-lettered attempts after which another may claim it, and "delivered".
// Memory writes are not synced to disk, which is what makes the per-event
// question cheap; a server restart loses the bucket, and it is rebuilt from
// DeliveriesBucket before any claim is answered (see deliveryStore.claim).
const ClaimsBucket = "PCWATCH_CLAIMS"

// restoredKey is the claims bucket's marker: present once the delivered
// batches were copied into the bucket after it was (re)created.
const restoredKey = "_restored"

// batchPrefix starts the keys of the delivered batches in DeliveriesBucket.
const batchPrefix = "_d."

// maxBatch bounds the keys of one delivered batch record (about 30 KB).
const maxBatch = 512

// Delivery record states.
const (
	stateSending   = "sending"   // a send is (or was, if its process died) in flight
	stateDelivered = "delivered" // the channel accepted the event
	stateFailed    = "failed"    // the last attempt failed; another may follow
	stateDead      = "dead"      // sent to the dead-letter queue
)

// record is the value stored under <channel>.<event id> in ClaimsBucket
// (and, by earlier versions, in DeliveriesBucket).
type record struct {
	State string    `json:"state"`
	Owner string    `json:"owner,omitempty"` // the notifier process (instance id) that wrote it
	At    time.Time `json:"at"`
	// StreamSeq and Delivery identify the JetStream delivery that wrote a
	// sending record: the stream sequence and its delivery count.
	StreamSeq uint64 `json:"seq,omitempty"`
	Delivery  uint64 `json:"delivery,omitempty"`
	// From, on a sending claim, is where the owner's delivered batch
	// holding the key, if any, starts to be looked for: the
	// DeliveriesBucket stream sequence after the owner's last batch
	// written before the claim. The owner does not mark the claim
	// delivered after a successful send (a write per event): whoever finds
	// the claim still sending reads the owner's batches from there
	// (deliveryStore.committed). Zero in claims of earlier versions, which
	// marked each claim delivered.
	From uint64 `json:"from,omitempty"`
}

// batchRecord is a delivered batch in DeliveriesBucket.
type batchRecord struct {
	Keys []string  `json:"keys"`
	At   time.Time `json:"at"`
}

// EnsureDeliveries creates the deliveries bucket, or brings its TTL to ttl.
func EnsureDeliveries(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DeliveriesBucket,
		Description: "pcwatch notifier: delivered events, in batches (deduplication)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("JetStream key-value bucket %s: %w", DeliveriesBucket, err)
	}
	return kv, nil
}

// EnsureClaims creates the claims bucket (memory storage), or brings its
// TTL to ttl. A server restart loses it: the watcher creates it again on
// its embedded server at every start, the notifier on any other (see
// deliveryStore.recreate).
func EnsureClaims(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ClaimsBucket,
		Description: "pcwatch notifier: sends in flight and delivered events per channel and event id (memory; rebuilt from " + DeliveriesBucket + " after a server restart)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("JetStream key-value bucket %s: %w", ClaimsBucket, err)
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

// deliveryStore claims, records and releases deliveries. A small
// in-memory set of recent deliveries answers duplicates without a round
// trip and covers a record that could not be written.
type deliveryStore struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue // DeliveriesBucket
	claims   jetstream.KeyValue // ClaimsBucket
	instance string
	clk      clock.Clock
	// recreate makes the claims bucket again when the server lost it (a
	// memory stream does not survive a restart); nil: wait for its owner.
	recreate func(context.Context) error
	// stale is how old another process's sending record must be before a
	// different copy of the event may take it over: ack_wait plus the
	// channel timeout, after which its sender must have finished.
	stale func(channel string) time.Duration
	// ttl is the buckets' TTL (delivery.dedupe_ttl).
	ttl time.Duration
	// reconnects counts the connection's reconnects (nats.Conn.Stats); nil:
	// the restored marker is read before every claim.
	reconnects func() uint64
	// checked is when the restored marker was last seen (unix ns; 0: look
	// again), on the connection of checkedConn reconnects.
	checked, checkedConn atomic.Uint64

	// The group commit of delivered batches: keys join open; whoever holds
	// writer seals it and writes it. Channels, not a mutex, so that waits
	// are visible to testing/synctest.
	writer  chan struct{}
	restore chan struct{} // held while the claims bucket is rebuilt

	// lastBatch is the DeliveriesBucket stream sequence of the last
	// delivered batch this process wrote (0: none yet).
	lastBatch atomic.Uint64

	mu       sync.Mutex
	open     *batch // the delivered batch being filled
	batchN   uint64 // batches written by this process
	inflight map[string]bool
	recent   map[string]bool
	ring     []string
	next     int
}

// batch is a delivered batch being filled or written.
type batch struct {
	keys []string
	done chan struct{}
	err  error
}

func newDeliveryStore(js jetstream.JetStream, kv, claims jetstream.KeyValue, instance string, clk clock.Clock, ttl time.Duration, stale func(string) time.Duration) *deliveryStore {
	return &deliveryStore{js: js, kv: kv, claims: claims, instance: instance, clk: clk, stale: stale, ttl: ttl,
		writer: make(chan struct{}, 1), restore: make(chan struct{}, 1), open: &batch{done: make(chan struct{})},
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
// n) of the event may be sent, and if so writes a sending claim in the
// claims bucket, a write that is not synced to disk:
//
//   - delivered: duplicate;
//   - no claim, or a failed/dead one: claimed (compare-and-set, so two
//     copies of the event never both win);
//   - sending by this very message (same stream sequence, a later
//     delivery): JetStream gave up on the earlier delivery (its process died
//     or stalled past ack_wait), so it is taken over — the at-least-once
//     window;
//   - sending by this process for a key it is not sending now: a leftover,
//     taken over;
//   - sending by another copy of the event: busy until it finishes, or
//     until the claim is older than stale, when it is taken over.
//
// The claims bucket answers for every event delivered within dedupe_ttl
// only if it still holds what the delivered batches say: the restored
// marker, read at the same time as the claim is written, says so. When it
// is missing (the server restarted and the bucket was made again) the
// batches are copied into the bucket first (restoreClaims) and the claim is
// asked again. What a restart loses for good are the sending claims: an
// interrupted send is then sent again without the takeover warning.
func (s *deliveryStore) claim(ctx context.Context, channel, key string, seq, n uint64) (claim, error) {
	if s.remembered(key) {
		return claim{outcome: duplicate}, nil
	}
	for range 3 {
		type marker struct {
			rev uint64
			err error
		}
		mch := make(chan marker, 1)
		if s.restoredRecently() {
			mch <- marker{} // seen before this claim: older than it
		} else {
			go func() {
				rev, err := s.checkRestored(ctx)
				mch <- marker{rev, err}
			}()
		}
		cl, err := s.claimKey(ctx, channel, key, seq, n)
		if err != nil {
			s.checked.Store(0) // look at the marker next time
		}
		mk := <-mch
		merr := mk.err
		if merr == nil && err == nil && cl.outcome == claimed && mk.rev > cl.rev {
			// The marker was written after the claim: a restore ran
			// meanwhile and may have overwritten the claim with a
			// delivered mark. Ask again.
			_ = s.release(ctx, key, cl.rev, stateFailed)
			continue
		}
		if errors.Is(merr, errNotRestored) {
			if err == nil && cl.outcome == claimed {
				_ = s.release(ctx, key, cl.rev, stateFailed)
			}
			if rerr := s.restoreClaims(ctx); rerr != nil {
				return claim{}, rerr
			}
			continue
		}
		if err == nil && merr != nil {
			if cl.outcome == claimed {
				_ = s.release(ctx, key, cl.rev, stateFailed)
			}
			return claim{}, merr
		}
		return cl, err
	}
	return claim{outcome: busy, wait: time.Second}, nil
}

var errNotRestored = errors.New("the claims bucket has not been restored")

// markerFresh is how long a look at the restored marker is trusted while
// the connection stays up: the bucket is lost with its server, and a
// server restart breaks the connection (a reconnect is seen at once), so
// the marker is read at most about once a second instead of once an event.
const markerFresh = time.Second

// restoredRecently reports whether the marker was seen within markerFresh
// on the same connection.
func (s *deliveryStore) restoredRecently() bool {
	at := s.checked.Load()
	if at == 0 || s.reconnects == nil || s.reconnects() != s.checkedConn.Load() {
		return false
	}
	return s.clk.Now().Sub(time.Unix(0, int64(at))) < markerFresh
}

// checkRestored reads the restored marker and returns its revision:
// errNotRestored when it is missing. A marker older than half the TTL is written again, so that it
// never expires while the bucket is intact.
func (s *deliveryStore) checkRestored(ctx context.Context) (uint64, error) {
	var conn uint64
	if s.reconnects != nil {
		conn = s.reconnects()
	}
	now := s.clk.Now()
	e, err := s.claims.Get(ctx, restoredKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || bucketGone(err) {
		return 0, errNotRestored
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s in %s: %w", restoredKey, ClaimsBucket, err)
	}
	rev := e.Revision()
	var r record
	if json.Unmarshal(e.Value(), &r) == nil && s.clk.Now().Sub(r.At) > s.ttl/2 {
		s.writeRestored(ctx)
	}
	s.checkedConn.Store(conn)
	s.checked.Store(uint64(now.UnixNano()))
	return rev, nil
}

func (s *deliveryStore) writeRestored(ctx context.Context) {
	val, _ := json.Marshal(record{State: "restored", Owner: s.instance, At: s.clk.Now().UTC()})
	_, _ = s.claims.Put(ctx, restoredKey, val)
}

// restoreClaims copies every delivered key of DeliveriesBucket (the
// batches, and the per-key records of earlier versions) into the claims
// bucket as delivered, then writes the restored marker. Several notifiers
// may do it at once: every write says the same. The claims bucket is made
// again first when it is gone.
func (s *deliveryStore) restoreClaims(ctx context.Context) error {
	select {
	case s.restore <- struct{}{}:
		defer func() { <-s.restore }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := s.checkRestored(ctx); err == nil {
		return nil // another sender of this process did it meanwhile
	}
	if _, err := s.claims.Status(ctx); err != nil {
		if s.recreate == nil {
			return fmt.Errorf("the claims bucket %s is missing (the server restarted?) and this notifier may not create it: waiting for the watcher to make it again: %w", ClaimsBucket, err)
		}
		if err := s.recreate(ctx); err != nil {
			return fmt.Errorf("the server lost the claims bucket %s (restarted?) and it cannot be made again: %w", ClaimsBucket, err)
		}
	}
	keys, err := s.deliveredKeys(ctx)
	if err != nil {
		return err
	}
	val, _ := json.Marshal(record{State: stateDelivered, Owner: s.instance, At: s.clk.Now().UTC()})
	for _, k := range keys {
		if _, err := s.claims.Put(ctx, k, val); err != nil {
			return fmt.Errorf("restoring delivery %s into %s: %w", k, ClaimsBucket, err)
		}
	}
	s.writeRestored(ctx)
	return nil
}

// deliveredKeys reads every delivered key in DeliveriesBucket, walking its
// stream with direct gets (no consumer: on the watcher's embedded server
// the notifier may not create one there).
func (s *deliveryStore) deliveredKeys(ctx context.Context) ([]string, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", DeliveriesBucket, err)
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil, fmt.Errorf("reading %s: unexpected status type %T", DeliveriesBucket, st)
	}
	info := js.StreamInfo()
	var keys []string
	prefix := "$KV." + DeliveriesBucket + "."
	str, err := s.js.Stream(ctx, info.Config.Name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", DeliveriesBucket, err)
	}
	for seq := info.State.FirstSeq; seq != 0 && seq <= info.State.LastSeq; {
		m, err := str.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(prefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s at sequence %d: %w", DeliveriesBucket, seq, err)
		}
		seq = m.Sequence + 1
		if op := m.Header.Get("KV-Operation"); op != "" {
			continue // a delete or purge marker
		}
		key := m.Subject[len(prefix):]
		if len(key) > len(batchPrefix) && key[:len(batchPrefix)] == batchPrefix {
			var b batchRecord
			if json.Unmarshal(m.Data, &b) == nil {
				keys = append(keys, b.Keys...)
			}
			continue
		}
		if decodeRecord(m.Data).State == stateDelivered {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// claimKey writes the sending claim (see claim).
func (s *deliveryStore) claimKey(ctx context.Context, channel, key string, seq, n uint64) (claim, error) {
	mine := record{State: stateSending, Owner: s.instance, StreamSeq: seq, Delivery: n, From: s.lastBatch.Load() + 1}
	for range 5 {
		mine.At = s.clk.Now().UTC()
		val, _ := json.Marshal(mine)
		// The common case is a new event: try to create the claim first.
		rev, err := s.claims.Create(ctx, key, val)
		if err == nil {
			return claim{outcome: claimed, rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return claim{}, fmt.Errorf("writing delivery claim %s in %s: %w", key, ClaimsBucket, err)
		}
		e, err := s.claims.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile: create again
		}
		if err != nil {
			return claim{}, fmt.Errorf("reading delivery claim %s: %w", key, err)
		}
		r := decodeRecord(e.Value())
		var take *record
		switch r.State {
		case stateDelivered:
			s.remember(key)
			return claim{outcome: duplicate}, nil
		case stateSending:
			if r.From != 0 && !(r.Owner == s.instance && s.isInflight(key)) {
				done, err := s.committed(ctx, channel, key, r)
				if err != nil {
					return claim{}, err
				}
				if done {
					// Delivered and committed, never marked: mark it now,
					// so the next copy need not look again.
					s.remember(key)
					dv, _ := json.Marshal(record{State: stateDelivered, Owner: r.Owner, At: s.clk.Now().UTC()})
					_, _ = s.claims.Update(ctx, key, dv, e.Revision())
					return claim{outcome: duplicate}, nil
				}
			}
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
		rev, err = s.claims.Update(ctx, key, val, e.Revision())
		if err != nil {
			if isWrongSequence(err) {
				continue
			}
			return claim{}, fmt.Errorf("writing delivery claim %s: %w", key, err)
		}
		return claim{outcome: claimed, rev: rev, takeover: take}, nil
	}
	return claim{outcome: busy, wait: time.Second}, nil
}

// committed reports whether the owner of the sending claim r has written
// key in one of its delivered batches: it reads the owner's batches from
// r.From on (direct gets by subject, no consumer), up to the first one
// written after the claim became stale — a send that finished later than
// that is the at-least-once window of a stalled sender (see doc.go).
func (s *deliveryStore) committed(ctx context.Context, channel, key string, r record) (bool, error) {
	if r.Owner == "" || !plainIDRE.MatchString(r.Owner) {
		return false, nil
	}
	str, err := s.js.Stream(ctx, "KV_"+DeliveriesBucket)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", DeliveriesBucket, err)
	}
	subj := "$KV." + DeliveriesBucket + "." + batchPrefix + r.Owner + ".>"
	until := r.At.Add(s.stale(channel))
	for seq := r.From; ; {
		m, err := str.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading the delivered batches of %s in %s: %w", r.Owner, DeliveriesBucket, err)
		}
		seq = m.Sequence + 1
		var b batchRecord
		if json.Unmarshal(m.Data, &b) != nil {
			continue
		}
		if b.At.After(until) {
			return false, nil
		}
		if slices.Contains(b.Keys, key) {
			return true, nil
		}
	}
}

// bucketGone says a write found no stream behind the bucket.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// delivered records a successful send: markDelivered, then commit.
func (s *deliveryStore) delivered(ctx context.Context, key string, rev uint64) error {
	s.markDelivered(ctx, key, rev)
	return s.commit(ctx, key)
}

// markDelivered marks the claim of revision rev delivered, so that a copy
// or a redelivery of the event is recognised at once, before the delivery
// is committed.
func (s *deliveryStore) markDelivered(ctx context.Context, key string, rev uint64) {
	s.remember(key)
	s.markClaim(ctx, key, rev)
}

// commit adds the keys to the next delivered batch and returns once that
// batch is written (synced to disk), so the caller may acknowledge the
// messages. Batches are a group commit: whoever holds the writer seals
// everything that joined while the previous batch was being written, and
// writes it. A batch that cannot be written is retried briefly: the sends
// happened, and a lost record means a possible duplicate after a server
// restart.
func (s *deliveryStore) commit(ctx context.Context, keys ...string) error {
	s.mu.Lock()
	b := s.open
	b.keys = append(b.keys, keys...)
	s.mu.Unlock()
	for {
		select {
		case <-b.done:
			if b.err != nil {
				return fmt.Errorf("recording %d deliveries (%s...): %w", len(keys), keys[0], b.err)
			}
			return nil
		case s.writer <- struct{}{}:
			// The writer: seal what is open (ours, unless a writer before
			// us took it and is done with it) and write it.
			s.mu.Lock()
			w := s.open
			s.open = &batch{done: make(chan struct{})}
			s.mu.Unlock()
			if len(w.keys) > 0 {
				w.err = s.writeBatch(ctx, w.keys)
			}
			close(w.done)
			<-s.writer
		case <-ctx.Done():
			return fmt.Errorf("recording %d deliveries (%s...): %w", len(keys), keys[0], ctx.Err())
		}
	}
}

// writeBatch writes the keys as delivered batches of at most maxBatch
// keys, retrying each briefly.
func (s *deliveryStore) writeBatch(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), maxBatch)
		s.mu.Lock()
		s.batchN++
		k := fmt.Sprintf("%s%s.%d", batchPrefix, s.instance, s.batchN)
		s.mu.Unlock()
		val, _ := json.Marshal(batchRecord{Keys: keys[:n], At: s.clk.Now().UTC()})
		var err error
		for i := range 3 {
			var rev uint64
			if rev, err = s.kv.Put(ctx, k, val); err == nil {
				s.lastBatch.Store(rev)
				break
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
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// markClaim marks our claim of revision rev delivered, unless it has been
// taken over since.
func (s *deliveryStore) markClaim(ctx context.Context, key string, rev uint64) {
	val, _ := json.Marshal(record{State: stateDelivered, Owner: s.instance, At: s.clk.Now().UTC()})
	_, _ = s.claims.Update(ctx, key, val, rev)
}

// markClaims marks many claims delivered at once (markClaim for each),
// pipelined: all the writes are sent, then their answers awaited.
func (s *deliveryStore) markClaims(ctx context.Context, keys []string, revs []uint64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // NATS lost: the delivered batch still decides
	defer cancel()
	val, _ := json.Marshal(record{State: stateDelivered, Owner: s.instance, At: s.clk.Now().UTC()})
	futs := make([]jetstream.PubAckFuture, 0, len(keys))
	for i, k := range keys {
		m := nats.NewMsg("$KV." + ClaimsBucket + "." + k)
		m.Data = val
		f, err := s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(revs[i]))
		if err != nil {
			break
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case <-f.Err():
		case <-ctx.Done():
			return
		}
	}
}

// release marks our sending claim failed (or dead), unless someone else
// has taken it over since.
func (s *deliveryStore) release(ctx context.Context, key string, rev uint64, state string) error {
	val, _ := json.Marshal(record{State: state, Owner: s.instance, At: s.clk.Now().UTC()})
	if _, err := s.claims.Update(ctx, key, val, rev); err != nil && !isWrongSequence(err) {
		return fmt.Errorf("updating delivery claim %s: %w", key, err)
	}
	return nil
}
