package state

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/pcwatch/pcwatch/internal/resource"
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

// Record is one entity's snapshot. Writers set Raw and Meta. On records
// read from the store Raw and Meta are nil and the stored, compressed forms
// are kept instead: call JSON and MetaJSON. (Comparing hashes, the common
// case, never decompresses anything.) A read record's compressed bytes may
// alias bbolt's memory: valid only inside the read callback; Clone copies.
type Record struct {
	Hash      Hash      // of the raw JSON as received
	Rev       uint64    // increases by one per change that produced events
	FirstSeen time.Time // first observation
	Updated   time.Time // last write
	// Watch is until when the caller wants the entity looked at closely
	// (subscriptions: while per-seat refund windows may need reading). It
	// is in the record header, readable without decompressing anything.
	Watch time.Time
	Meta  []byte // opaque to the store (deadline facts for subscriptions)
	Raw   []byte // the entity's JSON as Partner Center sent it

	zMeta, zRaw []byte         // as stored
	kind        *resource.Kind // of a read record, to name it in errors
	key         string
}

// JSON returns the entity's raw JSON. A stored payload that does not
// decompress gives a *RecordError naming the record (errors.Is ErrCorrupt).
func (r Record) JSON() ([]byte, error) {
	if r.Raw != nil {
		return r.Raw, nil
	}
	b, err := decompress(r.zRaw)
	if err != nil {
		return nil, r.damaged(fmt.Errorf("%w: its snapshot does not decompress: %v", errBadRecord, err))
	}
	return b, nil
}

// MetaJSON returns the record's metadata, failing as JSON does.
func (r Record) MetaJSON() ([]byte, error) {
	if r.Meta != nil {
		return r.Meta, nil
	}
	b, err := decompress(r.zMeta)
	if err != nil {
		return nil, r.damaged(fmt.Errorf("%w: its metadata does not decompress: %v", errBadRecord, err))
	}
	return b, nil
}

func (r Record) damaged(err error) error {
	name := ""
	if r.kind != nil {
		name = r.kind.Name()
	}
	return &RecordError{Kind: name, Key: r.key, Err: err}
}

// recordVersion 4 added a CRC-32C of the whole record, so that any damaged
// byte is seen when the record is read (and when the file is opened); 3
// added the watch time; 3 and 2 are still read (their compressed payloads
// carry zstd's own checksum, their headers nothing); 1 was uncompressed and
// never released.
const (
	recordVersion   = 4
	recordVersionV3 = 3
	recordVersionV2 = 2
)

// crcTable is CRC-32C (Castagnoli), hardware-accelerated on amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// watchUnknown is the watch time of a record written before it existed.
var watchUnknown = time.Unix(0, math.MaxInt64).UTC()

// encodeRecord lays a record out as: version byte, hash, rev, first seen,
// updated, watch (uvarint/varint), len(meta), meta, raw — meta and raw
// compressed — then the CRC-32C, big-endian, of the record's key followed
// by all that: a record moved to another key (a damaged key byte) fails its
// check as a damaged value does.
// The hash comes first so the unchanged check reads 17 bytes.
func encodeRecord(key string, r *Record) []byte {
	zm, zr := r.zMeta, r.zRaw
	if r.Meta != nil {
		zm = compress(r.Meta)
	}
	if r.Raw != nil {
		zr = compress(r.Raw)
	}
	b := make([]byte, 0, 1+16+4*binary.MaxVarintLen64+len(zm)+len(zr)+4)
	b = append(b, recordVersion)
	b = append(b, r.Hash[:]...)
	b = binary.AppendUvarint(b, r.Rev)
	b = binary.AppendVarint(b, r.FirstSeen.UnixNano())
	b = binary.AppendVarint(b, r.Updated.UnixNano())
	b = binary.AppendVarint(b, unixNano(r.Watch))
	b = binary.AppendUvarint(b, uint64(len(zm)))
	b = append(b, zm...)
	b = append(b, zr...)
	return binary.BigEndian.AppendUint32(b, recordCRC(key, b))
}

func recordCRC(key string, body []byte) uint32 {
	return crc32.Update(crc32.Checksum([]byte(key), crcTable), crcTable, body)
}

var errBadRecord = errors.New("corrupt snapshot record")

// errChecksum is a record whose bytes are not those written.
var errChecksum = fmt.Errorf("%w: checksum mismatch", errBadRecord)

// unixNano is 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// decodeRecord reads a record without copying or decompressing. It checks
// everything but a version 2 or 3 record's compressed payloads, which JSON
// and MetaJSON check when they decompress them.
func decodeRecord(key string, b []byte) (Record, error) {
	var r Record
	if len(b) < 17 {
		return r, fmt.Errorf("%w: %d bytes, shorter than any record", errBadRecord, len(b))
	}
	version := b[0]
	switch version {
	case recordVersion:
		if len(b) < 17+4 {
			return r, fmt.Errorf("%w: %d bytes, shorter than any record", errBadRecord, len(b))
		}
		body := b[:len(b)-4]
		if recordCRC(key, body) != binary.BigEndian.Uint32(b[len(b)-4:]) {
			return r, errChecksum
		}
		b = body
	case recordVersionV3, recordVersionV2:
	default:
		return r, fmt.Errorf("%w: unknown record version %d", errBadRecord, version)
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
	if version == recordVersionV2 {
		// Written before the watch time existed: unknown, so as far ahead
		// as it goes — the caller looks closely until the record is
		// rewritten with a real one.
		r.Watch = watchUnknown
	} else {
		w, n := binary.Varint(p)
		if n <= 0 {
			return r, errBadRecord
		}
		p = p[n:]
		if w != 0 {
			r.Watch = time.Unix(0, w).UTC()
		}
	}
	ml, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < ml {
		return r, errBadRecord
	}
	p = p[n:]
	r.FirstSeen, r.Updated = time.Unix(0, fs).UTC(), time.Unix(0, up).UTC()
	r.zMeta, r.zRaw = p[:ml:ml], p[ml:]
	return r, nil
}

// Clone returns a copy of r that owns its bytes.
func (r Record) Clone() Record {
	r.Meta = cloneBytes(r.Meta)
	r.Raw = cloneBytes(r.Raw)
	r.zMeta = cloneBytes(r.zMeta)
	r.zRaw = cloneBytes(r.zRaw)
	return r
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
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
