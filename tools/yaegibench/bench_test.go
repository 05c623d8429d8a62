// Package yaegibench measures the plugin's per-request cost the way Traefik
// runs it: interpreted by Yaegi v0.16.1 with the standard library symbols,
// next to the noop plugin (the floor any interpreted plugin pays).
package yaegibench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

const jsonBody = `{"id":"chatcmpl-bench","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`

// load interprets a plugin from a GOPATH laid out as Traefik's plugins-local.
func load(b *testing.B, gopath, imp, pkg string, config map[string]any) http.Handler {
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
		cfg.Elem().FieldByName(k).Set(reflect.ValueOf(v))
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(jsonBody)))
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, jsonBody)
	})
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
	req := httptest.NewRequest(http.MethodGet, "/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-bench")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for n := 0; n < b.N; n++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
	b.StopTimer()
	time.Sleep(1500 * time.Millisecond) // the sender's last batch
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
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

func BenchmarkNoop(b *testing.B) {
	serve(b, load(b, gopath(b), "github.com/llmtap/noop", "noop", nil))
}

func BenchmarkLLMTap(b *testing.B) {
	serve(b, load(b, gopath(b), "github.com/llmtap/llmtap/plugin", "llmtap", map[string]any{
		"CollectorURL": sink(b),
		"QueueSize":    1 << 20, // nothing dropped: every record is built and sent
	}))
}
