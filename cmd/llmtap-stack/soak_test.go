//go:build soak

package main

// The soak: at least 100,000 requests through the stack of make up
// (Traefik with the plugin, the collector, ClickHouse, Redis, the mock),
// started by internal/stack on free ports, with the resident memory of
// Traefik and the collector sampled as it goes. Then:
//   - no request failed;
//   - ClickHouse holds one row per request sent, less what the plugin
//     reported dropped, and the collector lost none;
//   - memory is flat: each process's RSS grows by at most max(+25%,
//     +40 MB) from 30% of the requests to the end, at the pace of the
//     slower of the two halves' least-squares lines (see trend). A trend,
//     not two points, and in both halves: a stall of this shared machine
//     piles requests up and lifts RSS in one step, and Go hands the memory
//     back slowly, so RSS stays high for a while without growing; a leak
//     grows all along.
// The load is bench/load, open loop at a fixed rate: streamed chat
// completions (3/5) and JSON ones (2/5), the mock answering at once (its
// X-Mock-* knobs: ttft 1ms, gap 0, 8 tokens).
//
// The rate fits the machine: everything shares its cores, so a fixed rate
// that one machine carries swamps another. A calibration first measures
// the stack's capacity here, end to end: calibrateSeconds of the same mix
// in a closed loop, and the rows ClickHouse holds per second until they
// stop coming. The soak runs at sharePct% of that, never below the plan's
// 500 requests per second; the calibration's rows are removed first.
//
//	SOAK_RATE     requests per second, both kinds together (default: calibrated)
//	SOAK_SECONDS  how long the load runs (default: what 100,000 requests take)
//
// make test-soak runs it: go test -tags soak -run TestSoak ./cmd/llmtap-stack

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

const (
	minRequests      = 100000
	minRate          = 500
	sharePct         = 20
	calibrateSeconds = 8
	growthPct        = 25 // RSS may grow from 30% of the requests to the end by this share
	growthMB         = 40 // or by this many MB, whichever is larger
	sampleEvery      = 3 * time.Second
	streamBody       = `{"model":"soak","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"soak test"}]}`
	jsonBody         = `{"model":"soak","messages":[{"role":"user","content":"soak test"}]}`
)

var soakKnobs = []string{"-header", "X-Mock-Ttft: 1ms", "-header", "X-Mock-Gap: 0", "-header", "X-Mock-Tokens: 8", "-header", "Authorization: Bearer sk-soak"}

type soak struct {
	t         *testing.T
	load      string // bench/load
	url       string // Traefik's chat completions
	ch        *stack.ClickHouse
	collector *stack.Collector
	traefik   *stack.Traefik
	dir       string
}

func TestSoak(t *testing.T) {
	rate, seconds := envInt(t, "SOAK_RATE"), envInt(t, "SOAK_SECONDS")
	// One soak at a time on a machine: it loads every core, so two at
	// once (two checkouts' make test) would each see half a machine.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "llmtap-soak.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		t.Logf("another soak runs on this machine; waiting for it to end (%s)", lock.Name())
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	s := startSoakStack(t)

	if rate == 0 {
		rate = s.calibrate()
	}
	if seconds == 0 {
		seconds = (minRequests + rate - 1) / rate
	}
	total := rate * seconds
	if total < minRequests {
		t.Fatalf("rate %d x %d s = %d: want at least %d requests", rate, seconds, total, minRequests)
	}
	streamRate := rate * 3 / 5
	jsonRate := rate - streamRate
	// What the plugin dropped and the collector received before (the
	// calibration overloads the stack on purpose) is not the soak's.
	droppedBefore := s.metric("llmtap_plugin_dropped_records_total")
	receivedBefore := s.metric("llmtap_records_received_total")
	t.Logf("soak: %d requests in %d s (%d/s streamed, %d/s JSON) through Traefik (pid %d) to the mock; collector pid %d",
		total, seconds, streamRate, jsonRate, s.traefik.Process().Pid(), s.collector.Process().Pid())

	// In flight: up to 10 s of each load, so that a stall of the shared
	// machine delays requests instead of failing them. Latency is make
	// bench's to measure.
	dur := fmt.Sprintf("%ds", seconds)
	stream := s.startLoad("load-stream", append([]string{"-rate", fmt.Sprint(streamRate), "-duration", dur, "-max-inflight", fmt.Sprint(streamRate * 10), "-body", streamBody}, soakKnobs...)...)
	jsonLoad := s.startLoad("load-json", append([]string{"-rate", fmt.Sprint(jsonRate), "-duration", dur, "-max-inflight", fmt.Sprint(jsonRate * 10), "-body", jsonBody}, soakKnobs...)...)
	loadBegan := time.Now()

	// Sample while the load runs: requests sent so far (open loop at a
	// fixed rate), records the collector received, each RSS.
	var samples []rssSample
	t.Logf("  %6s %9s %9s %12s %14s", "t (s)", "requests", "received", "Traefik MB", "collector MB")
	for {
		done := stream.finished() && jsonLoad.finished()
		el := time.Since(loadBegan)
		sent := int(el.Seconds()) * rate
		if sent > total || done {
			sent = total
		}
		tr, co := rssMB(s.traefik.Process().Pid()), rssMB(s.collector.Process().Pid())
		t.Logf("  %6.0f %9d %9.0f %12.1f %14.1f", el.Seconds(), sent, s.metric("llmtap_records_received_total")-receivedBefore, tr, co)
		samples = append(samples, rssSample{pct: float64(sent) * 100 / float64(total), traefik: tr, collector: co})
		if done {
			break
		}
		if el > time.Duration(seconds+20)*time.Second {
			t.Errorf("the load did not end within its %d s and 20 s; stopping it", seconds)
			stream.kill()
			jsonLoad.kill()
			break
		}
		time.Sleep(sampleEvery)
	}
	rs, rj := stream.result(t), jsonLoad.result(t)
	t.Logf("  streamed: %d ok, %d failed, p50 %s ms, p99 %s ms, max %s ms", rs.ok, rs.errors, rs.p50, rs.p99, rs.max)
	t.Logf("  JSON:     %d ok, %d failed, p50 %s ms, p99 %s ms, max %s ms", rj.ok, rj.errors, rj.p50, rj.p99, rj.max)
	if rs.ok+rj.ok < total || rs.errors+rj.errors != 0 {
		t.Errorf("%d ok of %d, %d failed, of which %d not sent (10 s of load in flight)", rs.ok+rj.ok, total, rs.errors+rj.errors, rs.unsent+rj.unsent)
	}

	t.Logf("  one more request after the load: %d", s.oneMore())
	// Requests that reached Traefik: the unsent ones never did.
	sent := rs.ok + rs.errors - rs.unsent + rj.ok + rj.errors - rj.unsent + 1
	rows, dropped, _ := s.waitRows(sent, -droppedBefore)
	lost := s.metric("llmtap_storage_dropped_total")
	t.Logf("  sent %d (with the last one), the plugin reported %d dropped; ClickHouse holds %d rows; the collector lost %.0f", sent, dropped, rows, lost)
	if rows != sent-dropped {
		byKind, _ := s.ch.Query(context.Background(), "SELECT kind, status, outcome, count() FROM llmtap.requests FINAL GROUP BY kind, status, outcome")
		received := int(s.metric("llmtap_records_received_total") - receivedBefore)
		t.Errorf("rows %d, want %d - %d = %d; the collector received %d; by kind and status:\n%s", rows, sent, dropped, sent-dropped, received, byKind)
	}
	if lost != 0 {
		t.Errorf("llmtap_storage_dropped_total %.0f", lost)
	}

	for _, p := range []struct {
		name string
		rss  func(rssSample) float64
	}{{"Traefik", func(r rssSample) float64 { return r.traefik }}, {"collector", func(r rssSample) float64 { return r.collector }}} {
		growth, start, ok := trend(samples, p.rss)
		if !ok {
			t.Errorf("%s RSS: too few samples", p.name)
			continue
		}
		limit := math.Max(start*growthPct/100, growthMB)
		t.Logf("  %s RSS: %+.1f MB from 30%% of the requests to the end (from %.1f MB), limit %.1f MB", p.name, growth, start, limit)
		if growth > limit {
			t.Errorf("%s RSS grew %+.1f MB from 30%% of the requests to the end, over max(+%d%%, +%d MB)", p.name, growth, growthPct, growthMB)
		}
	}
	t.Logf("soak: took %.0f s in all", time.Since(began).Seconds())
}

func envInt(t *testing.T, name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%s: want a whole number", name, v)
	}
	return n
}

// upStack is the stack of make up on a test's ports, with its parts.
type upStack struct {
	st        *stack.T
	ch        *stack.ClickHouse
	rd        *stack.Redis
	collector *stack.Collector
	traefik   *stack.Traefik
}

// startUpStack starts the stack of make up (the mock as the upstream) on
// the test's ports: route names the route, limits turns the limit checks
// on, tenants are the collector's per-tenant policies.
func startUpStack(t *testing.T, route string, limits bool, tenants map[string]json.RawMessage) *upStack {
	st := stack.New(t)
	l := &stack.Local{Root: st.Root, Run: filepath.Join(st.Dir, "up"), Bins: st.Bins(), Mock: true}
	for _, v := range l.Ports.Vars(true) {
		*v.Port = st.Port()
	}
	l.Collector = stack.CollectorConfig{IngestToken: "up-ingest", ReadToken: "up-read", AdminToken: "up-admin", ShutdownTimeout: "8s"}
	if len(tenants) > 0 {
		l.Collector.Limits = &stack.CollectorLimits{Tenants: tenants}
	}
	var err error
	if l.Dynamic, err = upDynamic(st.Root, []upstreamOf{{url: fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Mock)}}, route, strconv.FormatBool(limits),
		fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Collector), l.Collector.IngestToken); err != nil {
		t.Fatal(err)
	}
	u := &upStack{st: st}
	for _, p := range l.Parts().Parts() {
		if tr, ok := p.(*stack.Traefik); ok {
			tr.MetricsPort = st.Port() // Traefik's goroutines, for the gray test
		}
		st.Run(p)
		switch p := p.(type) {
		case *stack.ClickHouse:
			u.ch = p
		case *stack.Redis:
			u.rd = p
		case *stack.Collector:
			u.collector = p
		case *stack.Traefik:
			u.traefik = p
		}
	}
	return u
}

// startSoakStack starts the stack of make up (limits off, the mock as the
// upstream) on the test's ports, and builds the load tool.
func startSoakStack(t *testing.T) *soak {
	u := startUpStack(t, "llm", false, nil)
	load, err := stack.BuildTool(context.Background(), u.st.Root, ".", "./bench/load")
	if err != nil {
		t.Fatal(err)
	}
	return &soak{t: t, load: load, dir: u.st.Dir, url: u.traefik.URL() + "/v1/chat/completions",
		ch: u.ch, collector: u.collector, traefik: u.traefik}
}

// calibrate measures the stack's capacity in rows stored per second from
// a closed loop of the soak's mix (3 streamed workers for 2 JSON ones per
// core) and returns the soak's rate.
func (s *soak) calibrate() int {
	cores := runtime.NumCPU()
	dur := fmt.Sprintf("%ds", calibrateSeconds)
	began := time.Now()
	st := s.startLoad("calibrate-stream", append([]string{"-workers", fmt.Sprint(3 * cores), "-duration", dur, "-body", streamBody}, soakKnobs...)...)
	js := s.startLoad("calibrate-json", append([]string{"-workers", fmt.Sprint(2 * cores), "-duration", dur, "-body", jsonBody}, soakKnobs...)...)
	rs, rj := st.result(s.t), js.result(s.t)
	s.oneMore()
	rows, _, settled := s.waitRows(rs.ok+rj.ok+1, 0)
	capacity := int(float64(rows) / settled.Sub(began).Seconds())
	rate := capacity * sharePct / 100
	if rate < minRate {
		rate = minRate
	}
	s.t.Logf("soak: calibration on %d cores: %d requests in a closed loop, %d rows stored at %d/s; the soak runs at %d%% of that, at least %d/s: %d/s",
		cores, rs.ok+rj.ok, rows, capacity, sharePct, minRate, rate)
	if _, err := s.ch.Query(context.Background(), "TRUNCATE TABLE llmtap.requests"); err != nil {
		s.t.Fatal(err)
	}
	return rate
}

// loadRun is one bench/load process.
type loadRun struct {
	cmd  *exec.Cmd
	out  string
	done chan struct{}
}

func (s *soak) startLoad(name string, args ...string) *loadRun {
	out := filepath.Join(s.dir, name+".out")
	f, err := os.Create(out)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.load, append([]string{"-url", s.url}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	l := &loadRun{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(l.done)
	}()
	s.t.Cleanup(l.kill)
	return l
}

func (l *loadRun) finished() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *loadRun) kill() {
	if !l.finished() {
		_ = l.cmd.Process.Kill()
		<-l.done
	}
}

// loadResult is bench/load's last line: requests errors p50 p90 p99 max
// (ms) unsent.
type loadResult struct {
	ok, errors, unsent int
	p50, p99, max      string
}

func (l *loadRun) result(t *testing.T) loadResult {
	<-l.done
	b, err := os.ReadFile(l.out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	var r loadResult
	if len(f) != 7 {
		t.Fatalf("the load failed:\n%s", b)
	}
	r.ok, _ = strconv.Atoi(f[0])
	r.errors, _ = strconv.Atoi(f[1])
	r.p50, r.p99, r.max = f[2], f[4], f[5]
	r.unsent, _ = strconv.Atoi(f[6])
	return r
}

// oneMore sends one request after a load, so that drops the plugin has
// not reported yet ride on its batch; it returns the status (0: none).
func (s *soak) oneMore() int {
	req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(jsonBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mock-Ttft", "1ms")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric is the collector's value of an unlabelled metric (0 if absent).
func (s *soak) metric(name string) float64 {
	return metricAt(s.collector.URL()+"/metrics", name)
}

// metricAt is the value of an unlabelled metric at a Prometheus endpoint
// (0 if absent or unreachable: the report says what it could read).
func metricAt(endpoint, name string) float64 {
	v, _ := stack.Metric(context.Background(), endpoint, name)
	return v
}

// waitRows waits until ClickHouse holds a row for each request sent that
// the plugin did not report dropped (the collector's count plus offset:
// less what it counted before the run, or plus what a restart reset), or
// the count stays the same for 5 s (the plugin and the collector flush
// every second), 60 s at most. It returns the rows, the drops and when
// the rows last grew.
func (s *soak) waitRows(sent int, offset float64) (rows, dropped int, settled time.Time) {
	settled = time.Now()
	same := 0
	for i := 0; i < 120; i++ {
		before := rows
		dropped = int(s.metric("llmtap_plugin_dropped_records_total") + offset)
		n, err := s.ch.Query(context.Background(), "SELECT count() FROM llmtap.requests FINAL")
		if err == nil {
			rows, _ = strconv.Atoi(n)
		}
		if rows != before {
			settled, same = time.Now(), 0
		} else {
			same++
		}
		if rows >= sent-dropped || same >= 10 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return rows, dropped, settled
}

func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return math.NaN()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return math.NaN()
}
