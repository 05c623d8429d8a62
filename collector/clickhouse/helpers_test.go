package clickhouse

import (
	"fmt"
	"strings"
	"time"

	"github.com/llmtap/llmtap/collector"
)

func i64(n int64) *int64 { return &n }

// testFact returns a fact whose fields all depend on i, with every
// optional field both set and unset across i, including pointers to 0.
func testFact(i int) *collector.Fact {
	base := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	f := &collector.Fact{
		RequestID:         fmt.Sprintf("req-%06d", i),
		UpstreamRequestID: fmt.Sprintf("up-%d", i*7),
		Start:             base.Add(time.Duration(i)*1237*time.Millisecond + time.Duration(i%1000)*time.Microsecond),
		Tenant:            fmt.Sprintf("tenant-%d", i%5),
		TenantSource:      []string{"header", "key", "default"}[i%3],
		Route:             fmt.Sprintf("route-%d", i%4),
		Provider:          []string{"openai", "anthropic", "ollama"}[i%3],
		Model:             []string{"gpt-4o", "claude-sonnet-4", "llama3"}[i%3],
		Method:            "POST",
		Host:              "api.example.com",
		Path:              fmt.Sprintf("/v1/chat/completions?n=%d", i),
		Status:            []int{200, 429, 500, 504}[i%4],
		Outcome:           []string{"ok", "rate_limited", "error", "timeout"}[i%4],
		Kind:              []collector.Kind{collector.KindSSE, collector.KindJSON, collector.KindNDJSON, collector.KindRaw}[i%4],
		ErrorType:         []collector.ErrorClass{"", collector.ErrRateLimited, collector.ErrUpstream5xx, collector.ErrUpstreamTimeout}[i%4],
		Streaming:         i%2 == 0,
		TTFBMs:            int64(i % 300),
		DurationMs:        int64(1000 + i),
		Usage: collector.Usage{
			Source:  "openai.chat.stream",
			Missing: "",
		},
		RequestBytes:  int64(200 + i),
		ResponseBytes: int64(5000 + i),
		RequestBody:   fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"user","content":"question %d, with 'quotes' and \\ backslash"}]}`, i),
		ResponseBody:  strings.Repeat(fmt.Sprintf("data: {\"i\":%d}\n\n", i), 1+i%20),
		Truncated:     i%7 == 0,
	}
	if i%3 != 0 {
		f.TTFTMs = i64(int64(i % 500))
	}
	if i%4 == 3 {
		f.TTFAMs = i64(0)
	}
	if i%5 != 0 {
		f.Usage.Input = i64(int64(i * 3))
		f.Usage.Output = i64(int64(i % 11)) // 0 for some
		f.Usage.CacheRead = i64(0)
	} else {
		f.Usage.Source, f.Usage.Missing = "none", "no usage in stream"
	}
	if i%6 == 1 {
		f.Usage.CacheWrite = i64(int64(i))
		f.Usage.Reasoning = i64(int64(i / 2))
	}
	if f.Streaming {
		var body strings.Builder
		for c := 0; c < 1+i%8; c++ {
			f.Chunks = append(f.Chunks, fmt.Sprintf(`{"delta":"tok %d.%d"}`, i, c))
			f.ChunkOffsetUs = append(f.ChunkOffsetUs, int64(c*15000+i%97))
			body.WriteString("data: " + f.Chunks[c] + "\n\n")
		}
		if i%4 == 0 {
			// The chunks are runs of the body (stored as spans); at
			// i%4 == 2 they are not (stored as texts).
			f.ResponseBody = body.String()
		}
	}
	if i%11 == 0 {
		f.ResponseBody = "\x00\xff\xfe binary \x80 audio" // not UTF-8
	}
	switch i % 9 {
	case 1: // the second upstream served
		f.Upstream = "azure-eu"
		f.Attempts = []collector.Attempt{{Upstream: "openai", Result: "503", HeaderMs: int64(i % 50)}, {Upstream: "azure-eu", Result: "200", HeaderMs: int64(60 + i%50)}}
	case 5: // the client asked for no bodies: the chunks' times are kept
		f.BodiesOmitted = true
		f.RequestBody, f.ResponseBody, f.Chunks = "", "", nil
	case 2: // one skipped, its circuit open
		f.Upstream = "b"
		f.Attempts = []collector.Attempt{{Upstream: "a", Result: "circuit_open", HeaderMs: collector.NoHeader}, {Upstream: "b", Result: "200", HeaderMs: 3}}
	}
	if f.Usage.Input != nil && f.Model != "llama3" { // llama3 is unpriced
		in, out := collector.Money(*f.Usage.Input*2500), collector.Money(*f.Usage.Output*10000)
		f.Cost = &collector.Cost{Input: in, Output: out, Total: in + out, PriceVersion: "2026-12-06"}
		if f.Usage.CacheWrite != nil {
			f.Cost.CacheWrite = collector.Money(*f.Usage.CacheWrite * 3125)
			f.Cost.Total += f.Cost.CacheWrite
		}
	}
	return f
}

// stored is f as the table keeps it: start in UTC with millisecond
// precision, empty arrays nil.
func stored(f *collector.Fact) *collector.Fact {
	g := *f
	sec, ms := splitStart(f.Start)
	g.Start = sec.Add(time.Duration(ms) * time.Millisecond)
	if len(g.Chunks) == 0 {
		g.Chunks = nil
	}
	if len(g.ChunkOffsetUs) == 0 {
		g.ChunkOffsetUs = nil
	}
	return &g
}

// requestsOf is the SQL of the requests a rollup's rows count: latency_hourly
// counts them in its histogram.
func requestsOf(r rollup) string {
	if r.name == latencyHourly.name {
		return "toUInt64(arraySum(sumForEachMerge(duration_hist)))"
	}
	return "countMerge(requests)"
}
