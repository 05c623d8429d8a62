//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/tokens"
	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// countingUpstream streams an OpenAI chat completion with usage (180
// output tokens) and counts the requests that reached it, by tenant.
type countingUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits map[string]int
	// promptTokens, when set, is the prompt_tokens it reports (10 else).
	promptTokens int64
}

const streamOutputTokens = 180

func newCountingUpstream() *countingUpstream {
	u := &countingUpstream{hits: map[string]int{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		u.mu.Lock()
		u.hits[r.Header.Get("X-Tenant-ID")]++
		prompt := u.promptTokens
		u.mu.Unlock()
		if prompt == 0 {
			prompt = 10
		}
		var req struct {
			Model     string `json:"model"`
			MaxTokens int64  `json:"max_tokens"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		model := "it-model"
		if strings.HasPrefix(req.Model, "gpt-") {
			model = req.Model // as OpenAI names its models back
		}
		output := int64(streamOutputTokens)
		if req.MaxTokens > 0 && req.MaxTokens < output {
			output = req.MaxTokens // as a provider caps its answer
		}
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","model":%q,"choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n", model)
			f.Flush()
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","model":%q,"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n", model, prompt, output, prompt+output)
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	return u
}

func (u *countingUpstream) hitsOf(tenant string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[tenant]
}

const limitRouters = `
http:
  routers:
    ready:
      rule: Host(` + "`ready.test`" + `)
      service: up
      middlewares: [plain]
    open:
      rule: Host(` + "`open.test`" + `)
      service: up
      middlewares: [limited-open]
    closed:
      rule: Host(` + "`closed.test`" + `)
      service: up
      middlewares: [limited-closed]
  middlewares:
    plain:
      plugin:
        llmtap:
          collectorURL: %[1]q
          collectorToken: it-token
          tenantHeader: X-Tenant-ID
    limited-open:
      plugin:
        llmtap:
          collectorURL: %[1]q
          collectorToken: it-token
          tenantHeader: X-Tenant-ID
          route: chat
          flushInterval: 50ms
          limits:
            enabled: true
            timeout: 300ms
            failureMode: open
    limited-closed:
      plugin:
        llmtap:
          collectorURL: %[1]q
          collectorToken: it-token
          tenantHeader: X-Tenant-ID
          route: chat
          flushInterval: 50ms
          limits:
            enabled: true
            timeout: 300ms
            failureMode: closed
  services:
    up:
      loadBalancer:
        servers:
          - url: %[2]q
`

func startLimitStack(t *testing.T) (*rig, *countingUpstream) {
	t.Helper()
	up := newCountingUpstream()
	t.Cleanup(up.srv.Close)
	s := startStack(t, stackOptions{
		collector: func(c *stack.CollectorConfig, redisAddr string) {
			c.AdminToken = "it-admin"
			c.Redis = &stack.CollectorRedis{Addr: redisAddr, Timeout: "100ms"}
			c.Limits = &stack.CollectorLimits{
				DefaultReservation: 100,
				PolicyCache:        "100ms",
				Default:            json.RawMessage(`{"requests":{"limit":3,"period":"1h"}}`),
				Tenants: map[string]json.RawMessage{
					"streams": json.RawMessage(`{"tokens":{"limit":1000,"period":"1m","count":"output"}}`),
					"prompts": json.RawMessage(`{"tokens":{"limit":1000,"period":"1m"}}`),
					"shared":  json.RawMessage(`{"tokens":{"limit":10000,"period":"1h"}}`),
					"strict":  json.RawMessage(`{"requests":{"limit":1000,"period":"1h"},"failure_mode":"closed"}`),
					"budget":  json.RawMessage(`{"spend":{"limit":0.001,"period":"1h"}}`),
				},
			}
		},
		dynamic:   func(collectorURL string) string { return fmt.Sprintf(limitRouters, collectorURL, up.srv.URL) },
		readyHost: "ready.test",
		// The last subtest stops the collector.
		expectedErrors: []string{"llmtap: limits not checked", "llmtap: batch not delivered"},
	})
	return s, up
}

// streamBody is the streaming chat completion chat sends.
const streamBody = `{"model":"it-model","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"hi"}]}`

// chat sends a streaming chat completion for tenant through host and reads
// the whole answer.
func (s *rig) chat(t *testing.T, host, tenant string) (*http.Response, []byte, time.Duration) {
	t.Helper()
	return s.chatBody(t, host, tenant, streamBody)
}

// concurrently sends n requests of body for tenant through host, all at
// once, and returns how many got each status, and the body of a 429.
func (s *rig) concurrently(t *testing.T, n int, host, tenant, body string) (statuses map[int]int, denial []byte) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
	)
	statuses = map[int]int{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, answer, _ := s.chatBody(t, host, tenant, body)
			mu.Lock()
			defer mu.Unlock()
			statuses[resp.StatusCode]++
			if resp.StatusCode == http.StatusTooManyRequests && denial == nil {
				denial = answer
			}
		}()
	}
	close(start)
	wg.Wait()
	return statuses, denial
}

// chatBody is chat with another request body.
func (s *rig) chatBody(t *testing.T, host, tenant, body string) (*http.Response, []byte, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.entry+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-ID", tenant)
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b, time.Since(began)
}

// fact waits for a request's fact in ClickHouse, through the collector API.
func (s *rig) fact(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := getAuthorized(s.collector.base + "/v1/requests/" + id)
		if err == nil {
			var f map[string]any
			err = json.NewDecoder(resp.Body).Decode(&f)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && err == nil {
				return f
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("request %s never reached ClickHouse", id)
	return nil
}

func (s *rig) tokensRemaining(t *testing.T, tenant string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.collector.base+"/v1/limits/"+tenant, nil)
	req.Header.Set("Authorization", "Bearer it-read")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Tokens *struct {
			Remaining int64 `json:"remaining"`
		} `json:"tokens"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Tokens == nil {
		t.Fatalf("limit status of %s: %d %v", tenant, resp.StatusCode, err)
	}
	return st.Tokens.Remaining
}

func TestLimitsThroughTraefik(t *testing.T) {
	s, up := startLimitStack(t)

	t.Run("allowed responses carry the quota", func(t *testing.T) {
		resp, body, _ := s.chat(t, "open.test", "a")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "[DONE]") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if resp.Header.Get("RateLimit-Limit") != "3" || resp.Header.Get("RateLimit-Remaining") != "2" || resp.Header.Get("RateLimit-Reset") == "" {
			t.Fatalf("quota headers: %v", resp.Header)
		}
	})

	t.Run("past the burst: 429, and the upstream never sees it", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if resp, _, _ := s.chat(t, "open.test", "a"); resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d within the burst: %d", i+2, resp.StatusCode)
			}
		}
		resp, body, _ := s.chat(t, "open.test", "a")
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("4th request: %d %s", resp.StatusCode, body)
		}
		h := resp.Header
		if h.Get("Retry-After") == "" || h.Get("RateLimit-Limit") != "3" || h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-Reset") == "" ||
			!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("429 headers: %v", h)
		}
		var oa struct {
			Error struct{ Message, Type, Code string } `json:"error"`
		}
		if err := json.Unmarshal(body, &oa); err != nil || oa.Error.Code != "rate_limit_exceeded" || oa.Error.Type != "requests" {
			t.Fatalf("429 body is not an OpenAI rate-limit error: %s", body)
		}
		if n := up.hitsOf("a"); n != 3 {
			t.Fatalf("the upstream saw %d requests of tenant a, want 3", n)
		}
		f := s.fact(t, h.Get("X-Request-Id"))
		if f["error_type"] != "rate_limited" || f["status"] != float64(429) || f["outcome"] != llmtap.OutcomeLimited || f["tenant"] != "a" {
			t.Fatalf("stored fact of the denied request: %v", f)
		}
	})

	t.Run("another tenant is not affected", func(t *testing.T) {
		if resp, _, _ := s.chat(t, "open.test", "b"); resp.StatusCode != http.StatusOK {
			t.Fatalf("tenant b: %d", resp.StatusCode)
		}
	})

	t.Run("50 concurrent streams hold a 1000-token limit", func(t *testing.T) {
		statuses, _ := s.concurrently(t, 50, "open.test", "streams", streamBody)
		admitted := statuses[http.StatusOK]
		used := admitted * streamOutputTokens
		t.Logf("statuses %v: %d tokens used of 1000 (one reservation: 200)", statuses, used)
		if used > 1000+200 || admitted+statuses[http.StatusTooManyRequests] != 50 {
			t.Fatalf("statuses %v: %d tokens used, over the limit plus one reservation", statuses, used)
		}
		if admitted < 1000/200 {
			t.Fatalf("only %d admitted, want at least %d", admitted, 1000/200)
		}
		// The records settle the reservations: what was reserved but not
		// used comes back (20 tokens per stream, plus the refill).
		want := int64(1000 - used)
		deadline := time.Now().Add(10 * time.Second)
		for got := s.tokensRemaining(t, "streams"); got < want; got = s.tokensRemaining(t, "streams") {
			if time.Now().After(deadline) {
				t.Fatalf("tokens remaining %d, want at least %d once the records are settled", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("30 concurrent streams: a total-token quota counts the prompt", func(t *testing.T) {
		// 30 requests of a prompt of about 75 tokens and max_tokens 17
		// against 1,000 tokens a minute: before the prompt was reserved,
		// all 30 were admitted (3,150 tokens used).
		const body = `{"model":"gpt-4o-mini","stream":true,"max_tokens":17,"messages":[` +
			`{"role":"system","content":"You are a careful analyst. Answer in one short sentence, citing the figure you rely on."},` +
			`{"role":"user","content":"The third quarter's revenue rose eleven percent to 4.2 million while costs fell by three percent; ` +
			`the fourth quarter is expected to be flat. Summarize the trend for a board member who has thirty seconds."}]}`
		parsed, err := provider.ParseRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		counter, err := tokens.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		// What OpenAI reports for this prompt: its tokenizer's count with
		// the framing it documents.
		prompt := counter.Prompt(parsed.Model, parsed.Prompt).Tokens
		up.mu.Lock()
		up.promptTokens = prompt
		up.mu.Unlock()
		t.Cleanup(func() { up.mu.Lock(); up.promptTokens = 0; up.mu.Unlock() })

		statuses, _ := s.concurrently(t, 30, "open.test", "prompts", body)
		perRequest := prompt + 17
		admitted := int64(statuses[http.StatusOK])
		t.Logf("prompt %d tokens; statuses %v: %d tokens used of 1000", prompt, statuses, admitted*perRequest)
		if admitted+int64(statuses[http.StatusTooManyRequests]) != 30 || admitted*perRequest > 1000 {
			t.Fatalf("statuses %v: %d tokens used, over the quota of 1000", statuses, admitted*perRequest)
		}
		if admitted != 1000/perRequest {
			t.Fatalf("%d admitted, want %d: as many as the quota covers", admitted, 1000/perRequest)
		}
		if n := up.hitsOf("prompts"); int64(n) != admitted {
			t.Fatalf("the upstream saw %d requests, %d were admitted", n, admitted)
		}
		// Settled to the usage the upstream reported, which the
		// reservations matched: nothing comes back but the refill.
		want := 1000 - admitted*perRequest
		deadline := time.Now().Add(10 * time.Second)
		for got := s.tokensRemaining(t, "prompts"); got < want; got = s.tokensRemaining(t, "prompts") {
			if time.Now().After(deadline) {
				t.Fatalf("tokens remaining %d, want at least %d once the records are settled", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("a request larger than its quota: denied at once, with why", func(t *testing.T) {
		big := `{"model":"gpt-4o-mini","max_tokens":10,"messages":[{"role":"user","content":"` + strings.Repeat("Explain the ledger line by line. ", 200) + `"}]}`
		resp, answer, _ := s.chatBody(t, "open.test", "prompts", big)
		var oa struct {
			Error struct{ Message, Type, Code string } `json:"error"`
		}
		if resp.StatusCode != http.StatusTooManyRequests || json.Unmarshal(answer, &oa) != nil || oa.Error.Code != "request_too_large" ||
			!strings.Contains(oa.Error.Message, "more than the limit of 1000 tokens per 1m0s") {
			t.Fatalf("%d %s", resp.StatusCode, answer)
		}
	})

	t.Run("50 concurrent streams against a spend budget end within it", func(t *testing.T) {
		// gpt-4o-mini at $0.15 and $0.60 per million tokens: each stream
		// reserves its prompt and 200 output tokens (about $0.000121) and
		// costs 10 + 180 (the upstream's count): $0.0001095. A budget of
		// $0.001 an hour admits 8 at once.
		const body = `{"model":"gpt-4o-mini","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"hi"}]}`
		answers, denial := s.concurrently(t, 50, "open.test", "budget", body)
		admitted := answers[http.StatusOK]
		if admitted+answers[http.StatusTooManyRequests] != 50 || admitted < 7 {
			t.Fatalf("answers %v: want 200s and 429s only, at least 7 admitted", answers)
		}
		var oa struct {
			Error struct{ Message, Type, Code string } `json:"error"`
		}
		if json.Unmarshal(denial, &oa) != nil || oa.Error.Type != "budget_exceeded" || oa.Error.Code != "budget_exceeded" ||
			!strings.Contains(oa.Error.Message, "$0.001 per 1h0m0s") || !strings.Contains(oa.Error.Message, "room for it again in") {
			t.Fatalf("denial %s", denial)
		}
		// Settled: every record's cost replaces its reservation; what was
		// spent (their costs, minus the refill of $0.001 an hour) is
		// within the budget, and nothing stays reserved.
		const cost = 10*150 + 180*600 // nano-dollars
		var st struct {
			Spend *struct{ Limit, Remaining, Reserved, Spent float64 } `json:"spend"`
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := getAuthorized(s.collector.base + "/v1/limits/budget")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Spend != nil && st.Spend.Reserved == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("spend status %+v: reservations never settled", st.Spend)
			}
			time.Sleep(100 * time.Millisecond)
		}
		spent := float64(admitted*cost) / 1e9
		t.Logf("answers %v: %d admitted, $%.7f spent of $0.001 (status: %+v)", answers, admitted, spent, *st.Spend)
		if spent > 0.001 || st.Spend.Spent > 0.001 || st.Spend.Spent > spent+1e-9 || st.Spend.Spent < spent-1e-6 {
			t.Fatalf("spent $%.7f by the records, $%.7f by the status: want both within the $0.001 budget and alike", spent, st.Spend.Spent)
		}
	})

	t.Run("requests sharing a request id are each settled", func(t *testing.T) {
		// A client's own X-Request-Id is kept, so 4 concurrent requests
		// may carry the same one: each must still be charged what it
		// used (before reservations had names of their own, the second
		// take overwrote the first and one settlement was skipped).
		const body = `{"model":"gpt-4o-mini","stream":true,"max_tokens":500,"messages":[{"role":"user","content":"hi"}]}`
		var wg sync.WaitGroup
		codes := make([]int, 4)
		start := make(chan struct{})
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, err := http.NewRequest(http.MethodPost, "http://"+s.entry+"/v1/chat/completions", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				req.Host = "open.test"
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Tenant-ID", "shared")
				req.Header.Set("X-Request-Id", "client-chosen-id")
				<-start
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		for i, c := range codes {
			if c != http.StatusOK {
				t.Fatalf("request %d: %d", i, c)
			}
		}
		// Each reserved about 508 and used 10 prompt + 180 output tokens
		// (the upstream's count): 760 in all, give or take the refill of
		// 10,000 an hour (3 a second). With a settlement skipped, three
		// reservations would stay held: 8,286 left.
		want := int64(10000 - 4*190)
		deadline := time.Now().Add(10 * time.Second)
		got := s.tokensRemaining(t, "shared")
		for got < want || got > want+30 {
			if time.Now().After(deadline) {
				t.Fatalf("tokens remaining %d, want %d once the 4 records are settled", got, want)
			}
			time.Sleep(100 * time.Millisecond)
			got = s.tokensRemaining(t, "shared")
		}
	})

	t.Run("Redis killed: each limit's failure mode, then recovery", func(t *testing.T) {
		if err := s.redis.Kill(); err != nil {
			t.Fatal(err)
		}
		resp, _, took := s.chat(t, "open.test", "c")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("fail-open tenant with Redis down: %d", resp.StatusCode)
		}
		resp, body, took2 := s.chat(t, "open.test", "strict")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "limits_unavailable") || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("fail-closed tenant with Redis down: %d %s", resp.StatusCode, body)
		}
		t.Logf("with Redis down: fail-open answered in %v, fail-closed in %v", took, took2)
		if err := s.redis.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, _, _ := s.chat(t, "open.test", "strict")
			if resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("limits did not recover after Redis came back: %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("collector stopped: the router's failure mode within its timeout", func(t *testing.T) {
		if err := s.collector.stop(t); err != nil {
			t.Fatal(err)
		}
		resp, _, took := s.chat(t, "open.test", "d")
		if resp.StatusCode != http.StatusOK || took > time.Second {
			t.Fatalf("fail-open router without a collector: %d in %v", resp.StatusCode, took)
		}
		resp, body, took2 := s.chat(t, "closed.test", "d")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "limits_unavailable") || took2 > time.Second {
			t.Fatalf("fail-closed router without a collector: %d %s in %v", resp.StatusCode, body, took2)
		}
		t.Logf("without a collector: fail-open answered in %v, fail-closed in %v", took, took2)
	})
}
