package provider

import (
	"bytes"
	"strings"

	"github.com/llmtap/llmtap/collector"
)

// chat is OpenAI's chat/completions dialect, with its legacy completions
// and embeddings, as OpenAI, Azure, vLLM, DeepSeek, Ollama's OpenAI API and
// the other compatible servers write it.
type chat struct{}

func (chat) name() string { return "openai.chat" }

func (chat) ownsPath(p string) bool {
	return hasSuffix(p, "/chat/completions", "/completions", "/embeddings", "/images/generations", "/moderations") ||
		strings.Contains(p, "/audio/")
}

func (chat) ownsEvent(string) bool { return false }

func (chat) ownsDoc(p *probe) bool {
	switch p.Object {
	case "chat.completion", "chat.completion.chunk", "text_completion":
		return true
	}
	return false
}

// normalize: prompt_tokens already include the cached ones.
func (chat) normalize(c *counts) collector.Usage {
	var u collector.Usage
	u.Input, u.Output = count(c.PromptTokens), count(c.CompletionTokens)
	if c.PromptTokensDetails != nil {
		u.CacheRead = count(c.PromptTokensDetails.CachedTokens)
	}
	if u.CacheRead == nil {
		u.CacheRead = count(c.PromptCacheHitTokens)
	}
	if c.CompletionTokensDetails != nil {
		u.Reasoning = count(c.CompletionTokensDetails.ReasoningTokens)
	}
	return u
}

// chatContent reads the fields of a chunk that hold generated content.
// Only whether they hold something matters, so nothing is copied.
type chatContent struct {
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
}

// contentBearing: a chunk whose delta holds something, not the role-only
// first chunk, Azure's content filter chunks or the usage chunk.
func (chat) contentBearing(_ string, data []byte) bool {
	if !bytes.Contains(data, []byte(`"choices"`)) {
		return false // spares a decode of another dialect's event
	}
	var c chatContent
	if !decode(data, &c) {
		return false
	}
	for _, ch := range c.Choices {
		if ch.Text {
			return true
		}
		if d := ch.Delta; d != nil && bool(d.Content || d.Reasoning || d.ReasoningContent || d.Refusal || d.ToolCalls || d.FunctionCall) {
			return true
		}
	}
	return false
}

// chatText reads the generated text of a response or chunk.
type chatText struct {
	Choices []struct {
		Text    string      `json:"text"` // legacy completions
		Delta   chatMessage `json:"delta"`
		Message chatMessage `json:"message"`
	} `json:"choices"`
}

// chatMessage is a chat message or delta (and Ollama's message, the same
// shape but for its tool calls' arguments, an object).
type chatMessage struct {
	Content          string `json:"content"`
	Reasoning        string `json:"reasoning"`
	ReasoningContent string `json:"reasoning_content"`
	Refusal          string `json:"refusal"`
	Thinking         string `json:"thinking"`
	ToolCalls        []struct {
		Function struct {
			Name      string       `json:"name"`
			Arguments stringOrJSON `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
	FunctionCall *struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function_call"`
}

func (chat) toolCallFraming() int64 { return 7 }

func (chat) text(data []byte, g *generated) {
	// A stream's chunks decode into one value, its slices reused.
	d, _ := g.scratch.(*chatText)
	if d == nil {
		d = &chatText{}
		g.scratch = d
	}
	d.Choices = reuse(d.Choices)
	if !decode(data, d) {
		return
	}
	for i := range d.Choices {
		c := &d.Choices[i]
		g.add(c.Text)
		c.Delta.text(g)
		c.Message.text(g)
	}
}

// text adds a message's or delta's text; a stream names a tool call in
// its first delta only.
func (m *chatMessage) text(g *generated) {
	if m == nil {
		return
	}
	g.add(m.Content, m.Reasoning, m.ReasoningContent, m.Refusal, m.Thinking)
	for _, tc := range m.ToolCalls {
		g.call(tc.Function.Name)
		g.buf = append(g.buf, tc.Function.Arguments...)
	}
	if fc := m.FunctionCall; fc != nil {
		g.call(fc.Name)
		g.add(fc.Arguments)
	}
}
