//go:build pcwatch_faults

package fault

import (
	"fmt"
	"os"
	"sync"
)

// plan is the process's plan, read from EnvVar at the first fault point
// reached.
var plan = sync.OnceValue(func() *Plan {
	p, err := Parse(os.Getenv(EnvVar))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pcwatch: %s: %v\n", EnvVar, err)
		os.Exit(2)
	}
	return p
})

// Crash exits the process with ExitCode at the armed hit of crash point
// name; otherwise it only counts the hit. Only binaries built with Tag
// have it.
func Crash(name string) {
	if plan().Hit(name) {
		os.Exit(ExitCode)
	}
}

// On reports whether deliberate bug name is armed. Only binaries built
// with Tag have it.
func On(name string) bool { return plan().On(name) }
