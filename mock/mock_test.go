package mock_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/mock"
)

// The format checks mirror what the collector reads (collector/provider and
// its testdata fixtures): the usage objects and their field names, the
// event names, and which events carry content. The root module cannot
// import the collector, so the shapes are checked here field by field.

// want is what a response must report.
type want struct {
	model   string
	in, out int
}

// formatCheck checks a response body's format and its numbers.
type formatCheck func(t *testing.T, body []byte, w want)

// endpointCases are one request per endpoint and form, with its prompt's
// word count.
var endpointCases = []struct {
	desc, path, body string
	in               int
	contentType      string
	stream           bool // the body is streamed: a content write sets the time to first token
	check            formatCheck
}{
	{
		desc: "chat", path: "/v1/chat/completions",
		body: `{"model":"gpt-test","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"say hi\ttwice"}]}]}`,
		in:   5, contentType: "application/json", check: checkChat,
	},
	{
		desc: "chat stream", path: "/v1/chat/completions",
		body: `{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"say hi twice"}]}`,
		in:   3, contentType: "text/event-stream", stream: true, check: checkChatStream(false),
	},
	{
		desc: "chat stream with usage", path: "/v1/chat/completions",
		body: `{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"say hi twice"}]}`,
		in:   3, contentType: "text/event-stream", stream: true, check: checkChatStream(true),
	},
	{
		desc: "responses", path: "/v1/responses",
		body: `{"model":"gpt-test","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"say hi twice"}]}]}`,
		in:   5, contentType: "application/json", check: checkResponses,
	},
	{
		desc: "responses stream", path: "/v1/responses",
		body: `{"model":"gpt-test","stream":true,"input":"say hi twice"}`,
		in:   3, contentType: "text/event-stream", stream: true, check: checkResponsesStream,
	},
	{
		desc: "messages", path: "/v1/messages",
		body: `{"model":"claude-test","max_tokens":64,"system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":"say hi twice"}]}`,
		in:   5, contentType: "application/json", check: checkMessages,
	},
	{
		desc: "messages stream", path: "/v1/messages",
		body: `{"model":"claude-test","max_tokens":64,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"say hi twice"}]}]}`,
		in:   3, contentType: "text/event-stream", stream: true, check: checkMessagesStream,
	},
	{
		desc: "speech", path: "/v1/audio/speech",
		body: `{"model":"tts-test","input":"say hi twice","voice":"alloy","response_format":"wav"}`,
		in:   3, contentType: "audio/wav", check: checkSpeech,
	},
}

func TestEndpoints(t *testing.T) {
	s, url := start(t, fast)
	for _, tt := range endpointCases {
		for _, tokens := range []int{3, 0} {
			t.Run(fmt.Sprintf("%s/tokens=%d", tt.desc, tokens), func(t *testing.T) {
				r := post(t, fmt.Sprintf("%s%s?tokens=%d&chunk=100", url, tt.path, tokens), tt.body)
				if r.resp.StatusCode != http.StatusOK || r.readErr != nil {
					t.Fatalf("status %d, read error %v: %s", r.resp.StatusCode, r.readErr, r.body)
				}
				if ct := r.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
					t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
				}
				streamed := tt.stream || tt.path == "/v1/audio/speech"
				if chunked := r.resp.ContentLength < 0; chunked != streamed {
					t.Errorf("Content-Length %d: streamed %v", r.resp.ContentLength, streamed)
				}
				model := strings.Split(strings.Split(tt.body, `"model":"`)[1], `"`)[0]
				tt.check(t, r.body, want{model: model, in: tt.in, out: tokens})

				tr := truth(t, s, r)
				checkReceived(t, tr, r.body)
				if tr.RequestID != r.id || tr.Endpoint != tt.path || tr.Status != http.StatusOK ||
					tr.InputTokens != tt.in || tr.OutputTokens != tokens || tr.Cancelled || tr.Dropped {
					t.Errorf("truth %+v", tr)
				}
				if tr.ReceivedUnixNs == 0 || tr.FirstByteUnixNs < tr.ReceivedUnixNs || tr.DoneUnixNs < tr.FirstByteUnixNs {
					t.Errorf("truth times out of order: %+v", tr)
				}
				if hasTTFT := tr.FirstTokenUnixNs != 0; hasTTFT != (tt.stream && tokens > 0) || (tr.TTFTUs > 0) != hasTTFT {
					t.Errorf("time to first token %d µs (at %d) for streamed %v with %d tokens", tr.TTFTUs, tr.FirstTokenUnixNs, tt.stream, tokens)
				}
				if tr.FirstTokenUnixNs != 0 && tr.FirstTokenUnixNs <= tr.FirstByteUnixNs {
					t.Errorf("the first token (%d) came with the first byte (%d): the non-content prelude must come first", tr.FirstTokenUnixNs, tr.FirstByteUnixNs)
				}
				if isAudio := tt.path == "/v1/audio/speech"; (tr.TTFAUs > 0) != isAudio {
					t.Errorf("time to first audio byte %d µs on %s", tr.TTFAUs, tt.path)
				}
			})
		}
	}
}

// TestFlushes checks that every event of a stream is flushed on its own,
// the headers first, so that each reaches the client at once.
func TestFlushes(t *testing.T) {
	s := mock.New(fast)
	for _, tt := range endpointCases {
		if !tt.stream && tt.path != "/v1/audio/speech" {
			continue
		}
		t.Run(tt.desc, func(t *testing.T) {
			rec := newFlushRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tt.path+"?tokens=3&chunk=10", strings.NewReader(tt.body)))
			if rec.status != http.StatusOK || rec.pending.Len() != 0 || len(rec.flushes) == 0 || rec.flushes[0] != "" {
				t.Fatalf("status %d, %d flushes (the first should be the headers alone), %d bytes never flushed", rec.status, len(rec.flushes), rec.pending.Len())
			}
			for i, f := range rec.flushes[1:] {
				if tt.path == "/v1/audio/speech" {
					if want := 10 + 44*btoi(i == 0); len(f) != want {
						t.Errorf("audio flush %d: %d bytes, want %d", i, len(f), want)
					}
					continue
				}
				if strings.Count(f, "\n\n") != 1 || !strings.HasSuffix(f, "\n\n") {
					t.Errorf("flush %d is not one whole event: %q", i, f)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func checkChat(t *testing.T, body []byte, w want) {
	var c struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage chatUsage `json:"usage"`
	}
	decodeStrict(t, string(body), &c)
	if c.Object != "chat.completion" || c.Model != w.model || len(c.Choices) != 1 || c.ID == "" {
		t.Fatalf("not a chat.completion of %s: %s", w.model, body)
	}
	if m := c.Choices[0]; m.Message.Role != "assistant" || m.Message.Content != text(w.out) || m.FinishReason != "stop" {
		t.Errorf("choice %+v, want %q and stop", m, text(w.out))
	}
	c.Usage.check(t, w)
}

type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (u chatUsage) check(t *testing.T, w want) {
	t.Helper()
	if u.PromptTokens != w.in || u.CompletionTokens != w.out || u.TotalTokens != w.in+w.out {
		t.Errorf("usage %+v, want prompt %d completion %d total %d", u, w.in, w.out, w.in+w.out)
	}
}

// chatChunk is a chat.completion.chunk; pointers tell absent from empty.
type chatChunk struct {
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *chatUsage `json:"usage"`
}

func checkChatStream(includeUsage bool) formatCheck {
	return func(t *testing.T, body []byte, w want) {
		events := parseSSE(t, body)
		if last := events[len(events)-1]; last.data != "[DONE]" {
			t.Fatalf("the stream ends with %q, not [DONE]", last.data)
		}
		chunks := make([]chatChunk, len(events)-1)
		for i, ev := range events[:len(events)-1] {
			if ev.name != "" {
				t.Errorf("chat event named %q", ev.name)
			}
			decodeStrict(t, ev.data, &chunks[i])
			if chunks[i].Object != "chat.completion.chunk" || chunks[i].Model != w.model {
				t.Fatalf("not a chat.completion.chunk of %s: %s", w.model, ev.data)
			}
		}
		// The role-only first chunk: content "" is no content.
		first := chunks[0].Choices
		if len(first) != 1 || first[0].Delta.Role == nil || *first[0].Delta.Role != "assistant" ||
			first[0].Delta.Content == nil || *first[0].Delta.Content != "" {
			t.Errorf("the first chunk is not role-only: %s", events[0].data)
		}
		var got strings.Builder
		contents, usages := 0, 0
		stop := -1
		for i, c := range chunks {
			if c.Usage != nil {
				usages++
				if len(c.Choices) != 0 || i != len(chunks)-1 {
					t.Errorf("usage chunk %d has choices or is not last: %s", i, events[i].data)
				}
				c.Usage.check(t, w)
			}
			for _, ch := range c.Choices {
				if d := ch.Delta.Content; d != nil && *d != "" {
					contents++
					got.WriteString(*d)
					if stop >= 0 {
						t.Errorf("content after finish_reason: %s", events[i].data)
					}
				}
				if ch.FinishReason != nil {
					if *ch.FinishReason != "stop" || stop >= 0 {
						t.Errorf("finish_reason %q (twice: %v)", *ch.FinishReason, stop >= 0)
					}
					stop = i
				}
			}
		}
		if contents != w.out || got.String() != text(w.out) || stop < 0 {
			t.Errorf("%d content chunks %q, want %d %q, ending with finish_reason stop", contents, got.String(), w.out, text(w.out))
		}
		if includeUsage != (usages == 1) || usages > 1 {
			t.Errorf("%d usage chunks with include_usage %v", usages, includeUsage)
		}
	}
}

type responsesUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

func (u responsesUsage) check(t *testing.T, w want) {
	t.Helper()
	if u.InputTokens != w.in || u.OutputTokens != w.out || u.TotalTokens != w.in+w.out {
		t.Errorf("usage %+v, want input %d output %d total %d", u, w.in, w.out, w.in+w.out)
	}
}

// responseObject is a Responses API response object.
type responseObject struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Status string `json:"status"`
	Model  string `json:"model"`
	Output []struct {
		Type    string `json:"type"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage *responsesUsage `json:"usage"`
}

func (r responseObject) check(t *testing.T, w want, status string) {
	t.Helper()
	if r.Object != "response" || r.Status != status || r.Model != w.model || r.ID == "" {
		t.Errorf("response %s %s %s, want a %s response of %s", r.Object, r.Status, r.Model, status, w.model)
	}
	if status != "completed" {
		if r.Usage != nil || len(r.Output) != 0 {
			t.Errorf("a response in progress with usage or output")
		}
		return
	}
	if len(r.Output) != 1 || r.Output[0].Type != "message" || len(r.Output[0].Content) != 1 ||
		r.Output[0].Content[0].Type != "output_text" || r.Output[0].Content[0].Text != text(w.out) {
		t.Errorf("output %+v, want one message with %q", r.Output, text(w.out))
	}
	if r.Usage == nil {
		t.Fatalf("a completed response without usage")
	}
	r.Usage.check(t, w)
}

func checkResponses(t *testing.T, body []byte, w want) {
	var r responseObject
	decodeStrict(t, string(body), &r)
	r.check(t, w, "completed")
}

func checkResponsesStream(t *testing.T, body []byte, w want) {
	names := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for i := 0; i < w.out; i++ {
		names = append(names, "response.output_text.delta")
	}
	names = append(names, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
	events := parseSSE(t, body)
	if len(events) != len(names) {
		t.Fatalf("%d events, want %d: %v", len(events), len(names), events)
	}
	var got strings.Builder
	for i, ev := range events {
		var e struct {
			Type     string          `json:"type"`
			Seq      int             `json:"sequence_number"`
			Delta    string          `json:"delta"`
			Text     *string         `json:"text"`
			Response *responseObject `json:"response"`
		}
		decodeStrict(t, ev.data, &e)
		if ev.name != names[i] || e.Type != ev.name || e.Seq != i {
			t.Errorf("event %d: %s with type %s and sequence_number %d, want %s", i, ev.name, e.Type, e.Seq, names[i])
		}
		switch ev.name {
		case "response.created", "response.in_progress":
			e.Response.check(t, w, "in_progress")
		case "response.output_text.delta":
			got.WriteString(e.Delta)
		case "response.output_text.done":
			if e.Text == nil || *e.Text != text(w.out) {
				t.Errorf("output_text.done %s, want text %q", ev.data, text(w.out))
			}
		case "response.completed":
			e.Response.check(t, w, "completed")
		}
	}
	if got.String() != text(w.out) {
		t.Errorf("deltas %q, want %q", got.String(), text(w.out))
	}
}

type anthropicUsage struct {
	InputTokens  *int `json:"input_tokens"`
	OutputTokens *int `json:"output_tokens"`
}

func checkMessages(t *testing.T, body []byte, w want) {
	var m struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		Role       string `json:"role"`
		Model      string `json:"model"`
		StopReason string `json:"stop_reason"`
		Content    []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		Usage anthropicUsage `json:"usage"`
	}
	decodeStrict(t, string(body), &m)
	if m.Type != "message" || m.Role != "assistant" || m.Model != w.model || m.StopReason != "end_turn" || m.ID == "" {
		t.Errorf("not an end_turn message of %s: %s", w.model, body)
	}
	if len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text != text(w.out) {
		t.Errorf("content %+v, want one text block %q", m.Content, text(w.out))
	}
	if u := m.Usage; u.InputTokens == nil || *u.InputTokens != w.in || u.OutputTokens == nil || *u.OutputTokens != w.out {
		t.Errorf("usage %s, want input %d output %d", body, w.in, w.out)
	}
}

func checkMessagesStream(t *testing.T, body []byte, w want) {
	names := []string{"message_start", "content_block_start", "ping"}
	for i := 0; i < w.out; i++ {
		names = append(names, "content_block_delta")
	}
	names = append(names, "content_block_stop", "message_delta", "message_stop")
	events := parseSSE(t, body)
	if len(events) != len(names) {
		t.Fatalf("%d events, want %d: %v", len(events), len(names), events)
	}
	var got strings.Builder
	for i, ev := range events {
		var e struct {
			Type    string `json:"type"`
			Message *struct {
				Model   string          `json:"model"`
				Content []any           `json:"content"`
				Usage   *anthropicUsage `json:"usage"`
			} `json:"message"`
			Delta *struct {
				Type       string `json:"type"`
				Text       string `json:"text"`
				StopReason string `json:"stop_reason"`
			} `json:"delta"`
			Usage *anthropicUsage `json:"usage"`
		}
		decodeStrict(t, ev.data, &e)
		if ev.name != names[i] || e.Type != ev.name {
			t.Errorf("event %d: %s with type %s, want %s", i, ev.name, e.Type, names[i])
		}
		switch ev.name {
		case "message_start":
			// The collector takes the input count from here.
			if m := e.Message; m == nil || m.Model != w.model || len(m.Content) != 0 || m.Usage == nil ||
				m.Usage.InputTokens == nil || *m.Usage.InputTokens != w.in {
				t.Errorf("message_start %s, want model %s, input_tokens %d", ev.data, w.model, w.in)
			}
		case "content_block_delta":
			if e.Delta == nil || e.Delta.Type != "text_delta" {
				t.Errorf("delta %s, want a text_delta", ev.data)
			} else {
				got.WriteString(e.Delta.Text)
			}
		case "message_delta":
			// And the output count from here.
			if e.Delta == nil || e.Delta.StopReason != "end_turn" || e.Usage == nil ||
				e.Usage.OutputTokens == nil || *e.Usage.OutputTokens != w.out || e.Usage.InputTokens != nil {
				t.Errorf("message_delta %s, want end_turn and output_tokens %d", ev.data, w.out)
			}
		}
	}
	if got.String() != text(w.out) {
		t.Errorf("deltas %q, want %q", got.String(), text(w.out))
	}
}

// checkSpeech: the body is Audio's, for the chunk=100 of TestEndpoints.
func checkSpeech(t *testing.T, body []byte, w want) {
	if want := mock.Audio(w.out, 100); string(body) != string(want) {
		t.Errorf("audio of %d bytes differs from Audio(%d, 100), %d bytes", len(body), w.out, len(want))
	}
}

func TestDefaults(t *testing.T) {
	s, url := start(t, mock.Options{})
	r := post(t, url+"/v1/chat/completions", `{"stream":true}`)
	checkChatStream(false)(t, r.body, want{model: "mock-1", in: 1, out: mock.DefaultTokens})
	tr := truth(t, s, r)
	if tr.TTFTUs < mock.DefaultTTFT.Microseconds() {
		t.Errorf("time to first token %d µs, less than the default %s", tr.TTFTUs, mock.DefaultTTFT)
	}
	if d, least := since(tr.FirstTokenUnixNs, tr.DoneUnixNs), (mock.DefaultTokens-1)*mock.DefaultGap; d < least {
		t.Errorf("tokens streamed in %s, less than %d default gaps (%s)", d, mock.DefaultTokens-1, least)
	}
}

func TestRouting(t *testing.T) {
	s, url := start(t, fast)
	tests := []struct {
		desc, method, path string
		status             int
	}{
		{desc: "health", method: http.MethodGet, path: "/healthz", status: http.StatusOK},
		{desc: "unknown path", method: http.MethodPost, path: "/v1/embeddings", status: http.StatusNotFound},
		{desc: "wrong method", method: http.MethodGet, path: "/v1/chat/completions", status: http.StatusNotFound},
		{desc: "truth of nothing", method: http.MethodGet, path: "/mock/truth/never-seen", status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r, err := send(context.Background(), tt.method, url+tt.path, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.resp.StatusCode != tt.status || r.resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s, want %d JSON", r.resp.StatusCode, r.resp.Header.Get("Content-Type"), tt.status)
			}
			if tt.status == http.StatusNotFound {
				checkOpenAIError(t, r.body, "invalid_request_error")
			}
			if r.id != "" {
				if _, ok := s.Truth(r.id); ok {
					t.Errorf("a truth for %s %s", tt.method, tt.path)
				}
			}
		})
	}
}

// timeout bounds the waits of the timing tests: generous, since they only
// check lower bounds.
const timeout = 10 * time.Second
