package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Part is one real part of the stack.
type Part interface {
	// Name names the part in messages ("clickhouse", "traefik").
	Name() string
	// Start writes the part's configuration, starts its process and
	// returns once Ready passes; on failure nothing of it runs.
	Start(ctx context.Context) error
	// Ready is one readiness check.
	Ready(ctx context.Context) error
	// Stop ends the process (SIGTERM, SIGKILL at ctx's end) and keeps its
	// files, so Start can run it again on the same data and ports.
	Stop(ctx context.Context) error
}

// ErrNotFound says a program a part needs is not installed.
var ErrNotFound = errors.New("not installed (run scripts/install.sh)")

// server is what every part has: its run folder, its process, and whether
// the process outlives this one.
type server struct {
	// Dir is the part's run folder: configuration, logs, data.
	Dir string
	// Detach lets the process outlive this one (make up).
	Detach bool
	proc   *Process
}

// Process is the running process (nil before Start).
func (s *server) Process() *Process { return s.proc }

// run starts cmd in s.Dir and waits for ready; a failed start kills it.
func (s *server) run(ctx context.Context, c Command, ready func(context.Context) error, logs ...string) error {
	if s.proc != nil {
		select {
		case <-s.proc.Exited():
		default:
			return fmt.Errorf("%s already runs (pid %d)", c.Name, s.proc.Pid())
		}
	}
	c.Detach, c.RunDir = s.Detach, s.Dir
	p, err := Run(c)
	if err != nil {
		return err
	}
	p.AlsoLog(logs...)
	if err := p.Await(ctx, ready); err != nil {
		_ = p.Kill()
		return err
	}
	s.proc = p
	return nil
}

// stop stops the process if it runs.
func (s *server) stop(ctx context.Context) error {
	if s.proc == nil {
		return nil
	}
	return s.proc.Stop(ctx)
}

// Kill ends the process at once, as a crash would; its files stay.
func (s *server) Kill() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.Kill()
}

// mkdirs makes s.Dir absolute and creates it with the given subfolders.
func (s *server) mkdirs(name string, sub ...string) error {
	if s.Dir == "" {
		return fmt.Errorf("%s: no run folder (Dir)", name)
	}
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return err
	}
	s.Dir = abs
	for _, d := range append([]string{""}, sub...) {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// program finds an installed program, also in /usr/sbin (where Debian puts
// clickhouse-server), which a non-root PATH may lack.
func program(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrNotFound)
}

// httpOK checks that GET url answers want.
func httpOK(ctx context.Context, url string, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %s, want %d", url, resp.Status, want)
	}
	return nil
}

// addr is 127.0.0.1:port.
func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// xmlEscape makes a value safe inside an XML element.
func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Program is a part whose command and readiness check the caller gives: a
// server run from configuration files of its own, such as Traefik with the
// compose stack's static configuration.
type Program struct {
	server
	Label string
	Cmd   Command
	Check func(ctx context.Context) error
}

// Name is the label.
func (p *Program) Name() string { return p.Label }

// Start runs the command (its log in Dir when Cmd.Log is empty) and waits
// for Check.
func (p *Program) Start(ctx context.Context) error {
	if err := p.mkdirs(p.Label); err != nil {
		return err
	}
	c := p.Cmd
	c.Name = p.Label
	if c.Log == "" {
		c.Log = filepath.Join(p.Dir, "stdout.log")
	}
	return p.run(ctx, c, p.Ready)
}

// Ready is the caller's check.
func (p *Program) Ready(ctx context.Context) error { return p.Check(ctx) }

// Stop stops the process.
func (p *Program) Stop(ctx context.Context) error { return p.stop(ctx) }

// ask connects to addr (through wrap when not nil, such as TLS), sends
// question and reads the answer with read, all within 2 s: the readiness
// checks of servers that speak their own protocol.
func ask(ctx context.Context, addr string, wrap func(net.Conn) net.Conn, question string, read func(*bufio.Reader) (string, error)) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	if wrap != nil {
		conn = wrap(conn)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(question)); err != nil {
		return "", err
	}
	return read(bufio.NewReader(conn))
}
