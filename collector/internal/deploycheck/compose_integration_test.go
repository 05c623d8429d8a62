//go:build integration

package deploycheck

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/llmtap/llmtap/internal/stack"
	"github.com/llmtap/llmtap/mock"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// TestComposeTraefikRuns runs the compose stack's Traefik part in a real
// Traefik (TRAEFIK_BIN), without Docker: its working folder laid out as
// compose.yml's mounts lay out the container's (the plugin's manifest,
// go.mod and package folder, test files included, at plugins-local), its
// static configuration with loopback addresses and this folder's paths,
// its dynamic configuration with the mock and a stand-in collector in
// place of the compose services, and LLMTAP_INGEST_TOKEN in its
// environment. One request per router must come back from the mock, and
// its record, with the route's name and an allowed limit check, must
// reach the collector with the token.
func TestComposeTraefikRuns(t *testing.T) {
	bin := os.Getenv("TRAEFIK_BIN")
	if bin == "" {
		t.Fatal("TRAEFIK_BIN is not set: run `make test`, which builds Traefik")
	}
	c := loadCompose(t)
	const name = "traefik"
	dir := t.TempDir() // the container's root
	wd := filepath.Join(dir, filepath.FromSlash(getString(c.services, name, "working_dir")))

	// The plugin, as mounted.
	for _, m := range c.mounts(name) {
		if m.bind && strings.HasPrefix(m.target, "/plugins-local/") {
			if err := copyTree(m.source, filepath.Join(dir, filepath.FromSlash(m.target))); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The upstream and the collector.
	upstream := httptest.NewServer(mock.New(mock.Options{TTFT: time.Millisecond, Gap: time.Millisecond, Tokens: 3}))
	defer upstream.Close()
	const token = "integration-token"
	col := newStandInCollector(t, token)
	defer col.srv.Close()

	// The dynamic configuration, the compose services' URLs replaced.
	dynPath := getString(yamlFile(t, c.hostFile(name, "/etc/traefik/traefik.yml", "static")), "providers", "file", "filename")
	dynText := string(readFile(t, c.hostFile(name, dynPath, "dynamic")))
	for from, to := range map[string]string{"http://llmtap-collector:7480": col.srv.URL, "http://mock:18900": upstream.URL} {
		if !strings.Contains(dynText, from) {
			t.Fatalf("%s: no %s", dynPath, from)
		}
		dynText = strings.ReplaceAll(dynText, from, to)
	}
	dynFile := filepath.Join(dir, "dynamic.yml")
	if err := os.WriteFile(dynFile, []byte(dynText), 0o600); err != nil {
		t.Fatal(err)
	}

	// The static configuration, on loopback and in this folder.
	static := yamlFile(t, c.hostFile(name, "/etc/traefik/traefik.yml", "static"))
	st := stack.New(t)
	web, ping := st.Addr(), st.Addr()
	getMap(static, "entryPoints", "web")["address"] = web
	getMap(static, "entryPoints")["traefik"] = map[string]any{"address": ping}
	getMap(static, "providers", "file")["filename"] = dynFile
	getMap(static, "log")["filePath"] = filepath.Join(dir, "traefik.log")
	staticText, err := yaml.Marshal(static)
	if err != nil {
		t.Fatal(err)
	}
	staticFile := filepath.Join(dir, "traefik.yml")
	if err := os.WriteFile(staticFile, staticText, 0o600); err != nil {
		t.Fatal(err)
	}

	// Traefik as the compose service runs it, a part of the test's stack;
	// ready once its healthcheck's /ping answers.
	st.Program("traefik-compose", stack.Command{
		Path: bin,
		Args: []string{"--configFile=" + staticFile},
		Dir:  wd,
		Env:  append(os.Environ(), "LLMTAP_INGEST_TOKEN="+token),
		Log:  filepath.Join(dir, "stdout.log"),
	}, func(ctx context.Context) error {
		status, err := get200(&http.Client{Timeout: 2 * time.Second}, "http://"+ping+"/ping")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("/ping: %d", status)
		}
		return err
	})
	logs := func() string {
		a, _ := os.ReadFile(filepath.Join(dir, "traefik.log"))
		b, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
		return string(a) + string(b)
	}

	// The healthcheck's /ping, then each router until the plugin is loaded.
	client := &http.Client{Timeout: 5 * time.Second}
	requests := map[string]struct{ path, body string }{
		"openai":    {"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		"anthropic": {"/v1/messages", `{"model":"m","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`},
		"tts":       {"/v1/audio/speech", `{"model":"tts","input":"hello there"}`},
	}
	deadline := time.Now().Add(60 * time.Second)
	for route, r := range map[string]struct{ path, body string }{"ping": {}, "openai": requests["openai"]} {
		for {
			var status int
			var err error
			if route == "ping" {
				status, err = get200(client, "http://"+ping+"/ping")
			} else {
				status, err = post(client, "http://"+web+r.path, r.body)
			}
			if err == nil && status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no 200 within 60 s (status %d, %v); Traefik's log:\n%s", route, status, err, logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for route, r := range requests {
		if status, err := post(client, "http://"+web+r.path, r.body); err != nil || status != http.StatusOK {
			t.Errorf("route %s (%s): status %d, %v", route, r.path, status, err)
		}
	}

	// Their records, with the token and an allowed limit check.
	seen := map[string]bool{}
	timeout := time.After(15 * time.Second)
	for len(seen) < len(requests) {
		select {
		case rec := <-col.records:
			if _, ok := requests[rec.Route]; !ok {
				t.Errorf("a record of route %q: not one of the routers", rec.Route)
			}
			if rec.Limit != llmtap.LimitAllowed {
				t.Errorf("route %s: record's limit %q, want %q (limits.enabled)", rec.Route, rec.Limit, llmtap.LimitAllowed)
			}
			seen[rec.Route] = true
		case <-timeout:
			t.Fatalf("records of %v only within 15 s (bad tokens: %d); Traefik's log:\n%s", seen, col.badTokens(), logs())
		}
	}
	if n := col.badTokens(); n > 0 {
		t.Errorf("%d request(s) to the collector without the ingest token", n)
	}
}

// standInCollector answers limit checks with allow and passes on the
// records it receives, counting requests without the expected token.
type standInCollector struct {
	srv     *httptest.Server
	records chan llmtap.Record
	mu      sync.Mutex
	bad     int
}

func newStandInCollector(t *testing.T, token string) *standInCollector {
	c := &standInCollector{records: make(chan llmtap.Record, 100)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			c.mu.Lock()
			c.bad++
			c.mu.Unlock()
		}
		switch r.URL.Path {
		case llmtap.LimitsCheckPath:
			w.Header().Set(llmtap.HeaderDecision, llmtap.DecisionAllow)
			_, _ = io.WriteString(w, "{}")
		case llmtap.RecordsPath:
			var body io.Reader = r.Body
			if r.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(r.Body)
				if err != nil {
					t.Errorf("records: %v", err)
					return
				}
				body = zr
			}
			sc := bufio.NewScanner(body)
			sc.Buffer(nil, 16<<20)
			for sc.Scan() {
				var rec llmtap.Record
				if err := json.Unmarshal(sc.Bytes(), &rec); err == nil && rec.Route != "" {
					c.records <- rec
				}
			}
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	return c
}

func (c *standInCollector) badTokens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}

func get200(client *http.Client, u string) (int, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func post(client *http.Client, u, body string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-acme")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// copyTree copies a file, or a folder with everything in it, as a bind
// mount would show it.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
