package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/limits"
)

func ptr(v int64) *int64 { return &v }

func TestObserve(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, 100)
	m.Observe(&collector.Fact{
		Route: "openai", Provider: "openai", Model: "gpt-4o", Status: 200, DurationMs: 1500,
		TTFTMs: ptr(250),
		Usage:  collector.Usage{Input: ptr(100), Output: ptr(20), CacheRead: ptr(40), Source: "openai.chat.stream"},
		Cost:   &collector.Cost{Input: 150_000_000, CacheRead: 50_000_000, Output: 300_000_000, Total: 500_000_000},
	})
	m.Observe(&collector.Fact{
		Route: "openai", Provider: "openai", Model: "gpt-4o", Status: 503, DurationMs: 10,
		ErrorType: collector.ErrUpstream5xx, Usage: collector.Usage{Source: "none", Missing: "error_response"},
	})
	m.Observe(&collector.Fact{Route: "tts", Provider: "openai", Model: "tts-1", Status: 200, DurationMs: 900, TTFAMs: ptr(120)})
	m.Observe(&collector.Fact{Route: "openai", Provider: "openai", Model: "gpt-4o", Status: 200, DurationMs: 700,
		Usage: collector.Usage{Output: ptr(7), Source: "estimate.o200k_base", Missing: "stream_without_usage"},
		Cost:  &collector.Cost{Output: 250_000_000, Total: 250_000_000}})
	m.Observe(&collector.Fact{Route: "self", Provider: "vllm", Model: "mystery-7b", Status: 200, DurationMs: 100,
		Usage: collector.Usage{Input: ptr(5), Output: ptr(5), Source: "openai.chat"}})
	m.Received(3)
	m.Rejected("bad_json")
	m.PluginDropped(7)

	want := `
# HELP llmtap_requests_total Proxied requests by route, provider, model and status class (2xx, 4xx, 5xx, or 0xx when no status was sent).
# TYPE llmtap_requests_total counter
llmtap_requests_total{model="gpt-4o",provider="openai",route="openai",status_class="2xx"} 2
llmtap_requests_total{model="gpt-4o",provider="openai",route="openai",status_class="5xx"} 1
llmtap_requests_total{model="mystery-7b",provider="vllm",route="self",status_class="2xx"} 1
llmtap_requests_total{model="tts-1",provider="openai",route="tts",status_class="2xx"} 1
# HELP llmtap_tokens_total Tokens by type: input (all prompt tokens, cached included), output, and the parts cache_read, cache_write, reasoning.
# TYPE llmtap_tokens_total counter
llmtap_tokens_total{model="gpt-4o",provider="openai",route="openai",type="cache_read"} 40
llmtap_tokens_total{model="gpt-4o",provider="openai",route="openai",type="input"} 100
llmtap_tokens_total{model="gpt-4o",provider="openai",route="openai",type="output"} 27
llmtap_tokens_total{model="mystery-7b",provider="vllm",route="self",type="input"} 5
llmtap_tokens_total{model="mystery-7b",provider="vllm",route="self",type="output"} 5
# HELP llmtap_errors_total Failed requests by route and error class (upstream_timeout, upstream_5xx, upstream_4xx, client_cancel, rate_limited, aborted), and records lost by storage (storage_error).
# TYPE llmtap_errors_total counter
llmtap_errors_total{class="upstream_5xx",route="openai"} 1
# HELP llmtap_usage_missing_total Records without token usage, by reason.
# TYPE llmtap_usage_missing_total counter
llmtap_usage_missing_total{reason="error_response"} 1
llmtap_usage_missing_total{reason="stream_without_usage"} 1
# HELP llmtap_usage_source_total Records by where their token usage came from: provider (the response reported it), estimate (llmtap counted it), none.
# TYPE llmtap_usage_source_total counter
llmtap_usage_source_total{route="openai",source="estimate"} 1
llmtap_usage_source_total{route="openai",source="none"} 1
llmtap_usage_source_total{route="openai",source="provider"} 1
llmtap_usage_source_total{route="self",source="provider"} 1
llmtap_usage_source_total{route="tts",source="none"} 1
# HELP llmtap_cost_dollars_total US dollars spent, each request priced at ingest from its token usage (the provider's, or estimated) and the price table.
# TYPE llmtap_cost_dollars_total counter
llmtap_cost_dollars_total{model="gpt-4o",provider="openai",route="openai"} 0.75
# HELP llmtap_unpriced_requests_total Requests with token counts whose model has no price: their cost is unknown, not 0.
# TYPE llmtap_unpriced_requests_total counter
llmtap_unpriced_requests_total{model="mystery-7b",route="self"} 1
# HELP llmtap_records_received_total Records accepted at ingest.
# TYPE llmtap_records_received_total counter
llmtap_records_received_total 3
# HELP llmtap_records_rejected_total Record lines refused at ingest, by reason.
# TYPE llmtap_records_rejected_total counter
llmtap_records_rejected_total{reason="bad_json"} 1
# HELP llmtap_plugin_dropped_records_total Records the plugins report they dropped (queue full or undeliverable).
# TYPE llmtap_plugin_dropped_records_total counter
llmtap_plugin_dropped_records_total 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"llmtap_requests_total", "llmtap_tokens_total", "llmtap_errors_total", "llmtap_usage_missing_total", "llmtap_usage_source_total", "llmtap_cost_dollars_total", "llmtap_unpriced_requests_total",
		"llmtap_records_received_total", "llmtap_records_rejected_total", "llmtap_plugin_dropped_records_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "gen_ai_server_time_to_first_token_seconds"); n != 1 {
		t.Errorf("%d TTFT series, want 1", n)
	}
	if n := testutil.CollectAndCount(reg, "llmtap_time_to_first_audio_seconds"); n != 1 {
		t.Errorf("%d TTFA series, want 1", n)
	}
}

// TestCardinalityCap: 10k random model names make at most max series per
// metric, plus the one Overflow series.
func TestCardinalityCap(t *testing.T) {
	const max = 50
	reg := prometheus.NewRegistry()
	m := New(reg, max)
	for i := 0; i < 10000; i++ {
		m.Observe(&collector.Fact{
			Route: "r", Provider: "p", Model: fmt.Sprintf("model-%d", i), Status: 200, DurationMs: 1,
			TTFTMs: ptr(1), Usage: collector.Usage{Input: ptr(1), Output: ptr(1)},
		})
	}
	for _, name := range []string{"llmtap_requests_total", "llmtap_request_duration_seconds", "gen_ai_server_time_to_first_token_seconds", "llmtap_tokens_total"} {
		if n := testutil.CollectAndCount(reg, name); n != max+1 {
			t.Errorf("%s has %d series, want %d and one %q", name, n, max, Overflow)
		}
	}
	want := float64(10000 - max)
	if got := testutil.ToFloat64(m.requests.vec.(*prometheus.CounterVec).WithLabelValues(Overflow, Overflow, Overflow, Overflow)); got != want {
		t.Errorf("overflow series counted %v requests, want %v", got, want)
	}
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{0: "0xx", 101: "1xx", 200: "2xx", 429: "4xx", 504: "5xx", 700: "0xx"} {
		if got := statusClass(status); got != want {
			t.Errorf("statusClass(%d) = %s, want %s", status, got, want)
		}
	}
}

func TestStorage(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	RegisterStorage(reg, func() Storage { return Storage{Queued: 3, SpooledBatches: 2, Written: 10, SpoolDropped: 1} })
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP llmtap_storage_queue_depth Records accepted and not yet written to ClickHouse or the spool.
# TYPE llmtap_storage_queue_depth gauge
llmtap_storage_queue_depth 3
# HELP llmtap_storage_spooled_batches Batches waiting in the disk spool for ClickHouse.
# TYPE llmtap_storage_spooled_batches gauge
llmtap_storage_spooled_batches 2
# HELP llmtap_storage_written_total Records written to ClickHouse from the queue.
# TYPE llmtap_storage_written_total counter
llmtap_storage_written_total 10
# HELP llmtap_storage_dropped_total Accepted records lost because the spool was full or unwritable.
# TYPE llmtap_storage_dropped_total counter
llmtap_storage_dropped_total 1
`), "llmtap_storage_queue_depth", "llmtap_storage_spooled_batches", "llmtap_storage_written_total", "llmtap_storage_dropped_total"); err != nil {
		t.Error(err)
	}
}

func TestActiveStreams(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newActiveStreams(func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	gauge := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gather: %v %v", mfs, err)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	a.report("proxy-a", 3)
	a.report("proxy-b", 2)
	a.report("proxy-a", 1) // the latest report counts
	if got := gauge(); got != 3 {
		t.Errorf("active %v, want 1+2", got)
	}
	now = now.Add(10 * time.Second)
	a.report("proxy-b", 4)
	now = now.Add(10 * time.Second) // proxy-a silent for 20 s
	if got := gauge(); got != 4 {
		t.Errorf("active %v, want 4: a silent proxy no longer counts", got)
	}
}

func TestLost(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, 10)
	m.Lost(&collector.Fact{Route: "openai"})
	m.Lost(&collector.Fact{Route: "openai"})
	if got := testutil.ToFloat64(m.errors.vec.(*prometheus.CounterVec).WithLabelValues("openai", "storage_error")); got != 2 {
		t.Errorf("storage errors %v, want 2", got)
	}
}

// TestSpendBudgetGauge: each check of a spend budget records how much of
// it is used or held; a check refused before taking leaves it alone.
func TestSpendBudgetGauge(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	l := NewLimits(reg, 100)
	l.Checked(&limits.Decision{Tenant: "acme", Route: "chat", Allowed: true, Spend: &limits.QuotaStatus{Limit: 1000, Remaining: 150}}, time.Millisecond)
	l.Checked(&limits.Decision{Tenant: "acme", Route: "chat", Reason: collector.ReasonSpend, Unpriced: true, Spend: &limits.QuotaStatus{Limit: 1000}}, time.Millisecond)
	l.Checked(&limits.Decision{Tenant: "beta", Route: "chat", Allowed: true, Tokens: &limits.QuotaStatus{Limit: 10, Remaining: 1}}, time.Millisecond)
	want := `
# HELP llmtap_spend_budget_used_ratio Share of a tenant's spend budget (on a route, for a route's own) spent or held by requests in flight, as its last check found it: 0 untouched, 1 exhausted.
# TYPE llmtap_spend_budget_used_ratio gauge
llmtap_spend_budget_used_ratio{route="chat",tenant="acme"} 0.85
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llmtap_spend_budget_used_ratio"); err != nil {
		t.Error(err)
	}
}

// TestAttempts: each attempt counts under its upstream and result class,
// and an attempt that opened its circuit counts an opening.
func TestAttempts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, 10)
	m.Observe(&collector.Fact{Route: "chat", Status: 200, Upstream: "b", Attempts: []collector.Attempt{
		{Upstream: "a", Result: "429", HeaderMs: 5, Opened: true},
		{Upstream: "b", Result: "200", HeaderMs: 40},
	}})
	m.Observe(&collector.Fact{Route: "chat", Status: 200, Upstream: "b", Attempts: []collector.Attempt{
		{Upstream: "a", Result: "circuit_open", HeaderMs: collector.NoHeader},
		{Upstream: "b", Result: "connect_error", HeaderMs: collector.NoHeader},
	}})
	want := `
# HELP llmtap_upstream_attempts_total Attempts on routes whose upstreams the plugin chooses, by upstream and result: ok, rate_limited, upstream_4xx, upstream_5xx, connect_error, first_byte_timeout, read_error, cancelled, or circuit_open (skipped).
# TYPE llmtap_upstream_attempts_total counter
llmtap_upstream_attempts_total{result="circuit_open",route="chat",upstream="a"} 1
llmtap_upstream_attempts_total{result="connect_error",route="chat",upstream="b"} 1
llmtap_upstream_attempts_total{result="ok",route="chat",upstream="b"} 1
llmtap_upstream_attempts_total{result="rate_limited",route="chat",upstream="a"} 1
# HELP llmtap_upstream_circuit_opens_total Times an upstream's circuit opened: failures in a row, a failed half-open probe, or a 429's Retry-After.
# TYPE llmtap_upstream_circuit_opens_total counter
llmtap_upstream_circuit_opens_total{route="chat",upstream="a"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llmtap_upstream_attempts_total", "llmtap_upstream_circuit_opens_total"); err != nil {
		t.Error(err)
	}
}
