// Command run is make bench's driver: it starts what each benchmark needs
// through internal/stack (Traefik with the plugins, the bench upstream,
// ClickHouse, Redis, the collector) on free loopback ports, runs the
// load (wrk, bench/load, the collector's ingestbench) and prints figures
// and ratios against baselines measured in the same run.
//
//	run proxy    bare Traefik, the no-op plugin and llmtap on the same upstream
//	run ingest   the collector writing records into ClickHouse, per batch size
//	run limits   limit checks against Redis, and a limited route against the same route without
//	run stack    bare Traefik against Traefik + llmtap + the collector + ClickHouse on the same machine
//
// Settings come from BENCH_* variables (see each benchmark). Load goes to
// 127.0.0.1 only and is bounded in time.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

func main() {
	tb := &stack.MainTB{}
	code := 0
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: run proxy|ingest|limits|stack")
		os.Exit(2)
	}
	b := newBench(tb)
	switch os.Args[1] {
	case "proxy":
		b.proxy()
	case "ingest":
		b.ingest()
	case "limits":
		b.limits()
	case "stack":
		b.stack()
	default:
		fmt.Fprintf(os.Stderr, "unknown benchmark %q; usage: run proxy|ingest|limits|stack\n", os.Args[1])
		code = 2
	}
	tb.Close()
	os.Exit(code)
}

// bench is one benchmark's stack and tools.
type bench struct {
	tb       *stack.MainTB
	s        *stack.T
	ctx      context.Context
	load     string // bench/load
	upstream string // bench/upstream
	runs     int    // ingest runs so far, each with a database of its own
}

func newBench(tb *stack.MainTB) *bench {
	s := stack.New(tb)
	b := &bench{tb: tb, s: s, ctx: context.Background()}
	cmd := exec.Command("bash", filepath.Join(s.Root, "scripts", "install.sh"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		b.fail("scripts/install.sh: %v", err)
	}
	var err error
	if b.load, err = stack.BuildTool(b.ctx, s.Root, ".", "./bench/load"); err != nil {
		b.fail("%v", err)
	}
	if b.upstream, err = stack.BuildTool(b.ctx, s.Root, ".", "./bench/upstream"); err != nil {
		b.fail("%v", err)
	}
	return b
}

func (b *bench) fail(format string, args ...any) { b.tb.Fatalf("bench: "+format, args...) }

func (b *bench) log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

// startUpstream runs bench/upstream (JSON, SSE, and a record sink) on a
// free port and returns its base URL.
func (b *bench) startUpstream() string {
	addr := b.s.Addr()
	b.s.Program("bench-upstream", stack.Command{Path: b.upstream, Args: []string{"-addr", addr}},
		func(context.Context) error {
			if !stack.Answers(addr) {
				return fmt.Errorf("%s not listening", addr)
			}
			return nil
		})
	return "http://" + addr
}

// env reads a setting, with its default.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (b *bench) envInt(name string, def int) int {
	n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
	if err != nil || n < 0 {
		b.fail("%s=%s: want a whole number", name, os.Getenv(name))
	}
	return n
}

// wrkResult is what wrk reports: requests per second, p50 and p99 in ms.
type wrkResult struct{ rps, p50, p99 float64 }

// wrk runs wrk against url with headers (and a Lua script when given);
// errors and non-2xx answers fail the benchmark.
func (b *bench) wrk(conns int, dur, url, script string, headers ...string) wrkResult {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), "-d" + dur, "--latency"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if script != "" {
		args = append(args, "-s", script)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	text := string(out)
	if err != nil || strings.Contains(text, "Non-2xx") || strings.Contains(text, "Socket errors") {
		b.fail("wrk %s saw errors (%v):\n%s", url, err, text)
	}
	var r wrkResult
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50 = toMS(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99 = toMS(f[1])
		}
	}
	if r.rps == 0 {
		b.fail("wrk %s: no Requests/sec in:\n%s", url, text)
	}
	return r
}

// toMS reads wrk's latency (812.00us, 1.52ms, 1.01s) in milliseconds.
func toMS(v string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			f, _ := strconv.ParseFloat(n, 64)
			return f * u.scale
		}
	}
	return 0
}

// loadResult is bench/load's line: requests, errors, p50, p90, p99, max (ms).
type loadResult struct {
	n, errors          int
	p50, p90, p99, max float64
}

// runLoad runs bench/load with args and fails the benchmark on any error.
func (b *bench) runLoad(what string, args ...string) loadResult {
	lines := b.loadLines(what, args...)
	return b.loadResultOf(what, strings.Fields(lines[len(lines)-1]))
}

// runLoadTurns runs bench/load with its hosts taking turns (-host a,b,...)
// and returns each host's result; any error fails the benchmark.
func (b *bench) runLoadTurns(what string, args ...string) map[string]loadResult {
	rs := map[string]loadResult{}
	for _, line := range b.loadLines(what, args...) {
		f := strings.Fields(line)
		if len(f) == 0 {
			b.fail("bench/load (%s): an empty line", what)
		}
		rs[f[0]] = b.loadResultOf(what+" on "+f[0], f[1:])
	}
	return rs
}

// loadLines runs bench/load with args and returns its output's lines.
func (b *bench) loadLines(what string, args ...string) []string {
	out, err := exec.Command(b.load, args...).Output()
	if err != nil {
		b.fail("bench/load (%s): %v", what, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// loadResultOf reads the fields of a bench/load line; errors fail the
// benchmark.
func (b *bench) loadResultOf(what string, f []string) loadResult {
	if len(f) < 6 {
		b.fail("bench/load (%s): %q", what, f)
	}
	var r loadResult
	r.n, _ = strconv.Atoi(f[0])
	r.errors, _ = strconv.Atoi(f[1])
	for i, p := range []*float64{&r.p50, &r.p90, &r.p99, &r.max} {
		*p, _ = strconv.ParseFloat(f[2+i], 64)
	}
	if r.errors != 0 {
		b.fail("%d errors (%s)", r.errors, what)
	}
	return r
}

// waitRoute waits until GET base+path for host answers 200.
func (b *bench) waitRoute(base, host, path string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := b.get(base+path, host, ""); code == 200 {
			return
		}
		if time.Now().After(deadline) {
			b.fail("route %s %s does not answer", host, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
