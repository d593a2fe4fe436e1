package watcher

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/webhook"
)

// With an hour between sweeps, a seat change that the activity log
// reports becomes its event long before the next sweep: the tail stores a
// hint, the refresher reads the customer again, and the event names who
// made the change. The simulator, NATS, the state file and HTTP are real.
func TestActivityLogChangeBecomesEventBeforeTheSweep(t *testing.T) {
	r := startWatcher(t, func(c *Config) {
		c.Interval = time.Hour
		c.AuditInterval = 20 * time.Millisecond
	})
	rt := <-r.rt
	r.waitCycle(t) // the baseline sweep
	cust, sub := activeSub(t, r.sim)
	if err := r.sim.IncreaseSeats(cust.ID, sub.ID, 2); err != nil {
		t.Fatal(err)
	}
	d := waitEvent(t, rt, events.SubscriptionQuantityChanged)
	if d.SubscriptionID != sub.ID || d.CustomerID != cust.ID {
		t.Fatalf("quantity-changed for %s/%s, want %s/%s", d.CustomerID, d.SubscriptionID, cust.ID, sub.ID)
	}
	if d.Actor == nil || d.Actor.Source != activity.Source || d.Actor.OperationType != "update_subscription" ||
		(d.Actor.UserPrincipalName == "" && d.Actor.ApplicationID == "") {
		t.Errorf("actor %+v, want the activity log's record of the change", d.Actor)
	}
	select {
	case rep := <-r.cycles:
		t.Fatalf("a sweep ran (cycle %d) before the event: it was not the hint that found it", rep.Number)
	default:
	}
	s, err := Inspect(rt.Store)
	if err != nil {
		t.Fatal(err)
	}
	if s.ChangeFeed.CursorNewest == nil || s.ChangeFeed.CursorSeen == 0 || s.ChangeFeed.CursorError != "" {
		t.Errorf("watcher state's change feed: %+v, want the cursor at the seat change's record", s.ChangeFeed)
	}
	_, body := get(t, "http://"+rt.Listen+"/metrics")
	for _, want := range []string{`pcwatch_changes_found_total{by="hint"} 1`, `pcwatch_hint_refreshes_total{result="ok"}`,
		"pcwatch_hint_to_event_seconds_count 1", "pcwatch_customer_staleness_seconds_count 10", "pcwatch_audit_last_success_timestamp_seconds",
		`pcwatch_budget_requests_total{class="overdue"}`, `pcwatch_budget_waiting{class="sweep"}`, "pcwatch_hot_customers",
		`pcwatch_changes_found_total{by="hot"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestAuditIntervalValidation(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{{"0", true}, {"30s", true}, {"5s", true}, {"1s", false}, {"-1s", false}} {
		_, err := Load("run", []string{"--audit-interval", tc.v}, func(string) string { return "" })
		if (err == nil) != tc.ok {
			t.Errorf("--audit-interval %s: %v", tc.v, err)
		}
	}
}

// A signed Partner Center webhook callback (the simulator signs with a
// test CA named like Microsoft's, served over TLS) becomes a durable hint
// and then the change's event, carrying the callback as its actor, with
// the activity log off and an hour between sweeps.
func TestWebhookCallbackBecomesEvent(t *testing.T) {
	at := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	pki, err := pcsim.NewTestPKI(webhook.DefaultIssuerOrganization, at)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := pki.Signer(webhook.DefaultCertificateName, "")
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(at)
	sim := pcsim.New(pcsim.Options{Seed: 3, Customers: 10, Clock: clk, Token: "tok", WebhookSigner: signer})
	srv := httptest.NewTLSServer(sim)
	t.Cleanup(srv.Close)
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.Root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	r := startWatcherOn(t, sim, srv, clk, func(c *Config) {
		c.Interval, c.AuditInterval = time.Hour, 0
		c.WebhookListen, c.WebhookRoots, c.WebhookCertHosts = "127.0.0.1:0", roots, []string{u.Host}
	})
	rt := <-r.rt
	r.waitCycle(t)
	client, err := webhook.NewClient(webhook.ClientOptions{BaseURL: srv.URL, HTTPClient: srv.Client(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
	if err != nil {
		t.Fatal(err)
	}
	cmds := webhook.Commands{Client: client, URL: "http://" + rt.WebhookListen + "/webhooks/partner-center", AllowHTTP: true}
	if err := cmds.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	cust, sub := activeSub(t, sim)
	if err := sim.IncreaseSeats(cust.ID, sub.ID, 3); err != nil {
		t.Fatal(err)
	}
	d := waitEvent(t, rt, events.SubscriptionQuantityChanged)
	if d.SubscriptionID != sub.ID || d.Actor == nil || d.Actor.Source != "webhook" || d.Actor.OperationType != "subscription-updated" {
		t.Fatalf("event %s actor %+v, want %s by the webhook", d.SubscriptionID, d.Actor, sub.ID)
	}
	select {
	case rep := <-r.cycles:
		t.Fatalf("a sweep ran (cycle %d): it was not the webhook that found the change", rep.Number)
	default:
	}
	_, body := get(t, "http://"+rt.Listen+"/metrics")
	if !strings.Contains(body, `pcwatch_webhook_callbacks_total{reason="hinted",result="accepted"} 1`) {
		t.Errorf("/metrics lacks the accepted callback:\n%s", grepLines(body, "pcwatch_webhook"))
	}
}

func TestSchedulerFlagsValidation(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		ok    bool
		stale time.Duration // EffectiveMaxStaleness when ok
	}{
		{nil, true, time.Hour},
		{[]string{"--interval", "10m"}, true, 40 * time.Minute},
		{[]string{"--max-staleness", "2h"}, true, 2 * time.Hour},
		{[]string{"--max-staleness", "5m"}, false, 0}, // under --interval
		{[]string{"--sweep", "burst"}, true, time.Hour},
		{[]string{"--sweep", "sometimes"}, false, 0},
		{[]string{"--hot-interval", "0"}, true, time.Hour},
		{[]string{"--hot-interval", "10s"}, false, 0},
	} {
		c, err := Load("run", tc.args, func(string) string { return "" })
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if err == nil && c.EffectiveMaxStaleness() != tc.stale {
			t.Errorf("%q: max staleness %s, want %s", tc.args, c.EffectiveMaxStaleness(), tc.stale)
		}
	}
	c := Default()
	if c.Spread() != 12*time.Minute {
		t.Errorf("default spread %s, want 80%% of 15m", c.Spread())
	}
	c.Sweep = "burst"
	if c.Spread() != 0 {
		t.Errorf("burst spread %s", c.Spread())
	}
}
