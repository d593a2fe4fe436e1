//go:build pcwatch_faults

package state

import "github.com/pcwatch/pcwatch/internal/fault"

// faultsCompiled reports whether this build has the fault points (build
// tag pcwatch_faults; see package fault).
const faultsCompiled = true

// crashBeforeCommit and crashAfterCommit are Commit's crash points, outside
// its bbolt transaction (see Commit).
func crashBeforeCommit() { fault.Crash(fault.StateCommitBefore) }
func crashAfterCommit()  { fault.Crash(fault.StateCommitAfter) }
