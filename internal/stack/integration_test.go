//go:build integration

package stack

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestParts starts ClickHouse, Redis, ZooKeeper and Prometheus, uses each
// for real, stops them, and checks that no process and no port is left.
func TestParts(t *testing.T) {
	s := New(t)
	ctx := context.Background()

	ch := s.ClickHouse()
	t.Run("clickhouse", func(t *testing.T) {
		v, err := ch.Query(ctx, "SELECT version()")
		if err != nil || !strings.Contains(v, ".") {
			t.Fatalf("version %q, %v", v, err)
		}
		// 18.16 prints DateTime 0 as 0000-00-00 00:00:00: another instant.
		if got, err := ch.Query(ctx, "SELECT toString(toDateTime(3600))"); got != "1970-01-01 01:00:00" {
			t.Errorf("server time zone: %q (%v), want UTC", got, err)
		}
		for _, q := range []string{
			`CREATE TABLE default.infra_check (ts DateTime, model LowCardinality(String), tokens UInt32)
				ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (model, ts)`,
			`INSERT INTO default.infra_check (ts, model, tokens) VALUES
				('2024-01-01 00:00:00', 'gpt', 10), ('2024-01-01 00:00:01', 'claude', 20), ('2024-02-01 00:00:00', 'gpt', 30)`,
		} {
			if _, err := ch.Query(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := ch.Query(ctx, "SELECT count(), sum(tokens) FROM default.infra_check"); got != "3\t60" {
			t.Errorf("count, sum: %q (%v), want 3 60", got, err)
		}
		// The data live in the run folder, not in /var/lib/clickhouse.
		if _, err := os.Stat(filepath.Join(ch.Dir, "data", "data", "default", "infra_check")); err != nil {
			t.Error(err)
		}
	})

	rd := s.Redis()
	t.Run("redis", func(t *testing.T) {
		if got := redisDo(t, rd.Addr(), "SET llmtap:infra hello", "GET llmtap:infra"); got != "+OK $5 hello" {
			t.Errorf("SET, GET: %q", got)
		}
	})

	zk := s.ZooKeeper()
	t.Run("clickhouse cluster on zookeeper", func(t *testing.T) {
		cc := s.ClickHouse(func(c *ClickHouse) {
			c.Cluster = &Cluster{Name: "it", ZooKeeperPort: zk.Port, InterserverPort: s.Port()}
		})
		got, err := cc.Query(ctx, "SELECT count() FROM system.clusters WHERE cluster = 'it'")
		if err != nil || got != "1" {
			t.Fatalf("system.clusters: %q, %v", got, err)
		}
		if _, err := cc.Query(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'"); err != nil {
			t.Fatalf("zookeeper from clickhouse: %v", err)
		}
	})

	promPort := s.Port()
	prom := &Prometheus{Port: promPort, Config: fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ['127.0.0.1:%d']
`, promPort)}
	prom.Dir = s.Folder("prometheus")
	s.Run(prom)
	t.Run("prometheus scrapes", func(t *testing.T) {
		ok := eventually(func() bool {
			v, err := prom.Query(ctx, `up{job="self"}`)
			return err == nil && len(v) == 1 && v[0].Value[1] == "1"
		})
		if !ok {
			t.Fatal("no up == 1 sample of its own")
		}
	})

	type running struct {
		name  string
		pid   int
		ports []int
	}
	all := []running{
		{"clickhouse", ch.Process().Pid(), []int{ch.TCPPort, ch.HTTPPort}},
		{"redis", rd.Process().Pid(), []int{rd.Port}},
		{"zookeeper", zk.Process().Pid(), []int{zk.Port}},
		{"prometheus", prom.Process().Pid(), []int{prom.Port}},
	}
	if err := s.stack.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if !eventually(func() bool { return gone(r.pid) }) {
			t.Errorf("%s (pid %d) still runs after Stop", r.name, r.pid)
		}
		for _, port := range r.ports {
			if InUse(port) {
				t.Errorf("%s: port %d still answers after Stop", r.name, port)
			}
		}
	}
}

// redisDo sends inline commands and returns the replies, space-separated.
func redisDo(t *testing.T, addr string, cmds ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var out []string
	for _, cmd := range cmds {
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(line))
		if strings.HasPrefix(line, "$") && !strings.HasPrefix(line, "$-1") {
			body, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.TrimSpace(body))
		}
	}
	return strings.Join(out, " ")
}

// gone says whether pid has exited and been reaped.
func gone(pid int) bool { return syscall.Kill(pid, 0) != nil }

// TestInterruptedTestLeavesNothing runs holdStack (below) in a child `go
// test`, waits until it has started ClickHouse and Redis, then
// interrupts it as Ctrl-C would (SIGINT to its process group): no process
// of the child's stack and no port of it may remain.
func TestInterruptedTestLeavesNothing(t *testing.T) {
	cmd := exec.Command("go", "test", "-tags", "integration", "-count=1", "-v", "-run", "^$", ".")
	cmd.Env = append(os.Environ(), "LLMTAP_STACK_HELPER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })

	var pids, ports []int
	var seen []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		var name string
		var pid, port int
		if n, _ := fmt.Sscanf(line, "HOLDING %s %d %d", &name, &pid, &port); n == 3 {
			pids, ports = append(pids, pid), append(ports, port)
		}
		if line == "HOLDING all" {
			break
		}
	}
	if len(pids) != 2 {
		t.Fatalf("the helper did not start its stack:\n%s", strings.Join(seen, "\n"))
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() {
		for sc.Scan() {
		}
	}()
	_ = cmd.Wait()
	for i, pid := range pids {
		if !eventually(func() bool { return gone(pid) }) {
			t.Errorf("pid %d outlived the interrupted test", pid)
		}
		if !eventually(func() bool { return !InUse(ports[i]) }) {
			t.Errorf("port %d still answers after the interrupted test", ports[i])
		}
	}
}

// TestMain runs holdStack instead of the tests in the child `go test` of
// TestInterruptedTestLeavesNothing.
func TestMain(m *testing.M) {
	if os.Getenv("LLMTAP_STACK_HELPER") == "1" {
		holdStack()
		return
	}
	os.Exit(m.Run())
}

// holdStack starts ClickHouse and Redis, says so, and waits to be
// interrupted.
func holdStack() {
	tb := &MainTB{}
	defer tb.Close()
	s := New(tb)
	ch := s.ClickHouse()
	rd := s.Redis()
	fmt.Printf("HOLDING clickhouse %d %d\n", ch.Process().Pid(), ch.HTTPPort)
	fmt.Printf("HOLDING redis %d %d\n", rd.Process().Pid(), rd.Port)
	fmt.Println("HOLDING all")
	time.Sleep(10 * time.Minute)
}
