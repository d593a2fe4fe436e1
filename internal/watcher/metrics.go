package watcher

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/poller"
)

// metrics are the watcher's Prometheus figures, on their own registry. They
// implement the observer interfaces of the client, poller, relay and
// deadline evaluator.
type metrics struct {
	reg          *prometheus.Registry
	cycleSeconds prometheus.Histogram
	cycles       *prometheus.CounterVec
	customers    *prometheus.CounterVec
	requests     *prometheus.CounterVec
	reqSeconds   *prometheus.HistogramVec
	throttled    prometheus.Counter
	retries      *prometheus.CounterVec
	eventsByType *prometheus.CounterVec
	outboxDepth  prometheus.Gauge
	published    prometheus.Counter
	publishFail  prometheus.Counter
	truncated    prometheus.Counter
	dropped      prometheus.Counter
	lastSuccess  prometheus.Gauge
	lastCycle    prometheus.Gauge
	ledgerSize   prometheus.Gauge
	damaged      prometheus.Gauge
	restarts     *prometheus.CounterVec
	fresh        *freshMetrics
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		cycleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pcwatch_cycle_duration_seconds",
			Help: "Wall time of poll cycles.", Buckets: prometheus.ExponentialBuckets(0.5, 2, 14)}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_cycles_total",
			Help: "Poll cycles by result (complete, partial)."}, []string{"result"}),
		customers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_customers_polled_total",
			Help: "Customer polls by result (ok, failed)."}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_api_requests_total",
			Help: "Partner Center HTTP attempts by endpoint and status (0: no response)."}, []string{"endpoint", "status"}),
		reqSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pcwatch_api_request_duration_seconds",
			Help: "Partner Center request latency.", Buckets: prometheus.DefBuckets}, []string{"endpoint"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_api_throttled_total",
			Help: "Partner Center 429 answers."}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_api_retries_total",
			Help: "Partner Center retries by endpoint and reason."}, []string{"endpoint", "reason"}),
		eventsByType: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_events_emitted_total",
			Help: "Events committed to the outbox, by type."}, []string{"type"}),
		outboxDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_outbox_depth",
			Help: "Events waiting in the outbox for a JetStream acknowledgement."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_events_published_total",
			Help: "Events acknowledged by JetStream."}),
		publishFail: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_publish_failures_total",
			Help: "Relay drains that stopped on a publish failure."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_events_truncated_total",
			Help: "Events larger than NATS accepts that were published shrunk (data.truncated); `watcher state` shows the total since the state file was created."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcwatch_events_dropped_total",
			Help: "Events too large for NATS even shrunk, published as an ops.event-dropped notice instead; `watcher state` shows the total since the state file was created."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_last_successful_cycle_timestamp_seconds",
			Help: "When the last cycle that polled every customer finished (Unix time)."}),
		lastCycle: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_last_cycle_timestamp_seconds",
			Help: "When the last cycle finished (Unix time)."}),
		ledgerSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_deadline_ledger_entries",
			Help: "Deadline thresholds recorded as fired."}),
		damaged: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcwatch_state_records_damaged",
			Help: "State file records the last deadline evaluation skipped because they no longer decode (restore a backup or rebuild: README, Operations)."}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcwatch_actor_restarts_total",
			Help: "Restarts of a failed part of the watcher (deadline-evaluator, relay, stream-keeper, ops-server), by actor."}, []string{"actor"}),
	}
	m.reg.MustRegister(m.restarts, m.cycleSeconds, m.cycles, m.customers, m.requests, m.reqSeconds, m.throttled, m.retries,
		m.eventsByType, m.outboxDepth, m.published, m.publishFail, m.truncated, m.dropped, m.lastSuccess, m.lastCycle, m.ledgerSize, m.damaged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.fresh = newFreshMetrics(m.reg)
	return m
}

// partnercenter.Observer
func (m *metrics) ObserveRequest(endpoint string, status int, d time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	m.reqSeconds.WithLabelValues(endpoint).Observe(d.Seconds())
	if status == 429 {
		m.throttled.Inc()
	}
}

func (m *metrics) ObserveRetry(endpoint, reason string, _ time.Duration) {
	m.retries.WithLabelValues(endpoint, reason).Inc()
}

// poller.Metrics
func (m *metrics) CustomerPolled(ok bool) {
	if ok {
		m.customers.WithLabelValues("ok").Inc()
	} else {
		m.customers.WithLabelValues("failed").Inc()
	}
}

func (m *metrics) EventsEmitted(t events.Type, n int) {
	m.eventsByType.WithLabelValues(string(t)).Add(float64(n))
}

func (m *metrics) CycleCompleted(r *poller.Report) {
	m.cycleSeconds.Observe(r.Duration.Seconds())
	now := float64(time.Now().Unix())
	m.lastCycle.Set(now)
	if r.Complete() {
		m.cycles.WithLabelValues("complete").Inc()
		m.lastSuccess.Set(now)
	} else {
		m.cycles.WithLabelValues("partial").Inc()
	}
}

// relay.Metrics
func (m *metrics) OutboxDepth(n int)     { m.outboxDepth.Set(float64(n)) }
func (m *metrics) Published(n int)       { m.published.Add(float64(n)) }
func (m *metrics) PublishFailed()        { m.publishFail.Inc() }
func (m *metrics) EventsTruncated(n int) { m.truncated.Add(float64(n)) }
func (m *metrics) EventsDropped(n int)   { m.dropped.Add(float64(n)) }

// deadline ledger
func (m *metrics) LedgerSize(n int) { m.ledgerSize.Set(float64(n)) }

// RecordsDamaged is the number of state records the last deadline
// evaluation had to skip because they no longer decode.
func (m *metrics) RecordsDamaged(n int) { m.damaged.Set(float64(n)) }

// ActorRestarted counts a restart of a failed actor (actor.Options.Restarted).
func (m *metrics) ActorRestarted(name string) { m.restarts.WithLabelValues(name).Inc() }
