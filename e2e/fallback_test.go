//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// The fallback tests run routes with upstreams (docs/fallback.md) in a
// real Traefik: the plugin proxies them itself and tries the next upstream
// when one fails before its first byte.

// fallbackStream is what the serving upstream sends: five events, 20 ms
// apart.
var fallbackStream = func() string {
	var b strings.Builder
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "data: {\"choices\":[{\"delta\":{\"content\":\"tok%d\"}}]}\n\n", i)
	}
	return b.String()
}()

// behaving is an upstream whose behaviour a test switches: "ok" streams
// fallbackStream, a number answers that status, "hang" sends its headers
// and then nothing, "break" sends one event and drops the connection.
type behaving struct {
	srv  *httptest.Server
	mode atomic.Value // string
	hits atomic.Int64
	// bodies are the lengths of the request bodies it read, in order.
	mu     sync.Mutex
	bodies []int
}

func newBehaving(t *testing.T, mode string) *behaving {
	b := &behaving{}
	b.mode.Store(mode)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		b.hits.Add(1)
		b.mu.Lock()
		b.bodies = append(b.bodies, int(n))
		b.mu.Unlock()
		switch m := b.mode.Load().(string); m {
		case "ok":
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range strings.SplitAfter(fallbackStream, "\n\n") {
				if ev == "" {
					continue
				}
				_, _ = io.WriteString(w, ev)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
		case "hang":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "break":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"tok0\"}}]}\n\n")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		default:
			var code int
			_, _ = fmt.Sscan(m, &code)
			w.Header().Set("Content-Type", "application/json")
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"error":{"message":"upstream %d"}}`, code)
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// fallbackRoute is one router of the fallback Traefik: Host name.test,
// through the plugin with these upstreams and fallback settings.
type fallbackRoute struct {
	name     string
	ups      []string // name=url
	weights  []int
	fallback string // YAML of fallback's fields, on one line: {a: b}
}

func fallbackTraefik(t *testing.T, s *stack.T, routes []fallbackRoute) *stack.Traefik {
	var routers, mws strings.Builder
	// Readiness goes through a route of its own, to the e2e upstream's
	// /json: the test's upstreams see only the test's requests.
	routes = append(routes, fallbackRoute{name: "fb-ready", ups: []string{"e2e=" + env.upstream.srv.URL}})
	for _, r := range routes {
		host := r.name + ".test"
		fmt.Fprintf(&routers, "    %s:\n      rule: Host(`%s`)\n      service: up\n      middlewares: [%s]\n", r.name, host, r.name)
		fmt.Fprintf(&mws, "    %s:\n      plugin:\n        llmtap:\n          collectorURL: %q\n          route: %s\n          flushInterval: 50ms\n", r.name, env.collector.srv.URL, r.name)
		if r.fallback != "" {
			fmt.Fprintf(&mws, "          fallback: %s\n", r.fallback)
		}
		mws.WriteString("          upstreams:\n")
		for i, u := range r.ups {
			name, url, _ := strings.Cut(u, "=")
			fmt.Fprintf(&mws, "            - name: %s\n              url: %q\n", name, url)
			if len(r.weights) > 0 {
				fmt.Fprintf(&mws, "              weight: %d\n", r.weights[i])
			}
		}
	}
	// The service is never called on these routes: the plugin proxies.
	return s.Traefik(fmt.Sprintf("http:\n  routers:\n%s  middlewares:\n%s  services:\n    up:\n      loadBalancer:\n        servers:\n          - url: %q\n",
		routers.String(), mws.String(), env.upstream.srv.URL), func(tr *stack.Traefik) {
		tr.ReadyHosts, tr.ReadyPath = []string{"fb-ready.test"}, "/json"
	})
}

// post sends a streaming chat request with an id through tr to host and
// reads the answer; it returns the answer, its body and when its first
// byte came.
func postThrough(t *testing.T, tr *stack.Traefik, host, id, body string) (*http.Response, string, time.Duration, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+tr.Addr()+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(llmtap.HeaderRequestID, id)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1)
	n, rerr := resp.Body.Read(first)
	ttfb := time.Since(start)
	rest, err := io.ReadAll(resp.Body)
	if rerr != nil && rerr != io.EOF {
		err = rerr
	}
	return resp, string(first[:n]) + string(rest), ttfb, err
}

func attemptList(r llmtap.Record) string {
	var parts []string
	for _, a := range r.AllAttempts() {
		s := a.Upstream + ":"
		if a.Status != 0 {
			s += fmt.Sprint(a.Status)
		}
		parts = append(parts, s+a.Error)
	}
	return strings.Join(parts, " ")
}

const streamChat = `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// TestFallbackInTraefik: the first upstream answers 429, 500 or 503,
// refuses connections, or hangs before its first byte; the client gets the
// second upstream's stream, byte for byte, its first byte timed from the
// client's request; the record names both attempts. A first upstream that
// breaks off mid-stream is not retried, and recorded as aborted. The fb-
// routes wait for a first byte, so every attempt takes the careful proxy;
// the fbq- routes do not, and their first attempt takes the quick one.
func TestFallbackInTraefik(t *testing.T) {
	s := stack.New(t)
	b := newBehaving(t, "ok")
	firsts := map[string]*behaving{}
	var routes []fallbackRoute
	for _, mode := range []string{"429", "500", "503", "hang", "break"} {
		firsts[mode] = newBehaving(t, mode)
		ups := []string{"a=" + firsts[mode].srv.URL, "b=" + b.srv.URL}
		routes = append(routes, fallbackRoute{name: "fb-" + mode, ups: ups, fallback: "{firstByteTimeout: 300ms}"})
		if mode != "hang" {
			routes = append(routes, fallbackRoute{name: "fbq-" + mode, ups: ups})
		}
	}
	routes = append(routes, fallbackRoute{name: "fb-refused", ups: []string{fmt.Sprintf("a=http://127.0.0.1:%d", s.Port()), "b=" + b.srv.URL}})
	tr := fallbackTraefik(t, s, routes)

	for _, tt := range []struct {
		route, attempts string
	}{
		{"fb-429", "a:429 b:200"},
		{"fb-500", "a:500 b:200"},
		{"fb-503", "a:503 b:200"},
		{"fb-refused", "a:connect_error b:200"},
		{"fb-hang", "a:200first_byte_timeout b:200"},
		{"fbq-429", "a:429 b:200"},
		{"fbq-500", "a:500 b:200"},
		{"fbq-503", "a:503 b:200"},
	} {
		t.Run(tt.route, func(t *testing.T) {
			id := "e2e-" + tt.route
			resp, body, ttfb, err := postThrough(t, tr, tt.route+".test", id, streamChat)
			if err != nil || resp.StatusCode != http.StatusOK || body != fallbackStream {
				t.Fatalf("client got %d %q (%v), want 200 and the second upstream's stream", resp.StatusCode, body, err)
			}
			rec := env.collector.record(t, id)
			if got := attemptList(rec); got != tt.attempts || rec.Upstream != "b" || rec.Outcome != llmtap.OutcomeCompleted {
				t.Errorf("record: attempts %q upstream %q outcome %q; want %q, b, completed", got, rec.Upstream, rec.Outcome, tt.attempts)
			}
			if tt.route == "fb-hang" {
				// Timed from the client's request: the first attempt's wait
				// is in it.
				if ttfb < 300*time.Millisecond || len(rec.WriteNs) == 0 || rec.WriteNs[0] < int64(300*time.Millisecond) {
					t.Errorf("first byte after %v for the client, %v in the record: both should include the 300 ms given to the first upstream", ttfb, time.Duration(rec.WriteNs[0]))
				}
			}
		})
	}

	for _, route := range []string{"fb-break", "fbq-break"} {
		t.Run(route, func(t *testing.T) {
			before := b.hits.Load()
			resp, body, _, err := postThrough(t, tr, route+".test", "e2e-"+route, streamChat)
			if err == nil {
				t.Errorf("client read %d %q to a clean end: a stream broken upstream must break for the client too", resp.StatusCode, body)
			}
			rec := env.collector.record(t, "e2e-"+route)
			if got := attemptList(rec); got != "a:200" || rec.Upstream != "a" || rec.Outcome != llmtap.OutcomeAborted || b.hits.Load() != before {
				t.Errorf("record: attempts %q upstream %q outcome %q, second upstream hit %d times; want a:200, a, aborted, not hit",
					got, rec.Upstream, rec.Outcome, b.hits.Load()-before)
			}
		})
	}
}

// TestBreakerInTraefik: two failures open the first upstream's circuit;
// while open it gets no attempt; once it recovers, a half-open probe after
// the cool-down closes the circuit.
func TestBreakerInTraefik(t *testing.T) {
	s := stack.New(t)
	a, b := newBehaving(t, "500"), newBehaving(t, "ok")
	tr := fallbackTraefik(t, s, []fallbackRoute{{name: "breaker", ups: []string{"a=" + a.srv.URL, "b=" + b.srv.URL},
		fallback: "{breaker: {failures: 2, window: 1m, cooldown: 1s}}"}})
	n := 0
	send := func() llmtap.Record {
		n++
		id := fmt.Sprintf("e2e-breaker-%d", n)
		if resp, body, _, err := postThrough(t, tr, "breaker.test", id, streamChat); err != nil || resp.StatusCode != http.StatusOK || body != fallbackStream {
			t.Fatalf("request %d: %d %q %v", n, resp.StatusCode, body, err)
		}
		return env.collector.record(t, id)
	}
	for i, want := range []string{"a:500 b:200", "a:500 b:200", "a:circuit_open b:200"} {
		if got := attemptList(send()); got != want {
			t.Errorf("request %d: attempts %q, want %q", i+1, got, want)
		}
	}
	hits := a.hits.Load()
	a.mode.Store("ok")
	// The circuit stays open for the cool-down, then the next request
	// probes: wait for that one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := attemptList(send())
		if got == "a:200" {
			break
		}
		if got != "a:circuit_open b:200" || time.Now().After(deadline) {
			t.Fatalf("after a recovered: attempts %q, want a:circuit_open b:200 until the probe, then a:200", got)
		}
	}
	if a.hits.Load() != hits+1 {
		t.Errorf("a got %d requests while its circuit was open, want only the probe", a.hits.Load()-hits)
	}
	if got := attemptList(send()); got != "a:200" {
		t.Errorf("after the probe: attempts %q, want a:200 (closed)", got)
	}
}

// TestWeightsInTraefik: weights 90/10 split 10,000 requests within 3%.
func TestWeightsInTraefik(t *testing.T) {
	s := stack.New(t)
	a, b := newBehaving(t, "204"), newBehaving(t, "204")
	tr := fallbackTraefik(t, s, []fallbackRoute{{name: "weights", ups: []string{"a=" + a.srv.URL, "b=" + b.srv.URL}, weights: []int{90, 10}}})
	const total, workers = 10000, 8
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var failed atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				req, _ := http.NewRequest(http.MethodPost, "http://"+tr.Addr()+"/v1/chat/completions", strings.NewReader(`{}`))
				req.Host = "weights.test"
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	share := float64(a.hits.Load()) / total
	t.Logf("%d requests: a %d, b %d (a's share %.4f, want 0.90 ± 0.03)", total, a.hits.Load(), b.hits.Load(), share)
	if failed.Load() != 0 || a.hits.Load()+b.hits.Load() != total || share < 0.87 || share > 0.93 {
		t.Errorf("%d failed; a %d, b %d of %d", failed.Load(), a.hits.Load(), b.hits.Load(), total)
	}
}

// TestLongBodyProxiedOnce: a POST whose body is over fallback.maxBodyBytes
// goes once, whole, to the first upstream, whose answer the client gets.
func TestLongBodyProxiedOnce(t *testing.T) {
	s := stack.New(t)
	a, b := newBehaving(t, "503"), newBehaving(t, "ok")
	tr := fallbackTraefik(t, s, []fallbackRoute{{name: "long", ups: []string{"a=" + a.srv.URL, "b=" + b.srv.URL}, fallback: "{maxBodyBytes: 65536}"}})
	body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 300<<10) + `"}]}`
	resp, got, _, err := postThrough(t, tr, "long.test", "e2e-long", body)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(got, "upstream 503") {
		t.Errorf("client got %d %q %v, want the first upstream's 503", resp.StatusCode, got, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.bodies) != 1 || a.bodies[0] != len(body) || b.hits.Load() != 0 {
		t.Errorf("first upstream read bodies %v (want one of %d bytes), second hit %d times", a.bodies, len(body), b.hits.Load())
	}
	if rec := env.collector.record(t, "e2e-long"); attemptList(rec) != "a:503" {
		t.Errorf("record attempts %q, want a:503", attemptList(rec))
	}
}
