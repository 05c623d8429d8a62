// Package metrics exports the collector's facts as Prometheus metrics, on
// a registry the caller passes in. Label values come from traffic (model
// names, routes), so every metric caps its series: past the configured
// number of distinct label sets, new ones are counted under the label
// value "other", and a flood of random model names cannot exhaust
// Prometheus.
package metrics

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmtap/llmtap/collector"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Overflow is the label value of series past the cap.
const Overflow = "other"

// Metrics records facts and ingest events.
type Metrics struct {
	requests  *capped
	duration  *capped
	ttft      *capped
	tpot      *capped
	ttfa      *capped
	tokens    *capped
	errors    *capped
	missing   *capped
	sources   *capped
	cost      *capped
	unpriced  *capped
	rejected  *capped
	unchecked *capped
	attempts  *capped
	opens     *capped
	redacted  *capped
	omitted   *capped
	received  prometheus.Counter
	dropped   prometheus.Counter
	active    *activeStreams
	maxSeries int
}

// Latency buckets in seconds, from a fast first token to a long generation.
var latencyBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New registers the metrics on reg. maxSeries caps the series of each
// metric.
func New(reg prometheus.Registerer, maxSeries int) *Metrics {
	if maxSeries < 1 {
		maxSeries = 1
	}
	m := &Metrics{maxSeries: maxSeries}
	vec := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	m.requests = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_requests_total",
		Help: "Proxied requests by route, provider, model and status class (2xx, 4xx, 5xx, or 0xx when no status was sent).",
	}, []string{"route", "provider", "model", "status_class"})), maxSeries)
	m.duration = newCapped(vec(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmtap_request_duration_seconds",
		Help:    "Time from the request's arrival at the proxy to the end of its response.",
		Buckets: latencyBuckets,
	}, []string{"route", "provider", "model"})), maxSeries)
	// The name follows OpenTelemetry's GenAI semantic conventions
	// (gen_ai.server.time_to_first_token).
	m.ttft = newCapped(vec(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gen_ai_server_time_to_first_token_seconds",
		Help:    "Time from the request's arrival to the first write carrying generated content (SSE and NDJSON streams).",
		Buckets: latencyBuckets,
	}, []string{"route", "provider", "model"})), maxSeries)
	// gen_ai.server.time_per_output_token, with the conventions' buckets.
	m.tpot = newCapped(vec(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gen_ai_server_time_per_output_token_seconds",
		Help:    "Time per output token after the first of a stream: from the first write carrying content to the last, divided by the output tokens less one (SSE and NDJSON streams of two tokens or more).",
		Buckets: []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5},
	}, []string{"route", "provider", "model"})), maxSeries)
	m.ttfa = newCapped(vec(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "llmtap_time_to_first_audio_seconds",
		Help:    "Time from the request's arrival to the first audio byte of a raw audio response.",
		Buckets: latencyBuckets,
	}, []string{"route", "provider", "model"})), maxSeries)
	m.tokens = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_tokens_total",
		Help: "Tokens by type: input (all prompt tokens, cached included), output, and the parts cache_read, cache_write, reasoning.",
	}, []string{"route", "provider", "model", "type"})), maxSeries)
	m.errors = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_errors_total",
		Help: "Failed requests by route and error class (upstream_timeout, upstream_5xx, upstream_4xx, client_cancel, rate_limited, aborted), and records lost by storage (storage_error).",
	}, []string{"route", "class"})), maxSeries)
	m.missing = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_usage_missing_total",
		Help: "Records without token usage, by reason.",
	}, []string{"reason"})), maxSeries)
	m.sources = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_usage_source_total",
		Help: "Records by where their token usage came from: provider (the response reported it), estimate (llmtap counted it), none.",
	}, []string{"route", "source"})), maxSeries)
	m.cost = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_cost_dollars_total",
		Help: "US dollars spent, each request priced at ingest from its token usage (the provider's, or estimated) and the price table.",
	}, []string{"route", "provider", "model"})), maxSeries)
	m.unpriced = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_unpriced_requests_total",
		Help: "Requests with token counts whose model has no price: their cost is unknown, not 0.",
	}, []string{"route", "model"})), maxSeries)
	m.rejected = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_records_rejected_total",
		Help: "Record lines refused at ingest, by reason.",
	}, []string{"reason"})), maxSeries)
	m.unchecked = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_limit_unchecked_total",
		Help: "Requests on routers with limits that the plugin could not check (collector unreachable or slow), by route and the router's failure mode: open (proxied) or closed (answered 503).",
	}, []string{"route", "mode"})), maxSeries)
	m.attempts = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_upstream_attempts_total",
		Help: "Attempts on routes whose upstreams the plugin chooses, by upstream and result: ok, rate_limited, upstream_4xx, upstream_5xx, connect_error, first_byte_timeout, read_error, cancelled, or circuit_open (skipped).",
	}, []string{"route", "upstream", "result"})), maxSeries)
	m.opens = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_upstream_circuit_opens_total",
		Help: "Times an upstream's circuit opened: failures in a row, a failed half-open probe, or a 429's Retry-After.",
	}, []string{"route", "upstream"})), maxSeries)
	m.redacted = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_redactions_total",
		Help: "Values masked in stored bodies and chunks, by route and kind: a built-in secret (openai_key, jwt, ...), personal data (email, card, ...) or a configured pattern's name.",
	}, []string{"route", "kind"})), maxSeries)
	m.omitted = newCapped(vec(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmtap_bodies_omitted_total",
		Help: "Requests stored without their bodies because the client sent the omit header.",
	}, []string{"route"})), maxSeries)
	m.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "llmtap_records_received_total",
		Help: "Records accepted at ingest.",
	})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "llmtap_plugin_dropped_records_total",
		Help: "Records the plugins report they dropped (queue full or undeliverable).",
	})
	m.active = newActiveStreams(time.Now)
	reg.MustRegister(m.received, m.dropped, m.active)
	return m
}

// ActiveStreams records a plugin's report of its open streams.
func (m *Metrics) ActiveStreams(sender string, n int64) { m.active.report(sender, n) }

// Observe records one fact.
func (m *Metrics) Observe(f *collector.Fact) {
	route, provider, model := f.Route, f.Provider, f.Model
	m.requests.counter(route, provider, model, statusClass(f.Status)).Inc()
	m.duration.observer(route, provider, model).Observe(float64(f.DurationMs) / 1000)
	if f.TTFTMs != nil {
		m.ttft.observer(route, provider, model).Observe(float64(*f.TTFTMs) / 1000)
	}
	if tpot, ok := f.TimePerOutputToken(); ok {
		m.tpot.observer(route, provider, model).Observe(tpot)
	}
	if f.TTFAMs != nil {
		m.ttfa.observer(route, provider, model).Observe(float64(*f.TTFAMs) / 1000)
	}
	u := f.Usage
	for _, t := range []struct {
		name string
		v    *int64
	}{{"input", u.Input}, {"output", u.Output}, {"cache_read", u.CacheRead}, {"cache_write", u.CacheWrite}, {"reasoning", u.Reasoning}} {
		if t.v != nil && *t.v > 0 {
			m.tokens.counter(route, provider, model, t.name).Add(float64(*t.v))
		}
	}
	if u.Missing != "" {
		m.missing.counter(u.Missing).Inc()
	}
	m.sources.counter(route, usageSource(u.Source)).Inc()
	switch {
	case f.Cost != nil:
		if f.Cost.Total > 0 {
			m.cost.counter(route, provider, model).Add(f.Cost.Total.Dollars())
		}
	case u.Input != nil || u.Output != nil:
		m.unpriced.counter(route, model).Inc()
	}
	if f.ErrorType != "" {
		m.errors.counter(route, string(f.ErrorType)).Inc()
	}
	for kind, n := range f.Redactions {
		m.redacted.counter(route, kind).Add(float64(n))
	}
	if f.BodiesOmitted {
		m.omitted.counter(route).Inc()
	}
	for _, a := range f.Attempts {
		m.attempts.counter(route, a.Upstream, collector.AttemptClass(a.Result)).Inc()
		if a.Opened {
			m.opens.counter(route, a.Upstream).Inc()
		}
	}
	switch f.Limit {
	case llmtap.LimitFailedOpen:
		m.unchecked.counter(route, "open").Inc()
	case llmtap.LimitFailedClosed:
		m.unchecked.counter(route, "closed").Inc()
	}
}

// Lost counts an acknowledged record that storage could not keep, as the
// storage_error class.
func (m *Metrics) Lost(f *collector.Fact) {
	m.errors.counter(f.Route, string(collector.ErrStorage)).Inc()
}

// Received counts records accepted at ingest.
func (m *Metrics) Received(n int) { m.received.Add(float64(n)) }

// Rejected counts a record line refused at ingest.
func (m *Metrics) Rejected(reason string) { m.rejected.counter(reason).Inc() }

// PluginDropped counts records a plugin reports it lost.
func (m *Metrics) PluginDropped(n int64) { m.dropped.Add(float64(n)) }

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "0xx"
	}
	return strconv.Itoa(status/100) + "xx"
}

// capped guards a metric vector: at most max distinct label sets, the rest
// folded into one set of Overflow values.
type capped struct {
	vec  prometheus.Collector
	max  int
	mu   sync.Mutex
	seen map[string]struct{}
}

func newCapped(vec prometheus.Collector, max int) *capped {
	return &capped{vec: vec, max: max, seen: make(map[string]struct{})}
}

// labels returns values as given while there is room, else all Overflow.
func (c *capped) labels(values []string) []string {
	key := strings.Join(values, "\xff")
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		return values
	}
	if len(c.seen) < c.max {
		c.seen[key] = struct{}{}
		return values
	}
	out := make([]string, len(values))
	for i := range out {
		out[i] = Overflow
	}
	return out
}

func (c *capped) counter(values ...string) prometheus.Counter {
	return c.vec.(*prometheus.CounterVec).WithLabelValues(c.labels(values)...)
}

func (c *capped) gauge(values ...string) prometheus.Gauge {
	return c.vec.(*prometheus.GaugeVec).WithLabelValues(c.labels(values)...)
}

func (c *capped) observer(values ...string) prometheus.Observer {
	return c.vec.(*prometheus.HistogramVec).WithLabelValues(c.labels(values)...)
}

// usageSource is the source label of a record's usage: provider,
// estimate or none.
func usageSource(source string) string {
	switch {
	case source == "" || source == "none":
		return "none"
	case strings.HasPrefix(source, "estimate."):
		return "estimate"
	}
	return "provider"
}
