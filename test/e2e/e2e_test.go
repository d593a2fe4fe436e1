// Package e2e runs the watcher and the notifier together, against the
// simulator: in one process with the watcher's embedded NATS server, and as
// the built binaries against an external nats-server (over TLS, with a user
// and password). The events the notifier delivers are the ones the watcher
// really produced.
package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

const secret = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw==" // base64("secret-signing-key-for-tests")

type delivery struct {
	id, typ string
	body    []byte
}

// receiver verifies the Standard Webhooks signature of each POST and
// records it.
type receiver struct {
	t   *testing.T
	mu  sync.Mutex
	got []delivery
	ch  chan delivery
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !strings.Contains(sig, want) {
		r.t.Errorf("bad signature on %s", id)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	json.Unmarshal(body, &ev)
	if ev.ID != id {
		r.t.Errorf("webhook-id %s != event id %s", id, ev.ID)
	}
	d := delivery{id, ev.Type, body}
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	r.ch <- d
}

func TestWatcherEventsReachTheWebhook(t *testing.T) {
	// The watcher, on the simulator, with its embedded NATS server.
	clk := clock.NewFake(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: 8, Customers: 8, Clock: clk, Token: "tok"})
	simSrv := httptest.NewServer(sim)
	defer simSrv.Close()
	cfg := watcher.Default()
	cfg.PCURL, cfg.DataDir, cfg.NATSPort, cfg.Listen = simSrv.URL, t.TempDir(), -1, ""
	cfg.Interval, cfg.DeadlineInterval, cfg.Rate = 30*time.Millisecond, 30*time.Millisecond, 1e5
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *watcher.Runtime, 1)
	cycles := make(chan struct{}, 1000)
	wdone := make(chan error, 1)
	go func() {
		wdone <- watcher.Run(ctx, watcher.Options{Config: cfg, Clock: clk, Logger: watcher.NewLogger(io.Discard, "text", "error"),
			TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}),
			Started:     func(rt *watcher.Runtime) { started <- rt },
			Cycled:      func(*poller.Report) { cycles <- struct{}{} }})
	}()
	rt := <-started

	// The notifier, routing seat and status changes to a signed webhook,
	// connected with its own identity on the embedded server.
	rc := &receiver{t: t, ch: make(chan delivery, 100)}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	ncfg, err := notify.ParseConfig([]byte(`
channels:
  hook: {kind: webhook, url: "`+hook.URL+`/pcwatch", secret_env: HOOK_SECRET, timeout: 5s}
routes:
  - match: {types: ["subscription.quantity-changed", "subscription.status-changed"]}
    channels: [hook]
`), notify.ParseOptions{LookupEnv: func(k string) (string, bool) { return secret, k == "HOOK_SECRET" }})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan notify.ReadyInfo, 1)
	ndone := make(chan error, 1)
	go func() {
		ndone <- notify.Run(ctx, notify.Options{Config: ncfg, NATS: natsconn.Options{URL: rt.NATSURL, NKeySeedFile: rt.NATSCredentials.NotifierSeed}, Listen: "127.0.0.1:0",
			Ready: func(ri notify.ReadyInfo) { ready <- ri }})
	}()
	select {
	case <-ready:
	case err := <-ndone:
		t.Fatalf("notifier: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("notifier not ready")
	}
	<-cycles // the baseline is done

	var cust pcsim.CustomerState
	var sub pcsim.SubscriptionState
	for _, c := range sim.State().Customers {
		for _, s := range c.Subscriptions {
			if s.Status == "active" && s.CancellationAllowedUntil != nil && !s.IsTrial && sub.ID == "" {
				cust, sub = c, s
			}
		}
	}
	if sub.ID == "" {
		t.Fatal("no active NCE subscription")
	}
	if err := sim.IncreaseSeats(cust.ID, sub.ID, 2); err != nil {
		t.Fatal(err)
	}
	if err := sim.Suspend(cust.ID, sub.ID); err != nil {
		t.Fatal(err)
	}
	seen := map[string]delivery{}
	deadline := time.After(60 * time.Second)
	for len(seen) < 2 {
		select {
		case d := <-rc.ch:
			seen[d.typ] = d
		case <-deadline:
			t.Fatalf("webhook received %d of the 2 events", len(seen))
		}
	}
	q := seen[string(events.SubscriptionQuantityChanged)]
	ev, err := events.Decode(q.body)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ev.DecodeData()
	if d.SubscriptionID != sub.ID || *d.Delta != 2 || d.CustomerName != cust.CompanyName {
		t.Errorf("delivered quantity event = %+v", d)
	}
	if _, ok := seen[string(events.SubscriptionStatusChanged)]; !ok {
		t.Error("status change not delivered")
	}
	// A few more cycles with nothing new: nothing more is delivered (no
	// other type is routed, and nothing twice).
	for i := 0; i < 5; i++ {
		<-cycles
	}
	cancel()
	<-wdone
	<-ndone
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 2 {
		t.Errorf("webhook received %d deliveries, want exactly 2", len(rc.got))
	}
}
