// Package collector holds the collector's domain: the facts it derives from
// the plugin's records, the ingest use case (Ingest: records to facts,
// queued and settled), spend and limit types, and the interfaces its
// parts meet at. One subpackage per job or dependency does the work:
// stream (SSE and NDJSON parsing), provider (usage, model, content and
// generated text by provider dialect), tokens (tokenizers), pricing
// (prices and costs), derive (record to fact: read, estimate, price),
// limits (quotas and budgets), redact (masking before storage), otel
// (span export), config, clickhouse (storage), redis (limit state),
// metrics (Prometheus), http (the API, a thin adapter), and
// cmd/llmtap-collector wires them together.
package collector

import (
	"context"
	"errors"
	"strconv"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// Kind is the shape of a response body.
type Kind string

// Response kinds.
const (
	KindSSE    Kind = "sse"    // text/event-stream
	KindNDJSON Kind = "ndjson" // application/x-ndjson (Ollama)
	KindJSON   Kind = "json"   // one JSON document
	KindRaw    Kind = "raw"    // audio and other bytes (TTS)
	KindOther  Kind = "other"  // text, HTML, nothing
)

// ErrorClass says why a request did not succeed; empty when it did.
type ErrorClass string

// Error classes.
const (
	ErrUpstreamTimeout ErrorClass = "upstream_timeout" // Traefik gave up waiting (504)
	ErrUpstream5xx     ErrorClass = "upstream_5xx"
	ErrUpstream4xx     ErrorClass = "upstream_4xx"
	ErrClientCancel    ErrorClass = "client_cancel"
	ErrRateLimited     ErrorClass = "rate_limited" // 429, from the upstream or from llmtap's limits
	ErrAborted         ErrorClass = "aborted"      // the stream broke off mid-body
	ErrStorage         ErrorClass = "storage_error"
)

// Usage is token usage normalized across providers. A nil field means the
// response did not say. Input counts every prompt token, cached or not;
// CacheRead and CacheWrite are the parts of Input read from or written to a
// prompt cache; Reasoning is the part of Output spent on reasoning. So
// Input+Output is the total, never double counted (see the provider package doc
// for how Anthropic's and OpenAI's fields map onto this).
type Usage struct {
	Input      *int64
	Output     *int64
	CacheRead  *int64
	CacheWrite *int64
	// CacheWrite1h is the part of CacheWrite written to a cache that
	// lasts an hour (Anthropic's 1-hour cache), priced apart.
	CacheWrite1h *int64
	Reasoning    *int64
	// Source names where usage came from (e.g. "openai.chat.stream"), or
	// "none" with Missing saying why.
	Source  string
	Missing string
}

// Money is an amount in US nano-dollars (1e-9 USD): integer, so that
// sums of many requests' costs are exact.
type Money int64

// Dollars is m in US dollars.
func (m Money) Dollars() float64 { return float64(m) / 1e9 }

// Cost is what a request cost, priced from its Usage: each token once, at
// the price of its kind. Input is the uncached prompt tokens' part,
// CacheRead and CacheWrite the cached ones', Output the visible output's,
// Reasoning the reasoning's; Total their sum.
type Cost struct {
	Input, CacheRead, CacheWrite, Output, Reasoning Money
	Total                                           Money
	// PriceVersion is the price table's version, or "config" for a price
	// from the collector's YAML.
	PriceVersion string
}

// Fact is one proxied request as stored: one row of the requests table.
// Times are from the request's arrival at the proxy.
type Fact struct {
	RequestID         string
	UpstreamRequestID string
	Start             time.Time // millisecond precision is stored
	Tenant            string
	TenantSource      string
	Route             string
	Provider          string
	Model             string
	Method            string
	Host              string
	Path              string
	Status            int
	Outcome           string
	Kind              Kind
	ErrorType         ErrorClass
	Streaming         bool

	TTFBMs     int64  // first body byte written to the client
	TTFTMs     *int64 // first write carrying content (SSE/NDJSON), nil when none
	TTFAMs     *int64 // first audio byte (raw audio), nil otherwise
	DurationMs int64
	// GenerationUs is from the first content event to the last (SSE and
	// NDJSON), in microseconds: with the output tokens, the time per
	// output token. Not stored: the chunks' times are.
	GenerationUs *int64

	Usage Usage
	// Cost is nil when the request could not be priced: its model has no
	// price, or it has no token counts.
	Cost *Cost

	RequestBytes  int64
	ResponseBytes int64
	RequestBody   string
	ResponseBody  string   // the captured head, and the tail after a gap marker when cut
	Chunks        []string // events (SSE/NDJSON) in the captured body
	ChunkOffsetUs []int64  // when each chunk reached the client
	Truncated     bool     // a body was cut to its capture limit

	// Limit is how the request fared with llmtap's limits (the plugin's
	// Limit* values), empty when its router has none; LimitReserved is
	// the tokens reserved for it, settled against Usage.
	Limit         string
	LimitReserved int64
	// LimitReservation names the reservation to settle; empty for plugins
	// and collectors before it, and then RequestID names it.
	LimitReservation string

	// Upstream names the upstream that answered, on a route whose
	// upstreams the plugin chooses; Attempts lists each one tried or
	// skipped, in order. Both empty on other routes.
	Upstream string
	Attempts []Attempt

	// TraceParent is the request's W3C traceparent, as the plugin saw it
	// (not stored): its span joins that trace.
	TraceParent string

	// BodiesOmitted: the client asked that this request's bodies not be
	// stored (the plugin's omit header); its facts are kept.
	BodiesOmitted bool
	// Redactions counts the values masked in its bodies, by kind. It
	// feeds the metrics and is not stored.
	Redactions map[string]int
}

// Attempt is one upstream tried, or skipped (its circuit open), for a
// request.
type Attempt struct {
	Upstream string
	// Result is the response status ("503"), or why there was none: one of
	// the plugin's Attempt* errors (connect_error, first_byte_timeout,
	// read_error, circuit_open, cancelled).
	Result string
	// HeaderMs is when its response headers came, from the request's
	// arrival; NoHeader when none did.
	HeaderMs int64
	// Opened says this attempt opened the upstream's circuit. It feeds
	// the metrics and is not stored.
	Opened bool
}

// NoHeader is Attempt.HeaderMs of an attempt that got no response.
const NoHeader = -1

// TimePerOutputToken is the generation's time divided by the output
// tokens after the first, in seconds; ok is false without a stream of two
// tokens or more.
func (f *Fact) TimePerOutputToken() (seconds float64, ok bool) {
	if f.GenerationUs == nil || f.Usage.Output == nil || *f.Usage.Output < 2 {
		return 0, false
	}
	return float64(*f.GenerationUs) / 1e6 / float64(*f.Usage.Output-1), true
}

// Tries counts the attempts made, the skipped ones left out.
func (f *Fact) Tries() int {
	n := 0
	for _, a := range f.Attempts {
		if a.Result != llmtap.AttemptCircuitOpen {
			n++
		}
	}
	return n
}

// AttemptClass groups an attempt's result for metrics: ok (below 400),
// rate_limited (429), upstream_4xx, upstream_5xx, or the error itself.
func AttemptClass(result string) string {
	n, err := strconv.Atoi(result)
	switch {
	case err != nil:
		return result
	case n < 400:
		return "ok"
	case n == 429:
		return string(ErrRateLimited)
	case n < 500:
		return string(ErrUpstream4xx)
	}
	return string(ErrUpstream5xx)
}

// HoldsReservation says whether the request holds a limit reservation to
// settle: tokens counted by the plugin, or a reservation it names (money
// is held under a name only).
func (f *Fact) HoldsReservation() bool {
	return f.LimitReserved > 0 || f.LimitReservation != ""
}

// ErrNotFound is returned by a Store that has no fact for an id.
var ErrNotFound = errors.New("not found")

// ErrQueueFull is returned by a Queue that cannot take more facts now; the
// sender should retry later.
var ErrQueueFull = errors.New("write queue full")

// Queue takes facts to be stored without waiting on the store (beyond a
// short bound for room, within ctx): the facts of one batch all, or none
// and an error (ErrQueueFull: retry later).
type Queue interface {
	Enqueue(ctx context.Context, facts ...*Fact) error
}

// Store keeps facts and finds them again.
type Store interface {
	// Get returns the fact of a request id, or ErrNotFound.
	Get(ctx context.Context, requestID string) (*Fact, error)
}
