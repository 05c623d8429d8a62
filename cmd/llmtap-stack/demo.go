package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// The demo's tokens, and the key whose tenant may send 2 requests a
// minute: its third gets a 429.
const (
	demoIngest   = "demo-token"
	demoRead     = "demo-read"
	demoAdmin    = "demo-admin"
	demoSmallKey = "sk-team-small"
)

// demo starts the stack (traefik/demo.yml: routes openai, anthropic and
// tts, each with limits) in base/demo, sends a short mixed workload, shows
// what ClickHouse holds, and keeps the stack up until ctx ends (Ctrl-C),
// then stops it in order. Each demo starts with an empty ClickHouse.
func demo(ctx context.Context, root, base string, getenv env, out io.Writer) error {
	run := filepath.Join(base, "demo")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(run, "demo.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("a demo already runs in %s; Ctrl-C it first", run)
	}
	entries, err := os.ReadDir(run)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "demo.lock" {
			if err := os.RemoveAll(filepath.Join(run, e.Name())); err != nil {
				return err
			}
		}
	}

	small := llmtap.KeyTenant("Bearer " + demoSmallKey)
	l := &stack.Local{Root: root, Run: run, Ports: stack.DefaultPorts(), Mock: true,
		MockArgs: []string{"-ttft", "100ms", "-gap", "20ms", "-tokens", "16"}}
	if err := l.Ports.FromEnv(getenv); err != nil {
		return err
	}
	l.Collector = stack.CollectorConfig{
		IngestToken: demoIngest, ReadToken: demoRead, AdminToken: demoAdmin, ShutdownTimeout: "8s",
		Limits: &stack.CollectorLimits{Tenants: map[string]json.RawMessage{
			small: json.RawMessage(`{"requests":{"limit":2,"period":"1m"}}`),
		}},
	}
	mockURL := fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Mock)
	if l.Dynamic, err = stack.Render(filepath.Join(root, "traefik", "demo.yml"), map[string]string{
		"MOCK":      mockURL,
		"COLLECTOR": fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Collector),
		"TOKEN":     demoIngest,
	}); err != nil {
		return err
	}
	p := &progress{name: "demo", out: out, root: root}
	s, err := start(ctx, p, l, map[string]string{filepath.Join(base, "up"): "the stack of `make up` (`make down` stops it)"})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintf(out, "[demo] stopping the stack ... ")
		if err := stopAll(s); err != nil {
			fmt.Fprintf(out, "%v\n", err)
			return
		}
		var names []string
		for _, part := range stack.StopOrder() {
			for _, q := range s.Parts() {
				if q.Name() == part {
					names = append(names, part)
				}
			}
		}
		fmt.Fprintf(out, "stopped %s\n", strings.Join(names, ", "))
	}()

	ch := &stack.ClickHouse{TCPPort: l.Ports.ClickHouseTCP, HTTPPort: l.Ports.ClickHouseHTTP}
	w := &workload{out: out, base: fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Traefik), dir: filepath.Join(run, "workload")}
	if err := w.run(ctx, p); err != nil {
		return err
	}
	summary(ctx, p, ch, w.sent, filepath.Join(run, stack.PartCollector, "collector.log"))
	spendPerTenant(ctx, p, fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Collector))

	id, ttft := firstStream(ctx, ch)
	if truth := mockTTFT(ctx, mockURL, id); truth >= 0 {
		fmt.Fprintln(out)
		p.say("request %s: TTFT %s ms at the proxy, %d ms at the mock (/mock/truth)", id, ttft, truth/1000)
	}
	fmt.Fprintln(out)
	p.say("the stack is up; Ctrl-C stops it:")
	addresses(p, l, mockURL+" (the mock; routes: "+p.rel(filepath.Join(run, stack.PartTraefik, "dynamic.yml"))+")", small, demoAdmin, id)
	if err := l.WriteEnv("demo", mockURL, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, `  try it:
    curl -N %s/v1/chat/completions -H 'Authorization: Bearer sk-me' -H 'X-Mock-Ttft: 300ms' \
      -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}'
    clickhouse-client --port %d -q 'SELECT * FROM llmtap.requests FINAL FORMAT Vertical'
`, w.base, l.Ports.ClickHouseTCP)
	<-ctx.Done()
	return nil
}

// workload sends the demo's requests through Traefik, one line each.
type workload struct {
	out  io.Writer
	base string
	dir  string // the answers, one file each
	sent int
}

// demoRequest is one request of the workload.
type demoRequest struct {
	route, what, who, file, path string
	headers                      map[string]string
	body                         string
	note                         string
	timeout                      time.Duration // the client leaves then
}

func (w *workload) run(ctx context.Context, p *progress) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	chat := `"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the demo"}]`
	sse := `"stream":true,"stream_options":{"include_usage":true}`
	claude := `"model":"claude-3-5-haiku-latest","max_tokens":256,"messages":[{"role":"user","content":"Say hello to the demo"}]`
	bearer := func(key string, more ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + key}
		for i := 0; i+1 < len(more); i += 2 {
			h[more[i]] = more[i+1]
		}
		return h
	}
	const chatPath = "/v1/chat/completions"
	reqs := []demoRequest{
		{"openai", "chat, SSE + usage", "key sk-team-a", "01-chat.sse", chatPath, bearer("sk-team-a", "X-Mock-Ttft", "120ms"), "{" + chat + "," + sse + "}", "", 0},
		{"openai", "chat, SSE + usage", "key sk-team-b", "02-chat.sse", chatPath, bearer("sk-team-b", "X-Mock-Ttft", "250ms"), "{" + chat + "," + sse + "}", "", 0},
		{"openai", "chat, SSE + usage", "key sk-demo-alice", "03-chat.sse", chatPath, bearer("sk-demo-alice-0123456789"), "{" + chat + "," + sse + "}", "", 0},
		{"openai", "chat, JSON", "key sk-team-a", "04-chat.json", chatPath, bearer("sk-team-a"), "{" + chat + "}", "", 0},
		{"openai", "responses, SSE", "key sk-team-b", "05-responses.sse", "/v1/responses", bearer("sk-team-b", "X-Mock-Ttft", "180ms"),
			`{"model":"gpt-4o-mini","input":"Say hello to the demo","stream":true}`, "", 0},
		{"anthropic", "messages, SSE", "key sk-ant-demo-bob", "06-messages.sse", "/v1/messages",
			map[string]string{"x-api-key": "sk-ant-demo-bob-0123456789", "anthropic-version": "2023-06-01", "X-Mock-Ttft": "150ms"},
			"{" + claude + `,"stream":true}`, "", 0},
		{"anthropic", "messages, SSE", "key sk-team-a", "07-messages.sse", "/v1/messages", bearer("sk-team-a", "anthropic-version", "2023-06-01"),
			"{" + claude + `,"stream":true}`, "", 0},
		{"tts", "speech, WAV stream", "key sk-team-a", "08-speech.wav", "/v1/audio/speech", bearer("sk-team-a", "X-Mock-Ttft", "200ms", "X-Mock-Tokens", "8"),
			`{"model":"tts-1","voice":"alloy","input":"Hello from the llmtap demo","response_format":"wav"}`, "", 0},
		{"tts", "speech, WAV stream", "key sk-team-b", "09-speech.wav", "/v1/audio/speech", bearer("sk-team-b", "X-Mock-Tokens", "8"),
			`{"model":"tts-1","voice":"alloy","input":"Hello again"}`, "", 0},
	}
	for i := 1; i <= 3; i++ {
		note := ""
		if i == 3 {
			note = "   (2 a minute)"
		}
		reqs = append(reqs, demoRequest{"openai", fmt.Sprintf("chat, JSON (%d of 3)", i), "key " + demoSmallKey,
			fmt.Sprintf("1%d-limited.json", i-1), chatPath, bearer(demoSmallKey), "{" + chat + "}", note, 0})
	}
	reqs = append(reqs,
		demoRequest{"openai", "chat, upstream error", "key sk-team-b", "13-error.json", chatPath, bearer("sk-team-b", "X-Mock-Fail", "503"),
			"{" + chat + "," + sse + "}", "   (X-Mock-Fail: 503)", 0},
		demoRequest{"openai", "chat, SSE, client leaves", "key sk-team-a", "14-cancel.sse", chatPath, bearer("sk-team-a", "X-Mock-Ttft", "1s"),
			"{" + chat + "," + sse + "}", "   (client left at 0.2 s)", 200 * time.Millisecond},
		demoRequest{"openai", "chat, SSE, no usage asked", "key sk-team-b", "15-no-usage.sse", chatPath, bearer("sk-team-b"),
			"{" + chat + `,"stream":true}`, "   (usage estimated)", 0},
	)

	p.say("workload through Traefik (answers in %s/):", p.rel(w.dir))
	fmt.Fprintf(w.out, "  %-9s  %-26s  %-19s  %s  %s\n", "route", "request", "tenant/key", "got", "time")
	var limited []string
	for _, r := range reqs {
		if ctx.Err() != nil {
			return exitCode(0)
		}
		code := w.send(ctx, r)
		if strings.Contains(r.what, " of 3)") {
			limited = append(limited, code)
		}
	}
	if got := strings.Join(limited, " "); got != "200 200 429" {
		p.say("warning: key %s got %s, not 200 200 429", demoSmallKey, got)
	}
	return nil
}

// send sends one request, saves the answer and prints what the client saw.
func (w *workload) send(ctx context.Context, r demoRequest) string {
	w.sent++
	timeout := r.timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code := "000"
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.base+r.path, strings.NewReader(r.body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		for k, v := range r.headers {
			req.Header.Set(k, v)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			code = strconv.Itoa(resp.StatusCode)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = os.WriteFile(filepath.Join(w.dir, r.file), body, 0o644)
		}
	}
	fmt.Fprintf(w.out, "  %-9s  %-26s  %-19s  %3s  %5.2f s%s\n", r.route, r.what, r.who, code, time.Since(t0).Seconds(), r.note)
	return code
}

// summary waits for the records to reach ClickHouse and shows them, per
// route and one by one.
func summary(ctx context.Context, p *progress, ch *stack.ClickHouse, sent int, collectorLog string) {
	records := func() int {
		n, err := ch.Query(ctx, "SELECT count() FROM llmtap.requests FINAL")
		if err != nil {
			return 0
		}
		v, _ := strconv.Atoi(n)
		return v
	}
	// The plugin sends every second, the collector writes every second:
	// poll, within a bound, and show what there is if some are missing.
	fmt.Fprintf(p.out, "[demo] waiting for the %d records to reach ClickHouse ... ", sent)
	t0 := time.Now()
	for records() < sent && time.Since(t0) < 20*time.Second && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if n := records(); n >= sent {
		fmt.Fprintf(p.out, "ok (%.1f s)\n", time.Since(t0).Seconds())
	} else {
		fmt.Fprintf(p.out, "only %d after 20 s; see %s\n", n, p.rel(collectorLog))
	}

	fmt.Fprintln(p.out)
	p.say("per route, from ClickHouse (llmtap.requests FINAL; TTFT for streams, TTFA for audio):")
	perRoute, _ := ch.Query(ctx, `SELECT route, count(),
		if(countIf(ttfa_ms IS NOT NULL) > 0, 'TTFA', 'TTFT'),
		quantile(0.5)(ifNull(ttft_ms, ttfa_ms)), quantile(0.95)(ifNull(ttft_ms, ttfa_ms)),
		sum(input_tokens), sum(output_tokens), countIf(error_type != ''),
		sum(ifNull(cost_nanos, 0)), countIf(isNull(cost_nanos) AND isNotNull(output_tokens))
	FROM llmtap.requests FINAL GROUP BY route ORDER BY route FORMAT TSV`)
	fmt.Fprintf(p.out, "  %-9s  %8s  %-6s  %7s  %7s  %9s  %6s  %6s  %12s  %8s\n", "route", "requests", "metric", "p50", "p95", "tokens in", "out", "errors", "cost", "unpriced")
	for _, line := range lines(perRoute) {
		f := strings.Split(line, "\t")
		if len(f) < 10 {
			continue
		}
		fmt.Fprintf(p.out, "  %-9s  %8s  %-6s  %7s  %7s  %9s  %6s  %6s  %12s  %8s\n", f[0], f[1], f[2], ms(f[3]), ms(f[4]), num(f[5]), num(f[6]), f[7], usd(f[8]), f[9])
	}
	errs, _ := ch.Query(ctx, `SELECT route, error_type, count() FROM llmtap.requests FINAL
		WHERE error_type != '' GROUP BY route, error_type ORDER BY route, error_type FORMAT TSV`)
	byRoute := map[string][]string{}
	var order []string
	for _, line := range lines(errs) {
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			continue
		}
		if _, ok := byRoute[f[0]]; !ok {
			order = append(order, f[0])
		}
		byRoute[f[0]] = append(byRoute[f[0]], f[1]+" "+f[2])
	}
	for _, route := range order {
		fmt.Fprintf(p.out, "  errors of %s: %s\n", route, strings.Join(byRoute[route], ", "))
	}

	fmt.Fprintln(p.out)
	p.say("the requests, oldest first (times in ms; first: TTFT or TTFA; tokens: in/out, and where they come from):")
	table, _ := ch.Query(ctx, `SELECT route, tenant, status, kind, error_type AS error,
		ttfb_ms AS ttfb, multiIf(ttft_ms IS NOT NULL, concat('ttft ', toString(ttft_ms)),
			ttfa_ms IS NOT NULL, concat('ttfa ', toString(ttfa_ms)), '') AS first,
		duration_ms AS took,
		concat(ifNull(toString(input_tokens), '-'), '/', ifNull(toString(output_tokens), '-')) AS tokens,
		usage_source AS usage
	FROM llmtap.requests FINAL ORDER BY start, start_ms, request_id FORMAT PrettyCompactNoEscapes`)
	for _, line := range lines(table) {
		fmt.Fprintf(p.out, "  %s\n", line)
	}
}

// spendPerTenant shows the collector's spend report by tenant
// (GET /v1/spend, admin token), as a team would pull it for chargeback.
func spendPerTenant(ctx context.Context, p *progress, collector string) {
	fmt.Fprintln(p.out)
	p.say("spend per tenant, from the collector's report (GET /v1/spend?group_by=tenant):")
	from := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, collector+"/v1/spend?group_by=tenant&from="+from, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+demoAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(p.out, "  %v\n", err)
		return
	}
	defer resp.Body.Close()
	var rep struct {
		Groups []struct {
			Group     map[string]string `json:"group"`
			Requests  int64             `json:"requests"`
			CostNanos int64             `json:"cost_nanos"`
			Unpriced  int64             `json:"unpriced_requests"`
		} `json:"groups"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rep) != nil {
		fmt.Fprintf(p.out, "  the report answered %d\n", resp.StatusCode)
		return
	}
	fmt.Fprintf(p.out, "  %-24s  %8s  %12s  %8s\n", "tenant", "requests", "cost", "unpriced")
	for _, g := range rep.Groups {
		fmt.Fprintf(p.out, "  %-24s  %8d  %12s  %8d\n", g.Group["tenant"], g.Requests, usd(strconv.FormatInt(g.CostNanos, 10)), g.Unpriced)
	}
}

// usd formats nano-dollars as US dollars to the millionth.
func usd(nanos string) string {
	n, err := strconv.ParseInt(nanos, 10, 64)
	if err != nil {
		return "-"
	}
	return fmt.Sprintf("$%.6f", float64(n)/1e9)
}

// firstStream is the first OpenAI stream with a TTFT: its id and TTFT.
func firstStream(ctx context.Context, ch *stack.ClickHouse) (string, string) {
	row, err := ch.Query(ctx, `SELECT request_id, ttft_ms FROM llmtap.requests FINAL
		WHERE route = 'openai' AND kind = 'sse' AND error_type = '' AND ttft_ms IS NOT NULL
		ORDER BY start, start_ms LIMIT 1 FORMAT TSV`)
	id, ttft, ok := strings.Cut(row, "\t")
	if err != nil || !ok {
		return "", ""
	}
	return id, ttft
}

// mockTTFT is the request's TTFT in µs by the mock's own clock, -1 when
// unknown.
func mockTTFT(ctx context.Context, mockURL, id string) int64 {
	if id == "" {
		return -1
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mockURL+"/mock/truth/"+id, nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var truth struct {
		TTFTus *int64 `json:"ttft_us"`
	}
	if json.NewDecoder(resp.Body).Decode(&truth) != nil || truth.TTFTus == nil {
		return -1
	}
	return *truth.TTFTus
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// ms formats a TSV number of milliseconds; \N and nan are "-".
func ms(v string) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f {
		return "-"
	}
	return fmt.Sprintf("%d ms", int64(f+0.5))
}

func num(v string) string {
	if v == `\N` || v == "" {
		return "-"
	}
	return v
}
