package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
)

// Grouping defaults and limits.
const (
	DefaultGroupWait     = 30 * time.Second
	DefaultGroupInterval = 5 * time.Minute
	// maxGroupMembers is how many events one grouped message carries; more
	// wait for the next one (sent at once).
	maxGroupMembers = 100
	// maxGroupBytes bounds the events a group record holds (a KV value
	// must stay under the server's max payload, 1 MB by default).
	maxGroupBytes = 600 << 10
)

// groupLabels are what group_by may name.
var groupLabels = []string{"customer", "type", "route", "partner", "offer"}

// alertGroup is the kind of a group record in AlertsBucket.
const alertGroup = "group"

// groupRecord collects the events of one group on one channel until it is
// sent: at first + group_wait, then at most every group_interval.
type groupRecord struct {
	Kind      string        `json:"kind"` // alertGroup
	Route     string        `json:"route"`
	Labels    []string      `json:"labels"` // label=value, in group_by order
	Members   []groupMember `json:"members"`
	Due       time.Time     `json:"due"`
	LastFlush time.Time     `json:"lastFlush,omitempty"`
	Sent      int           `json:"sent"`            // grouped messages sent so far
	Interval  Duration      `json:"interval"`        // the route's group_interval
	Tries     int           `json:"tries,omitempty"` // failed attempts at the due message
	// Pending are the ids of the events of the message being sent, and
	// PendingID its id (see flushGroup).
	Pending   []string `json:"pending,omitempty"`
	PendingID string   `json:"pendingId,omitempty"`
	// Recent are the ids of the last events sent (at most maxGroupRecent):
	// a redelivery of one of them (its notifier died between adding it
	// and recording it delivered) is not grouped again.
	Recent []string `json:"recent,omitempty"`
	// SentAt is the wall time of the last message: an empty record is
	// kept for recentKeep after it, so that Recent outlives JetStream's
	// redeliveries (wall-clock ack_wait), whatever the calendar.
	SentAt time.Time `json:"sentAt,omitempty"`
}

// recentKeep is how long an empty group record is kept after its last
// message (Recent must cover ack_wait and a stale claim).
const recentKeep = 15 * time.Minute

// maxGroupRecent bounds groupRecord.Recent.
const maxGroupRecent = 500

type groupMember struct {
	ID      string          `json:"id"`
	Subject string          `json:"subject"`
	Body    json.RawMessage `json:"body"`
}

func (g *groupRecord) size() int {
	n := 0
	for _, m := range g.Members {
		n += len(m.Body) + len(m.Subject) + len(m.ID)
	}
	return n
}

// groupValues are the label values of an event for group_by.
func groupValues(by []string, route string, ev *events.Event, d *events.Data) []string {
	var out []string
	for _, l := range by {
		var v string
		switch l {
		case "customer":
			v = d.CustomerID
		case "type":
			v = shortType(ev.Type)
		case "route":
			v = route
		case "partner", "offer":
			for _, vw := range []*events.View{d.After, d.Before} {
				if vw == nil {
					continue
				}
				if l == "partner" && vw.PartnerID != "" {
					v = vw.PartnerID
					break
				}
				if l == "offer" && vw.OfferName != "" {
					v = vw.OfferName
					break
				}
			}
		}
		out = append(out, l+"="+v)
	}
	return out
}

func groupKey(channel, route string, labels []string) (key, token string) {
	h := sha256.New()
	h.Write([]byte(route))
	for _, l := range labels {
		h.Write([]byte{0})
		h.Write([]byte(l))
	}
	token = "g-" + hex.EncodeToString(h.Sum(nil)[:10])
	return channel + "." + token, token
}

// groupable says whether an event may wait for its group: a deadline
// warning whose deadline is closer than group_wait (plus a margin) is
// sent alone at once.
func groupable(ev *events.Event, d *events.Data, now time.Time, wait time.Duration) bool {
	if _, open := openWarning(ev, d, now); open && d.Deadline.Sub(now) < 2*wait+time.Minute {
		return false
	}
	return true
}

// enqueue adds the event to its group record (compare-and-set; an event
// already in it is not added twice) and says when the group is due.
func (r *channelRunner) enqueue(ctx context.Context, ev *events.Event, d *events.Data, subject string, body []byte, opt routeOptions) error {
	labels := groupValues(opt.groupBy, opt.route, ev, d)
	key, _ := groupKey(r.name, opt.route, labels)
	now := r.clk.Now()
	for range 10 {
		var g groupRecord
		var rev uint64
		e, err := r.akv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("reading group %s in %s: %w", key, AlertsBucket, err)
		default:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &g) != nil || g.Kind != alertGroup {
				g = groupRecord{} // unreadable: start it again
			}
		}
		if g.Kind == "" {
			g = groupRecord{Kind: alertGroup, Route: opt.route, Labels: labels}
		}
		g.Interval = Duration(opt.groupInterval)
		if slices.ContainsFunc(g.Members, func(m groupMember) bool { return m.ID == ev.ID }) || slices.Contains(g.Recent, ev.ID) {
			return nil
		}
		if len(g.Members) == 0 {
			// A new batch: group_wait after its first event, but not before
			// group_interval after the last message.
			g.Due = now.Add(opt.groupWait)
			if !g.LastFlush.IsZero() {
				g.Due = maxTime(g.Due, g.LastFlush.Add(opt.groupInterval))
			}
		}
		g.Members = append(g.Members, groupMember{ID: ev.ID, Subject: subject, Body: body})
		if len(g.Members) >= maxGroupMembers || g.size() >= maxGroupBytes {
			g.Due = now // full: send it now
		}
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		var nrev uint64
		if rev == 0 {
			nrev, err = r.akv.Create(ctx, key, b)
		} else {
			nrev, err = r.akv.Update(ctx, key, b, rev)
		}
		if err == nil {
			r.alerts.mu.Lock()
			r.alerts.recs[key] = cachedAlert{group: &g, rev: nrev, rec: alertRecord{Kind: alertGroup, Due: g.Due}}
			r.alerts.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("writing group %s in %s: %w", key, AlertsBucket, err)
		}
	}
	return fmt.Errorf("writing group %s in %s: too many concurrent changes", key, AlertsBucket)
}

// flushGroup sends what a due group holds as one message, then removes
// those events from the record.
func (r *channelRunner) flushGroup(ctx context.Context, key string, g groupRecord, rev uint64) {
	now := r.clk.Now()
	r.log.Debug("flush", "key", key, "rev", rev, "members", len(g.Members), "due", g.Due)
	if len(g.Members) == 0 {
		if now.Sub(g.LastFlush) >= g.Interval.D() && time.Since(g.SentAt) >= recentKeep {
			_, _ = r.casAlert(ctx, key, nil, rev)
			return
		}
		g.Due = maxTime(g.LastFlush.Add(g.Interval.D()), now.Add(g.Interval.D()))
		r.casGroup(ctx, key, &g, rev)
		return
	}
	// Two steps, so that a message is never sent with other events than
	// the first time: the batch and its id are written to the record
	// (Pending) before the send, and removed after it. A failure anywhere
	// between leaves Pending: the next round sends exactly that batch
	// again under the same id (its claim makes it a duplicate if the
	// receiver had it).
	if g.PendingID == "" {
		n := min(len(g.Members), maxGroupMembers)
		_, token := groupKey(r.name, g.Route, g.Labels)
		h := sha256.New()
		g.Pending = nil
		for _, m := range g.Members[:n] {
			g.Pending = append(g.Pending, m.ID)
			h.Write([]byte(m.ID))
			h.Write([]byte{0})
		}
		g.PendingID = token + "-" + hex.EncodeToString(h.Sum(nil)[:10])
		nrev, ok := r.casGroup(ctx, key, &g, rev)
		if !ok {
			return // changed meanwhile: the next round
		}
		rev = nrev
	}
	pending := map[string]bool{}
	for _, id := range g.Pending {
		pending[id] = true
	}
	var batch []groupMember
	for _, m := range g.Members {
		if pending[m.ID] {
			batch = append(batch, m)
		}
	}
	id := g.PendingID
	log := r.log.With("group", strings.Join(g.Labels, ","), "route", g.Route, "events", len(batch))
	if len(batch) > 0 {
		if err := r.sendGroup(ctx, id, g, batch); err != nil {
			g.Tries++
			delay := retryDelay(g.Tries, asSendError(r.name, err), r.cfg.Delivery.RetryInitial.D(), r.cfg.Delivery.RetryMax.D(), r.rnd())
			if g.Tries < r.cfg.Delivery.MaxAttempts {
				log.Warn("grouped message not sent; will retry", "err", err, "retry_in", delay)
				g.Due = now.Add(delay)
				r.casGroup(ctx, key, &g, rev)
				return
			}
			log.Error("grouped message not sent after max_attempts; its events are dropped from the group", "err", err)
			r.m.failures.WithLabelValues(r.name, "group").Inc()
		} else {
			log.Info("grouped message sent", "id", id)
			for _, m := range batch {
				r.finish(m.ID, ResultDelivered)
			}
			r.openGrouped(ctx, batch)
		}
	}
	// Remove what was sent, on whatever the record holds now (events may
	// have joined meanwhile). Not written (NATS away): Pending stays, and
	// the next round finishes it without sending anything new.
	for range 10 {
		if g.PendingID != id {
			return // someone else finished it
		}
		g.Members = slices.DeleteFunc(g.Members, func(m groupMember) bool { return pending[m.ID] })
		g.Recent = append(g.Recent, g.Pending...)
		g.Recent = g.Recent[max(0, len(g.Recent)-maxGroupRecent):]
		g.Pending, g.PendingID, g.SentAt = nil, "", time.Now()
		g.Sent++
		g.Tries = 0
		g.LastFlush = now
		g.Due = now.Add(g.Interval.D())
		if len(g.Members) > 0 && len(g.Members) >= maxGroupMembers {
			g.Due = now
		}
		if _, ok := r.casGroup(ctx, key, &g, rev); ok {
			return
		}
		r.alerts.mu.Lock()
		c, ok := r.alerts.recs[key]
		r.alerts.mu.Unlock()
		if !ok || c.group == nil {
			return
		}
		g, rev = *c.group, c.rev
	}
}

// casGroup writes a group record over revision rev and returns the new
// revision; false when it could not (changed meanwhile, or NATS away: the
// cache then holds what the bucket has, if it could be read).
func (r *channelRunner) casGroup(ctx context.Context, key string, g *groupRecord, rev uint64) (uint64, bool) {
	b, _ := json.Marshal(g)
	nrev, err := r.akv.Update(ctx, key, b, rev)
	if err != nil {
		r.reloadAlert(ctx, key)
		if !isWrongSequence(err) && !errors.Is(err, jetstream.ErrKeyExists) {
			r.log.Warn("could not update a group", "key", key, "err", err)
		}
		return 0, false
	}
	cp := *g
	r.alerts.mu.Lock()
	r.alerts.recs[key] = cachedAlert{group: &cp, rev: nrev, rec: alertRecord{Kind: alertGroup, Due: g.Due}}
	r.alerts.mu.Unlock()
	return nrev, true
}

// openGrouped opens the alerts of the deadline warnings a grouped message
// carried, for their reminders and resolution.
func (r *channelRunner) openGrouped(ctx context.Context, batch []groupMember) {
	now := r.clk.Now()
	for _, m := range batch {
		ev, d, err := decodeEvent(m.Body)
		if err != nil {
			continue
		}
		if f, open := openWarning(ev, d, now); open {
			if err := r.opened(ctx, ev, d, f, m.Subject, m.Body, r.cfg.routeOptions(ev, d, r.name)); err != nil {
				r.log.Warn("grouped warning delivered, but its reminders could not be scheduled", "event_id", ev.ID, "err", err)
			}
		}
	}
}

// sendGroup sends a group's message once per channel (sendOnce).
func (r *channelRunner) sendGroup(ctx context.Context, id string, g groupRecord, batch []groupMember) error {
	return r.sendOnce(ctx, id, "group", func() (*notification, error) { return r.groupNotification(id, g, batch) })
}

// GroupRow is one event of a grouped message, as templates see it
// (.Group).
type GroupRow struct {
	Title    string // the event's own rendered title
	Type     string // e.g. subscription.renewal-approaching
	Customer string
	Product  string
	Detail   string // old -> new, or the deadline and time left
	ID       string // event id
}

// groupNotification renders a grouped message: the first event's template
// data with a title and text about the group, and one row per event.
func (r *channelRunner) groupNotification(id string, g groupRecord, batch []groupMember) (*notification, error) {
	var evs []*events.Event
	var rows []GroupRow
	var bodies [][]byte
	counts := map[string]int{}
	var first *TemplateData
	worst := "info"
	rank := map[string]int{"info": 0, "warning": 1, "critical": 2}
	for _, m := range batch {
		ev, d, err := decodeEvent(m.Body)
		if err != nil {
			continue // enqueued after decoding: cannot happen
		}
		td, err := renderMessage(ev, d, r.cfg.overrides, r.name)
		if err != nil {
			return nil, &SendError{Channel: r.name, Reason: ReasonRender, Permanent: true, Err: err}
		}
		if first == nil {
			first = td
		}
		if rank[td.Severity] > rank[worst] {
			worst = td.Severity
		}
		detail := td.Old + " -> " + td.New
		if td.Deadline != "" {
			detail = td.Deadline + " (" + td.Remaining + " left)"
		} else if td.Old == "" && td.New == "" {
			detail = ""
		}
		rows = append(rows, GroupRow{Title: td.Title, Type: td.Type, Customer: td.CustomerName, Product: td.Product, Detail: detail, ID: ev.ID})
		counts[td.Type]++
		evs = append(evs, ev)
		bodies = append(bodies, m.Body)
	}
	if first == nil {
		return nil, &SendError{Channel: r.name, Reason: ReasonUndecodable, Permanent: true, Err: errors.New("no decodable event in the group")}
	}
	td := *first
	var kinds []string
	for t, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s x%d", t, n))
	}
	sort.Strings(kinds)
	var about []string
	for _, l := range g.Labels {
		name, v, _ := strings.Cut(l, "=")
		if name == "customer" {
			v = first.CustomerName
		}
		if v != "" && name != "route" {
			about = append(about, v)
		}
	}
	td.Title = truncate(maxTitle, fmt.Sprintf("%d events%s", len(rows), prefixed(": ", strings.Join(about, ", "))))
	td.Text = strings.Join(kinds, ", ")
	td.Severity, td.Group, td.Changes, td.MoreChanges, td.Facts = worst, rows, nil, 0, nil
	td.ID = id
	td.Footer = fmt.Sprintf("pcwatch · %d events grouped by %s · %s", len(rows), strings.Join(g.Labels, ", "), id)
	// The webhook and NATS body: a CloudEvents JSON batch.
	batchBody := append([]byte{'['}, bytes.Join(bodies, []byte{','})...)
	batchBody = append(batchBody, ']')
	return &notification{Event: evs[0], Body: batchBody, Message: &td, ID: id, Group: evs, Attempt: g.Tries + 1}, nil
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
