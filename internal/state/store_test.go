package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// openTest opens a fresh store and, on cleanup, checks the invariants every
// store must keep: the outbox counter matches the bucket, every record
// decodes, and bbolt's own consistency check passes.
func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkInvariants(t, s); s.Close() })
	return s
}

// checkInvariants checks what Open checks — bbolt's structure and every
// record — and that the outbox counter matches the bucket.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	if s.closed.Load() {
		return
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := checkStructure(tx); err != nil {
			return err
		}
		if err := s.checkRecords(tx); err != nil {
			return err
		}
		if n, want := tx.Bucket(bOutbox).Stats().KeyN, int(s.outboxN.Load()); n != want {
			return fmt.Errorf("outbox holds %d records, counter says %d", n, want)
		}
		return nil
	})
	if err != nil {
		t.Errorf("state invariant broken: %v", err)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", di.Mode().Perm())
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "another watcher is running", "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond, ReadOnly: true}); !errors.Is(err, ErrLocked) {
		t.Errorf("read-only Open while locked: %v, want ErrLocked", err)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	t.Run("not bbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), FileName)
		junk := bytes.Repeat([]byte("not a database "), 2000)
		os.WriteFile(path, junk, 0o600)
		_, err := Open(path, Options{})
		if !errors.Is(err, ErrNotPcwatch) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v, want ErrNotPcwatch naming the file", err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, junk) {
			t.Error("the foreign file was modified")
		}
	})
	t.Run("foreign bbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), FileName)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("theirs"))
			return b.Put([]byte("k"), []byte("v"))
		})
		db.Close()
		before, _ := os.ReadFile(path)
		_, err = Open(path, Options{})
		if !errors.Is(err, ErrNotPcwatch) {
			t.Fatalf("err = %v, want ErrNotPcwatch", err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Error("the foreign bbolt file was modified")
		}
	})
	t.Run("unknown schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), FileName)
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bMeta).Put([]byte("schema"), []byte{99})
		})
		s.Close()
		_, err = Open(path, Options{})
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "schema 99") {
			t.Fatalf("err = %v, want ErrSchema naming version 99", err)
		}
	})
	t.Run("read-only of a missing file", func(t *testing.T) {
		_, err := Open(filepath.Join(t.TempDir(), FileName), Options{ReadOnly: true})
		if err == nil || !strings.Contains(err.Error(), "no watcher has run") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRecordRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		rec := Record{
			Rev:       r.Uint64(),
			FirstSeen: time.Unix(0, r.Int64N(1<<62)).UTC(),
			Updated:   time.Unix(0, r.Int64N(1<<62)).UTC(),
			Meta:      randBytes(r, r.IntN(100)),
			Raw:       randBytes(r, r.IntN(2000)),
		}
		if i%2 == 1 {
			rec.Watch = time.Unix(0, r.Int64N(1<<62)).UTC()
		}
		rec.Hash = HashOf(rec.Raw)
		got, err := decodeRecord("c/s", encodeRecord("c/s", &rec))
		if err != nil {
			t.Fatal(err)
		}
		raw, err1 := got.JSON()
		meta, err2 := got.MetaJSON()
		if err1 != nil || err2 != nil || got.Hash != rec.Hash || got.Rev != rec.Rev || !got.FirstSeen.Equal(rec.FirstSeen) ||
			!got.Updated.Equal(rec.Updated) || !got.Watch.Equal(rec.Watch) || !bytes.Equal(meta, rec.Meta) || !bytes.Equal(raw, rec.Raw) {
			t.Fatalf("round trip: %v %v\n%s", err1, err2, cmp.Diff(rec.Raw, raw, cmpopts.EquateEmpty()))
		}
		// Re-encoding a read record (a metadata-only update) keeps its
		// compressed raw JSON as it is.
		again := got.Clone()
		again.Meta = []byte("new meta")
		back, _ := decodeRecord("c/s", encodeRecord("c/s", &again))
		if raw2, _ := back.JSON(); !bytes.Equal(raw2, rec.Raw) {
			t.Fatal("a metadata update lost the raw JSON")
		}
	}
	// A version-3 record (before the checksum) is still read: its layout
	// is version 4's without the CRC trailer.
	v4 := encodeRecord("c/s", &Record{Rev: 7, FirstSeen: time.Unix(5, 0), Updated: time.Unix(6, 0), Raw: []byte(`{"a":1}`)})
	v3 := legacyV3(v4)
	if old, err := decodeRecord("c/s", v3); err != nil || old.Rev != 7 {
		t.Fatalf("version 3 record: %+v %v", old, err)
	}
	// A version-2 record (before the watch time) is still read: its
	// layout is version 3's without the watch varint, and its watch time is
	// unknown: far ahead, so its facts are still looked at.
	v2 := append([]byte{recordVersionV2}, v3[1:17]...)
	p := v3[17:]
	for i := 0; i < 3; i++ { // rev, first seen, updated
		_, n := binary.Uvarint(p)
		v2, p = append(v2, p[:n]...), p[n:]
	}
	_, n := binary.Varint(p) // the watch time
	v2 = append(v2, p[n:]...)
	old, err := decodeRecord("c/s", v2)
	if raw, jerr := old.JSON(); err != nil || jerr != nil || old.Rev != 7 || !old.Watch.After(time.Now().AddDate(100, 0, 0)) || string(raw) != `{"a":1}` {
		t.Fatalf("version 2 record: %+v %v %v", old, err, jerr)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0}, {3, 0}, {4, 0}, append([]byte{1}, make([]byte, 16)...), append([]byte{4}, make([]byte, 24)...)} {
		if _, err := decodeRecord("c/s", bad); err == nil {
			t.Errorf("decodeRecord(%x) accepted garbage", bad)
		}
	}
}

// legacyV3 turns a version 4 record into the version 3 it extends.
func legacyV3(v4 []byte) []byte {
	return append([]byte{recordVersionV3}, v4[1:len(v4)-4]...)
}

// TestRecordChecksum flips every bit of a version 4 record in turn: each
// flip must be refused, naming a corrupt record.
func TestRecordChecksum(t *testing.T) {
	rec := Record{Rev: 3, FirstSeen: time.Unix(5, 0), Updated: time.Unix(6, 0), Watch: time.Unix(7, 0),
		Meta: []byte(`{"nce":true}`), Raw: []byte(`{"id":"s1","quantity":4}`)}
	rec.Hash = HashOf(rec.Raw)
	b := encodeRecord("c1/s1", &rec)
	if _, err := decodeRecord("c1/s2", b); !errors.Is(err, errBadRecord) {
		t.Errorf("a record read under another key: %v, want a corrupt record", err)
	}
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			c := append([]byte(nil), b...)
			c[i] ^= 1 << bit
			if _, err := decodeRecord("c1/s1", c); !errors.Is(err, errBadRecord) {
				t.Fatalf("flipping bit %d of byte %d/%d: decodeRecord = %v, want a corrupt record", bit, i, len(b), err)
			}
		}
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	if n == 0 {
		return []byte{}
	}
	return b
}

func env(id string) events.Envelope {
	return events.Envelope{ID: id, Subject: "pcwatch.events.x." + id, Entity: "e/" + id, Body: []byte(`{"id":"` + id + `"}`)}
}

func TestCommitAndRead(t *testing.T) {
	s := openTest(t)
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	rec := func(raw string, rev uint64) Record {
		return Record{Hash: HashOf([]byte(raw)), Rev: rev, FirstSeen: now, Updated: now, Raw: []byte(raw), Meta: []byte("m")}
	}
	err := s.Commit(&Change{
		Puts: []Put{
			{resource.Customers, "c1", rec(`{"id":"c1"}`, 1)},
			{resource.Subscriptions, "c1/s1", rec(`{"id":"s1"}`, 1)},
			{resource.Subscriptions, "c1/s2", rec(`{"id":"s2"}`, 1)},
			{resource.Subscriptions, "c10/s9", rec(`{"id":"s9"}`, 1)}, // a customer id with c1 as prefix
			{resource.Products, "c1/OnlineServices/P1", rec(`{"id":"P1"}`, 1)},
		},
		PendingPuts: []PendingPut{{Ref{resource.Subscriptions, "c1/s2"}, Pending{Since: now, Cycle: 3, Misses: 1}}},
		Events:      []events.Envelope{env("a"), env("b")},
		Ledger:      []string{"L1"},
		Failures:    map[string]*Failure{"c1": {Count: 2, LastError: "boom"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(r *ReadTx) error {
		snap, err := r.Customer("c1", resource.Customers, resource.Subscriptions, resource.Products, resource.ManagedServices)
		if err != nil {
			return err
		}
		if len(snap.Records[resource.Subscriptions]) != 2 || len(snap.Records[resource.Customers]) != 1 || len(snap.Records[resource.Products]) != 1 {
			t.Errorf("snapshot records = %v", snap.Records)
		}
		if raw, err := snap.Records[resource.Subscriptions]["s1"].JSON(); err != nil || string(raw) != `{"id":"s1"}` {
			t.Errorf("s1 raw = %s, %v", raw, err)
		}
		if _, ok := snap.Records[resource.Products]["OnlineServices/P1"]; !ok {
			t.Errorf("product key wrong: %v", snap.Records[resource.Products])
		}
		if p := snap.Pending[resource.Subscriptions]["s2"]; p.Cycle != 3 || p.Misses != 1 {
			t.Errorf("pending = %+v", p)
		}
		if !r.LedgerHas("L1") || r.LedgerHas("L2") {
			t.Error("ledger wrong")
		}
		if f, ok := r.Failure("c1"); !ok || f.Count != 2 || f.LastError != "boom" {
			t.Errorf("failure = %+v", f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := s.OutboxRead(10)
	if len(recs) != 2 || recs[0].ID != "a" || recs[1].ID != "b" || recs[0].Seq >= recs[1].Seq {
		t.Fatalf("outbox = %+v", recs)
	}
	if n, _ := s.OutboxLen(); n != 2 {
		t.Errorf("OutboxLen = %d", n)
	}
	// Removing customer c1 entirely leaves c10 alone.
	if err := s.Commit(&Change{
		Deletes:        []Ref{{resource.Customers, "c1"}},
		DeletePrefixes: []Ref{{resource.Subscriptions, "c1"}, {resource.Products, "c1"}},
		Failures:       map[string]*Failure{"c1": nil},
	}); err != nil {
		t.Fatal(err)
	}
	s.View(func(r *ReadTx) error {
		n := 0
		r.ForEach(resource.Subscriptions, func(k string, _ Record) error { n++; return nil })
		if n != 1 {
			t.Errorf("%d subscriptions left, want only c10/s9", n)
		}
		pn := 0
		r.PendingAll(resource.Subscriptions, func(string, Pending) error { pn++; return nil })
		if pn != 0 {
			t.Errorf("%d pending marks left", pn)
		}
		if _, ok := r.Failure("c1"); ok {
			t.Error("failure streak not deleted")
		}
		return nil
	})
	if err := s.OutboxDelete([]uint64{recs[0].Seq, recs[0].Seq, 999}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.OutboxLen(); n != 1 {
		t.Errorf("OutboxLen after delete = %d", n)
	}
}

func TestUnchangedCostsNoWrites(t *testing.T) {
	s := openTest(t)
	before := s.WriteStats()
	if err := s.Commit(&Change{}); err != nil {
		t.Fatal(err)
	}
	s.View(func(r *ReadTx) error { _, err := r.Customer("c1", resource.All()...); return err })
	if after := s.WriteStats(); after != before {
		t.Errorf("an empty change or a read wrote: %+v -> %+v", before, after)
	}
	if err := s.Commit(&Change{Ledger: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if after := s.WriteStats(); after.Commits != before.Commits+1 || after.Bytes() <= before.Bytes() {
		t.Errorf("a real change was not counted: %+v -> %+v", before, after)
	}
}

func TestCycleAndLastOK(t *testing.T) {
	s := openTest(t)
	for want := uint64(1); want <= 3; want++ {
		if n, err := s.NextCycle(); err != nil || n != want {
			t.Fatalf("NextCycle = %d, %v; want %d", n, err, want)
		}
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	s.SetLastOK(map[string]time.Time{"a": at, "b": at.Add(time.Hour)})
	m, _ := s.LastOK()
	if !m["a"].Equal(at) || len(m) != 2 {
		t.Errorf("LastOK = %v", m)
	}
	path := s.Path()
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, _ := s2.Cycle(); n != 3 {
		t.Errorf("cycle after reopen = %d", n)
	}
}
