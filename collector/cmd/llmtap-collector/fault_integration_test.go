//go:build integration

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	"github.com/llmtap/llmtap/mock"
)

// The fault suite: each part of the path fails the hard way while traffic
// flows, on loopback, every wait bounded.
//
//   - TestFaultClickHouseKilledUnderLoad: ClickHouse SIGKILLed and
//     restarted under ingest load; every acknowledged record stored
//     exactly once. (TestClickHouseOutage is the clean stop.)
//   - Redis SIGKILLed: TestLimitsThroughTraefik's subtest "Redis killed:
//     each limit's failure mode, then recovery" (limits_integration_test.go)
//     covers a fail-open and a fail-closed tenant on a fail-open router and
//     the recovery; TestFaultRedisKilledClosedRouter adds the fail-closed
//     router, whose own failure mode must not apply while the collector
//     answers.
//   - TestFaultCollectorKilledUnderProxyLoad: the collector process hung
//     (SIGSTOP), then SIGKILLed, then restarted, under steady load through
//     a real Traefik: every request succeeds, the limits route waits at
//     most its limits.timeout, the route without limits not at all.
//   - TestFaultHostileInputEndToEnd: hostile input (the unit table is
//     collector/http/hostile_test.go) against the real collector and
//     ClickHouse: 4xx answers, no crash, odd ids bound as values.
//
// The soak (scripts/soak.sh) checks memory over 100k requests.

// TestFaultClickHouseKilledUnderLoad: record batches pour in from two
// senders (startLoad) while ClickHouse is killed with SIGKILL, stays down
// for 3 s and comes back; once the spool is replayed every acknowledged
// (202) record is in ClickHouse exactly once.
func TestFaultClickHouseKilledUnderLoad(t *testing.T) {
	c := startCollector(t, nil)
	l := startLoad(c.base, "chkill", 2, 25)
	l.waitAcked(t, 500, 1500*time.Millisecond)
	ackedBefore := l.ackedCount()
	if err := c.ch.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(3 * time.Second)
	ackedDown := l.ackedCount() - ackedBefore
	if err := c.ch.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse down (SIGKILL to restart) for %v; %d records acknowledged meanwhile", time.Since(killed).Round(time.Millisecond), ackedDown)
	l.waitAcked(t, ackedBefore+ackedDown+500, 1500*time.Millisecond)
	acked := l.finish(t)
	if ackedDown == 0 {
		t.Error("no record was acknowledged while ClickHouse was down: the spool took nothing")
	}

	// The spool is replayed once ClickHouse answers the writer's probe.
	began := time.Now()
	var stored map[string]int
	for deadline := began.Add(90 * time.Second); ; {
		stored = rowsByID(t, c, "llmtap_it", "chkill")
		lost := missing(acked, stored)
		if len(lost) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("90 s after the load stopped %d of %d acknowledged records are not in ClickHouse, e.g. %q", len(lost), len(acked), lost[:min(5, len(lost))])
		}
		time.Sleep(500 * time.Millisecond)
	}
	out := c.query(t, "SELECT count(), uniqExact(request_id) FROM llmtap_it.requests FINAL WHERE request_id LIKE 'chkill-%'")
	count, distinct, _ := strings.Cut(out, "\t")
	if count != distinct {
		t.Errorf("ClickHouse holds %s rows of %s distinct ids after FINAL: some were stored twice", count, distinct)
	}
	var twice, unacked []string
	for id, n := range stored {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", id, n))
		}
		if !acked[id] {
			unacked = append(unacked, id)
		}
	}
	if len(twice) > 0 {
		sort.Strings(twice)
		t.Errorf("%d ids have several rows after FINAL, e.g. %q", len(twice), twice[:min(5, len(twice))])
	}
	m := scrape(t, c.base)
	t.Logf("all %d acknowledged records stored once, %v after the load stopped; rows %s (%d of ids never acknowledged: batches refused with 503 part-way); replayed from the spool %s, failed inserts %s",
		len(acked), time.Since(began).Round(100*time.Millisecond), count, len(unacked), m["llmtap_storage_replayed_total"], m["llmtap_storage_write_errors_total"])
	if m["llmtap_storage_dropped_total"] != "0" {
		t.Errorf("llmtap_storage_dropped_total %s: acknowledged records were lost", m["llmtap_storage_dropped_total"])
	}
	if m["llmtap_storage_replayed_total"] == "0" && m["llmtap_storage_write_errors_total"] == "0" {
		t.Error("neither a failed insert nor a replay: the kill did not reach the writer")
	}
}

// ackedCount is how many records the load has had acknowledged so far.
func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// rowsByID counts the rows of each request id with prefix in ClickHouse,
// after FINAL.
func rowsByID(t *testing.T, c *collectorUnderTest, db, prefix string) map[string]int {
	t.Helper()
	out := c.query(t, "SELECT request_id, count() FROM "+db+".requests FINAL WHERE request_id LIKE '"+prefix+"-%' GROUP BY request_id")
	ids := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if id, n, ok := strings.Cut(line, "\t"); ok {
			ids[id], _ = strconv.Atoi(n)
		}
	}
	return ids
}

// scrape returns the collector's unlabelled metrics (and labelled ones
// under their whole series name) with their values as exposed.
func scrape(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			m[line[:i]] = line[i+1:]
		}
	}
	return m
}

// TestFaultRedisKilledClosedRouter: with Redis killed and the collector
// up, the collector answers every check by the tenant's failure mode, and
// a router that fails closed forwards that answer instead of applying its
// own failure mode (which is for a collector that does not answer): a
// fail-open tenant passes, a fail-closed one gets the collector's 503.
func TestFaultRedisKilledClosedRouter(t *testing.T) {
	s, up := startLimitStack(t)
	if resp, body, _ := s.chat(t, "closed.test", "strict"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the kill: %d %s", resp.StatusCode, body)
	}
	if err := s.redis.Kill(); err != nil {
		t.Fatal(err)
	}
	resp, body, tookOpen := s.chat(t, "closed.test", "e")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "[DONE]") || up.hitsOf("e") != 1 {
		t.Fatalf("fail-open tenant on a fail-closed router, Redis down: %d %s (upstream saw %d)", resp.StatusCode, body, up.hitsOf("e"))
	}
	resp, body, tookClosed := s.chat(t, "closed.test", "strict")
	// The collector's denial names the tenant; the plugin's own 503 (the
	// router's failure mode) would not.
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"reason":"unavailable"`) ||
		!strings.Contains(string(body), `"tenant":"strict"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fail-closed tenant on a fail-closed router, Redis down: %d %s", resp.StatusCode, body)
	}
	t.Logf("Redis killed, fail-closed router: fail-open tenant 200 in %v, fail-closed tenant 503 in %v (redis.timeout 100ms)", tookOpen, tookClosed)
	if tookOpen > time.Second || tookClosed > time.Second {
		t.Errorf("checks with Redis down took %v and %v, want well within a second", tookOpen, tookClosed)
	}
	m := scrape(t, s.collector.base)
	if m[`llmtap_limit_checks_total{decision="failed_open"}`] == "" || m[`llmtap_limit_checks_total{decision="failed_closed"}`] == "" {
		t.Errorf("no failed_open or failed_closed checks counted: %v", m)
	}
	if err := s.redis.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, _, _ := s.chat(t, "closed.test", "strict")
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fail-closed tenant still gets %d 10 s after Redis came back", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The collector-kill test's Traefik: two routers to the mock, one
// checking limits (fail open after 200 ms), one without limits.
const faultRouters = `
http:
  routers:
    limited:
      rule: Host(` + "`limited.test`" + `)
      service: mock
      middlewares: [limited]
    plain:
      rule: Host(` + "`plain.test`" + `)
      service: mock
      middlewares: [plain]
  middlewares:
    limited:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: limited, tenantHeader: X-Tenant-ID, flushInterval: 100ms, limits: {enabled: true, timeout: 200ms, failureMode: open}}
    plain:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, route: plain, flushInterval: 100ms}
  services:
    mock:
      loadBalancer:
        servers:
          - url: %[2]q
`

// limitsTimeout is the limited router's limits.timeout; latencyMargin
// what a request may take beyond it on this busy machine.
const (
	limitsTimeout = 200 * time.Millisecond
	latencyMargin = 300 * time.Millisecond
)

// TestFaultCollectorKilledUnderProxyLoad: steady load (50 streamed chat
// completions a second on each route) through a real Traefik while the
// collector, a process of its own, is first hung (SIGSTOP: its sockets
// accept but nothing answers), then killed (SIGKILL), then started again.
// Every request gets 200 and its whole stream; on the limits route a
// request waits at most limits.timeout (plus a margin) for the collector,
// on the other it never waits; after the restart the collector takes
// checks and records again.
func TestFaultCollectorKilledUnderProxyLoad(t *testing.T) {
	s := stack.New(t)
	ch := s.ClickHouse()
	rd := s.Redis()
	cfg := faultCollectorConfig(s, ch, rd)
	p := startProcess(s, cfg)
	base := p.base()

	up := httptest.NewServer(mock.New(mock.Options{TTFT: 2 * time.Millisecond, Gap: time.Millisecond, Tokens: 4}))
	t.Cleanup(up.Close)
	// The plugin's own rate-limited lines about the collector are
	// expected; anything else (a panic, Traefik's own errors) is not.
	entry := startTraefik(t, s, traefikOptions{
		Dynamic:    fmt.Sprintf(faultRouters, base, up.URL),
		ReadyHosts: []string{"limited.test", "plain.test"},
		ReadyPath:  "/healthz",
	}, []string{"llmtap: limits not checked", "llmtap: batch not delivered"}).Addr()

	pl := startProxyLoad(entry, []string{"limited.test", "plain.test"}, 50)
	time.Sleep(3 * time.Second)
	pl.setPhase("hung")
	if err := p.Process().Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	pl.setPhase("dead")
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	pl.setPhase("restart")
	startProcess(s, cfg)
	pl.setPhase("after")
	time.Sleep(3 * time.Second)
	samples := pl.finish()

	phases := []string{"before", "hung", "dead", "restart", "after"}
	byKey := map[string][]time.Duration{}
	var failures []string
	for _, s := range samples {
		if s.err != nil {
			failures = append(failures, fmt.Sprintf("%s %s after %v: %v", s.phase, s.host, s.took.Round(time.Millisecond), s.err))
			continue
		}
		byKey[s.host+" "+s.phase] = append(byKey[s.host+" "+s.phase], s.took)
	}
	t.Logf("%d requests; latency by route and phase (the collector: up, SIGSTOP, SIGKILL, starting, up again):", len(samples))
	t.Logf("  %-13s %-8s %5s %8s %8s %8s", "route", "phase", "n", "p50", "p99", "max")
	stats := map[string][3]time.Duration{}
	for _, host := range []string{"limited.test", "plain.test"} {
		for _, ph := range phases {
			d := byKey[host+" "+ph]
			p50, p99, mx := quantiles(d)
			stats[host+" "+ph] = [3]time.Duration{p50, p99, mx}
			t.Logf("  %-13s %-8s %5d %8v %8v %8v", host, ph, len(d), p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), mx.Round(100*time.Microsecond))
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed, e.g.:\n%s", len(failures), len(samples), strings.Join(failures[:min(10, len(failures))], "\n"))
	}
	for _, ph := range []string{"before", "hung", "dead", "after"} {
		if n := len(byKey["limited.test "+ph]) + len(byKey["plain.test "+ph]); n < 100 {
			t.Errorf("only %d requests succeeded while the collector was %s: the load did not run", n, ph)
		}
	}
	bound := limitsTimeout + latencyMargin
	for _, ph := range []string{"hung", "dead", "restart"} {
		if p99 := stats["limited.test "+ph][1]; p99 > bound {
			t.Errorf("limits route, collector %s: p99 %v, want at most limits.timeout + %v = %v", ph, p99, latencyMargin, bound)
		}
	}
	// A hung collector costs the limits route its timeout, and only it.
	if p50 := stats["limited.test hung"][0]; p50 < limitsTimeout {
		t.Errorf("limits route, collector hung: p50 %v under limits.timeout %v: the checks did not wait for the hung collector", p50, limitsTimeout)
	}
	if p99 := stats["plain.test hung"][1]; p99 >= limitsTimeout {
		t.Errorf("route without limits, collector hung: p99 %v, want under %v (it never waits for the collector)", p99, limitsTimeout)
	}

	// After the restart, checks and records reach the collector again.
	id := fmt.Sprintf("fault-after-%d", time.Now().UnixNano())
	req, _ := http.NewRequest(http.MethodPost, "http://"+entry+"/v1/chat/completions", strings.NewReader(faultChat))
	req.Host = "limited.test"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a request after the restart: %d", resp.StatusCode)
	}
	found := false
	for deadline := time.Now().Add(20 * time.Second); !found && time.Now().Before(deadline); {
		resp, err := getAuthorized(base + "/v1/requests/" + id)
		if err == nil {
			found = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		if !found {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !found {
		t.Errorf("request %s, sent after the restart, did not reach ClickHouse through the collector within 20 s", id)
	}
	if n, _ := strconv.Atoi(scrape(t, base)[`llmtap_limit_checks_total{decision="allowed"}`]); n == 0 {
		t.Error("the restarted collector answered no limit check")
	}
}

// faultCollectorConfig is the process collector's configuration
// (ClickHouse, Redis, a default policy so every check reaches Redis).
func faultCollectorConfig(s *stack.T, ch *stack.ClickHouse, rd *stack.Redis) stack.CollectorConfig {
	c := s.CollectorConfig(ch)
	c.ClickHouse.Database = "llmtap_fault"
	c.ClickHouse.BatchSize = 500
	c.Redis = &stack.CollectorRedis{Addr: rd.Addr()}
	c.Limits = &stack.CollectorLimits{Default: json.RawMessage(`{"requests":{"limit":1000000,"period":"1m"}}`)}
	return c
}

// faultChat is a small streamed chat completion.
const faultChat = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi there"}]}`

// proxyLoad sends faultChat through Traefik at a fixed rate per host (open
// loop: a slow answer does not slow the load), noting each request's
// latency under the phase current when it was sent.
type proxyLoad struct {
	entry  string
	client *http.Client
	stop   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	slots  chan struct{} // bounds the requests in flight

	mu      sync.Mutex
	phase   string
	samples []proxySample
}

type proxySample struct {
	host, phase string
	took        time.Duration
	err         error
}

func startProxyLoad(entry string, hosts []string, perSecond int) *proxyLoad {
	l := &proxyLoad{
		entry:  entry,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		slots:  make(chan struct{}, 256),
		phase:  "before",
	}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.mu.Lock()
			phase := l.phase
			l.mu.Unlock()
			for _, host := range hosts {
				select {
				case l.slots <- struct{}{}:
				default:
					l.note(proxySample{host: host, phase: phase, err: fmt.Errorf("the load generator has %d requests in flight", cap(l.slots))})
					continue
				}
				l.wg.Add(1)
				go func() {
					defer func() { <-l.slots; l.wg.Done() }()
					took, err := l.one(host)
					l.note(proxySample{host: host, phase: phase, took: took, err: err})
				}()
			}
		}
	}()
	return l
}

func (l *proxyLoad) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
}

func (l *proxyLoad) note(s proxySample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples = append(l.samples, s)
}

// one sends one request and reads its stream to the end.
func (l *proxyLoad) one(host string) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+l.entry+"/v1/chat/completions", strings.NewReader(faultChat))
	if err != nil {
		return 0, err
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-ID", "fault")
	began := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		return time.Since(began), err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	switch {
	case err != nil:
		return took, fmt.Errorf("reading the stream: %w", err)
	case resp.StatusCode != http.StatusOK:
		return took, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	case !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")):
		return took, fmt.Errorf("incomplete stream: %.200q", body)
	}
	return took, nil
}

// finish stops the load, waits for the requests in flight and returns
// every sample.
func (l *proxyLoad) finish() []proxySample {
	close(l.stop)
	<-l.done
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.samples
}

// quantiles returns the median, the 99th percentile and the maximum.
func quantiles(d []time.Duration) (p50, p99, mx time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[(len(s)*99)/100], s[len(s)-1]
}

// hostileE2E is one hostile request to the real collector.
type hostileE2E struct {
	desc         string
	method, path string
	token, enc   string
	body         []byte
	status       int
	want         string
}

// TestFaultHostileInputEndToEnd: a representative set of hostile requests
// (collector/http/hostile_test.go has them all) sent to the real collector
// over real connections, four senders at once, with real ClickHouse behind
// it. Every answer is the expected 4xx with its message; odd request ids,
// SQL included, are looked up as values (a known row exists, so an
// injected OR 1=1 would find it); afterwards the collector is healthy and
// ClickHouse holds only the one valid record.
func TestFaultHostileInputEndToEnd(t *testing.T) {
	c := startCollector(t, func(c *stack.CollectorConfig) {
		c.AdminToken = "it-admin"
		c.MaxBodyBytes = "1MiB"
	})
	c.post(t, streamRecord("hostile-known"))
	waitFact(t, c.base, "hostile-known")

	rec := func(id string) string {
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(streamRecord(id))
		return b.String()
	}
	gzipped := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = io.WriteString(zw, s)
		_ = zw.Close()
		return b.Bytes()
	}
	good := gzipped(rec("hostile-never"))
	cases := []hostileE2E{
		{"records without a token", "POST", "/v1/records", "", "", []byte(rec("hostile-never")), 401, "missing or wrong bearer token"},
		{"records with the admin token", "POST", "/v1/records", "it-admin", "", []byte(rec("hostile-never")), 401, "bearer token"},
		{"records over max_body_bytes", "POST", "/v1/records", "it-token", "", bytes.Repeat([]byte("x"), 1<<20+1), 413, "body over 1048576 bytes"},
		{"gzip bomb", "POST", "/v1/records", "it-token", "gzip", gzipped(strings.Repeat(" ", 64<<20)), 413, "body over 1048576 bytes"},
		{"not gzip", "POST", "/v1/records", "it-token", "gzip", []byte("plain text"), 400, "content is not gzip"},
		{"gzip cut short", "POST", "/v1/records", "it-token", "gzip", good[:len(good)/2], 400, "the body ends too early"},
		{"br", "POST", "/v1/records", "it-token", "br", []byte(rec("hostile-never")), 415, "want gzip or none"},
		{"bad JSON", "POST", "/v1/records", "it-token", "", []byte("{not json"), 400, "not a record"},
		{"a JSON array", "POST", "/v1/records", "it-token", "", []byte(`[1,2]`), 400, "cannot unmarshal array"},
		{"invalid UTF-8", "POST", "/v1/records", "it-token", "", []byte("\xff\xfe"), 400, "invalid character"},
		{"a huge number", "POST", "/v1/records", "it-token", "", []byte(`{"v":1,"request_id":"hostile-x","start_unix_ns":1e400}`), 400, "cannot unmarshal number"},
		{"a request id of 129 characters", "POST", "/v1/records", "it-token", "", []byte(rec("hostile-" + strings.Repeat("i", 121))), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"a request id with a tab", "POST", "/v1/records", "it-token", "", []byte(rec("hostile\tid")), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup without a token", "GET", "/v1/requests/hostile-known", "", "", nil, 401, "bearer token"},
		{"lookup with the ingest token", "GET", "/v1/requests/hostile-known", "it-token", "", nil, 401, "bearer token"},
		{"lookup of 129 characters", "GET", "/v1/requests/" + strings.Repeat("i", 129), "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: SQL", "GET", "/v1/requests/'%20OR%201=1%20--", "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: SQL with a LIKE", "GET", "/v1/requests/'%20OR%20request_id%20LIKE%20'hostile-%25", "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: a statement", "GET", "/v1/requests/';%20DROP%20TABLE%20llmtap_it.requests;%20--", "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: a backslash and a quote", "GET", `/v1/requests/%5C'`, "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: a NUL", "GET", "/v1/requests/hostile-known%00", "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: unicode", "GET", "/v1/requests/%E6%97%A5%E6%9C%AC%F0%9F%A6%99", "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"lookup: a valid id not stored", "GET", "/v1/requests/hostile-never-stored", "it-read", "", nil, 404, "not found"},
		{"lookup: dot-dot", "GET", "/v1/requests/../../etc/passwd", "it-read", "", nil, 404, "no endpoint"},
		{"check: bad JSON", "POST", "/v1/limits/check", "it-token", "", []byte(`{"tenant":`), 400, "not a JSON object"},
		{"check: a huge reserve", "POST", "/v1/limits/check", "it-token", "", []byte(`{"reserve":1e30}`), 400, "cannot unmarshal number"},
		{"check: wrong token", "POST", "/v1/limits/check", "nope", "", []byte(`{}`), 401, "bearer token"},
		{"status: a tenant with a NUL", "GET", "/v1/limits/a%00", "it-read", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"put: bad JSON", "PUT", "/v1/limits/a", "it-admin", "", []byte(`{"requests":`), 400, "not valid JSON"},
		{"put: over 64 KiB", "PUT", "/v1/limits/a", "it-admin", "", bytes.Repeat([]byte(" "), 70<<10), 413, "body over"},
		{"put: the ingest token", "PUT", "/v1/limits/a", "it-token", "", []byte(`{}`), 401, "bearer token"},
		{"delete: a tenant of 129 characters", "DELETE", "/v1/limits/" + strings.Repeat("t", 129), "it-admin", "", nil, 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for sender := 0; sender < 4; sender++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, h := range cases {
				req, err := http.NewRequest(h.method, c.base+h.path, bytes.NewReader(h.body))
				if err != nil {
					t.Errorf("%s: %v", h.desc, err)
					continue
				}
				if h.token != "" {
					req.Header.Set("Authorization", "Bearer "+h.token)
				}
				if h.enc != "" {
					req.Header.Set("Content-Encoding", h.enc)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("%s: %v", h.desc, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != h.status || !strings.Contains(string(body), h.want) || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s: %d %s %.300s, want %d containing %s", h.desc, resp.StatusCode, resp.Header.Get("Content-Type"), body, h.status, h.want)
				}
			}
		}()
	}
	wg.Wait()

	// What net/http refuses before the collector sees it.
	for _, raw := range []struct{ desc, req, want string }{
		{"garbage", "GARBAGE\r\n\r\n", "HTTP/1.1 400 "},
		{"a bad escape in the path", "GET /v1/requests/%zz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 "},
		{"a header of 2 MiB", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", "HTTP/1.1 431 "},
	} {
		if got := rawHTTP(t, strings.TrimPrefix(c.base, "http://"), raw.req); !strings.HasPrefix(got, raw.want) {
			t.Errorf("%s: answered %.80q, want %q", raw.desc, got, raw.want)
		}
	}

	for _, path := range []string{"/healthz", "/readyz", "/v1/requests/hostile-known"} {
		resp, err := getAuthorized(c.base + path)
		if err != nil {
			t.Fatalf("after the hostile input, %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("after the hostile input, %s answered %d", path, resp.StatusCode)
		}
	}
	time.Sleep(500 * time.Millisecond) // past flush_interval: anything queued is written
	if out := c.query(t, "SELECT groupArray(request_id) FROM llmtap_it.requests FINAL WHERE request_id LIKE 'hostile-%'"); out != "['hostile-known']" {
		t.Errorf("ClickHouse holds %s, want only hostile-known", out)
	}
	m := scrape(t, c.base)
	t.Logf("%d hostile requests answered as expected; records rejected at ingest: bad_json %s, bad_request_id %s",
		4*len(cases)+3, m[`llmtap_records_rejected_total{reason="bad_json"}`], m[`llmtap_records_rejected_total{reason="bad_request_id"}`])
}

// waitFact waits until the collector answers a request id.
func waitFact(t *testing.T, base, id string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err := getAuthorized(base + "/v1/requests/" + id)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s not stored within 15 s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawHTTP writes req on a new connection and returns the start of the
// answer.
func rawHTTP(t *testing.T, addr, req string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, req) // the server may answer and close before reading it all
	b := make([]byte, 256)
	n, _ := io.ReadAtLeast(conn, b, 12)
	return string(b[:n])
}

// TestFaultCollectorStartsWhileClickHouseDown: the collector starts with
// ClickHouse not running, answers limit checks (Redis alone), takes
// records into the spool, and once ClickHouse starts migrates and replays
// them, each stored once.
func TestFaultCollectorStartsWhileClickHouseDown(t *testing.T) {
	s := stack.New(t)
	rd := s.Redis()
	ch := &stack.ClickHouse{TCPPort: s.Port(), HTTPPort: s.Port()} // not started
	ch.Dir = s.Folder("clickhouse")
	c := startCollectorWith(t, collectorSetup{stack: s, ch: ch, configure: func(c *stack.CollectorConfig) {
		c.ClickHouse.DialTimeout = "1s"
		c.Redis = &stack.CollectorRedis{Addr: rd.Addr()}
		c.Limits = &stack.CollectorLimits{Default: json.RawMessage(`{"requests":{"limit":1,"period":"1h"}}`)}
	}})

	check := func() int {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/limits/check", strings.NewReader(`{"tenant":"while-down","route":"r"}`))
		req.Header.Set("Authorization", "Bearer it-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := check(), check(); a != http.StatusOK || b != http.StatusTooManyRequests {
		t.Fatalf("limit checks with ClickHouse down: %d then %d, want 200 then 429", a, b)
	}
	readyz := func() (int, map[string]string) {
		resp, err := http.Get(c.base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Parts map[string]string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Parts
	}
	if code, parts := readyz(); code != http.StatusOK || !strings.HasPrefix(parts["clickhouse"], "down: ") {
		t.Errorf("/readyz with ClickHouse down: %d %v, want 200 (the spool takes records) saying ClickHouse is down", code, parts)
	}
	c.post(t, streamRecord("while-down-1"), streamRecord("while-down-2"))
	spool := c.stack.Dir
	waitUntil(t, "the records in the spool", 30*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(spool, "spool-*", "spool", "*.batch"))
		return len(files) > 0
	})

	s.Run(ch)
	waitUntil(t, "the spooled records in ClickHouse", 60*time.Second, func() bool {
		out, err := ch.Query(context.Background(), "SELECT count() FROM llmtap_it.requests WHERE request_id LIKE 'while-down-%'")
		return err == nil && out == "2"
	})
	// Replayed once: two rows before any merge, not more.
	if out, err := ch.Query(context.Background(), "SELECT count() FROM llmtap_it.requests WHERE request_id LIKE 'while-down-%'"); err != nil || out != "2" {
		t.Errorf("rows: %q, %v; want 2", out, err)
	}
	if code, parts := readyz(); code != http.StatusOK || parts["clickhouse"] != "up" {
		t.Errorf("/readyz with ClickHouse back: %d %v", code, parts)
	}
}

// waitUntil polls cond every 50 ms until it holds, failing the test after d.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}
