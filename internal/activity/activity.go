// Package activity tails Partner Center's activity log (GET
// /v1/auditrecords) and turns the records that name a change to something
// pcwatch watches into durable hints (state.Hint): the informer pattern's
// "list once, then follow a cursor" (issue 13). Hints are triggers, never
// state: a hinted customer is read again and diffed as a sweep reads it,
// so a hint that is wrong, late or repeated costs one refresh, and a
// record the tail misses is still found by the sweep.
//
// # Cursor
//
// The activity log's dates are days, so every poll reads an overlapping
// window, [the day of (newest seen - LookBack), today], and deduplicates
// the records by DedupKey against the set of records already seen inside
// that overlap, which the cursor remembers (see CursorName for the
// format). A record that becomes visible late (Partner Center's log lags)
// with an operationDate older than the newest seen is still new as long
// as its day is inside the window: the tail never skips a record just
// because it is older than the newest one. The first poll with no cursor
// starts at the clock's reading minus InitialLookBack (default one day),
// never at the 90 days the log keeps; the sweep covers older history.
//
// # Crash safety
//
// A poll commits its hints and the advanced cursor in one state.Commit:
// a crash leaves both or neither. Neither means the records are read
// again by the next poll and hinted then; both means they are in the
// dedup set and are not hinted again. A poll that fails (an HTTP error, a
// malformed page, a limit of the client) commits nothing, even for the
// pages it read: the cursor advances only when ListAuditRecords returned
// nil. A damaged cursor (the state file is outside input) is logged and
// replaced by a fresh one at the initial look-back: records of that
// window may be hinted a second time, which costs one refresh each.
//
// # Bounds
//
// A poll holds at most the client's MaxItems records' keys (its
// MaxPages/MaxItems bound a flood of pages: beyond them the poll fails
// and is retried); hints are coalesced per customer before the commit and
// in the state file (state.Hint.Merge bounds each); records of customers
// Options.Known does not know are dropped, so the hints bucket is bounded
// by the watched customers; the dedup set is capped at Options.MaxSeen
// entries (see CursorName for what happens beyond).
package activity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Source is the tail's name as a hint's Origin and an actor's Source.
const Source = "activity-log"

// Defaults of Options.
const (
	DefaultInterval        = 30 * time.Second
	DefaultLookBack        = 24 * time.Hour
	DefaultInitialLookBack = 24 * time.Hour
	DefaultMaxSeen         = 50000
)

// maxLookBack bounds LookBack and InitialLookBack: one query reads at most
// pc.AuditMaxWindowDays days.
const maxLookBack = (pc.AuditMaxWindowDays - 1) * 24 * time.Hour

// Reasons a record read is not hinted (Metrics.RecordSkipped, PollReport.
// Skipped): a fixed set, so that a metric labelled by reason stays
// bounded whatever Partner Center sends. They are checked in this order.
const (
	// SkipDuplicate: the record is in the dedup set (read by an earlier
	// poll, or earlier in this one).
	SkipDuplicate = "duplicate"
	// SkipBeforeCursor: its operationDate is at or before the cursor's
	// floor or before the poll's window (older history is the sweep's).
	SkipBeforeCursor = "before-cursor"
	// SkipUnknownOperation: an operation type Partner Center does not
	// document (pc.KnownAuditOperationType).
	SkipUnknownOperation = "unknown-operation"
	// SkipIrrelevant: a documented type that changes nothing pcwatch
	// watches (see RelevantOperations).
	SkipIrrelevant = "irrelevant-operation"
	// SkipFailed: operationStatus "failed" or "decline": nothing changed.
	SkipFailed = "failed-operation"
	// SkipNoCustomer: a relevant record without a customerId.
	SkipNoCustomer = "no-customer"
	// SkipUnknownCustomer: a customer Options.Known does not know.
	SkipUnknownCustomer = "unknown-customer"
)

// SkipReasons lists every skip reason, in the order they are checked.
var SkipReasons = []string{SkipDuplicate, SkipBeforeCursor, SkipUnknownOperation, SkipIrrelevant, SkipFailed,
	SkipNoCustomer, SkipUnknownCustomer}

// AuditLister reads the activity log: *partnercenter.Client.
type AuditLister interface {
	ListAuditRecords(ctx context.Context, q pc.AuditQuery, each func(pc.AuditPage) error) error
}

var _ AuditLister = (*pc.Client)(nil)

// Metrics receives the tail's figures; implementations must be safe for
// concurrent use. Nil is allowed.
type Metrics interface {
	// RecordsRead counts the records of each page read.
	RecordsRead(n int)
	// RecordSkipped counts a record not hinted, by one of SkipReasons.
	RecordSkipped(reason string)
	// HintsQueued counts the hints a poll committed (one per customer).
	HintsQueued(n int)
	// PollFailed counts a poll that failed (nothing committed).
	PollFailed()
	// PollSucceeded reports a successful poll's time (the clock's
	// reading at its start).
	PollSucceeded(at time.Time)
	// CursorLag reports, after a successful poll, the clock's reading
	// minus the newest operationDate seen (minus the floor before any
	// record was seen): how far behind Partner Center the tail is, or how
	// long the log has been quiet.
	CursorLag(d time.Duration)
}

// Options configure a Tail.
type Options struct {
	// Client reads the activity log. Required.
	Client AuditLister
	// Store holds the cursor and receives the hints. Required.
	Store *state.Store
	// Clock is Partner Center's time; default clock.Real.
	Clock clock.Clock
	// Interval is the wait between polls of Run; default
	// DefaultInterval.
	Interval time.Duration
	// LookBack is the overlap: each poll reads from the day of (the
	// newest operationDate seen - LookBack). Default DefaultLookBack (the
	// day before the newest record's day); at most 29 days. Records that
	// become visible later than that after their operationDate are left
	// to the sweep.
	LookBack time.Duration
	// InitialLookBack is how far back the first poll without a cursor
	// (or after a damaged one) reads; default DefaultInitialLookBack, at
	// most 29 days.
	InitialLookBack time.Duration
	// MaxSeen caps the dedup set; default DefaultMaxSeen, at most
	// MaxSeenLimit.
	MaxSeen int
	// Known reports whether pcwatch watches the customer, given the id as
	// the record spells it (the hint is keyed by that same string, so
	// Known should accept only the spelling the state file uses); records
	// of other customers are counted and dropped. Required: it is what
	// bounds the hints bucket. Called from the polling goroutine.
	Known func(customerID string) bool
	// Metrics receives the figures; nil discards them.
	Metrics Metrics
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// Hinted, when set, is called after a poll committed hints: a
	// non-blocking kick for the refresher. It must not block.
	Hinted func()
}

// Tail is the activity-log tail. Poll and Run may be called from any
// goroutine; polls are serialised. One Tail per state file: two tails of
// one file would each hint the records the other has seen (harmless, but
// twice the requests).
type Tail struct {
	o      Options
	clock  clock.Clock
	log    *slog.Logger
	m      Metrics
	commit func(*state.Change) error // o.Store.Commit; tests replace it

	mu     sync.Mutex
	cur    *cursor   // the committed cursor; nil until loaded
	raw    []byte    // its stored bytes; nil while not stored (none yet, or damaged)
	warned time.Time // the query's oldest day last warned about (once a day, not every poll)
}

// ErrStore is wrapped by the errors of the state file (reading the
// cursor, committing a poll): Run returns them, so that its supervisor
// restarts it.
var ErrStore = errors.New("activity log tail: the state file failed")

// New checks o and returns a Tail. Nothing is read until the first poll.
func New(o Options) (*Tail, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("activity: Options.Client is required (a *partnercenter.Client)")
	case o.Store == nil:
		return nil, errors.New("activity: Options.Store is required (the open state file)")
	case o.Known == nil:
		return nil, errors.New("activity: Options.Known is required: it says which customers are watched and bounds the hints")
	case o.Interval < 0 || o.LookBack < 0 || o.InitialLookBack < 0 || o.MaxSeen < 0:
		return nil, fmt.Errorf("activity: negative option (interval %s, look-back %s, initial look-back %s, max seen %d); use 0 for the default",
			o.Interval, o.LookBack, o.InitialLookBack, o.MaxSeen)
	case o.LookBack > maxLookBack || o.InitialLookBack > maxLookBack:
		return nil, fmt.Errorf("activity: look-back %s / initial look-back %s is over %s: one activity log query reads at most %d days",
			o.LookBack, o.InitialLookBack, maxLookBack, pc.AuditMaxWindowDays)
	case o.MaxSeen > MaxSeenLimit:
		return nil, fmt.Errorf("activity: MaxSeen %d is over %d", o.MaxSeen, MaxSeenLimit)
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.LookBack == 0 {
		o.LookBack = DefaultLookBack
	}
	if o.InitialLookBack == 0 {
		o.InitialLookBack = DefaultInitialLookBack
	}
	if o.MaxSeen == 0 {
		o.MaxSeen = DefaultMaxSeen
	}
	t := &Tail{o: o, clock: o.Clock, log: o.Logger, m: o.Metrics, commit: o.Store.Commit}
	if t.clock == nil {
		t.clock = clock.Real{}
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.m == nil {
		t.m = nopMetrics{}
	}
	return t, nil
}

type nopMetrics struct{}

func (nopMetrics) RecordsRead(int)         {}
func (nopMetrics) RecordSkipped(string)    {}
func (nopMetrics) HintsQueued(int)         {}
func (nopMetrics) PollFailed()             {}
func (nopMetrics) PollSucceeded(time.Time) {}
func (nopMetrics) CursorLag(time.Duration) {}

// Run polls at once and then every Interval (counted from the end of the
// previous poll) until ctx ends, and then returns nil. A failing poll is
// logged and counted (Metrics.PollFailed), and the next one retries from
// the same cursor. Run returns early only for an error of the state file
// (wrapping ErrStore), for its supervisor to restart it.
func (t *Tail) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		rep, err := t.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrStore):
			return err
		case err != nil:
			failures++
			t.log.Warn("activity log poll failed; the next poll retries from the same cursor",
				"err", err, "consecutiveFailures", failures, "start", rep.Start.Format(time.DateOnly),
				"end", rep.End.Format(time.DateOnly), "retryIn", t.o.Interval)
		default:
			if failures > 0 {
				t.log.Info("activity log poll succeeded again", "failedPolls", failures)
			}
			failures = 0
		}
		timer.Reset(t.o.Interval)
	}
}

// PollReport is what one poll did.
type PollReport struct {
	// At is the clock's reading at the poll's start; Start and End are
	// the days queried (midnight UTC).
	At, Start, End time.Time
	Pages          int
	Records        int            // records read
	New            int            // of those, not seen before
	Relevant       int            // of those, hinted
	Skipped        map[string]int // records not hinted, by SkipReasons
	Hints          int            // hints committed (customers hinted)
	// DroppedSubscriptionIDs counts subscription ids that were not
	// plausible ids (too long, odd characters): the customer is still
	// hinted, as a whole.
	DroppedSubscriptionIDs int
	// Newest is the cursor's newest operationDate after the poll.
	Newest time.Time
	// Committed reports that the poll wrote to the state file (false when
	// nothing changed, or on error).
	Committed bool
	// Degraded reports that the dedup set hit MaxSeen and its oldest
	// entries were dropped (the floor rose).
	Degraded bool
	// Reset reports that the stored cursor was damaged and replaced.
	Reset bool
}

// Poll reads the activity log once from the cursor and commits the
// hints of the new relevant records with the advanced cursor, in one
// state.Commit. On error nothing is committed and the cursor stays; the
// error wraps ErrStore when the state file failed, else it is the
// listing's (ctx's, a *partnercenter.LimitError, one matching
// partnercenter.ErrAuditPage, ...), which the next poll retries. The
// report is filled as far as the poll got.
func (t *Tail) Poll(ctx context.Context) (PollReport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now().UTC()
	rep := PollReport{At: now, Skipped: map[string]int{}}
	cur, err := t.load(now, &rep)
	if err != nil {
		return rep, err
	}
	start := windowStart(cur, t.o.LookBack)
	today := midnight(now)
	if oldest := today.AddDate(0, 0, -pc.AuditMaxWindowDays); start.Before(oldest) {
		// A tail stopped for a month, or a log quiet for one (the
		// window stays at the newest record's day).
		if !t.warned.Equal(oldest) {
			t.warned = oldest
			t.log.Warn("the activity log cursor is older than one query reaches; records before are left to the sweep",
				"cursorDay", start.Format(time.DateOnly), "from", oldest.Format(time.DateOnly))
		}
		start = oldest
	}
	if start.After(today) {
		start = today
	}
	rep.Start, rep.End = start, today
	// Records at or before floor, or before the window (a server that
	// ignores startDate), are not new.
	floor := cur.floor
	if s := start.Add(-time.Nanosecond); s.After(floor) {
		floor = s
	}

	seen := cur.keys()
	fresh := map[key]struct{}{}
	var (
		added  []entry
		newest time.Time
		hinted []pending
	)
	skip := func(reason string) {
		rep.Skipped[reason]++
		t.m.RecordSkipped(reason)
	}
	err = t.o.Client.ListAuditRecords(ctx, pc.AuditQuery{StartDate: start, EndDate: today}, func(pg pc.AuditPage) error {
		rep.Pages++
		rep.Records += len(pg.Records)
		t.m.RecordsRead(len(pg.Records))
		for i := range pg.Records {
			r := &pg.Records[i]
			at := r.OperationDate.T.UTC()
			book := at // the instant the entry is filed under
			if at.IsZero() || at.After(now) {
				book = now
			}
			k := keyOf(r.DedupKey())
			_, dup := seen[k]
			if _, again := fresh[k]; dup || again {
				skip(SkipDuplicate)
				continue
			}
			if !book.After(floor) {
				skip(SkipBeforeCursor)
				continue
			}
			fresh[k] = struct{}{}
			added = append(added, entry{at: book.UnixNano(), key: k})
			if !at.IsZero() && book.After(newest) {
				newest = book
			}
			rep.New++
			if p, reason := t.relevant(r, book, &rep); reason != "" {
				skip(reason)
			} else {
				hinted = append(hinted, p)
			}
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			t.m.PollFailed()
		}
		return rep, fmt.Errorf("reading the activity log from %s: %w", start.Format(time.DateOnly), err)
	}

	next, degraded := cur.advance(added, newest, t.o.LookBack, t.o.MaxSeen)
	rep.Newest, rep.Degraded = next.newest, degraded
	if degraded {
		t.log.Warn("the activity log dedup set is full; older records are deduplicated by date only",
			"maxSeen", t.o.MaxSeen, "floor", next.floor)
	}
	hints := coalesce(hinted, now)
	rep.Relevant, rep.Hints = len(hinted), len(hints)
	val := next.encode()
	if len(hints) > 0 || t.raw == nil || !slices.Equal(t.raw, val) {
		ch := &state.Change{Hints: hints, Cursors: map[string][]byte{CursorName: val}}
		if err := t.commit(ch); err != nil {
			t.m.PollFailed()
			return rep, fmt.Errorf("%w: committing the activity log cursor and %d hints: %w", ErrStore, len(hints), err)
		}
		rep.Committed = true
	}
	t.cur, t.raw = next, val
	if len(hints) > 0 {
		t.m.HintsQueued(len(hints))
		if t.o.Hinted != nil {
			t.o.Hinted()
		}
	}
	ref := next.newest
	if ref.IsZero() {
		ref = next.floor
	}
	t.m.PollSucceeded(now)
	t.m.CursorLag(now.Sub(ref))
	return rep, nil
}

// load returns the committed cursor: the one in memory, else the stored
// one, else (none, or damaged) a fresh one at the initial look-back, which
// the poll then stores (t.raw nil) even if it finds nothing. What it
// loads stays in memory, so that a failing poll does not read the file
// again, nor move a fresh cursor's floor.
func (t *Tail) load(now time.Time, rep *PollReport) (*cursor, error) {
	if t.cur != nil && !t.cur.floor.After(now) {
		return t.cur, nil
	}
	var raw []byte
	if err := t.o.Store.View(func(r *state.ReadTx) error { raw = r.Cursor(CursorName); return nil }); err != nil {
		return nil, fmt.Errorf("%w: reading the activity log cursor: %w", ErrStore, err)
	}
	fresh := &cursor{floor: now.Add(-t.o.InitialLookBack)}
	if raw == nil {
		t.log.Info("the activity log has no cursor yet; starting from the initial look-back",
			"from", fresh.floor, "initialLookBack", t.o.InitialLookBack)
		t.cur, t.raw = fresh, nil
		return fresh, nil
	}
	c, err := decodeCursor(raw)
	if err == nil && c.floor.After(now) {
		err = damaged("its floor %s is after the clock's %s (was the clock set back?)",
			c.floor.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if err != nil {
		rep.Reset = true
		t.log.Warn("the activity log cursor is damaged; starting again from the initial look-back (records of that window may be hinted twice)",
			"err", err, "from", fresh.floor, "bytes", len(raw))
		t.cur, t.raw = fresh, nil
		return fresh, nil
	}
	t.cur, t.raw = c, raw
	return c, nil
}

// pending is one relevant record's hint, before coalescing.
type pending struct {
	at   time.Time // the record's instant (for order)
	hint state.Hint
}

// maxIDLen bounds a subscription id taken from a record.
const maxIDLen = 128

// plausibleID reports whether id looks like a Partner Center id (GUIDs in
// practice): it becomes part of a request path and of the state file.
func plausibleID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// relevant returns the hint of a new record r (filed at book), or the
// reason it gets none (checked in SkipReasons' order).
func (t *Tail) relevant(r *pc.AuditRecord, book time.Time, rep *PollReport) (pending, string) {
	op := strings.ToLower(strings.TrimSpace(r.OperationType))
	if _, reason := classify(op); reason != "" {
		return pending{}, reason
	}
	if s := strings.ToLower(strings.TrimSpace(r.OperationStatus)); s == "failed" || s == "decline" {
		return pending{}, SkipFailed
	}
	cust := strings.TrimSpace(r.CustomerID)
	if cust == "" {
		return pending{}, SkipNoCustomer
	}
	if !t.o.Known(cust) {
		return pending{}, SkipUnknownCustomer
	}
	actor := &events.Actor{UserPrincipalName: events.Clip(r.UserPrincipalName), ApplicationID: events.Clip(r.ApplicationID),
		OperationType: events.Clip(op), OperationDate: r.OperationDate.T.UTC(), Source: Source}
	h := state.Hint{CustomerID: cust, Origin: Source, Count: 1, Actors: map[string]*events.Actor{}}
	for _, id := range r.SubscriptionIDs() {
		if !plausibleID(id) {
			rep.DroppedSubscriptionIDs++
			h.Overflow = true
			continue
		}
		h.Subscriptions = append(h.Subscriptions, id)
		if len(h.Actors) <= state.MaxHintSubscriptions {
			h.Actors[id] = actor
		}
	}
	if len(h.Subscriptions) == 0 {
		h.Actors[""] = actor
	}
	return pending{at: book, hint: h}, ""
}

// coalesce merges the poll's hints per customer, oldest record first (so
// that each subscription's actor is the latest record's), stamped with
// now as their arrival; sorted by customer id.
func coalesce(ps []pending, now time.Time) []state.Hint {
	slices.SortStableFunc(ps, func(a, b pending) int { return a.at.Compare(b.at) })
	by := map[string]state.Hint{}
	for _, p := range ps {
		n := p.hint
		n.FirstAt, n.LastAt = now, now
		by[n.CustomerID] = by[n.CustomerID].Merge(n)
	}
	out := make([]state.Hint, 0, len(by))
	for _, h := range by {
		h.Seq = 0 // the state file numbers merges; this one is one merge
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b state.Hint) int { return strings.Compare(a.CustomerID, b.CustomerID) })
	return out
}
