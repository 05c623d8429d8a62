package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults for waiting on processes.
const (
	// ReadyWait bounds a part's start when the caller's context has no
	// deadline: the first Traefik start interprets the plugin, ClickHouse
	// 18.16 replays its parts, both slow on a busy 2-core machine.
	ReadyWait = 90 * time.Second
	// StopWait is how long Stop waits after SIGTERM before SIGKILL when
	// the caller's context has no deadline.
	StopWait = 15 * time.Second
)

// ErrExited says the process ended while it was awaited.
var ErrExited = errors.New("exited")

// Command is a program to run as one part's process.
type Command struct {
	Name string   // the part, for messages
	Path string   // the program
	Args []string // its arguments
	Dir  string   // its working folder (empty: the current one)
	Env  []string // its environment (nil: this process's)
	Log  string   // stdout and stderr are appended here
	// Detach lets the process outlive this one (make up): it gets a
	// session of its own. Otherwise it is killed when this process
	// exits, and its process group is what Stop signals.
	Detach bool
	// RunDir, when set, gets the pid ("pid") and the program ("exe"), for
	// Running and StopRunning.
	RunDir string
}

// Process is a started Command.
type Process struct {
	cmd    *exec.Cmd
	name   string
	logs   []string
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// Run starts the command. The process runs until Stop or Kill, or until
// this process exits unless the command is detached.
func Run(c Command) (*Process, error) {
	if c.Log == "" {
		return nil, fmt.Errorf("%s: no log file", c.Name)
	}
	if err := os.MkdirAll(filepath.Dir(c.Log), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	if c.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// Its own group, so a Ctrl-C meant for the test reaches the test
		// alone and Stop can signal whatever the part forks; SIGKILL when
		// the thread that started it, and so this process, is gone.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", c.Name, c.Path, err)
	}
	p := &Process{cmd: cmd, name: c.Name, logs: []string{c.Log}, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if c.RunDir != "" {
		if err := note(c.RunDir, cmd.Process.Pid); err != nil {
			_ = p.Kill()
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return p, nil
}

// note writes the pid of a detached process and the program it runs.
func note(dir string, pid int) error {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "exe"), []byte(exe+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// ExitCode is the process's exit status once Exited is closed (-1 when a
// signal ended it).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Exited is closed once the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// AlsoLog names another log file the process writes, for Tail.
func (p *Process) AlsoLog(paths ...string) { p.logs = append(p.logs, paths...) }

// Signal sends sig to the process alone (SIGSTOP and SIGCONT for stall
// tests).
func (p *Process) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM, and SIGKILL if the process has not ended when ctx is
// done (StopWait when ctx has no deadline). A stopped process (SIGSTOP)
// is continued first, so it can act on the SIGTERM.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, StopWait)
		defer cancel()
	}
	_ = p.group(syscall.SIGTERM)
	_ = p.group(syscall.SIGCONT)
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s (pid %d) ignored SIGTERM: killed", p.name, p.Pid())
}

// Kill ends the process at once (SIGKILL, as a crash or the OOM killer
// would) and waits for it.
func (p *Process) Kill() error {
	_ = p.group(syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(StopWait):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.name, p.Pid())
	}
}

// group signals the process group when the process leads one.
func (p *Process) group(sig syscall.Signal) error {
	pid := p.Pid()
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		return syscall.Kill(-pid, sig)
	}
	return p.cmd.Process.Signal(sig)
}

// Tail returns the last n lines of each of the process's logs, each after
// a header naming the file.
func (p *Process) Tail(n int) string {
	var b strings.Builder
	for _, path := range p.logs {
		data, err := os.ReadFile(path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", path, strings.Join(lines, "\n"))
	}
	return b.String()
}

// Await polls ready every 50 ms until it passes, and fails when the
// process exits first or ctx ends (ReadyWait when ctx has no deadline),
// with the logs' last lines in the error.
func (p *Process) Await(ctx context.Context, ready func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ReadyWait)
		defer cancel()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s %w during start-up (%s)\n%s", p.name, ErrExited, p.cmd.ProcessState, p.Tail(20))
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer (%w): %w\n%s", p.name, err, ctx.Err(), p.Tail(20))
		case <-tick.C:
		}
	}
}

// Answers says whether something accepts connections at addr.
func Answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
