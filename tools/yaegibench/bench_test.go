// Package yaegibench measures the plugin's per-request cost the way Traefik
// runs it: interpreted by Yaegi v0.16.1 with the standard library symbols,
// next to the noop plugin (the floor any interpreted plugin pays).
package yaegibench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

const jsonBody = `{"id":"chatcmpl-bench","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`

// load interprets a plugin from a GOPATH laid out as Traefik's plugins-local,
// in front of a handler that answers jsonBody.
func load(b *testing.B, gopath, imp, pkg string, config map[string]any) http.Handler {
	b.Helper()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(jsonBody)))
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, jsonBody)
	})
	return loadBefore(b, gopath, imp, pkg, config, next)
}

// loadBefore is load in front of next.
func loadBefore(b *testing.B, gopath, imp, pkg string, config map[string]any, next http.Handler) http.Handler {
	b.Helper()
	i := interp.New(interp.Options{GoPath: gopath})
	if err := i.Use(stdlib.Symbols); err != nil {
		b.Fatal(err)
	}
	if _, err := i.Eval(`import "` + imp + `"`); err != nil {
		b.Fatal(err)
	}
	newFn, err := i.Eval(pkg + ".New")
	if err != nil {
		b.Fatal(err)
	}
	cfgFn, err := i.Eval(pkg + ".CreateConfig")
	if err != nil {
		b.Fatal(err)
	}
	cfg := cfgFn.Call(nil)[0]
	for k, v := range config {
		if ups, ok := v.([]map[string]any); ok {
			// A slice of the plugin's own (interpreted) struct type,
			// each element's fields by name.
			f := cfg.Elem().FieldByName(k)
			for _, fields := range ups {
				e := reflect.New(f.Type().Elem()).Elem()
				for name, fv := range fields {
					e.FieldByName(name).Set(reflect.ValueOf(fv))
				}
				f.Set(reflect.Append(f, e))
			}
			continue
		}
		// "Limits.Enabled" names a field of a nested struct.
		f := cfg.Elem()
		for _, name := range strings.Split(k, ".") {
			f = f.FieldByName(name)
		}
		f.Set(reflect.ValueOf(v))
	}
	out := newFn.Call([]reflect.Value{reflect.ValueOf(context.Background()), reflect.ValueOf(next), cfg, reflect.ValueOf("bench")})
	if e := out[1].Interface(); e != nil {
		b.Fatal(e)
	}
	return out[0].Interface().(http.Handler)
}

func gopath(b *testing.B) string {
	b.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for mod, src := range map[string]string{"github.com/llmtap/llmtap": root, "github.com/llmtap/noop": filepath.Join(root, "bench", "noop")} {
		link := filepath.Join(dir, "src", mod)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Symlink(src, link); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// serve runs b.N requests and reports, besides the time on the request
// path (ns/op), the whole process's CPU time per request (cpu-ns/op): what
// the plugin's background sender spends counts against throughput too.
func serve(b *testing.B, h http.Handler) {
	serveBody(b, h, "")
}

// serveBody is serve with a request body: each request POSTs it afresh.
func serveBody(b *testing.B, h http.Handler, body string) {
	req := httptest.NewRequest(http.MethodGet, "/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-bench")
	if body != "" {
		req.Method = http.MethodPost
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
	}
	b.ReportAllocs()
	b.ResetTimer()
	frames(0)
	cpu0, g0 := cpuTime(), goroutinesCreated()
	for n := 0; n < b.N; n++ {
		if body != "" {
			req.Body = io.NopCloser(strings.NewReader(body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
	b.StopTimer()
	time.Sleep(1500 * time.Millisecond) // the sender's last batch
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(goroutinesCreated()-g0)/float64(b.N), "goroutines/op")
	frames(b.N)
}

// goroutinesCreated is how many goroutines the process has started: each
// is a hand-off to the scheduler, which shows in the latency's tail.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sink accepts record batches and discards them, as a fast collector would.
func sink(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// allowingCollector is sink that also allows every limit check, with the
// headers the real collector sends.
func allowingCollector(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path != limitsCheckPath {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		h := w.Header()
		h.Set("Llmtap-Decision", "allow")
		h.Set("Llmtap-Reserved", "256")
		h.Set("RateLimit-Limit", "100000")
		h.Set("RateLimit-Remaining", "99744")
		h.Set("RateLimit-Reset", "60")
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(func() { srv.Close() })
	return srv.URL
}

// limitsCheckPath is llmtap.LimitsCheckPath (this module does not require the plugin's).
const limitsCheckPath = "/v1/limits/check"

// chatBody is a small chat request, for the benchmarks whose request has a body.
const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello."}],"max_tokens":256,"stream":false}`

func BenchmarkNoop(b *testing.B) {
	serve(b, load(b, gopath(b), "github.com/llmtap/noop", "noop", nil))
}

func BenchmarkLLMTap(b *testing.B) {
	serve(b, load(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", map[string]any{
		"CollectorURL": sink(b),
		"QueueSize":    1 << 20, // nothing dropped: every record is built and sent
	}))
}

// BenchmarkLLMTapLimits is BenchmarkLLMTap on a router with limits: each
// request waits for its limit check, allowed by an in-process collector.
// Its ns/op includes that loopback round trip (see BenchmarkCheckCompiled
// for the same round trip made by compiled code).
func BenchmarkLLMTapLimits(b *testing.B) {
	serve(b, load(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", map[string]any{
		"CollectorURL":   allowingCollector(b),
		"QueueSize":      1 << 20,
		"Limits.Enabled": true,
		"Limits.Timeout": "5s",
	}))
}

// BenchmarkLLMTapChat and BenchmarkLLMTapLimitsChat POST chatBody, so the
// request body is captured and, with limits, scanned for the model and
// max_tokens.
func BenchmarkLLMTapChat(b *testing.B) {
	serveBody(b, load(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", map[string]any{
		"CollectorURL": sink(b),
		"QueueSize":    1 << 20,
	}), chatBody)
}

func BenchmarkLLMTapLimitsChat(b *testing.B) {
	serveBody(b, load(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", map[string]any{
		"CollectorURL":   allowingCollector(b),
		"QueueSize":      1 << 20,
		"Limits.Enabled": true,
		"Limits.Timeout": "5s",
	}), chatBody)
}

// upstream answers every request with jsonBody, as the router's service of
// the other benchmarks does.
func upstream(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(jsonBody)))
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, jsonBody)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkLLMTapFallback is BenchmarkLLMTapChat on a route with two
// upstreams, the first of which answers: the plugin proxies the request
// itself, over loopback (see BenchmarkProxyCompiled for the same round
// trip made by compiled code).
func BenchmarkLLMTapFallback(b *testing.B) {
	serveFallback(b, []map[string]any{{"URL": upstream(b)}, {"URL": upstream(b)}}, nil)
}

// BenchmarkLLMTapFallbackTimed is BenchmarkLLMTapFallback with a
// first-byte timeout: every attempt goes through the careful proxy, whose
// ModifyResponse decides each answer and waits for its first byte.
func BenchmarkLLMTapFallbackTimed(b *testing.B) {
	serveFallback(b, []map[string]any{{"URL": upstream(b)}, {"URL": upstream(b)}}, map[string]any{"Fallback.FirstByteTimeout": "10s"})
}

// BenchmarkLLMTapWeighted is BenchmarkLLMTapFallback on a weighted pool:
// every request asks the breaker for its plan.
func BenchmarkLLMTapWeighted(b *testing.B) {
	serveFallback(b, []map[string]any{{"URL": upstream(b), "Weight": 90}, {"URL": upstream(b), "Weight": 10}}, nil)
}

// serveFallback serves chatBody on a route with these upstreams and the
// settings of more besides.
func serveFallback(b *testing.B, upstreams []map[string]any, more map[string]any) {
	config := map[string]any{
		"CollectorURL": sink(b),
		"QueueSize":    1 << 20,
		"Upstreams":    upstreams,
	}
	for k, v := range more {
		config[k] = v
	}
	serveBody(b, load(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", config), chatBody)
}

// BenchmarkLLMTapProxied is BenchmarkLLMTapChat in front of a compiled
// proxy to the upstream, as Traefik's service proxies a route without
// upstreams: the baseline of BenchmarkLLMTapFallback, whose difference to
// it is what the plugin's own proxying costs.
func BenchmarkLLMTapProxied(b *testing.B) {
	serveBody(b, loadBefore(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", map[string]any{
		"CollectorURL": sink(b),
		"QueueSize":    1 << 20,
	}, compiledProxy(b)), chatBody)
}

// BenchmarkProxyCompiled proxies chatBody to an upstream through a compiled
// httputil.ReverseProxy: the floor of BenchmarkLLMTapFallback's round trip.
func BenchmarkProxyCompiled(b *testing.B) {
	serveBody(b, compiledProxy(b), chatBody)
}

// compiledProxy is a compiled reverse proxy to an upstream, with a pool
// of copy buffers as Traefik's.
func compiledProxy(b *testing.B) http.Handler {
	u, err := url.Parse(upstream(b))
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	// Traefik's default flush interval (a service's responseForwarding).
	return &httputil.ReverseProxy{Transport: tr, FlushInterval: 100 * time.Millisecond, BufferPool: &bufferPool{}, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.SetXForwarded()
	}}
}

// bufferPool lends a proxy its copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// BenchmarkCheckCompiled makes the limit check's round trip from compiled
// code: a JSON POST on a kept connection to the same in-process collector.
// The difference to BenchmarkLLMTapLimits - BenchmarkLLMTap is what the
// interpreter adds to the check.
func BenchmarkCheckCompiled(b *testing.B) {
	url := allowingCollector(b) + limitsCheckPath
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	b.Cleanup(tr.CloseIdleConnections)
	body := []byte(`{"tenant":"key-0123456789ab","route":"bench","model":"gpt-4o-mini","request_id":"0123456789abcdef0123456789abcdef","reserve":256}`)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for n := 0; n < b.N; n++ {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header["Content-Type"] = []string{"application/json"}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.Header.Get("Llmtap-Decision") != "allow" {
			b.Fatal(resp.Status)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
