package provider

import (
	"bytes"

	gojson "github.com/goccy/go-json"
)

// Output returns the text a response generated, for counting its tokens
// when the provider reported none: content, reasoning, refusals and tool
// calls (names and arguments), in every format Usage reads, from a
// stream's events (what reached the client, also when it broke off) or a
// JSON body. Events and documents that do not parse add nothing.
func Output(r Response) []string {
	events := r.Events
	if events == nil {
		events = parseBody(r)
	}
	var texts []string
	if len(events) > 0 {
		for _, ev := range events {
			data := bytes.TrimSpace(ev.Data)
			if len(data) == 0 || data[0] != '{' {
				continue
			}
			var d outputDoc
			if decode(data, &d) {
				texts = d.add(texts)
			}
		}
		return texts
	}
	body := bytes.TrimSpace(r.Body)
	if len(body) == 0 || body[0] != '{' {
		return nil
	}
	var d outputDoc
	if decode(body, &d) {
		texts = d.add(texts)
	}
	return texts
}

// outputDoc reads the generated text of a response document or a stream
// event in any of the formats.
type outputDoc struct {
	Type    string `json:"type"` // Anthropic and Responses events
	Choices []struct {
		Text    string       `json:"text"` // legacy completions
		Delta   *textMessage `json:"delta"`
		Message *textMessage `json:"message"`
	} `json:"choices"`
	// Anthropic: a stream's delta (text, partial_json, thinking) and a
	// document's content blocks; the Responses API: a stream's delta is a
	// string (output_text, refusal, function_call_arguments, reasoning).
	Delta   gojson.RawMessage `json:"delta"`
	Content []block           `json:"content"`
	// The Responses API's document.
	Output []struct {
		Type      string  `json:"type"`
		Name      string  `json:"name"`
		Arguments string  `json:"arguments"`
		Content   []block `json:"content"`
		Summary   []block `json:"summary"`
	} `json:"output"`
	// Ollama: /api/chat's message, /api/generate's response.
	Message  *textMessage   `json:"message"`
	Response responseString `json:"response"`
	Thinking string         `json:"thinking"`
}

// textMessage is an OpenAI chat message or delta, or an Ollama message.
type textMessage struct {
	Content          string `json:"content"`
	Reasoning        string `json:"reasoning"`
	ReasoningContent string `json:"reasoning_content"`
	Refusal          string `json:"refusal"`
	Thinking         string `json:"thinking"`
	ToolCalls        []struct {
		Function struct {
			Name      string            `json:"name"`
			Arguments gojson.RawMessage `json:"arguments"` // a string (OpenAI) or an object (Ollama)
		} `json:"function"`
	} `json:"tool_calls"`
}

// block is an Anthropic content block or delta, or a Responses content
// part.
type block struct {
	Type        string            `json:"type"`
	Text        string            `json:"text"`
	Thinking    string            `json:"thinking"`
	PartialJSON string            `json:"partial_json"`
	Input       gojson.RawMessage `json:"input"`
	Name        string            `json:"name"`
}

// responseString is Ollama's /api/generate "response", a string; the
// Responses API's events carry an object of the same name, which is left
// out.
type responseString string

// UnmarshalJSON implements json.Unmarshaler.
func (r *responseString) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' && gojson.Unmarshal(b, &s) == nil {
		*r = responseString(s)
	}
	return nil
}

func (d *outputDoc) add(texts []string) []string {
	for _, c := range d.Choices {
		texts = append(texts, c.Text)
		texts = c.Delta.add(texts)
		texts = c.Message.add(texts)
	}
	texts = d.Message.add(texts)
	texts = append(texts, string(d.Response), d.Thinking)
	if len(d.Delta) > 0 {
		if d.Delta[0] == '"' {
			var s string // a Responses API delta
			if gojson.Unmarshal(d.Delta, &s) == nil {
				texts = append(texts, s)
			}
		} else {
			var b block // an Anthropic delta
			if decode(d.Delta, &b) {
				texts = b.add(texts)
			}
		}
	}
	for _, b := range d.Content {
		texts = b.add(texts)
	}
	for _, o := range d.Output {
		texts = append(texts, o.Name, o.Arguments)
		for _, b := range o.Content {
			texts = b.add(texts)
		}
		for _, b := range o.Summary {
			texts = b.add(texts)
		}
	}
	return texts
}

func (m *textMessage) add(texts []string) []string {
	if m == nil {
		return texts
	}
	texts = append(texts, m.Content, m.Reasoning, m.ReasoningContent, m.Refusal, m.Thinking)
	for _, tc := range m.ToolCalls {
		texts = append(texts, tc.Function.Name)
		args := tc.Function.Arguments
		if len(args) > 0 && args[0] == '"' {
			var s string
			if gojson.Unmarshal(args, &s) == nil {
				texts = append(texts, s)
			}
		} else if hasContent(args) {
			texts = append(texts, string(args))
		}
	}
	return texts
}

func (b *block) add(texts []string) []string {
	texts = append(texts, b.Text, b.Thinking, b.PartialJSON, b.Name)
	if hasContent(b.Input) {
		texts = append(texts, string(b.Input))
	}
	return texts
}
