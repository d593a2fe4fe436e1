package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
)

// AlertsBucket holds each channel's open deadline alerts, one key per
// (channel, subscription, deadline): warnings held back by a silence until
// it ends (or until silence_lead before the deadline), and delivered
// warnings waiting for their next reminder (a route's repeat_interval) or
// for their "resolved" notice. Records are deleted when the alert closes;
// the TTL only bounds what a removed channel leaves behind.
const AlertsBucket = "PCWATCH_ALERTS"

const alertsTTL = 400 * 24 * time.Hour

// alertEvery is how often each channel looks for alerts that are due, and
// alertRescan how often it reads the whole bucket again (to see what other
// notifiers wrote).
const (
	alertEvery  = 5 * time.Second
	alertRescan = time.Minute
)

// EnsureAlerts creates the alerts bucket (file storage). ttl is ignored
// (alertsTTL); the parameter matches openBucket.
func EnsureAlerts(ctx context.Context, js jetstream.JetStream, _ time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AlertsBucket,
		Description: "pcwatch notifier: open deadline alerts per channel (held by silences, reminders, resolution)",
		History:     1,
		TTL:         alertsTTL,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("JetStream key-value bucket %s: %w", AlertsBucket, err)
	}
	return kv, nil
}

// Alert record kinds.
const (
	alertHeld     = "held"     // muted by a silence, not sent yet
	alertOpen     = "open"     // sent; reminders follow while it stays open
	alertResolved = "resolved" // closed by the user's action; the resolved notice is due
)

// alertRecord is one open alert of one channel.
type alertRecord struct {
	Kind       string          `json:"kind"`
	Family     string          `json:"family"`
	EventID    string          `json:"eventId"`
	Subject    string          `json:"subject"`
	Deadline   time.Time       `json:"deadline"`
	Due        time.Time       `json:"due"`
	Repeat     Duration        `json:"repeat,omitempty"`       // reminders: the route's repeat_interval
	Sent       int             `json:"sent,omitempty"`         // reminders sent so far
	Tries      int             `json:"tries,omitempty"`        // failed attempts at the due notice
	Silence    string          `json:"silence,omitempty"`      // held: the silence that muted it
	Reason     string          `json:"reason,omitempty"`       // resolved: what the user did
	ResolvedBy string          `json:"resolvedBy,omitempty"`   // resolved: the event id that said so
	Resolved   bool            `json:"sendResolved,omitempty"` // send a resolved notice when it closes
	Body       json.RawMessage `json:"body"`                   // the warning's CloudEvent
}

// alertFamily is what the notifier knows of one deadline kind: which
// warning types open it, which type closes it, and which user actions
// resolve it.
type alertFamily struct {
	name    string
	closing events.Type // the warning (alerts open on it)
	closed  events.Type // the watcher's "it passed" event, if any
	// resolves says whether an event about the same subscription means the
	// user acted, and how to say it.
	resolves func(ev *events.Event, d *events.Data) (string, bool)
}

func statusLeft(ev *events.Event, d *events.Data) (string, bool) {
	switch ev.Type {
	case events.SubscriptionRemoved:
		return "subscription removed", true
	case events.SubscriptionStatusChanged:
		var s string
		if json.Unmarshal(d.New, &s) == nil && !strings.EqualFold(s, "active") {
			return "subscription " + s, true
		}
	}
	return "", false
}

func seatsReduced(ev *events.Event, d *events.Data) (string, bool) {
	if ev.Type == events.SubscriptionQuantityChanged && d.Delta != nil && *d.Delta < 0 {
		return fmt.Sprintf("seats reduced (%s -> %s)", string(d.Old), string(d.New)), true
	}
	return statusLeft(ev, d)
}

func autoRenewOff(ev *events.Event, d *events.Data) (string, bool) {
	if ev.Type == events.SubscriptionAutoRenewChanged && string(d.New) == "false" {
		return "auto-renew turned off", true
	}
	return statusLeft(ev, d)
}

// alertFamilies is the one table of deadline alerts.
var alertFamilies = []alertFamily{
	{name: "cancellation-window", closing: events.SubscriptionCancellationClosing, closed: events.SubscriptionCancellationClosed, resolves: seatsReduced},
	{name: "refund-window", closing: events.SubscriptionRefundClosing, resolves: seatsReduced},
	{name: "renewal", closing: events.SubscriptionRenewalApproaching, closed: events.SubscriptionRenewed, resolves: autoRenewOff},
	{name: "trial", closing: events.SubscriptionTrialEnding, resolves: autoRenewOff},
}

// resolverTypes are the event types a channel with reminders must see,
// whatever its routes send, to close its alerts.
var resolverTypes = []events.Type{
	events.SubscriptionRemoved, events.SubscriptionStatusChanged, events.SubscriptionQuantityChanged,
	events.SubscriptionAutoRenewChanged, events.SubscriptionCancellationClosed, events.SubscriptionRenewed,
}

func familyOf(t events.Type) (*alertFamily, bool) {
	for i := range alertFamilies {
		if alertFamilies[i].closing == t {
			return &alertFamilies[i], true
		}
	}
	return nil, false
}

// openWarning says whether ev is a deadline warning still open at now.
func openWarning(ev *events.Event, d *events.Data, now time.Time) (*alertFamily, bool) {
	f, ok := familyOf(ev.Type)
	if !ok || d == nil || d.Deadline == nil || !d.Deadline.After(now) {
		return nil, false
	}
	return f, true
}

// holdUntil is when a deadline warning muted by a silence ending at end is
// sent: when the silence ends, but never later than lead before the
// deadline. A result not after now means: send it now.
func holdUntil(deadline, end time.Time, lead time.Duration) time.Time {
	return minTime(end, deadline.Add(-lead))
}

// holdDecision is what happens at now to an open deadline warning that
// Route decided dec for: held until until, or sent now (override: a
// silence still holds, but the deadline is within lead).
func holdDecision(now, deadline time.Time, lead time.Duration, dec Decision) (hold bool, until time.Time, override bool) {
	if !dec.Silenced {
		return false, time.Time{}, false
	}
	if until := holdUntil(deadline, dec.SilenceEnd, lead); until.After(now) {
		return true, until, false
	}
	return false, time.Time{}, true
}

func overrideNotice(dec Decision, lead time.Duration) Notice {
	return Notice{Kind: NoticeOverride, Reason: fmt.Sprintf("a silence (%s) lasts until %s, past this deadline: sent %s before it",
		dec.Silence, dec.SilenceEnd.UTC().Format(time.RFC3339), lead)}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// entityToken names a subscription in alert keys (ids are outside input).
func entityToken(d *events.Data) string {
	sum := sha256.Sum256([]byte(d.CustomerID + "\x00" + d.SubscriptionID))
	return hex.EncodeToString(sum[:8])
}

func alertKey(channel string, f *alertFamily, d *events.Data) string {
	return channel + "." + entityToken(d) + "." + f.name + "-" + strconv.FormatInt(d.Deadline.Unix(), 10)
}

// alertCache is a channel's view of its records in AlertsBucket: written
// through by this process, read again every alertRescan.
type alertCache struct {
	mu      sync.Mutex
	recs    map[string]cachedAlert
	scanned time.Time
}

type cachedAlert struct {
	rec   alertRecord  // of a group: only Kind and Due
	group *groupRecord // set for a group record
	rev   uint64
}

// decodeAlert reads a record of AlertsBucket.
func decodeAlert(b []byte, rev uint64) (cachedAlert, error) {
	var rec alertRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return cachedAlert{}, err
	}
	if rec.Kind == "" {
		return cachedAlert{}, errors.New("no kind")
	}
	if rec.Kind != alertGroup {
		return cachedAlert{rec: rec, rev: rev}, nil
	}
	var g groupRecord
	if err := json.Unmarshal(b, &g); err != nil {
		return cachedAlert{}, err
	}
	return cachedAlert{rec: alertRecord{Kind: alertGroup, Due: g.Due}, group: &g, rev: rev}, nil
}

// alerts returns the channel's alert cache, nil when the channel keeps
// none (no silences can hold, no reminders: nothing uses the bucket).
func (r *channelRunner) alertsOn() bool { return r.alerts != nil && r.akv != nil }

// scanAlerts reads every record of the channel (direct gets along the
// bucket's stream, no consumer).
func (r *channelRunner) scanAlerts(ctx context.Context) error {
	st, err := r.akv.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading %s: %w", AlertsBucket, err)
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("reading %s: unexpected status type %T", AlertsBucket, st)
	}
	info := js.StreamInfo()
	str, err := r.js.Stream(ctx, info.Config.Name)
	if err != nil {
		return fmt.Errorf("reading %s: %w", AlertsBucket, err)
	}
	prefix := "$KV." + AlertsBucket + "."
	recs := map[string]cachedAlert{}
	for seq := info.State.FirstSeq; seq != 0 && seq <= info.State.LastSeq; {
		m, err := str.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(prefix+r.name+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s at sequence %d: %w", AlertsBucket, seq, err)
		}
		seq = m.Sequence + 1
		key := m.Subject[len(prefix):]
		if op := m.Header.Get("KV-Operation"); op != "" {
			delete(recs, key)
			continue
		}
		c, err := decodeAlert(m.Data, m.Sequence)
		if err != nil {
			r.log.Warn("unreadable alert record: ignored", "key", key, "err", err)
			continue
		}
		recs[key] = c
	}
	// What this process wrote while the walk ran is newer than what the
	// walk saw (or it did not see it at all: the walk ends at the
	// sequence the bucket had when it began).
	r.alerts.mu.Lock()
	for k, c := range r.alerts.recs {
		if s, ok := recs[k]; c.rev > info.State.LastSeq && (!ok || c.rev > s.rev) {
			recs[k] = c
		}
	}
	r.alerts.recs, r.alerts.scanned = recs, r.clk.Now()
	r.alerts.mu.Unlock()
	return nil
}

// putAlert writes a record (replacing what the key held).
func (r *channelRunner) putAlert(ctx context.Context, key string, rec alertRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	rev, err := r.akv.Put(ctx, key, b)
	if err != nil {
		return fmt.Errorf("writing alert %s in %s: %w", key, AlertsBucket, err)
	}
	r.alerts.mu.Lock()
	r.alerts.recs[key] = cachedAlert{rec: rec, rev: rev}
	r.alerts.mu.Unlock()
	return nil
}

// casAlert replaces the record of revision rev (0: deletes it) unless
// someone changed it meanwhile: then the cache gets what the bucket holds
// and it reports false.
func (r *channelRunner) casAlert(ctx context.Context, key string, rec *alertRecord, rev uint64) (bool, error) {
	var nrev uint64
	var err error
	if rec == nil {
		err = r.akv.Delete(ctx, key, jetstream.LastRevision(rev))
	} else {
		b, _ := json.Marshal(rec)
		nrev, err = r.akv.Update(ctx, key, b, rev)
	}
	if err != nil {
		// Whatever failed, the cache must not keep what the bucket may
		// no longer hold.
		r.reloadAlert(ctx, key)
		if isWrongSequence(err) || errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("writing alert %s in %s: %w", key, AlertsBucket, err)
	}
	r.alerts.mu.Lock()
	if rec == nil {
		delete(r.alerts.recs, key)
	} else {
		r.alerts.recs[key] = cachedAlert{rec: *rec, rev: nrev}
	}
	r.alerts.mu.Unlock()
	return true, nil
}

// reloadAlert reads one record again into the cache.
func (r *channelRunner) reloadAlert(ctx context.Context, key string) {
	e, err := r.akv.Get(ctx, key)
	r.alerts.mu.Lock()
	defer r.alerts.mu.Unlock()
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		delete(r.alerts.recs, key)
		return
	}
	if err != nil {
		return // the next rescan
	}
	if c, err := decodeAlert(e.Value(), e.Revision()); err == nil {
		r.alerts.recs[key] = c
	}
}

func (r *channelRunner) deleteAlert(ctx context.Context, key string) error {
	if err := r.akv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting alert %s in %s: %w", key, AlertsBucket, err)
	}
	r.alerts.mu.Lock()
	delete(r.alerts.recs, key)
	r.alerts.mu.Unlock()
	return nil
}

// hold stores a muted deadline warning, to be sent at due. Each warning
// is held on its own (two thresholds of one deadline are two messages
// once the silence ends); the alert's own record is written when it is
// sent.
func (r *channelRunner) hold(ctx context.Context, ev *events.Event, d *events.Data, f *alertFamily, subject string, body []byte, due time.Time, silence string) error {
	sum := sha256.Sum256([]byte(ev.ID))
	return r.putAlert(ctx, alertKey(r.name, f, d)+"-held-"+hex.EncodeToString(sum[:6]), alertRecord{Kind: alertHeld, Family: f.name, EventID: ev.ID, Subject: subject,
		Deadline: *d.Deadline, Due: due, Silence: silence, Body: body})
}

// opened records a delivered warning whose route repeats it, or that
// replaces an earlier one of the same alert (a later threshold): reminders
// start again from now.
func (r *channelRunner) opened(ctx context.Context, ev *events.Event, d *events.Data, f *alertFamily, subject string, body []byte, opt routeOptions) error {
	key := alertKey(r.name, f, d)
	if opt.repeat <= 0 && !opt.sendResolved {
		return r.deleteAlert(ctx, key)
	}
	due := *d.Deadline
	if opt.repeat > 0 {
		due = minTime(r.clk.Now().Add(opt.repeat), due)
	}
	return r.putAlert(ctx, key, alertRecord{Kind: alertOpen, Family: f.name, EventID: ev.ID, Subject: subject,
		Deadline: *d.Deadline, Due: due, Repeat: Duration(opt.repeat), Resolved: opt.sendResolved, Body: body})
}

// resolveAlerts closes the channel's alerts about ev's subscription that
// ev resolves: a held warning is dropped (never sent), an open one turns
// into a resolved notice, sent by the scheduler.
func (r *channelRunner) resolveAlerts(ctx context.Context, ev *events.Event, d *events.Data) {
	// Only the resolving types can close an alert: the others (most of
	// the stream) do not look at the records.
	if d == nil || d.SubscriptionID == "" || !slices.Contains(resolverTypes, ev.Type) {
		return
	}
	prefix := r.name + "." + entityToken(d) + "."
	type hit struct {
		key string
		rec alertRecord
		rev uint64
	}
	var hits []hit
	r.alerts.mu.Lock()
	for k, c := range r.alerts.recs {
		if strings.HasPrefix(k, prefix) && c.group == nil && c.rec.Kind != alertResolved {
			hits = append(hits, hit{k, c.rec, c.rev})
		}
	}
	r.alerts.mu.Unlock()
	for i := 0; i < len(hits); i++ {
		h := hits[i]
		var f *alertFamily
		for i := range alertFamilies {
			if alertFamilies[i].name == h.rec.Family {
				f = &alertFamilies[i]
			}
		}
		if f == nil {
			continue
		}
		reason, ok := f.resolves(ev, d)
		closed := f.closed != "" && ev.Type == f.closed
		if !ok && !closed {
			continue
		}
		if h.rec.Kind == alertHeld {
			// Silences delay, they never drop: a held warning is still
			// sent when the silence ends, saying it was resolved meanwhile,
			// and opens no alert.
			if h.rec.ResolvedBy != "" {
				continue
			}
			h.rec.Reason, h.rec.ResolvedBy = reason, ev.ID
			if closed {
				h.rec.Reason = "the watcher saw the window close"
			}
			if _, err := r.casAlert(ctx, h.key, &h.rec, h.rev); err != nil {
				r.log.Warn("could not mark a held warning resolved", "key", h.key, "err", err)
			}
			continue
		}
		var next *alertRecord
		if !closed && h.rec.Resolved {
			// Else passed (the watcher said so), never sent, or no notice
			// wanted: the record goes, no more reminders.
			h.rec.Kind, h.rec.Reason, h.rec.ResolvedBy, h.rec.Due, h.rec.Tries = alertResolved, reason, ev.ID, r.clk.Now(), 0
			next = &h.rec
		}
		ok, err := r.casAlert(ctx, h.key, next, h.rev)
		if err != nil {
			r.log.Warn("could not close an alert", "key", h.key, "resolved_by", ev.ID, "err", err)
			continue
		}
		if !ok {
			// The scheduler moved it meanwhile (a reminder): again, on
			// what it wrote.
			r.alerts.mu.Lock()
			c, still := r.alerts.recs[h.key]
			r.alerts.mu.Unlock()
			if still && c.rec.Kind != alertResolved && c.rev != h.rev {
				hits = append(hits, hit{h.key, c.rec, c.rev})
			}
			continue
		}
		r.log.Info("alert resolved", "event_id", h.rec.EventID, "family", h.rec.Family, "reason", reason, "resolved_by", ev.ID)
	}
}

// scheduler fires the channel's due alerts until ctx ends.
func (r *channelRunner) scheduler(ctx context.Context) {
	every := alertEvery
	if r.hooks != nil && r.hooks.alertEvery > 0 {
		every = r.hooks.alertEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastScan := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Read everything again every alertRescan, on the calendar or on
		// the wall (an accelerated or fake calendar may stand still).
		if r.clk.Now().Sub(r.alerts.scanned) >= alertRescan || time.Since(lastScan) >= alertRescan {
			lastScan = time.Now()
			if err := r.scanAlerts(ctx); err != nil {
				r.log.Warn("could not read the open alerts; trying again", "err", err)
				continue
			}
		}
		r.fireDue(ctx)
	}
}

// fireDue handles every record whose time has come.
func (r *channelRunner) fireDue(ctx context.Context) {
	now := r.clk.Now()
	var due []string
	r.alerts.mu.Lock()
	for k, c := range r.alerts.recs {
		if !c.rec.Due.After(now) {
			due = append(due, k)
		}
	}
	r.alerts.mu.Unlock()
	for _, k := range due {
		if ctx.Err() != nil {
			return
		}
		r.alerts.mu.Lock()
		c, ok := r.alerts.recs[k]
		r.alerts.mu.Unlock()
		switch {
		case !ok || c.rec.Due.After(now):
		case c.group != nil:
			r.flushGroup(ctx, k, *c.group, c.rev)
		default:
			r.fire(ctx, k, c.rec, c.rev)
		}
	}
}

// Notices: what a message sent from an alert record says about itself.
const (
	NoticeReleased = "released" // held by a silence, sent when it ended
	NoticeOverride = "override" // held by a silence that lasts past the deadline: sent silence_lead before it
	NoticeReminder = "reminder" // the alert is still open
	NoticeResolved = "resolved" // the user acted, or the deadline passed
)

// Notice travels with a notification sent from an alert record.
type Notice struct {
	Kind   string // one of the Notice constants
	Reason string // one line: why
	N      int    // reminders: which one (1, 2, ...)
	// Thread is the id of the warning the notice follows up (the
	// webhook-id and Message-ID seed of the first message).
	Thread string
}

// fire sends what one due record asks for and moves it on.
func (r *channelRunner) fire(ctx context.Context, key string, rec alertRecord, rev uint64) {
	now := r.clk.Now()
	// Every change goes through the revision read: a resolution written
	// meanwhile wins, and is fired on its own.
	save := func(rec alertRecord) {
		if _, err := r.casAlert(ctx, key, &rec, rev); err != nil {
			r.log.Warn("could not update an alert", "key", key, "err", err)
		}
	}
	drop := func() {
		if _, err := r.casAlert(ctx, key, nil, rev); err != nil {
			r.log.Warn("could not delete an alert", "key", key, "err", err)
		}
	}
	ev, d, err := decodeEvent(rec.Body)
	if err != nil {
		r.log.Error("alert record holds an undecodable event: dropped", "key", key, "err", err)
		drop()
		return
	}
	log := r.log.With("event_id", ev.ID, "type", shortType(ev.Type), "alert", rec.Kind)
	opt := r.cfg.routeOptions(ev, d, r.name)
	passed := !rec.Deadline.After(now)
	var n Notice
	id := ev.ID
	switch rec.Kind {
	case alertHeld:
		// Even past its deadline (the notifier was not running when it was
		// due), a held warning is sent: silences delay, they never drop.
		if !opt.routed {
			drop() // the configuration no longer sends it here
			return
		}
		dec := r.cfg.Route(ev, d, now)
		hold, until, override := holdDecision(now, rec.Deadline, r.cfg.Alerts.SilenceLead.D(), dec)
		switch {
		case hold:
			rec.Due, rec.Silence = until, dec.Silence
			save(rec) // extended or replaced: hold on
			return
		case override:
			n = overrideNotice(dec, r.cfg.Alerts.SilenceLead.D())
		default:
			n = Notice{Kind: NoticeReleased, Reason: "held by a silence (" + rec.Silence + ") until it ended"}
		}
		if rec.ResolvedBy != "" {
			n.Reason += "; resolved meanwhile: " + rec.Reason
		}
	case alertOpen:
		if passed {
			// "Resolved: the deadline passed" only for what was being
			// repeated; a warning sent once just closes.
			if !rec.Resolved || rec.Repeat <= 0 {
				drop()
				return
			}
			n, id = Notice{Kind: NoticeResolved, Reason: "the deadline passed", Thread: ev.ID}, ev.ID+"-resolved"
			break
		}
		if rec.Repeat <= 0 || !opt.routed || opt.repeat <= 0 {
			// No reminders (any more): wait for the deadline or a resolution.
			rec.Due = rec.Deadline
			save(rec)
			return
		}
		if dec := r.cfg.Route(ev, d, now); dec.Silenced {
			rec.Due = maxTime(holdUntil(rec.Deadline, dec.SilenceEnd, r.cfg.Alerts.SilenceLead.D()), now.Add(time.Second))
			save(rec)
			return
		}
		n = Notice{Kind: NoticeReminder, N: rec.Sent + 1, Reason: "still open", Thread: ev.ID}
		id = fmt.Sprintf("%s-reminder-%d", ev.ID, rec.Sent+1)
	case alertResolved:
		n, id = Notice{Kind: NoticeResolved, Reason: rec.Reason, Thread: ev.ID}, ev.ID+"-resolved"
	default:
		drop()
		return
	}

	if err := r.sendNotice(ctx, ev, d, rec, id, n); err != nil {
		rec.Tries++
		if rec.Tries >= r.cfg.Delivery.MaxAttempts {
			log.Error("giving up on a notice after max_attempts", "notice", n.Kind, "err", err, "attempts", rec.Tries)
			r.m.failures.WithLabelValues(r.name, "notice").Inc()
			drop()
			return
		}
		delay := retryDelay(rec.Tries, asSendError(r.name, err), r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
		rec.Due = now.Add(delay)
		log.Warn("notice not sent; will retry", "notice", n.Kind, "err", err, "retry_in", delay)
		save(rec)
		return
	}
	log.Info("notice sent", "notice", n.Kind, "n", n.N)
	switch {
	case rec.Kind == alertHeld:
		// Sent at last: the alert opens (reminders, resolution) under its
		// own key, unless it was resolved meanwhile; the held record goes.
		if f, ok := familyOf(ev.Type); ok && rec.ResolvedBy == "" {
			if err := r.opened(ctx, ev, d, f, rec.Subject, rec.Body, opt); err != nil {
				log.Warn("sent, but its reminders and resolution could not be scheduled", "err", err)
			}
		}
		drop()
	case n.Kind == NoticeResolved:
		drop()
	case n.Kind == NoticeReminder:
		rec.Sent++
		fallthrough
	default:
		rec.Kind, rec.Tries, rec.Repeat, rec.Resolved = alertOpen, 0, Duration(opt.repeat), opt.sendResolved
		if opt.repeat <= 0 && !opt.sendResolved {
			drop()
			return
		}
		rec.Due = rec.Deadline
		if opt.repeat > 0 {
			rec.Due = minTime(now.Add(opt.repeat), rec.Deadline)
		}
		save(rec)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendNotice sends a follow-up of the warning in rec (its time left
// recomputed) once per channel (sendOnce).
func (r *channelRunner) sendNotice(ctx context.Context, ev *events.Event, d *events.Data, rec alertRecord, id string, n Notice) error {
	return r.sendOnce(ctx, id, "notice", func() (*notification, error) {
		left := int64(rec.Deadline.Sub(r.clk.Now()) / time.Second)
		if left < 0 {
			left = 0
		}
		d.RemainingSeconds, d.Remaining = &left, events.FormatDuration(time.Duration(left)*time.Second)
		td, err := channelMessage(r.ch.Kind, ev, d, r.cfg.overrides, r.name)
		if err != nil {
			return nil, &SendError{Channel: r.name, Reason: ReasonRender, Permanent: true, Err: err}
		}
		applyNotice(td, n)
		return &notification{Event: ev, Data: d, Body: rec.Body, Message: td, Subject: rec.Subject, Attempt: rec.Tries + 1, Notice: &n, ID: id}, nil
	})
}

// sendOnce is how the scheduler sends what is not a message of the
// stream (a notice, a grouped message): it claims the delivery key of id
// (so that two notifiers firing the same record send it once), builds the
// notification, sends it and commits the delivery. Already delivered:
// nothing is sent and nil returned.
func (r *channelRunner) sendOnce(ctx context.Context, id, what string, build func() (*notification, error)) error {
	key := deliveryKey(r.name, id)
	cl, err := r.store.claim(ctx, r.name, key, 0, 0)
	if err != nil {
		return err
	}
	switch cl.outcome {
	case duplicate:
		return nil
	case busy:
		return &SendError{Channel: r.name, Reason: ReasonDedupe, Err: fmt.Errorf("another notifier is sending this %s", what), HasRetryAfter: true, RetryAfter: cl.wait}
	}
	n, err := build()
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, r.ch.Timeout.D())
		err = r.snd.send(sctx, n)
		cancel()
		r.m.attempts.WithLabelValues(r.name).Inc()
	}
	if err != nil {
		_ = r.store.release(ctx, key, cl.rev, stateFailed)
		return err
	}
	return r.store.delivered(ctx, key, cl.rev)
}

// applyNotice says in the rendered message what kind of follow-up it is.
func applyNotice(td *TemplateData, n Notice) {
	if td == nil {
		return
	}
	td.Notice = n.Kind
	var prefix string
	switch n.Kind {
	case NoticeReminder:
		prefix = fmt.Sprintf("Reminder %d: ", n.N)
	case NoticeResolved:
		prefix = "Resolved: "
		td.Severity = "info"
	case NoticeOverride:
		prefix = "Silence overridden: "
	case NoticeReleased:
		prefix = "After a silence: "
	}
	td.Title = truncate(maxTitle, prefix+td.Title)
	if n.Reason != "" {
		td.Text = strings.TrimSpace(td.Text + "\n\n" + strings.ToUpper(n.Reason[:1]) + n.Reason[1:] + ".")
	}
}
