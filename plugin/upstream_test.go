package llmtap

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fallbackRig is a middleware with upstreams in front of test servers.
type fallbackRig struct {
	h    http.Handler // the middleware
	srv  string       // its URL
	col  *collectorStub
	pool *pool
}

// newFallbackRig serves the middleware over upstreams named a, b, ... at
// the given URLs, with change applied to its configuration.
func newFallbackRig(t *testing.T, urls []string, change func(c *Config)) *fallbackRig {
	t.Helper()
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, func(c *Config) {
		for i, u := range urls {
			c.Upstreams = append(c.Upstreams, UpstreamConfig{Name: string(rune('a' + i)), URL: u})
		}
		if change != nil {
			change(c)
		}
	})
	sd := startSender(t, s)
	p := newPool(s)
	t.Cleanup(func() { p.transport.CloseIdleConnections() })
	var h http.Handler = &Middleware{next: http.NotFoundHandler(), set: s, sender: sd, pending: sd.pending, pool: p}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fallbackRig{h: h, srv: srv.URL, col: col, pool: p}
}

// upstreamServer serves h and returns its URL.
func upstreamServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

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

const streamBody = "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: [DONE]\n\n"

// sseUpstream answers an SSE stream, and counts the requests and the body
// bytes each got.
func sseUpstream(hits *int64, got *sync.Map) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n int64
		if hits != nil {
			n = atomic.AddInt64(hits, 1)
		}
		if got != nil {
			got.Store(n, string(b)+"|"+r.URL.RequestURI()+"|"+r.Header.Get("Authorization")+"|"+r.Header.Get("X-Upstream-Key"))
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range strings.SplitAfter(streamBody, "\n\n") {
			_, _ = io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

func status(code int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, `{"error":{"message":"upstream says %d"}}`, code)
	}
}

// stalling sends its headers, then nothing until the request ends.
func stalling() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
}

func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions?x=1", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func attemptsOf(r Record) string {
	var parts []string
	for _, a := range r.AllAttempts() {
		s := a.Upstream + ":"
		if a.Status != 0 {
			s += fmt.Sprint(a.Status)
		}
		if a.Error != "" {
			s += a.Error
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestFallbackBeforeFirstByte: when the first upstream fails before its
// first body byte, the client gets the second upstream's stream, whole, and
// the record lists both attempts and names the one that served.
func TestFallbackBeforeFirstByte(t *testing.T) {
	for _, tt := range []struct {
		name     string
		first    func(t *testing.T) string
		attempts string
		after    time.Duration // the second upstream's headers come no sooner
	}{
		{"429", func(t *testing.T) string { return upstreamServer(t, status(429)) }, "a:429 b:200", 0},
		{"500", func(t *testing.T) string { return upstreamServer(t, status(500)) }, "a:500 b:200", 0},
		{"503", func(t *testing.T) string { return upstreamServer(t, status(503)) }, "a:503 b:200", 0},
		{"connection refused", refusing, "a:connect_error b:200", 0},
		{"no first byte in time", func(t *testing.T) string { return upstreamServer(t, stalling()) }, "a:200first_byte_timeout b:200", 200 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hits int64
			got := &sync.Map{}
			rig := newFallbackRig(t, []string{tt.first(t), upstreamServer(t, sseUpstream(&hits, got))}, func(c *Config) {
				c.Fallback.FirstByteTimeout = "200ms"
				c.Upstreams[1].Headers = map[string]string{"X-Upstream-Key": "secret-b"}
			})
			resp, body := post(t, rig.srv, `{"model":"m","stream":true}`)
			if resp.StatusCode != http.StatusOK || body != streamBody {
				t.Fatalf("client got %d %q, want 200 and the second upstream's stream", resp.StatusCode, body)
			}
			if v, _ := got.Load(int64(1)); v != `{"model":"m","stream":true}|/v1/chat/completions?x=1|Bearer sk-client|secret-b` {
				t.Errorf("the second upstream got %q", v)
			}
			r := rig.col.records(t, 1)[0]
			if a := attemptsOf(r); a != tt.attempts || r.Upstream != "b" || r.Outcome != OutcomeCompleted {
				t.Errorf("record: attempts %q, upstream %q, outcome %q; want %q, b, completed", a, r.Upstream, r.Outcome, tt.attempts)
			}
			// Times are from the client's request: the serving attempt's
			// include the first one's.
			all := r.AllAttempts()
			first, served := all[0], all[1]
			if len(r.WriteNs) == 0 || r.WriteNs[0] < served.HeaderNs || served.HeaderNs < first.HeaderNs || served.HeaderNs < int64(tt.after) {
				t.Errorf("first write at %v ns, headers of the attempts at %d and %d ns: want them in that order, the second's past %v", r.WriteNs, first.HeaderNs, served.HeaderNs, tt.after)
			}
		})
	}
}

// TestAttemptsWithoutTimeout: without a first-byte timeout, a pool with
// nothing on record makes its attempts that are not the last through the
// quick proxy, which has no state of the attempt; the record still names
// the upstream that served and gives its attempt the response's status and
// header time.
func TestAttemptsWithoutTimeout(t *testing.T) {
	for _, tt := range []struct {
		name     string
		first    http.HandlerFunc // nil: nothing listens
		method   string
		attempts string
		upstream string
	}{
		{"the first answers a POST", sseUpstream(nil, nil), http.MethodPost, "a:200", "a"},
		{"the first answers a GET", sseUpstream(nil, nil), http.MethodGet, "a:200", "a"},
		{"the first fails", status(503), http.MethodPost, "a:503 b:200", "b"},
		{"the first refuses", nil, http.MethodPost, "a:connect_error b:200", "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := &sync.Map{}
			first := refusing(t)
			if tt.first != nil {
				first = upstreamServer(t, tt.first)
			}
			rig := newFallbackRig(t, []string{first, upstreamServer(t, sseUpstream(nil, got))}, nil)
			var body io.Reader
			if tt.method == http.MethodPost {
				body = strings.NewReader(`{"model":"m"}`)
			}
			req, err := http.NewRequest(tt.method, rig.srv+"/v1/chat/completions", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != streamBody {
				t.Fatalf("client got %d %q, want 200 and the stream", resp.StatusCode, b)
			}
			r := rig.col.records(t, 1)[0]
			if a := attemptsOf(r); a != tt.attempts || r.Upstream != tt.upstream {
				t.Fatalf("record: attempts %q, upstream %q; want %q, %s", a, r.Upstream, tt.attempts, tt.upstream)
			}
			all := r.AllAttempts()
			served := all[len(all)-1]
			if served.HeaderNs > r.HeaderNs || served.HeaderNs <= 0 {
				t.Errorf("serving attempt's headers at %d ns, the response's at %d: want them set, and no later", served.HeaderNs, r.HeaderNs)
			}
			if v, ok := got.Load(int64(0)); tt.upstream == "b" && (!ok || !strings.HasPrefix(v.(string), `{"model":"m"}|`)) {
				t.Errorf("the second upstream got %q, want the request body again", v)
			}
		})
	}
}

// TestClientLeaves: a client that leaves during an attempt ends the
// request there: the next upstream is not tried, and the attempt is
// recorded as cancelled, which the breaker does not count against the
// upstream.
func TestClientLeaves(t *testing.T) {
	for _, timeout := range []string{"", "10s"} {
		t.Run("firstByteTimeout "+timeout, func(t *testing.T) {
			var hits int64
			arrived := make(chan struct{}, 1)
			hanging := func(w http.ResponseWriter, r *http.Request) {
				// Read whole, so that the server notices the connection
				// closing and ends the request's context.
				_, _ = io.Copy(io.Discard, r.Body)
				arrived <- struct{}{}
				<-r.Context().Done()
			}
			rig := newFallbackRig(t, []string{upstreamServer(t, hanging), upstreamServer(t, sseUpstream(&hits, nil))}, func(c *Config) {
				c.Fallback.FirstByteTimeout = timeout
				c.Fallback.Breaker.Failures = 1
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, rig.srv+"/v1/chat/completions", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_ = resp.Body.Close()
				}
			}()
			<-arrived
			cancel()
			<-done
			r := rig.col.records(t, 1)[0]
			if a := attemptsOf(r); a != "a:cancelled" || r.Outcome != OutcomeClientCancelled || r.Upstream != "" {
				t.Errorf("record: attempts %q, outcome %q, upstream %q; want a:cancelled, %s, none", a, r.Outcome, r.Upstream, OutcomeClientCancelled)
			}
			if n := atomic.LoadInt64(&hits); n != 0 {
				t.Errorf("the second upstream got %d requests, want none", n)
			}
			if !allSettled(rig.pool) {
				t.Error("the breaker counted the client's leaving against the upstream")
			}
		})
	}
}

// TestAttemptRequest: each upstream gets the request as its own: its host
// in Host, its base path and query joined with the request's, its own
// headers and not those of an upstream tried before, and the client
// appended to X-Forwarded-For.
func TestAttemptRequest(t *testing.T) {
	type seen struct{ host, uri, key, xff string }
	got := make(chan seen, 1)
	b := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.URL.RequestURI(), r.Header.Get("X-Upstream-Key"), r.Header.Get("X-Forwarded-For")}
		status(200)(w, r)
	})
	rig := newFallbackRig(t, []string{upstreamServer(t, status(500)), b + "/base?q=2"}, func(c *Config) {
		c.Upstreams[0].Headers = map[string]string{"X-Upstream-Key": "secret-a"}
	})
	req, err := http.NewRequest(http.MethodPost, rig.srv+"/v1/chat/completions?x=1", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	want := seen{strings.TrimPrefix(b, "http://"), "/base/v1/chat/completions?q=2&x=1", "", "203.0.113.9, 127.0.0.1"}
	if s := <-got; s != want {
		t.Errorf("the second upstream got %+v, want %+v", s, want)
	}
}

// TestCommitOnHeadersWithoutFirstByteTimeout: with no first-byte timeout,
// an attempt is the client's once its headers are good: a body that
// breaks off before its first byte is not retried, and is recorded so.
func TestCommitOnHeadersWithoutFirstByteTimeout(t *testing.T) {
	var hits int64
	breaking := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	rig := newFallbackRig(t, []string{breaking, upstreamServer(t, sseUpstream(&hits, nil))}, nil)
	req, err := http.NewRequest(http.MethodPost, rig.srv+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	r := rig.col.records(t, 1)[0]
	if a := attemptsOf(r); a != "a:200" || r.Upstream != "a" || r.Outcome != OutcomeAborted || atomic.LoadInt64(&hits) != 0 {
		t.Errorf("attempts %q, upstream %q, outcome %q, second upstream hit %d times; want a:200, a, aborted, 0", a, r.Upstream, r.Outcome, hits)
	}
}

// TestFallbackLastAnswers: when every upstream fails, the client gets the
// last one's answer as it was, or 502/504 when it gave none.
func TestFallbackLastAnswers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		last   func(t *testing.T) string
		status int
		body   string
	}{
		{"503", func(t *testing.T) string { return upstreamServer(t, status(503)) }, 503, `upstream says 503`},
		{"refused", refusing, 502, `"code":"connect_error"`},
		{"stalled", func(t *testing.T) string { return upstreamServer(t, stalling()) }, 504, `"code":"first_byte_timeout"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rig := newFallbackRig(t, []string{upstreamServer(t, status(500)), tt.last(t)}, func(c *Config) {
				c.Fallback.FirstByteTimeout = "100ms"
			})
			resp, body := post(t, rig.srv, `{}`)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("client got %d %s, want %d with %s", resp.StatusCode, body, tt.status, tt.body)
			}
			if r := rig.col.records(t, 1)[0]; len(r.AllAttempts()) != 2 || r.Status != tt.status {
				t.Errorf("record: status %d, attempts %q", r.Status, attemptsOf(r))
			}
		})
	}
}

// TestNoFallbackOnce a byte went: a stream that breaks after its first
// byte is not sent again; the client's response breaks too.
func TestNoFallbackOnceAByteWent(t *testing.T) {
	var hits int64
	broken := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"n\":1}\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	rig := newFallbackRig(t, []string{broken, upstreamServer(t, sseUpstream(&hits, nil))}, nil)
	req, _ := http.NewRequest(http.MethodPost, rig.srv+"/v1/chat/completions", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr == nil {
		t.Errorf("the client read %q to a clean end: a broken stream must break for the client too", b)
	}
	r := rig.col.records(t, 1)[0]
	if atomic.LoadInt64(&hits) != 0 || attemptsOf(r) != "a:200" || r.Outcome != OutcomeAborted || r.Upstream != "a" {
		t.Errorf("second upstream hit %d times; record attempts %q, outcome %q, upstream %q", hits, attemptsOf(r), r.Outcome, r.Upstream)
	}
}

// TestNoFallbackForClientErrors: a 4xx other than 429 is the client's and
// goes back as it is.
func TestNoFallbackForClientErrors(t *testing.T) {
	var hits int64
	rig := newFallbackRig(t, []string{upstreamServer(t, status(400)), upstreamServer(t, sseUpstream(&hits, nil))}, nil)
	if resp, _ := post(t, rig.srv, `{}`); resp.StatusCode != http.StatusBadRequest || atomic.LoadInt64(&hits) != 0 {
		t.Errorf("status %d, second upstream hit %d times", resp.StatusCode, hits)
	}
}

// TestLongBodySentOnce: a body past fallback.maxBodyBytes goes once, whole,
// and the first upstream's answer is the client's.
func TestLongBodySentOnce(t *testing.T) {
	var hits int64
	var gotLen int64
	first := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		atomic.StoreInt64(&gotLen, n)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	rig := newFallbackRig(t, []string{first, upstreamServer(t, sseUpstream(&hits, nil))}, func(c *Config) {
		c.Fallback.MaxBodyBytes = 1000
		c.MaxRequestBodyBytes = 100
	})
	body := `{"pad":"` + strings.Repeat("x", 5000) + `"}`
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // no length: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, rig.srv+"/v1/chat/completions", rd)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || atomic.LoadInt64(&gotLen) != int64(len(body)) || atomic.LoadInt64(&hits) != 0 {
			t.Errorf("chunked %v: status %d, first upstream read %d of %d bytes, second hit %d times", chunked, resp.StatusCode, gotLen, len(body), hits)
		}
	}
}

// TestBreaker: failures in a row open an upstream's circuit; while open it
// gets no attempt; after the cool-down one request probes it, and a success
// closes the circuit.
func TestBreaker(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var aHits, bHits int64
	a := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(&aHits, 1)
		if failing.Load() {
			status(500)(w, r)
			return
		}
		sseUpstream(nil, nil)(w, r)
	})
	rig := newFallbackRig(t, []string{a, upstreamServer(t, sseUpstream(&bHits, nil))}, func(c *Config) {
		c.Fallback.Breaker = BreakerConfig{Failures: 2, Window: "1m", Cooldown: "10s"}
	})
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	rig.pool.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	steps := []struct {
		advance  time.Duration
		recover  bool
		attempts string
		opened   bool
	}{
		{0, false, "a:500 b:200", false},
		{0, false, "a:500 b:200", true}, // the second failure opens
		{0, false, "a:circuit_open b:200", false},
		{5 * time.Second, false, "a:circuit_open b:200", false},
		{6 * time.Second, false, "a:500 b:200", true}, // a failed probe reopens
		{11 * time.Second, true, "a:200", false},      // a good probe closes
		{0, false, "a:200", false},
	}
	for i, st := range steps {
		advance(st.advance)
		failing.Store(!st.recover && i < 5)
		if resp, body := post(t, rig.srv, `{}`); resp.StatusCode != http.StatusOK || body != streamBody {
			t.Fatalf("step %d: client got %d %q", i, resp.StatusCode, body)
		}
		r := rig.col.records(t, i+1)[i]
		opened := false
		for _, at := range r.Attempts {
			opened = opened || at.Opened
		}
		if got := attemptsOf(r); got != st.attempts || opened != st.opened {
			t.Errorf("step %d: attempts %q opened %v, want %q opened %v", i, got, opened, st.attempts, st.opened)
		}
	}
}

// TestShortBodyNotResent: a body cut short of its Content-Length by a
// read error is never sent upstream as a whole body of the shorter length:
// the upstream request fails as it would have without us.
func TestShortBodyNotResent(t *testing.T) {
	complete := make(chan int, 4)
	up := func(w http.ResponseWriter, r *http.Request) {
		if b, err := io.ReadAll(r.Body); err == nil {
			complete <- len(b)
		}
		status(200)(w, r)
	}
	rig := newFallbackRig(t, []string{upstreamServer(t, up), upstreamServer(t, up)}, nil)
	// In-process: over a connection, a client whose body breaks off is
	// gone, and its request's context ends before any attempt.
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", &shortBody{left: 50})
	req.ContentLength = 100
	rec := httptest.NewRecorder()
	rig.h.ServeHTTP(rec, req)
	r := rig.col.records(t, 1)[0]
	select {
	case n := <-complete:
		t.Fatalf("an upstream got a whole body of %d bytes; the client got %d; record attempts %q", n, rec.Code, attemptsOf(r))
	default:
	}
	if rec.Code != http.StatusBadGateway || attemptsOf(r) != "a:connect_error" {
		t.Errorf("client got %d, record attempts %q; want 502 and a:connect_error (sent once)", rec.Code, attemptsOf(r))
	}
}

// shortBody gives left bytes, then a read error.
type shortBody struct{ left int }

func (b *shortBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, strings.Repeat("x", b.left))
	b.left -= n
	return n, nil
}

// TestUntriedProbeGivenBack: a half-open probe planned after an upstream
// that then serves is given back, so that a later request probes it.
func TestUntriedProbeGivenBack(t *testing.T) {
	rig := newFallbackRig(t, []string{upstreamServer(t, sseUpstream(nil, nil)), upstreamServer(t, sseUpstream(nil, nil))}, nil)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := rig.pool
	p.now = func() time.Time { return clock }
	b := p.ups[1]
	p.mu.Lock()
	was := settled(b)
	b.openUntil = clock.Add(-time.Second) // its cool-down over: the next plan probes it
	note(p, b, was)
	p.mu.Unlock()
	if resp, body := post(t, rig.srv, `{}`); resp.StatusCode != http.StatusOK || body != streamBody {
		t.Fatalf("client got %d %q", resp.StatusCode, body)
	}
	if r := rig.col.records(t, 1)[0]; attemptsOf(r) != "a:200" || r.Upstream != "a" {
		t.Fatalf("record: attempts %q, upstream %q; want a:200, a", attemptsOf(r), r.Upstream)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.probing {
		t.Errorf("b's probe was not given back: no later request can probe it")
	}
}

// TestAllCircuitsOpen: with every circuit open the plugin answers 503 with
// the time until the first reopens, and tries nothing.
func TestAllCircuitsOpen(t *testing.T) {
	rig := newFallbackRig(t, []string{upstreamServer(t, status(502))}, func(c *Config) {
		c.Fallback.Breaker = BreakerConfig{Failures: 1, Window: "1m", Cooldown: "30s"}
	})
	post(t, rig.srv, `{}`)
	resp, body := post(t, rig.srv, `{}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" || !strings.Contains(body, `"code":"circuit_open"`) {
		t.Errorf("client got %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if r := rig.col.records(t, 2)[1]; attemptsOf(r) != "a:circuit_open" || r.Upstream != "" {
		t.Errorf("record attempts %q upstream %q", attemptsOf(r), r.Upstream)
	}
}

// TestRetryAfterKeepsUpstreamOut: a 429's Retry-After keeps its upstream
// out of the attempts for that long, bounded by fallback.maxRetryAfter.
func TestRetryAfterKeepsUpstreamOut(t *testing.T) {
	for _, tt := range []struct {
		retryAfter, max string
		out             time.Duration
	}{
		{"5", "30s", 5 * time.Second},
		{"3600", "30s", 30 * time.Second},
	} {
		var bHits int64
		rig := newFallbackRig(t, []string{upstreamServer(t, status(429, "Retry-After", tt.retryAfter)), upstreamServer(t, sseUpstream(&bHits, nil))}, func(c *Config) {
			c.Fallback.MaxRetryAfter = tt.max
			c.Fallback.Breaker.Failures = 0 // the breaker off: Retry-After alone
		})
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		rig.pool.now = func() time.Time { return clock }
		post(t, rig.srv, `{}`)
		if u := rig.pool.ups[0]; !u.openUntil.Equal(clock.Add(tt.out)) {
			t.Errorf("Retry-After %s (max %s): out until %v, want %v", tt.retryAfter, tt.max, u.openUntil, clock.Add(tt.out))
		}
		post(t, rig.srv, `{}`)
		if r := rig.col.records(t, 2)[1]; attemptsOf(r) != "a:circuit_open b:200" {
			t.Errorf("Retry-After %s: the next request's attempts %q", tt.retryAfter, attemptsOf(r))
		}
	}
}

// TestWeightedFirstAttempts: weights split first attempts exactly over
// each run of their sum, and the other upstreams stay fallbacks in order.
func TestWeightedFirstAttempts(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, func(c *Config) {
		c.Upstreams = []UpstreamConfig{{Name: "a", URL: "http://a.test", Weight: 90}, {Name: "b", URL: "http://b.test", Weight: 10}, {Name: "c", URL: "http://c.test"}}
	})
	p := newPool(s)
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		order, _ := plan(p, &Record{})
		var names []string
		for _, cd := range order {
			names = append(names, cd.u.name)
		}
		counts[names[0]]++
		if want := map[string]string{"a": "a b c", "b": "b a c"}[names[0]]; strings.Join(names, " ") != want {
			t.Fatalf("pick %d: order %q, want %q", i, names, want)
		}
	}
	if counts["a"] != 900 || counts["b"] != 100 || counts["c"] != 0 {
		t.Errorf("first attempts %v, want a 900, b 100, c 0", counts)
	}
}

// TestUpstreamsConfig: bad upstreams and fallback settings are refused with
// the field and what was wrong.
func TestUpstreamsConfig(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"no scheme", func(c *Config) { c.Upstreams = []UpstreamConfig{{URL: "api.openai.com"}} }, "upstreams[0].url"},
		{"credentials in the URL", func(c *Config) { c.Upstreams = []UpstreamConfig{{URL: "https://u:p@api.test"}} }, "without credentials"},
		{"same name", func(c *Config) {
			c.Upstreams = []UpstreamConfig{{URL: "https://a.test"}, {URL: "https://a.test"}}
		}, `upstreams[1].name "a.test"`},
		{"bad name", func(c *Config) { c.Upstreams = []UpstreamConfig{{Name: "a b", URL: "https://a.test"}} }, "upstreams[0].name"},
		{"negative weight", func(c *Config) { c.Upstreams = []UpstreamConfig{{URL: "https://a.test", Weight: -1}} }, "upstreams[0].weight"},
		{"bad header", func(c *Config) {
			c.Upstreams = []UpstreamConfig{{URL: "https://a.test", Headers: map[string]string{"a b": "x"}}}
		}, "upstreams[0].headers"},
		{"too many", func(c *Config) {
			for i := 0; i < 9; i++ {
				c.Upstreams = append(c.Upstreams, UpstreamConfig{URL: fmt.Sprintf("https://u%d.test", i)})
			}
		}, "at most 8"},
		{"no collector", func(c *Config) { c.CollectorURL = ""; c.Upstreams = []UpstreamConfig{{URL: "https://a.test"}} }, "need a collectorURL"},
		{"bad timeout", func(c *Config) { c.Fallback.FirstByteTimeout = "soon" }, "fallback.firstByteTimeout"},
		{"bad cooldown", func(c *Config) { c.Fallback.Breaker.Cooldown = "0s" }, "fallback.breaker.cooldown"},
		{"negative failures", func(c *Config) { c.Fallback.Breaker.Failures = -1 }, "fallback.breaker.failures"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := CreateConfig()
			tt.change(c)
			if _, err := c.validate("r"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// TestFailedAttemptGoesOn: a failed attempt sends the request to the next
// upstream unless the client left or something already reached it.
func TestFailedAttemptGoesOn(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int // already written to the client
		left   bool
		next   bool
	}{
		{"nothing sent yet", 0, false, true},
		{"the client left", 0, true, false},
		{"an upgrade went through", http.StatusSwitchingProtocols, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.left {
				cancel()
			}
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil).WithContext(ctx)
			c := &captureWriter{req: req, rec: &Record{Status: tt.status, Upstream: "a"}}
			a := &attemptRun{c: c, u: &upstream{name: "a"}}
			recordAttempt(a, 0, 0, AttemptConnectError, false, true)
			if a.next != tt.next || c.rec.Upstream != "" || attemptsOf(*c.rec) != "a:connect_error" {
				t.Errorf("next %v, upstream %q, attempts %q; want next %v, no upstream, a:connect_error", a.next, c.rec.Upstream, attemptsOf(*c.rec), tt.next)
			}
		})
	}
}
