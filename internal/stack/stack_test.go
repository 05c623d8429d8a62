package stack

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestPortsNeverTwice(t *testing.T) {
	a, err := NewPorts()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewPorts()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seen := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range []*Ports{a, b, a, b} {
		wg.Add(1)
		go func(p *Ports) {
			defer wg.Done()
			ports, err := p.TakeN(50)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, port := range ports {
				if seen[port] {
					t.Errorf("port %d handed out twice", port)
				}
				seen[port] = true
				if port < portLow || port > portHigh {
					t.Errorf("port %d outside %d-%d", port, portLow, portHigh)
				}
			}
		}(p)
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Fatalf("%d ports, want 200", len(seen))
	}
	// Released, a port can be taken again by another allocator.
	var one int
	for port := range seen {
		one = port
		break
	}
	a.Release(one)
	b.Release(one)
	f, err := b.lock(one)
	if err != nil {
		t.Fatalf("port %d still locked after Release: %v", one, err)
	}
	f.Close()
}

func TestRender(t *testing.T) {
	dir := t.TempDir()
	tpl := filepath.Join(dir, "t.yml")
	if err := os.WriteFile(tpl, []byte("url: __URL__\ntoken: __TOKEN__\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc   string
		values map[string]string
		want   string
		err    string
	}{
		{"all filled", map[string]string{"URL": "http://a&b", "TOKEN": "x"}, "url: http://a&b\ntoken: x\n", ""},
		{"one missing", map[string]string{"URL": "u"}, "", "no value for __TOKEN__"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Render(tpl, tc.values)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCollectorConfigWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	c := CollectorConfig{
		Listen:     "127.0.0.1:1",
		ClickHouse: CollectorClickHouse{Addr: "127.0.0.1:2", Retention: "0s"},
		Limits: &CollectorLimits{Tenants: map[string]json.RawMessage{
			"team-a": json.RawMessage(`{"requests":{"limit":2,"period":"1m"}}`),
		}},
	}
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (tokens)", fi.Mode().Perm())
	}
	// The comment line aside, the file is JSON, which YAML reads as is.
	body := b[strings.IndexByte(string(b), '\n')+1:]
	var back map[string]any
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	ch := back["clickhouse"].(map[string]any)
	if ch["retention"] != "0s" || ch["addr"] != "127.0.0.1:2" {
		t.Errorf("clickhouse section %v", ch)
	}
	if _, ok := back["redis"]; ok {
		t.Errorf("an unset section was written: %s", b)
	}
}

// sleeper is a part made of a sleep process, for the order of a Stack.
type sleeper struct {
	server
	name string
	log  *[]string
	fail bool
}

func (s *sleeper) Name() string { return s.name }
func (s *sleeper) Start(ctx context.Context) error {
	*s.log = append(*s.log, "start "+s.name)
	if s.fail {
		return errors.New("refused")
	}
	return s.run(ctx, Command{Name: s.name, Path: "sleep", Args: []string{"600"}, Log: filepath.Join(s.Dir, "log")}, s.Ready)
}
func (s *sleeper) Ready(context.Context) error { return nil }
func (s *sleeper) Stop(ctx context.Context) error {
	*s.log = append(*s.log, "stop "+s.name)
	return s.stop(ctx)
}

func TestStackOrder(t *testing.T) {
	var log []string
	dir := t.TempDir()
	parts := []*sleeper{{name: "a", log: &log}, {name: "b", log: &log}, {name: "c", log: &log, fail: true}}
	var s Stack
	for _, p := range parts {
		p.Dir = dir
		s.Add(p)
	}
	err := s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "start c: refused") {
		t.Fatalf("Start: %v, want the failure of c", err)
	}
	want := "start a,start b,start c,stop b,stop a"
	if got := strings.Join(log, ","); got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
	for _, p := range parts[:2] {
		select {
		case <-p.proc.Exited():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still runs", p.name)
		}
	}
}

func TestProcessStopKillsWhatIgnoresTerm(t *testing.T) {
	dir := t.TempDir()
	p, err := Run(Command{Name: "stubborn", Path: "bash", Args: []string{"-c", "trap '' TERM; echo up; sleep 600 & wait"}, Log: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Await(context.Background(), func(context.Context) error {
		b, _ := os.ReadFile(filepath.Join(dir, "log"))
		if !strings.Contains(string(b), "up") {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); err == nil || !strings.Contains(err.Error(), "ignored SIGTERM") {
		t.Fatalf("Stop: %v, want it to say the process ignored SIGTERM", err)
	}
	// The whole group goes: the sleep the shell started too (once its
	// new parent has reaped it).
	if !eventually(func() bool { return syscall.Kill(-p.Pid(), 0) != nil }) {
		t.Fatal("the process group still has members")
	}
}

func TestAwaitSaysWhenItExits(t *testing.T) {
	dir := t.TempDir()
	p, err := Run(Command{Name: "quitter", Path: "bash", Args: []string{"-c", "echo bad flag >&2; exit 3"}, Log: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Await(context.Background(), func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bad flag") {
		t.Fatalf("Await: %v, want ErrExited with the log's last lines", err)
	}
}

// eventually polls cond every 10 ms for up to 10 s.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func TestLocalPortsCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	ports, err := NewPorts()
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	free, err := ports.TakeN(6)
	if err != nil {
		t.Fatal(err)
	}
	set := func(p []int) LocalPorts {
		return LocalPorts{Traefik: p[0], Collector: p[1], ClickHouseTCP: p[2], ClickHouseHTTP: p[3], Redis: p[4], Mock: p[5]}
	}
	ok := set(free)
	if err := ok.Check(true); err != nil {
		t.Fatalf("free ports: %v", err)
	}
	twice := set([]int{free[0], free[1], free[2], free[3], free[1], free[5]})
	if err := twice.Check(true); !errors.Is(err, ErrPort) || !strings.Contains(err.Error(), "REDIS_PORT") {
		t.Errorf("a port given twice: %v", err)
	}
	busy := set([]int{free[0], free[1], free[2], free[3], free[4], taken})
	var inUse *PortInUseError
	if err := busy.Check(true); !errors.As(err, &inUse) || inUse.Var != "UPSTREAM_PORT" || inUse.Port != taken {
		t.Errorf("a port in use: %v", err)
	}
	// Without the mock its port is not the stack's.
	if err := busy.Check(false); err != nil {
		t.Errorf("the mock's port without the mock: %v", err)
	}
}

func TestMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 17\nllmtap_x_total{route=\"a\"} 3\nllmtap_y_total 2.5e+06\n")
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name    string
		want    float64
		wantErr bool
	}{
		{"go_goroutines", 17, false},
		{"llmtap_y_total", 2.5e6, false},
		{"llmtap_x_total", 0, true}, // labelled: not an unlabelled metric
		{"go_gor", 0, true},
	} {
		got, err := Metric(context.Background(), srv.URL, tc.name)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("Metric(%s) = %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	if _, err := Metric(context.Background(), "http://127.0.0.1:1/metrics", "go_goroutines"); err == nil {
		t.Error("Metric from nowhere: no error")
	}
}
