package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

const stackRouters = `http:
  routers:
    bare:
      rule: Host(` + "`bare.test`" + `)
      service: up
    tap:
      rule: Host(` + "`tap.test`" + `)
      service: up
      middlewares: [llmtap]
  middlewares:
    llmtap:
      plugin:
        llmtap:
          collectorURL: %[2]s
          route: bench
  services:
    up:
      loadBalancer:
        servers:
          - url: %[1]s
`

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
	col := b.s.Collector(stack.CollectorConfig{
		Listen:         b.s.Addr(),
		TrustedNetwork: true, // loopback only
		Log:            &stack.CollectorLog{Level: "warn"},
		ClickHouse: stack.CollectorClickHouse{
			Addr: ch.Addr(), Database: "llmtap_stack_bench", Retention: "0s", BodyRetention: "0s",
			SpoolDir: filepath.Join(b.s.Folder("spool"), "spool"),
		},
	})
	up := b.startUpstream()
	tr := b.s.Traefik(fmt.Sprintf(stackRouters, up, col.URL()), func(t *stack.Traefik) {
		t.ReadyHosts, t.ReadyPath = []string{"bare.test", "tap.test"}, "/json"
	})
	base := tr.URL()
	routes, paths := []string{"bare", "tap"}, []string{"/json", "/sse"}
	for _, route := range routes {
		for _, path := range paths {
			b.waitRoute(base, route+".test", path)
			b.wrk(conns, "2s", base+path, "", "Host: "+route+".test")
		}
	}
	type key struct{ path, route string }
	sum := map[key]*wrkResult{}
	for _, path := range paths {
		for round := 1; round <= rounds; round++ {
			for _, route := range routes {
				r := b.wrk(conns, duration, base+path, "", "Host: "+route+".test")
				b.log("stack %s %s round %d: %.0f req/s, p99 %.3f ms", path, route, round, r.rps, r.p99)
				k := key{path, route}
				if sum[k] == nil {
					sum[k] = &wrkResult{}
				}
				sum[k].rps += r.rps / float64(rounds)
				sum[k].p99 += r.p99 / float64(rounds)
			}
		}
	}
	fmt.Printf("\nThe whole stack on %d cores (Traefik + llmtap, the collector, ClickHouse %s), wrk -t1 -c%d -d%s, mean of %d interleaved rounds\n",
		runtime.NumCPU(), version, conns, duration, rounds)
	for _, path := range paths {
		bare, tap := sum[key{path, "bare"}], sum[key{path, "tap"}]
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
