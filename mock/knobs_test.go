package mock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/mock"
)

// streamCases are the streamed forms, with the bytes that start their
// first content (the first audio byte for speech).
var streamCases = []struct {
	desc, path, body, first string
}{
	{desc: "chat", path: "/v1/chat/completions", body: `{"stream":true}`, first: `"content":"tok0`},
	{desc: "responses", path: "/v1/responses", body: `{"stream":true}`, first: "event: response.output_text.delta"},
	{desc: "messages", path: "/v1/messages", body: `{"stream":true}`, first: "event: content_block_delta"},
	{desc: "speech", path: "/v1/audio/speech", body: `{"input":"hi"}`, first: "RIFF"},
}

func TestTTFTAndGap(t *testing.T) {
	const ttft, gap, tokens = 150 * time.Millisecond, 30 * time.Millisecond, 3
	s, url := start(t, fast)
	for _, tt := range streamCases {
		t.Run(tt.desc, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, url+tt.path+"?tokens=3", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Mock-Ttft", ttft.String())
			req.Header.Set("X-Mock-Gap", gap.String())
			begin := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// The client sees the first content no sooner than the knob says.
			var got []byte
			buf := make([]byte, 512)
			for !bytes.Contains(got, []byte(tt.first)) {
				n, err := resp.Body.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("%v before the first content; got %q", err, got)
				}
			}
			if d := time.Since(begin); d < ttft {
				t.Errorf("first content after %s, before the ttft knob's %s", d, ttft)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatal(err)
			}

			tr, ok := s.Truth(resp.Header.Get(mock.HeaderRequestID))
			if !ok {
				t.Fatal("no truth")
			}
			first, firstAt := tr.TTFTUs, tr.FirstTokenUnixNs
			if tt.path == "/v1/audio/speech" {
				first, firstAt = tr.TTFAUs, tr.FirstByteUnixNs
			}
			if first < ttft.Microseconds() || first > timeout.Microseconds() {
				t.Errorf("truth: first token (audio byte) after %d µs, want at least the ttft knob's %s", first, ttft)
			}
			if d := since(firstAt, tr.DoneUnixNs); d < (tokens-1)*gap {
				t.Errorf("truth: %d tokens in %s, less than %d gaps of %s", tokens, d, tokens-1, gap)
			}
		})
	}
	// A body that is not streamed waits for the whole generation.
	t.Run("not streamed", func(t *testing.T) {
		begin := time.Now()
		r := post(t, url+"/v1/chat/completions?ttft=150ms&gap=30ms&tokens=3", `{}`)
		if d, least := time.Since(begin), ttft+(tokens-1)*gap; d < least {
			t.Errorf("answered after %s, before ttft + %d gaps (%s)", d, tokens-1, least)
		}
		if tr := truth(t, s, r); tr.TTFTUs != 0 || since(tr.ReceivedUnixNs, tr.FirstByteUnixNs) < ttft {
			t.Errorf("truth %+v: no time to first token, the body after the ttft", tr)
		}
	})
}

func TestKnobPrecedence(t *testing.T) {
	_, url := start(t, fast)
	tests := []struct {
		desc, query, header string
		want                int
	}{
		{desc: "server default", want: fast.Tokens},
		{desc: "query", query: "?tokens=5", want: 5},
		{desc: "header", header: "1", want: 1},
		{desc: "header wins over query", query: "?tokens=5", header: "2", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var h []string
			if tt.header != "" {
				h = []string{"X-Mock-Tokens", tt.header}
			}
			r := post(t, url+"/v1/messages"+tt.query, `{}`, h...)
			checkMessages(t, r.body, want{model: "mock-1", in: 1, out: tt.want})
		})
	}
}

func checkOpenAIError(t *testing.T, body []byte, typ string) {
	t.Helper()
	var e struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	decodeStrict(t, string(body), &e)
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e.Error[k]; !ok || len(e.Error) != 4 {
			t.Fatalf("OpenAI error without %q or with other keys: %s", k, body)
		}
	}
	if string(e.Error["type"]) != `"`+typ+`"` {
		t.Errorf("error type %s, want %s", e.Error["type"], typ)
	}
}

func checkAnthropicError(t *testing.T, body []byte, typ string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	decodeStrict(t, string(body), &e)
	if e.Type != "error" || e.Error.Type != typ || e.Error.Message == "" {
		t.Errorf("Anthropic error %s, want type %s and a message", body, typ)
	}
}

func TestFail(t *testing.T) {
	s, url := start(t, fast)
	tests := []struct {
		desc, path, body string
		status           int
		anthropic        bool
		typ              string
		retryAfter       bool
	}{
		{desc: "chat 500", path: "/v1/chat/completions", body: `{"stream":true}`, status: 500, typ: "server_error"},
		{desc: "chat 503", path: "/v1/chat/completions", body: `{}`, status: 503, typ: "server_error", retryAfter: true},
		{desc: "chat 429", path: "/v1/chat/completions", body: `{"stream":true}`, status: 429, typ: "requests", retryAfter: true},
		{desc: "responses 400", path: "/v1/responses", body: `{"stream":true}`, status: 400, typ: "invalid_request_error"},
		{desc: "speech 502", path: "/v1/audio/speech", body: `{"input":"hi"}`, status: 502, typ: "server_error"},
		{desc: "messages 529", path: "/v1/messages", body: `{"stream":true}`, status: 529, anthropic: true, typ: "overloaded_error"},
		{desc: "messages 500", path: "/v1/messages", body: `{}`, status: 500, anthropic: true, typ: "api_error"},
		{desc: "messages 429", path: "/v1/messages", body: `{}`, status: 429, anthropic: true, typ: "rate_limit_error", retryAfter: true},
		{desc: "messages 401", path: "/v1/messages", body: `{}`, status: 401, anthropic: true, typ: "authentication_error"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			begin := time.Now()
			r := post(t, url+tt.path+"?ttft=5s", tt.body, "X-Mock-Fail", itoa(tt.status))
			if d := time.Since(begin); d > 4*time.Second {
				t.Errorf("the failure took %s: it must come at once, without the ttft", d)
			}
			if r.resp.StatusCode != tt.status || r.resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s, want %d JSON", r.resp.StatusCode, r.resp.Header.Get("Content-Type"), tt.status)
			}
			if (r.resp.Header.Get("Retry-After") != "") != tt.retryAfter {
				t.Errorf("Retry-After %q", r.resp.Header.Get("Retry-After"))
			}
			if tt.anthropic {
				checkAnthropicError(t, r.body, tt.typ)
			} else {
				checkOpenAIError(t, r.body, tt.typ)
			}
			tr := truth(t, s, r)
			checkReceived(t, tr, r.body)
			if tr.Status != tt.status || tr.OutputTokens != 0 || tr.TTFTUs != 0 || tr.TTFAUs != 0 {
				t.Errorf("truth %+v", tr)
			}
		})
	}
}

func TestHang(t *testing.T) {
	s, url := start(t, fast)
	t.Run("forever", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := send(ctx, http.MethodPost, url+"/v1/chat/completions?hang=forever", `{"stream":true}`, mock.HeaderRequestID, "hang-forever")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the client's deadline: nothing, not even headers, before it", err)
		}
		tr, ok := s.Truth("hang-forever") // waits for the handler to notice
		if !ok || !tr.Cancelled || tr.Status != 0 || tr.Bytes != 0 || tr.Dropped {
			t.Errorf("truth %+v (found %v): want cancelled, no status, no bytes", tr, ok)
		}
	})
	t.Run("a while, then the response", func(t *testing.T) {
		const hang, ttft = 200 * time.Millisecond, 50 * time.Millisecond
		begin := time.Now()
		r := post(t, url+"/v1/responses?hang=200ms&ttft=50ms", `{"stream":true}`)
		if d := time.Since(begin); d < hang || r.resp.StatusCode != http.StatusOK || r.readErr != nil {
			t.Fatalf("status %d after %s (read error %v), want 200 after the hang", r.resp.StatusCode, d, r.readErr)
		}
		checkResponsesStream(t, r.body, want{model: "mock-1", in: 1, out: fast.Tokens})
		tr := truth(t, s, r)
		if since(tr.ReceivedUnixNs, tr.FirstByteUnixNs) < hang || tr.TTFTUs < (hang+ttft).Microseconds() || tr.Cancelled {
			t.Errorf("truth %+v: first byte after the hang, first token after hang and ttft", tr)
		}
	})
	t.Run("then fail", func(t *testing.T) {
		begin := time.Now()
		r := post(t, url+"/v1/messages?hang=100ms&fail=504", `{}`)
		if d := time.Since(begin); d < 100*time.Millisecond || r.resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status %d after %s, want 504 after the hang", r.resp.StatusCode, d)
		}
	})
}

func TestDrop(t *testing.T) {
	s, url := start(t, fast) // 4 tokens
	tests := []struct {
		desc, path, body string
		drop             int
		check            func(t *testing.T, body []byte)
	}{
		{
			desc: "chat stream after 2", path: "/v1/chat/completions", body: `{"stream":true}`, drop: 2,
			check: func(t *testing.T, body []byte) {
				if n := strings.Count(string(body), `"content":"tok`); n != 2 || strings.Contains(string(body), "finish_reason\":\"stop") {
					t.Errorf("%d content chunks or a finish, want 2 and no more: %s", n, body)
				}
			},
		},
		{
			desc: "chat stream before the first token", path: "/v1/chat/completions", body: `{"stream":true}`, drop: 0,
			check: func(t *testing.T, body []byte) {
				if events := parseSSE(t, body); len(events) != 1 || !strings.Contains(events[0].data, `"role":"assistant"`) {
					t.Errorf("want the role chunk alone: %s", body)
				}
			},
		},
		{
			desc: "responses after the last token", path: "/v1/responses", body: `{"stream":true}`, drop: 4,
			check: func(t *testing.T, body []byte) {
				events := parseSSE(t, body)
				if last := events[len(events)-1]; len(events) != 8 || last.name != "response.output_text.delta" {
					t.Errorf("%d events ending with %s, want 8 ending with the 4th delta", len(events), last.name)
				}
			},
		},
		{
			desc: "messages after 1", path: "/v1/messages", body: `{"stream":true}`, drop: 1,
			check: func(t *testing.T, body []byte) {
				if n := strings.Count(string(body), "event: content_block_delta"); n != 1 || strings.Contains(string(body), "message_stop") {
					t.Errorf("%d deltas, want 1 and no end: %s", n, body)
				}
			},
		},
		{
			desc: "chat not streamed, cut after 1", path: "/v1/chat/completions", body: `{}`, drop: 1,
			check: func(t *testing.T, body []byte) {
				if !strings.HasSuffix(string(body), `"content":"tok0 `) {
					t.Errorf("body %s, want it cut after the first token", body)
				}
			},
		},
		{
			desc: "speech after 1 chunk", path: "/v1/audio/speech?chunk=64", body: `{}`, drop: 1,
			check: func(t *testing.T, body []byte) {
				if !bytes.Equal(body, mock.Audio(1, 64)) {
					t.Errorf("got %d bytes, want Audio(1, 64)", len(body))
				}
			},
		},
		{
			desc: "speech before any audio", path: "/v1/audio/speech", body: `{}`, drop: 0,
			check: func(t *testing.T, body []byte) {
				if len(body) != 0 {
					t.Errorf("got %d bytes, want none", len(body))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := post(t, url+tt.path, tt.body, "X-Mock-Drop", itoa(tt.drop))
			if r.resp.StatusCode != http.StatusOK || r.readErr == nil {
				t.Fatalf("status %d, read error %v: want 200 and a broken body", r.resp.StatusCode, r.readErr)
			}
			tt.check(t, r.body)
			tr := truth(t, s, r)
			checkReceived(t, tr, r.body)
			if !tr.Dropped || tr.Cancelled || tr.OutputTokens != tt.drop || tr.Status != http.StatusOK {
				t.Errorf("truth %+v, want dropped after %d tokens", tr, tt.drop)
			}
		})
	}
}

func TestBadKnobs(t *testing.T) {
	s, url := start(t, fast)
	tests := []struct {
		desc, path, query, header, value string
		want                             string // in the error message
	}{
		{desc: "ttft not a duration", query: "ttft=soon", want: `ttft="soon"`},
		{desc: "ttft without unit", header: "X-Mock-Ttft", value: "150", want: `ttft="150"`},
		{desc: "negative gap", query: "gap=-1s", want: `gap="-1s": must not be negative`},
		{desc: "tokens not a number", header: "X-Mock-Tokens", value: "many", want: `tokens="many"`},
		{desc: "negative tokens", query: "tokens=-1", want: `tokens="-1"`},
		{desc: "odd chunk", path: "/v1/audio/speech", query: "chunk=101", want: `chunk="101": want an even number`},
		{desc: "zero chunk", path: "/v1/audio/speech", query: "chunk=0", want: `chunk="0"`},
		{desc: "fail 200", query: "fail=200", want: `fail="200"`},
		{desc: "fail 600", header: "X-Mock-Fail", value: "600", want: `fail="600"`},
		{desc: "hang soon", query: "hang=soon", want: `hang="soon": want a duration such as 30s, or forever`},
		{desc: "negative hang", query: "hang=-2s", want: `hang="-2s": must not be negative`},
		{desc: "negative drop", query: "drop=-1", want: `drop="-1"`},
		{desc: "drop past the tokens", query: "tokens=2&drop=3", want: `drop="3": more than the 2 tokens`},
		{desc: "unknown header", header: "X-Mock-Tokns", value: "2", want: "unknown knob header X-Mock-Tokns"},
		{desc: "anthropic shape", path: "/v1/messages", query: "ttft=x", want: `ttft="x"`},
		{desc: "bad header wins over a good query", query: "tokens=2", header: "X-Mock-Tokens", value: "x", want: `tokens="x"`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/v1/chat/completions"
			}
			var h []string
			if tt.header != "" {
				h = []string{tt.header, tt.value}
			}
			r := post(t, url+path+"?"+tt.query, `{"stream":true}`, h...)
			if r.resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.resp.StatusCode, r.body)
			}
			if path == "/v1/messages" {
				checkAnthropicError(t, r.body, "invalid_request_error")
			} else {
				checkOpenAIError(t, r.body, "invalid_request_error")
			}
			var msg struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			decodeStrict(t, string(r.body), &msg)
			if !strings.Contains(msg.Error.Message, tt.want) {
				t.Errorf("message %q does not say %q", msg.Error.Message, tt.want)
			}
			if tr := truth(t, s, r); tr.Status != http.StatusBadRequest {
				t.Errorf("truth status %d", tr.Status)
			}
		})
	}
	t.Run("body not JSON", func(t *testing.T) {
		r := post(t, url+"/v1/chat/completions", `{"messages":`)
		if r.resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.body), "not a JSON request") {
			t.Errorf("status %d: %s", r.resp.StatusCode, r.body)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
