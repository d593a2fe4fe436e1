package watcher

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "w.yaml")
	os.WriteFile(file, []byte(`
interval: 5m
concurrency: 2
rate: 120
resources: [subscriptions, products]
target_views: [Azure, OnlineServices]
cancellation_thresholds: 48h,2h
once: true
`), 0o600)
	env := map[string]string{"PCWATCH_CONFIG": file, "PCWATCH_CONCURRENCY": "4", "PCWATCH_RATE": "200"}
	c, err := Load("run", []string{"--rate", "250", "--customers", "a, b"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval != 5*time.Minute || c.Concurrency != 4 || c.Rate != 250 || !c.Once {
		t.Errorf("interval %v (file), concurrency %d (env), rate %g (flag), once %v", c.Interval, c.Concurrency, c.Rate, c.Once)
	}
	if !slices.Equal(c.Resources, []string{"subscriptions", "products"}) || !slices.Equal(c.TargetViews, []string{"Azure", "OnlineServices"}) ||
		!slices.Equal(c.Customers, []string{"a", "b"}) || !slices.Equal(c.CancellationThresholds, []time.Duration{48 * time.Hour, 2 * time.Hour}) {
		t.Errorf("lists: %v %v %v %v", c.Resources, c.TargetViews, c.Customers, c.CancellationThresholds)
	}
	if d := Default(); d.Interval != 15*time.Minute || d.Listen != "127.0.0.1:9464" || d.DataDir != "./data" {
		t.Errorf("defaults changed: %+v", d)
	}
}

func TestLoadErrors(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--interval", "0s"}, nil, `flag --interval: "0s" is not a positive duration`},
		{[]string{"--concurrency", "0"}, nil, "flag --concurrency"},
		{[]string{"--log-format", "xml"}, nil, `--log-format "xml": want text or json`},
		{[]string{"--listen", "9464"}, nil, `--listen "9464": want host:port`},
		{[]string{"--nats-url", "http://x"}, nil, "--nats-url"},
		{[]string{"--refund-thresholds", "soon"}, nil, `threshold "soon"`},
		{[]string{"--once=maybe"}, nil, `flag --once: "maybe" is not true or false`},
		{nil, map[string]string{"PCWATCH_MASS_REMOVAL_SHARE": "2"}, "environment PCWATCH_MASS_REMOVAL_SHARE"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		getenv := none
		if tt.env != nil {
			getenv = func(k string) string { return tt.env[k] }
		}
		_, err := Load("run", tt.args, getenv)
		if _, ok := err.(*ConfigError); !ok || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%v, %v) = %v; want a ConfigError saying %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestUsageListsEveryOption(t *testing.T) {
	u := Usage()
	for _, o := range options {
		for _, want := range []string{"--" + o.name, o.env(), o.yaml()} {
			if !strings.Contains(u, want) {
				t.Errorf("usage lacks %s", want)
			}
		}
	}
}
