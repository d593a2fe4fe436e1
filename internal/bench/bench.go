// Package bench measures pcwatch's performance figures next to their
// floors, in the same run: each figure is only meaningful as a ratio to
// what the machine can do at best. cmd/pcwatch-bench prints the table and
// writes docs/performance.md; the Benchmark* functions in this package's
// tests run the same measurements under `go test -bench`.
package bench

import (
	"sort"
	"syscall"
	"time"
)

// cpuTime is the CPU (user+system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median of a small sample.
func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianF(d []float64) float64 {
	s := append([]float64(nil), d...)
	sort.Float64s(s)
	return s[len(s)/2]
}
