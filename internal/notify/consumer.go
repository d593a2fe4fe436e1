package notify

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// Reasons for events the notifier refuses to deliver (see admit). They
// extend the closed set of Reason constants in sender.go.
const (
	// ReasonUnknownType: the event's type is not in pcwatch's catalog
	// (events.Lookup): a forged message, or a newer watcher than this
	// notifier (upgrade the notifier, then `notifier dlq replay`).
	ReasonUnknownType = "unknown_type"
	// ReasonForeignSource: accept.sources is set and the event's source
	// matches none of its globs.
	ReasonForeignSource = "foreign_source"
)

// admit decides whether an event may be delivered at all, before routing:
// its type must be in the event catalog, and its source must match
// accept.sources when that is set. A refusal is a permanent *SendError:
// the event is dead-lettered, never signed or sent.
func (c *Config) admit(channel string, ev *events.Event) *SendError {
	if _, ok := events.Lookup(ev.Type); !ok {
		return &SendError{Channel: channel, Reason: ReasonUnknownType, Permanent: true,
			Err: fmt.Errorf("event type %q is not in pcwatch's event catalog (docs/events.md): not delivered; if a newer watcher publishes it, upgrade the notifier and run `notifier dlq replay`", ev.Type)}
	}
	if len(c.Accept.Sources) == 0 {
		return nil
	}
	for _, g := range c.Accept.Sources {
		if ok, _ := path.Match(g, ev.Source); ok {
			return nil
		}
	}
	return &SendError{Channel: channel, Reason: ReasonForeignSource, Permanent: true,
		Err: fmt.Errorf("event source %q matches none of accept.sources (%s): not delivered", ev.Source, strings.Join(c.Accept.Sources, ", "))}
}

// ConsumerName is the durable JetStream consumer of a channel.
func ConsumerName(channel string) string { return "notify-" + channel }

// testHooks let tests observe and perturb the consumers. Nil fields are
// skipped.
type testHooks struct {
	// beforeAck may return false to drop the ack of a delivered message,
	// as if it were lost.
	beforeAck func(channel, id string, attempt int) bool
	// inProgress is called after each InProgress ack during a send.
	inProgress func(channel, id string)
	// result is called when a message has been handled.
	result func(channel, id, result string)
	// listening is called with the health address once it listens.
	listening func(addr string)
	// alertEvery replaces alertEvery and silencePoll.
	alertEvery time.Duration
	// silences is called after each read of the runtime silences.
	silences func(n int)
}

// received is a message and when it came out of the consumer.
type received struct {
	msg jetstream.Msg
	at  time.Time
}

// channelRunner is the consumer of one channel: it keeps its durable
// consumer in place and handles its messages, each channel independently
// of the others.
type channelRunner struct {
	name   string
	ch     *Channel
	cfg    *Config
	snd    sender
	js     jetstream.JetStream
	store  *deliveryStore
	m      *metrics
	log    *slog.Logger
	clk    clock.Clock
	hooks  *testHooks
	rnd    func() float64
	onDLQ  func()
	ready  func() // called once the consumer first runs
	once   sync.Once
	active atomic.Bool
	// created is when the channel's consumer was created (JetStream's
	// clock): events stored before it are the start position's backlog.
	created time.Time
	// settleq feeds the settler of the running consumer.
	settleq chan settleItem
	// handling counts the messages handed to the senders and not yet
	// handed to the settler or finished otherwise: while it is above zero
	// the settler waits a little for them (settleLinger). A count that
	// drifted would only make the settler wait settleLinger each batch.
	handling atomic.Int64
	// akv is AlertsBucket and alerts this channel's records in it (set with
	// store).
	akv    jetstream.KeyValue
	alerts *alertCache
}

// errStreamMissing says PCWATCH_EVENTS does not exist (yet).
var errStreamMissing = errors.New("JetStream stream " + stream.Name + " does not exist yet: is the watcher running and connected to this NATS server?")

// consumerConfig is the wanted configuration of the channel's consumer.
func (r *channelRunner) consumerConfig() jetstream.ConsumerConfig {
	d := r.cfg.Delivery
	c := jetstream.ConsumerConfig{
		Durable:       ConsumerName(r.name),
		Description:   fmt.Sprintf("pcwatch notifier channel %s (%s)", r.name, r.ch.Kind),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckWait:       d.AckWait.D(),
		MaxAckPending: d.MaxAckPending,
		MaxDeliver:    -1, // the notifier counts attempts and dead-letters itself
	}
	switch {
	case d.lookback < 0:
		c.DeliverPolicy = jetstream.DeliverAllPolicy
	case d.lookback > 0:
		// JetStream stamps messages with its own wall clock.
		from := time.Now().Add(-d.lookback)
		c.DeliverPolicy, c.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	setFilter(&c, r.cfg.FilterSubjects(r.name))
	return c
}

// backlogPast reports whether a message is part of the start position's
// backlog (stored before the consumer was created) and a deadline warning
// whose deadline has already passed: nobody can act on it any more, so it
// is not sent. Warnings still open, and every other event, are.
func (r *channelRunner) backlogPast(meta *jetstream.MsgMetadata, ev *events.Event, d *events.Data, now time.Time) bool {
	if r.created.IsZero() || !meta.Timestamp.Before(r.created) || d == nil || d.Deadline == nil {
		return false
	}
	info, ok := events.Lookup(ev.Type)
	return ok && info.Deadline && !strings.HasSuffix(string(ev.Type), "-closed") && !d.Deadline.After(now)
}

func setFilter(c *jetstream.ConsumerConfig, subs []string) {
	if len(subs) == 1 {
		c.FilterSubject, c.FilterSubjects = subs[0], nil
	} else {
		c.FilterSubject, c.FilterSubjects = "", subs
	}
}

// ensureConsumer creates the durable consumer (delivering only events
// published from now on, so a new channel gets no flood of history) or
// brings an existing one, which resumes where it left off, to the current
// filter and limits.
func (r *channelRunner) ensureConsumer(ctx context.Context, s jetstream.Stream) (jetstream.Consumer, error) {
	want := r.consumerConfig()
	c, err := s.Consumer(ctx, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = s.CreateConsumer(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("creating consumer %s: %w", want.Durable, err)
		}
		r.created = c.CachedInfo().Created
		r.log.Info("created consumer", "consumer", want.Durable, "filter", filterOf(want), "start", r.cfg.Delivery.Start)
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up consumer %s: %w", want.Durable, err)
	}
	r.created = c.CachedInfo().Created
	have := c.CachedInfo().Config
	upd := have
	upd.Description, upd.AckPolicy, upd.AckWait, upd.MaxAckPending, upd.MaxDeliver = want.Description, want.AckPolicy, want.AckWait, want.MaxAckPending, want.MaxDeliver
	upd.FilterSubject, upd.FilterSubjects = want.FilterSubject, want.FilterSubjects
	if reflect.DeepEqual(have, upd) {
		return c, nil
	}
	c, err = s.UpdateConsumer(ctx, upd)
	if err != nil {
		return nil, fmt.Errorf("updating consumer %s to filter %v: %w", want.Durable, filterOf(want), err)
	}
	r.log.Info("updated consumer", "consumer", want.Durable, "filter", filterOf(want))
	return c, nil
}

func filterOf(c jetstream.ConsumerConfig) []string {
	if c.FilterSubject != "" {
		return []string{c.FilterSubject}
	}
	return c.FilterSubjects
}

// consume runs the consumer until ctx ends (nil) or it fails; the
// channel's actor (Run) is restarted with backoff when it does. Sends in
// flight get until workCtx ends to finish. Messages are
// spread over delivery.concurrency senders by entity, so the events of one
// subscription are sent one at a time, in order.
func (r *channelRunner) consume(ctx, workCtx context.Context) error {
	s, err := r.js.Stream(ctx, stream.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return errStreamMissing
	}
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", stream.Name, err)
	}
	cons, err := r.ensureConsumer(ctx, s)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.cfg.Delivery.MaxAckPending))
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ConsumerName(r.name), err)
	}
	defer it.Stop()

	n := r.cfg.Delivery.Concurrency
	queues := make([]chan received, n)
	var wg sync.WaitGroup
	// The settler commits and acknowledges what the senders delivered, so
	// that a sender goes on to its next message at once; it stops after
	// the senders, having settled all they handed it.
	r.settleq = make(chan settleItem, r.cfg.Delivery.MaxAckPending)
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		r.settler(workCtx)
	}()
	defer func() {
		close(r.settleq)
		<-settled
	}()
	if r.alertsOn() {
		// The open alerts first: a resolution handled next must find them.
		if err := r.scanAlerts(ctx); err != nil {
			return err
		}
		sctx, stop := context.WithCancel(ctx)
		sched := make(chan struct{})
		go func() {
			defer close(sched)
			r.scheduler(sctx)
		}()
		defer func() { stop(); <-sched }()
	}
	for i := range queues {
		queues[i] = make(chan received, r.cfg.Delivery.MaxAckPending)
		wg.Go(func() {
			for rm := range queues[i] {
				if ctx.Err() != nil {
					// Shutting down: hand it back at once rather than
					// after ack_wait.
					_ = rm.msg.Nak()
					r.handling.Add(-1)
					continue
				}
				if r.handle(workCtx, rm) != ResultDelivered {
					r.handling.Add(-1) // a delivered one was counted down when handed to the settler
				}
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	r.active.Store(true)
	defer r.active.Store(false)
	r.once.Do(func() {
		r.log.Info("channel consumer running", "consumer", ConsumerName(r.name), "target", r.snd.target())
		if r.ready != nil {
			r.ready()
		}
	})
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				handBack(it)
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				r.log.Debug("consumer heartbeat missed (NATS unreachable?)")
				continue
			}
			return fmt.Errorf("consumer %s: %w", ConsumerName(r.name), err)
		}
		r.handling.Add(1)
		queues[partition(msg.Subject(), n)] <- received{msg: msg, at: time.Now()}
	}
}

// handBack stops the iterator so that the server sends nothing more, and
// naks what it had already sent, so that those messages are redelivered at
// once (to another notifier, or to this one after a restart) rather than
// after ack_wait.
func handBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(2 * time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

// partition maps a subject to a sender by entity:
// pcwatch.events.<resource>.<change>.<customer>[.<id>] without the change.
func partition(subject string, n int) int {
	if n <= 1 {
		return 0
	}
	toks := strings.Split(subject, ".")
	if len(toks) > 4 && toks[1] == "events" {
		toks = append(toks[2:3:3], toks[4:]...)
	}
	h := fnv.New32a()
	for _, t := range toks {
		h.Write([]byte(t))
		h.Write([]byte{0})
	}
	return int(h.Sum32() % uint32(n))
}

// keepAliveEvery is how often a long send tells JetStream it is still
// working on a message.
func (r *channelRunner) keepAliveEvery() time.Duration {
	return min(r.cfg.Delivery.AckWait.D()/4, 5*time.Second)
}

func (r *channelRunner) finish(id, result string) string {
	r.m.notifications.WithLabelValues(r.name, result).Inc()
	if r.hooks != nil && r.hooks.result != nil {
		r.hooks.result(r.name, id, result)
	}
	return result
}

// handle takes one message through decode, routing, deduplication and the
// send, and settles it: Ack, NakWithDelay, or dead-letter and Term.
func (r *channelRunner) handle(ctx context.Context, rm received) string {
	msg := rm.msg
	r.m.received.WithLabelValues(r.name).Inc()
	meta, err := msg.Metadata()
	if err != nil {
		// Cannot happen for a consumer's message; carry on without a
		// delivery count rather than lose it.
		r.log.Warn("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		meta = &jetstream.MsgMetadata{NumDelivered: 1}
	}
	attempt := int(meta.NumDelivered)
	if time.Since(rm.at) > r.keepAliveEvery() {
		_ = msg.InProgress()
	}
	ev, d, err := decodeEvent(msg.Data())
	if err != nil {
		se := &SendError{Channel: r.name, Reason: ReasonUndecodable, Permanent: true, Err: err}
		return r.deadLetter(ctx, msg, meta, nil, nil, se, "", 0)
	}
	log := r.log.With("event_id", ev.ID, "type", shortType(ev.Type), "attempt", attempt)
	if r.backlogPast(meta, ev, d, r.clk.Now()) {
		log.Debug("backlog from before the channel's consumer existed: a deadline warning whose deadline has passed; not sent")
		r.ack(ctx, msg, ev.ID, attempt)
		return r.finish(ev.ID, ResultPast)
	}
	if se := r.cfg.admit(r.name, ev); se != nil {
		r.m.failures.WithLabelValues(r.name, se.Reason).Inc()
		return r.deadLetter(ctx, msg, meta, ev, d, se, "", 0)
	}
	now := r.clk.Now()
	if r.alertsOn() {
		r.resolveAlerts(ctx, ev, d)
	}
	dec := r.cfg.Route(ev, d, now)
	var notice *Notice
	if dec.Silenced {
		if f, warning := familyOf(ev.Type); warning && d.Deadline != nil && r.alertsOn() && r.cfg.routeOptions(ev, d, r.name).routed {
			// A deadline warning is held, not dropped: sent when the
			// silence ends, or silence_lead before the deadline (at once
			// when that has come, or the deadline has even passed).
			lead := r.cfg.Alerts.SilenceLead.D()
			if hold, until, _ := holdDecision(now, *d.Deadline, lead, dec); hold {
				if err := r.hold(ctx, ev, d, f, msg.Subject(), msg.Data(), until, dec.Silence); err != nil {
					delay := retryDelay(attempt, nil, r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
					log.Warn("cannot hold a silenced deadline warning; retrying later rather than lose it", "err", err, "retry_in", delay)
					_ = msg.NakWithDelay(delay)
					return r.finish(ev.ID, ResultRetry)
				}
				log.Info("deadline warning held by a silence", "silence", dec.Silence, "until", until, "deadline", d.Deadline)
				r.ack(ctx, msg, ev.ID, attempt)
				return r.finish(ev.ID, ResultHeld)
			}
			nt := overrideNotice(dec, lead)
			notice = &nt
			dec = r.cfg.walk(ev, d)
		} else {
			log.Debug("silenced", "silence", dec.Silence)
			r.ack(ctx, msg, ev.ID, attempt)
			return r.finish(ev.ID, ResultSilenced)
		}
	}
	if !slices.Contains(dec.Channels, r.name) {
		r.ack(ctx, msg, ev.ID, attempt)
		return r.finish(ev.ID, ResultFiltered)
	}
	key := deliveryKey(r.name, ev.ID)
	cl, err := r.store.claim(ctx, r.name, key, meta.Sequence.Stream, meta.NumDelivered)
	if err != nil {
		r.m.failures.WithLabelValues(r.name, ReasonDedupe).Inc()
		delay := retryDelay(attempt, nil, r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
		log.Warn("cannot check for an earlier delivery; retrying later rather than risk a duplicate", "err", err, "retry_in", delay)
		_ = msg.NakWithDelay(delay)
		return r.finish(ev.ID, ResultRetry)
	}
	switch cl.outcome {
	case duplicate:
		log.Debug("already delivered")
		r.ack(ctx, msg, ev.ID, attempt)
		return r.finish(ev.ID, ResultDuplicate)
	case busy:
		log.Debug("another copy of this event is being sent; looking again later", "retry_in", cl.wait)
		_ = msg.NakWithDelay(cl.wait)
		return r.finish(ev.ID, ResultDeferred)
	}
	if opt := r.cfg.routeOptions(ev, d, r.name); len(opt.groupBy) > 0 && notice == nil && r.alertsOn() && groupable(ev, d, now, opt.groupWait) {
		// Into its group; the group's message is the delivery. The key is
		// recorded delivered now: a redelivery is a duplicate.
		if err := r.enqueue(ctx, ev, d, msg.Subject(), msg.Data(), opt); err != nil {
			_ = r.store.release(ctx, key, cl.rev, stateFailed)
			delay := retryDelay(attempt, nil, r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
			log.Warn("cannot add the event to its group; retrying later", "err", err, "retry_in", delay)
			_ = msg.NakWithDelay(delay)
			return r.finish(ev.ID, ResultRetry)
		}
		if err := r.store.delivered(ctx, key, cl.rev); err != nil {
			log.Warn("grouped, but not recorded as such: a redelivery would be grouped again", "err", err)
		}
		r.ack(ctx, msg, ev.ID, attempt)
		return r.finish(ev.ID, ResultGrouped)
	}
	if cl.takeover != nil {
		log.Warn("sending again an event whose earlier send was interrupted (a notifier died or stalled mid-send): the receiver may get it twice, with the same event id",
			"previous_owner", cl.takeover.Owner, "previous_attempt_at", cl.takeover.At)
	}
	r.store.setInflight(key, true)
	defer r.store.setInflight(key, false)

	var serr error
	td, err := channelMessage(r.ch.Kind, ev, d, r.cfg.overrides, r.name)
	if err != nil {
		serr = &SendError{Channel: r.name, Reason: ReasonRender, Permanent: true, Err: err}
	} else {
		if notice != nil {
			applyNotice(td, *notice)
		}
		n := &notification{Event: ev, Data: d, Body: msg.Data(), Message: td, Subject: msg.Subject(), Attempt: attempt, Notice: notice}
		serr = r.send(ctx, msg, n)
	}
	if serr == nil {
		if f, open := openWarning(ev, d, now); open && r.alertsOn() {
			if err := r.opened(ctx, ev, d, f, msg.Subject(), msg.Data(), r.cfg.routeOptions(ev, d, r.name)); err != nil {
				log.Warn("delivered, but its reminders and resolution could not be scheduled", "err", err)
			}
		}
		r.store.remember(key)
		r.handling.Add(-1)
		r.settleq <- settleItem{msg: msg, key: key, rev: cl.rev, id: ev.ID, attempt: attempt, log: log, customer: d.CustomerID}
		return ResultDelivered
	}
	se := asSendError(r.name, serr)
	r.m.failures.WithLabelValues(r.name, se.Reason).Inc()
	if !se.Permanent && attempt < r.cfg.Delivery.MaxAttempts {
		if err := r.store.release(ctx, key, cl.rev, stateFailed); err != nil {
			log.Debug("could not release the delivery record", "err", err)
		}
		delay := retryDelay(attempt, se, r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
		log.Warn("send failed; will retry", "err", se, "retry_in", delay.Round(time.Millisecond), "max_attempts", r.cfg.Delivery.MaxAttempts)
		_ = msg.NakWithDelay(delay)
		return r.finish(ev.ID, ResultRetry)
	}
	return r.deadLetter(ctx, msg, meta, ev, d, se, key, cl.rev)
}

// settleItem is a delivered message waiting for its delivery to be
// committed and for its ack.
type settleItem struct {
	msg      jetstream.Msg
	key, id  string
	rev      uint64 // of the sending claim
	attempt  int
	log      *slog.Logger
	customer string
}

// settleLinger is how long the settler waits for sends under way before it
// commits a batch of fewer than half max_ack_pending events. A synced
// write costs far more CPU than the wait (a few hundred µs on a loaded
// machine, docs/performance.md figure 7); when nothing is being sent the
// batch is committed at once.
const settleLinger = time.Millisecond

// settler takes what is waiting in settleq at once (waiting up to
// settleLinger for sends under way), commits it as one
// delivered batch (deliveryStore.commit; the sending claims point at the
// batches, so they are not marked delivered one by one), then
// acknowledges each message,
// until settleq is closed and empty. A commit that fails is logged and the
// messages are acknowledged anyway: they were delivered.
func (r *channelRunner) settler(ctx context.Context) {
	var items []settleItem
	var keys []string
	var revs []uint64
	enough := max(r.cfg.Delivery.MaxAckPending/2, 1)
	for it := range r.settleq {
		items, keys = append(items[:0], it), append(keys[:0], it.key)
		var linger <-chan time.Time
		var t *time.Timer
	drain:
		for len(items) < maxBatch {
			select {
			case it, ok := <-r.settleq:
				if !ok {
					break drain
				}
				items, keys = append(items, it), append(keys, it.key)
				continue
			default:
			}
			if r.handling.Load() == 0 || len(items) >= enough {
				break
			}
			// More sends are under way: wait a little for them, so that
			// one synced write covers more events.
			if linger == nil {
				t = time.NewTimer(settleLinger)
				linger = t.C
			}
			select {
			case it, ok := <-r.settleq:
				if !ok {
					break drain
				}
				items, keys = append(items, it), append(keys, it.key)
			case <-linger:
				break drain
			}
		}
		if t != nil {
			t.Stop()
		}
		if err := r.store.commit(ctx, keys...); err != nil {
			// The claims are not in a batch: mark them delivered one by
			// one, so that a copy or a redelivery is still recognised
			// while the claims bucket lives.
			revs = revs[:0]
			for _, it := range items {
				revs = append(revs, it.rev)
			}
			r.store.markClaims(ctx, keys, revs)
			r.log.Warn("delivered, but the deliveries could not be recorded durably: after a NATS server restart a copy of these events would be sent again", "events", len(keys), "err", err)
		}
		r.ackAll(ctx, items)
		for _, it := range items {
			it.log.Info("delivered", "customer_id", it.customer)
			r.finish(it.id, ResultDelivered)
		}
	}
}

// ackAll acknowledges the settled messages: all the acks are published,
// then one round trip to the server (a flush) waits until it has them,
// rather than a confirmed ack (a request and its reply) per message. As
// with ack, a lost ack only means a redelivery, which the claim and the
// delivered batch turn into a duplicate.
func (r *channelRunner) ackAll(ctx context.Context, items []settleItem) {
	sent := 0
	for _, it := range items {
		if r.hooks != nil && r.hooks.beforeAck != nil && !r.hooks.beforeAck(r.name, it.id, it.attempt) {
			continue
		}
		if err := it.msg.Ack(); err != nil {
			r.log.Debug("ack not sent; a redelivery will be recognised as a duplicate", "event_id", it.id, "err", err)
			continue
		}
		sent++
	}
	if sent == 0 {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.js.Conn().FlushWithContext(actx); err != nil {
		r.log.Debug("acks not confirmed; a redelivery will be recognised as a duplicate", "events", sent, "err", err)
	}
}

func asSendError(channel string, err error) *SendError {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	return &SendError{Channel: channel, Reason: ReasonNetwork, Err: err}
}

// send runs one attempt, telling JetStream every keepAliveEvery that the
// message is still being worked on.
func (r *channelRunner) send(ctx context.Context, msg jetstream.Msg, n *notification) error {
	sctx, cancel := context.WithTimeout(ctx, r.ch.Timeout.D())
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.keepAliveEvery())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
				if r.hooks != nil && r.hooks.inProgress != nil {
					r.hooks.inProgress(r.name, n.Event.ID)
				}
			}
		}
	})
	start := time.Now()
	err := r.snd.send(sctx, n)
	close(done)
	wg.Wait()
	r.m.attempts.WithLabelValues(r.name).Inc()
	r.m.duration.WithLabelValues(r.name).Observe(time.Since(start).Seconds())
	return err
}

// ack acknowledges and waits for the server to confirm; a lost ack only
// means a redelivery, which the delivery record turns into a duplicate.
func (r *channelRunner) ack(ctx context.Context, msg jetstream.Msg, id string, attempt int) {
	if r.hooks != nil && r.hooks.beforeAck != nil && !r.hooks.beforeAck(r.name, id, attempt) {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		r.log.Debug("ack not confirmed; a redelivery will be recognised as a duplicate", "event_id", id, "err", err)
	}
}

// deadLetter publishes the message to the DLQ and terminates it; if the DLQ
// cannot be written the message is retried later instead.
func (r *channelRunner) deadLetter(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, ev *events.Event, d *events.Data, se *SendError, key string, rev uint64) string {
	attempt := int(meta.NumDelivered)
	e := DLQEntry{Time: r.clk.Now().UTC(), Channel: r.name, Reason: se.Reason, Status: se.Status, Attempts: attempt,
		Subject: msg.Subject(), StreamSeq: meta.Sequence.Stream}
	if se.Err != nil {
		e.Error = r.cfg.redactor().String(se.Err.Error())
	}
	id := ""
	if ev != nil {
		id = ev.ID
		e.EventID, e.Type, e.CustomerID = ev.ID, shortType(ev.Type), d.CustomerID
	}
	if se.Reason == ReasonUndecodable {
		r.m.failures.WithLabelValues(r.name, ReasonUndecodable).Inc()
	}
	log := r.log.With("event_id", id, "subject", msg.Subject(), "attempt", attempt, "reason", se.Reason)
	if err := publishDLQ(ctx, r.js, e, msg.Data()); err != nil {
		delay := retryDelay(attempt, nil, r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
		log.Error("cannot write the dead-letter queue; will retry the message", "err", err, "retry_in", delay)
		if key != "" {
			_ = r.store.release(ctx, key, rev, stateFailed)
		}
		_ = msg.NakWithDelay(delay)
		return r.finish(id, ResultRetry)
	}
	if key != "" {
		_ = r.store.release(ctx, key, rev, stateDead)
	}
	_ = msg.TermWithReason("dead-lettered by the pcwatch notifier: " + se.Reason)
	if r.onDLQ != nil {
		r.onDLQ()
	}
	why := "permanent failure"
	if !se.Permanent {
		why = fmt.Sprintf("no success after %d attempts", attempt)
	}
	log.Error("event sent to the dead-letter queue ("+why+"); fix the cause, then `notifier dlq replay`", "err", se.Err, "status", se.Status, "dlq_subject", DLQSubjectPrefix+r.name)
	return r.finish(id, ResultDLQ)
}
