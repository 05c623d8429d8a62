//go:build e2e

// Package e2e runs the plugin inside a real Traefik binary, loaded from
// plugins-local exactly as users load it, against in-process upstreams and
// an in-process collector. `make test` builds Traefik and runs it; without
// TRAEFIK_BIN the tests fail rather than skip.
package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// stack is one Traefik with two routers to the same upstream: bare.test
// without the plugin, tap.test with it.
type stack struct {
	entry     string // Traefik's entrypoint, host:port
	collector *collector
	upstream  *upstream
}

var env *stack

func TestMain(m *testing.M) {
	bin := os.Getenv("TRAEFIK_BIN")
	if bin == "" {
		fmt.Fprintln(os.Stderr, "e2e: TRAEFIK_BIN is not set; run `make test`, which builds Traefik")
		os.Exit(1)
	}
	os.Exit(run(m, bin))
}

func run(m *testing.M, bin string) int {
	dir, err := os.MkdirTemp("", "llmtap-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	col := newCollector()
	defer col.srv.Close()
	up := newUpstream()
	defer up.srv.Close()

	entry, err := freeAddr()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := startTraefik(bin, dir, entry, up.srv.URL, col.srv.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	env = &stack{entry: entry, collector: col, upstream: up}
	code := m.Run()
	stop()
	// The plugin must not turn the proxy's deliberate aborts (client gone,
	// upstream broken off) into panics that Traefik logs as errors.
	logText, err := os.ReadFile(filepath.Join(dir, "traefik.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if bytes.Contains(logText, []byte("panic")) || bytes.Contains(logText, []byte("level=error")) {
		fmt.Fprintf(os.Stderr, "e2e: Traefik logged errors:\n%s\n", logText)
		return 1
	}
	return code
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startTraefik installs the plugin under dir/plugins-local, writes the
// static and dynamic configuration and starts Traefik in dir, then waits
// until the plugin route answers.
func startTraefik(bin, dir, entry, upstreamURL, collectorURL string) (func(), error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	if err := installPlugin(root, filepath.Join(dir, "plugins-local", "src", "github.com", "llmtap", "llmtap")); err != nil {
		return nil, fmt.Errorf("install plugin: %w", err)
	}
	dynamic := filepath.Join(dir, "dynamic.yml")
	if err := os.WriteFile(dynamic, []byte(fmt.Sprintf(dynamicConfig, collectorURL, upstreamURL)), 0o644); err != nil {
		return nil, err
	}
	static := filepath.Join(dir, "traefik.yml")
	if err := os.WriteFile(static, []byte(fmt.Sprintf(staticConfig, entry, dynamic)), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "traefik.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--configFile="+static)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start traefik: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	ready := func(host string) bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+entry+"/json", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for {
		if ready("tap.test") && ready("bare.test") {
			return stop, nil
		}
		select {
		case <-exited:
		case <-time.After(100 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		stop()
		logText, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("traefik did not serve the plugin route within 60 s; its log:\n%s", logText)
	}
}

// installPlugin copies what the plugin catalogue would ship: the manifest,
// go.mod and the plugin's non-test sources.
func installPlugin(root, dst string) error {
	if err := os.MkdirAll(filepath.Join(dst, "plugin"), 0o755); err != nil {
		return err
	}
	files := []string{".traefik.yml", "go.mod"}
	srcs, err := filepath.Glob(filepath.Join(root, "plugin", "*.go"))
	if err != nil {
		return err
	}
	for _, s := range srcs {
		if !strings.HasSuffix(s, "_test.go") {
			files = append(files, filepath.Join("plugin", filepath.Base(s)))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

const staticConfig = `
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
entryPoints:
  web:
    address: %q
providers:
  file:
    filename: %q
experimental:
  localPlugins:
    llmtap:
      moduleName: github.com/llmtap/llmtap
`

const dynamicConfig = `
http:
  routers:
    bare:
      rule: Host(` + "`bare.test`" + `)
      service: up
    tap:
      rule: Host(` + "`tap.test`" + `)
      service: up
      middlewares: [llmtap]
  middlewares:
    llmtap:
      plugin:
        llmtap:
          collectorURL: %q
          route: e2e
          flushInterval: 50ms
          maxResponseBodyBytes: 65536
  services:
    up:
      loadBalancer:
        servers:
          - url: %q
`

// collector is an in-process stand-in for the llmtap collector: it decodes
// the plugin's gzip NDJSON batches into records, by request id.
type collector struct {
	srv *httptest.Server

	mu      sync.Mutex
	records map[string]llmtap.Record
}

func newCollector() *collector {
	c := &collector{records: map[string]llmtap.Record{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != llmtap.RecordsPath || r.Header.Get("Content-Encoding") != "gzip" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var rec llmtap.Record
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			c.mu.Lock()
			c.records[rec.RequestID] = rec
			c.mu.Unlock()
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	return c
}

// record waits for the record of one request id.
func (c *collector) record(t *testing.T, id string) llmtap.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		rec, ok := c.records[id]
		c.mu.Unlock()
		if ok {
			return rec
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no record for request %q reached the collector", id)
	return llmtap.Record{}
}

// send makes a request through Traefik to host (bare.test or tap.test).
func send(t *testing.T, host, method, path string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+env.entry+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
