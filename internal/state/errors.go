package state

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Open returns an *OpenError that matches one of the first
// four through errors.Is; a reader that meets a damaged record returns a
// *RecordError or *DamagedError, which match ErrCorrupt.
var (
	// ErrLocked: another process (another watcher) holds the file.
	ErrLocked = errors.New("state file is locked by another process")
	// ErrNotPcwatch: the file is not a pcwatch state file.
	ErrNotPcwatch = errors.New("not a pcwatch state file")
	// ErrSchema: the file was written by an unknown schema version.
	ErrSchema = errors.New("unsupported state schema version")
	// ErrCorrupt: the file (or one record in it) is damaged: truncated,
	// overwritten, or with bytes that are not what pcwatch wrote.
	ErrCorrupt = errors.New("state file is damaged")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("state store is closed")
)

// OpenError explains why a state file could not be opened, naming the file
// and what to do. Nothing in the file was changed.
type OpenError struct {
	Path string
	Kind error // ErrLocked, ErrNotPcwatch, ErrSchema, ErrCorrupt, or nil for I/O errors
	Hint string
	Err  error
}

func (e *OpenError) Error() string {
	msg := fmt.Sprintf("state file %s", e.Path)
	if e.Kind != nil {
		msg += ": " + e.Kind.Error()
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *OpenError) Unwrap() error { return e.Err }

// Is matches the error's kind.
func (e *OpenError) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// corruptHint is the fix for a damaged file, naming it.
func corruptHint(path string) string {
	return "nothing in it was changed. Restore it from a backup taken while no watcher ran, or move it aside " +
		"(mv " + path + " " + path + ".damaged) and start again to rebuild from a fresh baseline: the first poll then " +
		"records every customer and subscription that exists without sending events for them, and what the damaged file " +
		"held is lost: changes and removals since its last poll, events not yet published, and the deadline ledger " +
		"(a deadline threshold already announced may be announced once more, marked late, and a cancellation window " +
		"that closed before the rebuild is not announced as closed)"
}

// RecordError names one stored record that does not decode. The reader
// that met it skipped it; the record was not changed.
type RecordError struct {
	Kind string // the record's kind: "subscription", "pending customer", "outbox event", ...
	Key  string // its key in the store ("customerId/resourceId" for snapshots)
	Err  error
}

func (e *RecordError) Error() string { return fmt.Sprintf("%s %s: %v", e.Kind, e.Key, e.Err) }

// Unwrap returns the decoding error.
func (e *RecordError) Unwrap() error { return e.Err }

// Is matches ErrCorrupt.
func (e *RecordError) Is(target error) bool { return target == ErrCorrupt }

// maxNamed bounds how many damaged records one error names.
const maxNamed = 10

// DamagedError lists the damaged records a read met. The records named are
// the first maxNamed; Count is all of them. Everything else was read.
type DamagedError struct {
	Path    string
	Records []*RecordError
	Count   int
}

// Add counts a damaged record, naming it if fewer than maxNamed are.
func (e *DamagedError) Add(r *RecordError) {
	e.Count++
	if len(e.Records) < maxNamed {
		e.Records = append(e.Records, r)
	}
}

// Merge adds the records of o.
func (e *DamagedError) Merge(o *DamagedError) {
	for _, r := range o.Records {
		e.Add(r)
	}
	e.Count += o.Count - len(o.Records)
}

func (e *DamagedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state file %s: %d damaged record", e.Path, e.Count)
	if e.Count != 1 {
		b.WriteString("s")
	}
	b.WriteString(" skipped: ")
	for i, r := range e.Records {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.Error())
	}
	if e.Count > len(e.Records) {
		fmt.Fprintf(&b, "; and %d more", e.Count-len(e.Records))
	}
	b.WriteString(" (stop the watcher; " + corruptHint(e.Path) + ")")
	return b.String()
}

// Is matches ErrCorrupt.
func (e *DamagedError) Is(target error) bool { return target == ErrCorrupt }

// orNil returns e, or nil when it names nothing (so that a nil
// *DamagedError never becomes a non-nil error).
func (e *DamagedError) orNil() error {
	if e == nil || e.Count == 0 {
		return nil
	}
	return e
}
