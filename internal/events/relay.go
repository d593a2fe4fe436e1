package events

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
)

// OutboxRecord is one event waiting in the outbox.
type OutboxRecord struct {
	Seq uint64 // outbox order
	Envelope
}

// Outbox is the durable queue the relay drains. The watcher's state store
// implements it; events are written to it in the same transaction as the
// snapshot that caused them.
type Outbox interface {
	// OutboxRead returns up to n records in outbox order, oldest first.
	OutboxRead(n int) ([]OutboxRecord, error)
	// OutboxDelete removes records; deleting a missing record is not an
	// error.
	OutboxDelete(seqs []uint64) error
	// OutboxLen returns the number of records waiting.
	OutboxLen() (int, error)
}

// RelayMetrics receives the relay's figures; implementations must be safe
// for concurrent use. Nil is allowed.
type RelayMetrics interface {
	OutboxDepth(n int)
	Published(n int)
	PublishFailed()
}

// RelayOptions configure a Relay.
type RelayOptions struct {
	Conn        *nats.Conn
	Outbox      Outbox
	Stream      string        // expected stream; default StreamName
	MaxInFlight int           // unacknowledged publishes at once; default 256
	AckTimeout  time.Duration // per publish; default 10s
	// RetryInitial and RetryMax shape the backoff while NATS is
	// unreachable; defaults 250ms and 30s.
	RetryInitial, RetryMax time.Duration
	// Idle is how often an idle relay looks at the outbox without being
	// kicked; default 1s.
	Idle    time.Duration
	Metrics RelayMetrics
	Logger  *slog.Logger
}

// Relay moves events from the outbox onto JetStream, in outbox order,
// deleting a record only after JetStream acknowledged storing it.
//
// Guarantees, given an outbox that is only appended to by committed
// transactions:
//   - nothing is lost: a record leaves the outbox only after its PubAck;
//   - nothing is stored twice: every publish carries Nats-Msg-Id = event id,
//     so a republish after a crash (between PubAck and delete) is dropped by
//     the stream's duplicate window, and at start-up the relay checks the
//     stream for records it published but could not delete, so even a
//     restart after the window has passed does not double them;
//   - per-entity order: two events of one entity are never in flight
//     together, so a failed publish can never be overtaken by a later event
//     of the same entity.
//
// Run and Flush may be called from different goroutines; draining is
// serialised.
type Relay struct {
	o     RelayOptions
	js    jetstream.JetStream
	log   *slog.Logger
	kick  chan struct{}
	mu    sync.Mutex // serialises drains
	recon bool       // start-up reconciliation done
}

// NewRelay returns a relay; it does not start draining until Run or Flush.
func NewRelay(o RelayOptions) (*Relay, error) {
	if o.Conn == nil || o.Outbox == nil {
		return nil, errors.New("relay needs a NATS connection and an outbox")
	}
	if o.Stream == "" {
		o.Stream = StreamName
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
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(o.Conn,
		jetstream.WithPublishAsyncMaxPending(o.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("relay: JetStream context: %w", err)
	}
	return &Relay{o: o, js: js, log: log, kick: make(chan struct{}, 1)}, nil
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

// inflight is one publish awaiting its PubAck.
type inflight struct {
	rec OutboxRecord
	fut jetstream.PubAckFuture
}

// drain publishes everything in the outbox once. It stops at the first
// failure after settling what is in flight, deletes every acknowledged
// record, and returns how many it published.
func (r *Relay) drain(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.recon {
		if err := r.reconcile(ctx); err != nil {
			return 0, err
		}
		r.recon = true
	}
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
		chaosDeleteBeforeAck(r.o.Outbox, recs)
		acked, perr := r.publish(ctx, recs)
		if len(acked) > 0 {
			if err := r.o.Outbox.OutboxDelete(acked); err != nil {
				return published, fmt.Errorf("deleting %d published events from the outbox: %w", len(acked), err)
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

// publish sends recs in order with at most MaxInFlight unacknowledged and
// never two of one entity at once. It returns the sequences acknowledged
// and the first error.
func (r *Relay) publish(ctx context.Context, recs []OutboxRecord) ([]uint64, error) {
	var (
		acked    = make([]uint64, 0, len(recs))
		queue    []inflight
		entities = make(map[string]int)
		firstErr error
	)
	settle := func() {
		f := queue[0]
		queue = queue[1:]
		if entities[f.rec.Entity]--; entities[f.rec.Entity] == 0 {
			delete(entities, f.rec.Entity)
		}
		select {
		case <-f.fut.Ok():
			acked = append(acked, f.rec.Seq)
		case err := <-f.fut.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publishing event %s to %s: %w", f.rec.ID, f.rec.Subject, err)
			}
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
		for len(queue) > 0 && (len(queue) >= r.o.MaxInFlight || entities[rec.Entity] > 0) {
			settle()
		}
		if firstErr != nil {
			break
		}
		msg := nats.NewMsg(rec.Subject)
		msg.Data = rec.Body
		msg.Header.Set("Content-Type", ContentType)
		fut, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(rec.ID), jetstream.WithExpectStream(r.o.Stream))
		if err != nil {
			firstErr = fmt.Errorf("publishing event %s to %s: %w", rec.ID, rec.Subject, err)
			break
		}
		queue = append(queue, inflight{rec: rec, fut: fut})
		entities[rec.Entity]++
	}
	for len(queue) > 0 {
		settle()
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return acked, firstErr
}

// reconcile deletes outbox records the stream already holds: published and
// acknowledged before a crash that came before their deletion. Only the
// head of the outbox can be in that state. Because the relay publishes the
// events of a subject one at a time and in order, the last message stored on
// a subject being record i means records up to i of that subject are stored.
func (r *Relay) reconcile(ctx context.Context) error {
	recs, err := r.o.Outbox.OutboxRead(5 * r.o.MaxInFlight)
	if err != nil {
		return fmt.Errorf("reading the outbox: %w", err)
	}
	if len(recs) == 0 {
		return nil
	}
	s, err := r.js.Stream(ctx, r.o.Stream)
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", r.o.Stream, err)
	}
	bySubject := map[string][]OutboxRecord{}
	var order []string
	for _, rec := range recs {
		if _, ok := bySubject[rec.Subject]; !ok {
			order = append(order, rec.Subject)
		}
		bySubject[rec.Subject] = append(bySubject[rec.Subject], rec)
	}
	var stored []uint64
	for _, subj := range order {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("checking stream %s for already published events on %s: %w", r.o.Stream, subj, err)
		}
		last := m.Header.Get(jetstream.MsgIDHeader)
		rs := bySubject[subj]
		for i := range rs {
			if rs[i].ID == last {
				for _, x := range rs[:i+1] {
					stored = append(stored, x.Seq)
				}
				break
			}
		}
	}
	if len(stored) > 0 {
		r.log.Info("event relay: outbox held events already in the stream (published before a crash); removing them", "count", len(stored))
		return r.o.Outbox.OutboxDelete(stored)
	}
	return nil
}
