package state

import (
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// The record decoders read bytes from a file that may be damaged: they
// must never panic, and whatever they accept must be readable.

func FuzzDecodeRecord(f *testing.F) {
	rec := Record{Rev: 3, FirstSeen: time.Unix(5, 0), Updated: time.Unix(6, 0), Watch: time.Unix(7, 0),
		Meta: []byte(`{"nce":true}`), Raw: []byte(`{"id":"s1","quantity":4}`)}
	v4 := encodeRecord("c1/s1", &rec)
	f.Add("c1/s1", v4)
	f.Add("c1/s1", legacyV3(v4))
	f.Add("c1/s1", []byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		r, err := decodeRecord(key, b)
		if err != nil {
			return
		}
		_, _ = r.JSON()
		_, _ = r.MetaJSON()
		if b[0] == recordVersion {
			// A version 4 record that passes its checksum re-encodes
			// to a record that decodes the same.
			again, err := decodeRecord(key, encodeRecord(key, &r))
			if err != nil || again.Rev != r.Rev || again.Hash != r.Hash {
				t.Fatalf("re-encoding an accepted record: %+v, %v", again, err)
			}
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope(events.Envelope{ID: "ev-1", Subject: "pcwatch.events.x", Entity: "subscription/c/s", Body: []byte(`{}`)}))
	f.Add([]byte{4, 'e', 'v', '-', '1', 0, 0})
	f.Add([]byte{0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if _, err := decodeEnvelope(encodeEnvelope(e)); err != nil {
			t.Fatalf("re-encoding an accepted envelope: %v", err)
		}
	})
}

func FuzzDecodePending(f *testing.F) {
	f.Add(encodePending(Pending{Since: time.Unix(9, 0), Cycle: 3, Misses: 2, Held: true, HoldCount: 1}))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = decodePending(b) })
}
