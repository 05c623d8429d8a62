//go:build integration

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// upTest runs the llmtap-stack command as make does, in a scratch run
// folder and on ports of the test's own (a developer's stacks are left
// alone).
type upTest struct {
	t     *testing.T
	bin   string
	run   string // LLMTAP_RUN; the stack's folder is run/up
	ports stack.LocalPorts
}

func newUpTest(t *testing.T, s *stack.T) *upTest {
	bin := filepath.Join(t.TempDir(), "llmtap-stack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	u := &upTest{t: t, bin: bin, run: t.TempDir()}
	for _, v := range u.ports.Vars(true) {
		*v.Port = s.Port()
	}
	// Whatever happens, nothing of the stack outlives the test.
	t.Cleanup(func() { _, _ = u.cmd("down") })
	return u
}

// cmd runs llmtap-stack with the test's ports and extra KEY=value
// settings; the environment holds no UPSTREAM, ROUTE or LIMITS but these.
func (u *upTest) cmd(verb string, settings ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.bin, verb)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "UPSTREAM", "ROUTE", "LIMITS", "MAKEFLAGS":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "LLMTAP_RUN="+u.run)
	for _, v := range u.ports.Vars(true) {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", v.Name, *v.Port))
	}
	cmd.Env = append(cmd.Env, settings...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (u *upTest) up(settings ...string) {
	u.t.Helper()
	if out, err := u.cmd("up", settings...); err != nil {
		u.t.Fatalf("llmtap-stack up: %v\n%s", err, out)
	}
}

// env reads the env file.
func (u *upTest) env() map[string]string {
	u.t.Helper()
	b, err := os.ReadFile(filepath.Join(u.run, "up", "env"))
	if err != nil {
		u.t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

// pids are the stack's processes now, from its pid files.
func (u *upTest) pids() []int {
	files, _ := filepath.Glob(filepath.Join(u.run, "up", "*", "pid"))
	var out []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// downClean: down says it stopped n parts, and no pid of the stack runs,
// no port of it answers, no env file or pid file is left.
func (u *upTest) downClean(n int) {
	u.t.Helper()
	pids := u.pids()
	out, err := u.cmd("down")
	if err != nil {
		u.t.Fatalf("down: %v\n%s", err, out)
	}
	if got := strings.Count(out, "[up] stopped "); got != n {
		u.t.Errorf("down stopped %d parts, want %d:\n%s", got, n, out)
	}
	for _, pid := range pids {
		if !gone(pid) {
			u.t.Errorf("pid %d still runs after down", pid)
		}
	}
	for _, v := range u.ports.Vars(true) {
		if stack.InUse(*v.Port) {
			u.t.Errorf("port %d (%s) still answers after down", *v.Port, v.Name)
		}
	}
	if _, err := os.Stat(filepath.Join(u.run, "up", "env")); err == nil {
		u.t.Error("env file left behind")
	}
	if left := u.pids(); len(left) > 0 {
		u.t.Errorf("pid files left behind: %v", left)
	}
	if out, _ := u.cmd("down"); !strings.Contains(out, "nothing was running") {
		u.t.Errorf("down again: %q, want nothing was running", out)
	}
}

// sse sends one streamed chat through Traefik; the stream must end with
// [DONE].
func (u *upTest) sse(id, key string) {
	u.t.Helper()
	code, body := u.chat(id, key, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi there"}]}`)
	if code != http.StatusOK || !strings.Contains(body, "data: [DONE]") {
		u.t.Fatalf("SSE through Traefik: %d %q", code, body)
	}
}

func (u *upTest) chat(id, key, body string) (int, string) {
	u.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", u.ports.Traefik), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	if id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// row waits for the request's row in ClickHouse to read want ("route kind
// status output_tokens").
func (u *upTest) row(id, want string) {
	u.t.Helper()
	u.columns(id, "route, kind, status, output_tokens", want)
}

// columns waits for the request's row to read want in the columns cols.
func (u *upTest) columns(id, cols, want string) {
	u.t.Helper()
	ch := &stack.ClickHouse{TCPPort: u.ports.ClickHouseTCP, HTTPPort: u.ports.ClickHouseHTTP}
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got, _ = ch.Query(context.Background(), "SELECT "+cols+" FROM llmtap.requests FINAL WHERE request_id = '"+id+"' FORMAT TSV")
		if strings.ReplaceAll(got, "\t", " ") == want {
			return
		}
	}
	u.t.Fatalf("row of %s: %q, want %q", id, got, want)
}

// gone says whether pid has exited: it is no more, or a zombie that its
// new parent (the stack outlived the command that started it) has yet to
// reap.
func gone(pid int) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return true
		}
	}
	return false
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpWithTheMock: make up with the mock, a request through it, its row
// and lookup; a second up refused; down leaves nothing.
func TestUpWithTheMock(t *testing.T) {
	u := newUpTest(t, stack.New(t))
	u.up()
	env := u.env()
	for k, want := range map[string]string{
		"LLMTAP_TRAEFIK_URL":       fmt.Sprintf("http://127.0.0.1:%d", u.ports.Traefik),
		"LLMTAP_COLLECTOR_URL":     fmt.Sprintf("http://127.0.0.1:%d", u.ports.Collector),
		"LLMTAP_METRICS_URL":       fmt.Sprintf("http://127.0.0.1:%d/metrics", u.ports.Collector),
		"LLMTAP_CLICKHOUSE_NATIVE": fmt.Sprintf("127.0.0.1:%d", u.ports.ClickHouseTCP),
		"LLMTAP_CLICKHOUSE_HTTP":   fmt.Sprintf("http://127.0.0.1:%d", u.ports.ClickHouseHTTP),
		"LLMTAP_REDIS_ADDR":        fmt.Sprintf("127.0.0.1:%d", u.ports.Redis),
		"LLMTAP_UPSTREAM":          fmt.Sprintf("http://127.0.0.1:%d", u.ports.Mock),
		"LLMTAP_MOCK_URL":          fmt.Sprintf("http://127.0.0.1:%d", u.ports.Mock),
	} {
		if env[k] != want {
			t.Errorf("env file: %s=%q, want %q", k, env[k], want)
		}
	}
	for _, k := range []string{"LLMTAP_INGEST_TOKEN", "LLMTAP_READ_TOKEN", "LLMTAP_ADMIN_TOKEN"} {
		if len(env[k]) != 32 {
			t.Errorf("env file: %s=%q, want a random token", k, env[k])
		}
	}
	if code, _ := get(t, env["LLMTAP_METRICS_URL"], ""); code != http.StatusOK {
		t.Errorf("metrics: %d", code)
	}
	if code, _ := get(t, env["LLMTAP_CLICKHOUSE_HTTP"]+"/ping", ""); code != http.StatusOK {
		t.Errorf("ClickHouse ping: %d", code)
	}
	if out, err := u.cmd("env"); err != nil || !strings.Contains(out, "LLMTAP_TRAEFIK_URL=") {
		t.Errorf("llmtap-stack env: %v %q", err, out)
	}

	u.sse("stack-test-1", "stack-test")
	u.row("stack-test-1", "llm sse 200 16")
	if code, body := get(t, env["LLMTAP_COLLECTOR_URL"]+"/v1/requests/stack-test-1", env["LLMTAP_ADMIN_TOKEN"]); code != http.StatusOK || !strings.Contains(body, "stack-test-1") {
		t.Errorf("the collector's API: %d %q", code, body)
	}
	// Priced at ingest: a model of the price table gets a cost; one
	// without a price ("m") none, never $0, and the spend report counts
	// it as unpriced.
	if code, _ := u.chat("stack-test-2", "stack-test", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]}`); code != http.StatusOK {
		t.Fatalf("chat: %d", code)
	}
	u.row("stack-test-2", "llm json 200 16")
	ch := &stack.ClickHouse{TCPPort: u.ports.ClickHouseTCP, HTTPPort: u.ports.ClickHouseHTTP}
	costs, _ := ch.Query(context.Background(), "SELECT request_id, cost_nanos > 0, isNull(cost_nanos), price_version != '' FROM llmtap.requests FINAL WHERE request_id LIKE 'stack-test-%' ORDER BY request_id FORMAT TSV")
	if want := "stack-test-1\t\\N\t1\t0\nstack-test-2\t1\t0\t1"; costs != want {
		t.Errorf("costs:\n%s\nwant:\n%s", costs, want)
	}
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	code, body := get(t, env["LLMTAP_COLLECTOR_URL"]+"/v1/spend?group_by=route,model&from="+from, env["LLMTAP_ADMIN_TOKEN"])
	if code != http.StatusOK || !strings.Contains(body, `"group":{"model":"m","route":"llm"},"requests":1`) || !strings.Contains(body, `"unpriced_requests":1`) {
		t.Errorf("the spend report: %d %s", code, body)
	}
	if out, err := u.cmd("up"); err == nil || !strings.Contains(out, "already runs") {
		t.Errorf("a second up: %v %q, want a refusal", err, out)
	}
	u.downClean(5)
}

// TestUpInFrontOfAnUpstream: make up UPSTREAM=URL ROUTE LIMITS=1 in front
// of a mock of the test's own: a port in use is refused by its variable;
// the request reaches that upstream; a policy set through the admin API
// gives 200 then 429; down stops the 4 parts and leaves that upstream.
func TestUpInFrontOfAnUpstream(t *testing.T) {
	s := stack.New(t)
	other := s.Mock()
	u := newUpTest(t, s)

	if out, err := u.cmd("up", fmt.Sprintf("TRAEFIK_PORT=%d", other.Port)); err == nil || !strings.Contains(out, "(TRAEFIK_PORT) is in use") {
		t.Errorf("up on a port in use: %v %q, want a refusal naming TRAEFIK_PORT", err, out)
	}
	if left := u.pids(); len(left) > 0 {
		t.Fatalf("the refused start left pids %v", left)
	}

	u.up("UPSTREAM="+other.URL(), "ROUTE=chat", "LIMITS=1")
	env := u.env()
	if env["LLMTAP_UPSTREAM"] != other.URL() || env["LLMTAP_MOCK_URL"] != "" {
		t.Errorf("env file: upstream %q, mock %q", env["LLMTAP_UPSTREAM"], env["LLMTAP_MOCK_URL"])
	}
	if _, err := os.Stat(filepath.Join(u.run, "up", stack.PartMock, "pid")); err == nil {
		t.Error("up started a mock although UPSTREAM is set")
	}
	u.sse("stack-test-2", "stack-test")
	if code, body := get(t, other.URL()+"/mock/truth/stack-test-2", ""); code != http.StatusOK || !strings.Contains(body, `"status":200`) {
		t.Errorf("the named upstream's truth: %d %q", code, body)
	}
	u.row("stack-test-2", "chat sse 200 16")

	const key = "stack-test-limited"
	req, _ := http.NewRequest(http.MethodPut, env["LLMTAP_COLLECTOR_URL"]+"/v1/limits/"+llmtap.KeyTenant("Bearer "+key),
		strings.NewReader(`{"requests":{"limit":1,"period":"1m"}}`))
	req.Header.Set("Authorization", "Bearer "+env["LLMTAP_ADMIN_TOKEN"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("PUT policy: %v %v", resp, err)
	}
	resp.Body.Close()
	var codes []int
	for i := 0; i < 2; i++ {
		code, _ := u.chat("", key, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[200 429]" {
		t.Errorf("a tenant limited to 1 request: %v, want [200 429]", codes)
	}
	u.downClean(4)
	if err := other.Ready(context.Background()); err != nil {
		t.Errorf("down touched the upstream of the test's own: %v", err)
	}
}

// TestUpWithFallback: make up UPSTREAM=URL1,URL2 with nothing listening at
// the first: the request is served by the second, and its row names both
// attempts.
func TestUpWithFallback(t *testing.T) {
	s := stack.New(t)
	second := s.Mock()
	u := newUpTest(t, s)
	first := fmt.Sprintf("http://127.0.0.1:%d", s.Port()) // allocated, nothing listens
	u.up("UPSTREAM="+first+","+second.URL(), "ROUTE=chat")
	u.sse("stack-test-fallback", "stack-test")
	u.columns("stack-test-fallback", "upstream, attempts, attempt_results", fmt.Sprintf("127.0.0.1:%d 2 ['connect_error','200']", second.Port))
	u.row("stack-test-fallback", "chat sse 200 16")
	u.downClean(4)
}
