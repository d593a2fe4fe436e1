package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// TestDeadlinesOfflineMatchRunningWatcher is issue 12's "same answers
// online and offline": a watcher runs with a config file of non-default
// deadline settings (thresholds, renewal_all_terms) and an injected
// calendar; /api/deadlines is read while it runs, `watcher deadlines
// --format json` both while it runs (asking it) and after it stopped
// (reading the state file with the same config file). All three must be
// the same list. `watcher deadlines` used to compute with
// deadline.DefaultConfig() offline, which leaves out the renewals of
// monthly terms renewal_all_terms adds: the test checks that this
// scenario tells the two apart.
func TestDeadlinesOfflineMatchRunningWatcher(t *testing.T) {
	// A calendar that all but stands still (a nanosecond every 30 wall
	// seconds): the three answers are read at the same business instant, so
	// even their "in" and "inSeconds" agree.
	start := time.Date(2026, 7, 1, 9, 30, 0, 0, time.UTC)
	spec := clock.Accelerated{Start: start, Epoch: time.Now().UTC().Add(-time.Second), Speed: 1.0 / 30e9}.String()
	clk, err := clock.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	sim := pcsim.New(pcsim.Options{Seed: 11, Customers: 12, Clock: clk, Token: "tok"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "watcher.yaml")
	yaml := fmt.Sprintf(`pc_url: %s
data_dir: %s
nats_port: -1
listen: 127.0.0.1:0
interval: 1h
deadline_interval: 1h
rate: 100000
resources: [subscriptions]
renewal_all_terms: true
renewal_thresholds: [45d, 3d]
cancellation_thresholds: [100h, 90m]
refund_thresholds: 30h
clock: %q
log_level: error
`, srv.URL, filepath.Join(dir, "data"), spec)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PCWATCH_CONFIG": cfgFile}
	getenv := func(k string) string { return env[k] }

	cfg, err := watcher.Load("run", nil, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(cfg.DeadlineConfig().Thresholds, deadline.DefaultConfig().Thresholds) || !cfg.RenewalAllTerms {
		t.Fatalf("the config file did not take: %+v", cfg.DeadlineConfig())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *watcher.Runtime, 1)
	cycled := make(chan *poller.Report, 1)
	done := make(chan error, 1)
	go func() {
		done <- watcher.Run(ctx, watcher.Options{Config: cfg, Getenv: getenv, Stderr: io.Discard,
			Logger:      watcher.NewLogger(io.Discard, "text", "error"),
			TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}),
			Started:     func(rt *watcher.Runtime) { started <- rt },
			Cycled: func(r *poller.Report) {
				select {
				case cycled <- r:
				default:
				}
			}})
	}()
	var rt *watcher.Runtime
	select {
	case rt = <-started:
	case err := <-done:
		t.Fatalf("watcher.Run: %v", err)
	}
	select {
	case <-cycled:
	case err := <-done:
		t.Fatalf("watcher.Run: %v", err)
	}

	resp, err := http.Get("http://" + rt.Listen + "/api/deadlines")
	if err != nil {
		t.Fatal(err)
	}
	api, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/deadlines: %s %s", resp.Status, api)
	}
	online := decodeDeadlines(t, "/api/deadlines", api)

	deadlinesCLI := func(what string, args ...string) []watcher.UpcomingDeadline {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(context.Background(), append([]string{"deadlines", "--format", "json"}, args...), getenv, &out, &errOut); code != 0 || errOut.Len() != 0 {
			t.Fatalf("watcher deadlines (%s): exit %d, stderr %q", what, code, errOut.String())
		}
		return decodeDeadlines(t, "watcher deadlines ("+what+")", []byte(out.String()))
	}
	asked := deadlinesCLI("asking the running watcher", "--listen", rt.Listen)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watcher.Run after cancel: %v", err)
	}
	offline := deadlinesCLI("from the state file")

	if len(online) == 0 {
		t.Fatal("no upcoming deadlines: the scenario tests nothing")
	}
	if !reflect.DeepEqual(asked, online) {
		t.Errorf("watcher deadlines asking the running watcher differs from /api/deadlines:\n%s", diffDeadlines(online, asked))
	}
	if !reflect.DeepEqual(offline, online) {
		t.Errorf("watcher deadlines from the state file differs from the running watcher's /api/deadlines:\n%s", diffDeadlines(online, offline))
	}

	// The scenario must tell the configured answer from the default one,
	// or the comparison above could not fail.
	st, err := state.Open(filepath.Join(cfg.DataDir, state.FileName), state.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dflt, err := watcher.Upcoming(st, deadline.DefaultConfig(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(dflt)
	if reflect.DeepEqual(decodeDeadlines(t, "default config", b), online) {
		t.Error("the deadlines are the same with deadline.DefaultConfig(): the scenario does not exercise the configuration")
	}
}

func decodeDeadlines(t *testing.T, what string, b []byte) []watcher.UpcomingDeadline {
	t.Helper()
	var ds []watcher.UpcomingDeadline
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, b)
	}
	return ds
}

// diffDeadlines names (the first ten of) the deadlines only one list has.
func diffDeadlines(want, got []watcher.UpcomingDeadline) string {
	key := func(d watcher.UpcomingDeadline) string {
		b, _ := json.Marshal(d)
		return string(b)
	}
	in := map[string]int{}
	for _, d := range want {
		in[key(d)]++
	}
	for _, d := range got {
		in[key(d)]--
	}
	var lines []string
	for k, n := range in {
		switch {
		case n > 0:
			lines = append(lines, "  missing: "+k)
		case n < 0:
			lines = append(lines, "  extra:   "+k)
		}
	}
	slices.Sort(lines)
	if len(lines) > 10 {
		lines = append(lines[:10], fmt.Sprintf("  ... and %d more", len(lines)-10))
	}
	if len(lines) == 0 {
		lines = append(lines, "  the same deadlines in another order")
	}
	return fmt.Sprintf("want %d deadlines, got %d\n%s", len(want), len(got), strings.Join(lines, "\n"))
}
