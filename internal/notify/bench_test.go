package notify

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
)

// BenchmarkWebhookDelivery measures the notifier end to end on this
// machine: events published to PCWATCH_EVENTS (embedded NATS, the
// deliveries bucket fsynced on every write as the watcher's server does)
// and delivered, signed, to a local webhook receiver. It reports events per
// second and the 99th percentile of publish-to-receipt latency.
func BenchmarkWebhookDelivery(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchDelivery(b, false) })
	b.Run("one-at-a-time", func(b *testing.B) { benchDelivery(b, true) })
}

// benchDelivery publishes b.N events at once (burst: throughput, latency
// includes queueing) or each after the previous one arrived (latency of an
// unloaded notifier).
func benchDelivery(b *testing.B, sequential bool) {
	e := newEnv(b)
	var (
		mu       sync.Mutex
		received = map[string]time.Time{}
		all      = make(chan struct{})
		one      = make(chan struct{}, 1)
		want     = b.N
	)
	rc := httpServer(b, func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		if _, ok := received[r.Header.Get("Webhook-Id")]; !ok {
			received[r.Header.Get("Webhook-Id")] = now
			if len(received) == want {
				close(all)
			}
			select {
			case one <- struct{}{}:
			default:
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := mustConfig(b, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s", secret_env: S}
default: {channels: [hook]}
`, rc.URL), map[string]string{"S": testSecret})
	startNotifier(b, cfg, e.url, nil)

	envs := make([]events.Envelope, b.N)
	for i := range envs {
		envs[i] = quantityEvent(b, fmt.Sprintf("c%d", i%50), i%500, uint64(i/500+1), 1, 2)
	}
	published := make([]time.Time, b.N)
	b.ResetTimer()
	start := time.Now()
	var futs []jetstream.PubAckFuture
	for i, env := range envs {
		msg := nats.NewMsg(env.Subject)
		msg.Data = env.Body
		published[i] = time.Now()
		f, err := e.js.PublishMsgAsync(msg, jetstream.WithMsgID(env.ID))
		if err != nil {
			b.Fatal(err)
		}
		futs = append(futs, f)
		if sequential {
			<-one
		}
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		b.Fatalf("only %d of %d events delivered", len(received), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	mu.Lock()
	lat := make([]time.Duration, 0, len(envs))
	for i, env := range envs {
		lat = append(lat, received[env.ID].Sub(published[i]))
	}
	mu.Unlock()
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}
