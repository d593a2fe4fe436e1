package state

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Hash is a content hash of an entity's raw JSON as received.
type Hash [16]byte

// HashOf hashes raw JSON bytes.
func HashOf(raw []byte) Hash {
	sum := sha256.Sum256(raw)
	var h Hash
	copy(h[:], sum[:16])
	return h
}

// Record is one entity's snapshot. Raw and Meta returned by readers alias
// bbolt's memory and are valid only inside the read callback; copy them to
// keep them.
type Record struct {
	Hash      Hash      // of Raw
	Rev       uint64    // increases by one per change that produced events
	FirstSeen time.Time // first observation
	Updated   time.Time // last write
	Meta      []byte    // opaque to the store (deadline facts for subscriptions)
	Raw       []byte    // the entity's JSON as Partner Center sent it
}

const recordVersion = 1

// encodeRecord lays a record out as: version byte, hash, rev, first seen,
// updated (uvarint/varint), len(meta), meta, raw. The hash comes first so
// the unchanged check reads 17 bytes.
func encodeRecord(r *Record) []byte {
	b := make([]byte, 0, 1+16+4*binary.MaxVarintLen64+len(r.Meta)+len(r.Raw))
	b = append(b, recordVersion)
	b = append(b, r.Hash[:]...)
	b = binary.AppendUvarint(b, r.Rev)
	b = binary.AppendVarint(b, r.FirstSeen.UnixNano())
	b = binary.AppendVarint(b, r.Updated.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(r.Meta)))
	b = append(b, r.Meta...)
	b = append(b, r.Raw...)
	return b
}

var errBadRecord = errors.New("corrupt snapshot record")

// decodeRecord reads a record without copying Meta and Raw.
func decodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < 17 || b[0] != recordVersion {
		return r, errBadRecord
	}
	copy(r.Hash[:], b[1:17])
	p := b[17:]
	var n int
	if r.Rev, n = binary.Uvarint(p); n <= 0 {
		return r, errBadRecord
	}
	p = p[n:]
	fs, n := binary.Varint(p)
	if n <= 0 {
		return r, errBadRecord
	}
	p = p[n:]
	up, n := binary.Varint(p)
	if n <= 0 {
		return r, errBadRecord
	}
	p = p[n:]
	ml, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < ml {
		return r, errBadRecord
	}
	p = p[n:]
	r.FirstSeen, r.Updated = time.Unix(0, fs).UTC(), time.Unix(0, up).UTC()
	r.Meta, r.Raw = p[:ml:ml], p[ml:]
	return r, nil
}

// Clone returns a copy of r that owns its bytes.
func (r Record) Clone() Record {
	r.Meta = append([]byte(nil), r.Meta...)
	r.Raw = append([]byte(nil), r.Raw...)
	return r
}

// Pending marks an entity missing from a complete listing.
type Pending struct {
	Since     time.Time // when it was first missed
	Cycle     uint64    // cycle of the first miss
	Misses    int       // complete listings it was missing from
	Held      bool      // part of a mass disappearance being held
	HoldCount int       // listings it has been held for
}

func encodePending(p Pending) []byte {
	b := binary.AppendVarint(nil, p.Since.UnixNano())
	b = binary.AppendUvarint(b, p.Cycle)
	b = binary.AppendUvarint(b, uint64(p.Misses))
	held := uint64(0)
	if p.Held {
		held = 1
	}
	b = binary.AppendUvarint(b, held)
	b = binary.AppendUvarint(b, uint64(p.HoldCount))
	return b
}

func decodePending(b []byte) (Pending, error) {
	var p Pending
	vals := make([]uint64, 0, 4)
	since, n := binary.Varint(b)
	if n <= 0 {
		return p, fmt.Errorf("corrupt pending record")
	}
	b = b[n:]
	for len(b) > 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return p, fmt.Errorf("corrupt pending record")
		}
		vals = append(vals, v)
		b = b[n:]
	}
	if len(vals) < 4 {
		return p, fmt.Errorf("corrupt pending record")
	}
	p.Since = time.Unix(0, since).UTC()
	p.Cycle, p.Misses, p.Held, p.HoldCount = vals[0], int(vals[1]), vals[2] == 1, int(vals[3])
	return p, nil
}
