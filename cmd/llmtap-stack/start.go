package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

// progress prints one line per step of a stack's start, as
// "[up] MESSAGE ... ok (1.2 s)".
type progress struct {
	name string // up, demo
	out  io.Writer
	root string
}

// say prints a line that is not a step.
func (p *progress) say(format string, args ...any) {
	fmt.Fprintf(p.out, "[%s] %s\n", p.name, fmt.Sprintf(format, args...))
}

// step runs fn as one step. When it fails, the line says so, the error
// follows (the parts name their logs there) and step returns exitCode 1
// (130 when interrupted).
func (p *progress) step(ctx context.Context, msg string, fn func() error) error {
	fmt.Fprintf(p.out, "[%s] %s ... ", p.name, msg)
	t0 := time.Now()
	err := fn()
	if err == nil {
		fmt.Fprintf(p.out, "ok (%.1f s)\n", time.Since(t0).Seconds())
		return nil
	}
	if ctx.Err() != nil {
		fmt.Fprintln(p.out, "interrupted")
		return exitCode(130)
	}
	fmt.Fprintln(p.out, "FAILED")
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(os.Stderr, "    %s\n", line)
	}
	fmt.Fprintf(os.Stderr, "[%s] failed: %s\n", p.name, msg)
	return exitCode(1)
}

// rel is path relative to the checkout when it is inside it.
func (p *progress) rel(path string) string {
	if r, err := filepath.Rel(p.root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// start takes a Local stack from a bare machine to one that routes, one
// step each: ports, packages, builds, then each part in order. A failed
// or interrupted start stops what it had started. others are the run
// folders of the other stacks, named in a refusal when they hold a port.
func start(ctx context.Context, p *progress, l *stack.Local, others map[string]string) (*stack.Stack, error) {
	var names []string
	for _, v := range l.Ports.Vars(l.Mock) {
		names = append(names, fmt.Sprint(*v.Port))
	}
	if err := p.step(ctx, "checking the ports: "+strings.Join(names, " "), func() error {
		return checkPorts(l, others)
	}); err != nil {
		return nil, err
	}
	if err := p.step(ctx, "installing what is missing (Debian packages)", func() error {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(l.Root, "scripts", "install.sh"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("scripts/install.sh: %w\n%s", err, out)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := p.step(ctx, "building Traefik (cached; the first build takes ~8 min)", func() error {
		var err error
		l.Bins.Traefik, err = stack.TraefikBin(ctx, l.Root)
		return err
	}); err != nil {
		return nil, err
	}
	what := "building the collector"
	if l.Mock {
		what = "building the collector and the mock upstream"
	}
	if err := p.step(ctx, what, func() error {
		bins, err := stack.Build(ctx, l.Root)
		l.Bins.Collector, l.Bins.Mock = bins.Collector, bins.Mock
		return err
	}); err != nil {
		return nil, err
	}
	all := l.Parts()
	var s stack.Stack
	for _, part := range all.Parts() {
		if err := p.step(ctx, startMessage(part), func() error {
			s.Add(part)
			return s.Start(ctx)
		}); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// checkPorts refuses a port given twice or in use, with the variable that
// moves it, and with the other stack when that is what holds it.
func checkPorts(l *stack.Local, others map[string]string) error {
	err := l.Ports.Check(l.Mock)
	var inUse *stack.PortInUseError
	if !errors.As(err, &inUse) {
		return err
	}
	by := ""
	for run, hint := range others {
		if len(stack.Running(run)) > 0 {
			by = " by " + hint
		}
	}
	return fmt.Errorf("%w%s; free it or set %s to another port", err, by, inUse.Var)
}

func startMessage(p stack.Part) string {
	switch p := p.(type) {
	case *stack.ClickHouse:
		return fmt.Sprintf("starting ClickHouse on %s (native), :%d (HTTP)", p.Addr(), p.HTTPPort)
	case *stack.Redis:
		return "starting Redis on " + p.Addr()
	case *stack.Collector:
		return "starting the collector on " + p.Config.Listen
	case *stack.Mock:
		return "starting the mock upstream on " + strings.TrimPrefix(p.URL(), "http://")
	case *stack.Traefik:
		return "starting Traefik with the plugin on " + p.Addr()
	}
	return "starting " + p.Name()
}

// addresses prints where everything is, for people, within 100 columns.
func addresses(p *progress, l *stack.Local, upstream, tenant, admin, requestID string) {
	c := "http://127.0.0.1:" + fmt.Sprint(l.Ports.Collector)
	if requestID == "" {
		requestID = "<X-Request-Id>"
	}
	row := func(k, v string) { fmt.Fprintf(p.out, "  %-11s %s\n", k, v) }
	row("Traefik", fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Traefik))
	row("upstream", upstream)
	row("collector", c+"/v1/requests/"+requestID+" (admin token)")
	row("metrics", c+"/metrics")
	row("limits", c+"/v1/limits/"+tenant+" (admin token: "+admin+")")
	row("ClickHouse", fmt.Sprintf("127.0.0.1:%d (clickhouse-client --port %d), http://127.0.0.1:%d",
		l.Ports.ClickHouseTCP, l.Ports.ClickHouseTCP, l.Ports.ClickHouseHTTP))
	row("Redis", fmt.Sprintf("127.0.0.1:%d (redis-cli -p %d)", l.Ports.Redis, l.Ports.Redis))
	row("logs", p.rel(l.Run)+"/ (a folder per part)")
	row("env file", p.rel(filepath.Join(l.Run, "env"))+" (these addresses and the tokens, as LLMTAP_* lines)")
	ports := fmt.Sprintf("TRAEFIK_PORT=%d COLLECTOR_PORT=%d REDIS_PORT=%d", l.Ports.Traefik, l.Ports.Collector, l.Ports.Redis)
	if l.Mock {
		ports += fmt.Sprintf(" UPSTREAM_PORT=%d", l.Ports.Mock)
	}
	row("ports", ports)
	row("", fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d CLICKHOUSE_HTTP_PORT=%d (set to move them)", l.Ports.ClickHouseTCP, l.Ports.ClickHouseHTTP))
}

// randomToken is 32 hex digits.
func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// stopAll stops a started stack within its deadline and says what it
// stopped.
func stopAll(s *stack.Stack) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.Stop(ctx)
}
