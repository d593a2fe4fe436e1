package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/events"
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
		"pcwatch_hint_to_event_seconds_count 1", "pcwatch_customer_staleness_seconds_count 10", "pcwatch_audit_last_success_timestamp_seconds"} {
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
