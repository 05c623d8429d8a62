package provider

import (
	"bytes"
	"errors"
	"fmt"

	gojson "github.com/goccy/go-json"

	"github.com/llmtap/llmtap/collector/tokens"
)

// Request is what a limit check needs of an LLM request body: its model,
// its own bound on output tokens, and the text of its prompt, which a
// tokenizer counts (collector/tokens). Every dialect the collector reads
// is one shape here: OpenAI chat/completions (and compatibles: vLLM,
// Azure, DeepSeek, Ollama's OpenAI API), legacy completions, OpenAI
// Responses, Anthropic Messages and Ollama's own API.
type Request struct {
	Model string
	// OutputBound is the request's own bound on output tokens
	// (max_completion_tokens, max_output_tokens, max_tokens, Ollama's
	// options.num_predict), 0 when it has none.
	OutputBound int64
	// Prompt is what its token count is made of: system prompts, message
	// contents, tool calls and results, the tool definitions as the
	// provider shows them to its model, and the tokens the provider adds
	// around them (see tools.go).
	Prompt tokens.Prompt
}

// ErrNotRequest is wrapped by ParseRequest for a body it cannot read as a
// JSON request object.
var ErrNotRequest = errors.New("not a JSON request object")

// ParseRequest reads a request body. Only top-level keys count: a
// "max_tokens" inside a tool's schema is not the request's bound. A body
// that is not a JSON object (cut short, not JSON, another shape) is an
// error wrapping ErrNotRequest: its prompt cannot be counted.
func ParseRequest(body []byte) (Request, error) {
	var doc struct {
		Model               string `json:"model"`
		MaxCompletionTokens *int64 `json:"max_completion_tokens"`
		MaxOutputTokens     *int64 `json:"max_output_tokens"`
		MaxTokens           *int64 `json:"max_tokens"`
		Options             struct {
			NumPredict *int64 `json:"num_predict"`
		} `json:"options"`
		Messages       []message       `json:"messages"`
		System         content         `json:"system"`          // Anthropic
		Instructions   content         `json:"instructions"`    // OpenAI Responses
		Input          content         `json:"input"`           // OpenAI Responses
		Prompt         content         `json:"prompt"`          // completions, Ollama generate
		ResponseFormat *responseFormat `json:"response_format"` // chat
		Text           *struct {
			Format *responseFormat `json:"format"`
		} `json:"text"` // Responses
		Tools     []gojson.RawMessage `json:"tools"`
		Functions []gojson.RawMessage `json:"functions"`
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return Request{}, fmt.Errorf("%w: it does not start with {", ErrNotRequest)
	}
	if err := gojson.Unmarshal(b, &doc); err != nil {
		var typeErr *gojson.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return Request{}, fmt.Errorf("%w: %w", ErrNotRequest, err)
		}
		// A field of an unexpected type is left unset; the rest counts.
	}
	r := Request{Model: doc.Model}
	for _, n := range []*int64{doc.MaxCompletionTokens, doc.MaxOutputTokens, doc.MaxTokens, doc.Options.NumPredict} {
		if n != nil && *n > 0 {
			r.OutputBound = *n
			break
		}
	}
	p := &r.Prompt
	p.Texts = append(p.Texts, doc.System.texts...)
	p.Texts = append(p.Texts, doc.Instructions.texts...)
	p.Texts = append(p.Texts, doc.Prompt.texts...)
	p.Texts = append(p.Texts, doc.Input.texts...)
	p.Messages = doc.Input.items
	p.Framing += int64(doc.Input.calls)*historyCallFraming + int64(doc.Input.results)*toolResultFraming
	p.Texts = append(p.Texts, doc.Input.resultNames()...)
	system := len(doc.System.texts) > 0 || len(doc.Instructions.texts) > 0
	var calls content // the tool calls so far: a result follows its call
	for _, m := range doc.Messages {
		p.Messages++
		p.Texts = append(p.Texts, m.Role, m.Name)
		p.Texts = append(p.Texts, m.Content.texts...)
		p.Texts = append(p.Texts, m.ToolCalls.texts...)
		p.Framing += int64(m.ToolCalls.calls) * historyCallFraming
		calls.names = append(calls.names, m.ToolCalls.names...)
		if m.Role == "tool" {
			// The model sees a result under its function's name.
			p.Texts = append(p.Texts, calls.nameOf(m.ToolCallID))
			p.Framing += toolResultFraming
		}
		system = system || m.Role == "system" || m.Role == "developer"
	}
	addTools(p, append(doc.Tools, doc.Functions...), system)
	format := doc.ResponseFormat
	if doc.Text != nil && doc.Text.Format != nil {
		format = doc.Text.Format
	}
	addResponseFormat(p, format)
	return r, nil
}

// message is one message of a chat prompt, in any dialect.
type message struct {
	Role       string  `json:"role"`
	Name       string  `json:"name"`
	Content    content `json:"content"`
	ToolCalls  content `json:"tool_calls"`
	ToolCallID string  `json:"tool_call_id"`
}

// content collects the texts of a prompt value in any of the shapes the
// dialects give it: a string; a list of strings; a list of parts or items
// with a text, content, arguments or input (OpenAI's text parts, Anthropic's
// text, tool_use and tool_result blocks, the Responses API's input items
// and their function calls). Images and audio are not text: left out.
type content struct {
	texts []string
	items int // parts that are messages of their own (Responses input items)
	// calls counts the tool calls among the parts, results their results
	// (Responses function_call_output items); names holds each call's id
	// and function name, in pairs.
	calls, results int
	names          []string
	resultIDs      []string
}

// nameOf returns the function name of the tool call with the given id, ""
// when none has it.
func (c *content) nameOf(id string) string {
	for i := 0; i+1 < len(c.names); i += 2 {
		if id != "" && c.names[i] == id {
			return c.names[i+1]
		}
	}
	return ""
}

// resultNames returns the function names of the results among the parts.
func (c *content) resultNames() []string {
	out := make([]string, 0, len(c.resultIDs))
	for _, id := range c.resultIDs {
		out = append(out, c.nameOf(id))
	}
	return out
}

// UnmarshalJSON implements json.Unmarshaler. It never fails: a value of
// another shape adds no text.
func (c *content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		var s string
		if gojson.Unmarshal(b, &s) == nil {
			c.texts = append(c.texts, s)
		}
	case '[':
		var parts []gojson.RawMessage
		if err := gojson.Unmarshal(b, &parts); err == nil {
			for _, p := range parts {
				c.part(p)
			}
		}
	case '{':
		c.part(b)
	}
	return nil
}

// part adds the texts of one element of a list.
func (c *content) part(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	if b[0] == '"' {
		var s string
		if gojson.Unmarshal(b, &s) == nil {
			c.texts = append(c.texts, s)
		}
		return
	}
	var p struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CallID    string `json:"call_id"` // Responses function calls and outputs
		Role      string `json:"role"`
		Name      string `json:"name"`
		Text      string `json:"text"`
		Arguments string `json:"arguments"`
		Function  *struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
		Input   gojson.RawMessage `json:"input"`   // Anthropic tool_use
		Content *content          `json:"content"` // tool_result, Responses messages
		Output  *content          `json:"output"`  // Responses function_call_output
	}
	if gojson.Unmarshal(b, &p) != nil {
		return
	}
	if p.Role != "" || p.Type == "message" || p.Type == "function_call" || p.Type == "function_call_output" {
		c.items++
	}
	c.texts = append(c.texts, p.Text, p.Name, p.Arguments)
	if p.Function != nil {
		c.texts = append(c.texts, p.Function.Name, p.Function.Arguments)
		c.calls++
		c.names = append(c.names, p.ID, p.Function.Name)
	}
	switch p.Type {
	case "function_call":
		c.calls++
		c.names = append(c.names, p.CallID, p.Name)
	case "function_call_output":
		c.results++
		c.resultIDs = append(c.resultIDs, p.CallID)
	}
	if hasContent(p.Input) {
		c.texts = append(c.texts, string(p.Input))
	}
	for _, sub := range []*content{p.Content, p.Output} {
		if sub != nil {
			c.texts = append(c.texts, sub.texts...)
		}
	}
}
