// Package derive turns the plugin's raw observations into facts: it parses
// the captured body into events, finds the times of the first byte, the
// first content-bearing event (time to first token) and the first audio
// byte, extracts token usage, and classifies errors.
//
// Definitions, all measured at the proxy from the request's arrival:
//   - TTFB: when the first response body byte was written to the client.
//   - TTFT: when the write that completed the first content-bearing event
//     (provider.ContentBearing) reached the client; SSE and NDJSON only,
//     and only when that event lies in the captured head of the body.
//   - TTFA: for audio responses, when the first body byte was written.
//   - Chunk offsets: for each event, when the write completing it reached
//     the client.
package derive

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/stream"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Fact derives the fact of one record. It never fails: what cannot be
// derived stays empty, and usage says why it is missing.
func Fact(r *llmtap.Record) *collector.Fact {
	f, _ := fact(r)
	return f
}

// fact is Fact, and the response's events for estimate.
func fact(r *llmtap.Record) (*collector.Fact, []stream.Event) {
	f := &collector.Fact{
		RequestID:         r.RequestID,
		UpstreamRequestID: r.UpstreamRequestID,
		Start:             time.Unix(0, r.StartUnixNs).UTC(),
		Tenant:            r.Tenant,
		TenantSource:      r.TenantSource,
		Route:             r.Route,
		Method:            r.Method,
		Host:              r.Host,
		Path:              r.Path,
		Status:            r.Status,
		Outcome:           r.Outcome,
		Kind:              KindOf(r.ResponseContentType),
		Streaming:         r.Streaming,
		DurationMs:        ms(r.DurationNs),
		RequestBytes:      r.RequestBytes,
		ResponseBytes:     r.ResponseBytes,
		RequestBody:       string(r.RequestBody),
		Truncated:         r.RequestTruncated || r.ResponseTruncated,
		Limit:             r.Limit,
		LimitReserved:     r.LimitReserved,
		LimitReservation:  r.LimitReservation,
		BodiesOmitted:     r.BodiesOmitted,
		TraceParent:       traceparent(r.TraceParent),
	}
	f.ErrorType = Classify(r.Status, r.Outcome)
	f.Upstream = r.Upstream
	for _, a := range r.AllAttempts() {
		at := collector.Attempt{Upstream: a.Upstream, Result: a.Error, HeaderMs: collector.NoHeader, Opened: a.Opened}
		if a.Error == "" {
			at.Result = strconv.Itoa(a.Status)
		}
		if a.HeaderNs > 0 {
			at.HeaderMs = ms(a.HeaderNs)
		}
		f.Attempts = append(f.Attempts, at)
	}
	if len(r.WriteNs) > 0 {
		f.TTFBMs = ms(r.WriteNs[0])
	} else {
		f.TTFBMs = ms(r.HeaderNs)
	}

	var events []stream.Event
	switch f.Kind {
	case collector.KindSSE:
		events = parse(r, stream.ParseSSE, sseBoundary)
	case collector.KindNDJSON:
		events = parse(r, stream.ParseNDJSON, ndjsonBoundary)
	case collector.KindRaw:
		if strings.HasPrefix(strings.ToLower(r.ResponseContentType), "audio/") && len(r.WriteNs) > 0 {
			ttfa := f.TTFBMs
			f.TTFAMs = &ttfa
		}
	}
	if f.Outcome == llmtap.OutcomeClientCancelled && f.Status < 400 && provider.StreamEnded(events) {
		// The client left once it had the stream's end (SDKs close the
		// connection when they read it), before the proxy read the end of
		// the upstream's body: nothing was cancelled.
		f.Outcome = llmtap.OutcomeCompleted
		f.ErrorType = Classify(f.Status, f.Outcome)
	}
	f.ResponseBody = responseBody(r)

	resp := provider.Response{Path: r.Path, RequestBody: r.RequestBody, Kind: f.Kind, Events: events}
	if f.Kind != collector.KindSSE && f.Kind != collector.KindNDJSON {
		// Head and tail stitched: a cut document does not parse, but the
		// provider package finds a final usage object in the bytes.
		resp.Body = captured(r)
	}
	f.Provider, f.Model = provider.Detect(resp)
	f.Usage = provider.Usage(resp)

	if len(events) == 0 {
		return f, events
	}
	// One string holds the data of every event and each chunk is a slice
	// of it: one allocation per stream, not one per event.
	size := 0
	for _, ev := range events {
		size += len(ev.Data)
	}
	var all strings.Builder
	all.Grow(size)
	for _, ev := range events {
		all.Write(ev.Data)
	}
	data := all.String()
	f.Chunks = make([]string, len(events))
	f.ChunkOffsetUs = make([]int64, len(events))
	var first int64 // when the first content event was written, in ns
	off := 0
	for i, ev := range events {
		f.Chunks[i] = data[off : off+len(ev.Data)]
		off += len(ev.Data)
		at := writeTime(r, ev.End)
		f.ChunkOffsetUs[i] = at / 1000
		if f.TTFTMs == nil && at >= 0 && provider.ContentBearing(f.Provider, ev) {
			t := ms(at)
			f.TTFTMs = &t
			first = at
		}
	}
	if f.TTFTMs != nil {
		// The last content event: looked for from the end, where it is
		// within the last few (the usage and the end follow it).
		for i := len(events) - 1; i >= 0; i-- {
			if at := writeTime(r, events[i].End); at >= first && provider.ContentBearing(f.Provider, events[i]) {
				g := (at - first) / 1000
				f.GenerationUs = &g
				break
			}
		}
	}
	return f, events
}

// traceparent keeps a W3C traceparent of the one length version 00 has,
// and drops anything else a sender put there (the exporter checks the
// rest).
func traceparent(v string) string {
	if len(v) != llmtap.TraceparentLen {
		return ""
	}
	return v
}

// Classify names the error class of a finished request, "" for success.
func Classify(status int, outcome string) collector.ErrorClass {
	switch {
	case outcome == llmtap.OutcomeClientCancelled:
		return collector.ErrClientCancel
	case outcome == llmtap.OutcomeAborted:
		return collector.ErrAborted
	case outcome == llmtap.OutcomeLimited, status == 429:
		return collector.ErrRateLimited
	case status == 504:
		return collector.ErrUpstreamTimeout
	case status >= 500:
		return collector.ErrUpstream5xx
	case status >= 400:
		return collector.ErrUpstream4xx
	}
	return ""
}

// KindOf classifies a response Content-Type.
func KindOf(contentType string) collector.Kind {
	ct := strings.ToLower(contentType)
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	switch ct = strings.TrimSpace(ct); {
	case ct == "text/event-stream":
		return collector.KindSSE
	case ct == "application/x-ndjson" || ct == "application/ndjson" || ct == "application/jsonl":
		return collector.KindNDJSON
	case ct == "application/json" || strings.HasSuffix(ct, "+json"):
		return collector.KindJSON
	case strings.HasPrefix(ct, "audio/") || ct == "application/octet-stream":
		return collector.KindRaw
	}
	return collector.KindOther
}

// parse returns the events of the captured head, then those of the tail
// (from its first event boundary on, since a cut tail starts mid-event),
// with offsets in the whole body.
func parse(r *llmtap.Record, parseFn func([]byte) []stream.Event, boundary func([]byte) int) []stream.Event {
	if r.ResponseTailOffset == int64(len(r.ResponseHead)) || len(r.ResponseTail) == 0 {
		return parseFn(captured(r))
	}
	events := parseFn(r.ResponseHead)
	if n := len(events); n > 0 && !events[n-1].Complete {
		events = events[:n-1]
	}
	skip := boundary(r.ResponseTail)
	if skip < 0 {
		return events
	}
	for _, ev := range parseFn(r.ResponseTail[skip:]) {
		shift := int(r.ResponseTailOffset) + skip
		ev.Start += shift
		ev.End += shift
		events = append(events, ev)
	}
	return events
}

// captured is the head and the tail of the body side by side, without a
// copy when there is no tail.
func captured(r *llmtap.Record) []byte {
	if len(r.ResponseTail) == 0 {
		return r.ResponseHead
	}
	return append(append(make([]byte, 0, len(r.ResponseHead)+len(r.ResponseTail)), r.ResponseHead...), r.ResponseTail...)
}

// sseBoundary is the offset just after the first blank line, -1 if none.
func sseBoundary(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' && b[i] != '\r' {
			continue
		}
		j := i + 1
		if b[i] == '\r' && j < len(b) && b[j] == '\n' {
			j++
		}
		if j < len(b) && (b[j] == '\n' || b[j] == '\r') {
			k := j + 1
			if b[j] == '\r' && k < len(b) && b[k] == '\n' {
				k++
			}
			return k
		}
	}
	return -1
}

// ndjsonBoundary is the offset just after the first newline, -1 if none.
func ndjsonBoundary(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i + 1
		}
	}
	return -1
}

// writeTime is when the write holding the byte before end reached the
// client, in ns; -1 when the writes do not say.
func writeTime(r *llmtap.Record, end int) int64 {
	i := stream.WriteOf(r.WriteEnds, end)
	if i < 0 || i >= len(r.WriteNs) {
		return -1
	}
	return r.WriteNs[i]
}

// responseBody is the captured body as stored: the head, and when the
// middle was cut, a marker with the missing byte count before the tail.
func responseBody(r *llmtap.Record) string {
	if len(r.ResponseTail) == 0 {
		return string(r.ResponseHead)
	}
	gap := r.ResponseTailOffset - int64(len(r.ResponseHead))
	if gap <= 0 {
		return string(r.ResponseHead) + string(r.ResponseTail)
	}
	return fmt.Sprintf("%s\n[… %d bytes not captured …]\n%s", r.ResponseHead, gap, r.ResponseTail)
}

func ms(ns int64) int64 { return ns / int64(time.Millisecond) }
