package http

import (
	"time"

	"github.com/llmtap/llmtap/collector"
)

// factView is a stored request as the API shows it (snake_case fields,
// units in the names).
type factView struct {
	RequestID         string `json:"request_id"`
	UpstreamRequestID string `json:"upstream_request_id,omitempty"`
	Start             string `json:"start"`
	Tenant            string `json:"tenant"`
	TenantSource      string `json:"tenant_source,omitempty"`
	Route             string `json:"route"`
	Provider          string `json:"provider"`
	Model             string `json:"model"`
	Method            string `json:"method"`
	Host              string `json:"host"`
	Path              string `json:"path"`
	Status            int    `json:"status"`
	Outcome           string `json:"outcome"`
	Kind              string `json:"kind"`
	ErrorType         string `json:"error_type,omitempty"`
	Streaming         bool   `json:"streaming"`
	TTFBMs            int64  `json:"ttfb_ms"`
	TTFTMs            *int64 `json:"ttft_ms"`
	TTFAMs            *int64 `json:"ttfa_ms"`
	DurationMs        int64  `json:"duration_ms"`
	InputTokens       *int64 `json:"input_tokens"`
	OutputTokens      *int64 `json:"output_tokens"`
	CacheReadTokens   *int64 `json:"cache_read_tokens"`
	CacheWriteTokens  *int64 `json:"cache_write_tokens"`
	CacheWrite1h      *int64 `json:"cache_write_1h_tokens,omitempty"`
	ReasoningTokens   *int64 `json:"reasoning_tokens"`
	UsageSource       string `json:"usage_source"`
	UsageMissing      string `json:"usage_missing,omitempty"`
	// Cost is null when the request could not be priced.
	Cost *costView `json:"cost"`
	// Upstream and Attempts: on routes whose upstreams the plugin chooses.
	// BodiesOmitted: the client asked that the bodies not be stored.
	BodiesOmitted bool          `json:"bodies_omitted,omitempty"`
	Upstream      string        `json:"upstream,omitempty"`
	Attempts      []attemptView `json:"attempts,omitempty"`
	RequestBytes  int64         `json:"request_bytes"`
	ResponseBytes int64         `json:"response_bytes"`
	RequestBody   string        `json:"request_body"`
	ResponseBody  string        `json:"response_body"`
	Chunks        []string      `json:"response_chunks"`
	ChunkOffsetUs []int64       `json:"chunk_offsets_us"`
	Truncated     bool          `json:"truncated"`
}

// attemptView is one upstream tried or skipped; header_ms is absent when
// no response came.
type attemptView struct {
	Upstream string `json:"upstream"`
	Result   string `json:"result"`
	HeaderMs *int64 `json:"header_ms,omitempty"`
}

func attemptsOf(as []collector.Attempt) []attemptView {
	var out []attemptView
	for _, a := range as {
		v := attemptView{Upstream: a.Upstream, Result: a.Result}
		if a.HeaderMs != collector.NoHeader {
			ms := a.HeaderMs
			v.HeaderMs = &ms
		}
		out = append(out, v)
	}
	return out
}

// costView is a request's cost, in nano-dollars and in US dollars.
type costView struct {
	USD          float64 `json:"usd"`
	Nanos        int64   `json:"nanos"`
	Input        int64   `json:"input_nanos"`
	CacheRead    int64   `json:"cache_read_nanos"`
	CacheWrite   int64   `json:"cache_write_nanos"`
	Output       int64   `json:"output_nanos"`
	Reasoning    int64   `json:"reasoning_nanos"`
	PriceVersion string  `json:"price_version"`
}

func costOf(c *collector.Cost) *costView {
	if c == nil {
		return nil
	}
	return &costView{USD: c.Total.Dollars(), Nanos: int64(c.Total), Input: int64(c.Input), CacheRead: int64(c.CacheRead),
		CacheWrite: int64(c.CacheWrite), Output: int64(c.Output), Reasoning: int64(c.Reasoning), PriceVersion: c.PriceVersion}
}

func factJSON(f *collector.Fact) factView {
	return factView{
		RequestID: f.RequestID, UpstreamRequestID: f.UpstreamRequestID,
		Start:  f.Start.UTC().Format(time.RFC3339Nano),
		Tenant: f.Tenant, TenantSource: f.TenantSource, Route: f.Route, Provider: f.Provider, Model: f.Model,
		Method: f.Method, Host: f.Host, Path: f.Path, Status: f.Status, Outcome: f.Outcome,
		Kind: string(f.Kind), ErrorType: string(f.ErrorType), Streaming: f.Streaming,
		TTFBMs: f.TTFBMs, TTFTMs: f.TTFTMs, TTFAMs: f.TTFAMs, DurationMs: f.DurationMs,
		InputTokens: f.Usage.Input, OutputTokens: f.Usage.Output, CacheReadTokens: f.Usage.CacheRead,
		CacheWriteTokens: f.Usage.CacheWrite, CacheWrite1h: f.Usage.CacheWrite1h, ReasoningTokens: f.Usage.Reasoning,
		UsageSource: f.Usage.Source, UsageMissing: f.Usage.Missing, Cost: costOf(f.Cost),
		Upstream: f.Upstream, Attempts: attemptsOf(f.Attempts), BodiesOmitted: f.BodiesOmitted,
		RequestBytes: f.RequestBytes, ResponseBytes: f.ResponseBytes,
		RequestBody: f.RequestBody, ResponseBody: f.ResponseBody,
		Chunks: f.Chunks, ChunkOffsetUs: f.ChunkOffsetUs, Truncated: f.Truncated,
	}
}
