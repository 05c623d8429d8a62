package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector/config"
)

// repoRoot is the checkout's root, three folders up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(b, []byte("module github.com/llmtap/llmtap\n")) {
		t.Fatalf("%s is not the llmtap checkout (go.mod: %v)", root, err)
	}
	return root
}

// readFile reads rel, a path from the repository's root.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return b
}

var digestRE = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// checkPinned reports why an image reference is not pinned: it needs a
// digest, or an explicit tag other than latest.
func checkPinned(ref string) error {
	if ref == "" {
		return errors.New("no image")
	}
	if digestRE.MatchString(ref) {
		return nil
	}
	if strings.Contains(ref, "@") {
		return fmt.Errorf("image %q: malformed digest (want @sha256: and 64 hex digits)", ref)
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 {
		return fmt.Errorf("image %q has no tag: pin a version or a digest", ref)
	}
	if tag := name[i+1:]; tag == "" || tag == "latest" {
		return fmt.Errorf("image %q: tag %q is not a version: pin a version or a digest", ref, tag)
	}
	return nil
}

// imageTag is the tag of an image reference, without a digest.
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	name := ref[strings.LastIndex(ref, "/")+1:]
	if i := strings.LastIndex(name, ":"); i >= 0 {
		return name[i+1:]
	}
	return ""
}

// mapEnv is an environment lookup over a map.
func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// loadCollectorConfig loads a collector configuration file's text the way
// the collector does: config.Load with env, then the LLMTAP_* overrides,
// then Validate.
func loadCollectorConfig(t *testing.T, where string, text []byte, env map[string]string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, mapEnv(env))
	if err == nil {
		err = cfg.ApplyEnv(mapEnv(env))
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("%s: the collector refuses its configuration: %v", where, err)
	}
	return cfg
}

// port is the port of a host:port address.
func port(t *testing.T, where, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	return p
}

// goDirective is the go line of a go.mod file (rel from the root).
func goDirective(t *testing.T, rel string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readFile(t, rel))
	if m == nil {
		t.Fatalf("%s: no go line", rel)
	}
	return string(m[1])
}

// versionParts parses "1.26.8" (or "1.26") into numbers.
func versionParts(v string) ([]int, error) {
	var parts []int
	for _, s := range strings.Split(v, ".") {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("version %q: %w", v, err)
		}
		parts = append(parts, n)
	}
	for len(parts) < 3 {
		parts = append(parts, 0)
	}
	return parts, nil
}
