package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the Prometheus series authsvc exports.
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.HistogramVec
	signups      prometheus.Counter
	logins       *prometheus.CounterVec
	secondFactor *prometheus.CounterVec
	throttled    *prometheus.CounterVec
}

// NewMetrics registers authsvc's series, and the Go runtime and process
// collectors, in a fresh registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authsvc_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route, method and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method", "status"}),
		signups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authsvc_signups_total", Help: "Accounts created.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsvc_logins_total", Help: "Password logins, by outcome.",
		}, []string{"outcome"}),
		secondFactor: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsvc_second_factor_checks_total",
			Help: "TOTP and recovery-code checks, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authsvc_throttled_total", Help: "Requests refused by throttling, by kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.requests, m.signups, m.logins, m.secondFactor, m.throttled,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds further collectors, such as database pool statistics.
func (m *Metrics) Register(c ...prometheus.Collector) { m.reg.MustRegister(c...) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) observe(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, methodLabel(method), strconv.Itoa(status)).
		Observe(d.Seconds())
}

// methodLabel keeps the method label to a fixed set, so that clients
// sending invented methods cannot create series without end.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
