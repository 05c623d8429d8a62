//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/llmtap/llmtap/collector/internal/otlptest"
	"github.com/llmtap/llmtap/internal/stack"
	"github.com/llmtap/llmtap/mock"
)

// The whole path against the mock LLM upstream: Traefik with the plugin,
// the collector, ClickHouse and Redis, each a real process or server. The
// mock knows when it really sent the first token or audio byte, so the
// collector's TTFT and TTFA are compared with the truth.

// timingRounding is what rounding the stored time to a whole millisecond
// may move it by.
const timingRounding = time.Millisecond

const wholePathRouters = `
http:
  routers:
    openai:
      rule: Host(` + "`openai.test`" + `)
      service: mock
      middlewares: [openai]
    anthropic:
      rule: Host(` + "`anthropic.test`" + `)
      service: mock
      middlewares: [anthropic]
    tts:
      rule: Host(` + "`tts.test`" + `)
      service: mock
      middlewares: [tts]
    fallback:
      rule: Host(` + "`fallback.test`" + `)
      service: mock
      middlewares: [fallback]
  middlewares:
    openai:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: openai, tenantHeader: X-Tenant-ID, flushInterval: 50ms, limits: {enabled: true}}
    anthropic:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: anthropic, tenantHeader: X-Tenant-ID, flushInterval: 50ms, limits: {enabled: true}}
    tts:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: tts, tenantHeader: X-Tenant-ID, flushInterval: 50ms, limits: {enabled: true}}
    # Its first upstream refuses connections: every request falls back,
    # and the breaker opens and probes again and again.
    fallback:
      plugin:
        llmtap:
          collectorURL: %[1]q
          collectorToken: it-token
          tenantHeader: X-Tenant-ID
          flushInterval: 50ms
          upstreams: [{name: down, url: %[3]q}, {name: mock, url: %[2]q}]
          fallback: {breaker: {failures: 2, window: 1m, cooldown: 1s}}
  serversTransports:
    short:
      forwardingTimeouts:
        responseHeaderTimeout: 1s
  services:
    mock:
      loadBalancer:
        serversTransport: short
        servers:
          - url: %[2]q
`

// refusing is a URL where nothing listens.
func refusing(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

type wholePath struct {
	*rig
	mock *mock.Server
	otlp *otlptest.Receiver // where the collector exports its spans
}

func startWholePath(t *testing.T) *wholePath {
	t.Helper()
	m := mock.New(mock.Options{TTFT: 80 * time.Millisecond, Gap: 40 * time.Millisecond, Tokens: 6})
	up := httptest.NewServer(m)
	t.Cleanup(up.Close)
	otlp := otlptest.HTTP(t)
	s := startStack(t, stackOptions{
		// Limits are on for every route; only the tenants "small" (one
		// request an hour) and "budget" (a spend budget) have any.
		collector: func(c *stack.CollectorConfig, redisAddr string) {
			c.Redis = &stack.CollectorRedis{Addr: redisAddr}
			c.Limits = &stack.CollectorLimits{Tenants: map[string]json.RawMessage{
				"small":  json.RawMessage(`{"requests":{"limit":1,"period":"1h"}}`),
				"budget": json.RawMessage(`{"spend":{"limit":1000,"period":"1h"}}`),
			}}
			// Secrets are masked everywhere (the default); e-mail
			// addresses on the anthropic route only.
			c.Redaction = map[string]interface{}{"routes": map[string]interface{}{"anthropic": map[string]interface{}{"pii": []string{"email"}}}}
			c.OTel = map[string]interface{}{"endpoint": otlp.URL}
		},
		dynamic: func(collectorURL string) string {
			return fmt.Sprintf(wholePathRouters, collectorURL, up.URL, refusing(t))
		},
		readyHost: "openai.test",
		readyPath: "/healthz",
	})
	return &wholePath{rig: s, mock: m, otlp: otlp}
}

// event is one SSE event as the client received it.
type event struct {
	at   time.Duration
	data string
}

// send posts body to path through Traefik for host, with mock knobs as
// headers, and returns the response (body unread) and when it was sent.
func (w *wholePath) send(t *testing.T, ctx context.Context, host, path, body string, knobs map[string]string) (*http.Response, time.Time) {
	t.Helper()
	h := http.Header{}
	for k, v := range knobs {
		h.Set("X-Mock-"+k, v)
	}
	return w.sendWith(t, ctx, host, path, body, h)
}

// sendWith posts body to path through Traefik for host, with the test's
// API key and the headers h, and returns the response and when it was
// sent.
func (w *wholePath) sendWith(t *testing.T, ctx context.Context, host, path, body string, h http.Header) (*http.Response, time.Time) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.entry+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-it-key")
	for k, v := range h {
		req.Header[k] = v
	}
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, began
}

// events reads an SSE body to its end, noting when each data line arrived.
func events(t *testing.T, body io.Reader, began time.Time) []event {
	t.Helper()
	var out []event
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, event{at: time.Since(began), data: data})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// truth waits for the mock's account of a request.
func (w *wholePath) truth(t *testing.T, id string, done func(mock.Truth) bool) mock.Truth {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr, ok := w.mock.Truth(id)
		if ok && done(tr) {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mock has no finished account of request %s: %+v", id, tr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func finished(tr mock.Truth) bool { return tr.DoneUnixNs > 0 }

// rows counts a request's rows in ClickHouse.
func (w *wholePath) rows(t *testing.T, id string) int {
	t.Helper()
	out := strings.TrimSpace(w.collector.query(t, "SELECT count() FROM llmtap_it.requests FINAL WHERE request_id = '"+id+"'"))
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("count of rows: %q", out)
	}
	return n
}

func num(f map[string]any, key string) (int64, bool) {
	v, ok := f[key].(float64)
	return int64(v), ok
}

// checkTiming checks a stored millisecond time against the two clocks
// that bracket it: the plugin starts its clock before the request reaches
// the upstream and stops it after the upstream sent the byte, so the
// stored time is at least the upstream's truth; the client sent before the
// plugin started and read after the plugin wrote, so it is at most what
// the client saw. Both hold however busy the machine is; how far the
// stored time is from the truth (the proxy's own transit, under a
// millisecond on a quiet machine) is logged, and measured by make bench.
func checkTiming(t *testing.T, what string, f map[string]any, key string, truthUs int64, client time.Duration) {
	t.Helper()
	ms, ok := num(f, key)
	if !ok {
		t.Fatalf("%s: no %s in the stored fact %v", what, key, f)
	}
	stored := time.Duration(ms) * time.Millisecond
	truth := time.Duration(truthUs) * time.Microsecond
	t.Logf("%s: stored %s %d ms, the mock's truth %.3f ms (error %+.3f ms), the client saw %.3f ms",
		what, key, ms, float64(truth)/1e6, float64(stored-truth)/1e6, float64(client)/1e6)
	if stored < truth-timingRounding || stored > client+timingRounding {
		t.Errorf("%s: %s %v outside [the upstream's truth %v, what the client saw %v] (± %v of rounding)", what, key, stored, truth, client, timingRounding)
	}
}

// checkComplete checks the one stored row of a request: found through the
// collector API and in ClickHouse, with the status, error class and usage.
func (w *wholePath) checkComplete(t *testing.T, id string, status int, errorType string, tr mock.Truth) map[string]any {
	t.Helper()
	f := w.fact(t, id)
	storedError, _ := f["error_type"].(string) // absent when there is none
	if got, _ := num(f, "status"); got != int64(status) || storedError != errorType {
		t.Errorf("request %s stored with status %v and error %v, want %d and %q", id, f["status"], f["error_type"], status, errorType)
	}
	if n := w.rows(t, id); n != 1 {
		t.Errorf("request %s has %d rows in ClickHouse, want 1", id, n)
	}
	if status < 400 {
		in, _ := num(f, "input_tokens")
		out, _ := num(f, "output_tokens")
		if in != int64(tr.InputTokens) || out != int64(tr.OutputTokens) || tr.OutputTokens == 0 {
			t.Errorf("request %s stored usage %d in / %d out, the mock sent %d / %d", id, in, out, tr.InputTokens, tr.OutputTokens)
		}
	}
	return f
}

// metricSum adds the samples of a metric whose line matches.
func (w *rig) metricSum(t *testing.T, pattern string) float64 {
	t.Helper()
	resp, err := http.Get(w.collector.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(pattern)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") || !re.MatchString(line) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func TestWholePathAgainstTheMock(t *testing.T) {
	w := startWholePath(t)
	ctx := context.Background()
	metricsBefore := map[string]float64{}
	watched := map[string]string{
		"requests":  `^llmtap_requests_total\{`,
		"ttft":      `^gen_ai_server_time_to_first_token_seconds_count\{`,
		"ttfa":      `^llmtap_time_to_first_audio_seconds_count\{`,
		"tokens":    `^llmtap_tokens_total\{.*type="output"`,
		"5xx":       `^llmtap_errors_total\{.*class="upstream_5xx"`,
		"timeout":   `^llmtap_errors_total\{.*class="upstream_timeout"`,
		"cancelled": `^llmtap_errors_total\{.*class="client_cancel"`,
	}
	for k, p := range watched {
		metricsBefore[k] = w.metricSum(t, p)
	}

	streams := []struct {
		name, host, path, body string
		contentEvents          func([]event) []event
	}{
		{"OpenAI chat", "openai.test", "/v1/chat/completions",
			`{"model":"mock-1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"say hello to the test"}]}`,
			func(es []event) []event { return filterData(es, `"content":"tok`) }},
		{"OpenAI Responses", "openai.test", "/v1/responses",
			`{"model":"mock-1","stream":true,"input":"say hello to the test"}`,
			func(es []event) []event { return filterData(es, `"type":"response.output_text.delta"`) }},
		{"Anthropic messages", "anthropic.test", "/v1/messages",
			`{"model":"mock-claude","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"say hello to the test"}]}`,
			func(es []event) []event { return filterData(es, `"type":"content_block_delta"`) }},
	}
	for _, sc := range streams {
		t.Run(sc.name+" streams event by event, TTFT and usage match the mock", func(t *testing.T) {
			resp, began := w.send(t, ctx, sc.host, sc.path, sc.body, nil)
			es := events(t, resp.Body, began)
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			if resp.StatusCode != http.StatusOK || id == "" {
				t.Fatalf("status %d, request id %q", resp.StatusCode, id)
			}
			content := sc.contentEvents(es)
			if len(content) != 6 {
				t.Fatalf("%d content events of %d, want 6", len(content), len(es))
			}
			// The mock waits 40 ms between tokens: each must arrive on its own.
			for i := 1; i < len(content); i++ {
				if gap := content[i].at - content[i-1].at; gap < 25*time.Millisecond {
					t.Fatalf("content events %d and %d arrived %v apart: the stream was held back", i-1, i, gap)
				}
			}
			tr := w.truth(t, id, finished)
			f := w.checkComplete(t, id, http.StatusOK, "", tr)
			checkTiming(t, sc.name, f, "ttft_ms", tr.TTFTUs, content[0].at)
		})
	}

	t.Run("secrets masked before storage, e-mail where the route asks, bodies omitted on request", func(t *testing.T) {
		const key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6l"
		const mail = "jane.doe@example.com"
		content := "my key " + key + ", mail " + mail
		for _, tt := range []struct {
			host, path, body string
			omit, mailMasked bool
		}{
			{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock","messages":[{"role":"user","content":"` + content + `"}]}`, false, false},
			{"anthropic.test", "/v1/messages", `{"model":"claude-mock","max_tokens":32,"messages":[{"role":"user","content":"` + content + `"}]}`, false, true},
			{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock","messages":[{"role":"user","content":"` + content + `"}]}`, true, false},
		} {
			h := http.Header{}
			if tt.omit {
				h.Set("X-Llmtap-Omit-Bodies", "1")
			}
			resp, _ := w.sendWith(t, ctx, tt.host, tt.path, tt.body, h)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			tr := w.truth(t, id, finished)
			f := w.checkComplete(t, id, http.StatusOK, "", tr)
			body, _ := f["request_body"].(string)
			switch {
			case tt.omit:
				if body != "" || f["response_body"] != "" || f["bodies_omitted"] != true {
					t.Errorf("%s omitted: stored bodies %q / %q, bodies_omitted %v", tt.host, body, f["response_body"], f["bodies_omitted"])
				}
			case strings.Contains(body, key) || !strings.Contains(body, "[REDACTED:openai_key:"):
				t.Errorf("%s: the key is stored, or not as its marker: %s", tt.host, body)
			case strings.Contains(body, mail) == tt.mailMasked:
				t.Errorf("%s: e-mail masked %v, want %v: %s", tt.host, !strings.Contains(body, mail), tt.mailMasked, body)
			}
		}
	})

	t.Run("each request exported as a GenAI span, joined to the caller's trace", func(t *testing.T) {
		const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		resp, _ := w.sendWith(t, ctx, "openai.test", "/v1/chat/completions?ttft=20ms&gap=5ms&tokens=4",
			`{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			http.Header{"X-Tenant-Id": {"otel-tenant"}, "Traceparent": {"00-" + traceID + "-" + parentID + "-01"}})
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		tr := w.truth(t, id, finished)
		span := w.otlp.Wait(t, "for request "+id, func(s *tracepb.Span) bool { return otlptest.Attrs(s)["llmtap.request_id"] == id })
		if hex.EncodeToString(span.GetTraceId()) != traceID || hex.EncodeToString(span.GetParentSpanId()) != parentID || span.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("span trace %x parent %x kind %v: not joined to the caller's trace as a client span", span.GetTraceId(), span.GetParentSpanId(), span.GetKind())
		}
		a := otlptest.Attrs(span)
		for k, want := range map[string]string{
			"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-mock", "gen_ai.request.stream": "true",
			"gen_ai.usage.input_tokens": strconv.Itoa(tr.InputTokens), "gen_ai.usage.output_tokens": strconv.Itoa(tr.OutputTokens),
			"llmtap.route": "openai", "llmtap.tenant": "otel-tenant", "http.response.status_code": "200",
		} {
			if a[k] != want {
				t.Errorf("span %s = %q, want %q", k, a[k], want)
			}
		}
		if a["gen_ai.response.time_to_first_chunk"] == "" || a["gen_ai.provider.name"] == "" || span.GetName() != "chat gpt-mock" {
			t.Errorf("span %q: time_to_first_chunk %q, provider %q", span.GetName(), a["gen_ai.response.time_to_first_chunk"], a["gen_ai.provider.name"])
		}
	})

	t.Run("OpenAI chat without streaming: usage, no TTFT", func(t *testing.T) {
		resp, _ := w.send(t, ctx, "openai.test", "/v1/chat/completions", `{"model":"mock-1","messages":[{"role":"user","content":"hello"}]}`, nil)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		f := w.checkComplete(t, id, http.StatusOK, "", w.truth(t, id, finished))
		if f["ttft_ms"] != nil || f["kind"] != "json" {
			t.Errorf("a JSON answer stored with ttft %v, kind %v", f["ttft_ms"], f["kind"])
		}
	})

	t.Run("TTS audio is byte-identical, TTFA matches the mock", func(t *testing.T) {
		resp, began := w.send(t, ctx, "tts.test", "/v1/audio/speech", `{"model":"mock-tts","input":"hello there","voice":"alloy"}`,
			map[string]string{"Tokens": "5", "Chunk": "9600"})
		first := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatal(err)
		}
		firstByte := time.Since(began)
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := append(first, rest...)
		if want := mock.Audio(5, 9600); !bytes.Equal(got, want) {
			t.Fatalf("audio: %d bytes, want the mock's %d bytes unchanged", len(got), len(want))
		}
		id := resp.Header.Get("X-Request-Id")
		tr := w.truth(t, id, finished)
		f := w.fact(t, id)
		if got, _ := num(f, "response_bytes"); got != int64(len(mock.Audio(5, 9600))) || f["kind"] != "raw" || w.rows(t, id) != 1 {
			t.Errorf("stored audio response: %v bytes, kind %v", f["response_bytes"], f["kind"])
		}
		checkTiming(t, "TTS", f, "ttfa_ms", tr.TTFAUs, firstByte)
	})

	t.Run("a client that leaves: client_cancel, and the mock sees it", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		resp, _ := w.send(t, cctx, "openai.test", "/v1/chat/completions", `{"model":"mock-1","stream":true}`,
			map[string]string{"Ttft": "20ms", "Gap": "300ms", "Tokens": "20"})
		id := resp.Header.Get("X-Request-Id")
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(line, `"content":"tok`) {
				break
			}
		}
		cancel()
		resp.Body.Close()
		tr := w.truth(t, id, func(tr mock.Truth) bool { return tr.Cancelled })
		f := w.fact(t, id)
		if f["error_type"] != "client_cancel" {
			t.Errorf("stored error %v, want client_cancel", f["error_type"])
		}
		t.Logf("the mock saw the cancellation after %d of 20 tokens", tr.OutputTokens)
	})

	t.Run("an upstream 5xx: upstream_5xx", func(t *testing.T) {
		resp, _ := w.send(t, ctx, "openai.test", "/v1/chat/completions", `{"model":"mock-1"}`, map[string]string{"Fail": "503"})
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", resp.StatusCode)
		}
		id := resp.Header.Get("X-Request-Id")
		w.checkComplete(t, id, http.StatusServiceUnavailable, "upstream_5xx", mock.Truth{})
	})

	t.Run("an upstream that hangs: Traefik's 504, upstream_timeout", func(t *testing.T) {
		resp, _ := w.send(t, ctx, "openai.test", "/v1/chat/completions", `{"model":"mock-1"}`, map[string]string{"Hang": "5s"})
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504 after the 1 s responseHeaderTimeout", resp.StatusCode)
		}
		id := resp.Header.Get("X-Request-Id")
		w.checkComplete(t, id, http.StatusGatewayTimeout, "upstream_timeout", mock.Truth{})
	})

	t.Run("an upstream that breaks off mid-stream: aborted", func(t *testing.T) {
		resp, _ := w.send(t, ctx, "openai.test", "/v1/chat/completions", `{"model":"mock-1","stream":true}`, map[string]string{"Drop": "2"})
		_, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("the client read a complete body from a stream the upstream broke off")
		}
		id := resp.Header.Get("X-Request-Id")
		if tr := w.truth(t, id, finished); !tr.Dropped {
			t.Fatalf("the mock did not drop the connection: %+v", tr)
		}
		if f := w.fact(t, id); f["error_type"] != "aborted" {
			t.Errorf("stored error %v, want aborted", f["error_type"])
		}
	})

	t.Run("the metrics moved", func(t *testing.T) {
		want := map[string]float64{"requests": 9, "ttft": 3, "ttfa": 1, "tokens": 3 * 6, "5xx": 1, "timeout": 1, "cancelled": 1}
		for k, p := range watched {
			if got := w.metricSum(t, p) - metricsBefore[k]; got < want[k] {
				t.Errorf("%s (%s) rose by %v, want at least %v", k, p, got, want[k])
			}
		}
	})
}

// filterData keeps the events whose data contains s.
func filterData(es []event, s string) []event {
	var out []event
	for _, e := range es {
		if strings.Contains(e.data, s) {
			out = append(out, e)
		}
	}
	return out
}
