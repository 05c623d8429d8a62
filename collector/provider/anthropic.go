package provider

import (
	"bytes"
	"strings"

	"github.com/llmtap/llmtap/collector"
)

// anthropic is Anthropic's Messages dialect. Its stream names every event
// after its type, and reports usage in message_start and message_delta.
type anthropic struct{}

func (anthropic) name() string { return "anthropic.messages" }

func (anthropic) ownsPath(p string) bool {
	// OpenAI's Assistants API has /threads/{id}/messages too.
	return strings.HasSuffix(p, "/messages") && !strings.Contains(p, "/threads/")
}

// ownsEvent: all of Anthropic's event names but "error", which others
// use too.
func (anthropic) ownsEvent(name string) bool { return name != "error" && anthropicEvent(name) }

func (anthropic) ownsDoc(p *probe) bool { return p.Type == "message" || p.Type == "message_start" }

// normalize: Anthropic's input_tokens leave out the tokens read from and
// written to the cache; Input adds them.
func (anthropic) normalize(c *counts) collector.Usage {
	var u collector.Usage
	u.Output = count(c.OutputTokens)
	u.CacheRead, u.CacheWrite = count(c.CacheReadInputTokens), count(c.CacheCreationInputTokens)
	if c.CacheCreation != nil && u.CacheWrite != nil {
		u.CacheWrite1h = count(c.CacheCreation.Ephemeral1h)
		if u.CacheWrite1h != nil && *u.CacheWrite1h > *u.CacheWrite {
			u.CacheWrite1h = u.CacheWrite // a part cannot pass its whole
		}
	}
	if in := count(c.InputTokens); in != nil {
		u.Input = sum(*in, u.CacheRead, u.CacheWrite)
	}
	return u
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

// contentBearing: content_block_delta streams text, thinking, tool input
// and citations; message_start, ping and the rest carry none.
func (anthropic) contentBearing(name string, data []byte) bool {
	if name != "" {
		return name == "content_block_delta"
	}
	if !bytes.Contains(data, []byte(`"type"`)) {
		return false // spares a decode of another dialect's event
	}
	var e struct {
		Type string `json:"type"`
	}
	return decode(data, &e) && e.Type == "content_block_delta"
}

// anthropicText reads the generated text of a message or a stream event.
type anthropicText struct {
	Type    string  `json:"type"`
	Delta   block   `json:"delta"`   // content_block_delta's
	Content []block `json:"content"` // a message's
	// content_block_start names the tool a tool_use block calls.
	ContentBlock *struct {
		Name string `json:"name"`
	} `json:"content_block"`
}

// block is an Anthropic content block or delta, or a Responses content
// part.
type block struct {
	Text        string       `json:"text"`
	Thinking    string       `json:"thinking"`
	PartialJSON string       `json:"partial_json"`
	Input       stringOrJSON `json:"input"`
	Name        string       `json:"name"`
}

// text adds a block's text; a named block is a tool call.
func (b *block) text(g *generated) {
	g.add(b.Text, b.Thinking, b.PartialJSON)
	g.call(b.Name)
	g.buf = append(g.buf, b.Input...)
}

func (anthropic) toolCallFraming() int64 { return 25 }

func (anthropic) text(data []byte, g *generated) {
	// A stream's events decode into one value.
	d, _ := g.scratch.(*anthropicText)
	if d == nil {
		d = &anthropicText{}
		g.scratch = d
	}
	*d = anthropicText{Content: reuse(d.Content)}
	if !decode(data, d) {
		return
	}
	switch d.Type {
	case "content_block_delta":
		d.Delta.text(g)
	case "content_block_start":
		if d.ContentBlock != nil {
			g.call(d.ContentBlock.Name)
		}
	case "message":
		for i := range d.Content {
			d.Content[i].text(g)
		}
	}
}
