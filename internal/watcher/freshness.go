package watcher

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/actor"
	"github.com/pcwatch/pcwatch/internal/budget"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/webhook"
)

// The change feed's actors (issue 13): the activity-log tail turns audit
// records into durable hints; the hint refresher reads the hinted
// customers again. Both are restarted with backoff when they fail: the
// sweep goes on without them, only later.
const (
	actorActivity = "activity-log"
	actorHints    = "hint-refresher"
	actorHot      = "hot-refresher"
)

// hotOptions are the hot refresher's options for c: its thresholds are the
// evaluator's (dcfg), and a pass may spend at most a quarter of a
// minute's budget (each refresh lists the customer's kinds).
func hotOptions(c Config, dcfg deadline.Config) poller.HotOptions {
	perRefresh := max(1, len(c.Kinds()))
	return poller.HotOptions{Interval: c.HotInterval, Deadlines: dcfg, MaxPerPass: max(1, int(c.Rate/4)/perRefresh)}
}

// freshMetrics are the figures of the change feed and of freshness.
type freshMetrics struct {
	auditRead      prometheus.Counter
	auditSkipped   *prometheus.CounterVec
	auditHints     prometheus.Counter
	auditFailures  prometheus.Counter
	auditLastOK    prometheus.Gauge
	auditCursorLag prometheus.Gauge
	refreshes      *prometheus.CounterVec
	hintLatency    prometheus.Histogram
	changesFound   *prometheus.CounterVec
	webhooks       *prometheus.CounterVec
	hotRefreshes   *prometheus.CounterVec
	hotCustomers   prometheus.Gauge
}

func newFreshMetrics(reg *prometheus.Registry) *freshMetrics {
	f := &freshMetrics{
		auditRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_audit_records_total",
			Help: "Activity-log (audit) records read, the overlap of successive windows included."}),
		auditSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_audit_records_skipped_total",
			Help: "Activity-log records that triggered no refresh, by reason (duplicate counts the overlap re-read every poll)."}, []string{"reason"}),
		auditHints: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_audit_hints_total",
			Help: "Customers hinted by the activity log (a poll's records of one customer coalesce into one)."}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_audit_poll_failures_total",
			Help: "Activity-log polls that failed (the cursor stays; the next poll reads the same window)."}),
		auditLastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_audit_last_success_timestamp_seconds",
			Help: "When the activity log was last read completely (Unix time): the tail's freshness."}),
		auditCursorLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_audit_cursor_lag_seconds",
			Help: "Age of the newest activity-log record seen (grows while the log is quiet)."}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_hint_refreshes_total",
			Help: "Hinted refreshes of one customer, by result (ok, failed, unknown-customer)."}, []string{"result"}),
		hintLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pcwatch_hint_to_event_seconds",
			Help:    "From the first hint of a customer to the commit of the events its refresh found.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 14)}),
		changesFound: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_changes_found_total",
			Help: "Change events (not deadlines, not ops) by what found them: sweep, hint (the change feed) or hot (the hot refresher). Changes found only by the sweep are those the change feed missed."}, []string{"by"}),
		hotRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_hot_refreshes_total",
			Help: "Refreshes of hot customers between sweeps, by reason (pre-alert, due, deadline, changed) and result (ok, failed)."}, []string{"reason", "result"}),
		hotCustomers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_hot_customers",
			Help: "Customers the hot refresher found hot at its last pass (a deadline within 24h, a renewal due, a change in the last hour)."}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_webhook_callbacks_total",
			Help: "Partner Center webhook callbacks by result and reason (forged, replayed, stale, flood, unknown customer, ...)."}, []string{"result", "reason"}),
	}
	for _, r := range activity.SkipReasons {
		f.auditSkipped.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "failed", "unknown-customer"} {
		f.refreshes.WithLabelValues(r)
	}
	for _, by := range []string{"sweep", "hint", "hot"} {
		f.changesFound.WithLabelValues(by)
	}
	reg.MustRegister(f.auditRead, f.auditSkipped, f.auditHints, f.auditFailures, f.auditLastOK, f.auditCursorLag,
		f.refreshes, f.hintLatency, f.changesFound, f.webhooks, f.hotRefreshes, f.hotCustomers)
	return f
}

// activity.Metrics
func (m *metrics) RecordsRead(n int)         { m.fresh.auditRead.Add(float64(n)) }
func (m *metrics) RecordSkipped(r string)    { m.fresh.auditSkipped.WithLabelValues(r).Inc() }
func (m *metrics) HintsQueued(n int)         { m.fresh.auditHints.Add(float64(n)) }
func (m *metrics) PollFailed()               { m.fresh.auditFailures.Inc() }
func (m *metrics) PollSucceeded(t time.Time) { m.fresh.auditLastOK.Set(float64(t.UnixNano()) / 1e9) }
func (m *metrics) CursorLag(d time.Duration) { m.fresh.auditCursorLag.Set(d.Seconds()) }

// poller.HintMetrics
func (m *metrics) HintRefreshed(r string)      { m.fresh.refreshes.WithLabelValues(r).Inc() }
func (m *metrics) HintLatency(d time.Duration) { m.fresh.hintLatency.Observe(d.Seconds()) }
func (m *metrics) ChangesFound(by string, n int) {
	m.fresh.changesFound.WithLabelValues(by).Add(float64(n))
}

// poller.HotMetrics
func (m *metrics) HotRefreshed(reason, result string) {
	m.fresh.hotRefreshes.WithLabelValues(reason, result).Inc()
}
func (m *metrics) HotCustomers(n int) { m.fresh.hotCustomers.Set(float64(n)) }

// budgetCollector exports the request budget's figures per class
// (budget.Gate.Stats), read at scrape time.
type budgetCollector struct {
	gate                    *budget.Gate
	granted, waited, queued *prometheus.Desc
}

func newBudgetCollector(g *budget.Gate) *budgetCollector {
	l := []string{"class"}
	return &budgetCollector{gate: g,
		granted: prometheus.NewDesc("pcwatch_budget_requests_total",
			"Partner Center requests let through the request budget, by class (overdue, hint, hot, sweep; most urgent first).", l, nil),
		waited: prometheus.NewDesc("pcwatch_budget_wait_seconds_total",
			"Time requests waited for the request budget, by class: the sweep waits, hints should not.", l, nil),
		queued: prometheus.NewDesc("pcwatch_budget_waiting",
			"Requests waiting for the request budget now, by class.", l, nil)}
}

func (b *budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.granted
	ch <- b.waited
	ch <- b.queued
}

func (b *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	s := b.gate.Stats()
	for _, c := range budget.Classes() {
		ch <- prometheus.MustNewConstMetric(b.granted, prometheus.CounterValue, float64(s.Granted[c]), c.String())
		ch <- prometheus.MustNewConstMetric(b.waited, prometheus.CounterValue, s.Waited[c].Seconds(), c.String())
		ch <- prometheus.MustNewConstMetric(b.queued, prometheus.GaugeValue, float64(s.Waiting[c]), c.String())
	}
}

// stalenessBuckets are the bounds, in seconds, of the staleness histogram:
// a minute to a week.
var stalenessBuckets = []float64{60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400}

// staleness is a collector of pcwatch_customer_staleness_seconds: the age
// of each customer's last complete listing, read from the state file at
// scrape time. A customer never listed completely is in the count and the
// +Inf bucket only (its age is unknown, so not in the sum).
type staleness struct {
	store *state.Store
	now   func() time.Time
	desc  *prometheus.Desc
}

func newStaleness(store *state.Store, now func() time.Time) *staleness {
	return &staleness{store: store, now: now, desc: prometheus.NewDesc("pcwatch_customer_staleness_seconds",
		"Age of each watched customer's last complete listing (sweep or hinted refresh), at scrape time; never listed counts as +Inf.", nil, nil)}
}

func (s *staleness) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *staleness) Collect(ch chan<- prometheus.Metric) {
	ages, never, err := customerAges(s.store, s.now())
	if err != nil {
		return
	}
	counts := make(map[float64]uint64, len(stalenessBuckets))
	var sum float64
	for _, a := range ages {
		sec := a.Seconds()
		if a < 0 {
			sec = 0
		}
		sum += sec
		for _, b := range stalenessBuckets {
			if sec <= b {
				counts[b]++
			}
		}
	}
	if m, err := prometheus.NewConstHistogram(s.desc, uint64(len(ages)+never), sum, counts); err == nil {
		ch <- m
	}
}

// customerAges returns the ages at now of the known customers' last
// complete listings, and how many known customers have none. It reads no
// record: the last-success bucket and the customer count.
func customerAges(store *state.Store, now time.Time) ([]time.Duration, int, error) {
	last, err := store.LastOK()
	if err != nil {
		return nil, 0, err
	}
	c, err := store.Counts()
	if err != nil {
		return nil, 0, err
	}
	ages := make([]time.Duration, 0, len(last))
	for _, t := range last {
		ages = append(ages, now.Sub(t))
	}
	return ages, max(0, c.Records[resource.Customers]-len(last)), nil
}

// actorWebhook serves the Partner Center webhook intake.
const actorWebhook = "webhook-intake"

// webhookIntake builds the webhook intake's actor on its own listener
// (--webhook-listen): callbacks verified as documented become durable
// hints, then kick the hint refresher. Certificates are fetched with hc,
// the Partner Center client's transport (its proxy settings). It returns
// the bound address.
func webhookIntake(c Config, store *state.Store, clk clock.Clock, hc *http.Client, m *metrics, log *slog.Logger, kick chan struct{}) (actor.Actor, string, error) {
	vo := webhook.VerifierOptions{AllowedHosts: c.WebhookCertHosts, CertificateNames: c.WebhookCertNames, HTTPClient: hc}
	var err error
	if vo.Roots, err = pemPool(c.WebhookRoots, "--webhook-roots"); err != nil {
		return actor.Actor{}, "", err
	}
	if vo.Intermediates, err = pemPool(c.WebhookIntermediates, "--webhook-intermediates"); err != nil {
		return actor.Actor{}, "", err
	}
	h, err := webhook.NewHandler(webhook.Options{Store: store, Known: knownCustomer(store, c.Customers),
		Verifier: webhook.NewVerifier(vo), Clock: clk, Metrics: m, Logger: log.With("component", "webhook"),
		Kick: func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		return actor.Actor{}, "", &ConfigError{Msg: "webhook intake: " + err.Error()}
	}
	mux := http.NewServeMux()
	mux.Handle(c.WebhookPath, h)
	ln, err := net.Listen("tcp", c.WebhookListen)
	if err != nil {
		return actor.Actor{}, "", &StartupError{fmt.Errorf("webhook intake cannot listen on %s: %w (choose another --webhook-listen, or empty to turn it off)", c.WebhookListen, err)}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	log.Info("webhook intake listening", "addr", ln.Addr().String(), "path", c.WebhookPath)
	return actor.Serve(actorWebhook, srv, ln, 3*time.Second), ln.Addr().String(), nil
}

// pemPool reads a PEM file of certificates; "" gives nil (the default).
func pemPool(path, flagName string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("%s: %v", flagName, err)}
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, &ConfigError{Msg: fmt.Sprintf("%s %s: no PEM certificate in the file", flagName, path)}
	}
	return p, nil
}

// webhook.Metrics
func (m *metrics) Received(result, reason string) {
	m.fresh.webhooks.WithLabelValues(result, reason).Inc()
}

// WebhookCommands returns the business logic of `watcher webhooks
// status|register|unregister|test` for configuration c: the registration
// API at c.PCURL with the Partner Center credentials of the environment
// (as `watcher run` reads them), c.WebhookURL as this watcher's callback
// URL. Output goes to out.
func WebhookCommands(ctx context.Context, c Config, getenv func(string) string, out io.Writer, events []string, force bool) (webhook.Commands, error) {
	creds, err := pc.CredentialsFromEnv(getenv)
	if err != nil {
		return webhook.Commands{}, &ConfigError{Msg: err.Error()}
	}
	cloud := pc.Clouds["global"]
	if c.Cloud != "" {
		cloud = pc.Clouds[c.Cloud]
	}
	ts, err := creds.TokenSource(ctx, cloud, nil)
	if err != nil {
		return webhook.Commands{}, &ConfigError{Msg: err.Error()}
	}
	client, err := webhook.NewClient(webhook.ClientOptions{BaseURL: c.PCURL, TokenSource: ts})
	if err != nil {
		return webhook.Commands{}, &ConfigError{Msg: "--pc-url: " + err.Error()}
	}
	return webhook.Commands{Client: client, Out: out, URL: c.WebhookURL, Events: events, Force: force}, nil
}
