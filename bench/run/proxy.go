package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

// get GETs url with a Host (when not empty) and a bearer token (when not
// empty) and returns the status and body.
func (b *bench) get(url, host, token string) (int, string) {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, ""
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

const proxyRouters = `http:
  routers:
    bare:
      rule: Host(` + "`bare.test`" + `)
      service: up
    noop:
      rule: Host(` + "`noop.test`" + `)
      service: up
      middlewares: [noop]
    tap:
      rule: Host(` + "`tap.test`" + `)
      service: up
      middlewares: [llmtap]
    fallback:
      rule: Host(` + "`fallback.test`" + `)
      service: up
      middlewares: [llmtap-fallback]
  middlewares:
    noop:
      plugin:
        noop: {}
    llmtap:
      plugin:
        llmtap:
          collectorURL: %[2]s
          route: bench
          batchSize: %[3]d
    llmtap-fallback:
      plugin:
        llmtap:
          collectorURL: %[2]s
          route: bench-fallback
          batchSize: %[3]d
          upstreams:
            - {name: a, url: %[1]q}
            - {name: b, url: %[1]q}
  services:
    up:
      loadBalancer:
        servers:
          - url: %[1]s
`

// routeKey names a figure: a path on a route.
type routeKey struct{ path, route string }

// warm waits until every route answers every path, then loads each briefly.
func (b *bench) warm(base string, routes, paths []string, conns int) {
	for _, route := range routes {
		for _, path := range paths {
			b.waitRoute(base, route+".test", path)
			b.wrk(conns, "2s", base+path, "", "Host: "+route+".test")
		}
	}
}

// interleaved runs wrk against every route in turn, rounds times for each
// path, so that what the machine does meanwhile weighs on all routes
// alike, and returns each route's mean.
func (b *bench) interleaved(base string, routes, paths []string, conns int, duration string, rounds int) map[routeKey]*wrkResult {
	sum := map[routeKey]*wrkResult{}
	for _, path := range paths {
		for round := 1; round <= rounds; round++ {
			for _, route := range routes {
				r := b.wrk(conns, duration, base+path, "", "Host: "+route+".test")
				b.log("%s %s round %d: %.0f req/s, p50 %.3f ms, p99 %.3f ms", path, route, round, r.rps, r.p50, r.p99)
				k := routeKey{path, route}
				if sum[k] == nil {
					sum[k] = &wrkResult{}
				}
				sum[k].rps += r.rps / float64(rounds)
				sum[k].p50 += r.p50 / float64(rounds)
				sum[k].p99 += r.p99 / float64(rounds)
			}
		}
	}
	return sum
}

// proxy: throughput and latency through the real Traefik, four routes to
// the same upstream in the same run: bare (no plugin), noop (a Yaegi
// plugin that only calls next: the floor any plugin pays), llmtap (its
// records to the upstream's sink), and fallback (llmtap proxying the
// upstream itself, with a second one to fall back on: the happy path of
// docs/fallback.md). req/s, p50 and p99 per route and the ratios against
// the baselines.
//
//	BENCH_DURATION (8s)  BENCH_RATE (1000)  BENCH_RATE_DURATION (5s)
//	BENCH_CONNECTIONS (32)  BENCH_ROUNDS (2)  BENCH_THROUGHPUT (1; 0 skips wrk)
//	BENCH_FIXED (1; 0 skips the routes' separate fixed-rate runs)
//	BENCH_PLUGIN_BATCH (64): the plugin's batchSize
//	BENCH_TRAEFIK_GOGC (Go's default, 100): Traefik's GOGC
func (b *bench) proxy() {
	duration := env("BENCH_DURATION", "8s")
	rate := b.envInt("BENCH_RATE", 1000)
	rateDuration := env("BENCH_RATE_DURATION", "5s")
	conns := b.envInt("BENCH_CONNECTIONS", 32)
	rounds := b.envInt("BENCH_ROUNDS", 2)
	up := b.startUpstream()
	// The upstream is also the sink the plugin sends its records to.
	gogc := env("BENCH_TRAEFIK_GOGC", "")
	tr := b.s.Traefik(fmt.Sprintf(proxyRouters, up, up, b.envInt("BENCH_PLUGIN_BATCH", 64)), func(t *stack.Traefik) {
		t.ReadyHosts, t.ReadyPath = []string{"bare.test", "noop.test", "tap.test", "fallback.test"}, "/json"
		if gogc != "" {
			t.Env = []string{"GOGC=" + gogc}
		}
	})
	base := tr.URL()
	routes, paths := []string{"bare", "noop", "tap", "fallback"}, []string{"/json", "/sse"}
	b.warm(base, routes, paths, conns)

	if env("BENCH_THROUGHPUT", "1") == "1" {
		sum := b.interleaved(base, routes, paths, conns, duration, rounds)
		fmt.Printf("\n%s on %d cores, wrk -t1 -c%d -d%s, mean of %d interleaved rounds\n", filepath.Base(tr.Bin), runtime.NumCPU(), conns, duration, rounds)
		fmt.Printf("%-7s %-8s %10s %9s %9s\n", "path", "route", "req/s", "p50_ms", "p99_ms")
		for _, path := range paths {
			for _, route := range routes {
				r := sum[routeKey{path, route}]
				fmt.Printf("%-7s %-8s %10.0f %9.3f %9.3f\n", path, route, r.rps, r.p50, r.p99)
			}
		}
		fmt.Println()
		for _, path := range paths {
			bare, noop, tap := sum[routeKey{path, "bare"}], sum[routeKey{path, "noop"}], sum[routeKey{path, "tap"}]
			fmt.Printf("%-7s throughput llmtap/bare %.2f (goal >= 0.80)  llmtap/noop %.2f  noop/bare %.2f   added p99 vs bare %+.3f ms, vs noop %+.3f ms\n",
				path, tap.rps/bare.rps, tap.rps/noop.rps, noop.rps/bare.rps, tap.p99-bare.p99, tap.p99-noop.p99)
			fb := sum[routeKey{path, "fallback"}]
			fmt.Printf("%-7s throughput fallback/llmtap %.2f  fallback/bare %.2f  fallback/noop %.2f\n", path, fb.rps/tap.rps, fb.rps/bare.rps, fb.rps/noop.rps)
		}
	}

	// What the throughput runs left in the plugins' queues goes to the
	// sink first, or it would weigh on the first latency runs.
	b.waitSink(up)
	if env("BENCH_FIXED", "1") == "1" {
		b.fixedRate(tr.Process().Pid(), base, routes, paths, rate, rateDuration, rounds)
	}
	b.turns(base, paths, rate, rounds)
	f := strings.Fields(b.waitSink(up))
	if len(f) == 2 {
		fmt.Printf("\nrecords received by the collector sink: %s (reported dropped: %s)\n", f[0], f[1])
	}
	if gogc == "" {
		gogc = "Go's default"
	}
	fmt.Printf("Traefik's resident memory at its peak: %s (GOGC %s)\n", b.peakRSS(tr.Process().Pid()), gogc)
}

// peakRSS is the most resident memory process pid has held (VmHWM in
// /proc/pid/status).
func (b *bench) peakRSS(pid int) string {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.fail("Traefik's memory: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	b.fail("/proc/%d/status: no VmHWM", pid)
	return ""
}

// fixedRate measures latency below saturation, each route in turn at a
// fixed rate, open loop, and the CPU time Traefik (pid) spends per
// request meanwhile: unlike latency, little moved by what else the
// machine runs.
func (b *bench) fixedRate(pid int, base string, routes, paths []string, rate int, rateDuration string, rounds int) {
	fixed := map[routeKey]*loadResult{}
	cpu := map[routeKey]float64{} // µs per request
	for _, path := range paths {
		for round := 1; round <= rounds; round++ {
			for _, route := range routes {
				before := b.cpuOf(pid)
				r := b.runLoad(fmt.Sprintf("%d req/s on %s %s", rate, route, path),
					"-url", base+path, "-host", route+".test", "-rate", fmt.Sprint(rate), "-duration", rateDuration)
				used := float64(b.cpuOf(pid)-before) / 1e3 / float64(r.n)
				b.log("%s %s round %d at %d req/s: %d requests, p50 %.3f ms, p99 %.3f ms, Traefik CPU %.0f µs per request", path, route, round, rate, r.n, r.p50, r.p99, used)
				k := routeKey{path, route}
				if fixed[k] == nil {
					fixed[k] = &loadResult{}
				}
				fixed[k].p50 += r.p50 / float64(rounds)
				fixed[k].p99 += r.p99 / float64(rounds)
				cpu[k] += used / float64(rounds)
			}
		}
	}
	fmt.Printf("\nLatency at a fixed %d req/s for %s (open loop), and Traefik's CPU time per request, mean of %d rounds\n", rate, rateDuration, rounds)
	fmt.Printf("%-7s %-8s %9s %9s %11s\n", "path", "route", "p50_ms", "p99_ms", "cpu_us/req")
	for _, path := range paths {
		for _, route := range routes {
			r := fixed[routeKey{path, route}]
			fmt.Printf("%-7s %-8s %9.3f %9.3f %11.0f\n", path, route, r.p50, r.p99, cpu[routeKey{path, route}])
		}
		fmt.Printf("%-7s CPU per request: llmtap adds %+.0f µs vs bare (%+.0f vs noop), fallback %+.0f µs vs llmtap\n", path,
			cpu[routeKey{path, "tap"}]-cpu[routeKey{path, "bare"}], cpu[routeKey{path, "tap"}]-cpu[routeKey{path, "noop"}],
			cpu[routeKey{path, "fallback"}]-cpu[routeKey{path, "tap"}])
		bare, noop, tap := fixed[routeKey{path, "bare"}], fixed[routeKey{path, "noop"}], fixed[routeKey{path, "tap"}]
		fmt.Printf("%-7s llmtap adds p50 %+.3f ms, p99 %+.3f ms vs bare (%+.3f ms vs noop); goal: p99 <= +0.3 ms\n", path, tap.p50-bare.p50, tap.p99-bare.p99, tap.p99-noop.p99)
		fb := fixed[routeKey{path, "fallback"}]
		fmt.Printf("%-7s fallback adds p50 %+.3f ms, p99 %+.3f ms vs llmtap (%+.3f ms vs bare, %+.3f ms vs noop)\n",
			path, fb.p50-tap.p50, fb.p99-tap.p99, fb.p99-bare.p99, fb.p99-noop.p99)
	}
}

// cpuOf is the CPU time process pid has used, user and system, from
// /proc/pid/stat (in clock ticks, which Linux's interface fixes at 100
// a second).
func (b *bench) cpuOf(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.fail("Traefik's CPU time: %v", err)
	}
	// The fields after the command, which is in parentheses and may hold
	// spaces: state is the first, utime the 12th, stime the 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		b.fail("/proc/%d/stat: %q", pid, stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.fail("/proc/%d/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * (time.Second / 100)
}

// waitSink waits until the records the plugins send to the bench
// upstream's sink stop coming (the plugins' senders flush every second),
// and returns the sink's counts: "received dropped".
func (b *bench) waitSink(up string) string {
	last := ""
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		_, counts := b.get(up+"/v1/records/count", "", "")
		if counts != "" && counts == last {
			return counts
		}
		last = counts
		time.Sleep(1500 * time.Millisecond)
	}
	b.fail("the plugins' records still coming after 2 minutes (%s)", last)
	return last
}

// turns measures what each route adds to a request, the routes taking
// turns request by request in one open-loop run: every route meets the
// same moments of the machine, whose pauses on shared cores move p99 by
// milliseconds from one run to the next, far more than the differences
// sought. The routes share rate req/s (Traefik carries that many in all);
// the differences to the baselines are taken per round, and the median
// round's is printed; then the difference at p99 over all rounds'
// requests, with a 90% interval from resampling seconds of the runs
// (addedAt): what the goal is to be read against.
//
//	BENCH_TURNS_ROUTES (bare,noop,tap,fallback)  BENCH_TURNS_DURATION (10s)
func (b *bench) turns(base string, paths []string, rate, rounds int) {
	routes := strings.Split(env("BENCH_TURNS_ROUTES", "bare,noop,tap,fallback"), ",")
	rateDuration := env("BENCH_TURNS_DURATION", "10s")
	p50 := func(r loadResult) float64 { return r.p50 }
	p99 := func(r loadResult) float64 { return r.p99 }
	hosts := make([]string, len(routes))
	for i, r := range routes {
		hosts[i] = r + ".test"
	}
	fmt.Printf("\nLatency with the routes taking turns request by request, %d req/s in all (%d each) for %s (open loop), %d rounds\n", rate, rate/len(routes), rateDuration, rounds)
	fmt.Printf("%-7s %-8s %9s %9s   %s\n", "path", "route", "p50_ms", "p99_ms", "p99 of each round")
	samples := filepath.Join(b.tb.TempDir(), "samples")
	for _, path := range paths {
		byRoute := map[string][]loadResult{}
		var blocks []block
		for round := 1; round <= rounds; round++ {
			rs := b.runLoadTurns(fmt.Sprintf("%s taking turns on %s", strings.Join(routes, ", "), path),
				"-url", base+path, "-host", strings.Join(hosts, ","), "-rate", fmt.Sprint(rate), "-duration", rateDuration, "-samples", samples)
			for i, route := range routes {
				byRoute[route] = append(byRoute[route], rs[hosts[i]])
			}
			bs, err := readBlocks(samples)
			if err != nil {
				b.fail("bench/load's samples: %v", err)
			}
			blocks = append(blocks, bs...)
		}
		for _, route := range routes {
			var p99s []string
			for _, r := range byRoute[route] {
				p99s = append(p99s, fmt.Sprintf("%.2f", r.p99))
			}
			fmt.Printf("%-7s %-8s %9.3f %9.3f   %s\n", path, route, medianOf(byRoute[route], p50), medianOf(byRoute[route], p99), strings.Join(p99s, " "))
		}
		added := func(route, base string, pick func(loadResult) float64) float64 {
			var d []float64
			for i := range byRoute[route] {
				d = append(d, pick(byRoute[route][i])-pick(byRoute[base][i]))
			}
			return median(d)
		}
		pooled := func(route, base string) string {
			est, lo, hi := addedAt(blocks, route+".test", base+".test", 0.99, 500)
			return fmt.Sprintf("over all rounds %+.3f ms (90%% interval %+.3f to %+.3f)", est, lo, hi)
		}
		if byRoute["tap"] != nil && byRoute["bare"] != nil {
			fmt.Printf("%-7s llmtap adds p50 %+.3f ms, p99 %+.3f ms vs bare; goal: p99 <= +0.3 ms\n", path, added("tap", "bare", p50), added("tap", "bare", p99))
			fmt.Printf("%-7s llmtap adds p99 %s vs bare\n", path, pooled("tap", "bare"))
		}
		if byRoute["fallback"] != nil && byRoute["tap"] != nil {
			fmt.Printf("%-7s fallback adds p50 %+.3f ms, p99 %+.3f ms vs llmtap; goal: p99 <= +0.1 ms\n", path, added("fallback", "tap", p50), added("fallback", "tap", p99))
			fmt.Printf("%-7s fallback adds p99 %s vs llmtap\n", path, pooled("fallback", "tap"))
		}
	}
}
