package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/resource"
)

// Checking a file before use.
//
// bbolt reads the file through a memory map and trusts it: a page id or an
// element offset that points past the end of the file faults (SIGBUS or
// SIGSEGV), which Go cannot recover unless the goroutine asked for it, and
// bbolt's own consistency check (Tx.Check) runs in a goroutine of its own.
// So Open, holding the file lock, first walks the file's B+tree with plain
// reads (preflight): both meta pages, the high-water mark against the file
// size, the freelist, and every reachable page's header and element bounds.
// Only a file that passes is handed to bbolt, whose Tx.Check then verifies
// the logical structure (key order, pages referenced once, freed pages not
// reachable), and then every record of pcwatch's is decoded (their CRC-32C
// checked). Everything runs under SetPanicOnFault and recover, as a last
// line: Open never panics.

// bbolt's on-disk layout (file format version 2) as far as preflight reads
// it; see go.etcd.io/bbolt/internal/common. Integers are in the machine's
// byte order, as bbolt writes them.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	metaSize         = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagMeta         = 0x04
	flagFreelist     = 0x10
	leafBucket       = 0x01
	noFreelist       = ^uint64(0)
	maxTreeDepth     = 64
)

var ne = binary.NativeEndian

type boltMeta struct {
	pageSize            uint32
	root, freelist, hwm uint64
	txid                uint64
}

// readMeta reads and validates the meta page at off, as bbolt's
// Meta.Validate does: magic, version, FNV-64a checksum.
func readMeta(f *os.File, off int64) (boltMeta, error) {
	var m boltMeta
	buf := make([]byte, pageHeaderSize+metaSize)
	if n, err := f.ReadAt(buf, off); n < len(buf) {
		if err == nil || err == io.EOF {
			err = errShort
		}
		return m, err
	}
	b := buf[pageHeaderSize:]
	if ne.Uint32(b[0:]) != boltMagic {
		return m, errNoMagic
	}
	if ne.Uint32(b[4:]) != boltVersion {
		return m, fmt.Errorf("bbolt file format version %d, this build reads %d", ne.Uint32(b[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != ne.Uint64(b[56:]) {
		return m, errMetaChecksum
	}
	m.pageSize = ne.Uint32(b[8:])
	m.root, m.freelist, m.hwm, m.txid = ne.Uint64(b[16:]), ne.Uint64(b[32:]), ne.Uint64(b[40:]), ne.Uint64(b[48:])
	return m, nil
}

var (
	errNoMagic      = errors.New("no bbolt header")
	errMetaChecksum = errors.New("header checksum mismatch")
	errShort        = errors.New("the file ends inside it")
)

// structureError is damage preflight found; foreign says the file does not
// look like a bbolt file at all.
type structureError struct {
	msg     string
	foreign bool
}

func (e *structureError) Error() string { return e.msg }

func damagedf(format string, a ...any) error { return &structureError{msg: fmt.Sprintf(format, a...)} }

// preflight checks that everything bbolt will touch lies inside the file.
// It reads the file with ReadAt, never through a map, so nothing it meets
// can fault. It needs the file lock (nobody may write meanwhile).
func preflight(f *os.File, size int64) error {
	// The page size comes from the first meta page, or, when that one is
	// damaged, from a valid second one at one of the sizes bbolt tries.
	m0, err0 := readMeta(f, 0)
	pageSize := int64(m0.pageSize)
	if err0 != nil {
		pageSize = 0
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= size-1024 {
				break
			}
			if m, err := readMeta(f, pos); err == nil && int64(m.pageSize) == pos {
				pageSize = pos
				break
			}
		}
	}
	if pageSize == 0 {
		switch {
		case errors.Is(err0, errShort):
			return damagedf("the file is %d bytes, too short to hold its header: it was truncated", size)
		case errors.Is(err0, errNoMagic) && !holdsMagic(f):
			return &structureError{msg: "no valid bbolt header page", foreign: true}
		}
		return damagedf("both header (meta) pages are damaged or overwritten (first: %v); the file holds pcwatch data", err0)
	}
	if pageSize < 1024 || pageSize > 1<<16 || pageSize&(pageSize-1) != 0 {
		return damagedf("implausible page size %d in the header", pageSize)
	}
	if size < 2*pageSize {
		return damagedf("the file is %d bytes, shorter than its two header pages (%d bytes each): it was truncated", size, pageSize)
	}
	// bbolt can fall back to the other header page when one fails its
	// checksum (a torn write), but its consistency check, and this one,
	// need both pages to still be header pages.
	for id := int64(0); id < 2; id++ {
		var hdr [pageHeaderSize]byte
		if _, err := f.ReadAt(hdr[:], id*pageSize); err != nil {
			return damagedf("reading header page %d: %v", id, err)
		}
		if gotID, flags := ne.Uint64(hdr[0:]), ne.Uint16(hdr[8:]); gotID != uint64(id) || flags != flagMeta {
			return damagedf("header page %d is overwritten (its page header reads page %d, type %#x)", id, gotID, flags)
		}
	}
	m1, err1 := readMeta(f, pageSize)
	// bbolt uses the valid meta with the higher transaction id.
	var m boltMeta
	switch {
	case err0 == nil && err1 == nil:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case err0 == nil:
		m = m0
	case err1 == nil:
		m = m1
	default:
		return damagedf("both header (meta) pages are damaged: %v; %v", err0, err1)
	}
	if int64(m.pageSize) != pageSize {
		return damagedf("the header pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
	}
	if m.hwm < 3 || m.hwm > uint64(size/pageSize) {
		return damagedf("the file is %d bytes but its last commit reaches %d bytes (%d pages of %d): it was truncated",
			size, m.hwm*uint64(pageSize), m.hwm, pageSize)
	}
	c := &walker{f: f, pageSize: pageSize, hwm: m.hwm, seen: make([]bool, m.hwm)}
	if m.freelist != noFreelist {
		if err := c.freelist(m.freelist); err != nil {
			return err
		}
	}
	return c.tree(m.root, "root bucket", 0)
}

// holdsMagic reports whether the file contains pcwatch's metadata marker,
// telling a pcwatch file with destroyed headers from a foreign one.
func holdsMagic(f *os.File) bool {
	buf := make([]byte, 1<<16+len(magic))
	for off := int64(0); ; off += 1 << 16 {
		n, err := f.ReadAt(buf, off)
		if bytes.Contains(buf[:n], []byte(magic)) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

type walker struct {
	f        *os.File
	pageSize int64
	hwm      uint64
	seen     []bool
}

// page reads a page and its overflow, checking its header names it and
// that it lies below the high-water mark.
func (w *walker) page(id uint64, what string) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, damagedf("%s: page id %d outside the file's pages 2..%d", what, id, w.hwm-1)
	}
	buf := make([]byte, w.pageSize)
	if _, err := w.f.ReadAt(buf, int64(id)*w.pageSize); err != nil {
		return nil, damagedf("%s: reading page %d: %v", what, id, err)
	}
	if got := ne.Uint64(buf[0:]); got != id {
		return nil, damagedf("%s: page %d identifies itself as page %d", what, id, got)
	}
	overflow := uint64(ne.Uint32(buf[12:]))
	if id+overflow >= w.hwm {
		return nil, damagedf("%s: page %d and its %d overflow pages run past the file's last page %d", what, id, overflow, w.hwm-1)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, damagedf("%s: page %d is referenced twice", what, i)
		}
		w.seen[i] = true
	}
	if overflow > 0 {
		buf = append(buf, make([]byte, int64(overflow)*w.pageSize)...)
		if _, err := w.f.ReadAt(buf[w.pageSize:], (int64(id)+1)*w.pageSize); err != nil {
			return nil, damagedf("%s: reading page %d's overflow: %v", what, id, err)
		}
	}
	return buf, nil
}

func (w *walker) freelist(id uint64) error {
	p, err := w.page(id, "freelist")
	if err != nil {
		return err
	}
	if flags := ne.Uint16(p[8:]); flags != flagFreelist {
		return damagedf("freelist: page %d has type %#x, not a freelist", id, flags)
	}
	start, count := uint64(pageHeaderSize), uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return damagedf("freelist: page %d is too short", id)
		}
		count, start = ne.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if count > (uint64(len(p))-start)/8 {
		return damagedf("freelist: page %d claims %d free pages, more than it holds", id, count)
	}
	for i := uint64(0); i < count; i++ {
		if free := ne.Uint64(p[start+8*i:]); free < 2 || free >= w.hwm {
			return damagedf("freelist: free page id %d outside the file's pages 2..%d", free, w.hwm-1)
		}
	}
	return nil
}

// tree checks the B+tree rooted at page id.
func (w *walker) tree(id uint64, what string, depth int) error {
	if depth > maxTreeDepth {
		return damagedf("%s: the tree is deeper than %d levels (a cycle)", what, maxTreeDepth)
	}
	p, err := w.page(id, what)
	if err != nil {
		return err
	}
	return w.node(p, id, what, depth)
}

// node checks one page's elements: p is the page (with its overflow) or an
// inline bucket's page; every key and value must lie inside it.
func (w *walker) node(p []byte, id uint64, what string, depth int) error {
	if len(p) < pageHeaderSize {
		return damagedf("%s: page %d is shorter than a page header", what, id)
	}
	flags, count := ne.Uint16(p[8:]), uint64(ne.Uint16(p[10:]))
	if flags != flagBranch && flags != flagLeaf {
		return damagedf("%s: page %d has type %#x, neither branch nor leaf", what, id, flags)
	}
	if pageHeaderSize+count*elementSize > uint64(len(p)) {
		return damagedf("%s: page %d claims %d elements, more than it holds", what, id, count)
	}
	if flags == flagBranch && count == 0 {
		return damagedf("%s: branch page %d is empty", what, id)
	}
	for i := uint64(0); i < count; i++ {
		e := p[pageHeaderSize+i*elementSize:]
		at := pageHeaderSize + i*elementSize
		if flags == flagBranch {
			pos, ksize, child := uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:])), ne.Uint64(e[8:])
			if at+pos+ksize > uint64(len(p)) {
				return damagedf("%s: page %d: key %d runs past the page", what, id, i)
			}
			if err := w.tree(child, what, depth+1); err != nil {
				return err
			}
			continue
		}
		eflags, pos, ksize, vsize := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		if at+pos+ksize+vsize > uint64(len(p)) {
			return damagedf("%s: page %d: key/value %d runs past the page", what, id, i)
		}
		if eflags&leafBucket == 0 {
			continue
		}
		// A bucket: a header, then either a root page id or, for a small
		// bucket, its page inline.
		k := p[at+pos : at+pos+ksize]
		v := p[at+pos+ksize : at+pos+ksize+vsize]
		name := fmt.Sprintf("bucket %q", k)
		if len(v) < bucketHeaderSize {
			return damagedf("%s: page %d: %s has a truncated header", what, id, name)
		}
		if depth > maxTreeDepth {
			return damagedf("%s: buckets nest deeper than %d levels", what, maxTreeDepth)
		}
		if root := ne.Uint64(v); root != 0 {
			if err := w.tree(root, name, depth+1); err != nil {
				return err
			}
		} else if err := w.node(v[bucketHeaderSize:], id, name+" (inline)", depth+1); err != nil {
			return err
		}
	}
	return nil
}

// guard runs fn with memory faults turned into panics (bbolt reads through
// a map: a fault is a damaged or truncated file) and every panic into an
// error naming it. Open uses it around everything that reads the file.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading it failed: %v", r)
		}
	}()
	return fn()
}

// faultGuard is guard for callers' transactions: it turns only memory
// faults (the file was truncated or overwritten while open) into an error,
// and lets any other panic through.
func (s *Store) faultGuard(err *error) {
	if r := recover(); r != nil {
		if f, ok := r.(interface{ Addr() uintptr }); ok {
			*err = fmt.Errorf("state file %s: %w: a read faulted at address %#x: the file was truncated or overwritten while open (stop the watcher; %s)",
				s.path, ErrCorrupt, f.Addr(), corruptHint(s.path))
			return
		}
		panic(r)
	}
}

var errLockTimeout = errors.New("lock timeout")

// checkStructure runs bbolt's consistency check on tx, which must be the
// only transaction (Open's), and returns the first problems it reports.
func checkStructure(tx *bolt.Tx) error {
	var errs []error
	n := 0
	for err := range tx.Check() {
		n++
		if len(errs) < 3 {
			errs = append(errs, err)
		}
	}
	if n == 0 {
		return nil
	}
	if n > len(errs) {
		errs = append(errs, fmt.Errorf("and %d more problems", n-len(errs)))
	}
	return &structureError{msg: "bbolt's consistency check failed: " + errors.Join(errs...).Error()}
}

// checkRecords decodes every pcwatch record in tx: snapshots (their
// CRC-32C; a version 2 or 3 record's compressed payloads are checked when
// read), pending marks, tombstones, outbox events, bookkeeping. It returns
// a *DamagedError naming what does not decode.
func (s *Store) checkRecords(tx *bolt.Tx) error {
	d := &DamagedError{Path: s.path}
	bad := func(kind string, k []byte, err error) { d.Add(&RecordError{Kind: kind, Key: string(k), Err: err}) }
	for _, k := range resource.All() {
		b := snapshots(tx, k)
		if b == nil {
			continue // added since the file was written (read-only open)
		}
		_ = b.ForEach(func(key, v []byte) error {
			if _, err := decodeRecord(string(key), v); err != nil {
				bad(k.Name(), key, err)
			}
			return nil
		})
	}
	_ = tx.Bucket(bPending).ForEach(func(k, v []byte) error {
		if _, err := decodePending(v); err != nil {
			bad("pending mark", k, err)
		}
		return nil
	})
	uvarint := func(bucket []byte, kind string) {
		_ = tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if _, n := binary.Uvarint(v); n <= 0 || n != len(v) {
				bad(kind, k, errors.New("not a number"))
			}
			return nil
		})
	}
	uvarint(bTombs, "tombstone")
	_ = tx.Bucket(bLastOK).ForEach(func(k, v []byte) error {
		if _, n := binary.Varint(v); n <= 0 || n != len(v) {
			bad("last success", k, errors.New("not a time"))
		}
		return nil
	})
	_ = tx.Bucket(bFailures).ForEach(func(k, v []byte) error {
		var f Failure
		if err := json.Unmarshal(v, &f); err != nil {
			bad("failure streak", k, err)
		}
		return nil
	})
	_ = tx.Bucket(bOutbox).ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			bad("outbox event", k, errors.New("key is not a sequence number"))
		} else if _, err := decodeEnvelope(v); err != nil {
			bad("outbox event", []byte(outboxKey(k)), err)
		}
		return nil
	})
	if v := tx.Bucket(bMeta).Get([]byte("cycle")); v != nil && len(v) != 8 {
		bad("metadata", []byte("cycle"), errors.New("not a cycle number"))
	}
	return d.orNil()
}
