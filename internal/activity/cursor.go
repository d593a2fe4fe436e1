package activity

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// CursorName is the name of the tail's cursor in the state file
// (state.Change.Cursors, state.ReadTx.Cursor).
const CursorName = "activity-log"

// cursorVersion is the cursor format this code reads and writes.
const cursorVersion = 1

// The cursor, as stored under CursorName, is JSON:
//
//	{"version":1,
//	 "newest":"2025-06-01T10:04:05.1234567Z",   // newest operationDate seen (absent: none yet)
//	 "floor":"2025-05-31T10:00:00Z",            // see below
//	 "seen":"<base64>"}                          // the dedup set
//
// seen is standard base64 (padded) of 24-byte entries, strictly
// ascending: 8 bytes big-endian of the record's operationDate in Unix
// nanoseconds (the poll's clock reading when the record had no date or
// one in the future), then the first 16 bytes of the SHA-256 of its
// DedupKey. Hashing bounds an entry whatever the record's id; 128 bits
// make a collision (a new record taken for a duplicate) negligible.
//
// A record is new when its entry is not in seen and its operationDate is
// after floor. floor starts at the first poll's clock reading minus the
// initial look-back (older history is the sweep's), and rises only when
// seen would outgrow its cap: the oldest entries are then dropped and
// floor becomes the newest dropped operationDate, so deduplication of
// those old instants degrades to comparing operationDates (a record that
// appears late with an operationDate at or before floor is left to the
// sweep). Entries older than the next poll's window are pruned, so seen
// holds only the overlap.

// entryLen is one entry of seen: 8 bytes of time, 16 of key hash.
const entryLen = 8 + keyLen

const keyLen = 16

// MaxSeenLimit bounds the entries a stored cursor may hold (whatever
// Options.MaxSeen): a larger one is damaged.
const MaxSeenLimit = 1 << 18

// Times outside [minTime, maxTime] in a cursor are damage (they also keep
// Unix nanoseconds inside int64).
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

type key [keyLen]byte

// keyOf hashes a record's DedupKey.
func keyOf(dedup string) key {
	sum := sha256.Sum256([]byte(dedup))
	var k key
	copy(k[:], sum[:keyLen])
	return k
}

type entry struct {
	at  int64 // Unix nanoseconds
	key key
}

func compareEntries(a, b entry) int {
	if c := cmp.Compare(a.at, b.at); c != 0 {
		return c
	}
	return bytes.Compare(a.key[:], b.key[:])
}

// cursor is the decoded cursor. Its values are not modified once built:
// a poll builds the next one.
type cursor struct {
	newest time.Time // zero: no record seen yet
	floor  time.Time
	seen   []entry // strictly ascending
}

type cursorJSON struct {
	Version int       `json:"version"`
	Newest  time.Time `json:"newest,omitzero"`
	Floor   time.Time `json:"floor"`
	Seen    string    `json:"seen"`
}

// errDamaged is wrapped by every decodeCursor error.
var errDamaged = errors.New("the activity log cursor is damaged")

func damaged(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errDamaged, fmt.Sprintf(format, a...))
}

func (c *cursor) encode() []byte {
	raw := make([]byte, 0, len(c.seen)*entryLen)
	for _, e := range c.seen {
		raw = binary.BigEndian.AppendUint64(raw, uint64(e.at))
		raw = append(raw, e.key[:]...)
	}
	b, _ := json.Marshal(cursorJSON{Version: cursorVersion, Newest: c.newest.UTC(), Floor: c.floor.UTC(),
		Seen: base64.StdEncoding.EncodeToString(raw)}) // times in range and a string: cannot fail
	return b
}

// decodeCursor reads a stored cursor. The bytes come from the state file,
// which anything may have damaged: every malformation is an error
// wrapping errDamaged, never a panic, and a cursor that decodes
// satisfies what encode guarantees (version 1, times in range, entries
// strictly ascending and after floor, at most MaxSeenLimit).
func decodeCursor(b []byte) (*cursor, error) {
	var j cursorJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, damaged("it does not decode: %v", err)
	}
	if dec.More() {
		return nil, damaged("data follows the JSON object")
	}
	if j.Version != cursorVersion {
		return nil, damaged("version %d, this program reads %d", j.Version, cursorVersion)
	}
	inRange := func(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }
	if !inRange(j.Floor) {
		return nil, damaged("floor %s is outside %d..%d", j.Floor.Format(time.RFC3339), minTime.Year(), maxTime.Year())
	}
	if !j.Newest.IsZero() && !inRange(j.Newest) {
		return nil, damaged("newest %s is outside %d..%d", j.Newest.Format(time.RFC3339), minTime.Year(), maxTime.Year())
	}
	if len(j.Seen) > base64.StdEncoding.EncodedLen(MaxSeenLimit*entryLen) {
		return nil, damaged("its dedup set is longer than %d entries", MaxSeenLimit)
	}
	raw, err := base64.StdEncoding.DecodeString(j.Seen)
	if err != nil {
		return nil, damaged("its dedup set is not base64: %v", err)
	}
	if len(raw)%entryLen != 0 {
		return nil, damaged("its dedup set has %d bytes, not a multiple of %d", len(raw), entryLen)
	}
	c := &cursor{newest: j.Newest.UTC(), floor: j.Floor.UTC(), seen: make([]entry, 0, len(raw)/entryLen)}
	lo, hi := c.floor.UnixNano(), maxTime.UnixNano()
	for i := 0; i < len(raw); i += entryLen {
		var e entry
		e.at = int64(binary.BigEndian.Uint64(raw[i:]))
		copy(e.key[:], raw[i+8:i+entryLen])
		if e.at <= lo || e.at > hi {
			return nil, damaged("dedup entry %d is at %s, not between the floor and %d", i/entryLen,
				time.Unix(0, e.at).UTC().Format(time.RFC3339Nano), maxTime.Year())
		}
		if n := len(c.seen); n > 0 && compareEntries(c.seen[n-1], e) >= 0 {
			return nil, damaged("dedup entry %d is out of order", i/entryLen)
		}
		c.seen = append(c.seen, e)
	}
	return c, nil
}

// CursorInfo describes a stored cursor, for views such as `watcher
// state`.
type CursorInfo struct {
	// Newest is the newest operationDate the tail has seen (zero: none).
	Newest time.Time
	// Floor: records at or before it that the tail has not seen are left
	// to the sweep (see the package doc).
	Floor time.Time
	// Seen is the number of records remembered for deduplication.
	Seen int
}

// DecodeCursor reads the value stored under CursorName. It fails, with
// an error that says so, for a damaged value; the tail itself then starts
// again from its initial look-back.
func DecodeCursor(b []byte) (CursorInfo, error) {
	c, err := decodeCursor(b)
	if err != nil {
		return CursorInfo{}, err
	}
	return CursorInfo{Newest: c.newest, Floor: c.floor, Seen: len(c.seen)}, nil
}

// keys returns the set of remembered keys (whatever their instant: a
// record is the same record whatever date it is re-read with).
func (c *cursor) keys() map[key]struct{} {
	m := make(map[key]struct{}, len(c.seen))
	for _, e := range c.seen {
		m[e.key] = struct{}{}
	}
	return m
}

// advance returns the cursor after a successful poll: c with added
// entries and newest, pruned to the entries at or after the next poll's
// window start, and capped at maxSeen entries (raising floor, see the
// format above). degraded reports that the cap dropped entries.
func (c *cursor) advance(added []entry, newest time.Time, lookBack time.Duration, maxSeen int) (next *cursor, degraded bool) {
	next = &cursor{newest: c.newest, floor: c.floor}
	if newest.After(next.newest) {
		next.newest = newest
	}
	all := make([]entry, 0, len(c.seen)+len(added))
	all = append(all, c.seen...)
	all = append(all, added...)
	slices.SortFunc(all, compareEntries)
	all = slices.Compact(all) // Poll never adds a key the set has; this only guards the order
	start := windowStart(next, lookBack).UnixNano()
	cut, _ := slices.BinarySearchFunc(all, start, func(e entry, t int64) int { return cmp.Compare(e.at, t) })
	all = all[cut:]
	if n := len(all) - maxSeen; n > 0 {
		floor := time.Unix(0, all[n-1].at).UTC()
		for n < len(all) && all[n].at <= all[n-1].at {
			n++ // entries at the floor's instant go too: they are "at or before floor"
		}
		all = all[n:]
		if floor.After(next.floor) {
			next.floor = floor
		}
		degraded = true
	}
	next.seen = slices.Clip(all)
	return next, degraded
}

// windowStart is the first instant of the first day the next poll reads:
// the day of the later of newest - lookBack and floor.
func windowStart(c *cursor, lookBack time.Duration) time.Time {
	ref := c.floor
	if !c.newest.IsZero() && c.newest.Add(-lookBack).After(ref) {
		ref = c.newest.Add(-lookBack)
	}
	return midnight(ref)
}

func midnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
