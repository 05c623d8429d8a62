package provider_test

import (
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/stream"
)

func TestContentBearing(t *testing.T) {
	tests := []struct {
		desc     string
		provider string
		name     string // SSE event name
		data     string
		want     bool
	}{
		{desc: "openai role-only first chunk", provider: "openai", data: `{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}`},
		{desc: "openai content", provider: "openai", data: `{"choices":[{"index":0,"delta":{"content":"Hi"}}]}`, want: true},
		{desc: "openai content with spaces", provider: "openai", data: `{"choices": [{"delta": {"content": " "}}]}`, want: true},
		{desc: "openai tool call", provider: "openai", data: `{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}`, want: true},
		{desc: "openai empty tool calls", provider: "openai", data: `{"choices":[{"delta":{"role":"assistant","content":null,"tool_calls":[]}}]}`},
		{desc: "openai refusal", provider: "openai", data: `{"choices":[{"delta":{"refusal":"I can't help with that."}}]}`, want: true},
		{desc: "openai finish chunk", provider: "openai", data: `{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`},
		{desc: "openai usage chunk", provider: "openai", data: `{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`},
		{desc: "DONE", provider: "openai", data: `[DONE]`},
		{desc: "legacy completions text", provider: "openai", data: `{"object":"text_completion","choices":[{"text":"Once","index":0}]}`, want: true},
		{desc: "vllm reasoning_content", provider: "vllm", data: `{"choices":[{"index":0,"delta":{"reasoning_content":"Okay"}}]}`, want: true},
		{desc: "vllm reasoning", provider: "vllm", data: `{"choices":[{"index":0,"delta":{"reasoning":"Okay"}}]}`, want: true},
		{desc: "vllm usage chunk, choices null", provider: "vllm", data: `{"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":1}}`},
		{desc: "deepseek reasoning_content", provider: "openai-compatible", data: `{"choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Compare"}}]}`, want: true},
		{desc: "azure prompt filter chunk", provider: "azure", data: `{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}`},
		{desc: "azure async filter chunk", provider: "azure", data: `{"choices":[{"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":17},"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":null,"index":0}],"created":0,"id":"","model":"","object":""}`},
		{desc: "azure content", provider: "azure", data: `{"choices":[{"content_filter_results":{},"delta":{"content":"Hello"},"index":0}]}`, want: true},
		{desc: "responses text delta", provider: "openai", name: "response.output_text.delta", data: `{"type":"response.output_text.delta","delta":"Hi"}`, want: true},
		{desc: "responses text delta unnamed", provider: "openai", data: `{"type":"response.output_text.delta","delta":"Hi"}`, want: true},
		{desc: "responses function args delta", provider: "openai", name: "response.function_call_arguments.delta", data: `{"type":"response.function_call_arguments.delta","delta":"{"}`, want: true},
		{desc: "responses reasoning summary delta", provider: "openai", name: "response.reasoning_summary_text.delta", data: `{"type":"response.reasoning_summary_text.delta","delta":"**Plan**"}`, want: true},
		{desc: "responses reasoning text delta", provider: "openai", name: "response.reasoning_text.delta", data: `{"type":"response.reasoning_text.delta","delta":"Let"}`, want: true},
		{desc: "responses created", provider: "openai", name: "response.created", data: `{"type":"response.created","response":{"object":"response","output":[],"usage":null}}`},
		{desc: "responses created unnamed", provider: "openai", data: `{"type":"response.created","response":{"object":"response","output":[],"usage":null}}`},
		{desc: "responses content part added", provider: "openai", name: "response.content_part.added", data: `{"type":"response.content_part.added","part":{"type":"output_text","text":""}}`},
		{desc: "anthropic message_start", provider: "anthropic", name: "message_start", data: `{"type":"message_start","message":{"content":[],"usage":{"input_tokens":1}}}`},
		{desc: "anthropic message_start unnamed", provider: "anthropic", data: `{"type":"message_start","message":{"content":[],"usage":{"input_tokens":1}}}`},
		{desc: "anthropic ping", provider: "anthropic", name: "ping", data: `{"type": "ping"}`},
		{desc: "anthropic block start", provider: "anthropic", name: "content_block_start", data: `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
		{desc: "anthropic text delta", provider: "anthropic", name: "content_block_delta", data: `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`, want: true},
		{desc: "anthropic thinking delta", provider: "anthropic", name: "content_block_delta", data: `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hm"}}`, want: true},
		{desc: "anthropic input json delta", provider: "anthropic", name: "content_block_delta", data: `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}`, want: true},
		{desc: "anthropic delta unnamed", provider: "anthropic", data: `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`, want: true},
		{desc: "anthropic message_delta", provider: "anthropic", name: "message_delta", data: `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}`},
		{desc: "ollama chat content", provider: "ollama", data: `{"model":"llama3.2","message":{"role":"assistant","content":"The"},"done":false}`, want: true},
		{desc: "ollama chat thinking", provider: "ollama", data: `{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"The"},"done":false}`, want: true},
		{desc: "ollama chat tool call", provider: "ollama", data: `{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}`, want: true},
		{desc: "ollama chat done", provider: "ollama", data: `{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"prompt_eval_count":26,"eval_count":282}`},
		{desc: "ollama generate response", provider: "ollama", data: `{"model":"llama3.2","response":"The","done":false}`, want: true},
		{desc: "ollama generate thinking", provider: "ollama", data: `{"model":"qwen3","response":"","thinking":"Hm","done":false}`, want: true},
		{desc: "ollama generate done", provider: "ollama", data: `{"model":"llama3.2","response":"","done":true,"context":[1,2]}`},
		{desc: "cut json", provider: "openai", data: `{"choices":[{"delta":{"content":"Hi`},
		{desc: "empty", provider: "openai", data: ``},
		{desc: "gateway event name falls through to data", provider: "openai", name: "chunk", data: `{"choices":[{"delta":{"content":"Hi"}}]}`, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ev := stream.Event{Name: tt.name, Data: []byte(tt.data), Complete: true}
			if got := provider.ContentBearing(tt.provider, ev); got != tt.want {
				t.Errorf("ContentBearing(%q, %s %s) = %t, want %t", tt.provider, tt.name, tt.data, got, tt.want)
			}
		})
	}
}

// parse splits a response body into events by its kind.
func parse(r provider.Response) []stream.Event {
	if r.Kind == collector.KindNDJSON {
		return stream.ParseNDJSON(r.Body)
	}
	return stream.ParseSSE(r.Body)
}

func TestStreamEnded(t *testing.T) {
	for _, tt := range []struct {
		name string
		body string
		sse  bool
		want bool
	}{
		{"openai [DONE]", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", true, true},
		{"openai cut before [DONE]", "data: {\"choices\":[]}\n\n", true, false},
		{"[DONE] not yet whole", "data: {\"choices\":[]}\n\ndata: [DONE]", true, false},
		{"anthropic message_stop", "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", true, true},
		{"responses completed", "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n", true, true},
		{"responses, a delta last", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\"}\n\n", true, false},
		{"ollama done", "{\"response\":\"a\",\"done\":false}\n{\"response\":\"\",\"done\":true}\n", false, true},
		{"ollama not done", "{\"response\":\"a\",\"done\":false}\n", false, false},
		{"nothing", "", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parse := stream.ParseNDJSON
			if tt.sse {
				parse = stream.ParseSSE
			}
			if got := provider.StreamEnded(parse([]byte(tt.body))); got != tt.want {
				t.Errorf("ended %v, want %v", got, tt.want)
			}
		})
	}
}
