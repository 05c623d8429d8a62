package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

var (
	upstreamRule = regexp.MustCompile(`^https?://[][A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/%+-]*)?$`)
	routeRule    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// up starts the stack of make up in the background: Traefik sends every
// path through the plugin to UPSTREAM (the mock when it is empty).
func up(ctx context.Context, root, run string, getenv env, out io.Writer) error {
	upstream := strings.TrimSuffix(getenv("UPSTREAM"), "/")
	route := getenv("ROUTE")
	if route == "" {
		route = "llm"
	}
	if upstream != "" && !upstreamRule.MatchString(upstream) {
		return fmt.Errorf("UPSTREAM=%s: want http://host[:port][/path] or https://host[:port][/path]", upstream)
	}
	if !routeRule.MatchString(route) {
		return fmt.Errorf("ROUTE=%s: want letters, digits, . _ -", route)
	}
	var limits string
	switch getenv("LIMITS") {
	case "1", "true":
		limits = "true"
	case "0", "false", "":
		limits = "false"
	default:
		return fmt.Errorf("LIMITS=%s: want 1 (on) or 0 (off)", getenv("LIMITS"))
	}
	l := &stack.Local{Root: root, Run: run, Ports: stack.DefaultPorts(), Mock: upstream == "", Detach: true}
	if err := l.Ports.FromEnv(getenv); err != nil {
		return err
	}
	if running := stack.Running(run); len(running) > 0 {
		return fmt.Errorf("the stack of `make up` already runs (%s): `make down` first", strings.Join(running, ", "))
	}
	if upstream == "" {
		upstream = fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Mock)
	}
	l.Collector = stack.CollectorConfig{
		IngestToken: randomToken(), ReadToken: randomToken(), AdminToken: randomToken(),
		ShutdownTimeout: "8s",
	}
	dynamic, err := stack.Render(filepath.Join(root, "traefik", "up.yml"), map[string]string{
		"UPSTREAM":  upstream,
		"ROUTE":     route,
		"LIMITS":    limits,
		"COLLECTOR": fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Collector),
		"TOKEN":     l.Collector.IngestToken,
	})
	if err != nil {
		return err
	}
	l.Dynamic = dynamic
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(run, "env"))
	p := &progress{name: "up", out: out, root: root}
	s, err := start(ctx, p, l, map[string]string{filepath.Join(filepath.Dir(run), "demo"): "a running `make demo` (Ctrl-C it)"})
	if err != nil {
		return err
	}
	if err := l.WriteEnv("up", upstream, time.Now()); err != nil {
		return errors.Join(err, stopAll(s))
	}

	auth := " -H 'Authorization: Bearer sk-me'"
	upstreamLine := upstream + " (the mock)"
	if !l.Mock {
		upstreamLine = upstream
		auth = ` -H "Authorization: Bearer $YOUR_KEY"`
		if !answers(ctx, upstream) {
			p.say("warning: %s does not answer now; Traefik answers 502 until it does", upstream)
		}
	}
	on := map[string]string{"true": "on", "false": "off"}[limits]
	p.say("the stack runs in the background; `make down` stops it.")
	p.say("route %q: every path through the plugin to the upstream; limits %s", route, on)
	addresses(p, l, upstreamLine, "<tenant: key-... for an API key, see docs/security.md>", "LLMTAP_ADMIN_TOKEN in the env file", "")
	fmt.Fprintf(out, `  try it:
    source %s
    curl -N $LLMTAP_TRAEFIK_URL/v1/chat/completions \
      -H 'Content-Type: application/json'%s \
      -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
           "messages":[{"role":"user","content":"Hi"}]}'
    clickhouse-client --port %d -q 'SELECT * FROM llmtap.requests FINAL FORMAT Vertical'
`, p.rel(filepath.Join(run, "env")), auth, l.Ports.ClickHouseTCP)
	return nil
}

// answers says whether anything answers HTTP at url.
func answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// down stops what up started, in order, and says what it stopped.
func down(root, run string, out io.Writer) error {
	p := &progress{name: "up", out: out, root: root}
	stopped, err := stack.StopRunning(run)
	_ = os.Remove(filepath.Join(run, "env"))
	for _, line := range stopped {
		p.say("%s", line)
	}
	if err != nil {
		return err
	}
	if len(stopped) == 0 {
		p.say("nothing was running (%s)", p.rel(run))
	}
	return nil
}

// printEnv prints the env file of the running `make up`.
func printEnv(run string, out io.Writer) error {
	if len(stack.Running(run)) == 0 {
		return fmt.Errorf("the stack of `make up` does not run (%s): `make up` first", run)
	}
	b, err := os.ReadFile(filepath.Join(run, "env"))
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}
