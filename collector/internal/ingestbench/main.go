// Command ingestbench measures the collector's ingest into ClickHouse: it
// posts N realistic records (OpenAI-style SSE streams with bodies and
// write timings) as gzip NDJSON batches from several workers, waits until
// the collector reports them all written, and prints records per second
// and the collector's peak memory. bench/run ingest runs it against a
// real collector and ClickHouse on loopback.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:7480", "collector base URL")
	token := flag.String("token", "", "ingest token")
	n := flag.Int("records", 100000, "records to send")
	batch := flag.Int("batch", 64, "records per POST (the plugin's batchSize)")
	workers := flag.Int("workers", 8, "concurrent senders")
	pid := flag.Int("pid", 0, "collector pid, for its peak memory and CPU")
	chPid := flag.Int("clickhouse-pid", 0, "ClickHouse pid, for its CPU")
	estimated := flag.Bool("estimated", false, "streams without usage, which the collector estimates")
	flag.Parse()
	if err := run(*base, *token, *n, *batch, *workers, *pid, *chPid, *estimated); err != nil {
		fmt.Fprintln(os.Stderr, "ingestbench:", err)
		os.Exit(1)
	}
}

func run(base, token string, n, batch, workers, pid, chPid int, estimated bool) error {
	start0, err := written(base)
	if err != nil {
		return err
	}
	bodies := encode(n, batch, estimated)
	cpu0, chCPU0 := cpuTime(pid), cpuTime(chPid)
	var next atomic.Int64
	var retries atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	begin := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				for {
					status, err := post(base, token, bodies[i])
					if err != nil {
						errs <- err
						return
					}
					if status == http.StatusAccepted {
						break
					}
					if status != http.StatusServiceUnavailable {
						errs <- fmt.Errorf("ingest answered %d", status)
						return
					}
					retries.Add(1) // queue full: back off as the plugin would
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	accepted := time.Since(begin)
	for {
		got, err := written(base)
		if err != nil {
			return err
		}
		if got-start0 >= int64(n) {
			break
		}
		if time.Since(begin) > 5*time.Minute {
			return fmt.Errorf("only %d of %d records written after 5 minutes", got-start0, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(begin)
	perRecord := func(pid int, at0 time.Duration) string {
		if pid == 0 || at0 < 0 {
			return "-"
		}
		return fmt.Sprintf("%.0fus", float64((cpuTime(pid)-at0).Microseconds())/float64(n))
	}
	cpu, chCPU := perRecord(pid, cpu0), perRecord(chPid, chCPU0)
	spilled, _ := metric(base, "llmtap_storage_spilled_total")
	fmt.Printf("records=%d batch=%d workers=%d accepted_in=%.2fs stored_in=%.2fs rate=%.0f/s retries_503=%d spilled=%d peak_rss=%s cpu_per_record collector=%s clickhouse=%s\n",
		n, batch, workers, accepted.Seconds(), total.Seconds(), float64(n)/total.Seconds(), retries.Load(), spilled, peakRSS(pid), cpu, chCPU)
	return nil
}

// encode prepares every POST body up front, so the benchmark measures the
// collector, not the sender.
func encode(n, batch int, estimated bool) [][]byte {
	var out [][]byte
	now := time.Now().UnixNano()
	for i := 0; i < n; i += batch {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		enc := json.NewEncoder(zw)
		for j := i; j < i+batch && j < n; j++ {
			_ = enc.Encode(record(j, now, estimated))
		}
		_ = zw.Close()
		out = append(out, buf.Bytes())
	}
	return out
}

// record is one stream of 40 chunks. An estimated one does not ask for its
// usage, as a client without stream_options.include_usage: the collector
// counts both its prompt and its output.
func record(i int, now int64, estimated bool) *llmtap.Record {
	r := &llmtap.Record{
		V: llmtap.RecordVersion, RequestID: fmt.Sprintf("bench-%d-%d", now, i), StartUnixNs: now + int64(i)*1000,
		Route: []string{"openai", "anthropic", "vllm"}[i%3], Tenant: fmt.Sprintf("team-%d", i%20), TenantSource: llmtap.TenantFromHeader,
		Method: "POST", Host: "llm.internal", Path: "/v1/chat/completions", RequestContentType: "application/json",
		RequestBody: []byte(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Summarize the quarterly report in three bullet points."}]}`),
		Status:      200, Outcome: llmtap.OutcomeCompleted, ResponseContentType: "text/event-stream", Streaming: true,
		HeaderNs: 80e6, DurationNs: 2e9,
	}
	var body []byte
	for k := 0; k < 40; k++ {
		body = append(body, fmt.Sprintf(`data: {"id":"chatcmpl-%d","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word%d "}}]}`+"\n\n", i, k)...)
		r.WriteEnds = append(r.WriteEnds, int64(len(body)))
		r.WriteNs = append(r.WriteNs, int64(100+k*40)*1e6)
	}
	body = append(body, `data: {"id":"x","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n"...)
	if estimated {
		r.RequestBody = []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Summarize the quarterly report in three bullet points."}]}`)
	} else {
		body = append(body, `data: {"id":"x","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":40,"total_tokens":61}}`+"\n\n"...)
	}
	body = append(body, "data: [DONE]\n\n"...)
	r.WriteEnds = append(r.WriteEnds, int64(len(body)))
	r.WriteNs = append(r.WriteNs, 1.9e9)
	r.ResponseHead, r.ResponseTailOffset, r.ResponseBytes = body, int64(len(body)), int64(len(body))
	return r
}

func post(base, token string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+llmtap.RecordsPath, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Encoding", "gzip")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// written is the rows the collector has stored: written from its queue,
// and replayed from its spool (the batches it spilled there when its
// queue was full).
func written(base string) (int64, error) {
	w, err := metric(base, "llmtap_storage_written_total")
	if err != nil {
		return 0, err
	}
	r, err := metric(base, "llmtap_storage_replayed_total")
	return w + r, err
}

// metric reads an unlabelled metric from the collector's /metrics.
func metric(base, name string) (int64, error) {
	v, err := stack.Metric(context.Background(), base+"/metrics", name)
	return int64(v), err
}

// cpuTime is the CPU a process has used (user and system, from
// /proc/PID/stat), or -1 when it cannot be read.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them, in
	// clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	var ticks int64
	for _, v := range f[11:13] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return -1
		}
		ticks += t
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// peakRSS is the process's high-water resident memory (VmHWM).
func peakRSS(pid int) string {
	if pid == 0 {
		return "-"
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "-"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return "-"
}
