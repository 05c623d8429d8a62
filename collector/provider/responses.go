package provider

import (
	"bytes"
	"strings"

	"github.com/llmtap/llmtap/collector"
)

// responses is OpenAI's Responses API dialect. Its stream names every
// event after its type ("response.output_text.delta").
type responses struct{}

func (responses) name() string { return "openai.responses" }

func (responses) ownsPath(p string) bool { return strings.HasSuffix(p, "/responses") }

func (responses) ownsEvent(name string) bool { return strings.HasPrefix(name, "response.") }

func (responses) ownsDoc(p *probe) bool {
	return p.Object == "response" || strings.HasPrefix(p.Type, "response.")
}

// normalize: input_tokens already include the cached ones.
func (responses) normalize(c *counts) collector.Usage {
	var u collector.Usage
	u.Input, u.Output = count(c.InputTokens), count(c.OutputTokens)
	if c.InputTokensDetails != nil {
		u.CacheRead = count(c.InputTokensDetails.CachedTokens)
	}
	if c.OutputTokensDetails != nil {
		u.Reasoning = count(c.OutputTokensDetails.ReasoningTokens)
	}
	return u
}

// responsesContent is whether an event type streams generated content.
func responsesContent(t string) bool {
	switch t {
	case "response.output_text.delta",
		"response.refusal.delta",
		"response.function_call_arguments.delta",
		"response.reasoning_summary_text.delta",
		"response.reasoning_text.delta":
		return true
	}
	return false
}

// contentBearing: the deltas of text, refusals, function call arguments
// and reasoning; not the lifecycle events.
func (responses) contentBearing(name string, data []byte) bool {
	if name != "" {
		return responsesContent(name)
	}
	if !bytes.Contains(data, []byte(`"type"`)) {
		return false // spares a decode of another dialect's event
	}
	var e struct {
		Type string `json:"type"`
	}
	return decode(data, &e) && responsesContent(e.Type)
}

// responsesText reads the generated text of a response object or a
// stream's delta event.
type responsesText struct {
	Type  string       `json:"type"`
	Delta stringOrJSON `json:"delta"`
	Item  *struct {
		Name string `json:"name"` // a function call's, as it starts
	} `json:"item"`
	Output []struct {
		Name      string  `json:"name"`
		Arguments string  `json:"arguments"`
		Content   []block `json:"content"`
		Summary   []block `json:"summary"`
	} `json:"output"`
}

// text reads a stream's deltas, or a response object's output items. The
// events that repeat what the deltas said (response.output_text.done,
// response.completed) add nothing: only deltas count in a stream.
func (responses) toolCallFraming() int64 { return 8 }

func (responses) text(data []byte, g *generated) {
	var d responsesText
	if !decode(data, &d) {
		return
	}
	if d.Type != "" {
		switch {
		case responsesContent(d.Type):
			g.buf = append(g.buf, d.Delta...)
		case d.Type == "response.output_item.added" && d.Item != nil:
			g.call(d.Item.Name)
		}
		return
	}
	for _, o := range d.Output {
		g.call(o.Name)
		g.add(o.Arguments)
		for _, b := range o.Content {
			b.text(g)
		}
		for _, b := range o.Summary {
			b.text(g)
		}
	}
}
