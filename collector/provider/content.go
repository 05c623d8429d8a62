package provider

import (
	"bytes"

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
		if f := eventDialect(ev.Name).format(); f != nil {
			return f.contentBearing(ev.Name, data)
		}
		if provider == Anthropic {
			return false
		}
	}
	// The formats read disjoint fields: whichever finds content has it.
	for _, f := range formats {
		if f.contentBearing("", data) {
			return true
		}
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
