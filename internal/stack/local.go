package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Local is the stack of make up and make demo on loopback: ClickHouse,
// Redis, the collector, the mock upstream (when it routes to it) and
// Traefik with the plugin, each in a folder of Run.
type Local struct {
	Root  string
	Run   string // the run folder (.run/up): a folder per part, env, logs
	Bins  Bins
	Ports LocalPorts
	// Mock runs the mock upstream on Ports.Mock with MockArgs.
	Mock     bool
	MockArgs []string
	// Dynamic is Traefik's dynamic configuration.
	Dynamic string
	// Collector is the collector's configuration; Parts fills in listen,
	// clickhouse.addr, clickhouse.spool_dir and redis.addr.
	Collector CollectorConfig
	// Detach lets the processes outlive this one (make up).
	Detach bool
}

// LocalPorts are the ports of a Local stack, each with the variable that
// moves it.
type LocalPorts struct {
	Traefik, Collector, ClickHouseTCP, ClickHouseHTTP, Redis, Mock int
}

// DefaultPorts are make up's and make demo's.
func DefaultPorts() LocalPorts {
	return LocalPorts{Traefik: 18080, Collector: 17480, ClickHouseTCP: 19000, ClickHouseHTTP: 18123, Redis: 16379, Mock: 18900}
}

// PortVar is one port and the environment variable that sets it.
type PortVar struct {
	Name string
	Port *int
}

// Vars lists the ports with their variables, in the order users read
// them; the mock's only when it runs.
func (p *LocalPorts) Vars(mock bool) []PortVar {
	vars := []PortVar{
		{"TRAEFIK_PORT", &p.Traefik}, {"COLLECTOR_PORT", &p.Collector},
		{"CLICKHOUSE_TCP_PORT", &p.ClickHouseTCP}, {"CLICKHOUSE_HTTP_PORT", &p.ClickHouseHTTP},
		{"REDIS_PORT", &p.Redis},
	}
	if mock {
		vars = append(vars, PortVar{"UPSTREAM_PORT", &p.Mock})
	}
	return vars
}

// ErrPort says a port is not a number, or given twice.
var ErrPort = errors.New("bad port")

// PortInUseError says something listens on a port already.
type PortInUseError struct {
	Var  string // the variable that moves it
	Port int
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("port 127.0.0.1:%d (%s) is in use", e.Port, e.Var)
}

// FromEnv sets each port whose variable is set in the environment.
func (p *LocalPorts) FromEnv(getenv func(string) string) error {
	for _, v := range p.Vars(true) {
		s := getenv(v.Name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s=%s: want a TCP port number: %w", v.Name, s, ErrPort)
		}
		*v.Port = n
	}
	return nil
}

// Check says which port is given twice or taken, with the variable that
// moves it.
func (p *LocalPorts) Check(mock bool) error {
	given := map[int]string{}
	for _, v := range p.Vars(mock) {
		if other, ok := given[*v.Port]; ok {
			return fmt.Errorf("%s=%d: %s has that port too: %w", v.Name, *v.Port, other, ErrPort)
		}
		given[*v.Port] = v.Name
		if InUse(*v.Port) {
			return &PortInUseError{Var: v.Name, Port: *v.Port}
		}
	}
	return nil
}

// The parts of a Local stack, in start order.
const (
	PartClickHouse = "clickhouse"
	PartRedis      = "redis"
	PartCollector  = "collector"
	PartMock       = "mock"
	PartTraefik    = "traefik"
)

// StopOrder is the order the parts of a Local stack stop in.
func StopOrder() []string {
	return []string{PartTraefik, PartMock, PartCollector, PartRedis, PartClickHouse}
}

// Parts returns the stack, not started.
func (l *Local) Parts() *Stack {
	dir := func(name string) string { return filepath.Join(l.Run, name) }
	ch := &ClickHouse{TCPPort: l.Ports.ClickHouseTCP, HTTPPort: l.Ports.ClickHouseHTTP}
	rd := &Redis{Port: l.Ports.Redis}
	cfg := l.Collector
	cfg.Listen = addr(l.Ports.Collector)
	cfg.ClickHouse.Addr = ch.Addr()
	cfg.ClickHouse.SpoolDir = filepath.Join(dir(PartCollector), "spool")
	if cfg.Redis == nil {
		cfg.Redis = &CollectorRedis{}
	}
	cfg.Redis.Addr = rd.Addr()
	col := &Collector{Bin: l.Bins.Collector, Config: cfg}
	tr := &Traefik{Bin: l.Bins.Traefik, Root: l.Root, Port: l.Ports.Traefik, Dynamic: l.Dynamic,
		ReadyPath: ReadyPath, ReadyStatus: ReadyStatus}
	ch.Dir, rd.Dir, col.Dir, tr.Dir = dir(PartClickHouse), dir(PartRedis), dir(PartCollector), dir(PartTraefik)
	parts := []interface {
		Part
		detach()
	}{ch, rd, col}
	if l.Mock {
		m := &Mock{Bin: l.Bins.Mock, Port: l.Ports.Mock, Args: l.MockArgs}
		m.Dir = dir(PartMock)
		parts = append(parts, m)
	}
	parts = append(parts, tr)
	s := &Stack{}
	for _, p := range parts {
		if l.Detach {
			p.detach()
		}
		s.Add(p)
	}
	return s
}

// The readiness probe of the dynamic configurations in traefik/: a router
// for /.llmtap/ready through an llmtap middleware that records nothing, to
// noop@internal, which answers 418 once Traefik has loaded the routers and
// the plugin.
const (
	ReadyPath   = "/.llmtap/ready"
	ReadyStatus = 418
)

func (s *server) detach() { s.Detach = true }

// Running lists the parts of the Local stack in run that are alive, as
// "name pid", in stop order.
func Running(run string) []string {
	var out []string
	for _, name := range StopOrder() {
		if pid, ok := noted(filepath.Join(run, name)); ok {
			out = append(out, fmt.Sprintf("%s %d", name, pid))
		}
	}
	return out
}

// noted returns the pid noted in dir when that process runs the program
// noted beside it (a pid file left by a reboot may name another program).
func noted(dir string) (int, bool) {
	pid, exe, err := readNote(dir)
	if err != nil {
		return 0, false
	}
	return pid, alive(pid, exe)
}

func readNote(dir string) (int, string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0, "", err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, "", err
	}
	e, err := os.ReadFile(filepath.Join(dir, "exe"))
	if err != nil {
		return 0, "", err
	}
	return pid, strings.TrimSpace(string(e)), nil
}

// alive says whether pid runs and, when exe is given, runs that program;
// a zombie is not alive.
func alive(pid int, exe string) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(status), ')'); i > 0 && i+2 < len(status) && status[i+2] == 'Z' {
		return false
	}
	if exe == "" {
		return true
	}
	actual, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.TrimSuffix(actual, " (deleted)") == exe
}

// StopRunning stops the parts of the Local stack in run, in stop order:
// SIGTERM, SIGKILL after StopWait. It reports one line per part it
// stopped ("stopped NAME (pid N)") or left alone (a pid file whose pid
// runs another program), and removes the pid files.
func StopRunning(run string) ([]string, error) {
	var out []string
	var errs []error
	for _, name := range StopOrder() {
		dir := filepath.Join(run, name)
		pid, exe, err := readNote(dir)
		if err != nil {
			_ = os.Remove(filepath.Join(dir, "pid"))
			continue
		}
		switch {
		case alive(pid, exe):
			if err := stopPid(pid); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			out = append(out, fmt.Sprintf("stopped %s (pid %d)", name, pid))
		case alive(pid, ""):
			actual, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			out = append(out, fmt.Sprintf("left alone: pid %d of %s runs %s, not %s", pid, filepath.Join(dir, "pid"), actual, exe))
		}
		_ = os.Remove(filepath.Join(dir, "pid"))
		_ = os.Remove(filepath.Join(dir, "exe"))
	}
	return out, errors.Join(errs...)
}

// stopPid stops a process that is not our child.
func stopPid(pid int) error {
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	if waitGone(pid, StopWait) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("pid %d survived SIGKILL", pid)
}

func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !alive(pid, "") {
			return true
		}
	}
	return false
}

// WriteEnv writes the addresses and tokens, one KEY=value a line, to
// run/env (for `set -a; . FILE; set +a`, docker --env-file, systemd).
func (l *Local) WriteEnv(name, upstream string, now time.Time) error {
	path := filepath.Join(l.Run, "env")
	p := l.Ports
	var b strings.Builder
	fmt.Fprintf(&b, "# The llmtap stack of `make %s`, started %s.\n", name, now.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# Load it with: set -a; . %s; set +a\n", path)
	for _, kv := range [][2]string{
		{"LLMTAP_TRAEFIK_URL", "http://" + addr(p.Traefik)},
		{"LLMTAP_COLLECTOR_URL", "http://" + addr(p.Collector)},
		{"LLMTAP_METRICS_URL", "http://" + addr(p.Collector) + "/metrics"},
		{"LLMTAP_CLICKHOUSE_NATIVE", addr(p.ClickHouseTCP)},
		{"LLMTAP_CLICKHOUSE_HTTP", "http://" + addr(p.ClickHouseHTTP)},
		{"LLMTAP_REDIS_ADDR", addr(p.Redis)},
		{"LLMTAP_UPSTREAM", upstream},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	if l.Mock {
		fmt.Fprintf(&b, "LLMTAP_MOCK_URL=http://%s\n", addr(p.Mock))
	}
	fmt.Fprintf(&b, "LLMTAP_INGEST_TOKEN=%s\nLLMTAP_READ_TOKEN=%s\nLLMTAP_ADMIN_TOKEN=%s\nLLMTAP_LOGS=%s\n",
		l.Collector.IngestToken, l.Collector.ReadToken, l.Collector.AdminToken, l.Run)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
