// Package chtest runs a real ClickHouse server for integration tests,
// through the project's own scripts/clickhouse.sh (Debian's 18.16 on
// loopback, in a temporary run folder, on free ports). A test that cannot
// start it fails; it never skips.
package chtest

import (
	"fmt"

	"github.com/llmtap/llmtap/collector/internal/service"
)

// Server is one running ClickHouse.
type Server struct {
	Addr   string // native protocol, host:port
	HTTP   string // HTTP interface, host:port
	RunDir string
	script *service.Script
}

// Start starts a server; Stop stops it.
func Start() (*Server, error) {
	tcp, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	http, err := service.FreePort()
	if err != nil {
		return nil, err
	}
	script, err := service.New("clickhouse.sh",
		fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d", tcp), fmt.Sprintf("CLICKHOUSE_HTTP_PORT=%d", http))
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:   fmt.Sprintf("127.0.0.1:%d", tcp),
		HTTP:   fmt.Sprintf("127.0.0.1:%d", http),
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

// Restart starts a stopped server again on the same ports and data.
func (s *Server) Restart() error { return s.script.Run("start") }

// Close stops the server and removes its files.
func (s *Server) Close() error { return s.script.Close() }
