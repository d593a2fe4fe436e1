//go:build race

package deadline_test

// raceEnabled: the race detector slows the property test tenfold; it
// simulates fewer years under it.
const raceEnabled = true
