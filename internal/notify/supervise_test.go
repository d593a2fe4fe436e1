package notify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/stream"
)

// restartsOf reads pcwatch_notifier_actor_restarts_total{actor=name} from
// the notifier's /metrics.
func restartsOf(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := fmt.Sprintf("pcwatch_notifier_actor_restarts_total{actor=%q} ", name)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return "absent"
}

// A channel whose consumer fails (here: its durable consumer is deleted
// under it, as an operator or a stream reset would) is restarted by the
// actor group, counted, and resumes delivering; the other channel never
// stops. Before the actor group, the runner's own loop restarted it but
// nothing counted it or showed it.
func TestFailedChannelIsRestartedAndCounted(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	rec := newRecorder()
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  a: {kind: webhook, url: "%[1]s/a", secret_env: S}
  b: {kind: webhook, url: "%[1]s/b", secret_env: S}
default: {channels: [a, b]}
delivery: {retry_initial: 10ms, retry_max: 40ms}
`, rc.URL), map[string]string{"S": testSecret})
	n := startNotifier(t, cfg, e.url, rec.hooks())
	addr := strings.Replace(n.info.Addr, "[::]", "127.0.0.1", 1)
	if got := restartsOf(t, addr, "channel:a"); got != "absent" && got != "0" {
		t.Fatalf("restarts before any failure: %s", got)
	}

	ev1 := quantityEvent(t, "c1", 1, 1, 12, 10)
	publish(t, e.js, ev1, "")
	waitFor(t, "first delivery on both channels", func() bool {
		return slices.Contains(rec.get("a", ev1.ID), ResultDelivered) && slices.Contains(rec.get("b", ev1.ID), ResultDelivered)
	}, rec.changed)

	if err := e.js.DeleteConsumer(context.Background(), stream.Name, ConsumerName("a")); err != nil {
		t.Fatal(err)
	}
	// A recreated consumer starts at new events (issue 15 changes that):
	// publish once channel a's consumer is back.
	waitFor(t, "channel a's consumer recreated", func() bool {
		_, err := e.js.Consumer(context.Background(), stream.Name, ConsumerName("a"))
		return err == nil
	}, every(t, 10*time.Millisecond))
	ev2 := quantityEvent(t, "c2", 1, 1, 12, 10)
	publish(t, e.js, ev2, "")
	waitFor(t, "both channels delivering after the restart", func() bool {
		return slices.Contains(rec.get("a", ev2.ID), ResultDelivered) && slices.Contains(rec.get("b", ev2.ID), ResultDelivered)
	}, rec.changed)
	if got := restartsOf(t, addr, "channel:a"); got != "1" {
		t.Errorf("pcwatch_notifier_actor_restarts_total{actor=channel:a} = %s, want 1", got)
	}
	if got := restartsOf(t, addr, "channel:b"); got != "absent" && got != "0" {
		t.Errorf("channel b was restarted too: %s", got)
	}
	if got := rc.accepted(); got[ev1.ID] != 2 || got[ev2.ID] != 2 {
		t.Errorf("accepted %v, want each event once per channel", got)
	}
}

// every signals every d until the end of t: a re-check trigger for
// waitFor where the condition has no event of its own (state on the NATS
// server). Nothing waits for time to pass.
func every(t *testing.T, d time.Duration) <-chan struct{} {
	c := make(chan struct{})
	tk := time.NewTicker(d)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); tk.Stop() })
	go func() {
		for {
			select {
			case <-tk.C:
				select {
				case c <- struct{}{}:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return c
}
