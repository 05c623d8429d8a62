// Command llmtap-stack starts and stops llmtap's local stack (ClickHouse,
// Redis, the collector, the mock LLM upstream, Traefik with the plugin)
// through internal/stack, for people and scripts:
//
//	llmtap-stack up     the stack in the background (make up)
//	llmtap-stack down   stops what up started (make down)
//	llmtap-stack demo   the stack, a workload and a summary, until Ctrl-C (make demo)
//	llmtap-stack env    prints the env file of the running `make up`
//
// Options come from the environment, as make passes them: UPSTREAM, ROUTE,
// LIMITS and the ports (TRAEFIK_PORT, COLLECTOR_PORT, CLICKHOUSE_TCP_PORT,
// CLICKHOUSE_HTTP_PORT, REDIS_PORT, UPSTREAM_PORT); LLMTAP_RUN is the run
// folder's parent (default .run in the checkout).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/llmtap/llmtap/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	var code exitCode
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// exitCode ends the command with a status and no further message (the
// message was printed already).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// env is what the command reads from its environment.
type env func(string) string

func run(ctx context.Context, args []string, getenv env, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: llmtap-stack up|down|demo|env")
	}
	root, err := stack.Root()
	if err != nil {
		return err
	}
	base := getenv("LLMTAP_RUN")
	if base == "" {
		base = filepath.Join(root, ".run")
	}
	if base, err = filepath.Abs(base); err != nil {
		return err
	}
	switch args[0] {
	case "up":
		return up(ctx, root, filepath.Join(base, "up"), getenv, out)
	case "down":
		return down(root, filepath.Join(base, "up"), out)
	case "demo":
		return demo(ctx, root, base, getenv, out)
	case "env":
		return printEnv(filepath.Join(base, "up"), out)
	default:
		return fmt.Errorf("unknown command %q; usage: llmtap-stack up|down|demo|env", args[0])
	}
}
