package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadlinequery"
)

// Scheduled digests (issue 15): at every instant of a digest's schedule, in
// its time zone, the notifier asks the watcher for the open deadlines that
// close within the digest's window (deadlinequery, over NATS: the state
// the watcher keeps, not a replay of the stream), renders one message per
// channel and sends it.
//
// Exactly once per (digest, scheduled instant, channel), across restarts
// and several notifiers, rests on a record in the deliveries bucket
// (file storage, kept delivery.dedupe_ttl) under
// _digest.<name>.<local wall time>.<channel>, written like an event's claim:
// a compare-and-set "sending" naming this process before the send, "sent"
// after. A record another notifier is sending with is waited for (until it
// is older than the channel's timeout plus a minute: its sender is gone,
// and the run is taken over); "sent" ends the matter. The honest limit is
// the events': a process that dies between the receiver's acceptance and
// the "sent" record leaves a "sending" record that is taken over, and the
// message is sent again, with the same id (webhook-id, Message-ID,
// Nats-Msg-Id) for receivers to drop.
//
// The key is the scheduled local wall time, not the instant: when clocks
// go back and a schedule's hour happens twice, the digest is sent once.
//
// A notifier that was down at a scheduled instant sends the missed run when
// it starts within the digest's grace (default 1h); older runs are not
// sent, and the start log says from when runs are caught up. A run whose
// query or sends keep failing is retried with backoff until its grace is
// over, then given up (logged, counted).

// digestKeyPrefix starts the digests' records in DeliveriesBucket.
const digestKeyPrefix = "_digest."

// Digest run results: the result label of pcwatch_notifier_digests_total.
const (
	DigestSent      = "sent"      // the channel accepted the digest
	DigestDuplicate = "duplicate" // already sent (by this or another notifier)
	DigestEmpty     = "empty"     // nothing in the window and skip_empty: not sent
	DigestFailed    = "failed"    // given up: a permanent failure, or the grace is over
	DigestMissed    = "missed"    // the scheduled instant was more than grace ago: not sent
)

// digestRecord is the value of a digest run's record.
type digestRecord struct {
	State string    `json:"state"` // sending, sent, failed
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}

const digestStateSent = "sent"

// digestHooks let tests drive the scheduler.
type digestHooks struct {
	// sleep replaces the wait between looks at the clock (a fake clock
	// advanced by the test).
	sleep func(ctx context.Context, d time.Duration) error
	// done is called after every run of a digest on a channel with its
	// result.
	done func(digest string, at time.Time, channel, result string)
	// idle is called each time the scheduler has nothing to do before
	// its next wait.
	idle func(next time.Time)
}

// digestScheduler runs the configuration's digests: one actor.
type digestScheduler struct {
	digests  []*compiledDigest
	channels map[string]*Channel
	senders  map[string]digestSender
	query    deadlinequery.Requester
	kv       jetstream.KeyValue // DeliveriesBucket
	clk      clock.Clock
	log      *slog.Logger
	instance string
	results  *prometheus.CounterVec
	hooks    *digestHooks
	// maxWait bounds a wait: the clock is read again at least this often,
	// so an accelerated calendar or a wall clock that jumped is noticed.
	maxWait time.Duration
	// retryInitial and retryMax shape the retries of a run.
	retryInitial, retryMax time.Duration
}

func newDigestResults() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pcwatch_notifier_digests_total",
		Help: "Digest runs per digest and channel, by result: sent, duplicate, empty, failed, missed.",
	}, []string{"digest", "channel", "result"})
}

func (s *digestScheduler) sleep(ctx context.Context, d time.Duration) error {
	if s.hooks != nil && s.hooks.sleep != nil {
		return s.hooks.sleep(ctx, d)
	}
	return clock.Sleep(ctx, d)
}

func (s *digestScheduler) result(d *compiledDigest, at time.Time, ch, res string) {
	if s.results != nil {
		s.results.WithLabelValues(d.name, ch, res).Inc()
	}
	if s.hooks != nil && s.hooks.done != nil {
		s.hooks.done(d.name, at, ch, res)
	}
}

// Run fires the digests until ctx ends. Runs within their grace before
// the start are caught up first.
func (s *digestScheduler) Run(ctx context.Context) error {
	if len(s.digests) == 0 {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	now := s.clk.Now()
	last := make([]time.Time, len(s.digests)) // runs up to last[i] are handled
	for i, d := range s.digests {
		last[i] = now.Add(-d.grace)
		s.log.Info("digest scheduled", "digest", d.name, "schedule", d.spec, "time_zone", d.loc.String(),
			"next", d.sched.Next(now).Format(time.RFC3339), "catching_up_from", last[i].In(d.loc).Format(time.RFC3339))
	}
	for {
		now = s.clk.Now()
		next := time.Time{}
		for i, d := range s.digests {
			for t := d.sched.Next(last[i]); !t.After(now); t = d.sched.Next(t) {
				last[i] = t
				if late := now.Sub(t); late > d.grace {
					s.log.Warn("digest run missed (the notifier was not running, or fell behind, at its scheduled time) and older than its grace: not sent",
						"digest", d.name, "scheduled", t.In(d.loc).Format(time.RFC3339), "late", late.Round(time.Second), "grace", d.grace)
					for _, ch := range d.channels {
						s.result(d, t, ch, DigestMissed)
					}
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.fire(ctx, d, t)
				}()
			}
			if n := d.sched.Next(last[i]); next.IsZero() || n.Before(next) {
				next = n
			}
		}
		if s.hooks != nil && s.hooks.idle != nil {
			s.hooks.idle(next)
		}
		wait := next.Sub(now)
		if s.maxWait > 0 {
			wait = min(wait, s.maxWait)
		}
		if err := s.sleep(ctx, wait); err != nil || ctx.Err() != nil {
			return nil
		}
	}
}

// runID is a run's id: digest-<name>-<local wall time>.
func runID(d *compiledDigest, at time.Time) string {
	return "digest-" + d.name + "-" + at.In(d.loc).Format("20060102T1504")
}

func digestKey(d *compiledDigest, at time.Time, channel string) string {
	return digestKeyPrefix + d.name + "." + at.In(d.loc).Format("20060102T1504") + "." + channel
}

// fire runs digest d for its instant at on every channel that has not had
// it, retrying until at + grace.
func (s *digestScheduler) fire(ctx context.Context, d *compiledDigest, at time.Time) {
	log := s.log.With("digest", d.name, "scheduled", at.In(d.loc).Format(time.RFC3339))
	giveUp := at.Add(d.grace)
	pending := map[string]bool{}
	for _, ch := range d.channels {
		pending[ch] = true
	}
	var msg *digestMsg
	wait := s.retryInitial
	for attempt := 1; len(pending) > 0; attempt++ {
		var failures []error
		// Channels that already have it (a restart, another notifier)
		// need no query.
		for _, ch := range d.channels {
			if !pending[ch] {
				continue
			}
			if r, _, err := s.record(ctx, digestKey(d, at, ch)); err == nil && r != nil && r.State == digestStateSent {
				delete(pending, ch)
				s.result(d, at, ch, DigestDuplicate)
				log.Info("digest already sent (by this notifier before a restart, or by another): not sent again", "channel", ch, "sent_by", r.Owner)
			}
		}
		if len(pending) == 0 {
			return
		}
		if msg == nil {
			m, err := s.fetch(ctx, d, at)
			var qe *deadlinequery.Error
			switch {
			case errors.As(err, &qe) && !qe.Temporary():
				log.Error("digest not sent: the watcher refused its query", "err", err)
				for ch := range pending {
					s.result(d, at, ch, DigestFailed)
				}
				return
			case err != nil:
				failures = append(failures, err)
			default:
				msg = m
			}
		}
		if msg != nil {
			if msg.Total == 0 && d.skipEmpty {
				for ch := range pending {
					s.result(d, at, ch, DigestEmpty)
				}
				log.Info("digest empty: not sent (skip_empty)")
				return
			}
			for _, ch := range d.channels {
				if !pending[ch] {
					continue
				}
				res, err := s.deliver(ctx, d, at, ch, msg)
				switch {
				case err == nil:
					delete(pending, ch)
					s.result(d, at, ch, res)
					if res == DigestSent {
						log.Info("digest sent", "channel", ch, "deadlines", msg.Total, "shown", len(msg.Rows))
					}
				case isPermanent(err):
					delete(pending, ch)
					s.result(d, at, ch, DigestFailed)
					log.Error("digest not sent: the channel refused it", "channel", ch, "err", err)
				default:
					failures = append(failures, fmt.Errorf("channel %s: %w", ch, err))
				}
			}
		}
		if len(pending) == 0 || ctx.Err() != nil {
			return
		}
		now := s.clk.Now()
		if !now.Add(wait).Before(giveUp) {
			log.Error("digest not sent: still failing at the end of its grace", "attempts", attempt, "grace", d.grace, "err", errors.Join(failures...))
			for ch := range pending {
				s.result(d, at, ch, DigestFailed)
			}
			return
		}
		log.Warn("digest run failed; retrying", "attempt", attempt, "retry_in", wait, "err", errors.Join(failures...))
		if err := s.sleep(ctx, wait); err != nil {
			return
		}
		wait = min(2*wait, s.retryMax)
	}
}

func isPermanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent
}

// fetch asks the watcher for the digest's deadlines.
func (s *digestScheduler) fetch(ctx context.Context, d *compiledDigest, at time.Time) (*digestMsg, error) {
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := deadlinequery.Fetch(qctx, s.query, deadlinequery.Request{Within: d.within.String(), Types: d.types,
		Customers: d.customers, PartnerIDs: d.partners, Offers: d.offers}, d.maxRows)
	if err != nil {
		return nil, err
	}
	return &digestMsg{ID: runID(d, at), Name: d.name, Scheduled: at, Zone: d.loc.String(), Within: d.within, AsOf: res.AsOf,
		Until: res.Until, Rows: res.Deadlines, Total: res.Total, Warnings: res.Warnings, loc: d.loc}, nil
}

// record reads a run's record: nil when there is none.
func (s *digestScheduler) record(ctx context.Context, key string) (*digestRecord, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading digest record %s in %s: %w", key, DeliveriesBucket, err)
	}
	var r digestRecord
	if json.Unmarshal(e.Value(), &r) != nil {
		r.State = stateFailed // unreadable: not sent
	}
	return &r, e.Revision(), nil
}

// errBusy: another notifier is sending this run on this channel now.
var errBusy = errors.New("another notifier is sending this digest on this channel; waiting for its result")

// deliver claims the run on ch, sends it and records it sent.
func (s *digestScheduler) deliver(ctx context.Context, d *compiledDigest, at time.Time, ch string, m *digestMsg) (string, error) {
	key := digestKey(d, at, ch)
	mine := func(state string) []byte {
		b, _ := json.Marshal(digestRecord{State: state, Owner: s.instance, At: s.clk.Now().UTC()})
		return b
	}
	rev, err := s.kv.Create(ctx, key, mine(stateSending))
	if errors.Is(err, jetstream.ErrKeyExists) {
		r, rrev, gerr := s.record(ctx, key)
		switch {
		case gerr != nil:
			return "", gerr
		case r == nil:
			return "", errBusy // deleted meanwhile: look again
		case r.State == digestStateSent:
			return DigestDuplicate, nil
		case r.State == stateSending && r.Owner != s.instance && s.clk.Now().Sub(r.At) < s.channels[ch].Timeout.D()+time.Minute:
			return "", errBusy
		}
		if r.State == stateSending {
			s.log.Warn("taking over a digest run another notifier began and did not finish (it stopped?): it may be sent twice, with the same id",
				"digest", d.name, "channel", ch, "owner", r.Owner, "since", r.At)
		}
		rev, err = s.kv.Update(ctx, key, mine(stateSending), rrev)
		if isWrongSequence(err) {
			return "", errBusy
		}
	}
	if err != nil {
		return "", fmt.Errorf("claiming digest run %s in %s: %w", key, DeliveriesBucket, err)
	}
	sctx, cancel := context.WithTimeout(ctx, s.channels[ch].Timeout.D())
	serr := s.senders[ch].sendDigest(sctx, m)
	cancel()
	if serr != nil {
		_, _ = s.kv.Update(context.WithoutCancel(ctx), key, mine(stateFailed), rev)
		return "", serr
	}
	// Sent: record it, retrying briefly (a lost record means a second
	// send after a restart).
	var rerr error
	for i := range 3 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, rerr = s.kv.Update(rctx, key, mine(digestStateSent), rev)
		cancel()
		if rerr == nil || isWrongSequence(rerr) {
			break
		}
		if err := s.sleep(ctx, time.Duration(i+1)*200*time.Millisecond); err != nil {
			break
		}
	}
	if rerr != nil {
		s.log.Warn("digest sent but its record could not be written: a restart may send it again", "digest", d.name, "channel", ch, "err", rerr)
	}
	return DigestSent, nil
}

// digestChannel reports whether a digest sends to channel.
func (c *Config) digestChannel(channel string) bool {
	for _, d := range c.digests {
		if slices.Contains(d.channels, channel) {
			return true
		}
	}
	return false
}

// newDigestSchedulerFor builds the scheduler of cfg's digests for Run.
func newDigestSchedulerFor(cfg *Config, o Options, nc *nats.Conn, log *slog.Logger, instance string, m *metrics) (*digestScheduler, error) {
	s := &digestScheduler{digests: cfg.digests, channels: cfg.Channels, senders: map[string]digestSender{}, query: nc,
		clk: o.Clock, log: log.With("component", "digests"), instance: instance, hooks: o.digestHooks, maxWait: time.Minute,
		retryInitial: cfg.Delivery.RetryInitial.D(), retryMax: cfg.Delivery.RetryMax.D()}
	for _, d := range cfg.digests {
		for _, ch := range d.channels {
			if s.senders[ch] != nil {
				continue
			}
			snd, err := newDigestSender(cfg.Channels[ch], senderDeps{http: o.HTTPClient, conn: nc, clock: o.Clock})
			if err != nil {
				return nil, err
			}
			s.senders[ch] = snd
		}
	}
	s.results = newDigestResults()
	if err := m.reg.Register(s.results); err != nil {
		return nil, err
	}
	return s, nil
}
