package stack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The plugins Traefik loads from plugins-local: llmtap from the checkout's
// root, and the no-op plugin (bench/noop) that measures Yaegi's floor.
var localPlugins = []struct{ name, module, dir string }{
	{"llmtap", "github.com/llmtap/llmtap", "."},
	{"noop", "github.com/llmtap/noop", "bench/noop"},
}

// Traefik is the real Traefik binary with the plugins loaded from
// plugins-local, exactly as users load a local plugin.
type Traefik struct {
	server
	Bin  string
	Root string // the checkout: .traefik.yml, go.mod, plugin/, bench/noop
	Port int    // the entrypoint "web"
	// Dynamic is the dynamic configuration (YAML), written to
	// Dir/dynamic.yml, which the file provider watches: SetDynamic
	// reloads it.
	Dynamic  string
	LogLevel string // default ERROR
	// Ready: Traefik is ready when GET ReadyPath (default "/") answers
	// ReadyStatus (default 200) for each of ReadyHosts (no hosts: the
	// request's Host is the entrypoint's address).
	ReadyPath   string
	ReadyHosts  []string
	ReadyStatus int
	// MetricsPort, when set, serves Traefik's own Prometheus metrics
	// (go_goroutines, process_resident_memory_bytes, ...) at /metrics on
	// an entrypoint of their own.
	MetricsPort int
	// Env is added to Traefik's environment (KEY=value), e.g. GOGC.
	Env []string
}

// metricsConfig is the static configuration's part for MetricsPort:
// the entrypoint (under entryPoints) and the metrics.
func (t *Traefik) metricsConfig() string {
	if t.MetricsPort == 0 {
		return ""
	}
	return fmt.Sprintf("  metrics:\n    address: %q\nmetrics:\n  prometheus:\n    entryPoint: metrics\n", addr(t.MetricsPort))
}

// MetricsURL is where Traefik serves its metrics (MetricsPort).
func (t *Traefik) MetricsURL() string { return "http://" + addr(t.MetricsPort) + "/metrics" }

// Name is "traefik".
func (t *Traefik) Name() string { return "traefik" }

// Addr is the entrypoint's host:port.
func (t *Traefik) Addr() string { return addr(t.Port) }

// URL is the entrypoint's base URL.
func (t *Traefik) URL() string { return "http://" + t.Addr() }

// Start installs the plugins, writes the static and dynamic configuration
// and starts Traefik; it returns once Traefik routes (see Ready).
func (t *Traefik) Start(ctx context.Context) error {
	if t.Bin == "" || t.Root == "" {
		return fmt.Errorf("traefik: Bin and Root are required")
	}
	if err := t.mkdirs(t.Name()); err != nil {
		return err
	}
	for _, p := range localPlugins {
		dst := filepath.Join(t.Dir, "plugins-local", "src", filepath.FromSlash(p.module))
		if err := installPlugin(filepath.Join(t.Root, p.dir), dst); err != nil {
			return fmt.Errorf("traefik: install plugin %s: %w", p.name, err)
		}
	}
	dynamic := filepath.Join(t.Dir, "dynamic.yml")
	if err := os.WriteFile(dynamic, []byte(t.Dynamic), 0o644); err != nil {
		return fmt.Errorf("traefik: %w", err)
	}
	level := t.LogLevel
	if level == "" {
		level = "ERROR"
	}
	var plugins strings.Builder
	for _, p := range localPlugins {
		fmt.Fprintf(&plugins, "    %s:\n      moduleName: %s\n", p.name, p.module)
	}
	static := filepath.Join(t.Dir, "traefik.yml")
	config := fmt.Sprintf(`# Written by internal/stack.
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: %s
entryPoints:
  web:
    address: %q
%sproviders:
  file:
    filename: %q
    watch: true
experimental:
  localPlugins:
%s`, level, t.Addr(), t.metricsConfig(), dynamic, plugins.String())
	if err := os.WriteFile(static, []byte(config), 0o644); err != nil {
		return fmt.Errorf("traefik: %w", err)
	}
	// Traefik finds plugins-local relative to its working folder.
	return t.run(ctx, Command{
		Name: t.Name(),
		Path: t.Bin,
		Args: []string{"--configFile=" + static},
		Dir:  t.Dir,
		Env:  append(os.Environ(), t.Env...),
		Log:  filepath.Join(t.Dir, "traefik.log"),
	}, t.Ready)
}

// Ready checks that Traefik routes: every ready host answers.
func (t *Traefik) Ready(ctx context.Context) error {
	path, want := t.ReadyPath, t.ReadyStatus
	if path == "" {
		path = "/"
	}
	if want == 0 {
		want = http.StatusOK
	}
	hosts := t.ReadyHosts
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	for _, host := range hosts {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL()+path, nil)
		if err != nil {
			cancel()
			return err
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("traefik: GET %s (host %q) answered %d, want %d (did the plugin load? see %s)",
				path, host, resp.StatusCode, want, filepath.Join(t.Dir, "traefik.log"))
		}
	}
	return nil
}

// SetDynamic rewrites the dynamic configuration, which Traefik reloads.
func (t *Traefik) SetDynamic(yaml string) error {
	t.Dynamic = yaml
	return os.WriteFile(filepath.Join(t.Dir, "dynamic.yml"), []byte(yaml), 0o644)
}

// Log returns what Traefik has logged (with the plugin's stderr).
func (t *Traefik) Log() ([]byte, error) {
	return os.ReadFile(filepath.Join(t.Dir, "traefik.log"))
}

// Stop stops Traefik.
func (t *Traefik) Stop(ctx context.Context) error { return t.stop(ctx) }

// installPlugin copies what the plugin catalogue ships from src: the
// manifest, go.mod and the non-test Go sources (plugin/ for llmtap).
func installPlugin(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	files := []string{".traefik.yml", "go.mod"}
	for _, pattern := range []string{"*.go", filepath.Join("plugin", "*.go")} {
		srcs, err := filepath.Glob(filepath.Join(src, pattern))
		if err != nil {
			return err
		}
		for _, s := range srcs {
			if !strings.HasSuffix(s, "_test.go") {
				rel, _ := filepath.Rel(src, s)
				files = append(files, rel)
			}
		}
	}
	if len(files) == 2 {
		return fmt.Errorf("no Go sources in %s", src)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var placeholder = regexp.MustCompile(`__[A-Z_]+__`)

// Render returns the template file with every __KEY__ replaced by its
// value; a placeholder left without a value is an error.
func Render(template string, values map[string]string) (string, error) {
	b, err := os.ReadFile(template)
	if err != nil {
		return "", err
	}
	pairs := make([]string, 0, 2*len(values))
	for k, v := range values {
		pairs = append(pairs, "__"+k+"__", v)
	}
	text := strings.NewReplacer(pairs...).Replace(string(b))
	if left := placeholder.FindAllString(text, -1); len(left) > 0 {
		sort.Strings(left)
		return "", fmt.Errorf("%s: no value for %s", template, strings.Join(left, " "))
	}
	return text, nil
}
