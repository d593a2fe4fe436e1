package deadline

import (
	"slices"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// A rule's name is in every ledger key of every state file, its option is
// a flag, its event type is in the catalog: they are formats.
func TestRules(t *testing.T) {
	tests := []struct {
		r                   *Rule
		name, option        string
		event               events.Type
		defaults            []time.Duration
		quantity, autoRenew bool
	}{
		{Cancellation, "cancellation", "cancellation-thresholds", events.SubscriptionCancellationClosing, []time.Duration{72 * time.Hour, 24 * time.Hour, 4 * time.Hour}, false, false},
		{CancellationClosed, "cancellation-closed", "", events.SubscriptionCancellationClosed, nil, false, false},
		{Refund, "refund", "refund-thresholds", events.SubscriptionRefundClosing, []time.Duration{48 * time.Hour, 4 * time.Hour}, true, false},
		{Renewal, "renewal", "renewal-thresholds", events.SubscriptionRenewalApproaching, []time.Duration{30 * day, 7 * day, day}, false, true},
		{Trial, "trial", "trial-thresholds", events.SubscriptionTrialEnding, []time.Duration{7 * day, day}, false, true},
	}
	if len(Rules()) != len(tests) {
		t.Fatalf("%d rules, want %d", len(Rules()), len(tests))
	}
	for i, tt := range tests {
		r := tt.r
		if Rules()[i] != r || r.Name() != tt.name || r.String() != tt.name || r.Option() != tt.option || r.Event() != tt.event ||
			!slices.Equal(r.Defaults(), tt.defaults) || r.CarriesQuantity() != tt.quantity || r.CarriesAutoRenew() != tt.autoRenew ||
			r.HasThresholds() != (tt.option != "") {
			t.Errorf("rule %d: %s %q %s %v %v %v", i, r, r.Option(), r.Event(), r.Defaults(), r.CarriesQuantity(), r.CarriesAutoRenew())
		}
		if in, ok := events.Lookup(r.Event()); !ok || !in.Deadline {
			t.Errorf("%s: %s is not a deadline type of the catalog", r, r.Event())
		}
		if got, ok := RuleNamed(tt.name); !ok || got != r {
			t.Errorf("RuleNamed(%q) = %v", tt.name, got)
		}
		if got, ok := RuleOf(tt.event); !ok || got != r {
			t.Errorf("RuleOf(%s) = %v", tt.event, got)
		}
		if docs := r.Docs(); docs.Deadline == "" || (r.HasThresholds() != (docs.Window != "")) ||
			(r.CarriesQuantity() != (docs.Quantity != "")) || (r.CarriesAutoRenew() != (docs.AutoRenew != "")) {
			t.Errorf("%s: docs %+v", r, docs)
		}
	}
	// Every deadline type of the catalog has its rule.
	for _, in := range events.Catalog() {
		if _, ok := RuleOf(in.Type); ok != in.Deadline {
			t.Errorf("%s: deadline %v, rule %v", in.Type, in.Deadline, ok)
		}
	}
	d := Cancellation.Defaults()
	d[0] = time.Second
	if Cancellation.Defaults()[0] != 72*time.Hour {
		t.Error("Defaults hands out the rule's slice")
	}
}

func TestConfigThresholds(t *testing.T) {
	f := Facts{NCE: true, Status: "active", CancelBy: t0.Add(10 * time.Hour)}
	tests := []struct {
		name string
		cfg  Config
		want []string // firings at t0
	}{
		{"zero config: the defaults", Config{}, []string{"cancellation/24h0m0s"}},
		{"defaults", DefaultConfig(), []string{"cancellation/24h0m0s"}},
		{"configured", Config{Thresholds: map[*Rule][]time.Duration{Cancellation: {12 * time.Hour}}}, []string{"cancellation/12h0m0s"}},
		{"nil: the defaults", Config{Thresholds: map[*Rule][]time.Duration{Cancellation: nil}}, []string{"cancellation/24h0m0s"}},
		{"empty: never", Config{Thresholds: map[*Rule][]time.Duration{Cancellation: {}}}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, fi := range Evaluate("e", f, t0, tt.cfg, func(string) bool { return false }) {
			got = append(got, fi.Rule.Name()+"/"+fi.Threshold.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLedgerKeyOfAnUnknownRule(t *testing.T) {
	key := "subscription/c1/s1|grace-period|1767225600|3600"
	entity, r, at, th, ok := ParseLedgerKey(key)
	if !ok || entity != "subscription/c1/s1" || r != nil || at.Unix() != 1767225600 || th != time.Hour {
		t.Errorf("ParseLedgerKey(%q) = %q %v %v %v %v", key, entity, r, at, th, ok)
	}
	if got := LedgerKey("subscription/c1/s1", Refund, at, time.Hour); got != "subscription/c1/s1|refund|1767225600|3600" {
		t.Errorf("LedgerKey = %q", got)
	}
}
