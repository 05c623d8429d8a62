// Package provider knows the response formats of LLM providers: where each
// one reports token usage, which of its streamed events carry generated
// content, and how to tell the providers apart from what was captured.
//
// Each dialect (OpenAI chat/completions, OpenAI Responses, Anthropic
// Messages, Ollama) is one file, chat.go, responses.go, anthropic.go and
// ollama.go, behind the small format interface of dialect.go: its paths,
// how its documents and events are told, how its usage normalizes, which
// of its events carry content, where its generated text is. What spans
// the dialects lives apart: detect.go weighs the vendors' markers,
// usage.go finds the usage in a body or stream, output.go and content.go
// walk a response's events, request.go reads a request's prompt.
//
// Nothing here fails a record. A body that is not JSON, is cut short or has
// an unknown shape gives a Usage with Source "none" and Missing saying why.
//
// # Usage normalization
//
// collector.Usage.Input counts ALL prompt tokens, cached or not, and Output
// all generated tokens, reasoning included, so Input+Output is the total
// and never counts a token twice. The providers report differently:
//
//   - OpenAI chat/completions (and vLLM, Azure, Ollama's OpenAI API, other
//     compatible servers): prompt_tokens already include
//     prompt_tokens_details.cached_tokens, so Input = prompt_tokens,
//     CacheRead = cached_tokens (DeepSeek's prompt_cache_hit_tokens when
//     that is all there is), Output = completion_tokens, Reasoning =
//     completion_tokens_details.reasoning_tokens.
//   - OpenAI Responses: the same with input_tokens, input_tokens_details,
//     output_tokens and output_tokens_details.
//   - Anthropic Messages: input_tokens EXCLUDES the tokens read from and
//     written to the cache, so Input = input_tokens +
//     cache_read_input_tokens + cache_creation_input_tokens, CacheRead =
//     cache_read_input_tokens, CacheWrite = cache_creation_input_tokens
//     (of which CacheWrite1h = cache_creation.ephemeral_1h_input_tokens),
//     Output = output_tokens. In a stream, message_start carries the input
//     counts and message_delta the cumulative ones: a field of the last
//     message_delta wins over message_start's.
//   - Ollama: Input = prompt_eval_count, Output = eval_count.
//
// A nil field means the provider did not say (OpenAI reports no cache
// writes, so CacheWrite stays nil); 0 means it said zero.
//
// Source names the usage dialect and whether it came from a stream:
// "openai.chat" (chat/completions, legacy completions, embeddings),
// "openai.responses", "anthropic.messages", "ollama", each with ".stream"
// appended for streamed responses; "none" when there is no usage. Missing
// is one of the Missing* constants. It is also set next to a real Source
// when usage is partial: an Anthropic stream cut after message_start keeps
// its input counts, with Output nil and Missing "truncated".
package provider

import (
	"bytes"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/stream"
)

// Response is what a provider returned, as captured.
type Response struct {
	// Path is the request path, e.g. /v1/chat/completions, /v1/messages,
	// /v1/responses, /api/chat, /v1/audio/speech.
	Path string
	// RequestBody is the head of the request JSON (may be truncated).
	RequestBody []byte
	Kind        collector.Kind
	// Body is the JSON body of a non-streaming response. It may be cut (the
	// captured head, or head and tail stitched together): Usage then reads
	// the last usage object it can find in it. For an SSE or NDJSON
	// response without Events, Usage and Detect parse Body into events.
	Body []byte
	// Events are the SSE or NDJSON events of a streaming response.
	Events []stream.Event
}

// Providers, as Detect names them.
const (
	OpenAI           = "openai"
	Anthropic        = "anthropic"
	Ollama           = "ollama"
	VLLM             = "vllm"
	Azure            = "azure"
	OpenAICompatible = "openai-compatible" // OpenAI's format from a server not recognized
	Unknown          = "unknown"
)

// Why usage is missing (collector.Usage.Missing).
const (
	MissingNoBody             = "no_body"              // nothing captured
	MissingNotJSON            = "not_json"             // a body that is neither JSON nor an event stream
	MissingStreamWithoutUsage = "stream_without_usage" // the stream ended without usage (e.g. no stream_options.include_usage)
	MissingTruncated          = "truncated"            // the body was cut before its usage
	MissingUnknownFormat      = "unknown_format"       // JSON of a shape this package does not know
	MissingErrorResponse      = "error_response"       // the provider answered with an error payload
	MissingNoUsage            = "no_usage"             // a known, complete response that reports no usage
)

// SourceNone is collector.Usage.Source when no usage was found.
const SourceNone = "none"

// Detect names the provider that served r and the model it used. The model
// is the response's "model" when there is one (it is the resolved model:
// gpt-4o-2024-08-06 for a request of gpt-4o), else the request's.
//
// The provider is told from the path and the response's own markers, since a
// gateway may route any path anywhere: Azure's content filter results,
// Ollama's NDJSON and "fp_ollama" fingerprint, vLLM's per-choice
// stop_reason and prompt_logprobs, OpenAI's id and fingerprint formats and
// model names. An OpenAI-format response without any marker is
// "openai-compatible"; the Anthropic format is "anthropic".
func Detect(r Response) (provider, model string) {
	var ev evidence
	ev.path(r.Path)
	if r.Kind == collector.KindNDJSON {
		ev.ollama = true
	}
	events := r.Events
	if events == nil {
		events = parseBody(r)
	}
	if len(events) > 0 {
		ev.events(events)
	} else if b := bytes.TrimSpace(r.Body); len(b) > 0 && b[0] == '{' {
		ev.doc("", b)
	}
	model = ev.model
	if model == "" {
		model = requestModel(r.RequestBody)
	}
	return ev.provider(model), model
}

// parseBody splits the body of a streamed response into events, for a
// caller that passed only the body.
func parseBody(r Response) []stream.Event {
	switch r.Kind {
	case collector.KindSSE:
		return stream.ParseSSE(r.Body)
	case collector.KindNDJSON:
		return stream.ParseNDJSON(r.Body)
	}
	return nil
}
