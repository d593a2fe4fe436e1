package deploy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// declaredMetrics are the metric names the code declares (watcher and
// notifier, every internal package), with the _bucket, _sum and _count
// series of histograms, and the process collector's start time where the
// code registers it.
func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	nameRE := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(pcwatch_[a-z0-9_]+)"`)
	histRE := regexp.MustCompile(`(?s)HistogramOpts\{\s*Name:\s*"(pcwatch_[a-z0-9_]+)"`)
	constHistRE := regexp.MustCompile(`desc:\s*prometheus\.NewDesc\("(pcwatch_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../internal", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		src := string(b)
		for _, m := range nameRE.FindAllStringSubmatch(src, -1) {
			names[m[1]] = true
		}
		hists := histRE.FindAllStringSubmatch(src, -1)
		if strings.Contains(src, "NewConstHistogram(s.desc") {
			hists = append(hists, constHistRE.FindAllStringSubmatch(src, -1)...)
		}
		for _, m := range hists {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suf] = true
			}
		}
		if strings.Contains(src, "collectors.NewProcessCollector(") {
			names["process_start_time_seconds"] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"pcwatch_outbox_depth", "pcwatch_cycle_duration_seconds_bucket", "pcwatch_customer_staleness_seconds_bucket", "pcwatch_notifier_dlq_messages"} {
		if !names[must] {
			t.Fatalf("the metric scan found no %s: %v", must, names)
		}
	}
	return names
}

var metricRefRE = regexp.MustCompile(`\b((?:pcwatch|process|go)_[a-z0-9_]+)\b`)

func checkExprMetrics(t *testing.T, where, expr string, declared map[string]bool) {
	t.Helper()
	refs := metricRefRE.FindAllString(expr, -1)
	if len(refs) == 0 {
		t.Errorf("%s: %q uses no pcwatch metric", where, expr)
	}
	for _, m := range refs {
		if !declared[m] {
			t.Errorf("%s: %q uses %s, which no code declares", where, expr, m)
		}
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed to check the alert rules and the dashboard's queries: apt-get install -y prometheus (Debian's package has promtool; .ci/run installs it)")
	}
	return p
}

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboard: every query of the Grafana dashboard parses as PromQL
// (promtool checks it as a recording rule) and names only metrics the
// code declares.
func TestDashboard(t *testing.T) {
	tool := promtool(t)
	b, err := os.ReadFile("grafana/pcwatch.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/pcwatch.json: %v", err)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard %q has %d panels", d.UID, len(d.Panels))
	}
	declared := declaredMetrics(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %q %s", p.Title, tg.RefID)
			checkExprMetrics(t, where, tg.Expr, declared)
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:panel%d:%s", p.ID, strings.ToLower(tg.RefID)),
				Expr: strings.ReplaceAll(tg.Expr, "$__rate_interval", "5m")})
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(tool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's queries do not parse: %v\n%s", err, res)
	}
}

// TestAlertRules: alerts.yaml holds the alerts the issue names, each over
// declared metrics, checked and unit-tested by promtool (alerts_test.yaml).
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	strictYAML(t, "prometheus/alerts.yaml", &f)
	declared := declaredMetrics(t)
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			checkExprMetrics(t, "alert "+r.Alert, r.Expr, declared)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a severity, summary or description", r.Alert)
			}
		}
	}
	for _, want := range []string{"PcwatchNoCompleteCycle", "PcwatchCustomersFailing", "PcwatchOutboxGrowing", "PcwatchDeadLetters", "PcwatchStalenessOverBudget"} {
		if !slices.Contains(names, want) {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}
	tests, _ := os.ReadFile("prometheus/alerts_test.yaml")
	for _, n := range names {
		if !strings.Contains(string(tests), "alertname: "+n+"\n") {
			t.Errorf("alerts_test.yaml does not test %s", n)
		}
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
