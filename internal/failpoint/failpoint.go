// Package failpoint lets crash tests stop the process at named points of a
// commit. A failpoint is armed by the PCWATCH_FAILPOINT environment variable
// (name, or name=N to trigger on the N-th hit); an armed point exits the
// process at once with status 86, as a kill -9 would, without running
// deferred functions or flushing anything. Unarmed, Hit costs one atomic
// load.
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// ExitCode is the status an armed failpoint exits with.
const ExitCode = 86

type armed struct {
	name  string
	after int64
	hits  atomic.Int64
}

var current atomic.Pointer[armed]

func init() {
	if v := os.Getenv("PCWATCH_FAILPOINT"); v != "" {
		Arm(v)
	}
}

// Arm arms spec ("name" or "name=N"). Tests that run in-process use it; an
// empty spec disarms.
func Arm(spec string) {
	if spec == "" {
		current.Store(nil)
		return
	}
	name, n, _ := strings.Cut(spec, "=")
	a := &armed{name: name, after: 1}
	if v, err := strconv.ParseInt(n, 10, 64); err == nil && v > 0 {
		a.after = v
	}
	current.Store(a)
}

// Hit marks that execution reached the named point.
func Hit(name string) {
	a := current.Load()
	if a == nil || a.name != name {
		return
	}
	if a.hits.Add(1) >= a.after {
		os.Exit(ExitCode)
	}
}
