package provider_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/stream"
)

// p returns a pointer to n, for expected usage values.
func p(n int64) *int64 { return &n }

// fixture describes one captured response in testdata and what is expected
// of it.
type fixture struct {
	file    string
	path    string
	request string // request body

	usage        collector.Usage
	provider     string
	model        string
	firstContent int // index of the first content-bearing event; -1 for none or not a stream
}

var fixtures = []fixture{
	{
		file: "openai_chat/openai_chat.json", path: "/v1/chat/completions", request: `{"model":"gpt-4o","messages":[{"role":"user","content":"Describe the image."}]}`,
		usage:    collector.Usage{Input: p(1117), Output: p(46), CacheRead: p(1024), Reasoning: p(0), Source: "openai.chat"},
		provider: "openai", model: "gpt-4o-2024-08-06", firstContent: -1,
	},
	{
		file: "openai_chat/openai_chat_stream.sse", path: "/v1/chat/completions",
		request:  `{"messages":[{"role":"user","content":"Capital of France?"}],"model":"o4-mini","stream":true,"stream_options":{"include_usage":true}}`,
		usage:    collector.Usage{Input: p(1840), Output: p(215), CacheRead: p(1664), Reasoning: p(192), Source: "openai.chat.stream"},
		provider: "openai", model: "o4-mini-2025-04-16", firstContent: 1,
	},
	{
		file: "openai_chat/openai_chat_stream_no_usage.sse", path: "/v1/chat/completions",
		request:  `{"model":"gpt-4.1","stream":true,"tools":[{"type":"function","function":{"name":"get_weather"}}]}`,
		usage:    collector.Usage{Source: "none", Missing: "stream_without_usage"},
		provider: "openai", model: "gpt-4.1-2025-04-14", firstContent: 0,
	},
	{
		file: "openai_chat/openai_chat_stream_cut.sse", path: "/v1/chat/completions",
		request:  `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}`,
		usage:    collector.Usage{Source: "none", Missing: "truncated"},
		provider: "openai", model: "gpt-4o-mini-2024-07-18", firstContent: 1,
	},
	{
		file: "openai_chat/openai_error.json", path: "/v1/chat/completions", request: `{"model":"gpt-4o","messages":[]}`,
		usage:    collector.Usage{Source: "none", Missing: "error_response"},
		provider: "openai", model: "gpt-4o", firstContent: -1,
	},
	{
		file: "openai_responses/openai_responses.json", path: "/v1/responses", request: `{"model":"gpt-4o","input":"Describe the image."}`,
		usage:    collector.Usage{Input: p(328), Output: p(52), CacheRead: p(0), Reasoning: p(0), Source: "openai.responses"},
		provider: "openai", model: "gpt-4o-2024-08-06", firstContent: -1,
	},
	{
		file: "openai_responses/openai_responses_stream.sse", path: "/v1/responses", request: `{"model":"gpt-4.1","input":"Hi","stream":true}`,
		usage:    collector.Usage{Input: p(37), Output: p(11), CacheRead: p(0), Reasoning: p(0), Source: "openai.responses.stream"},
		provider: "openai", model: "gpt-4.1-2025-04-14", firstContent: 4,
	},
	{
		file: "openai_responses/openai_responses_stream_reasoning.sse", path: "/v1/responses",
		request:  `{"model":"o4-mini","input":"Weather in Paris?","reasoning":{"summary":"detailed"},"stream":true}`,
		usage:    collector.Usage{Input: p(1536), Output: p(158), CacheRead: p(1280), Reasoning: p(128), Source: "openai.responses.stream"},
		provider: "openai", model: "o4-mini-2025-04-16", firstContent: 4,
	},
	{
		file: "anthropic_messages/anthropic_messages.json", path: "/v1/messages", request: `{"model":"claude-sonnet-4-20250514","max_tokens":1024,"messages":[]}`,
		// 12 uncached + 3000 read from the cache + 1500 written to it.
		usage:    collector.Usage{Input: p(4512), Output: p(85), CacheRead: p(3000), CacheWrite: p(1500), CacheWrite1h: p(0), Source: "anthropic.messages"},
		provider: "anthropic", model: "claude-sonnet-4-20250514", firstContent: -1,
	},
	{
		file: "anthropic_messages/anthropic_messages_stream.sse", path: "/v1/messages", request: `{"model":"claude-3-5-haiku-latest","stream":true}`,
		usage:    collector.Usage{Input: p(2520), Output: p(15), CacheRead: p(2048), CacheWrite: p(0), Source: "anthropic.messages.stream"},
		provider: "anthropic", model: "claude-3-5-haiku-20241022", firstContent: 3,
	},
	{
		file: "anthropic_messages/anthropic_messages_stream_tools.sse", path: "/v1/messages", request: `{"model":"claude-opus-4-1","stream":true}`,
		usage:    collector.Usage{Input: p(2299), Output: p(89), CacheRead: p(0), CacheWrite: p(2261), CacheWrite1h: p(0), Source: "anthropic.messages.stream"},
		provider: "anthropic", model: "claude-opus-4-1-20250805", firstContent: 3,
	},
	{
		// Overloaded after message_start: the input is known, the output not.
		file: "anthropic_messages/anthropic_messages_stream_error.sse", path: "/v1/messages", request: `{"model":"claude-sonnet-4-20250514","stream":true}`,
		usage:    collector.Usage{Input: p(1204), CacheRead: p(0), CacheWrite: p(0), Source: "anthropic.messages.stream", Missing: "error_response"},
		provider: "anthropic", model: "claude-sonnet-4-20250514", firstContent: -1,
	},
	{
		file: "anthropic_messages/anthropic_error.json", path: "/v1/messages", request: `{"model":"claude-sonnet-4-20250514","messages":[]}`,
		usage:    collector.Usage{Source: "none", Missing: "error_response"},
		provider: "anthropic", model: "claude-sonnet-4-20250514", firstContent: -1,
	},
	{
		file: "openai_chat/vllm_chat.json", path: "/v1/chat/completions", request: `{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[]}`,
		usage:    collector.Usage{Input: p(42), Output: p(10), Source: "openai.chat"},
		provider: "vllm", model: "meta-llama/Llama-3.1-8B-Instruct", firstContent: -1,
	},
	{
		file: "openai_chat/vllm_chat_stream.sse", path: "/v1/chat/completions", request: `{"model":"Qwen/Qwen3-8B","stream":true,"stream_options":{"include_usage":true}}`,
		usage:    collector.Usage{Input: p(14), Output: p(46), Source: "openai.chat.stream"},
		provider: "vllm", model: "Qwen/Qwen3-8B", firstContent: 1,
	},
	{
		file: "openai_chat/azure_chat.json", path: "/openai/deployments/gpt-4o/chat/completions", request: `{"messages":[{"role":"user","content":"What is Azure OpenAI?"}]}`,
		usage:    collector.Usage{Input: p(25), Output: p(12), CacheRead: p(0), Reasoning: p(0), Source: "openai.chat"},
		provider: "azure", model: "gpt-4o-2024-11-20", firstContent: -1,
	},
	{
		// The content filter chunks carry no content and no usage.
		file: "openai_chat/azure_chat_stream.sse", path: "/openai/v1/chat/completions", request: `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`,
		usage:    collector.Usage{Input: p(18), Output: p(4), CacheRead: p(0), Reasoning: p(0), Source: "openai.chat.stream"},
		provider: "azure", model: "gpt-4o-2024-11-20", firstContent: 2,
	},
	{
		file: "ollama/ollama_chat.ndjson", path: "/api/chat", request: `{"model":"qwen3:8b","messages":[{"role":"user","content":"hello"}],"think":true}`,
		usage:    collector.Usage{Input: p(26), Output: p(282), Source: "ollama.stream"},
		provider: "ollama", model: "qwen3:8b", firstContent: 0,
	},
	{
		file: "ollama/ollama_generate.ndjson", path: "/api/generate", request: `{"model":"llama3.2","prompt":"Why is the sky blue?"}`,
		usage:    collector.Usage{Input: p(26), Output: p(4), Source: "ollama.stream"},
		provider: "ollama", model: "llama3.2", firstContent: 0,
	},
	{
		file: "ollama/ollama_chat.json", path: "/api/chat", request: `{"model":"llama3.2","messages":[],"stream":false}`,
		usage:    collector.Usage{Input: p(26), Output: p(298), Source: "ollama"},
		provider: "ollama", model: "llama3.2", firstContent: -1,
	},
	{
		file: "ollama/ollama_generate.json", path: "/api/generate", request: `{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}`,
		usage:    collector.Usage{Input: p(26), Output: p(290), Source: "ollama"},
		provider: "ollama", model: "llama3.2", firstContent: -1,
	},
	{
		file: "ollama/ollama_error.json", path: "/api/chat", request: `{"model":"llama9","messages":[]}`,
		usage:    collector.Usage{Source: "none", Missing: "error_response"},
		provider: "ollama", model: "llama9", firstContent: -1,
	},
	{
		file: "openai_chat/ollama_openai_stream.sse", path: "/v1/chat/completions", request: `{"model":"llama3.2","stream":true,"stream_options":{"include_usage":true}}`,
		usage:    collector.Usage{Input: p(31), Output: p(3), Source: "openai.chat.stream"},
		provider: "ollama", model: "llama3.2", firstContent: 0,
	},
	{
		file: "openai_chat/deepseek_chat.json", path: "/chat/completions", request: `{"model":"deepseek-reasoner","messages":[]}`,
		usage:    collector.Usage{Input: p(18), Output: p(265), CacheRead: p(0), Reasoning: p(241), Source: "openai.chat"},
		provider: "openai-compatible", model: "deepseek-reasoner", firstContent: -1,
	},
}

// load reads a fixture as the collector would hand it over: a streamed
// body parsed into events.
func load(t testing.TB, f fixture) provider.Response {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", f.file))
	if err != nil {
		t.Fatal(err)
	}
	r := provider.Response{Path: f.path, RequestBody: []byte(f.request), Body: body}
	switch filepath.Ext(f.file) {
	case ".sse":
		r.Kind, r.Events = collector.KindSSE, stream.ParseSSE(body)
	case ".ndjson":
		r.Kind, r.Events = collector.KindNDJSON, stream.ParseNDJSON(body)
	default:
		r.Kind = collector.KindJSON
	}
	return r
}

func TestUsageFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.file, func(t *testing.T) {
			r := load(t, f)
			if got := provider.Usage(r); !equalUsage(got, f.usage) {
				t.Errorf("Usage = %s, want %s", fmtUsage(got), fmtUsage(f.usage))
			}
			if r.Events != nil {
				// A caller that passes only the body gets the same.
				r.Events = nil
				if got := provider.Usage(r); !equalUsage(got, f.usage) {
					t.Errorf("Usage without events = %s, want %s", fmtUsage(got), fmtUsage(f.usage))
				}
			}
		})
	}
}

func TestDetectFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.file, func(t *testing.T) {
			prov, model := provider.Detect(load(t, f))
			if prov != f.provider || model != f.model {
				t.Errorf("Detect = %q, %q, want %q, %q", prov, model, f.provider, f.model)
			}
		})
	}
}

func TestContentBearingFixtures(t *testing.T) {
	for _, f := range fixtures {
		r := load(t, f)
		if r.Events == nil {
			continue
		}
		t.Run(f.file, func(t *testing.T) {
			first := -1
			for i, e := range r.Events {
				if provider.ContentBearing(f.provider, e) {
					first = i
					break
				}
			}
			if first != f.firstContent {
				t.Errorf("first content-bearing event %d, want %d", first, f.firstContent)
			}
		})
	}
}

func equalUsage(a, b collector.Usage) bool {
	eq := func(x, y *int64) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return eq(a.Input, b.Input) && eq(a.Output, b.Output) && eq(a.CacheRead, b.CacheRead) &&
		eq(a.CacheWrite, b.CacheWrite) && eq(a.CacheWrite1h, b.CacheWrite1h) && eq(a.Reasoning, b.Reasoning) &&
		a.Source == b.Source && a.Missing == b.Missing
}

func fmtUsage(u collector.Usage) string {
	f := func(n *int64) string {
		if n == nil {
			return "nil"
		}
		return fmt.Sprint(*n)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "{in %s out %s cacheRead %s cacheWrite %s (1h %s) reasoning %s source %q missing %q}",
		f(u.Input), f(u.Output), f(u.CacheRead), f(u.CacheWrite), f(u.CacheWrite1h), f(u.Reasoning), u.Source, u.Missing)
	return b.String()
}
