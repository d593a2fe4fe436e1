package watcher

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
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
		!slices.Equal(c.Customers, []string{"a", "b"}) || !slices.Equal(c.Thresholds[deadline.Cancellation], []time.Duration{48 * time.Hour, 2 * time.Hour}) {
		t.Errorf("lists: %v %v %v %v", c.Resources, c.TargetViews, c.Customers, c.Thresholds[deadline.Cancellation])
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
		// Defect 11 of issue 11: NaN compared false with the bounds and
		// disabled the rate limiter.
		{[]string{"--rate", "NaN"}, nil, `flag --rate: "NaN" is not a number`},
		{nil, map[string]string{"PCWATCH_RATE": "nan"}, "environment PCWATCH_RATE"},
		{[]string{"--mass-removal-share", "NaN"}, nil, "flag --mass-removal-share"},
		{[]string{"--rate", "+Inf"}, nil, "flag --rate"},
		{[]string{"--allowed-hosts", "pcwatch.svc:9464"}, nil, `--allowed-hosts: allowed host "pcwatch.svc:9464": not a host name or IP address`},
		{nil, map[string]string{"PCWATCH_ALLOWED_HOSTS": "ok.svc,http://x"}, `allowed host "http://x"`},
		{[]string{"--nats-notifier-subjects", "alerts.>,>"}, nil, `--nats-notifier-subjects: embedded NATS: notifier subject ">" starts with a wildcard`},
		{[]string{"--nats-notifier-subjects", "pcwatch.alerts.>"}, nil, `notifier subject "pcwatch.alerts.>" is reserved`},
		{[]string{"--nats-notifier-subjects", "$JS.API.>"}, nil, `notifier subject "$JS.API.>" is reserved`},
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

// Defect 11 of issue 11: a key set twice and a second YAML document passed
// silently (the notifier refuses duplicates); an oversized file is refused
// before it is parsed.
func TestConfigFileStrictness(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, body, want string
	}{
		{"duplicate key", "rate: 100\ninterval: 5m\nrate: 400\n", "line 3: rate is set twice (first on line 1)"},
		{"second document", "rate: 100\n---\nrate: 400\n", "line 2: a second YAML document"},
		{"second document, broken", "rate: 100\n---\n: [\n", "after the first document"},
		{"too large", "# " + strings.Repeat("x", 1<<20) + "\nrate: 1\n", "larger than 1024 KiB"},
		{"not a mapping", "- rate\n", "want a mapping"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
		if err := os.WriteFile(file, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load("run", []string{"--config", file}, func(string) string { return "" })
		if _, ok := err.(*ConfigError); !ok || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want a ConfigError saying %q", tt.name, err, tt.want)
		}
	}
	// One document, possibly opened with ---, and an empty file still load.
	for _, body := range []string{"---\nrate: 120\n", "", "# only a comment\n"} {
		file := filepath.Join(dir, "ok.yaml")
		os.WriteFile(file, []byte(body), 0o600)
		if _, err := Load("run", []string{"--config", file}, func(string) string { return "" }); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}
