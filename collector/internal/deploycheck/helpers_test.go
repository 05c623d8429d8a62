package deploycheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/llmtap/llmtap/collector/config"
	llmtap "github.com/llmtap/llmtap/plugin"
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

// yamlDocs decodes every document of a YAML text into a generic map.
func yamlDocs(t *testing.T, name string, text []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(text))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not valid YAML: %v", name, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", name)
	}
	return docs
}

// yamlFile decodes rel (from the repository's root), which must hold one
// YAML document.
func yamlFile(t *testing.T, rel string) map[string]any {
	t.Helper()
	docs := yamlDocs(t, rel, readFile(t, rel))
	if len(docs) != 1 {
		t.Fatalf("%s: %d YAML documents, want 1", rel, len(docs))
	}
	return docs[0]
}

// get walks nested maps along keys; nil when a key is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// getMap is get for a map: an empty map when absent or of another type.
func getMap(v any, keys ...string) map[string]any {
	m, _ := get(v, keys...).(map[string]any)
	return m
}

// getList is get for a list.
func getList(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

// getString is get for a scalar, as text ("" when absent).
func getString(v any, keys ...string) string {
	switch s := get(v, keys...).(type) {
	case nil:
		return ""
	case string:
		return s
	case map[string]any, []any:
		return ""
	default:
		return fmt.Sprint(s)
	}
}

// need fails the test unless the field along keys is a non-empty scalar,
// naming the file and the field.
func need(t *testing.T, file string, v any, keys ...string) string {
	t.Helper()
	s := getString(v, keys...)
	if s == "" {
		t.Fatalf("%s: %s: missing or empty", file, strings.Join(keys, "."))
	}
	return s
}

// sortedKeys returns a map's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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

// pluginOptions are the option names the plugin accepts, from the json
// tags of plugin.Config (the names Traefik's configuration uses), nested
// ones dotted (limits.enabled).
func pluginOptions() map[string]bool {
	known := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			known[prefix+name] = true
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[llmtap.Config](), "")
	return known
}

// unknownOptions lists the options of a plugin configuration that the
// plugin does not have. Names must be written as the plugin documents
// them (Traefik would accept any case; a reader would not).
func unknownOptions(opts map[string]any) []string {
	known := pluginOptions()
	var bad []string
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for _, k := range sortedKeys(m) {
			if !known[prefix+k] {
				bad = append(bad, prefix+k)
				continue
			}
			if sub, ok := m[k].(map[string]any); ok {
				walk(sub, prefix+k+".")
			}
		}
	}
	walk(opts, "")
	return bad
}

// newPlugin decodes opts over the plugin's defaults, as Traefik does, and
// calls the plugin's New, which validates every value.
func newPlugin(opts map[string]any, name string) error {
	b, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	cfg := llmtap.CreateConfig()
	if err := json.Unmarshal(b, cfg); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	_, err = llmtap.New(context.Background(), http.NotFoundHandler(), cfg, name)
	return err
}

// checkPluginConfig checks one llmtap middleware's options: all known,
// accepted by the plugin's New. name is the middleware's name.
func checkPluginConfig(t *testing.T, where string, opts map[string]any, name string) {
	t.Helper()
	if len(opts) == 0 {
		t.Errorf("%s: no plugin options", where)
		return
	}
	if bad := unknownOptions(opts); len(bad) > 0 {
		t.Errorf("%s: unknown plugin options %v (the plugin has %v)", where, bad, sortedKeys(pluginOptions()))
	}
	if err := newPlugin(opts, name); err != nil {
		t.Errorf("%s: the plugin refuses its options: %v", where, err)
	}
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

// checkCollectorEnv fails for each variable name the collector does not
// read: setting it must change the configuration ApplyEnv gives.
func checkCollectorEnv(t *testing.T, where string, names []string) {
	t.Helper()
	for _, name := range names {
		value := "s3cret-value"
		switch {
		case strings.HasSuffix(name, "_ADDR"):
			value = "example.invalid:1"
		case name == "LLMTAP_LISTEN":
			value = ":1"
		case name == "LLMTAP_LOG_LEVEL":
			value = "error"
		}
		c := config.Default()
		if err := c.ApplyEnv(mapEnv(map[string]string{name: value})); err != nil {
			t.Errorf("%s: environment variable %s: %v", where, name, err)
			continue
		}
		if reflect.DeepEqual(c, config.Default()) {
			t.Errorf("%s: environment variable %s is not one the collector reads (see collector/config/example.yaml)", where, name)
		}
	}
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
