package provider

import (
	"reflect"
	"testing"

	"github.com/llmtap/llmtap/collector"
)

// TestFinishReasons: each format's reason, from the last events of a
// stream or from a JSON body; none from a stream cut before its end.
func TestFinishReasons(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    Response
		want []string
	}{
		{"OpenAI chat stream, two choices", Response{Kind: collector.KindSSE, Events: Events([]string{
			`{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{},"finish_reason":"length"}]}`,
			`[DONE]`,
		})}, []string{"stop", "length"}},
		{"OpenAI chat JSON", Response{Kind: collector.KindJSON, Body: []byte(`{"choices":[{"message":{"content":"hi"},"finish_reason":"tool_calls"}]}`)}, []string{"tool_calls"}},
		{"Anthropic stream", Response{Kind: collector.KindSSE, Events: Events([]string{
			`{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}`,
			`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}`,
			`{"type":"message_stop"}`,
		})}, []string{"end_turn"}},
		{"Anthropic JSON", Response{Kind: collector.KindJSON, Body: []byte(`{"type":"message","stop_reason":"max_tokens"}`)}, []string{"max_tokens"}},
		{"Responses API", Response{Kind: collector.KindSSE, Events: Events([]string{
			`{"type":"response.output_text.delta","delta":"hi"}`,
			`{"type":"response.completed","response":{"status":"completed"}}`,
		})}, []string{"completed"}},
		{"Ollama", Response{Kind: collector.KindNDJSON, Events: Events([]string{
			`{"message":{"content":"hi"},"done":false}`,
			`{"message":{"content":""},"done":true,"done_reason":"stop"}`,
		})}, []string{"stop"}},
		{"cut before the end", Response{Kind: collector.KindSSE, Events: Events([]string{
			`{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`,
		})}, nil},
	} {
		if got := FinishReasons(tt.r); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
