package provider

import (
	"bytes"

	"github.com/llmtap/llmtap/collector"
)

// ollama is Ollama's native API: NDJSON streams whose last line says
// "done": true and carries the counts (prompt_eval_count, eval_count),
// outside any usage object.
type ollama struct{}

func (ollama) name() string { return "ollama" }

func (ollama) ownsPath(p string) bool {
	return hasSuffix(p, "/api/chat", "/api/generate", "/api/embed", "/api/embeddings")
}

func (ollama) ownsEvent(string) bool { return false }

func (ollama) ownsDoc(p *probe) bool { return bool(p.Done) && p.Object == "" }

// normalize: Ollama writes no usage object; usageDoc reads its counts.
func (ollama) normalize(*counts) collector.Usage { return collector.Usage{} }

// ollamaContent reads the fields of a line that hold generated content.
type ollamaContent struct {
	// Message is /api/chat's (in Anthropic's message_start, a message's
	// content is an empty array).
	Message *struct {
		Content   nonEmpty `json:"content"`
		Thinking  nonEmpty `json:"thinking"`
		ToolCalls nonEmpty `json:"tool_calls"`
	} `json:"message"`
	// Response and Thinking are /api/generate's.
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

func (ollama) contentBearing(_ string, data []byte) bool {
	if !bytes.Contains(data, []byte(`"done"`)) {
		return false // every line of Ollama's own API says whether it is done
	}
	var c ollamaContent
	if !decode(data, &c) {
		return false
	}
	if m := c.Message; m != nil && bool(m.Content || m.Thinking || m.ToolCalls) {
		return true
	}
	return bool(c.Response) || bool(c.Thinking)
}

// ollamaText reads the generated text of a line or a response.
type ollamaText struct {
	Message  *chatMessage `json:"message"`
	Response string       `json:"response"`
	Thinking string       `json:"thinking"`
}

// toolCallFraming: not measured yet (the corpus has no Ollama tool call).
func (ollama) toolCallFraming() int64 { return 0 }

func (ollama) text(data []byte, g *generated) {
	var d ollamaText
	if !decode(data, &d) {
		return
	}
	d.Message.text(g)
	g.add(d.Response, d.Thinking)
}
