package main

import (
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

// stack: the whole of llmtap on one machine, as a user running make up
// would try it: Traefik with the plugin sending to the real collector,
// which writes ClickHouse, all on the same cores, against bare Traefik on
// the same upstream, in interleaved rounds. The ratio is what a user sees
// when the collector and ClickHouse share the machine with the proxy.
//
//	BENCH_DURATION (8s)  BENCH_CONNECTIONS (32)  BENCH_ROUNDS (2)
func (b *bench) stack() {
	duration := env("BENCH_DURATION", "8s")
	conns := b.envInt("BENCH_CONNECTIONS", 32)
	rounds := b.envInt("BENCH_ROUNDS", 2)
	ch := b.s.ClickHouse()
	version, err := ch.Query(b.ctx, "SELECT version()")
	if err != nil {
		b.fail("%v", err)
	}
	cfg := b.s.CollectorConfig(ch)
	// Loopback only: no tokens. The collector's own batching.
	cfg.IngestToken, cfg.ReadToken, cfg.TrustedNetwork = "", "", true
	cfg.ClickHouse.Database, cfg.ClickHouse.FlushInterval, cfg.ClickHouse.BatchSize = "llmtap_stack_bench", "", 0
	col := b.s.Collector(cfg)
	up := b.startUpstream()
	tr := b.s.Traefik(fmt.Sprintf(proxyRouters, up, col.URL(), 64), func(t *stack.Traefik) {
		t.ReadyHosts, t.ReadyPath = []string{"bare.test", "tap.test"}, "/json"
	})
	base := tr.URL()
	routes, paths := []string{"bare", "tap"}, []string{"/json", "/sse"}
	b.warm(base, routes, paths, conns)
	sum := b.interleaved(base, routes, paths, conns, duration, rounds)
	fmt.Printf("\nThe whole stack on %d cores (Traefik + llmtap, the collector, ClickHouse %s), wrk -t1 -c%d -d%s, mean of %d interleaved rounds\n",
		runtime.NumCPU(), version, conns, duration, rounds)
	for _, path := range paths {
		bare, tap := sum[routeKey{path, "bare"}], sum[routeKey{path, "tap"}]
		fmt.Printf("%-7s bare %8.0f req/s  llmtap %8.0f req/s  llmtap/bare %.2f (goal >= 0.50)  p99 %.3f vs %.3f ms\n",
			path, bare.rps, tap.rps, tap.rps/bare.rps, tap.p99, bare.p99)
	}
	// What reached ClickHouse, once the plugin and the collector flushed.
	var rows, last int
	for settled := 0; settled < 5; {
		time.Sleep(time.Second)
		n, err := ch.Query(b.ctx, "SELECT count() FROM llmtap_stack_bench.requests")
		if err != nil {
			b.fail("%v", err)
		}
		if rows, _ = strconv.Atoi(n); rows == last {
			settled++
		} else {
			settled, last = 0, rows
		}
	}
	dropped, err := stack.Metric(b.ctx, col.URL()+"/metrics", "llmtap_plugin_dropped_records_total")
	if err != nil {
		b.fail("%v", err)
	}
	fmt.Printf("rows stored: %d; records the plugin reported dropped: %.0f\n", rows, dropped)
}
