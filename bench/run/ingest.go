package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/llmtap/llmtap/internal/stack"
)

// ingest: the collector writing realistic records (~6 KB, 40-chunk SSE
// streams) into the real ClickHouse on loopback, at a few ClickHouse
// batch sizes: records per second (accepted and stored) and the
// collector's peak memory for each; then the same streams with and
// without their usage, which the collector then estimates; then with
// redaction off, on (secrets, the default) and on with every kind of
// personal data.
//
//	BENCH_RECORDS (100000)  BENCH_BATCHES ("1000 2000 5000")  BENCH_QUEUE
//	BENCH_ESTIMATE_ROUNDS (2)  BENCH_REDACT_ROUNDS (2)
func (b *bench) ingest() {
	records := b.envInt("BENCH_RECORDS", 100000)
	tool, err := stack.BuildTool(b.ctx, b.s.Root, "collector", "./internal/ingestbench")
	if err != nil {
		b.fail("%v", err)
	}
	version, err := b.s.ClickHouse().Query(b.ctx, "SELECT version()")
	if err != nil {
		b.fail("%v", err)
	}
	fmt.Printf("Ingest into ClickHouse %s on %d cores, %d records of ~6 KB (40-chunk SSE streams); goal: rate >= 25000/s with peak_rss <= 300 MB\n", version, runtime.NumCPU(), records)
	for _, field := range strings.Fields(env("BENCH_BATCHES", "1000 2000 5000")) {
		batch, err := strconv.Atoi(field)
		if err != nil || batch <= 0 {
			b.fail("BENCH_BATCHES: %q is not a batch size", field)
		}
		fmt.Printf("clickhouse.batch_size=%-6d ", batch)
		b.ingestRun(tool, records, batch, ingestOptions{})
	}
	// Estimation's cost: streams without usage, whose prompt and output
	// the collector counts, against the same streams with their usage,
	// in alternating rounds at the default batch size.
	rounds := b.envInt("BENCH_ESTIMATE_ROUNDS", 2)
	var with, without []ingestResult
	for i := 0; i < rounds; i++ {
		fmt.Printf("usage=provider    ")
		without = append(without, b.ingestRun(tool, records, defaultBatch, ingestOptions{}))
		fmt.Printf("usage=estimated   ")
		with = append(with, b.ingestRun(tool, records, defaultBatch, ingestOptions{estimated: true}))
	}
	if rounds > 0 {
		r0, r1 := meanIngest(without), meanIngest(with)
		fmt.Printf("estimated/provider: rate %.2f (goal >= 0.80), collector cpu per record %.0fus -> %.0fus\n",
			r1.rate/r0.rate, r0.collectorUS, r1.collectorUS)
	}
	// Redaction's cost, in alternating rounds likewise.
	rounds = b.envInt("BENCH_REDACT_ROUNDS", 2)
	modes := []struct {
		name string
		cfg  map[string]interface{}
	}{
		{"redaction=off     ", map[string]interface{}{"secrets": false}},
		{"redaction=secrets ", nil}, // the default
		{"redaction=all     ", map[string]interface{}{"secrets": true, "pii": []string{"email", "phone", "card", "iban", "ip"}}},
	}
	runs := make([][]ingestResult, len(modes))
	for i := 0; i < rounds; i++ {
		for k, m := range modes {
			fmt.Print(m.name)
			runs[k] = append(runs[k], b.ingestRun(tool, records, defaultBatch, ingestOptions{redaction: m.cfg}))
		}
	}
	if rounds > 0 {
		off, sec, all := meanIngest(runs[0]), meanIngest(runs[1]), meanIngest(runs[2])
		fmt.Printf("redaction secrets/off: rate %.2f (goal >= 0.85), collector cpu per record %.0fus -> %.0fus; all kinds/off: rate %.2f, %.0fus\n",
			sec.rate/off.rate, off.collectorUS, sec.collectorUS, all.rate/off.rate, all.collectorUS)
	}
}

// ingestOptions vary an ingest run: records without usage (estimated),
// the collector's redaction section (nil: the default).
type ingestOptions struct {
	estimated bool
	redaction map[string]interface{}
}

// defaultBatch is the collector's default clickhouse.batch_size.
const defaultBatch = 2000

// ingestResult is what one ingestbench run measured.
type ingestResult struct {
	rate        float64 // records stored per second
	collectorUS float64 // collector CPU per record, in microseconds
}

var (
	rateRe = regexp.MustCompile(`rate=([0-9.]+)/s`)
	cpuRe  = regexp.MustCompile(`collector=([0-9.]+)us`)
)

// ingestRun starts a collector with a database of its own, runs
// ingestbench against it, prints its line and returns what it measured.
// The database is dropped after: the server's merges of one run's rows
// must not weigh on the next.
func (b *bench) ingestRun(tool string, records, batch int, o ingestOptions) ingestResult {
	b.runs++
	database := fmt.Sprintf("llmtap_bench_%d", b.runs)
	ch := b.s.ClickHouse()
	queue := b.envInt("BENCH_QUEUE", max(2*batch, 5000))
	cfg := stack.CollectorConfig{
		Listen: b.s.Addr(),
		// A bench on loopback: no tokens.
		TrustedNetwork: true,
		Log:            &stack.CollectorLog{Level: "warn"},
		ClickHouse: stack.CollectorClickHouse{
			Addr: ch.Addr(), Database: database, BatchSize: batch, QueueSize: queue,
			SpoolDir: filepath.Join(b.s.Folder("spool"), "spool"), Retention: "0s", BodyRetention: "0s",
		},
		Redaction: o.redaction,
	}
	c := b.s.Collector(cfg)
	cmd := exec.Command(tool, "-url", c.URL(), "-records", fmt.Sprint(records), "-pid", fmt.Sprint(c.Process().Pid()),
		"-clickhouse-pid", fmt.Sprint(ch.Process().Pid()), fmt.Sprintf("-estimated=%t", o.estimated))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stdout, &out), os.Stderr
	if err := cmd.Run(); err != nil {
		b.fail("ingestbench: %v", err)
	}
	if err := c.Stop(b.ctx); err != nil {
		b.fail("%v", err)
	}
	if _, err := ch.Query(b.ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
		b.fail("%v", err)
	}
	var r ingestResult
	if m := rateRe.FindSubmatch(out.Bytes()); m != nil {
		r.rate, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := cpuRe.FindSubmatch(out.Bytes()); m != nil {
		r.collectorUS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if r.rate == 0 {
		b.fail("ingestbench printed no rate: %s", out.String())
	}
	return r
}

// meanIngest averages runs.
func meanIngest(runs []ingestResult) ingestResult {
	var m ingestResult
	for _, r := range runs {
		m.rate += r.rate / float64(len(runs))
		m.collectorUS += r.collectorUS / float64(len(runs))
	}
	return m
}
