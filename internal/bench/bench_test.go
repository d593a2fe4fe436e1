package bench

import (
	"testing"
)

// BenchmarkCycle100k is figures 1 and 2 at the size: 10,000
// customers x 10 subscriptions, 1% changed. Run with
// go test -run=NONE -bench=Cycle100k -benchtime=1x ./internal/bench/
func BenchmarkCycle100k(b *testing.B) {
	for b.Loop() {
		r, err := Cycle(CycleOptions{Dir: b.TempDir(), Repeat: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.DecodeCPU.Seconds(), "decode-cpu-s")
		b.ReportMetric(r.PipelineCPU.Seconds(), "pipeline-cpu-s")
		b.ReportMetric(r.Ratio, "ratio")
		b.ReportMetric(float64(r.UnchangedBytes), "unchanged-bytes")
		b.ReportMetric(float64(r.PeakHeap)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(r.Events), "events")
		b.ReportMetric(float64(r.Decoded), "decoded")
	}
}

func TestCycleSmall(t *testing.T) {
	r, err := Cycle(CycleOptions{Customers: 300, Dir: t.TempDir(), Repeat: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Subscriptions != 3000 || r.Changed != 30 || r.Events != 30 {
		t.Fatalf("result = %+v; want 3000 subscriptions, 30 changed, 30 events", r)
	}
	// Only what changed is decoded (and subscriptions inside a refund
	// window, whose batches may be due a reading): far fewer than all.
	if r.Decoded < r.Changed || r.Decoded > r.Subscriptions/10 {
		t.Errorf("the changed cycle decoded %d subscriptions; want the %d changed ones and few more", r.Decoded, r.Changed)
	}
	if r.UnchangedBytes != 0 || r.UnchangedCommits != 0 {
		t.Errorf("an unchanged cycle wrote %d bytes in %d commits", r.UnchangedBytes, r.UnchangedCommits)
	}
	if r.DecodeCPU <= 0 || r.PipelineCPU <= 0 {
		t.Errorf("no CPU measured: %+v", r)
	}
}

// BenchmarkRelayVsRawPublish is figure 4: outbox relay events/s next to
// raw JetStream async publish of the same payloads on the same server.
func BenchmarkRelayVsRawPublish(b *testing.B) {
	for b.Loop() {
		r, err := Relay(RelayOptions{Dir: b.TempDir(), Repeat: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.RelayEPS, "relay-events/s")
		b.ReportMetric(r.RawEPS, "raw-events/s")
		b.ReportMetric(r.Ratio, "ratio")
	}
}

func TestRelaySmall(t *testing.T) {
	r, err := Relay(RelayOptions{Events: 500, Repeat: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.RelayEPS <= 0 || r.RawEPS <= 0 || r.PayloadSize < 300 {
		t.Fatalf("result = %+v", r)
	}
}
