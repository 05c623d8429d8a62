// Package service drives the project's own service scripts
// (scripts/clickhouse.sh, scripts/redis.sh) for the integration test
// helpers: each server in its own temporary run folder, on free ports.
package service

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Script is one service script with the environment it runs in.
type Script struct {
	path   string
	env    []string
	RunDir string // LLMTAP_RUN: the server's pid, logs and data
}

// New prepares scripts/<name> with a fresh run folder and env (KEY=value)
// added to this process's environment.
func New(name string, env ...string) (*Script, error) {
	_, file, _, _ := runtime.Caller(0)
	run, err := os.MkdirTemp("", "llmtap-"+strings.TrimSuffix(name, ".sh")+"-")
	if err != nil {
		return nil, err
	}
	return &Script{
		path:   filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", name),
		env:    append(append(os.Environ(), "LLMTAP_RUN="+run), env...),
		RunDir: run,
	}, nil
}

// Run runs the script with a verb (start, stop) and its arguments; the
// script's output is in the error.
func (s *Script) Run(verb string, args ...string) error {
	cmd := exec.Command("bash", append([]string{s.path, verb}, args...)...)
	cmd.Env = s.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(s.path), verb, err, out)
	}
	return nil
}

// Close stops the server and removes its run folder.
func (s *Script) Close() error {
	if err := s.Run("stop"); err != nil {
		return err
	}
	return os.RemoveAll(s.RunDir)
}

// FreePort returns a loopback port nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
