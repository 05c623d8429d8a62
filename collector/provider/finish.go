package provider

import (
	"bytes"
	"encoding/json"

	"github.com/llmtap/llmtap/collector/stream"
)

// FinishEvents bounds the events, from the end, that FinishReasons reads:
// the reasons come with the last content, before the usage and the end.
const FinishEvents = 6

// FinishReasons are why the model stopped, as the response says: OpenAI's
// finish_reason of each choice, Anthropic's stop_reason, the Responses
// API's status, Ollama's done_reason. Nil when it says none (a stream cut
// before its end, an error).
func FinishReasons(r Response) []string {
	events := r.Events
	if events == nil {
		events = parseBody(r)
	}
	if len(events) == 0 {
		if b := bytes.TrimSpace(r.Body); len(b) > 0 && b[0] == '{' {
			return finishOf(b, nil)
		}
		return nil
	}
	var out []string
	for i := len(events) - 1; i >= 0 && i >= len(events)-FinishEvents; i-- {
		out = finishOf(events[i].Data, out)
	}
	return out
}

// finish is what a document may say of why the model stopped.
type finish struct {
	Choices []struct {
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	StopReason *string `json:"stop_reason"`
	Delta      struct {
		StopReason *string `json:"stop_reason"`
	} `json:"delta"`
	DoneReason *string `json:"done_reason"`
	Type       string  `json:"type"`
	Response   struct {
		Status string `json:"status"`
	} `json:"response"`
}

// finishOf appends the reasons a document gives. Only documents that
// name one of the keys are decoded.
func finishOf(doc []byte, out []string) []string {
	if !bytes.Contains(doc, []byte(`"finish_reason"`)) && !bytes.Contains(doc, []byte(`"stop_reason"`)) &&
		!bytes.Contains(doc, []byte(`"done_reason"`)) && !bytes.Contains(doc, []byte(`"response.`)) {
		return out
	}
	var f finish
	if json.Unmarshal(doc, &f) != nil {
		return out
	}
	for _, c := range f.Choices {
		if c.FinishReason != nil && *c.FinishReason != "" {
			out = append(out, *c.FinishReason)
		}
	}
	for _, p := range []*string{f.StopReason, f.Delta.StopReason, f.DoneReason} {
		if p != nil && *p != "" {
			out = append(out, *p)
		}
	}
	if (f.Type == "response.completed" || f.Type == "response.incomplete" || f.Type == "response.failed") && f.Response.Status != "" {
		out = append(out, f.Response.Status)
	}
	return out
}

// Events makes events of the data of stored chunks.
func Events(chunks []string) []stream.Event {
	out := make([]stream.Event, len(chunks))
	for i, c := range chunks {
		out[i] = stream.Event{Data: []byte(c)}
	}
	return out
}
