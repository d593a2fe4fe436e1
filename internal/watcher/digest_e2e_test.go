package watcher

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// logSignal is a slog handler that hands the messages of the records it
// sees to a channel: the test waits for what the notifier says it did,
// without sleeping.
type logSignal struct{ msgs chan string }

func (l logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (l logSignal) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "digest") {
		l.msgs <- r.Message
	}
	return nil
}
func (l logSignal) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logSignal) WithGroup(string) slog.Handler      { return l }

// The whole digest path: a watcher's state file (bbolt) answering the
// deadline query on an in-process NATS server, the real notifier on a fake
// clock ten minutes after the digest's 08:00 Europe/Paris (so it catches
// the run up at start), and a webhook receiver that gets one digest with
// the rows the state holds; a notifier started again on the same bucket
// does not send it a second time.
func TestDigestEndToEnd(t *testing.T) {
	now := time.Date(2026, 7, 1, 6, 10, 0, 0, time.UTC) // Wednesday 08:10 CEST
	st := queryState(t, now)
	clk := clock.NewFake(now)
	srv := natstest.Start(t)
	wc := natstest.Connect(t, srv.ClientURL())
	natstest.EnsureEvents(t, wc, stream.Options{Memory: true})
	startQueryServerOn(t, srv.ClientURL(), st, clk)

	var mu sync.Mutex
	var bodies [][]byte
	var ids []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, ids = append(bodies, b), append(ids, r.Header.Get("Webhook-Id"))
		mu.Unlock()
	}))
	defer hook.Close()
	cfg, err := notify.ParseConfig([]byte(`
channels:
  hook: {kind: webhook, url_env: HOOK, secret_env: SECRET}
default: {channels: [hook]}
digests:
  - name: weekday-morning
    schedule: "0 8 * * 1-5"
    time_zone: Europe/Paris
    within: 3d
    match: {customers: [c1, c2], types: ["subscription.cancellation-*"]}
    channels: [hook]
`), notify.ParseOptions{LookupEnv: func(k string) (string, bool) {
		return map[string]string{"HOOK": hook.URL, "SECRET": "whsec_c2VjcmV0"}[k], true
	}})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(want string) {
		t.Helper()
		msgs := make(chan string, 64)
		nctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- notify.Run(nctx, notify.Options{Config: cfg, NATS: natsconn.Options{URL: srv.ClientURL()}, Listen: "127.0.0.1:0",
				Clock: clk, Logger: slog.New(logSignal{msgs}), ShutdownGrace: time.Second})
		}()
		defer func() { stop(); <-done }()
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m, want) {
					return
				}
				if !strings.HasPrefix(m, "digest scheduled") {
					t.Fatalf("the notifier said %q, want %q", m, want)
				}
			case err := <-done:
				t.Fatalf("the notifier stopped: %v", err)
			case <-ctx.Done():
				t.Fatalf("no %q", want)
			}
		}
	}
	run("digest sent")
	run("digest already sent")

	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || ids[0] != "digest-weekday-morning-20260701T0800" {
		t.Fatalf("the receiver got %d digests %v, want one", len(bodies), ids)
	}
	var body notify.DigestBody
	if err := json.Unmarshal(bodies[0], &body); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, d := range body.Deadlines {
		rows = append(rows, d.CustomerID+"/"+d.SubscriptionID+"/"+d.Kind)
	}
	// Cancellation windows close 10c+30s hours from now: within 72h for
	// customers c1 and c2, c1/s1 (40h), c2/s1 (50h), c1/s2 (70h).
	if got := strings.Join(rows, " "); got != "c1/s1/cancellation c2/s1/cancellation c1/s2/cancellation" || body.Total != 3 ||
		body.Digest != "weekday-morning" || !body.ScheduledAt.Equal(time.Date(2026, 7, 1, 6, 0, 0, 0, time.UTC)) || body.TimeZone != "Europe/Paris" {
		t.Errorf("digest rows %s, body %+v", got, body)
	}
	if body.Deadlines[0].CustomerName != "Customer 1" || body.Deadlines[0].Offer != "Microsoft 365 E1" || body.Deadlines[0].Type != "subscription.cancellation-window-closing" {
		t.Errorf("first row %+v", body.Deadlines[0])
	}
}
