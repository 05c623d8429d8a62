package provider

import (
	"bytes"

	"github.com/llmtap/llmtap/collector/stream"
)

// Generated is what a response generated, for counting its tokens.
type Generated struct {
	// Text is the generated text, its pieces joined as the model wrote
	// them, one after the other.
	Text string
	// ToolCalls is the number of tool calls among them, and Framing the
	// tokens their provider frames them with, which are not in Text.
	ToolCalls int
	Framing   int64
}

// generated gathers a Generated.
type generated struct {
	buf   []byte
	calls int
	// scratch is a dialect's decoding value, reused from one event to
	// the next.
	scratch any
}

// add appends texts.
func (g *generated) add(texts ...string) {
	for _, t := range texts {
		g.buf = append(g.buf, t...)
	}
}

// call counts a tool call by its name, and appends the name.
func (g *generated) call(name string) {
	if name != "" {
		g.calls++
		g.buf = append(g.buf, name...)
	}
}

// Output returns what a response generated, for counting its tokens
// when the provider reported none: content, reasoning, refusals and tool
// calls (names and arguments), in every dialect, from a stream's events
// (what reached the client, also when it broke off) or a JSON body. Events
// and documents that do not parse add nothing; a response whose dialect is
// unknown gives nothing.
func Output(r Response) Generated {
	events := r.Events
	if events == nil {
		events = parseBody(r)
	}
	body := bytes.TrimSpace(r.Body)
	f := outputDialect(r.Path, events, body).format()
	if f == nil {
		return Generated{}
	}
	var g generated
	if len(events) > 0 {
		for _, e := range events {
			data := bytes.TrimSpace(e.Data)
			if len(data) > 0 && data[0] == '{' {
				f.text(data, &g)
			}
		}
	} else if len(body) > 0 && body[0] == '{' {
		f.text(body, &g)
	}
	return Generated{Text: string(g.buf), ToolCalls: g.calls, Framing: int64(g.calls) * f.toolCallFraming()}
}

// outputDialect tells a response's dialect from its first JSON document,
// or else its path: the text is in the format the response speaks.
func outputDialect(path string, events []stream.Event, body []byte) dialect {
	var ev evidence
	if len(events) == 0 {
		if len(body) > 0 && body[0] == '{' {
			ev.doc("", body)
		}
	} else {
		for _, e := range events {
			if ev.event(e) {
				break
			}
		}
	}
	if ev.dialect == dialectUnknown {
		return pathDialect(path)
	}
	return ev.dialect
}
