//go:build !pcwatch_faults

package state

// faultsCompiled reports whether this build has the fault points (build
// tag pcwatch_faults; see package fault). Without the tag the crash points
// are empty and compiled away.
const faultsCompiled = false

func crashBeforeCommit() {}
func crashAfterCommit()  {}
