//go:build race

package state_test

// raceEnabled: the race detector slows the property tests tenfold; they
// run fewer cases under it.
const raceEnabled = true
