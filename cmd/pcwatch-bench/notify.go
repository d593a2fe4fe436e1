package main

import (
	"fmt"
	"time"

	"github.com/pcwatch/pcwatch/internal/bench"
)

// notifierFigure measures figure 7.
func notifierFigure(add func(...row), sz sizes, dir string) error {
	r, err := bench.Notifier(bench.NotifierOptions{Events: sz.notifyEvents, Dir: dir})
	if err != nil {
		return err
	}
	add(row{"7", fmt.Sprintf("notifier to a local webhook, burst of %d, %d sends in flight", r.Events, r.Concurrency),
		fmt.Sprintf("%.0f ev/s", r.EPS), fmt.Sprintf("%.0f ev/s bare", r.FloorEPS), ratio(r.Ratio), goalGE(r.Ratio, 0.8)},
		row{"7b", "  publish-to-receipt latency in the burst, p50 / p99", secs(r.P50) + " / " + secs(r.P99), "", "", "queueing behind the burst"},
		row{"7c", "  one event at a time, p50 / p99", secs(r.IdleP50) + " / " + secs(r.IdleP99), "", "", ""},
		row{"7d", "  CPU per event in the burst (whole process: server too)", us(r.CPU), us(r.FloorCPU) + " bare",
			ratio(float64(r.CPU) / float64(r.FloorCPU)), "on 2 busy cores, 7 is about bare/this"})
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
