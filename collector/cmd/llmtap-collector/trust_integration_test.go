//go:build integration

package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// The trust boundaries through the real Traefik, the collector, ClickHouse
// and Redis (docs/security.md): what a hostile client gets, what is
// stored, and that the quota held. Every tenant may send 2 requests an
// hour.

const trustRouters = `
http:
  routers:
    keyed:
      rule: Host(` + "`keyed.test`" + `)
      service: up
      middlewares: [keyed]
    traefik-sets-tenant:
      rule: Host(` + "`set.test`" + `)
      service: up
      middlewares: [set-tenant, headered]
    ready:
      rule: Host(` + "`ready.test`" + `)
      service: up
      middlewares: [keyed]
  middlewares:
    # The default: the tenant is the API key's, limits fail open.
    keyed:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: keyed, flushInterval: 50ms, limits: {enabled: true, timeout: 500ms}}
    # Traefik itself sets the tenant header, over the client's.
    set-tenant:
      headers:
        customRequestHeaders:
          X-Tenant-ID: team-from-traefik
    headered:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: headered, tenantHeader: X-Tenant-ID, flushInterval: 50ms, limits: {enabled: true, timeout: 500ms}}
  services:
    up:
      loadBalancer:
        servers:
          - url: %[2]q
`

// idUpstream answers a chat completion and notes the X-Request-Id and
// X-Tenant-ID of each request it saw.
type idUpstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	ids     []string
	tenants []string
}

func newIDUpstream() *idUpstream {
	u := &idUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/chat/completions" {
			u.mu.Lock()
			u.ids = append(u.ids, r.Header.Get("X-Request-Id"))
			u.tenants = append(u.tenants, r.Header.Get("X-Tenant-ID"))
			u.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"it-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	return u
}

func (u *idUpstream) seen() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.ids)
}

// hostile sends one chat completion through host with the given headers
// (set raw, so that odd bytes reach Traefik as they are) and returns the
// status and the X-Request-Id the client got.
func hostileChat(t *testing.T, s *rig, host string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.entry+"/v1/chat/completions",
		strings.NewReader(`{"model":"it-model","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header[k] = []string{v}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

func TestTrustBoundariesThroughTraefik(t *testing.T) {
	up := newIDUpstream()
	t.Cleanup(up.srv.Close)
	s := startStack(t, stackOptions{
		collector: func(c *stack.CollectorConfig, redisAddr string) {
			c.Redis = &stack.CollectorRedis{Addr: redisAddr}
			c.Limits = &stack.CollectorLimits{Default: json.RawMessage(`{"requests":{"limit":2,"period":"1h"}}`)}
		},
		dynamic:   func(collectorURL string) string { return fmt.Sprintf(trustRouters, collectorURL, up.srv.URL) },
		readyHost: "ready.test",
	})
	madeID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	// spend uses up the quota of key: its 2 requests pass.
	spend := func(t *testing.T, key string) {
		t.Helper()
		for i := 0; i < 2; i++ {
			if code, _ := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": "Bearer " + key}); code != http.StatusOK {
				t.Fatalf("request %d of key %s: %d, want 200 within its quota", i+1, key, code)
			}
		}
	}

	t.Run("a forged tenant header neither frees a quota nor spends another's", func(t *testing.T) {
		spend(t, "sk-forger")
		victim := llmtap.KeyTenant("Bearer sk-victim")
		before := up.seen()
		for _, forged := range []string{"someone-new", victim} {
			code, _ := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": "Bearer sk-forger", "X-Tenant-Id": forged})
			if code != http.StatusTooManyRequests {
				t.Errorf("over quota with X-Tenant-ID %q: %d, want 429", forged, code)
			}
		}
		if n := up.seen() - before; n != 0 {
			t.Errorf("the upstream saw %d requests of a tenant over its quota", n)
		}
		// The victim's quota is whole.
		spend(t, "sk-victim")
	})

	t.Run("a request id with a tab or a byte over 0x7f does not turn limits off", func(t *testing.T) {
		spend(t, "sk-tabber")
		before := up.seen()
		for _, id := range []string{"a\tb", "caf\xc3\xa9", "a b", strings.Repeat("i", 129)} {
			code, got := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": "Bearer sk-tabber", "X-Request-Id": id})
			if code != http.StatusTooManyRequests {
				t.Errorf("over quota with X-Request-Id %q: %d, want 429", id, code)
			}
			if !madeID.MatchString(got) {
				t.Errorf("X-Request-Id %q: the client got %q, want an id the plugin made", id, got)
			}
		}
		if n := up.seen() - before; n != 0 {
			t.Errorf("the upstream saw %d requests of a tenant over its quota", n)
		}
		// Within a quota, the odd id is replaced for the upstream too, and
		// the record is stored under the new id.
		code, got := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": "Bearer sk-tab-fresh", "X-Request-Id": "x\ty"})
		if code != http.StatusOK || !madeID.MatchString(got) {
			t.Fatalf("a fresh key with an odd id: %d, id %q", code, got)
		}
		up.mu.Lock()
		last := up.ids[len(up.ids)-1]
		up.mu.Unlock()
		if last != got {
			t.Errorf("the upstream saw id %q, the client %q", last, got)
		}
		if f := s.fact(t, got); f["tenant"] != llmtap.KeyTenant("Bearer sk-tab-fresh") {
			t.Errorf("stored tenant %v", f["tenant"])
		}
	})

	t.Run("a tenant header Traefik sets wins over the client's", func(t *testing.T) {
		code, id := hostileChat(t, s, "set.test", map[string]string{"X-Tenant-Id": "victim\t\xff"})
		if code != http.StatusOK {
			t.Fatalf("%d, want 200", code)
		}
		if f := s.fact(t, id); f["tenant"] != "team-from-traefik" || f["tenant_source"] != llmtap.TenantFromHeader {
			t.Errorf("stored tenant %v from %v, want team-from-traefik from the header", f["tenant"], f["tenant_source"])
		}
	})

	t.Run("a key with a tab and bytes that are not UTF-8 names its own tenant", func(t *testing.T) {
		key := "Bearer sk-\tm\xffx\xc3"
		code, id := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": key})
		if code != http.StatusOK {
			t.Fatalf("%d, want 200", code)
		}
		if f := s.fact(t, id); f["tenant"] != llmtap.KeyTenant(key) || !llmtap.ValidID(f["tenant"].(string)) {
			t.Errorf("stored tenant %v, want %s", f["tenant"], llmtap.KeyTenant(key))
		}
		// Its quota is its own, and holds.
		for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
			if code, _ := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": key}); code != want {
				t.Errorf("request %d more: %d, want %d", i+1, code, want)
			}
		}
	})

	t.Run("long and many credentials: every request answered, keys never stored", func(t *testing.T) {
		long := strings.Repeat("K", 256<<10)
		var last string
		for i := 0; i < 40; i++ {
			key := fmt.Sprintf("sk-%d-%s", i, long)
			code, id := hostileChat(t, s, "keyed.test", map[string]string{"Authorization": "Bearer " + key})
			if code != http.StatusOK {
				t.Fatalf("credential %d: %d, want 200 (a new tenant each)", i, code)
			}
			last = id
		}
		f := s.fact(t, last)
		if want := llmtap.KeyTenant(fmt.Sprintf("Bearer sk-39-%s", long)); f["tenant"] != want {
			t.Errorf("stored tenant %v, want %s", f["tenant"], want)
		}
		if n := strings.TrimSpace(s.collector.query(t, "SELECT count() FROM llmtap_it.requests WHERE position(request_body, 'KKKKKKKK') > 0 OR position(tenant, 'KKKKKKKK') > 0")); n != "0" {
			t.Errorf("%s rows hold the key", n)
		}
	})

	t.Run("a batch with one bad line: the good ones stored and counted once, even sent twice", func(t *testing.T) {
		now := time.Now().UnixNano()
		good := func(id string) []byte {
			b, _ := jsonLine(&llmtap.Record{V: llmtap.RecordVersion, RequestID: id, Route: "batch", StartUnixNs: now, Status: 200, Outcome: llmtap.OutcomeCompleted})
			return b
		}
		bad := []byte(fmt.Sprintf(`{"v":1,"request_id":"bad\tid","route":"batch","start_unix_ns":%d,"status":200}`, now))
		batch := bytes.Join([][]byte{good("batch-good-1"), bad, good("batch-good-2")}, []byte("\n"))
		received := func() float64 { return metricTotal(t, s, "llmtap_records_received_total") }
		before := received()
		for i, want := range []string{
			`"accepted":2,"rejected":[{"line":2,"error":"request_id \"bad\\tid\": want`,
			`"accepted":0,"duplicates":2,"rejected":[{"line":2`,
		} {
			code, body := postBatch(t, s.collector.base, batch)
			if code != http.StatusAccepted || !strings.Contains(body, want) {
				t.Errorf("post %d: %d %s, want 202 with %s", i+1, code, body, want)
			}
		}
		for _, id := range []string{"batch-good-1", "batch-good-2"} {
			s.fact(t, id)
			if n := strings.TrimSpace(s.collector.query(t, "SELECT count() FROM llmtap_it.requests WHERE request_id = '"+id+"'")); n != "1" {
				t.Errorf("%s: %s rows, want 1", id, n)
			}
		}
		if got := received() - before; got != 2 {
			t.Errorf("records received went up by %v, want 2", got)
		}
	})
}

func jsonLine(r *llmtap.Record) ([]byte, error) { return json.Marshal(r) }

// postBatch posts NDJSON lines to the collector, gzipped as the plugin
// does, and returns the answer.
func postBatch(t *testing.T, base string, lines []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(lines)
	_ = zw.Close()
	req, _ := http.NewRequest(http.MethodPost, base+llmtap.RecordsPath, &buf)
	req.Header.Set("Authorization", "Bearer it-token")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricTotal is the value of an unlabelled metric of the collector.
func metricTotal(t *testing.T, s *rig, name string) float64 {
	t.Helper()
	return s.metricSum(t, "^"+name+" ")
}
