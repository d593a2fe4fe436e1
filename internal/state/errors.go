package state

import (
	"errors"
	"fmt"
)

// Sentinel errors. Open returns an *OpenError that matches one of the first
// three through errors.Is.
var (
	// ErrLocked: another process (another watcher) holds the file.
	ErrLocked = errors.New("state file is locked by another process")
	// ErrNotPcwatch: the file is not a pcwatch state file.
	ErrNotPcwatch = errors.New("not a pcwatch state file")
	// ErrSchema: the file was written by an unknown schema version.
	ErrSchema = errors.New("unsupported state schema version")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("state store is closed")
)

// OpenError explains why a state file could not be opened, naming the file
// and what to do. Nothing in the file was changed.
type OpenError struct {
	Path string
	Kind error // ErrLocked, ErrNotPcwatch, ErrSchema, or nil for I/O errors
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
