// Package traefiktest starts a real Traefik binary with the llmtap plugin
// loaded from plugins-local, exactly as users load a local plugin, for the
// end-to-end tests of the plugin (e2e/) and the collector's integration
// tests. It uses the standard library only.
//
// The binary comes from scripts/traefik-build.sh, which builds and caches
// the Traefik version the project pins.
package traefiktest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ModuleName is the plugin's module, as the static configuration names it.
const ModuleName = "github.com/llmtap/llmtap"

// readyWait bounds Start's wait for the ready hosts: the first start
// interprets the plugin, which takes a few seconds on a busy machine.
const readyWait = 60 * time.Second

// Options say what to start.
type Options struct {
	// Bin is the Traefik binary.
	Bin string
	// Dir is Traefik's working folder: the plugin is installed into
	// Dir/plugins-local, and traefik.yml, dynamic.yml and traefik.log are
	// written there.
	Dir string
	// Entry is the address (host:port) of the one entrypoint, "web".
	Entry string
	// Dynamic is the dynamic configuration (YAML). It is written to
	// Dir/dynamic.yml, which the file provider watches: rewrite that file
	// to reload it.
	Dynamic string
	// Root is the checkout's root, where .traefik.yml, go.mod and plugin/
	// are.
	Root string
	// ReadyHosts are hosts whose GET ReadyPath through Entry must answer
	// 200 before Start returns; with none, Start waits only for Entry to
	// accept connections.
	ReadyHosts []string
	// ReadyPath is the path of the readiness requests ("/" when empty).
	ReadyPath string
}

// Traefik is a running Traefik process.
type Traefik struct {
	dir     string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{}
	stop    sync.Once
}

// Start installs the plugin, writes the static configuration (log level
// ERROR, entrypoint web on Entry, the file provider with Dynamic, the
// plugin as a local plugin) and starts Bin in Dir. It returns once every
// ready host answers, or fails after 60 s with Traefik's log in the error.
func Start(o Options) (*Traefik, error) {
	if o.Bin == "" || o.Dir == "" || o.Entry == "" || o.Root == "" {
		return nil, errors.New("traefiktest: Bin, Dir, Entry and Root are required")
	}
	if err := installPlugin(o.Root, filepath.Join(o.Dir, "plugins-local", "src", filepath.FromSlash(ModuleName))); err != nil {
		return nil, fmt.Errorf("install plugin: %w", err)
	}
	dynamic := filepath.Join(o.Dir, "dynamic.yml")
	if err := os.WriteFile(dynamic, []byte(o.Dynamic), 0o644); err != nil {
		return nil, err
	}
	static := filepath.Join(o.Dir, "traefik.yml")
	if err := os.WriteFile(static, []byte(fmt.Sprintf(staticConfig, o.Entry, dynamic, ModuleName)), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(o.Dir, "traefik.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Bin, "--configFile="+static)
	cmd.Dir = o.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start traefik: %w", err)
	}
	t := &Traefik{dir: o.Dir, cmd: cmd, logFile: logFile, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(t.exited)
	}()

	path := o.ReadyPath
	if path == "" {
		path = "/"
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyWait)
	for {
		if ready(client, o.Entry, path, o.ReadyHosts) {
			return t, nil
		}
		select {
		case <-t.exited:
		case <-time.After(100 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		t.Stop()
		logText, _ := t.Log()
		return nil, fmt.Errorf("traefik was not ready within %v (or exited); its log:\n%s", readyWait, logText)
	}
}

// ready reports whether every host answers 200 on path, or, with no hosts,
// whether entry accepts connections.
func ready(client *http.Client, entry, path string, hosts []string) bool {
	if len(hosts) == 0 {
		conn, err := net.DialTimeout("tcp", entry, time.Second)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	for _, host := range hosts {
		req, err := http.NewRequest(http.MethodGet, "http://"+entry+path, nil)
		if err != nil {
			return false
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
	}
	return true
}

// Stop ends Traefik: SIGTERM, then a kill if it has not exited within
// 10 s. Later calls do nothing.
func (t *Traefik) Stop() {
	t.stop.Do(func() {
		_ = t.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-t.exited:
		case <-time.After(10 * time.Second):
			_ = t.cmd.Process.Kill()
			<-t.exited
		}
		_ = t.logFile.Close()
	})
}

// Log returns what Traefik has logged so far (traefik.log in Dir),
// including the plugin's stderr, which Traefik logs at ERROR.
func (t *Traefik) Log() ([]byte, error) {
	return os.ReadFile(filepath.Join(t.dir, "traefik.log"))
}

// FreeAddr returns a loopback address with a port nothing listens on now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// installPlugin copies what the plugin catalogue would ship: the manifest,
// go.mod and the plugin's non-test sources.
func installPlugin(root, dst string) error {
	if err := os.MkdirAll(filepath.Join(dst, "plugin"), 0o755); err != nil {
		return err
	}
	files := []string{".traefik.yml", "go.mod"}
	srcs, err := filepath.Glob(filepath.Join(root, "plugin", "*.go"))
	if err != nil {
		return err
	}
	if len(srcs) == 0 {
		return fmt.Errorf("no plugin sources under %s", filepath.Join(root, "plugin"))
	}
	for _, s := range srcs {
		if !strings.HasSuffix(s, "_test.go") {
			files = append(files, filepath.Join("plugin", filepath.Base(s)))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

const staticConfig = `
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
entryPoints:
  web:
    address: %q
providers:
  file:
    filename: %q
experimental:
  localPlugins:
    llmtap:
      moduleName: %s
`
