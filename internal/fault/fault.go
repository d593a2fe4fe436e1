// Package fault is pcwatch's one fault-injection mechanism: named fault
// points that a test harness arms to crash a process at a chosen instant
// or to switch on a deliberate bug the chaos suite must catch.
//
// The points act only in binaries built with the build tag pcwatch_faults
// (Tag). Production builds carry no trace of them: the packages with fault
// points (internal/state, internal/poller, internal/relay) reach this
// package only from files compiled under the tag, and their untagged
// twins are empty functions the compiler removes, so `go list -deps
// ./cmd/watcher` does not list this package and nothing reads the
// environment for it. What is compiled in every build is this file: the
// names, their documentation and the parser of a Plan, which the harnesses
// use to check what they arm before they build anything.
//
// A tagged binary reads its plan from the environment variable
// PCWATCH_FAULTS (EnvVar) the first time one of its fault points is
// reached, never at init: a comma-separated list of names, each a crash
// point "name" or "name=N" (exit at its N-th hit, default the first) or a
// bug "name" (on for the life of the process). An unset variable arms
// nothing. A plan that does not parse stops the process with exit status 2
// and a message naming the bad entry and the known points.
//
// How the harnesses build with the tag:
//   - internal/state's crash tests run a child test binary; when the test
//     binary itself lacks the tag they build one with
//     `go test -c -tags pcwatch_faults`;
//   - the chaos suite (test/chaos, -chaos.faults=NAME,...) builds the
//     watcher with -tags pcwatch_faults only when faults are armed, so its
//     normal runs test the production build.
package fault

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Tag is the build tag that compiles the fault points in.
const Tag = "pcwatch_faults"

// EnvVar holds a tagged binary's plan.
const EnvVar = "PCWATCH_FAULTS"

// ExitCode is the status a crash point exits with: at once, as a kill -9
// would, without running deferred functions or flushing anything.
const ExitCode = 86

// The fault points.
const (
	// StateCommitBefore crashes in state.Store.Commit before the change's
	// transaction starts: the change is lost, the state before it kept.
	StateCommitBefore = "state.commit.before"
	// StateCommitAfter crashes in state.Store.Commit after the change's
	// transaction committed (fsynced), before Commit returns: the change
	// and its events are in the file, the caller never hears of it.
	StateCommitAfter = "state.commit.after"
	// PollerFailedListingAsEmpty is a DELIBERATE BUG (once the build tag
	// chaosbug_removals): the poller takes a failed subscription listing
	// for a complete, empty one, so the subscriptions it failed to list are
	// reported removed. The chaos suite must catch it.
	PollerFailedListingAsEmpty = "poller.failed-listing-as-empty"
	// RelayDeleteBeforeAck is a DELIBERATE BUG (once the build tag
	// chaosbug_ack): the relay deletes outbox records before JetStream
	// acknowledged them, so a publish that fails (NATS down) or a crash
	// before the PubAck loses the events. The chaos suite must catch it.
	RelayDeleteBeforeAck = "relay.delete-before-ack"
)

// Point describes one fault point.
type Point struct {
	Name string
	// Bug: a deliberate bug, on while armed; otherwise a crash point,
	// which exits with ExitCode at its N-th hit.
	Bug bool
}

var points = []Point{
	{Name: StateCommitBefore},
	{Name: StateCommitAfter},
	{Name: PollerFailedListingAsEmpty, Bug: true},
	{Name: RelayDeleteBeforeAck, Bug: true},
}

// Points returns every fault point.
func Points() []Point { return slices.Clone(points) }

// Bugs returns the names of the deliberate bugs.
func Bugs() []string {
	var out []string
	for _, p := range points {
		if p.Bug {
			out = append(out, p.Name)
		}
	}
	return out
}

func lookup(name string) (Point, bool) {
	for _, p := range points {
		if p.Name == name {
			return p, true
		}
	}
	return Point{}, false
}

func known() string {
	names := make([]string, len(points))
	for i, p := range points {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// Plan is a parsed set of armed fault points. Its methods are safe for
// concurrent use; a nil or empty Plan arms nothing.
type Plan struct {
	mu    sync.Mutex
	armed map[string]*arming
}

type arming struct {
	after int64 // crash points: the hit that crashes
	hits  int64
}

// Parse reads a plan: "" arms nothing; otherwise comma-separated entries,
// "name" or, for a crash point, "name=N" (N >= 1). An unknown name, a
// count on a bug, a bad count or a name given twice is an error naming it.
func Parse(spec string) (*Plan, error) {
	p := &Plan{armed: map[string]*arming{}}
	if strings.TrimSpace(spec) == "" {
		return p, nil
	}
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		name, count, hasCount := strings.Cut(entry, "=")
		pt, ok := lookup(name)
		if !ok {
			return nil, fmt.Errorf("fault %q is not a fault point (known: %s)", name, known())
		}
		if _, dup := p.armed[name]; dup {
			return nil, fmt.Errorf("fault %q is armed twice", name)
		}
		a := &arming{after: 1}
		if hasCount {
			if pt.Bug {
				return nil, fmt.Errorf("fault %q is a deliberate bug, on or off: drop %q", name, "="+count)
			}
			n, err := strconv.ParseInt(count, 10, 64)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("fault %q: %q is not a hit count (want %s=N, N >= 1)", name, count, name)
			}
			a.after = n
		}
		p.armed[name] = a
	}
	return p, nil
}

// Names returns the armed points, sorted.
func (p *Plan) Names() []string {
	if p == nil {
		return nil
	}
	var out []string
	for n := range p.armed {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Hit counts a hit of crash point name and reports whether it is the one
// to crash at. It panics on a name that is not a crash point: the call
// sites use the constants.
func (p *Plan) Hit(name string) bool {
	if pt, ok := lookup(name); !ok || pt.Bug {
		panic(fmt.Sprintf("fault: %q is not a crash point", name))
	}
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.armed[name]
	if a == nil {
		return false
	}
	a.hits++
	return a.hits == a.after
}

// On reports whether deliberate bug name is armed. It panics on a name
// that is not a bug.
func (p *Plan) On(name string) bool {
	if pt, ok := lookup(name); !ok || !pt.Bug {
		panic(fmt.Sprintf("fault: %q is not a deliberate bug", name))
	}
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.armed[name] != nil
}
