// Package redistest runs a real Redis server for integration tests,
// through the project's own scripts/redis.sh (Debian's redis-server on
// loopback, in a temporary run folder, on a free port). A test that cannot
// start it fails; it never skips.
package redistest

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

// Server is one running Redis.
type Server struct {
	Addr   string // host:port
	RunDir string
	script *service.Script
}

// Start starts a server; Close stops it and removes its files.
func Start() (*Server, error) { return start() }

// StartTLS starts a server whose port speaks TLS only, with the
// certificate and key in these PEM files.
func StartTLS(certFile, keyFile string) (*Server, error) {
	return start("REDIS_TLS_CERT="+certFile, "REDIS_TLS_KEY="+keyFile)
}

func start(env ...string) (*Server, error) {
	port, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	script, err := service.New("redis.sh", append([]string{fmt.Sprintf("REDIS_PORT=%d", port)}, env...)...)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), RunDir: script.RunDir, script: script}
	if err := script.Run("start"); err != nil {
		return nil, fmt.Errorf("redis did not start (logs in %s): %w", s.RunDir, err)
	}
	return s, nil
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() error {
	b, err := os.ReadFile(filepath.Join(s.RunDir, "redis", "pid"))
	if err != nil {
		return fmt.Errorf("redis pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("redis pid %q: %w", b, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill redis: %w", err)
	}
	// Reap it when it is our child; wait until the port is free either way.
	p, _ := os.FindProcess(pid)
	_, _ = p.Wait()
	for i := 0; i < 100; i++ {
		if !answers(s.Addr) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("redis at %s still answers after SIGKILL", s.Addr)
}

// answers says whether something accepts connections at addr.
func answers(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Restart starts the server again on the same port (empty: Redis keeps no data here).
func (s *Server) Restart() error { return s.script.Run("start") }

// Close stops the server and removes its files.
func (s *Server) Close() error { return s.script.Close() }
