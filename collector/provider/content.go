package provider

import (
	"bytes"
	"strings"

	"github.com/llmtap/llmtap/collector/stream"
)

// ContentBearing reports whether ev carries generated content: text,
// reasoning, a refusal or a tool call. The first such event marks the time
// to first token, so the role-only first chunk of OpenAI, usage-only chunks,
// Azure's content filter chunks, Anthropic's message_start and ping, the
// Responses lifecycle events and [DONE] do not count.
//
// provider is Detect's answer. The rules go by the event's own shape, which
// already tells the formats apart, so that a server speaking another's
// format (Ollama's OpenAI-compatible API, a gateway translating) is judged
// by the format it speaks; provider only spares decoding where the format
// names its events.
func ContentBearing(provider string, ev stream.Event) bool {
	data := bytes.TrimSpace(ev.Data)
	if len(data) == 0 || data[0] != '{' {
		return false // [DONE], or a line too cut to read
	}
	if ev.Name != "" && ev.Name != "message" {
		// Anthropic and the Responses API name every event after its
		// type; other names (a gateway's own) fall through to the data.
		if contentType(ev.Name) {
			return true
		}
		if provider == Anthropic || anthropicEvent(ev.Name) || strings.HasPrefix(ev.Name, "response.") {
			return false
		}
	}
	var p contentProbe
	if !decode(data, &p) {
		return false
	}
	if contentType(p.Type) {
		return true
	}
	for _, c := range p.Choices {
		if c.Text {
			return true // legacy completions
		}
		if d := c.Delta; d != nil && bool(d.Content || d.Reasoning || d.ReasoningContent || d.Refusal || d.ToolCalls || d.FunctionCall) {
			return true
		}
	}
	if m := p.Message; m != nil && bool(m.Content || m.Thinking || m.ToolCalls) {
		return true // Ollama /api/chat
	}
	return bool(p.Response) || bool(p.Thinking) // Ollama /api/generate
}

// contentProbe reads the fields that hold generated content in each format.
// Only whether they hold something matters, so nothing is copied.
type contentProbe struct {
	Type    string `json:"type"` // Anthropic and Responses events
	Choices []struct {
		Delta *struct {
			Content          nonEmpty `json:"content"`
			Reasoning        nonEmpty `json:"reasoning"`         // vLLM, OpenRouter
			ReasoningContent nonEmpty `json:"reasoning_content"` // vLLM (older), DeepSeek
			Refusal          nonEmpty `json:"refusal"`
			ToolCalls        nonEmpty `json:"tool_calls"`
			FunctionCall     nonEmpty `json:"function_call"` // before tool_calls
		} `json:"delta"`
		Text nonEmpty `json:"text"` // legacy completions
	} `json:"choices"`
	// Message is Ollama's /api/chat message (in Anthropic's message_start
	// its content is an empty array).
	Message *struct {
		Content   nonEmpty `json:"content"`
		Thinking  nonEmpty `json:"thinking"`
		ToolCalls nonEmpty `json:"tool_calls"`
	} `json:"message"`
	// Response and Thinking are Ollama's /api/generate text.
	Response responseText `json:"response"`
	Thinking nonEmpty     `json:"thinking"`
}

// responseText is true for a non-empty string: Ollama's /api/generate
// "response", not the object of the same name in Responses API events.
type responseText bool

// UnmarshalJSON implements json.Unmarshaler.
func (r *responseText) UnmarshalJSON(b []byte) error {
	*r = responseText(len(b) > 2 && b[0] == '"')
	return nil
}

// contentType reports whether an event type (Anthropic, Responses) is one
// that streams generated content.
func contentType(t string) bool {
	switch t {
	case "content_block_delta", // Anthropic: text, thinking, tool input, citations
		"response.output_text.delta",
		"response.refusal.delta",
		"response.function_call_arguments.delta",
		"response.reasoning_summary_text.delta",
		"response.reasoning_text.delta":
		return true
	}
	return false
}

// anthropicEvent reports whether name is one of Anthropic's stream events.
func anthropicEvent(name string) bool {
	switch name {
	case "message_start", "content_block_start", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop", "ping", "error":
		return true
	}
	return false
}

// StreamEnded reports whether a stream's last event is the one its format
// ends with: OpenAI's "[DONE]" (chat and the compatible servers), the
// Responses API's response.completed, .incomplete or .failed, Anthropic's
// message_stop, Ollama's "done": true. Such a stream reached the client
// whole, whatever the client did after.
func StreamEnded(events []stream.Event) bool {
	if len(events) == 0 {
		return false
	}
	last := events[len(events)-1]
	if !last.Complete {
		return false
	}
	data := bytes.TrimSpace(last.Data)
	if bytes.Equal(data, []byte("[DONE]")) {
		return true
	}
	if endEvent(last.Name) {
		return true
	}
	var end struct {
		Type string `json:"type"`
		Done bool   `json:"done"`
	}
	if len(data) == 0 || data[0] != '{' || !decode(data, &end) {
		return false
	}
	return endEvent(end.Type) || end.Done
}

// endEvent reports whether an event name or type (Anthropic, Responses)
// is one a stream ends with.
func endEvent(t string) bool {
	switch t {
	case "message_stop", "response.completed", "response.incomplete", "response.failed":
		return true
	}
	return false
}
