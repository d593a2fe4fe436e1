package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the decoder consumers (the notifier)
// use on message bodies: no panics, and anything accepted decodes its data
// or fails with an error.
func FuzzDecode(f *testing.F) {
	d := &Data{CustomerID: "c", SubscriptionID: "s", Old: JSONValue(1), New: JSONValue(2), Delta: new(int),
		After: &View{ID: "s", OfferName: "M365"}, Changes: []Change{{Path: "/quantity", Old: JSONValue(1), New: JSONValue(2)}}}
	_, ev, _ := New("src", SubscriptionQuantityChanged, IDKey{Entity: "subscription/c/s", Revision: 2}, time.Unix(0, 0), d)
	b, _ := json.Marshal(ev)
	f.Add(b)
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"io.pcwatch.ops.cycle-completed","data":{"cycle":{"number":1}}}`))
	f.Add([]byte(`{"specversion":"0.3"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		if ev.ID == "" || ev.Type == "" {
			t.Fatalf("accepted an event without id or type: %s", b)
		}
		_, _ = ev.DecodeData()
	})
}

// FuzzShrinkEvent builds events with fuzzed long values and limits and
// checks what the relay relies on: a shrunk event fits, is a valid event
// with the same id, type, source, subject and time, says what was cut,
// keeps everything else, and is the same bytes every time; an event that
// cannot be shrunk enough is ErrEventTooLarge, never another error.
func FuzzShrinkEvent(f *testing.F) {
	f.Add("Contoso HQ", []byte(`{"a":[1,2,3]}`), uint8(1), uint16(300))
	f.Add(strings.Repeat("é<", 500), []byte(`"`+strings.Repeat("x", 900)+`"`), uint8(3), uint16(2000))
	f.Add("", []byte("12"), uint8(40), uint16(900))
	f.Add(strings.Repeat("\u2026", 200), []byte(`[null,true,"\u003c"]`), uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, name string, value []byte, nChanges uint8, limit uint16) {
		if len(name) > 1<<10 || len(value) > 1<<10 || nChanges > 16 {
			t.Skip() // keeps an execution fast; sizes are not what is explored
		}
		if !json.Valid(value) {
			value = JSONValue(string(value))
		}
		d := &Data{CustomerID: "c", CustomerName: name, SubscriptionID: "s", Revision: 2,
			After: &View{ID: "s", FriendlyName: name, OfferName: name + name}, Old: value, New: value}
		for i := range int(nChanges) {
			d.Changes = append(d.Changes, Change{Path: fmt.Sprintf("/f%d", i), Old: value, New: JSONValue(name)})
		}
		env, ev, err := New("src", SubscriptionUpdated, IDKey{Entity: "subscription/c/s", Revision: 2}, time.Unix(7, 0), d)
		if err != nil {
			t.Skip() // not an event New accepts
		}
		out, cuts, err := ShrinkEvent(env.Body, int(limit))
		if err != nil {
			if !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("shrinking a valid event: %v", err)
			}
			return
		}
		if len(out) > int(limit) && len(out) != len(env.Body) {
			t.Fatalf("%d bytes, limit %d", len(out), limit)
		}
		again, _, _ := ShrinkEvent(env.Body, int(limit))
		if !bytes.Equal(out, again) {
			t.Fatal("not deterministic")
		}
		got, err := Decode(out)
		if err != nil {
			t.Fatalf("shrunk event does not decode: %v", err)
		}
		if got.ID != ev.ID || got.Type != ev.Type || got.Source != ev.Source || got.Subject != ev.Subject || !got.Time.Equal(ev.Time) {
			t.Fatalf("identity changed: %+v", got)
		}
		gd, err := got.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		if len(cuts) != len(gd.Truncated) {
			t.Fatalf("%d cuts returned, %d in data.truncated", len(cuts), len(gd.Truncated))
		}
		// What was not cut is unchanged: compare both as generic JSON
		// with the cut paths (and truncated itself) removed.
		cut := map[string]bool{}
		for _, c := range gd.Truncated {
			if cut[c.Path] || c.Size <= ShrinkKeep || len(c.SHA256) != 64 {
				t.Fatalf("bad or repeated truncation %+v", c)
			}
			cut[c.Path] = true
		}
		var a, b any
		_ = json.Unmarshal(ev.Data, &a)
		_ = json.Unmarshal(got.Data, &b)
		for p := range cut {
			if !removePath(a, p) {
				t.Fatalf("truncated path %s is not in the original data", p)
			}
			removePath(b, p)
		}
		delete(b.(map[string]any), "truncated")
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("values that were not cut changed:\n%v\n%v", a, b)
		}
	})
}

// removePath replaces the value at a JSON Pointer by nil.
func removePath(v any, p string) bool {
	toks := strings.Split(p, "/")[1:]
	for i, tok := range toks {
		last := i == len(toks)-1
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x[tok]; !ok {
				return false
			}
			if last {
				x[tok] = nil
				return true
			}
			v = x[tok]
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 || n >= len(x) {
				return false
			}
			if last {
				x[n] = nil
				return true
			}
			v = x[n]
		default:
			return false
		}
	}
	return false
}

// FuzzShrinkBytes feeds arbitrary bytes to ShrinkEvent: no panics, and
// whatever it returns fits.
func FuzzShrinkBytes(f *testing.F) {
	d := &Data{CustomerID: "c", SubscriptionID: "s", After: &View{ID: "s", FriendlyName: strings.Repeat("n", 400)}}
	env, _, _ := New("src", SubscriptionUpdated, IDKey{Entity: "subscription/c/s", Revision: 1}, time.Unix(0, 0), d)
	f.Add(env.Body, uint16(300))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data":{"x":1}}`), uint16(10))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data":{}} trailing`), uint16(10))
	f.Fuzz(func(t *testing.T, b []byte, limit uint16) {
		out, _, err := ShrinkEvent(b, int(limit))
		if err != nil {
			return
		}
		if len(b) > int(limit) {
			if len(out) > int(limit) {
				t.Fatalf("%d bytes returned for a limit of %d", len(out), limit)
			}
			if _, err := Decode(out); err != nil {
				t.Fatalf("a rewritten event does not decode: %v", err)
			}
		}
	})
}
