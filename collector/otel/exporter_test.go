package otel

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/internal/otlptest"
)

func i64(n int64) *int64 { return &n }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// facts: a streamed OpenAI chat joined to a caller's trace, an Anthropic
// call with cache tokens, an error.
func facts() []*collector.Fact {
	start := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	return []*collector.Fact{
		{
			RequestID: "req-openai", Start: start, Route: "chat", Tenant: "acme", Provider: "openai", Model: "gpt-4o-mini",
			Path: "/v1/chat/completions", Status: 200, Kind: collector.KindSSE, Streaming: true, DurationMs: 900, TTFTMs: i64(250),
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			Usage:       collector.Usage{Input: i64(120), Output: i64(40), CacheRead: i64(100), Reasoning: i64(8), Source: "openai.chat.stream"},
			Cost:        &collector.Cost{Total: 1500000},
			Chunks:      []string{`{"choices":[{"delta":{"content":"hi"}}]}`, `{"choices":[{"delta":{},"finish_reason":"stop"}]}`},
			Upstream:    "b", Attempts: []collector.Attempt{{Upstream: "a", Result: "503", HeaderMs: 5}, {Upstream: "b", Result: "200", HeaderMs: 60}},
		},
		{
			RequestID: "req-anthropic", Start: start, Route: "claude", Provider: "anthropic", Model: "claude-sonnet-4-5",
			Path: "/v1/messages", Status: 200, Kind: collector.KindJSON, DurationMs: 1200,
			Usage:        collector.Usage{Input: i64(10), Output: i64(30), CacheRead: i64(1000), CacheWrite: i64(200), Source: "anthropic.messages"},
			ResponseBody: `{"type":"message","stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":30}}`,
		},
		{
			RequestID: "req-error", Start: start, Route: "chat", Provider: "openai", Model: "gpt-4o",
			Path: "/v1/chat/completions", Status: 503, Kind: collector.KindJSON, DurationMs: 30, ErrorType: collector.ErrUpstream5xx,
		},
	}
}

// TestExportOverOTLP: each protocol's receiver decodes the spans and finds
// every attribute of the conventions the facts have, the span joined to
// the caller's trace when the request carried one.
func TestExportOverOTLP(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		recv     func(testing.TB) *otlptest.Receiver
	}{
		{ProtocolHTTP, otlptest.HTTP},
		{ProtocolGRPC, otlptest.GRPC},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			r := tt.recv(t)
			r.Auth = "Bearer otel-token"
			e, err := New(context.Background(), Options{Endpoint: r.URL, Protocol: tt.protocol, Headers: map[string]string{"Authorization": "Bearer otel-token"}, Interval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			for _, f := range facts() {
				e.Export(f)
			}
			for _, id := range []string{"req-openai", "req-anthropic", "req-error"} {
				r.Wait(t, id, func(s *tracepb.Span) bool { return otlptest.Attrs(s)["llmtap.request_id"] == id })
			}
			spans := r.Spans()
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			if err := e.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
			byID := map[string]*tracepb.Span{}
			for _, s := range spans {
				byID[otlptest.Attrs(s)["llmtap.request_id"]] = s
			}
			checkSpan(t, byID["req-openai"], "chat gpt-4o-mini", map[string]string{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
				"gen_ai.response.model": "gpt-4o-mini", "gen_ai.request.stream": "true", "gen_ai.response.finish_reasons": "[stop]",
				"gen_ai.usage.input_tokens": "120", "gen_ai.usage.output_tokens": "40", "gen_ai.usage.cache_read.input_tokens": "100",
				"gen_ai.usage.reasoning.output_tokens": "8", "gen_ai.response.time_to_first_chunk": "0.25",
				"llmtap.route": "chat", "llmtap.tenant": "acme", "llmtap.usage_source": "openai.chat.stream", "llmtap.cost_usd": "0.0015",
				"llmtap.upstream": "b", "llmtap.attempts": "2", "http.response.status_code": "200",
			})
			if s := byID["req-openai"]; hex.EncodeToString(s.GetTraceId()) != "4bf92f3577b34da6a3ce929d0e0e4736" || hex.EncodeToString(s.GetParentSpanId()) != "00f067aa0ba902b7" {
				t.Errorf("span not joined to the caller's trace: trace %x parent %x", s.GetTraceId(), s.GetParentSpanId())
			}
			// Anthropic's input_tokens leave out the cache: the span's
			// count includes it.
			checkSpan(t, byID["req-anthropic"], "chat claude-sonnet-4-5", map[string]string{
				"gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": "1210", "gen_ai.usage.cache_read.input_tokens": "1000",
				"gen_ai.usage.cache_creation.input_tokens": "200", "gen_ai.response.finish_reasons": "[end_turn]",
			})
			if a := otlptest.Attrs(byID["req-anthropic"]); a["gen_ai.request.stream"] != "" || a["error.type"] != "" {
				t.Errorf("a JSON success has stream %q, error %q", a["gen_ai.request.stream"], a["error.type"])
			}
			errSpan := byID["req-error"]
			checkSpan(t, errSpan, "chat gpt-4o", map[string]string{"error.type": "upstream_5xx", "http.response.status_code": "503"})
			if errSpan.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("error span status %v", errSpan.GetStatus())
			}
			if len(errSpan.GetParentSpanId()) != 0 {
				t.Errorf("a request without traceparent got parent %x", errSpan.GetParentSpanId())
			}
			if st := e.Stats(); st.Exported != 3 || st.Failed != 0 || st.Dropped != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func checkSpan(t *testing.T, s *tracepb.Span, name string, want map[string]string) {
	t.Helper()
	if s == nil {
		t.Fatalf("no span %q", name)
	}
	if s.GetName() != name || s.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("span %q kind %v, want %q CLIENT", s.GetName(), s.GetKind(), name)
	}
	if d := time.Duration(s.GetEndTimeUnixNano() - s.GetStartTimeUnixNano()); d <= 0 {
		t.Errorf("%s: duration %v", name, d)
	}
	got := otlptest.Attrs(s)
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %s = %q, want %q", name, k, got[k], want[k])
		}
	}
}

// TestExportFailuresCounted: a receiver that refuses costs a counted
// failure after the bounded retries, and a full queue drops, counted;
// Export never waits.
func TestExportFailuresCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // not retried
	}))
	defer srv.Close()
	e, err := New(context.Background(), Options{Endpoint: srv.URL, QueueSize: 2, Interval: time.Hour, BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range facts() { // 3 into a queue of 2, before Run
		e.Export(f)
	}
	if st := e.Stats(); st.Dropped != 1 || st.Queued != 2 {
		t.Fatalf("stats %+v, want 1 dropped and 2 queued", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); e.Stats().Failed < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 2 failed", e.Stats())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestSampling: the share exported follows the ratio, decided by request
// id (the same id is always decided alike); a ratio of 1 keeps every one.
func TestSampling(t *testing.T) {
	all, err := New(context.Background(), Options{Endpoint: "http://127.0.0.1:1", SampleRatio: 1, QueueSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		all.Export(&collector.Fact{RequestID: "req-" + itoa(int64(i))})
	}
	if q := all.Stats().Queued; q != 1000 {
		t.Errorf("a ratio of 1 exported %d of 1000", q)
	}
	e, err := New(context.Background(), Options{Endpoint: "http://127.0.0.1:1", SampleRatio: 0.25, QueueSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := 0; i < n; i++ {
		e.Export(&collector.Fact{RequestID: "req-" + itoa(int64(i))})
	}
	if got := float64(e.Stats().Queued) / n; got < 0.23 || got > 0.27 {
		t.Errorf("sampled %.3f of requests, want 0.25 ± 0.02", got)
	}
}

// TestOptions: bad options are refused naming what is wrong.
func TestOptions(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Endpoint: "collector:4318"}, "want http://host:port"},
		{Options{Endpoint: "http://c:4318", Protocol: "thrift"}, `protocol "thrift"`},
		{Options{Endpoint: "http://c:4318", SampleRatio: 2}, "sampling_ratio 2"},
	} {
		if _, err := New(context.Background(), tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
}
