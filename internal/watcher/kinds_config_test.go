package watcher

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// Every deadline rule with thresholds has its option, from a flag, the
// environment and the config file, and the evaluator gets what was set.
func TestDeadlineRuleOptions(t *testing.T) {
	for _, r := range deadline.Rules() {
		if !r.HasThresholds() {
			continue
		}
		o := option{name: r.Option()}
		for _, src := range []string{"flag", "env"} {
			args, env := []string(nil), map[string]string{}
			if src == "flag" {
				args = []string{"--" + r.Option(), "2h,30m"}
			} else {
				env[o.env()] = "2h,30m"
			}
			c, err := Load("run", args, func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("%s from %s: %v", r, src, err)
			}
			want := []time.Duration{2 * time.Hour, 30 * time.Minute}
			if got := c.DeadlineConfig().ThresholdsOf(r); !slices.Equal(got, want) {
				t.Errorf("%s from %s: %v, want %v", r, src, got, want)
			}
			for _, other := range deadline.Rules() {
				if other != r && other.HasThresholds() && !slices.Equal(c.DeadlineConfig().ThresholdsOf(other), other.Defaults()) {
					t.Errorf("setting %s changed %s", r, other)
				}
			}
		}
		if !strings.Contains(Usage(), "--"+r.Option()+"\t"+r.Usage()) {
			t.Errorf("usage lacks --%s", r.Option())
		}
	}
	if _, err := Load("run", []string{"--trial-thresholds", "soon"}, func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), "--trial-thresholds") {
		t.Errorf("a bad threshold: %v", err)
	}
	c := Default()
	if c.DeadlineInterval = 10 * time.Minute; c.DeadlineConfig().LateAfter != 20*time.Minute {
		t.Errorf("late after %v", c.DeadlineConfig().LateAfter)
	}
	// The sighting lag: an interval, its jitter and the grace.
	if got, want := c.DeadlineConfig().SightingLag, c.Interval+c.Interval/10+20*time.Minute; got != want {
		t.Errorf("sighting lag %v, want %v", got, want)
	}
}

// On an accelerated calendar (the demo: an hour a second) the grace and the
// sighting lag are in the calendar's time: the intervals scaled by the
// clock's rate, the 5-minute floor not.
func TestDeadlineConfigOnAcceleratedClock(t *testing.T) {
	c := Default()
	c.Interval, c.DeadlineInterval = 3*time.Second, time.Second
	c.Clock = "start=2026-06-01T00:00:00Z,epoch=2026-06-01T00:00:00Z,speed=3600"
	d := c.DeadlineConfig()
	if d.LateAfter != 2*time.Hour || d.SightingLag != 3*time.Hour+18*time.Minute+2*time.Hour {
		t.Errorf("accelerated: late after %v, sighting lag %v; want 2h and 5h18m", d.LateAfter, d.SightingLag)
	}
	if got := c.DeadlineConfigAt(3600); got.LateAfter != d.LateAfter || got.SightingLag != d.SightingLag {
		t.Errorf("DeadlineConfigAt(3600) = %v/%v, DeadlineConfig %v/%v", got.LateAfter, got.SightingLag, d.LateAfter, d.SightingLag)
	}
	c.Clock = ""
	if d := c.DeadlineConfig(); d.LateAfter != 5*time.Minute || d.SightingLag != 3*time.Second+300*time.Millisecond+5*time.Minute {
		t.Errorf("wall clock: late after %v, sighting lag %v", d.LateAfter, d.SightingLag)
	}
}

// --resources takes the kinds' options, case-insensitively, and polls them
// in the kinds' order whatever the order given.
func TestResourcesOption(t *testing.T) {
	c, err := Load("run", []string{"--resources", "Products,subscriptions"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Kinds(); !slices.Equal(got, []*resource.Kind{resource.Subscriptions, resource.Products}) {
		t.Errorf("kinds %v", got)
	}
	if got := Default().Kinds(); !slices.Equal(got, []*resource.Kind{resource.Subscriptions}) {
		t.Errorf("default kinds %v", got)
	}
	for _, bad := range []string{"customers", "managed-services"} {
		_, err := Load("run", []string{"--resources", bad}, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "want some of subscriptions,managedservices,products") {
			t.Errorf("--resources %s: %v", bad, err)
		}
	}
}
