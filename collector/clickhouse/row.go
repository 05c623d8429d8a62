package clickhouse

import (
	"math"
	"strings"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// maxDateTime is the last second a DateTime (UInt32 seconds) holds.
const maxDateTime = math.MaxUint32

// row is one row of the requests table, field for field in column order
// (schema.go), with the Go types clickhouse-go reads and writes for them.
type row struct {
	RequestID           string
	UpstreamRequestID   string
	Start               time.Time // whole seconds, UTC
	StartMs             uint16
	Tenant              string
	TenantSource        string
	Route               string
	Provider            string
	Model               string
	Method              string
	Host                string
	Path                string
	Status              uint16
	Outcome             string
	Kind                string
	ErrorType           string
	Streaming           uint8
	TTFBMs              int64
	TTFTMs              *int64
	TTFAMs              *int64
	DurationMs          int64
	InputTokens         *int64
	OutputTokens        *int64
	CacheReadTokens     *int64
	CacheWriteTokens    *int64
	ReasoningTokens     *int64
	UsageSource         string
	UsageMissing        string
	CacheWrite1hTokens  *int64
	CostNanos           *int64
	CostInputNanos      int64
	CostCacheReadNanos  int64
	CostCacheWriteNanos int64
	CostOutputNanos     int64
	CostReasoningNanos  int64
	PriceVersion        string
	Upstream            string
	Attempts            uint8
	AttemptUpstreams    []string
	AttemptResults      []string
	AttemptHeaderMs     []int64
	BodiesOmitted       uint8
	RequestBytes        int64
	ResponseBytes       int64
	RequestBody         string
	ResponseBody        string
	ResponseChunks      []string
	ChunkStarts         []uint32
	ChunkEnds           []uint32
	ChunkOffsetsUs      []int64
	Truncated           uint8
	InsertedAt          time.Time
}

// toRow converts a fact for insertion. It is total: every value is brought
// into its column's range (a start before 1970 or after 2106 is clamped, a
// status outside 0..65535 too), so Append never fails on a fact and one bad
// fact cannot poison a batch. Start keeps milliseconds; finer is dropped.
func toRow(f *collector.Fact, insertedAt time.Time) row {
	sec, ms := splitStart(f.Start)
	texts := f.Chunks
	starts, ends, ok := chunkSpans(f.ResponseBody, f.Chunks)
	if ok {
		texts = nil
	}
	var cost collector.Cost
	var total *int64
	if f.Cost != nil {
		cost = *f.Cost
		t := int64(cost.Total)
		total = &t
	}
	var ups, results []string
	var headers []int64
	for _, a := range f.Attempts {
		ups = append(ups, a.Upstream)
		results = append(results, a.Result)
		headers = append(headers, a.HeaderMs)
	}
	return row{
		Upstream:            f.Upstream,
		Attempts:            uint8(min(f.Tries(), 255)),
		AttemptUpstreams:    ups,
		AttemptResults:      results,
		AttemptHeaderMs:     headers,
		BodiesOmitted:       boolToUint8(f.BodiesOmitted),
		RequestID:           f.RequestID,
		UpstreamRequestID:   f.UpstreamRequestID,
		Start:               sec,
		StartMs:             ms,
		Tenant:              f.Tenant,
		TenantSource:        f.TenantSource,
		Route:               f.Route,
		Provider:            f.Provider,
		Model:               f.Model,
		Method:              f.Method,
		Host:                f.Host,
		Path:                f.Path,
		Status:              clampUint16(f.Status),
		Outcome:             f.Outcome,
		Kind:                string(f.Kind),
		ErrorType:           string(f.ErrorType),
		Streaming:           boolToUint8(f.Streaming),
		TTFBMs:              f.TTFBMs,
		TTFTMs:              f.TTFTMs,
		TTFAMs:              f.TTFAMs,
		DurationMs:          f.DurationMs,
		InputTokens:         f.Usage.Input,
		OutputTokens:        f.Usage.Output,
		CacheReadTokens:     f.Usage.CacheRead,
		CacheWriteTokens:    f.Usage.CacheWrite,
		ReasoningTokens:     f.Usage.Reasoning,
		UsageSource:         f.Usage.Source,
		UsageMissing:        f.Usage.Missing,
		CacheWrite1hTokens:  f.Usage.CacheWrite1h,
		CostNanos:           total,
		CostInputNanos:      int64(cost.Input),
		CostCacheReadNanos:  int64(cost.CacheRead),
		CostCacheWriteNanos: int64(cost.CacheWrite),
		CostOutputNanos:     int64(cost.Output),
		CostReasoningNanos:  int64(cost.Reasoning),
		PriceVersion:        cost.PriceVersion,
		RequestBytes:        f.RequestBytes,
		ResponseBytes:       f.ResponseBytes,
		RequestBody:         f.RequestBody,
		ResponseBody:        f.ResponseBody,
		ResponseChunks:      texts,
		ChunkStarts:         starts,
		ChunkEnds:           ends,
		ChunkOffsetsUs:      f.ChunkOffsetUs,
		Truncated:           boolToUint8(f.Truncated),
		InsertedAt:          clampTime(insertedAt).Truncate(time.Second),
	}
}

// values are the row's values in column order, for batch.Append.
func (r *row) values() []any {
	return []any{
		r.RequestID, r.UpstreamRequestID, r.Start, r.StartMs,
		r.Tenant, r.TenantSource, r.Route, r.Provider, r.Model, r.Method, r.Host, r.Path,
		r.Status, r.Outcome, r.Kind, r.ErrorType, r.Streaming,
		r.TTFBMs, r.TTFTMs, r.TTFAMs, r.DurationMs,
		r.InputTokens, r.OutputTokens, r.CacheReadTokens, r.CacheWriteTokens, r.ReasoningTokens,
		r.UsageSource, r.UsageMissing, r.CacheWrite1hTokens,
		r.CostNanos, r.CostInputNanos, r.CostCacheReadNanos, r.CostCacheWriteNanos, r.CostOutputNanos, r.CostReasoningNanos, r.PriceVersion,
		r.Upstream, r.Attempts, r.AttemptUpstreams, r.AttemptResults, r.AttemptHeaderMs, r.BodiesOmitted,
		r.RequestBytes, r.ResponseBytes, r.RequestBody, r.ResponseBody,
		r.ResponseChunks, r.ChunkStarts, r.ChunkEnds, r.ChunkOffsetsUs, r.Truncated, r.InsertedAt,
	}
}

// dests are pointers to the row's fields in column order, for rows.Scan.
func (r *row) dests() []any {
	return []any{
		&r.RequestID, &r.UpstreamRequestID, &r.Start, &r.StartMs,
		&r.Tenant, &r.TenantSource, &r.Route, &r.Provider, &r.Model, &r.Method, &r.Host, &r.Path,
		&r.Status, &r.Outcome, &r.Kind, &r.ErrorType, &r.Streaming,
		&r.TTFBMs, &r.TTFTMs, &r.TTFAMs, &r.DurationMs,
		&r.InputTokens, &r.OutputTokens, &r.CacheReadTokens, &r.CacheWriteTokens, &r.ReasoningTokens,
		&r.UsageSource, &r.UsageMissing, &r.CacheWrite1hTokens,
		&r.CostNanos, &r.CostInputNanos, &r.CostCacheReadNanos, &r.CostCacheWriteNanos, &r.CostOutputNanos, &r.CostReasoningNanos, &r.PriceVersion,
		&r.Upstream, &r.Attempts, &r.AttemptUpstreams, &r.AttemptResults, &r.AttemptHeaderMs, &r.BodiesOmitted,
		&r.RequestBytes, &r.ResponseBytes, &r.RequestBody, &r.ResponseBody,
		&r.ResponseChunks, &r.ChunkStarts, &r.ChunkEnds, &r.ChunkOffsetsUs, &r.Truncated, &r.InsertedAt,
	}
}

// fact converts a stored row back. Start is UTC with millisecond
// precision; empty arrays come back nil.
func (r *row) fact() *collector.Fact {
	f := &collector.Fact{
		RequestID:         r.RequestID,
		UpstreamRequestID: r.UpstreamRequestID,
		Start:             time.Unix(r.Start.Unix(), int64(r.StartMs)*int64(time.Millisecond)).UTC(),
		Tenant:            r.Tenant,
		TenantSource:      r.TenantSource,
		Route:             r.Route,
		Provider:          r.Provider,
		Model:             r.Model,
		Method:            r.Method,
		Host:              r.Host,
		Path:              r.Path,
		Status:            int(r.Status),
		Outcome:           r.Outcome,
		Kind:              collector.Kind(r.Kind),
		ErrorType:         collector.ErrorClass(r.ErrorType),
		Streaming:         r.Streaming != 0,
		TTFBMs:            r.TTFBMs,
		TTFTMs:            r.TTFTMs,
		TTFAMs:            r.TTFAMs,
		DurationMs:        r.DurationMs,
		Usage: collector.Usage{
			Input:        r.InputTokens,
			Output:       r.OutputTokens,
			CacheRead:    r.CacheReadTokens,
			CacheWrite:   r.CacheWriteTokens,
			CacheWrite1h: r.CacheWrite1hTokens,
			Reasoning:    r.ReasoningTokens,
			Source:       r.UsageSource,
			Missing:      r.UsageMissing,
		},
		RequestBytes:  r.RequestBytes,
		ResponseBytes: r.ResponseBytes,
		RequestBody:   r.RequestBody,
		ResponseBody:  r.ResponseBody,
		Truncated:     r.Truncated != 0,
	}
	if r.CostNanos != nil {
		f.Cost = &collector.Cost{
			Input: collector.Money(r.CostInputNanos), CacheRead: collector.Money(r.CostCacheReadNanos), CacheWrite: collector.Money(r.CostCacheWriteNanos),
			Output: collector.Money(r.CostOutputNanos), Reasoning: collector.Money(r.CostReasoningNanos), Total: collector.Money(*r.CostNanos),
			PriceVersion: r.PriceVersion,
		}
	}
	if len(r.ResponseChunks) > 0 {
		f.Chunks = r.ResponseChunks
	} else {
		f.Chunks = spanChunks(r.ResponseBody, r.ChunkStarts, r.ChunkEnds)
	}
	if len(r.ChunkOffsetsUs) > 0 {
		f.ChunkOffsetUs = r.ChunkOffsetsUs
	}
	f.Upstream = r.Upstream
	f.BodiesOmitted = r.BodiesOmitted != 0
	// Arrays of one row have the same length unless a hand edited them.
	for i := 0; i < len(r.AttemptUpstreams) && i < len(r.AttemptResults) && i < len(r.AttemptHeaderMs); i++ {
		f.Attempts = append(f.Attempts, collector.Attempt{Upstream: r.AttemptUpstreams[i], Result: r.AttemptResults[i], HeaderMs: r.AttemptHeaderMs[i]})
	}
	return f
}

// chunkSpans finds each chunk in the body, in order, and returns where
// each lies: a stream's events are runs of its bytes (an SSE data line,
// an NDJSON line), so a row stores the body once and the chunks as
// offsets into it. It reports false, and the chunks are stored as texts,
// when one is not found (an SSE event of several data lines, joined) or
// the body is too long for the offsets. Each span holds exactly its
// chunk's bytes, so reading them back cannot differ from the chunks.
func chunkSpans(body string, chunks []string) ([]uint32, []uint32, bool) {
	if len(chunks) == 0 || body == "" || len(body) > math.MaxUint32 {
		return nil, nil, false
	}
	starts, ends := make([]uint32, len(chunks)), make([]uint32, len(chunks))
	at := 0
	for i, c := range chunks {
		j := nextRun(body[at:], c)
		if j < 0 {
			return nil, nil, false
		}
		at += j
		starts[i], ends[i] = uint32(at), uint32(at+len(c))
		at += len(c)
	}
	return starts, ends, true
}

// nextRun is the index of c in s, or -1. An event's data usually starts
// at the first byte like its own after the previous event (past "data: "),
// so that place is tried before a search of the rest.
func nextRun(s, c string) int {
	if c == "" {
		return 0
	}
	if j := strings.IndexByte(s, c[0]); j >= 0 && strings.HasPrefix(s[j:], c) {
		return j
	}
	return strings.Index(s, c)
}

// spanChunks cuts the chunks out of the body, as the alias chunks does:
// none when there are no spans or the body is gone (its retention), and a
// span past the body's end (a damaged row) cut to it.
func spanChunks(body string, starts, ends []uint32) []string {
	n := len(ends)
	if n == 0 || n != len(starts) || body == "" {
		return nil
	}
	chunks := make([]string, n)
	for i := range chunks {
		s, e := min(int(starts[i]), len(body)), min(int(ends[i]), len(body))
		chunks[i] = body[s:max(s, e)]
	}
	return chunks
}

// splitStart is t as whole UTC seconds within DateTime's range plus the
// milliseconds.
func splitStart(t time.Time) (time.Time, uint16) {
	c := clampTime(t)
	if !c.Equal(t) {
		return c, 0
	}
	return time.Unix(t.Unix(), 0).UTC(), uint16(t.Nanosecond() / int(time.Millisecond))
}

func clampTime(t time.Time) time.Time {
	switch s := t.Unix(); {
	case s < 0:
		return time.Unix(0, 0).UTC()
	case s > maxDateTime:
		return time.Unix(maxDateTime, 0).UTC()
	}
	return t.UTC()
}

func clampUint16(n int) uint16 {
	switch {
	case n < 0:
		return 0
	case n > math.MaxUint16:
		return math.MaxUint16
	}
	return uint16(n)
}

func boolToUint8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
