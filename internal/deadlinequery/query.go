// Package deadlinequery is the NATS request/reply query of the watcher's
// open deadlines: what the notifier's scheduled digests show. The notifier
// usually runs on another host than the watcher and NATS is the bus they
// share, so the watcher answers on Subject (internal/watcher's query
// actor) and the notifier asks with Fetch.
//
// The request and the reply are JSON. A request names a window (what
// closes within the next N, from the watcher's clock) and optional filters;
// the reply is one page of deadlines, soonest first, with the total that
// matched and a cursor to the next page. A page is bounded (MaxLimit rows,
// each string field cut to MaxFieldLen) so that a reply stays well under
// NATS's maximum payload, and the watcher keeps at most a page or two of
// rows in memory while it scans the state file. Every request is hostile
// input: DecodeRequest bounds its size and checks every field, and a
// refused request is answered with an error reply, never with silence.
package deadlinequery

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Subject is where the watcher answers deadline queries. It is outside
// the event stream's subjects (pcwatch.events.>, pcwatch.ops.>): a query
// is never stored.
const Subject = "pcwatch.query.deadlines"

// Limits of a request and of a reply.
const (
	// MaxRequestBytes bounds a request's JSON.
	MaxRequestBytes = 16 << 10
	// MaxLimit is the most rows a page holds; DefaultLimit is a page's
	// size when the request gives no limit.
	MaxLimit     = 500
	DefaultLimit = MaxLimit
	// MaxWithin is the longest window: three years (the longest NCE
	// term), plus leap days.
	MaxWithin = 3 * 366 * 24 * time.Hour
	// MaxFilterValues bounds the values of each filter.
	MaxFilterValues = 256
	// MaxValueLen bounds one filter value (an id, a glob).
	MaxValueLen = 256
	// MaxFieldLen bounds the names a row carries (customer, offer): a
	// friendly name from Partner Center may be huge.
	MaxFieldLen = 256
	// MaxReplyBytes is what the watcher keeps a reply under (less when
	// the server's max_payload is smaller).
	MaxReplyBytes = 512 << 10
	maxCursorLen  = 1024
)

// Request asks for the open deadlines closing within Within of the
// watcher's clock. The filters are ANDed, the values of one filter ORed;
// an empty filter matches every deadline.
type Request struct {
	// Within is a Go duration ("168h"), required, at most MaxWithin.
	Within string `json:"within"`
	// Kinds are deadline rule names: cancellation, refund, renewal, trial
	// (see deadline.Rules).
	Kinds []string `json:"kinds,omitempty"`
	// Types are globs (path.Match) on the deadline's event type without
	// "io.pcwatch.", e.g. "subscription.*-window-closing": the notifier's
	// match.types.
	Types []string `json:"types,omitempty"`
	// Customers are customer ids; PartnerIDs reseller MPN ids.
	Customers  []string `json:"customers,omitempty"`
	PartnerIDs []string `json:"partnerIds,omitempty"`
	// Offers are globs (path.Match) on the offer name.
	Offers []string `json:"offers,omitempty"`
	// Limit is the page size, 1 to MaxLimit; 0 means DefaultLimit.
	Limit int `json:"limit,omitempty"`
	// Cursor is a reply's Next: the page after it, in the same window.
	Cursor string `json:"cursor,omitempty"`
}

// Deadline is one open deadline, as `watcher deadlines` lists it.
type Deadline struct {
	CustomerID     string `json:"customerId"`
	CustomerName   string `json:"customerName"`
	SubscriptionID string `json:"subscriptionId"`
	Offer          string `json:"offer"`
	PartnerID      string `json:"partnerId,omitempty"`
	Kind           string `json:"kind"` // the deadline rule's name
	// Type is the event type the deadline's warnings have, without
	// "io.pcwatch." (subscription.refund-window-closing).
	Type      string    `json:"type"`
	ClosesAt  time.Time `json:"closesAt"`
	InSeconds int64     `json:"inSeconds"`
	Quantity  int       `json:"quantity,omitempty"`
	AutoRenew *bool     `json:"autoRenewEnabled,omitempty"`
}

// Reply is one page of the answer, or an error.
type Reply struct {
	// AsOf is the watcher's clock when the window began (the first
	// page's); Until the window's end, the same on every page.
	AsOf  time.Time `json:"asOf"`
	Until time.Time `json:"until"`
	// Deadlines are this page's rows, soonest first.
	Deadlines []Deadline `json:"deadlines"`
	// Total counts every deadline of the window that matched the
	// filters, on all pages.
	Total int `json:"total"`
	// Next is the cursor of the next page; empty on the last.
	Next string `json:"next,omitempty"`
	// Warnings say the list may be incomplete: records of the state
	// file that could not be read (they are named).
	Warnings []string `json:"warnings,omitempty"`
	// Error is set when the request was refused or could not be
	// answered; the other fields are then empty.
	Error *Error `json:"error,omitempty"`
}

// Error codes of a reply.
const (
	CodeBadRequest  = "bad_request" // malformed, too large, a field out of bounds: do not retry as is
	CodeUnavailable = "unavailable" // the state file could not be read: retry later
)

// Error is a refused or failed query.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "deadline query: " + e.Code + ": " + e.Message }

// Temporary reports whether asking again may succeed.
func (e *Error) Temporary() bool { return e.Code != CodeBadRequest }

// Query is a decoded, checked request.
type Query struct {
	Within     time.Duration
	Kinds      []string
	Types      []string
	Customers  []string
	PartnerIDs []string
	Offers     []string
	Limit      int
	// After is the cursor's position (nil: the first page), Until the
	// window's end the cursor carries (zero: now + Within).
	After *Key
	Until time.Time
	AsOf  time.Time
}

// Key orders deadlines: by closing time, then customer, subscription and
// kind. Pages follow one another in this order.
type Key struct {
	At           time.Time `json:"t"`
	Customer     string    `json:"c"`
	Subscription string    `json:"s"`
	Kind         string    `json:"k"`
}

// KeyOf is d's position.
func KeyOf(d Deadline) Key {
	return Key{At: d.ClosesAt, Customer: d.CustomerID, Subscription: d.SubscriptionID, Kind: d.Kind}
}

// Less orders keys.
func (k Key) Less(o Key) bool {
	if !k.At.Equal(o.At) {
		return k.At.Before(o.At)
	}
	if k.Customer != o.Customer {
		return k.Customer < o.Customer
	}
	if k.Subscription != o.Subscription {
		return k.Subscription < o.Subscription
	}
	return k.Kind < o.Kind
}

// cursor is what Reply.Next encodes: the last row's key and the window.
type cursor struct {
	After Key       `json:"a"`
	AsOf  time.Time `json:"o"`
	Until time.Time `json:"u"`
}

// EncodeCursor is the Next of a page whose last row is last.
func EncodeCursor(last Key, asOf, until time.Time) string {
	b, _ := json.Marshal(cursor{After: last, AsOf: asOf.UTC(), Until: until.UTC()})
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeRequest reads and checks a request; kinds are the rule names the
// watcher knows. Its errors say which field is wrong and why, in one line
// that never repeats more than a few bytes of the input.
func DecodeRequest(b []byte, kinds []string) (*Query, error) {
	if len(b) > MaxRequestBytes {
		return nil, fmt.Errorf("the request is %d bytes, more than the %d allowed", len(b), MaxRequestBytes)
	}
	var r Request
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("not a deadline query (JSON object with within, kinds, types, customers, partnerIds, offers, limit, cursor): %s", clip(err.Error()))
	}
	if dec.More() {
		return nil, errors.New("not a deadline query: data after the JSON object")
	}
	q := &Query{Limit: r.Limit}
	if r.Within == "" {
		return nil, errors.New(`within: missing: say how far ahead to look, e.g. "168h"`)
	}
	w, err := time.ParseDuration(r.Within)
	if err != nil || w <= 0 || w > MaxWithin {
		return nil, fmt.Errorf("within: want a positive Go duration of at most %s, got %q", MaxWithin, clip(r.Within))
	}
	q.Within = w
	switch {
	case r.Limit == 0:
		q.Limit = DefaultLimit
	case r.Limit < 0 || r.Limit > MaxLimit:
		return nil, fmt.Errorf("limit: want 1 to %d, got %d", MaxLimit, r.Limit)
	}
	for _, f := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"kinds", r.Kinds, &q.Kinds}, {"types", r.Types, &q.Types}, {"customers", r.Customers, &q.Customers}, {"partnerIds", r.PartnerIDs, &q.PartnerIDs}, {"offers", r.Offers, &q.Offers}} {
		if len(f.in) > MaxFilterValues {
			return nil, fmt.Errorf("%s: %d values, more than the %d allowed", f.name, len(f.in), MaxFilterValues)
		}
		for i, v := range f.in {
			if v == "" || len(v) > MaxValueLen || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
				return nil, fmt.Errorf("%s[%d]: want a non-empty value of at most %d bytes without control characters", f.name, i, MaxValueLen)
			}
			switch f.name {
			case "kinds":
				if !slices.Contains(kinds, v) {
					return nil, fmt.Errorf("kinds[%d]: unknown deadline kind %q (known: %s)", i, clip(v), strings.Join(kinds, ", "))
				}
			case "offers", "types":
				if _, err := path.Match(v, ""); err != nil {
					return nil, fmt.Errorf("%s[%d]: bad glob %q: %v", f.name, i, clip(v), err)
				}
			}
		}
		*f.out = f.in
	}
	if r.Cursor != "" {
		c, err := decodeCursor(r.Cursor)
		if err != nil {
			return nil, fmt.Errorf("cursor: %v (pass a reply's next as it is)", err)
		}
		q.After, q.AsOf, q.Until = &c.After, c.AsOf, c.Until
	}
	return q, nil
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	if len(s) > maxCursorLen {
		return c, fmt.Errorf("longer than %d bytes", maxCursorLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, errors.New("not a cursor")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Until.IsZero() || c.AsOf.IsZero() || c.Until.Before(c.AsOf) || c.After.At.IsZero() {
		return c, errors.New("not a cursor")
	}
	return c, nil
}

// Matches reports whether d passes q's filters (not the window).
func (q *Query) Matches(d Deadline) bool {
	if len(q.Kinds) > 0 && !slices.Contains(q.Kinds, d.Kind) {
		return false
	}
	if len(q.Types) > 0 && !slices.ContainsFunc(q.Types, func(g string) bool {
		ok, _ := path.Match(g, d.Type)
		return ok
	}) {
		return false
	}
	if len(q.Customers) > 0 && !slices.Contains(q.Customers, d.CustomerID) {
		return false
	}
	if len(q.PartnerIDs) > 0 && !slices.Contains(q.PartnerIDs, d.PartnerID) {
		return false
	}
	if len(q.Offers) > 0 && !slices.ContainsFunc(q.Offers, func(g string) bool {
		ok, _ := path.Match(g, d.Offer)
		return ok
	}) {
		return false
	}
	return true
}

func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return "…"
}

// Cut shortens s to at most MaxFieldLen bytes, on a rune boundary.
func Cut(s string) string {
	if len(s) <= MaxFieldLen {
		return s
	}
	i := MaxFieldLen - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// Requester is what Fetch needs of a NATS connection.
type Requester interface {
	RequestWithContext(ctx context.Context, subj string, data []byte) (*nats.Msg, error)
}

// Result is every page of an answer, up to a maximum of rows.
type Result struct {
	AsOf, Until time.Time
	Deadlines   []Deadline
	Total       int
	Warnings    []string
}

// ErrNoWatcher says nobody answers on Subject: the watcher is not running,
// or not connected to this NATS server.
var ErrNoWatcher = errors.New("no watcher answers deadline queries on " + Subject + " (is the watcher running, on the same NATS server?)")

// Fetch asks the watcher for r's deadlines, following cursors until it
// has maxRows rows (0: every row) or the last page; Total still counts
// every match. An *Error is the watcher refusing or failing the query.
func Fetch(ctx context.Context, nc Requester, r Request, maxRows int) (*Result, error) {
	res := &Result{}
	if maxRows > 0 && (r.Limit == 0 || r.Limit > maxRows) {
		r.Limit = min(maxRows, MaxLimit)
	}
	for page := 0; ; page++ {
		body, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		m, err := nc.RequestWithContext(ctx, Subject, body)
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, ErrNoWatcher
		}
		if err != nil {
			return nil, fmt.Errorf("asking the watcher for deadlines on %s: %w", Subject, err)
		}
		var rep Reply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			return nil, fmt.Errorf("the watcher's answer on %s is not a deadline reply: %s", Subject, clip(err.Error()))
		}
		if rep.Error != nil {
			return nil, rep.Error
		}
		if page == 0 {
			res.AsOf, res.Until, res.Total = rep.AsOf, rep.Until, rep.Total
		}
		res.Warnings = append(res.Warnings, rep.Warnings...)
		res.Deadlines = append(res.Deadlines, rep.Deadlines...)
		if maxRows > 0 && len(res.Deadlines) >= maxRows {
			res.Deadlines = res.Deadlines[:maxRows]
			break
		}
		if rep.Next == "" || len(rep.Deadlines) == 0 {
			break
		}
		r.Cursor = rep.Next
	}
	slices.Sort(res.Warnings)
	res.Warnings = slices.Compact(res.Warnings)
	return res, nil
}
