package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

const (
	benchToken = "bench-token"
	checkBody  = `{"tenant":"bench","route":"bench","model":"m","request_id":"bench-1","reserve":64}`
	// spendBody is the same check of a tenant whose policy has a spend
	// budget where the other has a token quota, for a priced model: the
	// check also prices the request's worst case, and the script keeps
	// the same number of buckets. The goal: a budget check costs
	// no more than a token check.
	spendBody = `{"tenant":"budget","route":"bench","model":"gpt-4o-mini","request_id":"bench-1","reserve":64}`
)

const limitRouters = `http:
  routers:
    tap:
      rule: Host(` + "`tap.test`" + `)
      service: up
      middlewares: [tap]
    limited:
      rule: Host(` + "`limited.test`" + `)
      service: up
      middlewares: [limited]
  middlewares:
    tap:
      plugin:
        llmtap:
          collectorURL: %[1]s
          collectorToken: ` + benchToken + `
          route: bench
    limited:
      plugin:
        llmtap:
          collectorURL: %[1]s
          collectorToken: ` + benchToken + `
          route: bench
          limits:
            enabled: true
  services:
    up:
      loadBalancer:
        servers:
          - url: %[2]s
`

// limits: the collector's limit checks against the real Redis (checks per
// second at saturation, and p50/p99 at a fixed rate), then the latency a
// limited route adds over the same route without limits through the real
// Traefik. Both routes run the plugin and send their records to the same
// collector; only the limit check differs.
//
//	BENCH_LIMIT_DURATION (5s)  BENCH_CHECK_RATE (5000)  BENCH_RATE (1000)
//	BENCH_CONNECTIONS (32)  BENCH_ROUNDS (2)
func (b *bench) limits() {
	duration := env("BENCH_LIMIT_DURATION", "5s")
	checkRate := b.envInt("BENCH_CHECK_RATE", 5000)
	routeRate := b.envInt("BENCH_RATE", 1000)
	conns := b.envInt("BENCH_CONNECTIONS", 32)
	rounds := b.envInt("BENCH_ROUNDS", 2)

	ch := b.s.ClickHouse()
	rd := b.s.Redis()
	// Quotas far above the load: every check runs the whole script (a
	// request quota and a token reservation) and is allowed.
	cfg := b.s.CollectorConfig(ch)
	cfg.IngestToken, cfg.ReadToken = benchToken, ""
	cfg.ClickHouse.Database, cfg.ClickHouse.FlushInterval, cfg.ClickHouse.BatchSize = "", "", 0
	cfg.Redis = &stack.CollectorRedis{Addr: rd.Addr()}
	cfg.Limits = &stack.CollectorLimits{
		Default: json.RawMessage(`{"requests":{"limit":1000000000,"period":"1h"},"tokens":{"limit":1000000000000,"period":"1h"}}`),
		Tenants: map[string]json.RawMessage{"budget": json.RawMessage(
			`{"requests":{"limit":1000000000,"period":"1h"},"spend":{"limit":1000000,"period":"1h"}}`)},
	}
	col := b.s.Collector(cfg)
	checkURL := col.URL() + "/v1/limits/check"

	script := filepath.Join(b.s.Dir, "check.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = '%s'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer %s\"\n", checkBody, benchToken)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		b.fail("%v", err)
	}
	spendScript := filepath.Join(b.s.Dir, "check-spend.lua")
	lua = fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = '%s'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer %s\"\n", spendBody, benchToken)
	if err := os.WriteFile(spendScript, []byte(lua), 0o644); err != nil {
		b.fail("%v", err)
	}
	// Saturation: wrk's closed loop finds the most checks per second, of
	// a token check and of the same with a spend budget, in alternating
	// rounds.
	b.wrk(16, "1s", checkURL, script)
	b.wrk(16, "1s", checkURL, spendScript)
	var sat, satSpend wrkResult
	for round := 0; round < rounds; round++ {
		r, rs := b.wrk(16, duration, checkURL, script), b.wrk(16, duration, checkURL, spendScript)
		sat.rps, sat.p50, sat.p99 = sat.rps+r.rps/float64(rounds), sat.p50+r.p50/float64(rounds), sat.p99+r.p99/float64(rounds)
		satSpend.rps, satSpend.p50, satSpend.p99 = satSpend.rps+rs.rps/float64(rounds), satSpend.p50+rs.p50/float64(rounds), satSpend.p99+rs.p99/float64(rounds)
	}

	up := b.startUpstream()
	// The load tool's own floor at this rate, on these cores: the same load
	// against a handler that does nothing (the bench upstream's /json).
	floor := b.runLoad("the load floor", "-url", up+"/json", "-rate", fmt.Sprint(checkRate), "-duration", duration)
	// A fixed rate, open loop: the latency a plugin sees at that load; the
	// collector's histogram over the same run, server side.
	before := b.checkBuckets(col)
	fixed := b.runLoad(fmt.Sprintf("%d checks/s", checkRate), "-url", checkURL, "-rate", fmt.Sprint(checkRate), "-duration", duration,
		"-body", checkBody, "-header", "Authorization: Bearer "+benchToken)
	within1, s99 := serverSide(before, b.checkBuckets(col))

	redisVersion := "?"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				redisVersion = v
			}
		}
	}
	fmt.Printf("\nLimit checks, collector + Redis %s on %d cores (one tenant: the hottest key)\n", redisVersion, runtime.NumCPU())
	fmt.Printf("  saturation (wrk -c16, %s, mean of %d rounds): %.0f checks/s, p50 %.3f ms, p99 %.3f ms\n", duration, rounds, sat.rps, sat.p50, sat.p99)
	fmt.Printf("  the same with a spend budget instead of the token quota: %.0f checks/s, p50 %.3f ms, p99 %.3f ms; spend/token %.2f (goal: >= 0.95)\n",
		satSpend.rps, satSpend.p50, satSpend.p99, satSpend.rps/sat.rps)
	fmt.Printf("  fixed %d checks/s for %s (open loop), goal p99 <= 1 ms:\n", checkRate, duration)
	fmt.Printf("    client side:  %d checks, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", fixed.n, fixed.p50, fixed.p99, fixed.max)
	fmt.Printf("    load floor:   p50 %.3f ms, p99 %.3f ms (the same load against a handler that does nothing)\n", floor.p50, floor.p99)
	fmt.Printf("    server side:  %.2f%% of checks answered within 1 ms, p99 about %.3f ms (collector histogram, Redis included)\n", within1, s99)

	// Through Traefik: the same plugin with and without limits.
	tr := b.s.Traefik(fmt.Sprintf(limitRouters, col.URL(), up), func(t *stack.Traefik) {
		t.ReadyHosts, t.ReadyPath = []string{"tap.test", "limited.test"}, "/json"
	})
	routes := []string{"tap", "limited"}
	for _, route := range routes {
		b.wrk(conns, "2s", tr.URL()+"/json", "", "Host: "+route+".test", "Authorization: Bearer sk-bench")
	}
	type sums struct{ p50, p99, rps float64 }
	sum := map[string]*sums{"tap": {}, "limited": {}}
	for round := 1; round <= rounds; round++ {
		for _, route := range routes {
			r := b.runLoad(fmt.Sprintf("%d req/s on %s", routeRate, route), "-url", tr.URL()+"/json", "-host", route+".test",
				"-header", "Authorization: Bearer sk-bench", "-rate", fmt.Sprint(routeRate), "-duration", duration)
			w := b.wrk(conns, duration, tr.URL()+"/json", "", "Host: "+route+".test", "Authorization: Bearer sk-bench")
			n := float64(rounds)
			sum[route].p50 += r.p50 / n
			sum[route].p99 += r.p99 / n
			sum[route].rps += w.rps / n
			b.log("round %d %s: p50 %.3f ms, p99 %.3f ms at %d req/s; %.0f req/s with wrk -c%d", round, route, r.p50, r.p99, routeRate, w.rps, conns)
		}
	}
	fmt.Printf("\nThrough %s, /json, mean of %d rounds: llmtap without limits (tap) vs with limits (limited)\n", filepath.Base(tr.Bin), rounds)
	fmt.Printf("%-8s %9s %9s %10s\n", "route", "p50_ms", "p99_ms", "req/s")
	for _, route := range routes {
		fmt.Printf("%-8s %9.3f %9.3f %10.0f\n", route, sum[route].p50, sum[route].p99, sum[route].rps)
	}
	t, l := sum["tap"], sum["limited"]
	fmt.Printf("limits add p50 %+.3f ms, p99 %+.3f ms at a fixed rate (goal: <= +0.5 ms); throughput limited/tap %.2f (goal: >= 0.80)\n", l.p50-t.p50, l.p99-t.p99, l.rps/t.rps)
}

// bucket is one bucket of a Prometheus histogram: its upper bound and count.
type bucket struct {
	le    float64
	count float64
}

// checkBuckets reads the collector's limit check latency histogram.
func (b *bench) checkBuckets(col *stack.Collector) []bucket {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(col.URL() + "/metrics")
	if err != nil {
		b.fail("metrics: %v", err)
	}
	defer resp.Body.Close()
	var out []bucket
	var text strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		text.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(text.String(), "\n") {
		rest, ok := strings.CutPrefix(line, `llmtap_limit_check_duration_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		var b bucket
		b.le, _ = strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		b.count, _ = strconv.ParseFloat(count, 64)
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out
}

// serverSide is, over the run between two readings of the histogram, the
// share of checks within 1 ms (percent) and p99 in ms interpolated within
// its bucket as histogram_quantile does.
func serverSide(before, after []bucket) (within1, p99 float64) {
	if len(before) != len(after) || len(after) == 0 {
		return 0, 0
	}
	counts := make([]float64, len(after))
	for i := range after {
		counts[i] = after[i].count - before[i].count
	}
	total := counts[len(counts)-1]
	if total == 0 {
		return 0, 0
	}
	q := 0.99 * total
	prev, prevc := 0.0, 0.0
	p99 = -1
	for i, bk := range after {
		if bk.le == 0.001 {
			within1 = 100 * counts[i] / total
		}
		if p99 < 0 && counts[i] >= q {
			hi := bk.le
			if hi > 1e300 { // +Inf: the last finite bound
				hi = prev
			}
			p99 = 1000 * (prev + (hi-prev)*(q-prevc)/(counts[i]-prevc))
		}
		if bk.le < 1e300 {
			prev, prevc = bk.le, counts[i]
		}
	}
	return within1, p99
}
