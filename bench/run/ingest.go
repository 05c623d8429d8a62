package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/llmtap/llmtap/internal/stack"
)

// ingest: the collector writing realistic records (~6 KB, 40-chunk SSE
// streams) into the real ClickHouse on loopback, at a few ClickHouse
// batch sizes: records per second (accepted and stored) and the
// collector's peak memory for each.
//
//	BENCH_RECORDS (100000)  BENCH_BATCHES ("1000 2000 5000")  BENCH_QUEUE
func (b *bench) ingest() {
	records := b.envInt("BENCH_RECORDS", 100000)
	tool, err := stack.BuildTool(b.ctx, b.s.Root, "collector", "./internal/ingestbench")
	if err != nil {
		b.fail("%v", err)
	}
	ch := b.s.ClickHouse()
	version, err := ch.Query(b.ctx, "SELECT version()")
	if err != nil {
		b.fail("%v", err)
	}
	fmt.Printf("Ingest into ClickHouse %s on %d cores, %d records of ~6 KB (40-chunk SSE streams); goal: rate >= 25000/s with peak_rss <= 300 MB\n", version, runtime.NumCPU(), records)
	for _, field := range strings.Fields(env("BENCH_BATCHES", "1000 2000 5000")) {
		batch, err := strconv.Atoi(field)
		if err != nil || batch <= 0 {
			b.fail("BENCH_BATCHES: %q is not a batch size", field)
		}
		queue := b.envInt("BENCH_QUEUE", max(2*batch, 5000))
		// A database of its own for each batch size, dropped after: the
		// server's merges of one run's rows must not weigh on the next.
		database := fmt.Sprintf("llmtap_bench_%d", batch)
		cfg := stack.CollectorConfig{
			Listen: b.s.Addr(),
			// A bench on loopback: no tokens.
			TrustedNetwork: true,
			Log:            &stack.CollectorLog{Level: "warn"},
			ClickHouse: stack.CollectorClickHouse{
				Addr: ch.Addr(), Database: database, BatchSize: batch, QueueSize: queue,
				SpoolDir: filepath.Join(b.s.Folder("spool"), "spool"), Retention: "0s", BodyRetention: "0s",
			},
		}
		c := b.s.Collector(cfg)
		fmt.Printf("clickhouse.batch_size=%-6d ", batch)
		cmd := exec.Command(tool, "-url", c.URL(), "-records", fmt.Sprint(records), "-pid", fmt.Sprint(c.Process().Pid()), "-clickhouse-pid", fmt.Sprint(ch.Process().Pid()))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			b.fail("ingestbench: %v", err)
		}
		if err := c.Stop(b.ctx); err != nil {
			b.fail("%v", err)
		}
		if _, err := ch.Query(b.ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
			b.fail("%v", err)
		}
	}
}
