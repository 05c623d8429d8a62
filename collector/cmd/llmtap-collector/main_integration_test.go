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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector/internal/chtest"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// collectorUnderTest runs the whole collector against a real ClickHouse.
type collectorUnderTest struct {
	ch     *chtest.Server
	base   string
	client *http.Client  // trusts the collector's certificate when it serves HTTPS
	done   chan struct{} // closed when run returned, with its error in err
	err    error
	cancel context.CancelFunc
}

// stop stops the collector as SIGTERM would and returns run's error.
func (c *collectorUnderTest) stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	select {
	case <-c.done:
		return c.err
	case <-time.After(30 * time.Second):
		t.Fatal("collector did not stop within 30 s")
		return nil
	}
}

// startCollector starts ClickHouse and the collector, with extra appended
// to the collector's configuration file.
func startCollector(t *testing.T, extra string) *collectorUnderTest {
	t.Helper()
	return startCollectorWith(t, collectorSetup{extra: extra})
}

// collectorSetup is what startCollectorWith varies.
type collectorSetup struct {
	extra string // appended to the configuration file
	// client reaches the collector: non-nil when extra sets tls, a client
	// that trusts its certificate.
	client *http.Client
	// ch is the ClickHouse to use (nil: a new one), reached at chAddr
	// (empty: ch.Addr) with chExtra added to the clickhouse section.
	ch      *chtest.Server
	chAddr  string
	chExtra string
}

// startCollectorWith is startCollector as o says.
func startCollectorWith(t *testing.T, o collectorSetup) *collectorUnderTest {
	t.Helper()
	scheme, client := "https", o.client
	if client == nil {
		scheme, client = "http", http.DefaultClient
	}
	ch := o.ch
	if ch == nil {
		var err error
		if ch, err = chtest.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := ch.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	chAddr := o.chAddr
	if chAddr == "" {
		chAddr = ch.Addr
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "collector.yaml")
	yaml := fmt.Sprintf(`
listen: %q
ingest_token: ${TEST_INGEST_TOKEN}
read_token: it-read
log:
  level: warn
clickhouse:
  addr: %q
  database: llmtap_it
  flush_interval: 100ms
  batch_size: 50
  spool_dir: %q
  retention: 0s
  body_retention: 0s
`, listen, chAddr, filepath.Join(dir, "spool")) + o.chExtra + o.extra
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		if k == "TEST_INGEST_TOKEN" {
			return "it-token", true
		}
		return "", false
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &collectorUnderTest{ch: ch, base: scheme + "://" + listen, client: client, done: make(chan struct{}), cancel: cancel}
	go func() {
		c.err = run(ctx, []string{"-config", cfg}, io.Discard, env)
		close(c.done)
	}()
	t.Cleanup(func() {
		if err := c.stop(t); err != nil {
			t.Errorf("collector stopped with %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		select {
		case <-c.done:
			t.Fatalf("collector exited at start: %v", c.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("collector not ready within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *collectorUnderTest) post(t *testing.T, recs ...*llmtap.Record) int {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := json.NewEncoder(zw)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	zw.Close()
	req, _ := http.NewRequest(http.MethodPost, c.base+llmtap.RecordsPath, &buf)
	req.Header.Set("Authorization", "Bearer it-token")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingest answered %d: %s", resp.StatusCode, body)
	}
	return resp.StatusCode
}

// query runs SQL on ClickHouse's HTTP interface and returns the output.
func (c *collectorUnderTest) query(t *testing.T, sql string) string {
	t.Helper()
	resp, err := http.Get("http://" + c.ch.HTTP + "/?query=" + url.QueryEscape(sql))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("query %q: %d %s", sql, resp.StatusCode, out)
	}
	return strings.TrimSpace(string(out))
}

func streamRecord(id string) *llmtap.Record {
	events := []string{
		`data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n",
		`data: {"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n\n",
		`data: {"id":"c1","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}` + "\n\n",
		"data: [DONE]\n\n",
	}
	r := &llmtap.Record{
		V: llmtap.RecordVersion, RequestID: id, StartUnixNs: time.Now().UnixNano(), Route: "openai",
		Tenant: "team-a", TenantSource: llmtap.TenantFromHeader, Method: "POST", Host: "llm", Path: "/v1/chat/completions",
		RequestContentType: "application/json", RequestBody: []byte(`{"model":"gpt-4o-mini","stream":true}`),
		Status: 200, Outcome: llmtap.OutcomeCompleted, ResponseContentType: "text/event-stream", Streaming: true,
		HeaderNs: 30e6, DurationNs: 400e6,
	}
	var body []byte
	for i, ev := range events {
		body = append(body, ev...)
		r.WriteEnds = append(r.WriteEnds, int64(len(body)))
		r.WriteNs = append(r.WriteNs, int64(40+i*100)*1e6)
	}
	r.ResponseHead, r.ResponseTailOffset, r.ResponseBytes = body, int64(len(body)), int64(len(body))
	return r
}

func TestIngestStoreAndLookUp(t *testing.T) {
	c := startCollector(t, "")
	failed := streamRecord("it-error")
	failed.Status, failed.Outcome = 503, llmtap.OutcomeUpstreamError
	failed.ResponseContentType, failed.ResponseHead, failed.WriteEnds, failed.WriteNs = "application/json", []byte(`{"error":{"message":"overloaded"}}`), []int64{34}, []int64{12e6}
	failed.ResponseTailOffset, failed.ResponseBytes = 34, 34
	c.post(t, streamRecord("it-stream"), failed)

	var got map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := getAuthorized(c.base + "/v1/requests/it-stream")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("request it-stream not found: %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := map[string]any{"request_id": "it-stream", "tenant": "team-a", "route": "openai", "provider": "openai", "model": "gpt-4o-mini",
		"status": 200.0, "kind": "sse", "ttfb_ms": 40.0, "ttft_ms": 140.0, "duration_ms": 400.0, "input_tokens": 9.0, "output_tokens": 1.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if out := c.query(t, "SELECT error_type, status FROM llmtap_it.requests FINAL WHERE request_id = 'it-error'"); out != "upstream_5xx\t503" {
		t.Errorf("ClickHouse holds %q for it-error", out)
	}
	resp, err := getAuthorized(c.base + "/v1/requests/never-sent")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown id answered %d", resp.StatusCode)
	}
	resp, err = http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{
		`llmtap_requests_total{model="gpt-4o-mini",provider="openai",route="openai",status_class="2xx"} 1`,
		`llmtap_errors_total{class="upstream_5xx",route="openai"} 1`,
		`llmtap_tokens_total{model="gpt-4o-mini",provider="openai",route="openai",type="input"} 9`,
	} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// TestClickHouseOutage: ClickHouse is stopped while records stream in and
// started again; every acknowledged record is stored exactly once.
func TestClickHouseOutage(t *testing.T) {
	c := startCollector(t, "")
	const batches, perBatch = 10, 20
	send := func(b int) {
		recs := make([]*llmtap.Record, perBatch)
		for i := range recs {
			recs[i] = streamRecord(fmt.Sprintf("out-%d-%d", b, i))
		}
		c.post(t, recs...)
	}
	send(0)
	if err := c.ch.Stop(); err != nil {
		t.Fatal(err)
	}
	// ClickHouse is down but the spool takes records: still ready.
	resp, err := http.Get(c.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz answered %d with ClickHouse down and the spool usable", resp.StatusCode)
	}
	for b := 1; b < batches-1; b++ {
		send(b)
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.ch.Restart(); err != nil {
		t.Fatal(err)
	}
	send(batches - 1)
	want := fmt.Sprint(batches * perBatch)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := c.query(t, "SELECT count(), uniqExact(request_id) FROM llmtap_it.requests FINAL WHERE request_id LIKE 'out-%'")
		if out == want+"\t"+want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage ClickHouse holds (count, distinct) %q, want %s of each", out, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err = http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "llmtap_storage_dropped_total 0") {
		t.Error("records were dropped during the outage")
	}
}
