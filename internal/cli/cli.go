// Package cli is the exit-status convention of pcwatch's commands
// (cmd/watcher and cmd/notifier) and the one-line form of their errors.
// A main parses its arguments, turns signals into a context, calls the
// package that does the work and hands the error it returns to Exit.
//
// Exit status:
//
//	0  success (also -h: the usage was asked for)
//	1  a runtime failure: the command started and something failed
//	   (watcher --once: some customers could not be polled; notifier dlq
//	   replay: some events failed again; NATS unreachable or refusing the
//	   notifier's credentials; an actor failed)
//	2  the command could not start: bad flags or arguments, a bad
//	   configuration, a start-up problem (watcher: Partner Center
//	   unreachable or refusing the credentials, the state file locked)
//
// An error asks for a status other than 1 by being, or wrapping (errors.As),
// an error with a method ExitStatus() int: UsageError here, and the
// packages' own configuration and start-up errors (watcher.ConfigError,
// watcher.StartupError, notify.ConfigError). Every other error is 1. The
// watcher's second signal exits with 130 at once, outside this convention.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// The exit statuses of the convention.
const (
	StatusOK      = 0
	StatusFailure = 1
	StatusUsage   = 2
)

// UsageError is a problem found before the command could start: a bad
// flag, argument or setting. Its exit status is 2 (StatusUsage).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitStatus is StatusUsage.
func (e *UsageError) ExitStatus() int { return StatusUsage }

// Usage marks err as a UsageError (exit status 2); nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// Usagef is Usage(fmt.Errorf(format, args...)).
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// statuser is an error that chooses its exit status.
type statuser interface {
	error
	ExitStatus() int
}

// ExitCode is the exit status for err: 0 for nil and flag.ErrHelp, the
// ExitStatus of the first error in err's tree that has one, else 1.
func ExitCode(err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return StatusOK
	}
	var s statuser
	if errors.As(err, &s) {
		return s.ExitStatus()
	}
	return StatusFailure
}

// OneLine is s with every run of white space (line breaks included) made
// one space, and none at either end: an error printed by a command is one
// line on stderr, whatever a server or a file put into it. The notifier's
// messages use it too, for titles, subjects and header values, where a
// line break must not start a new line either.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ErrorLine is err's message on one line, each line break made "; ": the
// parts of a joined error (errors.Join puts one per line) stay told apart,
// and other white space is kept as it is. It is "" for nil. The watcher
// uses it where it shows a failure on one line: the --once summary, the
// Warning header of /api/*, a customer's stored last error.
func ErrorLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// Exit writes err to stderr as one line, "prog: message", and returns its
// exit status (ExitCode). Nothing is written for nil and flag.ErrHelp (the
// caller prints the usage).
func Exit(stderr io.Writer, prog string, err error) int {
	code := ExitCode(err)
	if code != StatusOK {
		fmt.Fprintf(stderr, "%s: %s\n", prog, OneLine(err.Error()))
	}
	return code
}
