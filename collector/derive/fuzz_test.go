package derive

import (
	"encoding/json"
	"testing"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// FuzzFact: whatever record a plugin (or anyone with its token) sends,
// deriving its fact does not panic, keeps its identity, and yields no
// negative durations, counts or token usage.
func FuzzFact(f *testing.F) {
	seeds := []*llmtap.Record{
		sseRecord([]string{"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", "data: [DONE]\n\n"}, []int64{5, 9}),
		{V: 1, RequestID: "r", StartUnixNs: 1, Status: 200, ResponseContentType: "application/json", ResponseHead: []byte(`{"usage":{"prompt_tokens":-5,"completion_tokens":1e30}}`)},
		{V: 1, RequestID: "r", StartUnixNs: 1, Status: 200, ResponseContentType: "text/event-stream", ResponseHead: []byte("data: {"), ResponseTail: []byte("}\n\n"), ResponseTailOffset: -4, WriteEnds: []int64{9, 3}, WriteNs: []int64{-1, 5}},
		{V: 1, RequestID: "r", StartUnixNs: 1, Status: 200, ResponseContentType: "application/x-ndjson", ResponseHead: []byte("{\"done\":true,\"eval_count\":-3}\n")},
	}
	for _, r := range seeds {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r llmtap.Record
		if json.Unmarshal(b, &r) != nil {
			return
		}
		fact := Fact(&r)
		if fact == nil {
			t.Fatal("no fact")
		}
		if fact.RequestID != r.RequestID || fact.Route != r.Route {
			t.Fatalf("fact %q on %q from record %q on %q", fact.RequestID, fact.Route, r.RequestID, r.Route)
		}
		for name, v := range map[string]*int64{
			"ttft_ms": fact.TTFTMs, "input_tokens": fact.Usage.Input, "output_tokens": fact.Usage.Output, "cache_read": fact.Usage.CacheRead, "reasoning": fact.Usage.Reasoning,
		} {
			if v != nil && *v < 0 {
				t.Fatalf("%s is %d", name, *v)
			}
		}
		if fact.DurationMs < 0 || fact.TTFBMs < 0 {
			t.Fatalf("duration %d, ttfb %d", fact.DurationMs, fact.TTFBMs)
		}
	})
}
