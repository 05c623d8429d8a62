package otel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
)

// SemconvVersion is the release of the OpenTelemetry semantic conventions
// whose GenAI conventions the spans follow: the last to hold them before
// they moved to open-telemetry/semantic-conventions-genai (still marked
// Development there, unreleased as of 2026-12).
const SemconvVersion = "1.41.1"

// Operation names (gen_ai.operation.name): the conventions' own, and
// text_to_speech, which they do not name.
const (
	opChat           = "chat"
	opTextCompletion = "text_completion"
	opEmbeddings     = "embeddings"
	opTextToSpeech   = "text_to_speech"
)

// operation names a request's GenAI operation by its path.
func operation(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	switch {
	case strings.HasSuffix(path, "/chat/completions"), strings.HasSuffix(path, "/responses"),
		strings.HasSuffix(path, "/messages"), strings.HasSuffix(path, "/api/chat"):
		return opChat
	case strings.HasSuffix(path, "/completions"), strings.HasSuffix(path, "/api/generate"):
		return opTextCompletion
	case strings.HasSuffix(path, "/embeddings"), strings.HasSuffix(path, "/api/embed"), strings.HasSuffix(path, "/api/embeddings"):
		return opEmbeddings
	case strings.HasSuffix(path, "/audio/speech"):
		return opTextToSpeech
	}
	return opChat
}

// providerNames maps llmtap's provider names to gen_ai.provider.name: the
// conventions' values where they have one, llmtap's own otherwise.
var providerNames = map[string]string{
	provider.OpenAI:           "openai",
	provider.Anthropic:        "anthropic",
	provider.Azure:            "azure.ai.openai",
	provider.Ollama:           "ollama",
	provider.VLLM:             "vllm",
	provider.OpenAICompatible: "openai_compatible",
}

// hashOf places a span id in [0, 2^64) for sampling.
func hashOf(id trace.SpanID) uint64 { return binary.BigEndian.Uint64(id[:]) }

// ids derives a span's ids from its request id, so that a record sent
// twice exports the same span: the trace's when the request carried no
// traceparent, and the span's own.
func ids(requestID string) (trace.TraceID, trace.SpanID) {
	sum := sha256.Sum256([]byte("llmtap:" + requestID))
	var t trace.TraceID
	var s trace.SpanID
	copy(t[:], sum[:16])
	copy(s[:], sum[16:24])
	return t, s
}

// parseTraceparent reads a W3C traceparent: version 00, a trace id and a
// parent span id, neither all zeros.
func parseTraceparent(v string) (trace.SpanContext, bool) {
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return trace.SpanContext{}, false
	}
	var t trace.TraceID
	var s trace.SpanID
	if _, err := hex.Decode(t[:], []byte(parts[1])); err != nil || !t.IsValid() {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(s[:], []byte(parts[2])); err != nil || !s.IsValid() {
		return trace.SpanContext{}, false
	}
	flags, err := hex.DecodeString(parts[3])
	if err != nil {
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: t, SpanID: s, TraceFlags: trace.TraceFlags(flags[0]), Remote: true}), true
}

// spanOf is the span of one stored request, a CLIENT span named
// "{operation} {model}", joined to the caller's trace when the request
// carried a traceparent.
func spanOf(f *collector.Fact, res *resource.Resource) sdktrace.ReadOnlySpan {
	traceID, spanID := ids(f.RequestID)
	parent, joined := parseTraceparent(f.TraceParent)
	if joined {
		traceID = parent.TraceID()
	}
	op := operation(f.Path)
	name := op
	if f.Model != "" {
		name += " " + f.Model
	}
	stub := tracetest.SpanStub{
		Name:                 name,
		SpanContext:          trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}),
		Parent:               parent,
		SpanKind:             trace.SpanKindClient,
		StartTime:            f.Start,
		EndTime:              f.Start.Add(time.Duration(f.DurationMs) * time.Millisecond),
		Attributes:           attributes(f, op),
		Resource:             res,
		InstrumentationScope: instrumentation.Scope{Name: "github.com/llmtap/llmtap/collector", SchemaURL: "https://opentelemetry.io/schemas/" + SemconvVersion},
	}
	if f.ErrorType != "" {
		stub.Status = sdktrace.Status{Code: codes.Error, Description: string(f.ErrorType)}
	}
	return stub.Snapshot()
}

// attributes are the span's: the GenAI conventions' where the request
// has the fact, llmtap's own under llmtap.*.
func attributes(f *collector.Fact, op string) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", op),
		attribute.Int("http.response.status_code", f.Status),
		attribute.String("llmtap.request_id", f.RequestID),
		attribute.String("llmtap.route", f.Route),
	}
	if f.Streaming {
		// Set if and only if the request streamed.
		a = append(a, attribute.Bool("gen_ai.request.stream", true))
	}
	if name, ok := providerNames[f.Provider]; ok {
		a = append(a, attribute.String("gen_ai.provider.name", name))
	}
	if f.Model != "" {
		// The model the response named, else the one asked for: the same
		// value serves both.
		a = append(a, attribute.String("gen_ai.request.model", f.Model), attribute.String("gen_ai.response.model", f.Model))
	}
	if reasons := finishReasons(f); len(reasons) > 0 {
		a = append(a, attribute.StringSlice("gen_ai.response.finish_reasons", reasons))
	}
	u := f.Usage
	if u.Input != nil {
		// Input tokens including the cached ones: Anthropic reports cache
		// reads and writes apart from its input_tokens, OpenAI within.
		in := *u.Input
		if f.Provider == provider.Anthropic {
			in += value(u.CacheRead) + value(u.CacheWrite)
		}
		a = append(a, attribute.Int64("gen_ai.usage.input_tokens", in))
	}
	if u.Output != nil {
		a = append(a, attribute.Int64("gen_ai.usage.output_tokens", *u.Output))
	}
	if u.CacheRead != nil {
		a = append(a, attribute.Int64("gen_ai.usage.cache_read.input_tokens", *u.CacheRead))
	}
	if u.CacheWrite != nil {
		a = append(a, attribute.Int64("gen_ai.usage.cache_creation.input_tokens", *u.CacheWrite))
	}
	if u.Reasoning != nil {
		a = append(a, attribute.Int64("gen_ai.usage.reasoning.output_tokens", *u.Reasoning))
	}
	if f.TTFTMs != nil {
		a = append(a, attribute.Float64("gen_ai.response.time_to_first_chunk", float64(*f.TTFTMs)/1000))
	}
	if f.ErrorType != "" {
		a = append(a, attribute.String("error.type", string(f.ErrorType)))
	}
	if f.Tenant != "" {
		a = append(a, attribute.String("llmtap.tenant", f.Tenant))
	}
	if u.Source != "" {
		a = append(a, attribute.String("llmtap.usage_source", u.Source))
	}
	if f.Cost != nil {
		a = append(a, attribute.Float64("llmtap.cost_usd", f.Cost.Total.Dollars()))
	}
	if f.Upstream != "" {
		a = append(a, attribute.String("llmtap.upstream", f.Upstream), attribute.Int("llmtap.attempts", f.Tries()))
	}
	return a
}

// finishReasons reads them from the stored events, or the JSON body; none
// when the bodies were omitted.
func finishReasons(f *collector.Fact) []string {
	r := provider.Response{Path: f.Path, Kind: f.Kind}
	if n := len(f.Chunks); n > 0 {
		// The reasons are in the last few events: only those are read.
		r.Events = provider.Events(f.Chunks[max(0, n-provider.FinishEvents):])
	} else {
		r.Body = []byte(f.ResponseBody)
	}
	return provider.FinishReasons(r)
}

func value(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
