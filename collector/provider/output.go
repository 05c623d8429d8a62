package provider

import (
	"bytes"

	"github.com/llmtap/llmtap/collector/stream"
)

// Output returns the text a response generated, for counting its tokens
// when the provider reported none: content, reasoning, refusals and tool
// calls (names and arguments), in every dialect, from a stream's events
// (what reached the client, also when it broke off) or a JSON body. The
// pieces are joined as the model wrote them, one after the other. Events
// and documents that do not parse add nothing; a response whose dialect
// is unknown gives "".
func Output(r Response) string {
	events := r.Events
	if events == nil {
		events = parseBody(r)
	}
	body := bytes.TrimSpace(r.Body)
	f := outputDialect(r.Path, events, body).format()
	if f == nil {
		return ""
	}
	var buf []byte
	if len(events) > 0 {
		for _, e := range events {
			data := bytes.TrimSpace(e.Data)
			if len(data) > 0 && data[0] == '{' {
				buf = f.text(data, buf)
			}
		}
	} else if len(body) > 0 && body[0] == '{' {
		buf = f.text(body, buf)
	}
	return string(buf)
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
