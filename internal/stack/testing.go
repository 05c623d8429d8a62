package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// TB is what a test gives the harness (testing.TB's methods it uses).
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	TempDir() string
}

// T is a stack owned by a test: parts started through it are stopped, in
// reverse order, when the test ends; its ports are released after that.
type T struct {
	t     TB
	ctx   context.Context
	Root  string
	Ports *Ports
	Dir   string // the parts' run folders are under it
	stack Stack

	binsOnce sync.Once
	bins     Bins
	binsErr  error
}

// New returns an empty stack owned by t.
func New(t TB) *T {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	ports, err := NewPorts()
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	s := &T{t: t, ctx: context.Background(), Root: root, Ports: ports, Dir: t.TempDir()}
	t.Cleanup(func() {
		defer ports.Close()
		if t.Failed() {
			s.logTails()
		}
		if err := s.stack.Stop(context.Background()); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	return s
}

// logTails logs the end of each part's logs, for a failed test: the run
// folders go with the test.
func (s *T) logTails() {
	for _, p := range s.stack.parts {
		if h, ok := p.(interface{ Process() *Process }); ok && h.Process() != nil {
			s.t.Logf("%s:\n%s", p.Name(), h.Process().Tail(30))
		}
	}
}

// Port takes a free port for the test.
func (s *T) Port() int {
	s.t.Helper()
	p, err := s.Ports.Take()
	if err != nil {
		s.t.Fatalf("stack: %v", err)
	}
	return p
}

// Folder is a new run folder for a part under s.Dir.
func (s *T) Folder(name string) string {
	return filepath.Join(s.Dir, fmt.Sprintf("%s-%d", name, len(s.stack.parts)))
}

// Bins builds (once per T) the collector and the mock and finds Traefik.
func (s *T) Bins() Bins {
	s.t.Helper()
	s.binsOnce.Do(func() { s.bins, s.binsErr = Build(s.ctx, s.Root) })
	if s.binsErr != nil {
		s.t.Fatalf("stack: %v", s.binsErr)
	}
	return s.bins
}

// Run starts a part and stops it when the test ends (after the parts
// started later).
func (s *T) Run(p Part) {
	s.t.Helper()
	s.stack.Add(p)
	if err := s.stack.Start(s.ctx); err != nil {
		s.t.Fatalf("stack: %v", err)
	}
}

// ClickHouse starts a ClickHouse server on free ports; change, when given,
// adjusts it before the start (TLS, a cluster).
func (s *T) ClickHouse(change ...func(*ClickHouse)) *ClickHouse {
	s.t.Helper()
	c := &ClickHouse{TCPPort: s.Port(), HTTPPort: s.Port()}
	c.Dir = s.Folder("clickhouse")
	for _, f := range change {
		f(c)
	}
	s.Run(c)
	return c
}

// Redis starts a Redis server on a free port.
func (s *T) Redis(change ...func(*Redis)) *Redis {
	s.t.Helper()
	r := &Redis{Port: s.Port()}
	r.Dir = s.Folder("redis")
	for _, f := range change {
		f(r)
	}
	s.Run(r)
	return r
}

// ZooKeeper starts a ZooKeeper on a free port.
func (s *T) ZooKeeper() *ZooKeeper {
	s.t.Helper()
	z := &ZooKeeper{Port: s.Port()}
	z.Dir = s.Folder("zookeeper")
	s.Run(z)
	return z
}

// Prometheus starts a Prometheus on a free port with this configuration
// and the files it names.
func (s *T) Prometheus(config string, files map[string][]byte) *Prometheus {
	s.t.Helper()
	p := &Prometheus{Port: s.Port(), Config: config, Files: files}
	p.Dir = s.Folder("prometheus")
	s.Run(p)
	return p
}

// Test tokens of the collectors T starts.
const (
	TestIngestToken = "it-token"
	TestReadToken   = "it-read"
	TestAdminToken  = "it-admin"
)

// CollectorConfig is the configuration T starts a collector with: a free
// port, the test ingest and read tokens (no admin token), ClickHouse at ch (database llmtap_it, quick
// flushes, no retention), a spool in the test's folder.
func (s *T) CollectorConfig(ch *ClickHouse) CollectorConfig {
	s.t.Helper()
	return CollectorConfig{
		Listen:      addr(s.Port()),
		IngestToken: TestIngestToken,
		ReadToken:   TestReadToken,
		Log:         &CollectorLog{Level: "warn"},
		ClickHouse: CollectorClickHouse{
			Addr:          ch.Addr(),
			Database:      "llmtap_it",
			FlushInterval: "100ms",
			BatchSize:     50,
			SpoolDir:      filepath.Join(s.Folder("spool"), "spool"),
			Retention:     "0s",
			BodyRetention: "0s",
		},
	}
}

// Collector starts the collector binary with this configuration.
func (s *T) Collector(config CollectorConfig) *Collector {
	s.t.Helper()
	c := &Collector{Bin: s.Bins().Collector, Config: config}
	c.Dir = s.Folder("collector")
	s.Run(c)
	return c
}

// Mock starts the mock upstream with these flags.
func (s *T) Mock(args ...string) *Mock {
	s.t.Helper()
	m := &Mock{Bin: s.Bins().Mock, Port: s.Port(), Args: args}
	m.Dir = s.Folder("mock")
	s.Run(m)
	return m
}

// Traefik starts Traefik on a free port with this dynamic configuration;
// change sets how it is known to be ready (ReadyHosts, ReadyPath).
func (s *T) Traefik(dynamic string, change ...func(*Traefik)) *Traefik {
	s.t.Helper()
	tr := s.NewTraefik(dynamic)
	for _, f := range change {
		f(tr)
	}
	s.Run(tr)
	return tr
}

// NewTraefik is Traefik, not started: a test that needs the entrypoint's
// port in the dynamic configuration sets Dynamic, then calls Run.
func (s *T) NewTraefik(dynamic string) *Traefik {
	s.t.Helper()
	tr := &Traefik{Bin: s.traefikBin(), Root: s.Root, Port: s.Port(), Dynamic: dynamic}
	tr.Dir = s.Folder("traefik")
	return tr
}

// traefikBin is Traefik alone, without building the collector.
func (s *T) traefikBin() string {
	s.t.Helper()
	bin, err := TraefikBin(s.ctx, s.Root)
	if err != nil {
		s.t.Fatalf("stack: %v", err)
	}
	return bin
}

// MainTB is a TB for a TestMain, whose servers serve every test of the
// package: Fatalf prints and exits 1, Close runs the cleanups (call it
// before os.Exit).
type MainTB struct {
	cleanups []func()
	dirs     []string
}

// Helper does nothing.
func (m *MainTB) Helper() {}

// Errorf prints to stderr; the exit code is the TestMain's to set.
func (m *MainTB) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Logf prints to stderr.
func (m *MainTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Failed is false: a TestMain's failure is its exit code.
func (m *MainTB) Failed() bool { return false }

// Cleanup adds f to what Close runs, last added first.
func (m *MainTB) Cleanup(f func()) { m.cleanups = append(m.cleanups, f) }

// TempDir is a new temporary folder, removed by Close.
func (m *MainTB) TempDir() string {
	d, err := os.MkdirTemp("", "llmtap-stack-")
	if err != nil {
		m.Fatalf("stack: %v", err)
	}
	m.dirs = append(m.dirs, d)
	return d
}

// Fatalf prints the message, runs the cleanups and exits 1.
func (m *MainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	m.Close()
	os.Exit(1)
}

// Close runs the cleanups and removes the temporary folders.
func (m *MainTB) Close() {
	for len(m.cleanups) > 0 {
		f := m.cleanups[len(m.cleanups)-1]
		m.cleanups = m.cleanups[:len(m.cleanups)-1]
		f()
	}
	for _, d := range m.dirs {
		_ = os.RemoveAll(d)
	}
	m.dirs = nil
}

// Program starts a part of the caller's making (see Program) in a run
// folder of its own.
func (s *T) Program(label string, cmd Command, check func(ctx context.Context) error) *Program {
	s.t.Helper()
	p := &Program{Label: label, Cmd: cmd, Check: check}
	p.Dir = s.Folder(label)
	s.Run(p)
	return p
}

// Addr is a loopback address on a free port.
func (s *T) Addr() string {
	s.t.Helper()
	return addr(s.Port())
}
