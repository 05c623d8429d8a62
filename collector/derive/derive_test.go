package derive

import (
	"reflect"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/tokens"
	llmtap "github.com/llmtap/llmtap/plugin"
)

const msNs = int64(1e6)

// sseRecord builds the record of an SSE body written one event per write,
// event i at times[i] ms.
func sseRecord(events []string, times []int64) *llmtap.Record {
	r := &llmtap.Record{
		V: llmtap.RecordVersion, RequestID: "r1", StartUnixNs: 1700000000 * 1e9, Route: "openai",
		Method: "POST", Path: "/v1/chat/completions", Status: 200, Outcome: llmtap.OutcomeCompleted,
		ResponseContentType: "text/event-stream", Streaming: true,
		RequestBody: []byte(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}`),
		HeaderNs:    times[0]*msNs - msNs,
	}
	var body strings.Builder
	for i, ev := range events {
		body.WriteString(ev)
		r.WriteEnds = append(r.WriteEnds, int64(body.Len()))
		r.WriteNs = append(r.WriteNs, times[i]*msNs)
	}
	r.ResponseHead = []byte(body.String())
	r.ResponseTailOffset = int64(body.Len())
	r.ResponseBytes = int64(body.Len())
	r.DurationNs = times[len(times)-1]*msNs + msNs
	return r
}

var openAIStream = []string{
	`data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n",
	`data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}` + "\n\n",
	"data: [DONE]\n\n",
}

func TestOpenAIStream(t *testing.T) {
	f := Fact(sseRecord(openAIStream, []int64{40, 95, 120, 140, 141, 142}))
	if f.Kind != collector.KindSSE || f.ErrorType != "" || f.Provider != "openai" || f.Model != "gpt-4o-mini-2024-07-18" {
		t.Errorf("kind %q error %q provider %q model %q", f.Kind, f.ErrorType, f.Provider, f.Model)
	}
	if f.TTFBMs != 40 {
		t.Errorf("ttfb %d, want 40: the first write", f.TTFBMs)
	}
	if f.TTFTMs == nil || *f.TTFTMs != 95 {
		t.Errorf("ttft %v, want 95: the role-only chunk carries no content", f.TTFTMs)
	}
	if f.TTFAMs != nil {
		t.Error("ttfa set on a text stream")
	}
	if f.Usage.Input == nil || *f.Usage.Input != 12 || f.Usage.Output == nil || *f.Usage.Output != 2 {
		t.Errorf("usage %+v", f.Usage)
	}
	if len(f.Chunks) != 6 || f.Chunks[1] != `{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}` {
		t.Errorf("chunks %q", f.Chunks)
	}
	wantOffsets := []int64{40000, 95000, 120000, 140000, 141000, 142000}
	for i, us := range f.ChunkOffsetUs {
		if us != wantOffsets[i] {
			t.Errorf("chunk offsets %v, want %v", f.ChunkOffsetUs, wantOffsets)
			break
		}
	}
	if f.DurationMs != 143 || f.Start.Unix() != 1700000000 {
		t.Errorf("duration %d start %v", f.DurationMs, f.Start)
	}
}

// TestStreamCutInTheMiddle: the head and the tail survive, the usage chunk
// at the end is found in the tail, and the stored body marks the gap.
func TestStreamCutInTheMiddle(t *testing.T) {
	events := []string{openAIStream[0], openAIStream[1]}
	for i := 0; i < 50; i++ {
		events = append(events, openAIStream[2])
	}
	events = append(events, openAIStream[3], openAIStream[4], openAIStream[5])
	times := make([]int64, len(events))
	for i := range times {
		times[i] = int64(100 + i)
	}
	r := sseRecord(events, times)
	whole := r.ResponseHead
	r.ResponseHead = whole[:1000]
	r.ResponseTailOffset = int64(len(whole) - 1000)
	r.ResponseTail = whole[r.ResponseTailOffset:]
	r.ResponseTruncated = true

	f := Fact(r)
	if !f.Truncated || !strings.Contains(f.ResponseBody, "bytes not captured") {
		t.Errorf("truncated %v body %q…", f.Truncated, f.ResponseBody[:80])
	}
	if f.Usage.Output == nil || *f.Usage.Output != 2 {
		t.Errorf("usage %+v: the final usage chunk is in the tail", f.Usage)
	}
	if f.TTFTMs == nil || *f.TTFTMs != 101 {
		t.Errorf("ttft %v, want 101", f.TTFTMs)
	}
	if last := f.Chunks[len(f.Chunks)-1]; last != "[DONE]" {
		t.Errorf("last chunk %q", last)
	}
	if got := f.ChunkOffsetUs[len(f.ChunkOffsetUs)-1]; got != times[len(times)-1]*1000 {
		t.Errorf("last chunk at %d us, want %d: tail offsets must map to the right writes", got, times[len(times)-1]*1000)
	}
}

func TestAudio(t *testing.T) {
	r := &llmtap.Record{
		V: 1, RequestID: "a", StartUnixNs: 1, Path: "/v1/audio/speech", Status: 200,
		ResponseContentType: "audio/wav", ResponseBytes: 8192, BodyNotCaptured: "audio",
		RequestBody: []byte(`{"model":"tts-1","input":"hi","voice":"alloy"}`),
		WriteEnds:   []int64{4096, 8192}, WriteNs: []int64{180 * msNs, 260 * msNs}, DurationNs: 300 * msNs,
	}
	f := Fact(r)
	if f.Kind != collector.KindRaw || f.TTFAMs == nil || *f.TTFAMs != 180 || f.TTFTMs != nil || f.Model != "tts-1" {
		t.Errorf("kind %q ttfa %v ttft %v model %q", f.Kind, f.TTFAMs, f.TTFTMs, f.Model)
	}
}

func TestJSONCompletion(t *testing.T) {
	r := &llmtap.Record{
		V: 1, RequestID: "j", StartUnixNs: 1, Path: "/v1/chat/completions", Status: 200,
		ResponseContentType: "application/json",
		RequestBody:         []byte(`{"model":"gpt-4o"}`),
		ResponseHead:        []byte(`{"id":"x","model":"gpt-4o-2024-08-06","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`),
		WriteEnds:           []int64{120}, WriteNs: []int64{900 * msNs}, DurationNs: 901 * msNs,
	}
	r.ResponseTailOffset = int64(len(r.ResponseHead))
	f := Fact(r)
	if f.Kind != collector.KindJSON || f.TTFTMs != nil || f.TTFBMs != 900 || f.Model != "gpt-4o-2024-08-06" {
		t.Errorf("kind %q ttft %v ttfb %d model %q", f.Kind, f.TTFTMs, f.TTFBMs, f.Model)
	}
	if f.Usage.Input == nil || *f.Usage.Input != 5 {
		t.Errorf("usage %+v", f.Usage)
	}
}

// TestAttempts: a record's attempts become the fact's, each with its
// status or error as result, and no header time when none came. The one
// that served, when the record leaves it out, is the last, with the
// record's status and header time.
func TestAttempts(t *testing.T) {
	failed := []llmtap.Attempt{
		{Upstream: "a", Error: llmtap.AttemptCircuitOpen},
		{Upstream: "b", Status: 503, HeaderNs: 40 * msNs, Opened: true},
	}
	wantFailed := []collector.Attempt{
		{Upstream: "a", Result: "circuit_open", HeaderMs: collector.NoHeader},
		{Upstream: "b", Result: "503", HeaderMs: 40, Opened: true},
	}
	served := collector.Attempt{Upstream: "c", Result: "200", HeaderMs: 90}
	for _, tt := range []struct {
		name     string
		upstream string
		attempts []llmtap.Attempt
		want     []collector.Attempt
		tries    int // attempts made, the skipped one aside
	}{
		{"the served one listed", "c", append(failed, llmtap.Attempt{Upstream: "c", Status: 200, HeaderNs: 90 * msNs}), append(wantFailed, served), 2},
		{"the served one left out", "c", failed, append(wantFailed, served), 2},
		{"the first served", "c", nil, []collector.Attempt{served}, 1},
		{"none served", "", failed, wantFailed, 1},
		{"no upstreams", "", nil, nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &llmtap.Record{V: 1, RequestID: "a", StartUnixNs: 1, Status: 200, HeaderNs: 90 * msNs, Upstream: tt.upstream, Attempts: tt.attempts}
			f := Fact(r)
			if f.Upstream != tt.upstream || !reflect.DeepEqual(f.Attempts, tt.want) || f.Tries() != tt.tries {
				t.Errorf("upstream %q, attempts %+v (tries %d); want %q, %+v, %d", f.Upstream, f.Attempts, f.Tries(), tt.upstream, tt.want, tt.tries)
			}
		})
	}
}

// TestBodiesLeaveAfterTheFacts: the steps read the bodies first (usage,
// estimate, price); then a request whose client asked keeps none, and the
// others are masked by the redactor.
func TestBodiesLeaveAfterTheFacts(t *testing.T) {
	red := redactorFunc(func(f *collector.Fact) map[string]int {
		f.RequestBody = strings.ReplaceAll(f.RequestBody, "sk-secret", "[masked]")
		return map[string]int{"test": 1}
	})
	for _, omitted := range []bool{false, true} {
		r := &llmtap.Record{
			V: 1, RequestID: "o", StartUnixNs: 1, Path: "/v1/chat/completions", Status: 200, BodiesOmitted: omitted,
			ResponseContentType: "application/json",
			RequestBody:         []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"sk-secret"}]}`),
			ResponseHead:        []byte(`{"model":"gpt-4o","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}`),
			WriteEnds:           []int64{120}, WriteNs: []int64{msNs}, DurationNs: 2 * msNs,
		}
		r.ResponseTailOffset = int64(len(r.ResponseHead))
		f := New(Steps{Redactor: red})(r)
		if f.Usage.Input == nil || *f.Usage.Input != 5 || f.BodiesOmitted != omitted {
			t.Errorf("omitted %v: usage %+v, bodies_omitted %v", omitted, f.Usage, f.BodiesOmitted)
		}
		switch {
		case omitted && (f.RequestBody != "" || f.ResponseBody != "" || f.Redactions != nil):
			t.Errorf("omitted: bodies kept %q %q, redactions %v", f.RequestBody, f.ResponseBody, f.Redactions)
		case !omitted && (!strings.Contains(f.RequestBody, "[masked]") || f.Redactions["test"] != 1):
			t.Errorf("not omitted: body %q, redactions %v", f.RequestBody, f.Redactions)
		}
	}
}

type redactorFunc func(f *collector.Fact) map[string]int

func (r redactorFunc) Redact(f *collector.Fact) map[string]int { return r(f) }

func TestClassify(t *testing.T) {
	tests := []struct {
		status  int
		outcome string
		want    collector.ErrorClass
	}{
		{200, llmtap.OutcomeCompleted, ""},
		{101, llmtap.OutcomeCompleted, ""},
		{200, llmtap.OutcomeClientCancelled, collector.ErrClientCancel},
		{499, llmtap.OutcomeClientCancelled, collector.ErrClientCancel},
		{200, llmtap.OutcomeAborted, collector.ErrAborted},
		{429, llmtap.OutcomeUpstreamError, collector.ErrRateLimited},
		{503, llmtap.OutcomeLimited, collector.ErrRateLimited},
		{429, llmtap.OutcomeLimited, collector.ErrRateLimited},
		{504, llmtap.OutcomeUpstreamError, collector.ErrUpstreamTimeout},
		{502, llmtap.OutcomeUpstreamError, collector.ErrUpstream5xx},
		{404, llmtap.OutcomeUpstreamError, collector.ErrUpstream4xx},
	}
	for _, tt := range tests {
		if got := Classify(tt.status, tt.outcome); got != tt.want {
			t.Errorf("Classify(%d, %q) = %q, want %q", tt.status, tt.outcome, got, tt.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	for ct, want := range map[string]collector.Kind{
		"text/event-stream; charset=utf-8": collector.KindSSE,
		"application/x-ndjson":             collector.KindNDJSON,
		"application/json":                 collector.KindJSON,
		"audio/mpeg":                       collector.KindRaw,
		"application/octet-stream":         collector.KindRaw,
		"text/html":                        collector.KindOther,
		"":                                 collector.KindOther,
	} {
		if got := KindOf(ct); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", ct, got, want)
		}
	}
}

func TestBoundaries(t *testing.T) {
	for in, want := range map[string]int{"a\n\nb": 3, "a\r\n\r\nb": 5, "a\r\rb": 3, "abc": -1, "a\nb": -1} {
		if got := sseBoundary([]byte(in)); got != want {
			t.Errorf("sseBoundary(%q) = %d, want %d", in, got, want)
		}
	}
	if got := ndjsonBoundary([]byte("{}\n{}")); got != 3 {
		t.Errorf("ndjsonBoundary = %d", got)
	}
}

// TestCutJSONKeepsUsage: a large JSON completion cut in the middle still
// yields the usage object at its end, from the tail.
func TestCutJSONKeepsUsage(t *testing.T) {
	head := `{"id":"chatcmpl-x","model":"gpt-4o","choices":[{"message":{"content":"` + strings.Repeat("a", 100)
	tail := strings.Repeat("b", 50) + `"}}],"usage":{"prompt_tokens":7,"completion_tokens":300,"total_tokens":307}}`
	r := &llmtap.Record{
		V: 1, RequestID: "cut", StartUnixNs: 1, Path: "/v1/chat/completions", Status: 200,
		ResponseContentType: "application/json", ResponseHead: []byte(head), ResponseTail: []byte(tail),
		ResponseTailOffset: 5000, ResponseTruncated: true, ResponseBytes: 5000 + int64(len(tail)),
		WriteEnds: []int64{5000 + int64(len(tail))}, WriteNs: []int64{msNs},
	}
	f := Fact(r)
	if f.Usage.Output == nil || *f.Usage.Output != 300 || !f.Truncated {
		t.Errorf("usage %+v truncated %v", f.Usage, f.Truncated)
	}
}

// TestClientLeavingAfterTheEnd: a stream the client left once it had its
// end marker is completed; one it left before is cancelled.
func TestClientLeavingAfterTheEnd(t *testing.T) {
	anthropicEnd := []string{
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	}
	for _, tt := range []struct {
		name   string
		events []string
		want   string
	}{
		{"openai, [DONE] read", openAIStream, llmtap.OutcomeCompleted},
		{"openai, left before [DONE]", openAIStream[:3], llmtap.OutcomeClientCancelled},
		{"anthropic, message_stop read", anthropicEnd, llmtap.OutcomeCompleted},
		{"anthropic, left before message_stop", anthropicEnd[:1], llmtap.OutcomeClientCancelled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			times := make([]int64, len(tt.events))
			for i := range times {
				times[i] = int64(100 + 10*i)
			}
			r := sseRecord(tt.events, times)
			r.Outcome = llmtap.OutcomeClientCancelled
			f := Fact(r)
			wantClass := collector.ErrorClass("")
			if tt.want == llmtap.OutcomeClientCancelled {
				wantClass = collector.ErrClientCancel
			}
			if f.Outcome != tt.want || f.ErrorType != wantClass {
				t.Errorf("outcome %q error %q, want %q %q", f.Outcome, f.ErrorType, tt.want, wantClass)
			}
		})
	}
}

// TestEstimates: where the provider reported no usage, the output is
// counted from the text that reached the client and the input from the
// request's prompt, and the source says so; a provider's numbers are
// never replaced.
func TestEstimates(t *testing.T) {
	counter, err := tokens.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	derive := New(Steps{Counter: counter})
	withoutUsage := append(append([]string{}, openAIStream[:4]...), openAIStream[5])
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello world"}]}`)
	times := []int64{100, 110, 120, 130, 140, 150}

	r := sseRecord(withoutUsage, times[:5])
	r.RequestBody = body
	f := derive(r)
	// "Hello" and " there": 2 tokens and the end of the message; the
	// prompt: "user" 1 + "hello world" 2 + framing 3 + 3.
	if f.Usage.Output == nil || *f.Usage.Output != 3 || f.Usage.Input == nil || *f.Usage.Input != 9 ||
		f.Usage.Source != "estimate.o200k_base" || f.Usage.Missing != "stream_without_usage" {
		t.Fatalf("estimated usage %+v (input %v, output %v)", f.Usage, ptr(f.Usage.Input), ptr(f.Usage.Output))
	}

	// The client left after the first word: what was delivered counts,
	// without an end.
	r = sseRecord(withoutUsage[:2], times[:2])
	r.RequestBody, r.Outcome = body, llmtap.OutcomeClientCancelled
	if f := derive(r); f.Usage.Output == nil || *f.Usage.Output != 1 {
		t.Fatalf("a cancelled stream: %+v", f.Usage)
	}

	// The provider's numbers stay.
	r = sseRecord(openAIStream, times)
	r.RequestBody = body
	if f := derive(r); *f.Usage.Output != 2 || *f.Usage.Input != 12 || f.Usage.Source != "openai.chat.stream" {
		t.Fatalf("provider usage: %+v", f.Usage)
	}

	// Text to speech is not counted in tokens.
	speech := &llmtap.Record{V: llmtap.RecordVersion, RequestID: "s1", StartUnixNs: 1, Path: "/v1/audio/speech", Status: 200,
		Outcome: llmtap.OutcomeCompleted, ResponseContentType: "audio/wav", ResponseBytes: 100,
		RequestBody: []byte(`{"model":"tts-1","voice":"alloy","input":"Hello there"}`), WriteEnds: []int64{100}, WriteNs: []int64{1e6}}
	if f := derive(speech); f.Usage.Input != nil || f.Usage.Output != nil || strings.HasPrefix(f.Usage.Source, SourceEstimate) {
		t.Fatalf("speech: %+v", f.Usage)
	}

	// An error is not estimated.
	r = sseRecord(withoutUsage, times[:5])
	r.Status = 500
	if f := derive(r); f.Usage.Output != nil || f.Usage.Source != "none" {
		t.Fatalf("an error: %+v", f.Usage)
	}
}

func ptr(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
