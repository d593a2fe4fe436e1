package bench

import (
	"testing"
	"time"
)

func seconds(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Second
	}
	return out
}

func ramp(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(n-i) * time.Second // descending: Percentiles sorts
	}
	return out
}

func TestPercentiles(t *testing.T) {
	for _, tc := range []struct {
		name          string
		lat           []time.Duration
		p50, p99, max time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", seconds(7), 7 * time.Second, 7 * time.Second, 7 * time.Second},
		{"two", seconds(9, 1), 1 * time.Second, 9 * time.Second, 9 * time.Second},
		{"1..100", ramp(100), 50 * time.Second, 99 * time.Second, 100 * time.Second},
		// 250 samples: p99 is the 248th (ceil(247.5)), not the maximum.
		{"1..250", ramp(250), 125 * time.Second, 248 * time.Second, 250 * time.Second},
		{"outlier", seconds(1, 1, 1, 1, 1, 1, 1, 1, 1, 600), time.Second, 600 * time.Second, 600 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p50, p99, maxv := Percentiles(tc.lat)
			if p50 != tc.p50 || p99 != tc.p99 || maxv != tc.max {
				t.Errorf("Percentiles = %v, %v, %v; want %v, %v, %v", p50, p99, maxv, tc.p50, tc.p99, tc.max)
			}
		})
	}
}

func TestFloors(t *testing.T) {
	if p50, p99 := SweepFloors(time.Minute, 3*time.Minute); p50 != 90*time.Second || p99 != 178200*time.Millisecond {
		t.Errorf("SweepFloors(1m, 3m) = %v, %v; want 1m30s, 2m58.2s (the cycle overran the interval)", p50, p99)
	}
	if p50, p99 := SweepFloors(5*time.Minute, 3*time.Minute); p50 != 150*time.Second || p99 != 297*time.Second {
		t.Errorf("SweepFloors(5m, 3m) = %v, %v; want 2m30s, 4m57s (a cycle every interval)", p50, p99)
	}
	if p50, p99 := HintFloors(10*time.Second, 5*time.Second); p50 != 12500*time.Millisecond || p99 != 15*time.Second {
		t.Errorf("HintFloors(10s, 5s) = %v, %v; want 12.5s, 15s", p50, p99)
	}
}

func TestSweepBudget(t *testing.T) {
	for _, tc := range []struct {
		customers, requests int
	}{{0, 0}, {1, 2}, {500, 501}, {501, 503}, {2000, 2004}} {
		if got := SweepRequests(tc.customers); got != tc.requests {
			t.Errorf("SweepRequests(%d) = %d; want %d", tc.customers, got, tc.requests)
		}
	}
	// The full preset's sweep must take at least 3 minutes (issue 13).
	if got := SweepEstimate(2000, 640); got != 187875*time.Millisecond {
		t.Errorf("SweepEstimate(2000, 640) = %v; want 3m7.875s", got)
	}
	for rate, want := range map[float64]int{300: 500, 640: 1067, 600: 1000} {
		if got := SimLimit(rate); got != want {
			t.Errorf("SimLimit(%v) = %d; want %d", rate, got, want)
		}
	}
}

func TestFirstReceipt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rs := []receipt{{qty: 12, at: t0.Add(9 * time.Second)}, {qty: 11, at: t0.Add(3 * time.Second), actor: true}, {qty: 14, at: t0.Add(5 * time.Second)}}
	for _, tc := range []struct {
		qty   int
		at    time.Duration
		actor bool
		ok    bool
	}{
		{11, 3 * time.Second, true, true},  // its own event, the earliest
		{12, 5 * time.Second, false, true}, // 14 arrived before 12: a later listing shows it too
		{14, 5 * time.Second, false, true},
		{15, 0, false, false},
	} {
		got, ok := firstReceipt(rs, tc.qty)
		if ok != tc.ok || (ok && (!got.at.Equal(t0.Add(tc.at)) || got.actor != tc.actor)) {
			t.Errorf("firstReceipt(qty %d) = %+v, %v; want at +%v actor %v, %v", tc.qty, got, ok, tc.at, tc.actor, tc.ok)
		}
	}
}

// BenchmarkDetectionLatency is figure 6 at a small size (about a minute:
// it runs on the wall clock). Run with
// go test -run=NONE -bench=DetectionLatency -benchtime=1x ./internal/bench/
func BenchmarkDetectionLatency(b *testing.B) {
	for b.Loop() {
		r, err := DetectionLatency(LatencyOptions{Customers: 200, Rate: 600, Interval: 10 * time.Second, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		for name, x := range map[string]LatencyRow{"sweep": r.SweepOnly, "hints": r.Hints} {
			b.ReportMetric(x.P50.Seconds(), name+"-p50-s")
			b.ReportMetric(x.P99.Seconds(), name+"-p99-s")
			b.ReportMetric(float64(x.Throttled), name+"-429s")
		}
	}
}
