package notify

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Results: the result label of pcwatch_notifier_notifications_total, one
// per message a channel's consumer handled.
const (
	ResultDelivered = "delivered" // sent and acknowledged by the receiver
	ResultDuplicate = "duplicate" // already delivered earlier; acknowledged without sending
	ResultFiltered  = "filtered"  // not routed to this channel
	ResultSilenced  = "silenced"  // muted by a silence
	ResultRetry     = "retry"     // failed; redelivery scheduled
	ResultDeferred  = "deferred"  // another copy of the event is in flight; looked at again later
	ResultDLQ       = "dlq"       // sent to the dead-letter queue
	// ResultPast: published before the channel's consumer existed (its
	// delivery.start backlog), a deadline warning whose deadline has
	// passed; acknowledged without sending.
	ResultPast = "past-deadline"
	// ResultHeld: a deadline warning muted by a silence, kept in
	// PCWATCH_ALERTS to be sent when the silence ends or silence_lead
	// before its deadline.
	ResultHeld = "held"
	// ResultGrouped: added to its group (a route's group_by), to be sent
	// in the group's message; delivered is counted when that is sent.
	ResultGrouped = "grouped"
)

var results = []string{ResultDelivered, ResultDuplicate, ResultFiltered, ResultSilenced, ResultRetry, ResultDeferred, ResultDLQ, ResultPast, ResultHeld, ResultGrouped}

// metrics are the notifier's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	received      *prometheus.CounterVec
	notifications *prometheus.CounterVec
	failures      *prometheus.CounterVec
	attempts      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	dlq           prometheus.Gauge
	restarts      *prometheus.CounterVec
}

func newMetrics(channels []string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcwatch_notifier_events_received_total",
			Help: "Messages a channel's consumer received (redeliveries included).",
		}, []string{"channel"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcwatch_notifier_notifications_total",
			Help: "Messages handled per channel, by result: delivered, duplicate, filtered, silenced, retry, deferred, dlq.",
		}, []string{"channel", "result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcwatch_notifier_failures_total",
			Help: "Failed sends and undeliverable messages per channel, by reason.",
		}, []string{"channel", "reason"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcwatch_notifier_attempts_total",
			Help: "Send attempts per channel.",
		}, []string{"channel"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pcwatch_notifier_send_duration_seconds",
			Help:    "Duration of one send attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"channel"}),
		dlq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pcwatch_notifier_dlq_messages",
			Help: "Messages in the dead-letter stream PCWATCH_DLQ.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcwatch_notifier_actor_restarts_total",
			Help: "Restarts of a failed part of the notifier (channel:<name>, health-server, dlq-gauge), by actor.",
		}, []string{"actor"}),
	}
	m.reg.MustRegister(m.received, m.notifications, m.failures, m.attempts, m.duration, m.dlq, m.restarts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, ch := range channels {
		m.received.WithLabelValues(ch)
		m.attempts.WithLabelValues(ch)
		for _, r := range results {
			m.notifications.WithLabelValues(ch, r)
		}
	}
	return m
}

// actorRestarted counts a restart of a failed actor (actor.Options.Restarted).
func (m *metrics) actorRestarted(name string) { m.restarts.WithLabelValues(name).Inc() }
