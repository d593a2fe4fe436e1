package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Oversized events.
//
// NATS refuses a message larger than the server's max_payload (1 MiB by
// default) and JetStream one larger than the stream's max_msg_size. A
// Partner Center entity can carry a field of any size, and a change event
// carries it up to three times (after, changes[].old, changes[].new). The
// relay (package relay) is the only place that knows the limit in force (it
// can differ between servers, and change at a reconnect), so it fits such
// an event at publish time: ShrinkEvent first, and when that is not enough
// an ops.event-dropped notice (DroppedNotice) in its place. The outbox
// keeps the event as committed.
//
// What a shrunk event and a notice look like (data.truncated, the
// ops.event-dropped type, their ids) is part of the event contract, which
// is why both builders live here and not in the relay: consumers rely on
// the same rules that docs/events.md states.

// ShrinkKeep is how many bytes of a cut string ShrinkEvent keeps (then "…").
const ShrinkKeep = 128

const (
	ellipsis = "…"
	// noticeClip bounds the strings of an ops.event-dropped notice.
	noticeClip = 256
	// fallbackSource is the source of a notice for a record whose body is
	// not an event (the state file's checksums make that a bug).
	fallbackSource = "urn:pcwatch:relay"
)

// ShrinkEvent fits body, a pcwatch CloudEvent in structured JSON mode, into
// limit bytes. A body that fits is returned unchanged. Otherwise values of
// data are cut, the ones that save the most first, until the event fits,
// and data.truncated lists each cut (see Truncation): long strings keep
// their first ShrinkKeep bytes; other values (changes[].old/new, old/new)
// become {"size": n, "sha256": "..."}. Ids, paths, types, times and every
// attribute of the envelope are never cut, so the event keeps its id and
// its subjects.
//
// ShrinkEvent is deterministic (the same body and limit give the same
// bytes), which, with the kept id, lets JetStream's duplicate window and
// the relay's start-up check recognise a republish. It returns
// ErrEventTooLarge when the event cannot be made small enough, and an error
// wrapping ErrNotCloudEvent when body is not an event it can rewrite
// (attributes or data members it does not know would be lost).
func ShrinkEvent(body []byte, limit int) ([]byte, []Truncation, error) {
	if len(body) <= limit {
		return body, nil, nil
	}
	var ev Event
	if err := strictUnmarshal(body, &ev); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotCloudEvent, err)
	}
	if err := ev.check(); err != nil {
		return nil, nil, err
	}
	var d Data
	if err := strictUnmarshal(ev.Data, &d); err != nil {
		return nil, nil, fmt.Errorf("%w: data: %v", ErrNotCloudEvent, err)
	}
	encode := func() ([]byte, error) {
		data, err := json.Marshal(&d)
		if err != nil {
			return nil, err
		}
		ev.Data = data
		return json.Marshal(&ev)
	}
	cuts := candidates(&d)
	order := make(map[string]int, len(cuts))
	for _, c := range cuts {
		order[c.entry.Path] = c.order
	}
	// The most saving first; document order breaks ties.
	slices.SortStableFunc(cuts, func(a, b cut) int { return b.saving - a.saving })
	prior := len(d.Truncated)
	// Exact for what json.Marshal wrote (pcwatch's events); the result is
	// measured anyway.
	estimate := len(body) + len(`,"truncated":[]`)
	var (
		out []byte
		err error
	)
	applied := 0
	apply := func(c cut) {
		c.apply()
		d.Truncated = append(d.Truncated, c.entry)
		estimate -= c.saving
		applied++
	}
	for _, c := range cuts {
		if estimate <= limit {
			break
		}
		apply(c)
	}
	for {
		if applied > 0 || len(cuts) == 0 {
			// Entries in document order, after any the event already had.
			slices.SortStableFunc(d.Truncated[prior:], func(a, b Truncation) int { return order[a.Path] - order[b.Path] })
			if out, err = encode(); err != nil {
				return nil, nil, fmt.Errorf("%w: %v", ErrNotCloudEvent, err)
			}
			if len(out) <= limit {
				return out, d.Truncated[prior:], nil
			}
		}
		if applied == len(cuts) {
			return nil, nil, fmt.Errorf("%w: %d bytes with every long value cut, limit %d", ErrEventTooLarge, len(out), limit)
		}
		// The estimate was short (it is exact for what pcwatch emits):
		// cut one more and measure again.
		apply(cuts[applied])
	}
}

// cut is one value ShrinkEvent may replace.
type cut struct {
	order  int // document order
	saving int // bytes saved, the truncated entry and its comma deducted
	entry  Truncation
	apply  func()
}

// candidates lists the values of d that may be cut and would save bytes,
// in document order.
func candidates(d *Data) []cut {
	var out []cut
	done := map[string]bool{}
	for _, t := range d.Truncated {
		done[t.Path] = true
	}
	add := func(path string, origLen, replLen int, t Truncation, apply func()) {
		t.Path = path
		saving := origLen - replLen - (jsonLen(t) + 1)
		if saving <= 0 || done[path] {
			return
		}
		out = append(out, cut{order: len(out), saving: saving, entry: t, apply: apply})
	}
	str := func(path string, p *string) {
		s := *p
		if len(s) <= ShrinkKeep+len(ellipsis) {
			return
		}
		c := cutString(s)
		add(path, jsonLen(s), jsonLen(c), digest([]byte(s)), func() { *p = c })
	}
	raw := func(path string, p *json.RawMessage) {
		if len(*p) == 0 {
			return
		}
		enc, err := json.Marshal(*p) // as it appears in the event
		if err != nil {
			return
		}
		if enc[0] == '"' {
			var s string
			if json.Unmarshal(enc, &s) != nil || len(s) <= ShrinkKeep+len(ellipsis) {
				return
			}
			c, _ := json.Marshal(cutString(s))
			add(path, len(enc), len(c), digest([]byte(s)), func() { *p = c })
			return
		}
		t := digest(enc)
		stub, _ := json.Marshal(struct {
			Size   int    `json:"size"`
			SHA256 string `json:"sha256"`
		}{t.Size, t.SHA256})
		add(path, len(enc), len(stub), t, func() { *p = stub })
	}
	view := func(prefix string, v *View) {
		if v == nil {
			return
		}
		rv := reflect.ValueOf(v).Elem()
		for i := range rv.NumField() {
			f := rv.Type().Field(i)
			name, _, _ := bytes.Cut([]byte(f.Tag.Get("json")), []byte(","))
			if f.Type.Kind() != reflect.String || string(name) == "id" {
				continue
			}
			str(prefix+"/"+string(name), rv.Field(i).Addr().Interface().(*string))
		}
	}
	str("/customerName", &d.CustomerName)
	view("/after", d.After)
	view("/before", d.Before)
	for i := range d.Changes {
		p := "/changes/" + strconv.Itoa(i)
		raw(p+"/old", &d.Changes[i].Old)
		raw(p+"/new", &d.Changes[i].New)
	}
	raw("/old", &d.Old)
	raw("/new", &d.New)
	if d.Failure != nil {
		str("/failure/lastError", &d.Failure.LastError)
	}
	return out
}

// cutString keeps the first ShrinkKeep bytes of s, ending on a character
// boundary, and marks the cut.
func cutString(s string) string {
	n := min(ShrinkKeep, len(s))
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ellipsis
}

func digest(b []byte) Truncation {
	h := sha256.Sum256(b)
	return Truncation{Size: len(b), SHA256: hex.EncodeToString(h[:])}
}

func jsonLen(v any) int {
	b, _ := json.Marshal(v)
	return len(b)
}

// strictUnmarshal decodes one JSON value into v, refusing members v does
// not have (rewriting would lose them) and trailing data.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// DroppedNotice builds the ops.event-dropped event published instead of
// rec, an outbox record whose message (size bytes, headers included) does
// not fit limit even shrunk. The notice keeps rec's source, time, customer
// and entity (so it takes rec's place in the order of that entity's
// events); its id derives from rec's id, so a republish is recognised like
// any other. Strings of the notice are cut to 256 bytes, so it is small
// whatever rec holds.
func DroppedNotice(rec Envelope, size, limit int) (Envelope, error) {
	type header struct {
		Source string    `json:"source"`
		Type   string    `json:"type"`
		Time   time.Time `json:"time"`
		Data   struct {
			CustomerID   string `json:"customerId"`
			CustomerName string `json:"customerName"`
		} `json:"data"`
	}
	var head header
	if err := json.Unmarshal(rec.Body, &head); err != nil {
		head = header{}
	}
	source, at := head.Source, head.Time
	if source == "" || len(source) > 4*noticeClip {
		source = fallbackSource
	}
	if at.IsZero() {
		at = time.Now() // only for a body that is not an event
	}
	d := &Data{CustomerName: Clip(head.Data.CustomerName), Dropped: &DroppedEvent{
		ID: Clip(rec.ID), Type: Type(Clip(head.Type)), Subject: Clip(rec.Subject), Entity: Clip(rec.Entity), Size: size, Limit: limit}}
	if len(head.Data.CustomerID) <= noticeClip {
		d.CustomerID = head.Data.CustomerID
	}
	if d.CustomerID == "" {
		d.CustomerName = ""
	}
	env, _, err := New(source, OpsEventDropped, IDKey{Entity: "ops/event-dropped", Extra: rec.ID}, at, d)
	if err != nil {
		return Envelope{}, err
	}
	env.Entity = rec.Entity
	return env, nil
}

// Clip bounds s as an ops.event-dropped notice bounds its strings: at most
// 256 bytes, cut on a character boundary and marked with "…". The relay
// bounds what it logs of an event's subject and entity the same way.
func Clip(s string) string {
	if len(s) <= noticeClip {
		return s
	}
	n := noticeClip
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ellipsis
}
