// Package chtest runs a real ClickHouse server for integration tests,
// through the project's own scripts/clickhouse.sh (Debian's 18.16 on
// loopback, in a temporary run folder, on free ports). A test that cannot
// start it fails; it never skips.
package chtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Server is one running ClickHouse.
type Server struct {
	Addr   string // native protocol, host:port
	HTTP   string // HTTP interface, host:port
	RunDir string
	script string
	env    []string
}

// Start starts a server; Stop stops it.
func Start() (*Server, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "clickhouse.sh")
	run, err := os.MkdirTemp("", "llmtap-ch-")
	if err != nil {
		return nil, err
	}
	tcp, err := freePort()
	if err != nil {
		return nil, err
	}
	http, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:   fmt.Sprintf("127.0.0.1:%d", tcp),
		HTTP:   fmt.Sprintf("127.0.0.1:%d", http),
		RunDir: run,
		script: script,
		env: append(os.Environ(), "LLMTAP_RUN="+run,
			fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d", tcp), fmt.Sprintf("CLICKHOUSE_HTTP_PORT=%d", http)),
	}
	if err := s.ctl("start"); err != nil {
		return nil, fmt.Errorf("clickhouse did not start (logs in %s): %w", run, err)
	}
	return s, nil
}

// Stop stops the server, keeping its data for a later Restart.
func (s *Server) Stop() error { return s.ctl("stop") }

// Restart starts a stopped server again on the same ports and data.
func (s *Server) Restart() error { return s.ctl("start") }

// Close stops the server and removes its files.
func (s *Server) Close() error {
	err := s.Stop()
	if err == nil {
		err = os.RemoveAll(s.RunDir)
	}
	return err
}

func (s *Server) ctl(verb string) error {
	cmd := exec.Command("bash", s.script, verb)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("clickhouse.sh %s: %w\n%s", verb, err, out)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
