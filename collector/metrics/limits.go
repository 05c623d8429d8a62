package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmtap/llmtap/collector/limits"
)

// Limits records limit checks; it is the limits package's Observer.
type Limits struct {
	checks   *prometheus.CounterVec
	denials  *capped
	errors   *prometheus.CounterVec
	duration prometheus.Histogram
	budget   *capped
}

// Check latency buckets in seconds: a check is one Redis round trip.
var checkBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25}

// NewLimits registers the limit metrics on reg.
func NewLimits(reg prometheus.Registerer, maxSeries int) *Limits {
	l := &Limits{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmtap_limit_checks_total",
			Help: "Limit checks by decision: allowed, denied, failed_open (allowed because the limits could not be checked) or failed_closed (denied for that reason).",
		}, []string{"decision"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmtap_limit_redis_errors_total",
			Help: "Failed Redis operations of the limits, by operation: take (a check), settle, policy, status.",
		}, []string{"op"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "llmtap_limit_check_duration_seconds",
			Help:    "Time the collector took to answer a limit check, Redis included.",
			Buckets: checkBuckets,
		}),
	}
	denials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_limit_denials_total",
		Help: "Requests denied by the limits, by route and reason: requests, tokens, or unavailable (limits that fail closed could not be checked).",
	}, []string{"route", "reason"})
	l.denials = newCapped(denials, maxSeries)
	budget := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "llmtap_spend_budget_used_ratio",
		Help: "Share of a tenant's spend budget (on a route, for a route's own) spent or held by requests in flight, as its last check found it: 0 untouched, 1 exhausted.",
	}, []string{"tenant", "route"})
	l.budget = newCapped(budget, maxSeries)
	reg.MustRegister(l.checks, l.errors, l.duration, denials, budget)
	for _, d := range []string{"allowed", "denied", "failed_open", "failed_closed"} {
		l.checks.WithLabelValues(d)
	}
	return l
}

// Checked records one check.
func (l *Limits) Checked(d *limits.Decision, took time.Duration) {
	l.duration.Observe(took.Seconds())
	decision := "allowed"
	switch {
	case d.FailedOpen:
		decision = "failed_open"
	case d.Allowed:
	case d.Err != nil:
		decision = "failed_closed"
		l.denials.counter(d.Route, string(d.Reason)).Inc()
	default:
		decision = "denied"
		l.denials.counter(d.Route, string(d.Reason)).Inc()
	}
	l.checks.WithLabelValues(decision).Inc()
	// A check refused before taking (unpriced, too large) does not know
	// how the budget stands.
	if q := d.Spend; q != nil && q.Limit > 0 && !d.Unpriced && !d.TooLarge {
		l.budget.gauge(d.Tenant, d.Route).Set(1 - float64(q.Remaining)/float64(q.Limit))
	}
}

// StoreFailed counts a failed Redis operation.
func (l *Limits) StoreFailed(op string) { l.errors.WithLabelValues(op).Inc() }
