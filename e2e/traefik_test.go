//go:build e2e

// Package e2e runs the plugin inside a real Traefik binary, loaded from
// plugins-local exactly as users load it, against in-process upstreams and
// an in-process collector, started by internal/stack (Traefik from
// $TRAEFIK_BIN or scripts/traefik-build.sh). A Traefik that does not start
// fails the tests; they never skip.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/recordsink"
	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// rig is one Traefik with routers to the same upstream: bare.test
// without the plugin, tap.test with it, and three with limits: limits.test
// (failing open), limits-closed.test (failing closed) and limits-down.test
// (failing open, its collector down).
type rig struct {
	entry     string // Traefik's entrypoint, host:port
	collector *collector
	upstream  *upstream
}

var env *rig

func TestMain(m *testing.M) {
	tb := &stack.MainTB{}
	code := run(m, stack.New(tb))
	tb.Close()
	os.Exit(code)
}

func run(m *testing.M, s *stack.T) int {
	col := newCollector()
	defer col.srv.Close()
	up := newUpstream()
	defer up.srv.Close()

	// A collector that is not there: nothing listens on this port.
	down := s.Port()
	tr := s.Traefik(fmt.Sprintf(dynamicConfig, col.srv.URL, up.srv.URL, fmt.Sprintf("http://127.0.0.1:%d", down)),
		func(tr *stack.Traefik) {
			tr.ReadyHosts = []string{"bare.test", "tap.test", "limits.test", "limits-closed.test", "limits-down.test"}
			tr.ReadyPath = "/json"
		})
	env = &rig{entry: tr.Addr(), collector: col, upstream: up}
	code := m.Run()
	if err := tr.Stop(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	logText, err := tr.Log()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if bad := unexpectedErrors(logText); len(bad) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: Traefik logged errors:\n%s\n", bytes.Join(bad, []byte("\n")))
		return 1
	}
	return code
}

// tapTraefik starts a Traefik of the test's own with one router: Host
// name.test, through the llmtap plugin (route name, sending to collector,
// with options: more of its YAML settings, one per line) to upstream.
func tapTraefik(s *stack.T, name, collector, upstream string, options ...string) *stack.Traefik {
	var extra strings.Builder
	for _, o := range options {
		extra.WriteString("\n          " + o)
	}
	host := name + ".test"
	return s.Traefik(fmt.Sprintf(`
http:
  routers:
    %[1]s:
      rule: Host(`+"`%[2]s`"+`)
      service: up
      middlewares: [tap]
  middlewares:
    tap:
      plugin:
        llmtap:
          collectorURL: %[3]q
          route: %[1]s%[4]s
  services:
    up:
      loadBalancer:
        servers:
          - url: %[5]q
`, name, host, collector, extra.String(), upstream), func(tr *stack.Traefik) {
		tr.ReadyHosts, tr.ReadyPath = []string{host}, "/"
	})
}

// expectedErrors are the plugin's own error lines that the tests cause on
// purpose: a collector that is down or too slow for the limit check.
var expectedErrors = [][]byte{
	[]byte("llmtap: limits not checked"),
	[]byte("llmtap: batch not delivered to the collector"),
}

// unexpectedErrors returns the lines of Traefik's log that say error or
// panic, but for expectedErrors. The plugin must not turn the proxy's
// deliberate aborts (client gone, upstream broken off) into panics that
// Traefik logs as errors.
func unexpectedErrors(logText []byte) [][]byte {
	var bad [][]byte
	for _, line := range bytes.Split(logText, []byte("\n")) {
		lower := bytes.ToLower(line)
		if !bytes.Contains(lower, []byte("panic")) && !bytes.Contains(lower, []byte("error")) && !bytes.Contains(line, []byte(" ERR ")) {
			continue
		}
		expected := false
		for _, e := range expectedErrors {
			if bytes.Contains(line, e) && !bytes.Contains(lower, []byte("panic")) {
				expected = true
			}
		}
		if !expected {
			bad = append(bad, line)
		}
	}
	return bad
}

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
    limits:
      rule: Host(` + "`limits.test`" + `)
      service: up
      middlewares: [llmtap-limits]
    limits-closed:
      rule: Host(` + "`limits-closed.test`" + `)
      service: up
      middlewares: [llmtap-limits-closed]
    limits-down:
      rule: Host(` + "`limits-down.test`" + `)
      service: up
      middlewares: [llmtap-limits-down]
  middlewares:
    llmtap:
      plugin:
        llmtap:
          collectorURL: %[1]q
          route: e2e
          flushInterval: 50ms
          maxResponseBodyBytes: 65536
    llmtap-limits:
      plugin:
        llmtap:
          collectorURL: %[1]q
          route: e2e-limits
          tenantHeader: X-Tenant-ID
          flushInterval: 50ms
          limits:
            enabled: true
            timeout: 200ms
    llmtap-limits-closed:
      plugin:
        llmtap:
          collectorURL: %[1]q
          route: e2e-limits-closed
          tenantHeader: X-Tenant-ID
          flushInterval: 50ms
          limits:
            enabled: true
            timeout: 200ms
            failureMode: closed
    llmtap-limits-down:
      plugin:
        llmtap:
          collectorURL: %[3]q
          route: e2e-limits-down
          tenantHeader: X-Tenant-ID
          limits:
            enabled: true
            timeout: 200ms
  services:
    up:
      loadBalancer:
        servers:
          - url: %[2]q
`

// collector is an in-process stand-in for the llmtap collector: a
// record sink, and the limit checks' answers.
type collector struct {
	srv  *httptest.Server
	sink *recordsink.Sink

	mu     sync.Mutex
	checks map[string]llmtap.LimitCheck // by request id
}

func newCollector() *collector {
	c := &collector{sink: recordsink.New(), checks: map[string]llmtap.LimitCheck{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == llmtap.LimitsCheckPath {
			c.check(w, r)
			return
		}
		c.sink.ServeHTTP(w, r)
	}))
	return c
}

// Limit check answers of the fake collector, by tenant.
const (
	tenantOver = "over" // denied, 429
	tenantSlow = "slow" // answered after the plugin's timeout
	denialBody = `{"error":{"message":"tenant over is over its token limit","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}`
)

// check answers a limit check by the tenant it names: tenantOver is
// denied, tenantSlow waits past every router's timeout, any other tenant
// is allowed and gets its reserve (1000 when it asked none).
func (c *collector) check(w http.ResponseWriter, r *http.Request) {
	var chk llmtap.LimitCheck
	if err := json.NewDecoder(r.Body).Decode(&chk); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.checks[chk.RequestID] = chk
	c.mu.Unlock()
	h := w.Header()
	switch chk.Tenant {
	case tenantOver:
		h.Set(llmtap.HeaderDecision, llmtap.DecisionDeny)
		h.Set("Content-Type", "application/json")
		h.Set("Retry-After", "5")
		h.Set("RateLimit-Limit", "100")
		h.Set("RateLimit-Remaining", "0")
		h.Set("RateLimit-Reset", "5")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, denialBody)
	case tenantSlow:
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		h.Set(llmtap.HeaderDecision, llmtap.DecisionAllow)
	default:
		// A stand-in for the collector's count: a token a byte.
		reserve := int64(len(chk.Body))
		if reserve == 0 {
			reserve = 1000
		}
		h.Set(llmtap.HeaderDecision, llmtap.DecisionAllow)
		h.Set(llmtap.HeaderReserved, fmt.Sprint(reserve))
		h.Set("RateLimit-Limit", "100")
		h.Set("RateLimit-Remaining", "99")
		h.Set("RateLimit-Reset", "60")
		w.WriteHeader(http.StatusOK)
	}
}

// limitCheck returns the limit check made for a request id.
func (c *collector) limitCheck(id string) (llmtap.LimitCheck, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	chk, ok := c.checks[id]
	return chk, ok
}

// record waits for the record of one request id.
func (c *collector) record(t *testing.T, id string) llmtap.Record {
	t.Helper()
	return c.sink.Record(t, id)
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
