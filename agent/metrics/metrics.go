// Package metrics holds the agent's Prometheus metrics: CNI request latency
// and errors per verb, delegate plugin latency, the request queue, and
// hot-plug changes (count and latency by operation and result).
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// Metrics is the agent's metric set, registered on its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	requests *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	delegate *prometheus.HistogramVec
	inFlight prometheus.Gauge
	waiting  prometheus.Gauge
	hotplugs *prometheus.HistogramVec
}

// buckets span a fast DEL (ms) to a slow SR-IOV ADD (seconds).
var buckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New creates and registers the metrics (plus Go runtime and process ones).
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plexus_cni_request_duration_seconds", Help: "CNI requests served, by verb.", Buckets: buckets,
		}, []string{"verb"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plexus_cni_request_errors_total", Help: "CNI requests that failed, by verb and CNI error code.",
		}, []string{"verb", "code"}),
		delegate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plexus_delegate_duration_seconds", Help: "Delegate plugin executions, by plugin and CNI command.", Buckets: buckets,
		}, []string{"plugin", "command"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plexus_cni_requests_in_flight", Help: "CNI requests being served.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plexus_cni_requests_queued", Help: "CNI requests waiting for a serving slot.",
		}),
		hotplugs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plexus_hotplug_duration_seconds", Help: "Hot-plug attachments and detachments, by operation and result: the time from taking the pod's change to having applied it.", Buckets: buckets,
		}, []string{"op", "result"}),
	}
	m.Registry.MustRegister(m.requests, m.errors, m.delegate, m.inFlight, m.waiting, m.hotplugs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var verbNames = map[plexusv1.Verb]string{
	plexusv1.Verb_VERB_ADD: "ADD", plexusv1.Verb_VERB_DEL: "DEL", plexusv1.Verb_VERB_CHECK: "CHECK",
	plexusv1.Verb_VERB_STATUS: "STATUS", plexusv1.Verb_VERB_GC: "GC",
}

// ObserveRequest records one served request.
func (m *Metrics) ObserveRequest(verb plexusv1.Verb, d time.Duration, code uint32) {
	name, ok := verbNames[verb]
	if !ok {
		name = "UNKNOWN"
	}
	m.requests.WithLabelValues(name).Observe(d.Seconds())
	if code != 0 {
		m.errors.WithLabelValues(name, strconv.FormatUint(uint64(code), 10)).Inc()
	}
}

// Waiting and Serving track the server's queue (see server.QueueObserver).
func (m *Metrics) Waiting(delta int) { m.waiting.Add(float64(delta)) }

// Serving tracks requests in flight.
func (m *Metrics) Serving(delta int) { m.inFlight.Add(float64(delta)) }

// ObserveHotPlug records one hot-plug change (see hotplug.Controller).
func (m *Metrics) ObserveHotPlug(op, result string, d time.Duration) {
	m.hotplugs.WithLabelValues(op, result).Observe(d.Seconds())
}

// ObserveDelegate records one delegate plugin run (see pluginexec.Exec).
func (m *Metrics) ObserveDelegate(plugin, command string, d time.Duration) {
	m.delegate.WithLabelValues(plugin, command).Observe(d.Seconds())
}
