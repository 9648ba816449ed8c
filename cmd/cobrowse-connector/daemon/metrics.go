package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// Histogram buckets, in seconds. A join runs from a few tens of milliseconds (a warm node) to the
// join time-out (controller.join_timeout, 20s by default); a publish or a key-value call from a
// fraction of a millisecond to the publish time-out (5s by default).
var (
	joinBuckets  = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30}
	callsBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// metrics is the daemon's Prometheus registry (its own, not the global one) and what each package
// is handed to count on it. Every label is bounded: kinds, outcomes, reasons, vendors, phases,
// ops and Co-browse nodes, never an interaction or a session.
type metrics struct {
	reg     *prometheus.Registry
	chat    *chat.Metrics
	ctrl    *controller.Metrics
	kv      func(op string) controller.Observer
	publish func(kind string) attach.Observer
}

// newMetrics registers the daemon's metrics, the Go runtime's and the process's. The readiness and
// the breakers are read when Prometheus scrapes, from r.
func newMetrics(r *readiness) *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cobrowse_build_info",
		Help: "Always 1: the daemon's version and the Go release it was built with, as labels."}, []string{"version", "goversion"})
	build.WithLabelValues(BuildVersion(), GoVersion()).Set(1)
	f(build)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cobrowse_ready",
		Help: "1 when the daemon is ready (/readyz answers 200: NATS connected and the inbound consumer pulling), else 0. Vendors never count."},
		func() float64 {
			if r.ready() {
				return 1
			}
			return 0
		}))
	f(&breakerCollector{r: r})

	messages := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cobrowse_inbound_messages_total",
		Help: "Inbound messages settled, by kind (chat, event, signal, other) and outcome (acked, ignored, nacked, terminated, malformed)."},
		[]string{"kind", "outcome"})
	redeliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cobrowse_inbound_redeliveries_total",
		Help: "Inbound deliveries that were not the message's first, by kind."}, []string{"kind"})
	terminated := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cobrowse_inbound_terminated_total",
		Help: "Inbound messages terminated (never redelivered), by reason: malformed, or failed on the last delivery."}, []string{"reason"})
	joins := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cobrowse_joins_total",
		Help: "Joins of co-browse sessions, by vendor and result (joined, created, not_started, failed, retry)."}, []string{"vendor", "result"})
	joinTime := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cobrowse_join_duration_seconds",
		Help: "Time from the decision to join a session to the joined state, by vendor.", Buckets: joinBuckets}, []string{"vendor"})
	live := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cobrowse_live_sessions",
		Help: "Live co-browse sessions this replica holds, by vendor and phase (starting, joined, active, stopping)."}, []string{"vendor", "phase"})
	ends := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cobrowse_session_ends_total",
		Help: "Co-browse sessions ended, by vendor and end reason (CoBrowseEndReason)."}, []string{"vendor", "reason"})
	publish := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cobrowse_publish_duration_seconds",
		Help: "Time to publish outbound messages until NATS acknowledged them, by kind (single, batch).", Buckets: callsBuckets}, []string{"kind"})
	kv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cobrowse_kv_duration_seconds",
		Help: "Time of the state bucket's calls, by op (get, create, update).", Buckets: callsBuckets}, []string{"op"})
	for _, c := range []prometheus.Collector{messages, redeliveries, terminated, joins, joinTime, live, ends, publish, kv} {
		f(c)
	}

	return &metrics{
		reg: reg,
		chat: &chat.Metrics{
			Messages:     func(kind, outcome string) chat.Counter { return messages.WithLabelValues(kind, outcome) },
			Redeliveries: func(kind string) chat.Counter { return redeliveries.WithLabelValues(kind) },
			Terminated:   func(reason string) chat.Counter { return terminated.WithLabelValues(reason) },
		},
		ctrl: &controller.Metrics{
			Joins:       func(vendor, result string) controller.Counter { return joins.WithLabelValues(vendor, result) },
			JoinSeconds: func(vendor string) controller.Observer { return joinTime.WithLabelValues(vendor) },
			Live:        func(vendor, phase string) controller.Gauge { return live.WithLabelValues(vendor, phase) },
			Ends:        func(vendor, reason string) controller.Counter { return ends.WithLabelValues(vendor, reason) },
		},
		kv:      func(op string) controller.Observer { return kv.WithLabelValues(op) },
		publish: func(kind string) attach.Observer { return publish.WithLabelValues(kind) },
	}
}

// breakerCollector reports each vendor node's circuit breaker when Prometheus scrapes: nothing is
// counted on the way of a call.
type breakerCollector struct{ r *readiness }

var breakerDesc = prometheus.NewDesc("cobrowse_breaker_state",
	"Circuit breaker of each vendor node (a Co-browse node's URL, Zoom's API, CEC's domain) that had a call: 0 closed, 1 half-open, 2 open.",
	[]string{"vendor", "node"}, nil)

func (b *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerDesc }

func (b *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range b.r.vendorBreakers() {
		for _, n := range v.breakers.Nodes() {
			ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, breakerValue(n.State), v.vendor, n.Node)
		}
	}
}

func breakerValue(s connector.BreakerState) float64 {
	switch s {
	case connector.BreakerHalfOpen:
		return 1
	case connector.BreakerOpen:
		return 2
	}
	return 0
}
