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
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

var (
	upstreamRule = regexp.MustCompile(`^https?://[][A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/%+-]*)?$`)
	routeRule    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// up starts the stack of make up in the background: Traefik sends every
// path through the plugin to UPSTREAM (the mock when it is empty). Several
// comma-separated upstreams make the plugin proxy them itself, in order as
// fallbacks, or split by WEIGHTS.
func up(ctx context.Context, root, run string, getenv env, out io.Writer) error {
	upstreams, err := upstreamList(getenv("UPSTREAM"), getenv("WEIGHTS"))
	if err != nil {
		return err
	}
	upstream := ""
	if len(upstreams) > 0 {
		upstream = upstreams[0].url
	}
	route := getenv("ROUTE")
	if route == "" {
		route = "llm"
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
	if len(upstreams) == 0 {
		upstreams = []upstreamOf{{url: upstream}}
	}
	dynamic, err := upDynamic(root, upstreams, route, limits, fmt.Sprintf("http://127.0.0.1:%d", l.Ports.Collector), l.Collector.IngestToken)
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
		for _, u := range upstreams {
			if !answers(ctx, u.url) {
				p.say("warning: %s does not answer now; requests to it fail until it does", u.url)
			}
		}
	}
	on := map[string]string{"true": "on", "false": "off"}[limits]
	p.say("the stack runs in the background; `make down` stops it.")
	p.say("route %q: every path through the plugin to %s; limits %s", route, describeUpstreams(upstreams), on)
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

// upstreamOf is one upstream of UPSTREAM, and its weight of WEIGHTS (0:
// none given).
type upstreamOf struct {
	name, url string
	weight    int
}

// upstreamList reads UPSTREAM (comma-separated URLs) and WEIGHTS (as many
// comma-separated integers, or empty).
func upstreamList(list, weights string) ([]upstreamOf, error) {
	if list == "" {
		if weights != "" {
			return nil, fmt.Errorf("WEIGHTS=%s: needs UPSTREAM=URL1,URL2", weights)
		}
		return nil, nil
	}
	var out []upstreamOf
	names := map[string]int{}
	for _, raw := range strings.Split(list, ",") {
		u := strings.TrimSuffix(strings.TrimSpace(raw), "/")
		if !upstreamRule.MatchString(u) {
			what := fmt.Sprintf("UPSTREAM=%s", list)
			if strings.Contains(list, ",") {
				what += fmt.Sprintf(": %q", u)
			}
			return nil, fmt.Errorf("%s: want http://host[:port][/path] or https://host[:port][/path], comma-separated for several", what)
		}
		// Named by host (and port); a second of the same host gets -2.
		name := strings.SplitN(strings.SplitN(u, "://", 2)[1], "/", 2)[0]
		names[name]++
		if n := names[name]; n > 1 {
			name = fmt.Sprintf("%s-%d", name, n)
		}
		out = append(out, upstreamOf{name: name, url: u})
	}
	if len(out) > llmtap.MaxUpstreams {
		return nil, fmt.Errorf("UPSTREAM=%s: %d upstreams, want at most %d", list, len(out), llmtap.MaxUpstreams)
	}
	if weights == "" {
		return out, nil
	}
	ws := strings.Split(weights, ",")
	if len(ws) != len(out) || len(out) < 2 {
		return nil, fmt.Errorf("WEIGHTS=%s: want one weight per upstream of UPSTREAM (%d of them), and at least two", weights, len(out))
	}
	total := 0
	for i, w := range ws {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("WEIGHTS=%s: %q: want whole numbers, 0 or more", weights, w)
		}
		out[i].weight = n
		total += n
	}
	if total == 0 {
		return nil, fmt.Errorf("WEIGHTS=%s: the weights add up to 0", weights)
	}
	return out, nil
}

// upDynamic is the dynamic configuration of make up (traefik/up.yml): the
// route through the plugin to ups, the first also as the router's service;
// limits is "true" or "false".
func upDynamic(root string, ups []upstreamOf, route, limits, collector, token string) (string, error) {
	return stack.Render(filepath.Join(root, "traefik", "up.yml"), map[string]string{
		"UPSTREAMS": pluginUpstreams(ups),
		"UPSTREAM":  ups[0].url,
		"ROUTE":     route,
		"LIMITS":    limits,
		"COLLECTOR": collector,
		"TOKEN":     token,
	})
}

// pluginUpstreams is the plugin's upstreams block for up.yml: empty for one
// upstream (Traefik's service proxies it), else the list.
func pluginUpstreams(ups []upstreamOf) string {
	if len(ups) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("upstreams:")
	for _, u := range ups {
		fmt.Fprintf(&b, "\n            - name: %q\n              url: %q", u.name, u.url)
		if u.weight > 0 {
			fmt.Fprintf(&b, "\n              weight: %d", u.weight)
		}
	}
	return b.String()
}

// describeUpstreams says where the route's requests go.
func describeUpstreams(ups []upstreamOf) string {
	switch {
	case len(ups) < 2:
		return "the upstream"
	case ups[0].weight == 0 && ups[1].weight == 0:
		var names []string
		for _, u := range ups {
			names = append(names, u.name)
		}
		return "the upstreams in order, each the next's fallback (" + strings.Join(names, ", ") + ")"
	}
	var parts []string
	for _, u := range ups {
		parts = append(parts, fmt.Sprintf("%s %d", u.name, u.weight))
	}
	return "the upstreams by weight, each the others' fallback (" + strings.Join(parts, ", ") + ")"
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
