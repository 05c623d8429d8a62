// Package chtest runs a real ClickHouse server for integration tests,
// through the project's own scripts/clickhouse.sh (Debian's 18.16 on
// loopback, in a temporary run folder, on free ports). A test that cannot
// start it fails; it never skips.
package chtest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llmtap/llmtap/collector/internal/service"
)

// Server is one running ClickHouse.
type Server struct {
	Addr   string // native protocol, host:port
	HTTP   string // HTTP interface, host:port
	Secure string // native protocol over TLS, host:port (StartTLS only)
	RunDir string
	script *service.Script
}

// Start starts a server; Stop stops it.
func Start() (*Server, error) { return start("", "") }

// StartTLS starts a server that also serves the native protocol over TLS,
// on Secure, with the certificate and key in these PEM files.
func StartTLS(certFile, keyFile string) (*Server, error) { return start(certFile, keyFile) }

func start(certFile, keyFile string) (*Server, error) {
	tcp, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	http, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	env := []string{fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d", tcp), fmt.Sprintf("CLICKHOUSE_HTTP_PORT=%d", http)}
	secure := ""
	if certFile != "" {
		port, err := service.FreePort()
		if err != nil {
			return nil, err
		}
		secure = fmt.Sprintf("127.0.0.1:%d", port)
		env = append(env, "CLICKHOUSE_TLS_CERT="+certFile, "CLICKHOUSE_TLS_KEY="+keyFile, fmt.Sprintf("CLICKHOUSE_TCP_SECURE_PORT=%d", port))
	}
	script, err := service.New("clickhouse.sh", env...)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:   fmt.Sprintf("127.0.0.1:%d", tcp),
		HTTP:   fmt.Sprintf("127.0.0.1:%d", http),
		Secure: secure,
		RunDir: script.RunDir,
		script: script,
	}
	if err := script.Run("start"); err != nil {
		return nil, fmt.Errorf("clickhouse did not start (logs in %s): %w", s.RunDir, err)
	}
	return s, nil
}

// Stop stops the server, keeping its data for a later Restart.
func (s *Server) Stop() error { return s.script.Run("stop") }

// Kill stops the server at once (SIGKILL), as a crash or the OOM killer
// would: nothing is flushed, in-flight inserts are cut off. Its data stay
// for a later Restart. It returns once neither port answers.
func (s *Server) Kill() error {
	b, err := os.ReadFile(filepath.Join(s.RunDir, "clickhouse", "pid"))
	if err != nil {
		return fmt.Errorf("clickhouse pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("clickhouse pid %q: %w", b, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill clickhouse: %w", err)
	}
	// The script started it in the background: it is not our child, so
	// wait for its ports to close rather than for the process.
	for i := 0; i < 500; i++ {
		if !answers(s.Addr) && !answers(s.HTTP) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("clickhouse at %s still answers 5 s after SIGKILL", s.Addr)
}

// answers says whether something accepts connections at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Restart starts a stopped or killed server again on the same ports and data.
func (s *Server) Restart() error { return s.script.Run("start") }

// Close stops the server and removes its files.
func (s *Server) Close() error { return s.script.Close() }
