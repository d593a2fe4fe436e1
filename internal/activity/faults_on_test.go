//go:build pcwatch_faults

package activity_test

// faultsCompiled reports whether this test binary has the state file's
// fault points (build tag pcwatch_faults).
const faultsCompiled = true
