// Package state is pcwatch's durable memory: one bbolt file holding the last
// complete snapshot of every watched entity, the entities pending removal,
// the deadline ledger, per-customer bookkeeping, and the outbox of events
// not yet acknowledged by NATS.
//
// Contract:
//   - One process at a time. Open takes bbolt's exclusive file lock and
//     gives up after Options.LockTimeout with ErrLocked naming the file.
//   - One Change is one bbolt transaction: a customer's new snapshot, its
//     outbox events and its deadline-ledger entries commit together or not
//     at all, so a crash at any instant leaves the old state or the new
//     state with its events, never one without the other.
//   - Reading costs no writes: an unchanged customer is compared inside a
//     read transaction and nothing is committed for it.
//   - A file that is not a pcwatch file, or is from an unknown schema
//     version, is refused; nothing in it is written.
//   - Kinds can be added (resource.All) without a schema change: a file
//     records the kinds it was written with, and Open gives a file written
//     before a kind existed that kind's empty bucket (see Open).
package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// SchemaVersion is the layout this code reads and writes.
const SchemaVersion = 1

// FileName is the state file's name inside the data directory.
const FileName = "pcwatch.db"

const magic = "pcwatch-state"

var (
	bMeta     = []byte("meta")
	bPending  = []byte("pending")
	bLedger   = []byte("ledger")
	bOutbox   = []byte("outbox")
	bLastOK   = []byte("lastok")
	bFailures = []byte("failures")
	bBaseline = []byte("baseline")
	bTombs    = []byte("tombs")
	// bookkeeping are the buckets of every state file besides the
	// snapshots, which have one bucket per kind (resource.Kind.Bucket).
	bookkeeping = [][]byte{bMeta, bPending, bLedger, bOutbox, bLastOK, bFailures, bBaseline, bTombs}
)

// metaKinds is the metadata key that lists, as a JSON array, the snapshot
// buckets of the kinds a file holds: those it was created with and those
// Open added since. Every bucket it names must be there.
var metaKinds = []byte("kinds")

// firstKinds are the snapshot buckets of every file written before
// metaKinds existed (schema 1, up to the release after 7a541b3): a file
// without the key has exactly these. It is history and never changes.
var firstKinds = []string{"customers", "subscriptions", "managedservices", "products"}

// snapshots returns the bucket of kind's snapshots. It is nil only in a
// read-only store whose file was written before the kind existed: read
// paths treat that as an empty bucket.
func snapshots(tx *bolt.Tx, kind *resource.Kind) *bolt.Bucket {
	return tx.Bucket([]byte(kind.Bucket()))
}

// writable returns the bucket of kind's snapshots for writing. Open
// created the buckets of every kind of resource.All, so it fails only for a
// kind that was not known when the store was opened.
func writable(tx *bolt.Tx, kind *resource.Kind) (*bolt.Bucket, error) {
	if b := snapshots(tx, kind); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("the state file has no bucket of %s: the kind was not known when it was opened", kind)
}

// kindsOf reads the snapshot buckets a file records (metaKinds).
func kindsOf(meta *bolt.Bucket) ([]string, error) {
	v := meta.Get(metaKinds)
	if v == nil {
		return slices.Clone(firstKinds), nil
	}
	var names []string
	if err := json.Unmarshal(v, &names); err != nil || len(names) == 0 || slices.Contains(names, "") {
		return nil, fmt.Errorf("the metadata's list of kinds (%q) does not decode", events.Clip(string(v)))
	}
	return names, nil
}

// Options configure Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock; default 1s.
	LockTimeout time.Duration
	// ReadOnly opens for reading (CLI inspection). It still needs the lock,
	// so it fails with ErrLocked while a watcher runs.
	ReadOnly bool
}

// Store is an open state file. Its methods are safe for concurrent use.
type Store struct {
	db      *bolt.DB
	path    string
	outboxN atomic.Int64
	commits atomic.Int64 // write transactions committed by this process
	closed  atomic.Bool
}

// Open opens or creates the state file at path (mode 0600; its directory is
// created 0700).
//
// An existing file is checked before use, holding the lock: bbolt's
// structure (both header pages, the high-water mark against the file size,
// every page's bounds, then bbolt's own consistency check) and every
// pcwatch record in it (see checkRecords). A damaged file — truncated,
// overwritten, with a flipped byte in a page or a record, or empty (0
// bytes) — is refused with an *OpenError of kind ErrCorrupt naming what is
// wrong and the fix; nothing in it is changed, and Open never panics. A
// file that does not exist is created. The check reads the whole file
// once: about 0.1 s for 100,000 subscriptions (a 64 MB file; see
// BenchmarkOpen100k), so everything, records included, is checked eagerly —
// except the compressed payloads of records written before version 4
// (which carry zstd's checksum and are checked when read).
//
// A file records the kinds it holds. A kind of resource.All that it does
// not record was added to pcwatch after the file was written: Open creates
// its empty bucket (and records it) before returning, or, read-only,
// treats it as empty without writing. A file that lacks the bucket of a
// kind it records — or, written before kinds were recorded, of one of the
// four kinds of that time — lost it: it is refused as damaged. A kind the
// file records but this build does not know (a file of a later release)
// is left alone.
func Open(path string, o Options) (*Store, error) {
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	existed := true
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		existed = false
	}
	flag := os.O_RDWR | os.O_CREATE
	if !o.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, &OpenError{Path: path, Err: err, Hint: "check the data directory is writable"}
		}
	} else if !existed {
		return nil, &OpenError{Path: path, Err: os.ErrNotExist, Hint: "no watcher has run with this data directory yet"}
	} else {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, &OpenError{Path: path, Err: err}
	}
	// The lock comes first: the file is read only while nobody writes it.
	if err := lockFile(f, !o.ReadOnly, o.LockTimeout); err != nil {
		f.Close()
		if errors.Is(err, errLockTimeout) {
			return nil, &OpenError{Path: path, Kind: ErrLocked, Hint: lockedHint}
		}
		return nil, &OpenError{Path: path, Err: err}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &OpenError{Path: path, Err: err}
	}
	if fi.Size() == 0 && existed {
		f.Close()
		return nil, &OpenError{Path: path, Kind: ErrCorrupt, Err: errors.New("the file is empty (0 bytes)"),
			Hint: "a state file is never empty once written: it was truncated, or replaced, or a first start died before writing anything; " +
				corruptHint(path)}
	}
	if fi.Size() > 0 {
		if err := guard(func() error { return preflight(f, fi.Size()) }); err != nil {
			f.Close()
			return nil, damagedFile(path, err)
		}
	}
	var db *bolt.DB
	err = guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, ReadOnly: o.ReadOnly,
			OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil }})
		return err
	})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		f.Close()
		return nil, &OpenError{Path: path, Kind: ErrLocked, Hint: lockedHint}
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
		f.Close()
		return nil, &OpenError{Path: path, Kind: ErrNotPcwatch, Err: err, Hint: "the file is not a bbolt database written by pcwatch; point --data-dir elsewhere"}
	case err != nil:
		f.Close()
		return nil, damagedFile(path, err)
	}
	// Commits from concurrent poll workers are batched into one fsync;
	// bbolt's default 10ms wait for company would dominate a lone commit.
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &Store{db: db, path: path}
	fail := func(err error) (*Store, error) {
		db.Close()
		var oe *OpenError
		if errors.As(err, &oe) {
			return nil, err
		}
		return nil, damagedFile(path, err)
	}
	if fi.Size() > 0 {
		if err := guard(func() error { return db.View(func(tx *bolt.Tx) error { return checkStructure(tx) }) }); err != nil {
			return fail(err)
		}
	}
	if err := guard(func() error { return s.init(o.ReadOnly) }); err != nil {
		return fail(err)
	}
	return s, nil
}

const lockedHint = "another watcher is running with this data directory; stop it, or use a different --data-dir (a running watcher serves the same views on its --listen address: /api/state, /api/deadlines)"

// damagedFile is Open's error for a damaged file.
func damagedFile(path string, err error) error {
	var se *structureError
	if errors.As(err, &se) && se.foreign {
		return &OpenError{Path: path, Kind: ErrNotPcwatch, Err: err,
			Hint: "the file is not a bbolt database written by pcwatch, or its first pages were overwritten; point --data-dir elsewhere, or if it is pcwatch's: " + corruptHint(path)}
	}
	var de *DamagedError
	if errors.As(err, &de) {
		// Name the records without DamagedError's own advice ("skipped").
		msgs := make([]error, 0, len(de.Records)+1)
		for _, r := range de.Records {
			msgs = append(msgs, r)
		}
		if de.Count > len(de.Records) {
			msgs = append(msgs, fmt.Errorf("and %d more", de.Count-len(de.Records)))
		}
		err = fmt.Errorf("%d damaged record(s): %w", de.Count, joinErrors(msgs))
	}
	return &OpenError{Path: path, Kind: ErrCorrupt, Err: err, Hint: corruptHint(path)}
}

// joinErrors is errors.Join on one line.
func joinErrors(errs []error) error {
	msg := ""
	for i, e := range errs {
		if i > 0 {
			msg += "; "
		}
		msg += e.Error()
	}
	return &joined{msg: msg, errs: errs}
}

type joined struct {
	msg  string
	errs []error
}

func (j *joined) Error() string   { return j.msg }
func (j *joined) Unwrap() []error { return j.errs }

// init checks the file is ours and of a known schema and that its records
// decode, creating the layout in a new, empty file and the buckets of
// kinds added since an existing file was written. A file with foreign
// buckets is refused untouched.
func (s *Store) init(readOnly bool) error {
	// check returns whether the file is fresh (empty) and the kinds it
	// lacks because they were added after it was written.
	check := func(tx *bolt.Tx) (fresh bool, added []*resource.Kind, err error) {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return false, nil, &OpenError{Path: s.path, Kind: ErrNotPcwatch, Hint: "the bbolt file has buckets but no pcwatch metadata; point --data-dir elsewhere"}
			}
			return true, nil, nil
		}
		if string(meta.Get([]byte("magic"))) != magic {
			return false, nil, &OpenError{Path: s.path, Kind: ErrNotPcwatch, Hint: "the metadata does not identify a pcwatch state file"}
		}
		v, _ := binary.Uvarint(meta.Get([]byte("schema")))
		if v != SchemaVersion {
			return false, nil, &OpenError{Path: s.path, Kind: ErrSchema,
				Hint: fmt.Sprintf("file has schema %d, this pcwatch reads %d; use the pcwatch release that wrote it, or start with a fresh --data-dir", v, SchemaVersion)}
		}
		missing := func(b string) error {
			return &OpenError{Path: s.path, Kind: ErrCorrupt, Err: fmt.Errorf("bucket %q is missing", b), Hint: corruptHint(s.path)}
		}
		for _, b := range bookkeeping {
			if tx.Bucket(b) == nil {
				return false, nil, missing(string(b))
			}
		}
		recorded, err := kindsOf(meta)
		if err != nil {
			return false, nil, &OpenError{Path: s.path, Kind: ErrCorrupt, Err: err, Hint: corruptHint(s.path)}
		}
		for _, b := range recorded {
			if tx.Bucket([]byte(b)) == nil {
				return false, nil, missing(b)
			}
		}
		for _, k := range resource.All() {
			if tx.Bucket([]byte(k.Bucket())) == nil {
				added = append(added, k)
			}
		}
		return false, added, nil
	}
	// Everything is checked before anything is written: a refused file is
	// left as it was, and opening a sound one of the kinds this build
	// knows writes nothing.
	var fresh, lacksLater bool
	var added []*resource.Kind
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if fresh, added, err = check(tx); err != nil || fresh {
			return err
		}
		if err := s.checkRecords(tx); err != nil {
			return err
		}
		s.outboxN.Store(int64(tx.Bucket(bOutbox).Stats().KeyN))
		for _, b := range later {
			lacksLater = lacksLater || tx.Bucket(b) == nil
		}
		return nil
	})
	if err != nil || (!fresh && len(added) == 0 && !lacksLater) {
		return err
	}
	if readOnly {
		if fresh {
			return &OpenError{Path: s.path, Kind: ErrNotPcwatch, Hint: "the file is empty"}
		}
		return nil // the added kinds and bookkeeping read as empty
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		fresh, added, err := check(tx)
		if err != nil {
			return err
		}
		if fresh {
			for _, b := range bookkeeping {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			added = resource.All()
		}
		for _, k := range added {
			if _, err := tx.CreateBucket([]byte(k.Bucket())); err != nil {
				return err
			}
		}
		for _, b := range later {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if !fresh && len(added) == 0 {
			return nil // only bookkeeping buckets were added
		}
		var recorded []string // a fresh file records no kind yet
		if !fresh {
			if recorded, err = kindsOf(meta); err != nil {
				return err
			}
		}
		if err := recordKinds(meta, recorded); err != nil {
			return err
		}
		if !fresh {
			return nil
		}
		if err := meta.Put([]byte("magic"), []byte(magic)); err != nil {
			return err
		}
		if err := meta.Put([]byte("schema"), binary.AppendUvarint(nil, SchemaVersion)); err != nil {
			return err
		}
		return meta.Put([]byte("created"), []byte(time.Now().UTC().Format(time.RFC3339)))
	})
}

// recordKinds writes metaKinds: the kinds the file recorded (a later
// release's among them) and every kind of this build, whose buckets exist
// by now.
func recordKinds(meta *bolt.Bucket, recorded []string) error {
	names := slices.Clone(recorded)
	for _, k := range resource.All() {
		if !slices.Contains(names, k.Bucket()) {
			names = append(names, k.Bucket())
		}
	}
	v, err := json.Marshal(names)
	if err != nil {
		return err
	}
	return meta.Put(metaKinds, v)
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close closes the file. It is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.db.Close()
}

// SplitKey splits a snapshot key into customer and resource ids.
func SplitKey(k string) (customerID, id string) {
	customerID, id, _ = strings.Cut(k, "/")
	return
}

// pendingKey is the key of an entity's pending mark and tombstone:
// "<kind name>\x00<record key>".
func pendingKey(kind *resource.Kind, k string) []byte { return []byte(kind.Name() + "\x00" + k) }

// Snapshot is what the store knows of one customer. Records' bytes alias
// bbolt memory: valid only inside the View callback.
type Snapshot struct {
	CustomerID string
	Records    map[*resource.Kind]map[string]Record  // by resource id
	Pending    map[*resource.Kind]map[string]Pending // by resource id
	// Baselined tells, per kind, whether a complete listing of the
	// customer's entities of that kind was ever committed. Until then a
	// listing is a baseline, not a flood of additions.
	Baselined map[*resource.Kind]bool
	// BaselinedScopes tells the same for scopes within a kind (product
	// target views), keyed by scope.
	BaselinedScopes map[*resource.Kind]map[string]bool
	// Tombs holds, per kind and resource id, the revision of removed
	// entities, so an entity that comes back continues its revisions and
	// never reuses an event id.
	Tombs map[*resource.Kind]map[string]uint64
}

// Tomb returns the last revision of a removed entity (0 if none).
func (r *ReadTx) Tomb(kind *resource.Kind, key string) uint64 {
	v := r.tx.Bucket(bTombs).Get(pendingKey(kind, key))
	n, _ := binary.Uvarint(v)
	return n
}

// damaged collects the damaged records one read met.
func (r *ReadTx) damaged() *DamagedError { return &DamagedError{Path: r.path} }

func baselineKey(kind *resource.Kind, customerID string) []byte {
	return []byte(kind.Name() + "\x00" + customerID)
}

// Baselined reports whether a complete listing of kind was committed for
// customerID ("" for the customer list itself).
func (r *ReadTx) Baselined(kind *resource.Kind, customerID string) bool {
	return r.tx.Bucket(bBaseline).Get(baselineKey(kind, customerID)) != nil
}

// ReadTx is a read transaction.
//
// Its readers never read a damaged record as absent: a record that does not
// decode is skipped, the read goes on with the others, and the reader then
// returns a *DamagedError naming every one (errors.Is ErrCorrupt), unless fn
// failed first. A caller that gets one must not treat the records it did not
// see as gone.
type ReadTx struct {
	tx   *bolt.Tx
	path string
}

// View runs fn in a read transaction. It never writes. A memory fault while
// reading (the file truncated or overwritten under the running process)
// is returned as an error matching ErrCorrupt, not a crash.
func (s *Store) View(fn func(*ReadTx) error) (err error) {
	if s.closed.Load() {
		return ErrClosed
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.faultGuard(&err)
	return s.db.View(func(tx *bolt.Tx) error { return fn(&ReadTx{tx: tx, path: s.path}) })
}

// read decodes a stored record, naming it in its error.
func read(kind *resource.Kind, key string, v []byte) (Record, error) {
	rec, err := decodeRecord(key, v)
	if err != nil {
		return rec, &RecordError{Kind: kind.Name(), Key: key, Err: err}
	}
	rec.kind, rec.key = kind, key
	return rec, nil
}

// Get returns one record; ok is false when there is none. A damaged record
// gives a *DamagedError (ok true: it exists).
func (r *ReadTx) Get(kind *resource.Kind, key string) (rec Record, ok bool, err error) {
	b := snapshots(r.tx, kind)
	if b == nil {
		return Record{}, false, nil
	}
	v := b.Get([]byte(key))
	if v == nil {
		return Record{}, false, nil
	}
	rec, err = read(kind, key, v)
	if err != nil {
		d := r.damaged()
		d.Add(err.(*RecordError))
		return Record{}, true, d
	}
	return rec, true, nil
}

// Customer returns the snapshot of a customer's entities of the given
// kinds (resource.Customers reads the customer record itself, keyed "";
// the other kinds are the customer's own). If any
// of its records is damaged it returns no snapshot and a *DamagedError
// naming them all: a diff against a partial snapshot would read the
// damaged entities as new.
func (r *ReadTx) Customer(customerID string, kinds ...*resource.Kind) (*Snapshot, error) {
	dmg := r.damaged()
	snap := &Snapshot{CustomerID: customerID, Records: map[*resource.Kind]map[string]Record{}, Pending: map[*resource.Kind]map[string]Pending{},
		Baselined: map[*resource.Kind]bool{}, BaselinedScopes: map[*resource.Kind]map[string]bool{}, Tombs: map[*resource.Kind]map[string]uint64{}}
	pend := r.tx.Bucket(bPending)
	tombs := r.tx.Bucket(bTombs)
	for _, k := range kinds {
		snap.Baselined[k] = r.Baselined(k, customerID)
		snap.BaselinedScopes[k] = map[string]bool{}
		bp := baselineKey(k, customerID+"/")
		bc := r.tx.Bucket(bBaseline).Cursor()
		for kk, _ := bc.Seek(bp); kk != nil && bytes.HasPrefix(kk, bp); kk, _ = bc.Next() {
			snap.BaselinedScopes[k][string(kk[len(bp):])] = true
		}
		snap.Tombs[k] = map[string]uint64{}
		// The customer's own record is keyed by its id, its entities by
		// "<customerId>/<id>".
		own := k.Parent() == nil
		if !own {
			tp := pendingKey(k, customerID+"/")
			tc := tombs.Cursor()
			for kk, v := tc.Seek(tp); kk != nil && bytes.HasPrefix(kk, tp); kk, v = tc.Next() {
				n, _ := binary.Uvarint(v)
				snap.Tombs[k][string(kk[len(tp):])] = n
			}
		} else if n := r.Tomb(k, customerID); n > 0 {
			snap.Tombs[k][""] = n
		}
		recs := map[string]Record{}
		pends := map[string]Pending{}
		snap.Records[k], snap.Pending[k] = recs, pends
		b := snapshots(r.tx, k)
		if b == nil {
			continue // a kind added since the file was written: none yet
		}
		if own {
			if v := b.Get([]byte(customerID)); v != nil {
				rec, err := read(k, customerID, v)
				if err != nil {
					dmg.Add(err.(*RecordError))
				} else {
					recs[""] = rec
				}
			}
			if v := pend.Get(pendingKey(k, customerID)); v != nil {
				p, err := decodePending(v)
				if err != nil {
					dmg.Add(&RecordError{Kind: "pending " + k.Name(), Key: customerID, Err: err})
				} else {
					pends[""] = p
				}
			}
			continue
		}
		prefix := []byte(customerID + "/")
		c := b.Cursor()
		for kk, v := c.Seek(prefix); kk != nil && bytes.HasPrefix(kk, prefix); kk, v = c.Next() {
			key := string(kk)
			rec, err := read(k, key, v)
			if err != nil {
				dmg.Add(err.(*RecordError))
				continue
			}
			recs[key[len(prefix):]] = rec
		}
		pp := pendingKey(k, customerID+"/")
		pc := pend.Cursor()
		for kk, v := pc.Seek(pp); kk != nil && bytes.HasPrefix(kk, pp); kk, v = pc.Next() {
			p, err := decodePending(v)
			if err != nil {
				dmg.Add(&RecordError{Kind: "pending " + k.Name(), Key: customerID + "/" + string(kk[len(pp):]), Err: err})
				continue
			}
			pends[string(kk[len(pp):])] = p
		}
	}
	if err := dmg.orNil(); err != nil {
		return nil, err
	}
	return snap, nil
}

// ForEach calls fn for every record of a kind, in key order. Keys are
// "customerId/resourceId" ("customerId" for customers). A damaged record is
// skipped and named in the *DamagedError returned after all the others.
func (r *ReadTx) ForEach(kind *resource.Kind, fn func(key string, rec Record) error) error {
	dmg := r.damaged()
	b := snapshots(r.tx, kind)
	if b == nil {
		return nil
	}
	err := b.ForEach(func(k, v []byte) error {
		key := string(k)
		rec, err := read(kind, key, v)
		if err != nil {
			dmg.Add(err.(*RecordError))
			return nil
		}
		return fn(key, rec)
	})
	if err != nil {
		return err
	}
	return dmg.orNil()
}

// TombsAll calls fn for every tombstone of a kind, skipping damaged ones
// as ForEach does.
func (r *ReadTx) TombsAll(kind *resource.Kind, fn func(key string, rev uint64) error) error {
	dmg := r.damaged()
	prefix := pendingKey(kind, "")
	c := r.tx.Bucket(bTombs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		n, l := binary.Uvarint(v)
		if l <= 0 || l != len(v) {
			dmg.Add(&RecordError{Kind: "tombstone of " + kind.Name(), Key: string(k[len(prefix):]), Err: errors.New("not a revision number")})
			continue
		}
		if err := fn(string(k[len(prefix):]), n); err != nil {
			return err
		}
	}
	return dmg.orNil()
}

// PendingAll calls fn for every pending mark of a kind, skipping damaged
// ones as ForEach does.
func (r *ReadTx) PendingAll(kind *resource.Kind, fn func(key string, p Pending) error) error {
	dmg := r.damaged()
	prefix := pendingKey(kind, "")
	c := r.tx.Bucket(bPending).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		p, err := decodePending(v)
		if err != nil {
			dmg.Add(&RecordError{Kind: "pending " + kind.Name(), Key: string(k[len(prefix):]), Err: err})
			continue
		}
		if err := fn(string(k[len(prefix):]), p); err != nil {
			return err
		}
	}
	return dmg.orNil()
}

// LedgerForEach calls fn for every deadline-ledger key.
func (r *ReadTx) LedgerForEach(fn func(key string) error) error {
	return r.tx.Bucket(bLedger).ForEach(func(k, _ []byte) error { return fn(string(k)) })
}

// LedgerHas reports whether a deadline-ledger key was recorded.
func (r *ReadTx) LedgerHas(k string) bool { return r.tx.Bucket(bLedger).Get([]byte(k)) != nil }

// Failure returns a customer's failure streak.
func (r *ReadTx) Failure(customerID string) (Failure, bool) {
	v := r.tx.Bucket(bFailures).Get([]byte(customerID))
	if v == nil {
		return Failure{}, false
	}
	var f Failure
	if json.Unmarshal(v, &f) != nil {
		return Failure{}, false
	}
	return f, true
}

// Failure is a customer's run of consecutive failed polls.
type Failure struct {
	Count     int       `json:"count"`
	FirstAt   time.Time `json:"firstAt"`
	LastAt    time.Time `json:"lastAt"`
	LastError string    `json:"lastError"`
}

// Put writes a snapshot record.
type Put struct {
	Kind   *resource.Kind
	Key    string // customerId/resourceId, or customerId for customers
	Record Record
}

// Ref names a record.
type Ref struct {
	Kind *resource.Kind
	Key  string
}

// PendingPut marks an entity pending removal.
type PendingPut struct {
	Ref
	Pending Pending
}

// Change is everything one customer's poll (or one deadline evaluation)
// changes. Commit applies it in one transaction.
type Change struct {
	Puts           []Put
	Deletes        []Ref // records to delete (their pending marks go too)
	DeletePrefixes []Ref // Key is a customer id: delete all its records of Kind
	PendingPuts    []PendingPut
	PendingDeletes []Ref
	Events         []events.Envelope
	Ledger         []string // deadline-ledger keys to record as fired
	LedgerDeletes  []string
	Failures       map[string]*Failure // customer id -> streak; nil deletes
	// Baselines records that a complete listing of Kind was committed for
	// customer Key ("" for the customer list, "customerId/scope" for a
	// scope such as a product target view).
	Baselines       []Ref
	BaselineDeletes []Ref
	// ForgetCustomers drops removed customers' bookkeeping: last success,
	// failure streak, baseline marks and pending hint.
	ForgetCustomers []string
	// Hints are merged into the customers' pending hints (Hint.Merge);
	// HintsDone removes those a refresh covered.
	Hints     []Hint
	HintsDone []HintDone
	// Cursors set named cursor values (nil deletes): where a change feed
	// such as the activity log was read up to.
	Cursors map[string][]byte
}

// Empty reports whether the change writes nothing.
func (c *Change) Empty() bool {
	return len(c.Puts) == 0 && len(c.Deletes) == 0 && len(c.DeletePrefixes) == 0 && len(c.PendingPuts) == 0 &&
		len(c.PendingDeletes) == 0 && len(c.Events) == 0 && len(c.Ledger) == 0 && len(c.LedgerDeletes) == 0 && len(c.Failures) == 0 &&
		len(c.Baselines) == 0 && len(c.BaselineDeletes) == 0 && len(c.ForgetCustomers) == 0 &&
		len(c.Hints) == 0 && len(c.HintsDone) == 0 && len(c.Cursors) == 0
}

// Commit applies c atomically: when it returns nil, all of c is durable
// (fsynced); when it returns an error, none of c was written. A crash
// during Commit leaves the state before c or the state with all of c.
// Concurrent commits are batched into shared transactions (bbolt's Batch),
// each change still all-or-nothing. An empty change writes nothing. Commit
// does not modify c, and c must not change until Commit returns.
//
// bbolt's Batch may run a change's transaction function more than once:
// when one function of a batch fails, the batch is rolled back, the failing
// function is re-run alone and the others are run again together. So
// apply, that function, only reads c and writes through its transaction,
// which a rollback undoes: it touches nothing outside it — no counters, no
// logs, no fault points (the crash points of package fault sit before and
// after the Batch call) — and a re-run against the state the other changes
// left computes the same writes (only the ledger's "fired at" stamps,
// which nothing compares, take the later time).
func (s *Store) Commit(c *Change) error {
	if c.Empty() {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	crashBeforeCommit()
	err := s.db.Batch(func(tx *bolt.Tx) error { return apply(tx, c) })
	if err != nil {
		return fmt.Errorf("committing to %s: %w", s.path, err)
	}
	s.commits.Add(1) // an upper bound: batched calls share one commit
	crashAfterCommit()
	s.outboxN.Add(int64(len(c.Events)))
	return nil
}

// snapshotFill is the fill factor of snapshot pages when they split.
// bbolt's default (0.5) suits random inserts that will fill the pages
// later; snapshot records are written once and rarely, so half-empty pages
// would double the file (and the memory it maps).
const snapshotFill = 0.9

func apply(tx *bolt.Tx, c *Change) error {
	pend := tx.Bucket(bPending)
	tombs := tx.Bucket(bTombs)
	for _, k := range resource.All() {
		if b := snapshots(tx, k); b != nil {
			b.FillPercent = snapshotFill
		}
	}
	for _, p := range c.Puts {
		b, err := writable(tx, p.Kind)
		if err != nil {
			return err
		}
		if b.Get([]byte(p.Key)) == nil {
			if err := tombs.Delete(pendingKey(p.Kind, p.Key)); err != nil {
				return err
			}
		}
		if err := b.Put([]byte(p.Key), encodeRecord(p.Key, &p.Record)); err != nil {
			return err
		}
	}
	// A removed entity leaves a tombstone with the revision of its removal,
	// so that if it comes back its revisions (and event ids) continue.
	bury := func(kind *resource.Kind, k, v []byte) error {
		rec, err := decodeRecord(string(k), v)
		if err != nil {
			return &RecordError{Kind: kind.Name(), Key: string(k), Err: err}
		}
		return tombs.Put(pendingKey(kind, string(k)), binary.AppendUvarint(nil, rec.Rev+1))
	}
	for _, d := range c.Deletes {
		b, err := writable(tx, d.Kind)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(d.Key)); v != nil {
			if err := bury(d.Kind, []byte(d.Key), v); err != nil {
				return err
			}
		}
		if err := b.Delete([]byte(d.Key)); err != nil {
			return err
		}
		if err := pend.Delete(pendingKey(d.Kind, d.Key)); err != nil {
			return err
		}
	}
	for _, d := range c.DeletePrefixes {
		b, err := writable(tx, d.Kind)
		if err != nil {
			return err
		}
		prefix := []byte(d.Key + "/")
		cur := b.Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Seek(prefix) {
			if err := bury(d.Kind, k, v); err != nil {
				return err
			}
			if err := cur.Delete(); err != nil {
				return err
			}
		}
		if err := deletePrefix(pend, pendingKey(d.Kind, d.Key+"/")); err != nil {
			return err
		}
	}
	for _, p := range c.PendingPuts {
		if err := pend.Put(pendingKey(p.Kind, p.Key), encodePending(p.Pending)); err != nil {
			return err
		}
	}
	for _, d := range c.PendingDeletes {
		if err := pend.Delete(pendingKey(d.Kind, d.Key)); err != nil {
			return err
		}
	}
	ob := tx.Bucket(bOutbox)
	for _, e := range c.Events {
		seq, err := ob.NextSequence()
		if err != nil {
			return err
		}
		if err := ob.Put(binary.BigEndian.AppendUint64(nil, seq), encodeEnvelope(e)); err != nil {
			return err
		}
	}
	lb := tx.Bucket(bLedger)
	now := []byte(time.Now().UTC().Format(time.RFC3339))
	for _, k := range c.Ledger {
		if err := lb.Put([]byte(k), now); err != nil {
			return err
		}
	}
	for _, k := range c.LedgerDeletes {
		if err := lb.Delete([]byte(k)); err != nil {
			return err
		}
	}
	fb := tx.Bucket(bFailures)
	for id, f := range c.Failures {
		if f == nil {
			if err := fb.Delete([]byte(id)); err != nil {
				return err
			}
			continue
		}
		v, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if err := fb.Put([]byte(id), v); err != nil {
			return err
		}
	}
	bb := tx.Bucket(bBaseline)
	for _, r := range c.Baselines {
		if err := bb.Put(baselineKey(r.Kind, r.Key), []byte{1}); err != nil {
			return err
		}
	}
	for _, r := range c.BaselineDeletes {
		if err := bb.Delete(baselineKey(r.Kind, r.Key)); err != nil {
			return err
		}
	}
	for _, id := range c.ForgetCustomers {
		for _, k := range resource.All() {
			if err := bb.Delete(baselineKey(k, id)); err != nil {
				return err
			}
			if err := deletePrefix(bb, baselineKey(k, id+"/")); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bLastOK).Delete([]byte(id)); err != nil {
			return err
		}
		if err := fb.Delete([]byte(id)); err != nil {
			return err
		}
	}
	return applyHints(tx, c)
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// NextCycle increments and returns the poll-cycle counter.
func (s *Store) NextCycle() (uint64, error) {
	var n uint64
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get([]byte("cycle")); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		n++
		return meta.Put([]byte("cycle"), binary.BigEndian.AppendUint64(nil, n))
	})
	return n, err
}

// Cycle returns the last cycle number handed out.
func (s *Store) Cycle() (uint64, error) {
	var n uint64
	err := s.View(func(r *ReadTx) error {
		if v := r.tx.Bucket(bMeta).Get([]byte("cycle")); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}

// SetLastOK records the last successful poll of customers, all in one
// transaction (the poller calls it once per cycle, so unchanged customers
// cost one small write per cycle in total, not one each).
func (s *Store) SetLastOK(m map[string]time.Time) error {
	if len(m) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bLastOK)
		for id, t := range m {
			if err := b.Put([]byte(id), binary.AppendVarint(nil, t.UnixNano())); err != nil {
				return err
			}
		}
		return nil
	})
}

// LastOK returns the last successful poll per customer.
func (s *Store) LastOK() (map[string]time.Time, error) {
	m := map[string]time.Time{}
	err := s.View(func(r *ReadTx) error {
		return r.tx.Bucket(bLastOK).ForEach(func(k, v []byte) error {
			ns, _ := binary.Varint(v)
			m[string(k)] = time.Unix(0, ns).UTC()
			return nil
		})
	})
	return m, err
}

// LedgerLen returns the number of deadline-ledger entries.
func (s *Store) LedgerLen() (int, error) {
	n := 0
	err := s.View(func(r *ReadTx) error {
		n = r.tx.Bucket(bLedger).Stats().KeyN
		return nil
	})
	return n, err
}

// Counts is a summary of the file's contents.
type Counts struct {
	Records map[*resource.Kind]int
	Pending int
	Ledger  int
	Outbox  int
}

// Counts walks the buckets; it is for inspection, not hot paths.
func (s *Store) Counts() (Counts, error) {
	c := Counts{Records: map[*resource.Kind]int{}}
	err := s.View(func(r *ReadTx) error {
		for _, k := range resource.All() {
			if b := snapshots(r.tx, k); b != nil {
				c.Records[k] = b.Stats().KeyN
			}
		}
		c.Pending = r.tx.Bucket(bPending).Stats().KeyN
		c.Ledger = r.tx.Bucket(bLedger).Stats().KeyN
		c.Outbox = r.tx.Bucket(bOutbox).Stats().KeyN
		return nil
	})
	return c, err
}

// WriteStats are cumulative write figures of this process's transactions.
type WriteStats struct {
	Commits   int64 // write transactions committed
	PageBytes int64 // bytes of dirty pages written
	PageSize  int
}

// Bytes is what the transactions wrote to the file: dirty pages plus one
// meta page per commit.
func (w WriteStats) Bytes() int64 { return w.PageBytes + w.Commits*int64(w.PageSize) }

// WriteStats returns cumulative write figures since Open.
func (s *Store) WriteStats() WriteStats {
	st := s.db.Stats()
	return WriteStats{Commits: s.commits.Load(), PageBytes: st.TxStats.GetPageAlloc(), PageSize: s.db.Info().PageSize}
}

// update runs fn in a write transaction and counts it.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.db.Update(fn)
	if err == nil {
		s.commits.Add(1)
	}
	return err
}
