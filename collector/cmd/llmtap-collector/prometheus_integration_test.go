//go:build integration

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector/internal/dashboards"
	"github.com/llmtap/llmtap/internal/stack"
)

// TestDashboardsAndAlertsOnARealPrometheus runs a short mixed workload
// through the whole path while a real Prometheus scrapes the collector
// every second with the project's alert rules loaded, then asks
// Prometheus every query of every Grafana dashboard panel: each must
// answer without error and with data. The rules must all evaluate cleanly.
func TestDashboardsAndAlertsOnARealPrometheus(t *testing.T) {
	w := startWholePath(t)
	rules, err := os.ReadFile("../../../deploy/prometheus/llmtap-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(w.collector.base, "http://")
	prom := w.collector.stack.Prometheus(fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [llmtap-alerts.yml]
scrape_configs:
  - job_name: llmtap-collector
    static_configs:
      - targets: [%q]
`, target), map[string][]byte{"llmtap-alerts.yml": rules})

	// The workload runs until the queries are done, so that every rate
	// window holds increases.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.workload(ctx)
	}()
	defer func() { stop(); wg.Wait() }()

	// Wait until Prometheus has scraped a few times after the workload began.
	waitFor(t, 30*time.Second, "Prometheus to see tokens from the collector", func() bool {
		s, err := prom.Query(ctx, `sum(increase(llmtap_tokens_total[30s])) > 0 and sum(increase(llmtap_time_to_first_audio_seconds_count[30s])) > 0 and sum(increase(llmtap_limit_denials_total[30s])) > 0`)
		return err == nil && len(s) > 0
	})
	time.Sleep(3 * time.Second)

	targets, err := prom.Targets(ctx)
	if err != nil || len(targets) != 1 || targets[0].Health != "up" {
		t.Fatalf("scrape targets %+v (%v): want the collector, up", targets, err)
	}

	boards, err := dashboards.Load("../../../grafana")
	if err != nil {
		t.Fatal(err)
	}
	queries := 0
	for _, b := range boards {
		for _, p := range b.Panels {
			for _, expr := range p.Exprs {
				queries++
				q := dashboards.Expand(expr, b.Vars) // each variable at its default: All, or the job's name
				samples, err := prom.Query(ctx, q)
				switch {
				case err != nil:
					t.Errorf("%s, panel %q: %v", b.File, p.Title, err)
				case !anyFinite(samples):
					t.Errorf("%s, panel %q: no data after the workload:\n%s", b.File, p.Title, q)
				}
			}
		}
	}
	if queries < 10 {
		t.Fatalf("only %d panel queries in the dashboards", queries)
	}
	t.Logf("%d panel queries answered with data", queries)

	loaded, err := prom.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alerts := strings.Count(string(rules), "- alert:")
	if len(loaded) != alerts {
		t.Errorf("Prometheus loaded %d rules, the file has %d alerts", len(loaded), alerts)
	}
	for _, r := range loaded {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q, last error %q", r.Name, r.Health, r.LastError)
		}
	}
}

// workload sends a mixed load through Traefik until ctx ends: OpenAI and
// Anthropic streams, text to speech, JSON, an upstream error, a tenant
// over its limit, and a route that falls back.
func (w *wholePath) workload(ctx context.Context) {
	type call struct{ host, path, body, tenant, knobs, omit string }
	calls := []call{
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true}}`, "a", "ttft=20ms&gap=5ms&tokens=4", ""},
		{"openai.test", "/v1/responses", `{"model":"gpt-mock","stream":true,"input":"hi"}`, "b", "ttft=30ms&gap=5ms&tokens=4", ""},
		{"anthropic.test", "/v1/messages", `{"model":"claude-mock","stream":true,"max_tokens":32}`, "a", "ttft=25ms&gap=5ms&tokens=4", ""},
		{"tts.test", "/v1/audio/speech", `{"model":"tts-mock","input":"hello"}`, "b", "ttft=15ms&gap=5ms&tokens=2", ""},
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock"}`, "c", "ttft=5ms&tokens=3", ""},
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock"}`, "c", "fail=502", ""},
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock"}`, "small", "ttft=5ms", ""},
		// Its first upstream refuses: attempts and circuit openings.
		{"fallback.test", "/v1/chat/completions", `{"model":"gpt-mock"}`, "c", "ttft=5ms", ""},
		// A key in the prompt (masked), and a request stored without
		// its bodies.
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock","messages":[{"role":"user","content":"key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"}]}`, "c", "ttft=5ms", ""},
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-mock"}`, "c", "ttft=5ms", "1"},
		// A priced model (the mock names the model asked for), for a
		// tenant with a spend budget: cost and budget series.
		{"openai.test", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"max_tokens":16}`, "budget", "ttft=10ms&gap=5ms&tokens=4", ""},
	}
	for ctx.Err() == nil {
		for _, c := range calls {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.entry+c.path+"?"+c.knobs, strings.NewReader(c.body))
			if err != nil {
				return
			}
			req.Host = c.host
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Tenant-ID", c.tenant)
			if c.omit != "" {
				req.Header.Set("X-Llmtap-Omit-Bodies", c.omit)
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// anyFinite says whether a sample has a value that is a number.
func anyFinite(samples []stack.Sample) bool {
	for _, s := range samples {
		v, ok := s.Value[1].(string)
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
