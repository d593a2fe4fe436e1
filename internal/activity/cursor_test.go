package activity

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var c0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func ent(at time.Time, dedup string) entry { return entry{at: at.UnixNano(), key: keyOf(dedup)} }

func sample() *cursor {
	c := &cursor{newest: c0.Add(time.Hour), floor: c0.Add(-24 * time.Hour)}
	for i := range 5 {
		c.seen = append(c.seen, ent(c0.Add(time.Duration(i)*time.Minute), fmt.Sprint("id:", i)))
	}
	slices.SortFunc(c.seen, compareEntries)
	return c
}

func equalCursors(a, b *cursor) bool {
	return a.newest.Equal(b.newest) && a.floor.Equal(b.floor) && slices.Equal(a.seen, b.seen)
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []*cursor{sample(), {floor: c0}, {floor: c0, newest: c0.Add(time.Nanosecond)}} {
		b := c.encode()
		got, err := decodeCursor(b)
		if err != nil {
			t.Fatalf("decode(%s): %v", b, err)
		}
		if !equalCursors(got, c) {
			t.Errorf("round trip of %s changed it: %+v, was %+v", b, got, c)
		}
		if !bytes.Equal(got.encode(), b) {
			t.Errorf("re-encoding differs:\n%s\n%s", got.encode(), b)
		}
	}
}

// raw builds a seen field from (time, key byte) pairs.
func raw(pairs ...any) string {
	var b []byte
	for i := 0; i+1 < len(pairs); i += 2 {
		b = binary.BigEndian.AppendUint64(b, uint64(pairs[i].(time.Time).UnixNano()))
		b = append(b, bytes.Repeat([]byte{pairs[i+1].(byte)}, keyLen)...)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestDecodeCursorRefusesDamage(t *testing.T) {
	floor := `"floor":"2026-03-01T00:00:00Z"`
	in := c0
	for _, tc := range []struct{ name, json, want string }{
		{"empty", ``, "does not decode"},
		{"not json", `garbage`, "does not decode"},
		{"null", `null`, "version 0"},
		{"array", `[]`, "does not decode"},
		{"trailing data", `{"version":1,` + floor + `,"seen":""} {}`, "data follows"},
		{"unknown field", `{"version":1,` + floor + `,"seen":"","extra":1}`, "does not decode"},
		{"version 0", `{` + floor + `,"seen":""}`, "version 0"},
		{"version 2", `{"version":2,` + floor + `,"seen":""}`, "version 2"},
		{"no floor", `{"version":1,"seen":""}`, "floor"},
		{"floor far ahead", `{"version":1,"floor":"2999-01-01T00:00:00Z","seen":""}`, "floor"},
		{"newest far back", `{"version":1,` + floor + `,"newest":"1900-01-01T00:00:00Z","seen":""}`, "newest"},
		{"floor not a time", `{"version":1,"floor":"yesterday","seen":""}`, "does not decode"},
		{"seen not base64", `{"version":1,` + floor + `,"seen":"!!!"}`, "not base64"},
		{"seen cut", `{"version":1,` + floor + `,"seen":"AAAA"}`, "multiple"},
		{"seen a number", `{"version":1,` + floor + `,"seen":7}`, "does not decode"},
		{"entry at the floor", `{"version":1,` + floor + `,"seen":"` + raw(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), byte(1)) + `"}`, "not between"},
		{"entry far ahead", `{"version":1,` + floor + `,"seen":"` + raw(time.Date(2201, 1, 1, 0, 0, 0, 0, time.UTC), byte(1)) + `"}`, "not between"},
		{"entries out of order", `{"version":1,` + floor + `,"seen":"` + raw(in.Add(time.Second), byte(1), in, byte(2)) + `"}`, "out of order"},
		{"same instant, keys out of order", `{"version":1,` + floor + `,"seen":"` + raw(in, byte(2), in, byte(1)) + `"}`, "out of order"},
		{"entry twice", `{"version":1,` + floor + `,"seen":"` + raw(in, byte(1), in, byte(1)) + `"}`, "out of order"},
		{"set too long", `{"version":1,` + floor + `,"seen":"` + strings.Repeat("A", base64.StdEncoding.EncodedLen(MaxSeenLimit*entryLen)+4) + `"}`, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeCursor([]byte(tc.json))
			if err == nil {
				t.Fatalf("decoded %+v", c)
			}
			if !errors.Is(err, errDamaged) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want errDamaged saying %q", err, tc.want)
			}
			if _, err := DecodeCursor([]byte(tc.json)); err == nil {
				t.Error("DecodeCursor accepted it")
			}
		})
	}
}

func TestAdvancePrunesAndCaps(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	base := &cursor{floor: day(1, 0), newest: day(2, 12)}
	base.seen = []entry{ent(day(1, 10), "a"), ent(day(2, 10), "b"), ent(day(2, 12), "c")}
	slices.SortFunc(base.seen, compareEntries)

	t.Run("the window moves: older days are forgotten", func(t *testing.T) {
		next, degraded := base.advance([]entry{ent(day(3, 8), "d")}, day(3, 8), 24*time.Hour, 100)
		// next window: the day of 3-08h - 24h = day 2: a (day 1) goes
		if degraded || len(next.seen) != 3 || !next.newest.Equal(day(3, 8)) || !next.floor.Equal(base.floor) {
			t.Fatalf("next %+v degraded %v", next, degraded)
		}
		if slices.Contains(next.seen, ent(day(1, 10), "a")) {
			t.Error("an entry before the next window survived")
		}
		if len(base.seen) != 3 {
			t.Error("advance modified the cursor it started from")
		}
	})
	t.Run("an older record does not move newest back", func(t *testing.T) {
		next, _ := base.advance([]entry{ent(day(2, 1), "late")}, day(2, 1), 24*time.Hour, 100)
		if !next.newest.Equal(base.newest) || len(next.seen) != 4 {
			t.Fatalf("next %+v", next)
		}
	})
	t.Run("over the cap the oldest go and the floor rises", func(t *testing.T) {
		tie := ent(day(2, 10), "b2") // same instant as b
		next, degraded := base.advance([]entry{tie}, time.Time{}, 24*time.Hour, 2)
		// 4 entries, cap 2: a and one of b/b2 would go; the other at
		// b's instant goes too (it is "at the floor").
		if !degraded || !next.floor.Equal(day(2, 10)) || len(next.seen) != 1 || next.seen[0] != ent(day(2, 12), "c") {
			t.Fatalf("next %+v degraded %v", next, degraded)
		}
		if _, err := decodeCursor(next.encode()); err != nil {
			t.Errorf("the capped cursor does not decode: %v", err)
		}
	})
}

// FuzzDecodeCursor: the cursor is read back from the state file, outside
// input. Whatever the bytes, decoding returns an error or a cursor that
// satisfies the format's invariants, re-encodes to bytes that decode to
// the same cursor, and can be advanced.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(sample().encode())
	f.Add((&cursor{floor: c0}).encode())
	f.Add([]byte(`{"version":1,"floor":"2026-03-01T00:00:00Z","newest":"2026-03-02T00:00:00Z","seen":""}`))
	f.Add([]byte(`{"version":1,"floor":"2026-03-01T00:00:00Z","seen":"` + raw(c0, byte(1), c0, byte(2)) + `"}`))
	f.Add([]byte(`{"version":1,"floor":"2026-03-01T00:00:00Z","seen":"` + raw(c0, byte(2), c0, byte(1)) + `"}`))
	f.Add([]byte(`{"version":1,"floor":"2026-03-01T00:00:00Z","seen":"AAAA"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`{"version":1,"floor":"0001-01-01T00:00:00Z","seen":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCursor(b)
		if err != nil {
			if !errors.Is(err, errDamaged) {
				t.Fatalf("error %v does not wrap errDamaged", err)
			}
			return
		}
		if c.floor.Before(minTime) || c.floor.After(maxTime) || len(c.seen) > MaxSeenLimit {
			t.Fatalf("decoded cursor breaks the format: %+v", c)
		}
		for i, e := range c.seen {
			if e.at <= c.floor.UnixNano() || i > 0 && compareEntries(c.seen[i-1], e) >= 0 {
				t.Fatalf("entry %d breaks the order or the floor", i)
			}
		}
		enc := c.encode()
		again, err := decodeCursor(enc)
		if err != nil {
			t.Fatalf("re-encoded cursor does not decode: %v\n%s", err, enc)
		}
		if !equalCursors(again, c) || !bytes.Equal(again.encode(), enc) {
			t.Fatalf("round trip changed the cursor")
		}
		next, _ := c.advance([]entry{ent(c.floor.Add(time.Second), "x")}, c.floor.Add(time.Second), DefaultLookBack, 3)
		if _, err := decodeCursor(next.encode()); err != nil {
			t.Fatalf("an advanced cursor does not decode: %v", err)
		}
	})
}
