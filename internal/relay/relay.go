// Package relay moves events from the watcher's outbox (package state,
// where they are committed with the snapshot that caused them) onto the
// JetStream stream PCWATCH_EVENTS (package stream), in order, deleting each
// only after JetStream acknowledged it. See Relay for the guarantees.
//
// The events themselves, and how an event too large for NATS is shrunk or
// replaced by a notice (events.ShrinkEvent, events.DroppedNotice), are the
// contract of package events; the relay decides when: it is the only place
// that knows the message size limit in force.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// ErrLimitTooSmall: the NATS server's (max_payload) or the stream's
// (max_msg_size) message size limit is below what even an
// ops.event-dropped notice needs; the relay cannot make progress until it
// is raised.
var ErrLimitTooSmall = errors.New("NATS message size limit too small for pcwatch events")

// Outbox is the durable queue the relay drains. The watcher's state store
// (*state.Store) implements it; events are written to it in the same
// transaction as the snapshot that caused them.
type Outbox interface {
	// OutboxRead returns up to n records in outbox order, oldest first.
	OutboxRead(n int) ([]state.OutboxRecord, error)
	// OutboxDelete removes records; deleting a missing record is not an
	// error.
	OutboxDelete(seqs []uint64) error
	// OutboxDeleteCounted removes records like OutboxDelete and, in the
	// same transaction, adds c to the durable state.RelayCounts: c says
	// how many of the records were published shrunk or replaced by a
	// notice.
	OutboxDeleteCounted(seqs []uint64, c state.RelayCounts) error
	// OutboxLen returns the number of records waiting.
	OutboxLen() (int, error)
}

var _ Outbox = (*state.Store)(nil)

// Metrics receives the relay's figures; implementations must be safe
// for concurrent use. Nil is allowed.
type Metrics interface {
	OutboxDepth(n int)
	Published(n int)
	PublishFailed()
	// EventsTruncated and EventsDropped count acknowledged events that
	// were published shrunk, or replaced by an ops.event-dropped notice.
	EventsTruncated(n int)
	EventsDropped(n int)
}

// Health is the relay's recent record, for readiness checks.
type Health struct {
	// ConsecutiveFailures counts drains in a row that stopped on an
	// error; a drain that publishes everything resets it.
	ConsecutiveFailures int
	FailingSince        time.Time // when the first of them failed
	LastError           error     // the last drain's error
}

// Options configure a Relay.
type Options struct {
	Conn        *nats.Conn
	Outbox      Outbox
	Stream      string        // expected stream; default stream.Name
	MaxInFlight int           // unacknowledged publishes at once; default 256
	AckTimeout  time.Duration // per publish; default 10s
	// RetryInitial and RetryMax shape the backoff while NATS is
	// unreachable; defaults 250ms and 30s.
	RetryInitial, RetryMax time.Duration
	// Idle is how often an idle relay looks at the outbox without being
	// kicked; default 1s.
	Idle    time.Duration
	Metrics Metrics
	Logger  *slog.Logger
	// Redact, when set, is applied to every event body before it is
	// published (the watcher removes its configured secrets: Partner
	// Center data could echo one). It must be deterministic, so that a
	// republish carries the same body.
	Redact func([]byte) []byte
}

// Relay moves events from the outbox onto JetStream, in outbox order,
// deleting a record only after JetStream acknowledged storing it.
//
// An event larger than the NATS server (max_payload) or the stream
// (max_msg_size) accepts, headers included, is published shrunk with the
// same id and subject (events.ShrinkEvent), or, when even that does not
// fit, replaced by an ops.event-dropped notice (events.DroppedNotice) that
// names it.
// Either way it is counted (Metrics, the outbox's state.RelayCounts) and
// logged, and the events after it flow: one record can no longer hold up
// the outbox. The limit is read from the connection at every publish and
// from the stream at start and whenever the stream rejects a message for
// its size.
//
// Guarantees, given an outbox that is only appended to by committed
// transactions:
//   - nothing is lost: a record leaves the outbox only after the PubAck of
//     what was published for it (the event, shrunk or not, or the notice
//     that names it);
//   - nothing is stored twice: every publish carries Nats-Msg-Id = event id
//     (a notice's id derives from the dropped event's), so a republish
//     after a crash (between PubAck and delete) is dropped by
//     the stream's duplicate window, and at start-up the relay checks the
//     stream for records it published but could not delete, so even a
//     restart after the window has passed does not double them;
//   - per-entity order: two events of one entity, or of one subject, are
//     never in flight together, so a failed publish can never be overtaken
//     by a later event of the same entity (and the start-up check may trust
//     the last message of a subject).
//
// Run and Flush may be called from different goroutines; draining is
// serialised.
type Relay struct {
	o    Options
	nc   conn // o.Conn
	js   jetStream
	log  *slog.Logger
	kick chan struct{}

	mu        sync.Mutex // serialises drains; guards the fields below
	recon     bool       // start-up reconciliation done
	streamMax int64      // the stream's max_msg_size (<= 0: none)
	needInfo  bool       // streamMax must be (re)read
	// fitted caches what fit made of oversized records (by Seq), so a
	// retry does not shrink them again; entries go with their records.
	fitted map[uint64]fitting

	hmu    sync.Mutex
	health Health
}

// New returns a relay; it does not start draining until Run or Flush.
func New(o Options) (*Relay, error) {
	if o.Conn == nil || o.Outbox == nil {
		return nil, errors.New("relay needs a NATS connection and an outbox")
	}
	o = o.withDefaults()
	js, err := jetstream.New(o.Conn,
		jetstream.WithPublishAsyncMaxPending(o.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("relay: JetStream context: %w", err)
	}
	return newRelay(o, o.Conn, js), nil
}

// conn is what the relay asks of its NATS connection (*nats.Conn): the
// server's message size limit, and why it is down when a publish fails.
type conn interface {
	MaxPayload() int64
	IsConnected() bool
	LastError() error
	Status() nats.Status
}

// jetStream is what the relay asks of JetStream (jetstream.JetStream
// implements it): the stream, for its limits and the start-up
// reconciliation, and asynchronous publishes.
type jetStream interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// newRelay is New on a given connection and JetStream (the tests' fakes,
// which a synctest bubble can hold: a real connection's goroutines cannot
// be in one). o must have its defaults.
func newRelay(o Options, nc conn, js jetStream) *Relay {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{o: o, nc: nc, js: js, log: log, kick: make(chan struct{}, 1), needInfo: true, fitted: map[uint64]fitting{}}
}

// withDefaults fills in the defaults the Options fields document.
func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = stream.Name
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 250 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.Idle <= 0 {
		o.Idle = time.Second
	}
	return o
}

// Health returns the relay's recent record. It is safe to call at any time.
func (r *Relay) Health() Health {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	return r.health
}

func (r *Relay) recordDrain(err error) {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	if err == nil {
		r.health = Health{}
		return
	}
	if r.health.ConsecutiveFailures == 0 {
		r.health.FailingSince = time.Now()
	}
	r.health.ConsecutiveFailures++
	r.health.LastError = err
}

// Kick tells the relay new records were committed. It never blocks.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run drains the outbox until ctx ends: first whatever is waiting from
// before, then new records as they are kicked in. While NATS is unreachable
// it keeps every record, retries with backoff and reports the outbox depth.
// It returns nil when ctx is cancelled.
func (r *Relay) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(r.o.RetryInitial),
		backoff.WithMaxInterval(r.o.RetryMax), backoff.WithMaxElapsedTime(0))
	idle := time.NewTicker(r.o.Idle)
	defer idle.Stop()
	for {
		_, err := r.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait <-chan time.Time
		if err != nil {
			d := bo.NextBackOff()
			depth, _ := r.o.Outbox.OutboxLen()
			r.log.Warn("event relay: publishing failed; events stay in the outbox", "err", err, "outbox_depth", depth, "retry_in", d.Round(time.Millisecond))
			t := time.NewTimer(d)
			wait = t.C
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-wait:
			}
			continue
		}
		bo.Reset()
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-idle.C:
		}
	}
}

// Flush drains the outbox until it is empty, retrying while NATS is
// unreachable, until ctx ends. It returns the number of events published
// and, if ctx ended first, an error saying how many are still waiting.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(r.o.RetryInitial),
		backoff.WithMaxInterval(r.o.RetryMax), backoff.WithMaxElapsedTime(0))
	total := 0
	for {
		n, err := r.drain(ctx)
		total += n
		depth, lerr := r.o.Outbox.OutboxLen()
		if err == nil && lerr == nil && depth == 0 {
			return total, nil
		}
		if err == nil {
			err = lerr
		}
		d := bo.NextBackOff()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return total, fmt.Errorf("outbox not drained: %d events still waiting (last error: %v): %w", depth, err, ctx.Err())
		case <-t.C:
		}
	}
}

// fate is the form in which an outbox record is published.
type fate uint8

const (
	asCommitted fate = iota
	shrunk           // events.ShrinkEvent
	dropped          // replaced by an ops.event-dropped notice
)

// wire is what the relay publishes for an outbox record.
type wire struct {
	rec     state.OutboxRecord // the record (its Seq and Entity)
	id      string             // Nats-Msg-Id
	subject string
	body    []byte
	fate    fate
}

// inflight is one publish awaiting its PubAck.
type inflight struct {
	w   wire
	fut jetstream.PubAckFuture
}

// headerSlack leaves room for headers the client library may add.
const headerSlack = 128

// headerLen bounds the bytes of the headers the relay sends with a message
// of id: NATS/1.0, one "Key: value" line per header, CRLFs.
func headerLen(id, streamName string) int {
	n := len("NATS/1.0\r\n\r\n") + headerSlack
	for _, kv := range [][2]string{{"Content-Type", events.ContentType}, {jetstream.MsgIDHeader, id}, {jetstream.ExpectedStreamHeader, streamName}} {
		n += len(kv[0]) + len(": ") + len(kv[1]) + len("\r\n")
	}
	return n
}

// limit is the largest message (headers and body) the server and the
// stream accept now; 0 while unknown (not connected yet).
func (r *Relay) limit() int64 {
	l := r.nc.MaxPayload()
	if r.streamMax > 0 && (l <= 0 || r.streamMax < l) {
		l = r.streamMax
	}
	return l
}

// readLimits reads the stream's max_msg_size.
func (r *Relay) readLimits(ctx context.Context) (jetstream.Stream, error) {
	s, err := r.js.Stream(ctx, r.o.Stream)
	if err != nil {
		return nil, fmt.Errorf("looking up stream %s: %w", r.o.Stream, r.connErr(err))
	}
	r.streamMax = int64(s.CachedInfo().Config.MaxMsgSize)
	r.needInfo = false
	return s, nil
}

// fitting is a cached result of fit.
type fitting struct {
	limit int64
	w     wire
}

// fit returns what to publish for rec under limit (0: no limit known).
func (r *Relay) fit(rec state.OutboxRecord, limit int64) (wire, error) {
	body := rec.Body
	if r.o.Redact != nil {
		body = r.o.Redact(body)
	}
	w := wire{rec: rec, id: rec.ID, subject: rec.Subject, body: body}
	hdr := headerLen(rec.ID, r.o.Stream)
	size := len(body) + hdr
	if limit <= 0 || int64(size) <= limit {
		return w, nil
	}
	if f, ok := r.fitted[rec.Seq]; ok && f.limit == limit && f.w.rec.ID == rec.ID {
		return f.w, nil
	}
	w, err := r.refit(w, size, limit)
	if err == nil {
		r.fitted[rec.Seq] = fitting{limit, w}
	}
	return w, err
}

func (r *Relay) refit(w wire, size int, limit int64) (wire, error) {
	rec, hdr := w.rec, size-len(w.body)
	body, cuts, serr := events.ShrinkEvent(w.body, int(limit)-hdr)
	if serr == nil {
		w.body, w.fate = body, shrunk
		r.log.Warn("event relay: event larger than NATS accepts; publishing it shrunk (data.truncated lists what was cut)",
			"event_id", rec.ID, "subject", events.Clip(rec.Subject), "size", size, "limit", limit, "shrunk_to", len(body)+hdr, "values_cut", len(cuts))
		return w, nil
	}
	n, err := events.DroppedNotice(rec.Envelope, size, int(limit))
	if err != nil {
		return w, fmt.Errorf("event %s: building its ops.event-dropped notice: %w", rec.ID, err)
	}
	if nsize := len(n.Body) + headerLen(n.ID, r.o.Stream); int64(nsize) > limit {
		return w, fmt.Errorf("event %s (%d bytes) exceeds the NATS message size limit of %d bytes, and so would its ops.event-dropped notice (%d bytes): %w; raise the server's max_payload and the stream's max_msg_size",
			rec.ID, size, limit, nsize, ErrLimitTooSmall)
	}
	r.log.Error("event relay: event too large for NATS even shrunk; publishing an ops.event-dropped notice in its place",
		"event_id", rec.ID, "subject", events.Clip(rec.Subject), "entity", events.Clip(rec.Entity), "size", size, "limit", limit, "notice_id", n.ID, "why", serr)
	w.id, w.subject, w.body, w.fate = n.ID, n.Subject, n.Body, dropped
	return w, nil
}

// drain publishes everything in the outbox once. It stops at the first
// failure after settling what is in flight, deletes every acknowledged
// record, and returns how many it published.
func (r *Relay) drain(ctx context.Context) (n int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() { r.recordDrain(err) }()
	published := 0
	defer func() {
		if r.o.Metrics != nil {
			if n, err := r.o.Outbox.OutboxLen(); err == nil {
				r.o.Metrics.OutboxDepth(n)
			}
		}
	}()
	batch := 4 * r.o.MaxInFlight
	for {
		recs, err := r.o.Outbox.OutboxRead(batch)
		if err != nil {
			return published, fmt.Errorf("reading the outbox: %w", err)
		}
		if len(recs) == 0 {
			return published, nil
		}
		if r.needInfo || !r.recon {
			s, err := r.readLimits(ctx)
			if err != nil {
				return published, err
			}
			if !r.recon {
				if err := r.reconcile(ctx, s); err != nil {
					return published, err
				}
				r.recon = true
				continue // read again: reconcile may have deleted some
			}
		}
		beforePublish(r.o.Outbox, recs)
		acked, perr := r.publish(ctx, recs)
		if len(acked) > 0 {
			if err := r.delete(acked); err != nil {
				return published, err
			}
			published += len(acked)
			if r.o.Metrics != nil {
				r.o.Metrics.Published(len(acked))
			}
		}
		if perr != nil {
			if r.o.Metrics != nil {
				r.o.Metrics.PublishFailed()
			}
			return published, perr
		}
	}
}

// delete removes published records from the outbox, counting those that
// were shrunk or dropped in the same transaction.
func (r *Relay) delete(ws []wire) error {
	seqs := make([]uint64, len(ws))
	var c state.RelayCounts
	for i, w := range ws {
		seqs[i] = w.rec.Seq
		delete(r.fitted, w.rec.Seq)
		switch w.fate {
		case shrunk:
			c.Truncated++
		case dropped:
			c.Dropped++
		}
	}
	var err error
	if c == (state.RelayCounts{}) {
		err = r.o.Outbox.OutboxDelete(seqs)
	} else {
		err = r.o.Outbox.OutboxDeleteCounted(seqs, c)
	}
	if err != nil {
		return fmt.Errorf("deleting %d published events from the outbox: %w", len(seqs), err)
	}
	if m := r.o.Metrics; m != nil {
		if c.Truncated > 0 {
			m.EventsTruncated(int(c.Truncated))
		}
		if c.Dropped > 0 {
			m.EventsDropped(int(c.Dropped))
		}
	}
	return nil
}

// publish sends recs in order with at most MaxInFlight unacknowledged and
// never two of one entity or one subject at once. It returns what was
// acknowledged and the first error.
func (r *Relay) publish(ctx context.Context, recs []state.OutboxRecord) ([]wire, error) {
	var (
		acked    = make([]wire, 0, len(recs))
		queue    []inflight
		busy     = make(map[string]int) // entities and subjects in flight
		firstErr error
		limit    = r.limit()
	)
	keys := func(w wire) [2]string { return [2]string{"e\x00" + w.rec.Entity, "s\x00" + w.subject} }
	fail := func(w wire, err error) {
		if firstErr != nil {
			return
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum ||
			errors.Is(err, nats.ErrMaxPayload) {
			// The limit changed under us: read it again before retrying.
			r.needInfo = true
		}
		firstErr = fmt.Errorf("publishing event %s to %s: %w", w.id, events.Clip(w.subject), r.connErr(err))
	}
	settle := func() {
		f := queue[0]
		queue = queue[1:]
		for _, k := range keys(f.w) {
			if busy[k]--; busy[k] == 0 {
				delete(busy, k)
			}
		}
		select {
		case <-f.fut.Ok():
			acked = append(acked, f.w)
		case err := <-f.fut.Err():
			fail(f.w, err)
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = ctx.Err()
			}
		}
	}
	for _, rec := range recs {
		if firstErr != nil || ctx.Err() != nil {
			break
		}
		w, err := r.fit(rec, limit)
		if err != nil {
			firstErr = err
			break
		}
		k := keys(w)
		for len(queue) > 0 && (len(queue) >= r.o.MaxInFlight || busy[k[0]] > 0 || busy[k[1]] > 0) {
			settle()
		}
		if firstErr != nil {
			break
		}
		msg := nats.NewMsg(w.subject)
		msg.Data = w.body
		msg.Header.Set("Content-Type", events.ContentType)
		fut, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(w.id), jetstream.WithExpectStream(r.o.Stream))
		if err != nil {
			fail(w, err)
			break
		}
		queue = append(queue, inflight{w: w, fut: fut})
		for _, x := range k {
			busy[x]++
		}
	}
	for len(queue) > 0 {
		settle()
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return acked, firstErr
}

// connErr explains a publish error while the connection is down: the
// client's own error (e.g. "outbound buffer limit exceeded") says nothing
// of why, the connection's last error (e.g. an authorization violation)
// does. Both stay in the chain for errors.Is.
func (r *Relay) connErr(err error) error {
	nc := r.nc
	if nc.IsConnected() {
		return err
	}
	if last := nc.LastError(); last != nil && !errors.Is(err, last) {
		if natsconn.Refused(last) {
			return fmt.Errorf("NATS is not connected: the server refused the credentials (%w); still trying (%s): %w", last, nc.Status(), err)
		}
		return fmt.Errorf("NATS is not connected (%s; last error: %w): %w", nc.Status(), last, err)
	}
	return fmt.Errorf("NATS is not connected (%s): %w", nc.Status(), err)
}

// reconcile deletes outbox records the stream already holds: published and
// acknowledged before a crash that came before their deletion. Only the
// head of the outbox can be in that state. Because the relay publishes the
// events of a subject one at a time and in order, the last message stored on
// a subject being record i means records up to i of that subject are stored.
// A record too large for the limit is looked for as what the relay would
// publish for it (the same id shrunk, or its notice on the notice subject).
func (r *Relay) reconcile(ctx context.Context, s jetstream.Stream) error {
	recs, err := r.o.Outbox.OutboxRead(5 * r.o.MaxInFlight)
	if err != nil {
		return fmt.Errorf("reading the outbox: %w", err)
	}
	if len(recs) == 0 {
		return nil
	}
	limit := r.limit()
	bySubject := map[string][]wire{}
	var order []string
	for _, rec := range recs {
		w, err := r.fit(rec, limit)
		if err != nil {
			return err
		}
		if _, ok := bySubject[w.subject]; !ok {
			order = append(order, w.subject)
		}
		bySubject[w.subject] = append(bySubject[w.subject], w)
	}
	var stored []wire
	for _, subj := range order {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("checking stream %s for already published events on %s: %w", r.o.Stream, events.Clip(subj), r.connErr(err))
		}
		last := m.Header.Get(jetstream.MsgIDHeader)
		ws := bySubject[subj]
		for i := range ws {
			if ws[i].id == last {
				stored = append(stored, ws[:i+1]...)
				break
			}
		}
	}
	if len(stored) > 0 {
		r.log.Info("event relay: outbox held events already in the stream (published before a crash); removing them", "count", len(stored))
		return r.delete(stored)
	}
	return nil
}
