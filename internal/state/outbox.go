package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/events"
)

// The outbox holds events committed with their snapshots and not yet
// acknowledged by JetStream. Keys are 8-byte big-endian sequence numbers,
// so bbolt's order is commit order. The store is the outbox package relay
// drains (relay.Outbox).

// OutboxRecord is one event waiting in the outbox.
type OutboxRecord struct {
	Seq uint64 // outbox order
	events.Envelope
}

// RelayCounts count the outbox records the relay could not publish as
// committed because they exceeded the NATS message size limit. The store
// keeps their totals over the life of the state file (OutboxDeleteCounted,
// Store.RelayCounts).
type RelayCounts struct {
	Truncated uint64 `json:"truncated"` // published shrunk (data.truncated)
	Dropped   uint64 `json:"dropped"`   // replaced by an ops.event-dropped notice
}

var errBadEnvelope = errors.New("corrupt outbox record")

// An outbox record is: 0x00, envelopeVersion, the CRC-32C (big-endian) of
// what follows, then len(id), id, len(subject), subject, len(entity),
// entity (uvarint lengths) and the body. Records written before the
// checksum existed start directly with len(id), which is never 0 (every
// event has an id), and are still read.
const envelopeVersion = 1

func encodeEnvelope(e events.Envelope) []byte {
	b := make([]byte, 6, 6+3*binary.MaxVarintLen64+len(e.ID)+len(e.Subject)+len(e.Entity)+len(e.Body))
	b[1] = envelopeVersion
	for _, s := range []string{e.ID, e.Subject, e.Entity} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, e.Body...)
	binary.BigEndian.PutUint32(b[2:6], crc32.Checksum(b[6:], crcTable))
	return b
}

func decodeEnvelope(b []byte) (events.Envelope, error) {
	if len(b) > 0 && b[0] == 0 {
		if len(b) < 6 || b[1] != envelopeVersion {
			return events.Envelope{}, errBadEnvelope
		}
		if crc32.Checksum(b[6:], crcTable) != binary.BigEndian.Uint32(b[2:6]) {
			return events.Envelope{}, fmt.Errorf("%w: checksum mismatch", errBadEnvelope)
		}
		b = b[6:]
	}
	var parts [3]string
	for i := range parts {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return events.Envelope{}, errBadEnvelope
		}
		parts[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	return events.Envelope{ID: parts[0], Subject: parts[1], Entity: parts[2], Body: append([]byte(nil), b...)}, nil
}

// OutboxRead returns up to n records, oldest first.
func (s *Store) OutboxRead(n int) ([]OutboxRecord, error) {
	var out []OutboxRecord
	err := s.View(func(r *ReadTx) error {
		c := r.tx.Bucket(bOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			e, err := decodeEnvelope(v)
			if err != nil {
				// Never skipped: an event is not lost silently. The relay
				// stops here, naming the record (Open refuses such a file,
				// so this is damage done while the file was open).
				re := &RecordError{Kind: "outbox event", Key: outboxKey(k), Err: err}
				return fmt.Errorf("state file %s: %w; events after it cannot be published (stop the watcher; %s)", s.path, re, corruptHint(s.path))
			}
			out = append(out, OutboxRecord{Seq: binary.BigEndian.Uint64(k), Envelope: e})
		}
		return nil
	})
	return out, err
}

func outboxKey(k []byte) string {
	if len(k) == 8 {
		return fmt.Sprintf("%d", binary.BigEndian.Uint64(k))
	}
	return fmt.Sprintf("%x", k)
}

// OutboxDelete removes records; missing ones are ignored.
func (s *Store) OutboxDelete(seqs []uint64) error {
	return s.OutboxDeleteCounted(seqs, RelayCounts{})
}

// Keys of the relay's durable counts in the meta bucket: 8-byte big-endian
// totals over the life of the state file.
var (
	metaRelayTruncated = []byte("relay.truncated")
	metaRelayDropped   = []byte("relay.dropped")
)

// OutboxDeleteCounted removes records like OutboxDelete and adds c to the
// relay's counts (see RelayCounts) in the same transaction: a crash leaves
// either both or neither. The relay passes the counts of the records it
// deletes; they are added as given.
func (s *Store) OutboxDeleteCounted(seqs []uint64, c RelayCounts) error {
	if len(seqs) == 0 {
		return nil
	}
	deleted := 0
	err := s.update(func(tx *bolt.Tx) error {
		deleted = 0
		if c != (RelayCounts{}) {
			meta := tx.Bucket(bMeta)
			for _, x := range []struct {
				key []byte
				n   uint64
			}{{metaRelayTruncated, c.Truncated}, {metaRelayDropped, c.Dropped}} {
				if x.n == 0 {
					continue
				}
				var total uint64
				if v := meta.Get(x.key); len(v) == 8 {
					total = binary.BigEndian.Uint64(v)
				}
				if err := meta.Put(x.key, binary.BigEndian.AppendUint64(nil, total+x.n)); err != nil {
					return err
				}
			}
		}
		b := tx.Bucket(bOutbox)
		for _, seq := range seqs {
			k := binary.BigEndian.AppendUint64(nil, seq)
			if b.Get(k) == nil {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err == nil {
		s.outboxN.Add(-int64(deleted))
	}
	return err
}

// RelayCounts returns how many events the relay has published shrunk or
// replaced by an ops.event-dropped notice since the state file was created.
func (s *Store) RelayCounts() (RelayCounts, error) {
	var c RelayCounts
	err := s.View(func(r *ReadTx) error {
		meta := r.tx.Bucket(bMeta)
		if v := meta.Get(metaRelayTruncated); len(v) == 8 {
			c.Truncated = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get(metaRelayDropped); len(v) == 8 {
			c.Dropped = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return c, err
}

// OutboxLen returns the number of records waiting. It is kept in memory and
// costs nothing.
func (s *Store) OutboxLen() (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	return int(s.outboxN.Load()), nil
}
