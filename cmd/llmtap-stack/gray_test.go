//go:build soak

package main

// The gray test: mixed traffic through the stack of make up for DURATION
// (default 60s), faults injected on a schedule, then a report against the
// plan's gray-release bar: error rate under 0.1%, every request stored or
// its drop counted.
//
//	make soak DURATION=1h
//
// Traffic, from GRAY_WORKERS (default: 2 per core) closed-loop workers:
// JSON and streamed chat completions, text to speech, streams the client
// leaves at 100 ms, a tenant over its quota (429 expected), an upstream
// that errors (503 expected). Faults, one every DURATION/6: the collector
// hung 3 s (SIGSTOP), restarted; ClickHouse stopped 5 s; Redis restarted.
// An error is an answer the request did not ask for (a 5xx where the
// upstream answered 200, a transport error), not the 429s and 503s the
// traffic provokes. The tenant over its quota may also get 200: while the
// collector or Redis is away the check fails open, and a Redis restarted
// without persistence starts its quota again. The RSS and goroutines of
// Traefik and the collector are sampled each second into a CSV beside the
// report (.run/gray/).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// grayKind is one kind of request of the mix: what it sends and which
// statuses it expects.
type grayKind struct {
	name    string
	path    string
	body    string
	headers map[string]string
	expect  []int         // the statuses the request may get
	leave   time.Duration // the client leaves after this (0: reads to the end)
}

const grayLimitedKey = "sk-gray-limited"

func grayMix() []grayKind {
	chat := `{"model":"gray","messages":[{"role":"user","content":"hi"}]}`
	stream := `{"model":"gray","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
	fast := map[string]string{"X-Mock-Ttft": "2ms", "X-Mock-Gap": "1ms", "X-Mock-Tokens": "8", "Authorization": "Bearer sk-gray"}
	with := func(extra ...string) map[string]string {
		h := map[string]string{}
		for k, v := range fast {
			h[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	return []grayKind{
		{name: "json", path: "/v1/chat/completions", body: chat, headers: with(), expect: []int{200}},
		{name: "sse", path: "/v1/chat/completions", body: stream, headers: with(), expect: []int{200}},
		{name: "sse", path: "/v1/chat/completions", body: stream, headers: with(), expect: []int{200}},
		{name: "audio", path: "/v1/audio/speech", body: `{"model":"tts-1","input":"hello","voice":"alloy"}`, headers: with(), expect: []int{200}},
		{name: "cancelled", path: "/v1/chat/completions", body: stream, headers: with("X-Mock-Ttft", "1s"), expect: []int{200}, leave: 100 * time.Millisecond},
		{name: "limited", path: "/v1/chat/completions", body: chat, headers: with("Authorization", "Bearer "+grayLimitedKey), expect: []int{429, 200}},
		{name: "upstream_error", path: "/v1/chat/completions", body: chat, headers: with("X-Mock-Fail", "503"), expect: []int{503}},
	}
}

// grayCounters are the collector's counters the report sums across its
// restart.
var grayCounters = []string{
	"llmtap_plugin_dropped_records_total", "llmtap_storage_dropped_total", "llmtap_storage_spilled_total",
	"llmtap_storage_rejected_total", "llmtap_storage_replayed_total",
}

// grayStats counts what the traffic saw.
type grayStats struct {
	mu     sync.Mutex
	sent   int
	byKind map[string]int
	errors map[string]int // unexpected outcomes, by class
}

func (g *grayStats) note(kind, errClass string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent++
	g.byKind[kind]++
	if errClass != "" {
		g.errors[errClass]++
	}
}

func TestGray(t *testing.T) {
	duration := 60 * time.Second
	if v := os.Getenv("DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 30*time.Second {
			t.Fatalf("DURATION=%s: want a duration of at least 30s", v)
		}
		duration = d
	}
	workers := 2 * runtime.NumCPU()
	if v := os.Getenv("GRAY_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GRAY_WORKERS=%s: want a whole number", v)
		}
		workers = n
	}
	u := startUpStack(t, "gray", true, map[string]json.RawMessage{
		llmtap.KeyTenant("Bearer " + grayLimitedKey): json.RawMessage(`{"requests":{"limit":5,"period":"1m"}}`),
	})
	ch, rd, col, tr := u.ch, u.rd, u.collector, u.traefik
	st := u.st
	s := &soak{t: t, ch: ch, collector: col, traefik: tr, dir: st.Dir}

	// The traffic.
	g := &grayStats{byKind: map[string]int{}, errors: map[string]int{}}
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	mix := grayMix()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for i := w; ctx.Err() == nil; i += workers {
				k := mix[i%len(mix)]
				g.note(k.name, grayRequest(client, tr.URL(), k))
			}
		}(w)
	}

	// The faults, and the samples.
	csvPath := filepath.Join(st.Root, ".run", "gray", time.Now().UTC().Format("20060102-150405")+".csv")
	if err := os.MkdirAll(filepath.Dir(csvPath), 0o755); err != nil {
		t.Fatal(err)
	}
	var samples [][5]float64 // seconds, Traefik MB, collector MB, collector goroutines, Traefik goroutines
	// The collector's counters start again from zero when it restarts:
	// what they held just before is kept here.
	restarted := map[string]float64{}
	faults := []struct {
		name string
		do   func() error
	}{
		{"collector hung 3 s (SIGSTOP)", func() error {
			if err := col.Process().Signal(syscall.SIGSTOP); err != nil {
				return err
			}
			time.Sleep(3 * time.Second) // the fault's length, not a wait for a condition
			return col.Process().Signal(syscall.SIGCONT)
		}},
		{"collector restarted", func() error {
			for _, name := range grayCounters {
				restarted[name] += s.metric(name)
			}
			if err := col.Stop(context.Background()); err != nil {
				return err
			}
			return col.Start(context.Background())
		}},
		{"ClickHouse stopped 5 s", func() error {
			if err := ch.Stop(context.Background()); err != nil {
				return err
			}
			time.Sleep(5 * time.Second) // the outage's length, not a wait for a condition
			return ch.Start(context.Background())
		}},
		{"Redis restarted", func() error {
			if err := rd.Stop(context.Background()); err != nil {
				return err
			}
			return rd.Start(context.Background())
		}},
	}
	every := duration / time.Duration(len(faults)+2)
	began := time.Now()
	next, fi := began.Add(every), 0
	for ctx.Err() == nil {
		samples = append(samples, [5]float64{time.Since(began).Seconds(), rssMB(tr.Process().Pid()), rssMB(col.Process().Pid()),
			s.metric("go_goroutines"), metricAt(tr.MetricsURL(), "go_goroutines")})
		if fi < len(faults) && time.Now().After(next) {
			f := faults[fi]
			t.Logf("gray: %4.0f s: %s", time.Since(began).Seconds(), f.name)
			if err := f.do(); err != nil {
				t.Errorf("fault %q: %v", f.name, err)
			}
			fi++
			next = next.Add(every)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	wg.Wait()

	// Integrity: one more request carries the drops not reported yet;
	// then rows against requests.
	g.note("json", grayRequest(http.DefaultClient, tr.URL(), mix[0]))
	rows, dropped, _ := s.waitRows(g.sent, restarted["llmtap_plugin_dropped_records_total"])
	distinct, _ := ch.Query(context.Background(), "SELECT uniqExact(request_id) FROM llmtap.requests")
	all, _ := ch.Query(context.Background(), "SELECT count() FROM llmtap.requests")
	nDistinct, _ := strconv.Atoi(distinct)
	nAll, _ := strconv.Atoi(all)
	total := func(name string) float64 { return restarted[name] + s.metric(name) }
	lost := total("llmtap_storage_dropped_total")

	// The report.
	errs := 0
	var classes []string
	for c, n := range g.errors {
		errs += n
		classes = append(classes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(classes)
	rate := 100 * float64(errs) / float64(g.sent)
	t.Logf("gray: %v of mixed traffic, %d workers, %d faults", duration, workers, fi)
	t.Logf("  requests sent: %d (%v)", g.sent, g.byKind)
	t.Logf("  errors: %d, %.4f%% (the plan: under 0.1%%)%s", errs, rate, strings.Join(append([]string{""}, classes...), "; "))
	t.Logf("  integrity: %d rows (FINAL) for %d requests; %d rows stored twice before merging", rows, g.sent, nAll-nDistinct)
	t.Logf("  drops: the plugin reported %d (its queue or byte budget full, or a batch undeliverable); the collector lost %.0f (spool full or failing)", dropped, lost)
	t.Logf("  pressure, nothing lost: %.0f records spilled to the spool (queue full), %.0f answered 503 and sent again, %.0f replayed from the spool",
		total("llmtap_storage_spilled_total"), total("llmtap_storage_rejected_total"), total("llmtap_storage_replayed_total"))
	t.Logf("  Traefik RSS MB         %s", sparkline(samples, 1))
	t.Logf("  Traefik goroutines     %s", sparkline(samples, 4))
	t.Logf("  collector RSS MB       %s", sparkline(samples, 2))
	t.Logf("  collector goroutines   %s", sparkline(samples, 3))
	if err := writeCSV(csvPath, samples); err != nil {
		t.Error(err)
	} else {
		t.Logf("  the series: %s", csvPath)
	}
	if rate >= 0.1 {
		t.Errorf("error rate %.4f%%, over the plan's 0.1%%", rate)
	}
	if rows+dropped < g.sent {
		t.Errorf("%d rows + %d reported dropped < %d requests: records lost uncounted", rows, dropped, g.sent)
	}
	if lost != 0 {
		t.Errorf("the collector lost %.0f acknowledged records", lost)
	}
}

// grayRequest sends one request of a kind and returns the class of an
// unexpected outcome ("" when it got what it asked for).
func grayRequest(client *http.Client, base string, k grayKind) string {
	ctx := context.Background()
	if k.leave > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, k.leave)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+k.path, strings.NewReader(k.body))
	if err != nil {
		return "bad_request"
	}
	req.Header.Set("Content-Type", "application/json")
	for h, v := range k.headers {
		req.Header.Set(h, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		if k.leave > 0 {
			return "" // the client left, as asked
		}
		return "transport"
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case k.leave > 0:
		return ""
	case !slices.Contains(k.expect, resp.StatusCode):
		return "status_" + strconv.Itoa(resp.StatusCode)
	case err != nil:
		return "body_cut"
	}
	return ""
}

// sparkline draws a column of the samples in eight levels, with its range.
func sparkline(samples [][5]float64, col int) string {
	if len(samples) == 0 {
		return ""
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range samples {
		if v := s[col]; !math.IsNaN(v) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	bars := []rune("▁▂▃▄▅▆▇█")
	step := len(samples)/60 + 1 // at most about 60 columns
	var b strings.Builder
	for i := 0; i < len(samples); i += step {
		v := samples[i][col]
		if math.IsNaN(v) || hi == lo {
			b.WriteRune(bars[0])
			continue
		}
		b.WriteRune(bars[int((v-lo)/(hi-lo)*float64(len(bars)-1))])
	}
	return fmt.Sprintf("%s  %.0f..%.0f", b.String(), lo, hi)
}

func writeCSV(path string, samples [][5]float64) error {
	var b strings.Builder
	b.WriteString("seconds,traefik_rss_mb,collector_rss_mb,collector_goroutines,traefik_goroutines\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.0f,%.1f,%.1f,%.0f,%.0f\n", s[0], s[1], s[2], s[3], s[4])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
