package provider_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stitch returns body cut as the plugin cuts it: its first head bytes, a
// gap, and everything from the last occurrence of from on.
func stitch(body []byte, head int, from string) []byte {
	i := bytes.LastIndex(body, []byte(from))
	out := append([]byte{}, body[:head]...)
	return append(out, body[i:]...)
}

func TestUsageCases(t *testing.T) {
	none := func(missing string) collector.Usage { return collector.Usage{Source: "none", Missing: missing} }
	chat := "/v1/chat/completions"
	openaiChat := readFixture(t, "openai_chat/openai_chat.json")
	tests := []struct {
		desc string
		r    provider.Response
		want collector.Usage
	}{
		{desc: "no body", r: provider.Response{Path: chat, Kind: collector.KindJSON}, want: none("no_body")},
		{desc: "tts audio not captured", r: provider.Response{Path: "/v1/audio/speech", Kind: collector.KindRaw}, want: none("no_body")},
		{desc: "empty stream", r: provider.Response{Path: chat, Kind: collector.KindSSE}, want: none("no_body")},
		{
			desc: "html error page",
			r:    provider.Response{Path: chat, Kind: collector.KindOther, Body: []byte("<html><body>502 Bad Gateway</body></html>")},
			want: none("not_json"),
		},
		{desc: "json array", r: provider.Response{Path: chat, Kind: collector.KindJSON, Body: []byte(`[{"a":1}]`)}, want: none("unknown_format")},
		{desc: "unknown shape, unknown path", r: provider.Response{Path: "/x", Kind: collector.KindJSON, Body: []byte(`{"a":1}`)}, want: none("unknown_format")},
		{desc: "known path without usage", r: provider.Response{Path: chat, Kind: collector.KindJSON, Body: []byte(`{"id":"x","object":"chat.completion","choices":[]}`)}, want: none("no_usage")},
		{desc: "empty usage object", r: provider.Response{Path: chat, Kind: collector.KindJSON, Body: []byte(`{"object":"chat.completion","usage":{}}`)}, want: none("no_usage")},
		{desc: "head of a cut json", r: provider.Response{Path: chat, Kind: collector.KindJSON, Body: openaiChat[:200]}, want: none("truncated")},
		{
			desc: "head and tail of a cut json",
			r:    provider.Response{Path: chat, Kind: collector.KindJSON, Body: stitch(openaiChat, 120, `"usage"`)},
			want: collector.Usage{Input: p(1117), Output: p(46), CacheRead: p(1024), Reasoning: p(0), Source: "openai.chat"},
		},
		{
			desc: "head and tail of a cut anthropic json",
			r:    provider.Response{Path: "/v1/messages", Kind: collector.KindJSON, Body: stitch(readFixture(t, "anthropic_messages/anthropic_messages.json"), 80, `"usage"`)},
			want: collector.Usage{Input: p(4512), Output: p(85), CacheRead: p(3000), CacheWrite: p(1500), CacheWrite1h: p(0), Source: "anthropic.messages"},
		},
		{
			desc: "head and tail of an ollama generate json with a long context",
			r: provider.Response{Path: "/api/generate", Kind: collector.KindJSON,
				Body: []byte(`{"model":"llama3.2","response":"Hi","done":true,"context":[1,2,3` + `,4,5],"total_duration":1,"prompt_eval_count":26,"eval_count":290,"eval_duration":2}`)[:60]},
			want: none("truncated"),
		},
		{
			desc: "tail of an ollama generate json",
			r: provider.Response{Path: "/api/generate", Kind: collector.KindJSON,
				Body: []byte(`{"model":"llama3.2","response":"Hi","done":true,"context":[1,2` + `99,100],"prompt_eval_count":26,"eval_count":290,"eval_duration":2}`)},
			want: collector.Usage{Input: p(26), Output: p(290), Source: "ollama"},
		},
		{
			desc: "vllm error object",
			r: provider.Response{Path: chat, Kind: collector.KindJSON,
				Body: []byte(`{"object":"error","message":"The model does not exist.","type":"NotFoundError","param":null,"code":404}`)},
			want: none("error_response"),
		},
		{
			desc: "vllm error mid-stream",
			r: sse(chat, `{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}`,
				`{"object":"error","message":"engine dead","type":"InternalServerError","param":null,"code":500}`, `[DONE]`),
			want: none("error_response"),
		},
		{
			desc: "embeddings report prompt tokens only",
			r: provider.Response{Path: "/v1/embeddings", Kind: collector.KindJSON,
				Body: []byte(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`)},
			want: collector.Usage{Input: p(8), Source: "openai.chat"},
		},
		{
			desc: "legacy completions",
			r: provider.Response{Path: "/v1/completions", Kind: collector.KindJSON,
				Body: []byte(`{"id":"cmpl-1","object":"text_completion","choices":[{"text":"hi","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)},
			want: collector.Usage{Input: p(5), Output: p(7), Source: "openai.chat"},
		},
		{
			desc: "deepseek cache hits without details",
			r: provider.Response{Path: chat, Kind: collector.KindJSON,
				Body: []byte(`{"object":"chat.completion","usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}`)},
			want: collector.Usage{Input: p(100), Output: p(10), CacheRead: p(64), Source: "openai.chat"},
		},
		{
			desc: "negative and float counts are dropped, the rest kept",
			r: provider.Response{Path: chat, Kind: collector.KindJSON,
				Body: []byte(`{"object":"chat.completion","usage":{"prompt_tokens":-3,"completion_tokens":7.5,"completion_tokens_details":{"reasoning_tokens":2}}}`)},
			want: none("no_usage"),
		},
		{
			desc: "float count dropped, the rest kept",
			r: provider.Response{Path: chat, Kind: collector.KindJSON,
				Body: []byte(`{"object":"chat.completion","usage":{"prompt_tokens":3,"completion_tokens":7.5,"completion_tokens_details":{"reasoning_tokens":2}}}`)},
			want: collector.Usage{Input: p(3), Reasoning: p(2), Source: "openai.chat"},
		},
		{
			desc: "responses object with null error is not an error",
			r:    provider.Response{Path: "/v1/responses", Kind: collector.KindJSON, Body: []byte(`{"object":"response","status":"in_progress","error":null,"usage":null}`)},
			want: none("no_usage"),
		},
		{
			desc: "anthropic usage read by path when the shape says nothing",
			r:    provider.Response{Path: "/v1/messages", Kind: collector.KindJSON, Body: []byte(`{"usage":{"input_tokens":5,"output_tokens":6}}`)},
			want: collector.Usage{Input: p(5), Output: p(6), Source: "anthropic.messages"},
		},
		{
			desc: "anthropic cache writes of an hour and of five minutes",
			r: provider.Response{Path: "/v1/messages", Kind: collector.KindJSON,
				Body: []byte(`{"type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":1500,"cache_read_input_tokens":0,` +
					`"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1000},"output_tokens":7}}`)},
			want: collector.Usage{Input: p(1510), Output: p(7), CacheRead: p(0), CacheWrite: p(1500), CacheWrite1h: p(1000), Source: "anthropic.messages"},
		},
		{
			desc: "anthropic 1-hour writes past the writes: capped",
			r: provider.Response{Path: "/v1/messages", Kind: collector.KindJSON,
				Body: []byte(`{"type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_creation":{"ephemeral_1h_input_tokens":9},"output_tokens":7}}`)},
			want: collector.Usage{Input: p(15), Output: p(7), CacheWrite: p(5), CacheWrite1h: p(5), Source: "anthropic.messages"},
		},
		{
			desc: "anthropic input overflowing with cache parts",
			r: provider.Response{Path: "/v1/messages", Kind: collector.KindJSON,
				Body: []byte(`{"type":"message","usage":{"input_tokens":9223372036854775807,"cache_read_input_tokens":1,"output_tokens":1}}`)},
			want: collector.Usage{Output: p(1), CacheRead: p(1), Source: "anthropic.messages"},
		},
		{
			desc: "vllm usage chunk with choices null",
			r: sse(chat, `{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop","stop_reason":null}]}`,
				`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":null,"usage":{"prompt_tokens":14,"total_tokens":20,"completion_tokens":6}}`, `[DONE]`),
			want: collector.Usage{Input: p(14), Output: p(6), Source: "openai.chat.stream"},
		},
		{
			desc: "vllm usage chunk without choices",
			r: sse(chat, `{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop","stop_reason":null}]}`,
				`{"id":"chatcmpl-1","object":"chat.completion.chunk","usage":{"prompt_tokens":14,"total_tokens":20,"completion_tokens":6}}`, `[DONE]`),
			want: collector.Usage{Input: p(14), Output: p(6), Source: "openai.chat.stream"},
		},
		{
			desc: "vllm continuous usage: the last one counts",
			r: sse(chat, `{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":14,"completion_tokens":1,"total_tokens":15}}`,
				`{"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}}`, `[DONE]`),
			want: collector.Usage{Input: p(14), Output: p(2), Source: "openai.chat.stream"},
		},
		{
			desc: "openai error event mid-stream",
			r: sse(chat, `{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`,
				`{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`),
			want: none("error_response"),
		},
		{
			desc: "anthropic: the last message_delta wins",
			r: named("/v1/messages",
				"message_start", `{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"output_tokens":1}}}`,
				"message_delta", `{"type":"message_delta","delta":{},"usage":{"output_tokens":3}}`,
				"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}`,
				"message_stop", `{"type":"message_stop"}`),
			want: collector.Usage{Input: p(15), Output: p(9), CacheRead: p(5), CacheWrite: p(0), Source: "anthropic.messages.stream"},
		},
		{
			desc: "anthropic cut after message_start",
			r: named("/v1/messages",
				"message_start", `{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":5,"output_tokens":1}}}`,
				"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`),
			want: collector.Usage{Input: p(17), CacheRead: p(5), CacheWrite: p(2), Source: "anthropic.messages.stream", Missing: "truncated"},
		},
		{
			desc: "anthropic events without names",
			r: sse("/v1/messages",
				`{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`,
				`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}`),
			want: collector.Usage{Input: p(10), Output: p(4), CacheRead: p(0), CacheWrite: p(0), Source: "anthropic.messages.stream"},
		},
		{
			desc: "responses stream cut before response.completed",
			r: named("/v1/responses",
				"response.created", `{"type":"response.created","response":{"object":"response","usage":null}}`,
				"response.output_text.delta", `{"type":"response.output_text.delta","delta":"Hi"}`),
			want: none("truncated"),
		},
		{
			desc: "responses stream failed",
			r: named("/v1/responses",
				"response.created", `{"type":"response.created","response":{"object":"response","usage":null}}`,
				"response.failed", `{"type":"response.failed","response":{"object":"response","status":"failed","error":{"code":"server_error","message":"x"},"usage":null}}`),
			want: none("error_response"),
		},
		{
			desc: "responses incomplete still has usage",
			r: named("/v1/responses",
				"response.incomplete", `{"type":"response.incomplete","response":{"object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":25}}}`),
			want: collector.Usage{Input: p(9), Output: p(16), CacheRead: p(0), Reasoning: p(16), Source: "openai.responses.stream"},
		},
		{
			desc: "ollama stream cut before done",
			r: provider.Response{Path: "/api/chat", Kind: collector.KindNDJSON,
				Body: []byte(`{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":false}` + "\n" + `{"model":"llama3.2","message":{"role":"assis`)},
			want: none("truncated"),
		},
		{
			desc: "ollama done without counts",
			r: provider.Response{Path: "/api/generate", Kind: collector.KindNDJSON,
				Body: []byte(`{"model":"llama3.2","created_at":"2025-06-18T10:22:11Z","response":"","done":true,"done_reason":"load"}` + "\n")},
			want: none("stream_without_usage"),
		},
		{
			desc: "stream of comments only",
			r:    provider.Response{Path: chat, Kind: collector.KindSSE, Body: []byte(": ping\n\n: ping\n\n")},
			want: none("truncated"),
		},
		{
			desc: "error JSON to a streaming request",
			r:    provider.Response{Path: chat, Kind: collector.KindSSE, Body: readFixture(t, "openai_chat/openai_error.json")},
			want: none("error_response"),
		},
		{
			desc: "event stream labelled as JSON",
			r:    provider.Response{Path: chat, Kind: collector.KindJSON, Body: readFixture(t, "openai_chat/openai_chat_stream.sse")},
			want: collector.Usage{Input: p(1840), Output: p(215), CacheRead: p(1664), Reasoning: p(192), Source: "openai.chat.stream"},
		},
		{
			desc: "usage words inside content do not fool the scan",
			r: sse(chat, `{"choices":[{"delta":{"content":"{\"usage\": {\"prompt_tokens\": 99}}"}}]}`,
				`{"choices":[{"delta":{},"finish_reason":"stop"}]}`, `[DONE]`),
			want: none("stream_without_usage"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := provider.Usage(tt.r); !equalUsage(got, tt.want) {
				t.Errorf("Usage = %s, want %s", fmtUsage(got), fmtUsage(tt.want))
			}
		})
	}
}

// sse builds a streamed response of unnamed events.
func sse(path string, data ...string) provider.Response {
	var b bytes.Buffer
	for _, d := range data {
		b.WriteString("data: " + d + "\n\n")
	}
	return provider.Response{Path: path, Kind: collector.KindSSE, Body: b.Bytes()}
}

// named builds a streamed response from event name and data pairs.
func named(path string, pairs ...string) provider.Response {
	var b bytes.Buffer
	for i := 0; i+1 < len(pairs); i += 2 {
		b.WriteString("event: " + pairs[i] + "\ndata: " + pairs[i+1] + "\n\n")
	}
	return provider.Response{Path: path, Kind: collector.KindSSE, Body: b.Bytes()}
}
