//go:build integration

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// collectorUnderTest runs the whole collector, in this process, against a
// real ClickHouse. It is a part of the test's stack, stopped in its turn.
type collectorUnderTest struct {
	ch     *stack.ClickHouse
	stack  *stack.T // the test's stack: ClickHouse, and what else the test starts
	base   string
	config string        // the configuration file
	client *http.Client  // trusts the collector's certificate when it serves HTTPS
	done   chan struct{} // closed when run returned, with its error in err
	err    error
	cancel context.CancelFunc
}

func (c *collectorUnderTest) Name() string { return "collector (in the test)" }

// Start runs the collector and waits until it is ready.
func (c *collectorUnderTest) Start(ctx context.Context) error {
	noEnv := func(string) (string, bool) { return "", false }
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		c.err = run(runCtx, []string{"-config", c.config}, io.Discard, io.Discard, noEnv)
		close(c.done)
	}()
	ctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	for {
		err := c.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("collector exited at start: %w", c.err)
		case <-ctx.Done():
			cancel()
			<-c.done
			return fmt.Errorf("collector not ready within 30 s: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ready asks /readyz.
func (c *collectorUnderTest) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

// Stop stops the collector as SIGTERM would and returns run's error.
func (c *collectorUnderTest) Stop(ctx context.Context) error {
	c.cancel()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("collector did not stop: %w", ctx.Err())
	}
}

// stop is Stop within 30 s, failing the test otherwise.
func (c *collectorUnderTest) stop(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Stop(ctx)
}

// startCollector starts ClickHouse and the collector, with configure (when
// not nil) changing the test configuration (stack.T.CollectorConfig).
func startCollector(t *testing.T, configure func(*stack.CollectorConfig)) *collectorUnderTest {
	t.Helper()
	return startCollectorWith(t, collectorSetup{configure: configure})
}

// collectorSetup is what startCollectorWith varies.
type collectorSetup struct {
	configure func(*stack.CollectorConfig)
	// client reaches the collector: non-nil when configure sets tls, a
	// client that trusts its certificate.
	client *http.Client
	// stack and ch are the test's stack and ClickHouse (nil: new ones).
	stack *stack.T
	ch    *stack.ClickHouse
}

// startCollectorWith is startCollector as o says.
func startCollectorWith(t *testing.T, o collectorSetup) *collectorUnderTest {
	t.Helper()
	scheme, client := "https", o.client
	if client == nil {
		scheme, client = "http", http.DefaultClient
	}
	s := o.stack
	if s == nil {
		s = stack.New(t)
	}
	ch := o.ch
	if ch == nil {
		ch = s.ClickHouse()
	}
	config := s.CollectorConfig(ch)
	if o.configure != nil {
		o.configure(&config)
	}
	cfg := filepath.Join(t.TempDir(), "collector.yaml")
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	c := &collectorUnderTest{ch: ch, stack: s, base: scheme + "://" + config.Listen, config: cfg, client: client}
	s.Run(c)
	return c
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
	resp, err := http.Get("http://" + c.ch.HTTP() + "/?query=" + url.QueryEscape(sql))
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
	c := startCollector(t, nil)
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
	c := startCollector(t, nil)
	const batches, perBatch = 10, 20
	send := func(b int) {
		recs := make([]*llmtap.Record, perBatch)
		for i := range recs {
			recs[i] = streamRecord(fmt.Sprintf("out-%d-%d", b, i))
		}
		c.post(t, recs...)
	}
	send(0)
	if err := c.ch.Stop(context.Background()); err != nil {
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
	if err := c.ch.Start(context.Background()); err != nil {
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
