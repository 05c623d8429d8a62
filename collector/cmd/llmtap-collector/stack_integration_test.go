//go:build integration

package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector/internal/redistest"
	"github.com/llmtap/llmtap/internal/traefiktest"
)

// stack is the whole path of a request: a real Traefik with the plugin
// loaded from plugins-local, the collector, ClickHouse and Redis.
type stack struct {
	entry     string
	collector *collectorUnderTest
	redis     *redistest.Server
	traefik   *traefiktest.Traefik
}

type stackOptions struct {
	// collector returns what to add to the collector's configuration.
	collector func(redisAddr string) string
	// dynamic returns Traefik's dynamic configuration.
	dynamic func(collectorURL string) string
	// readyHost is a host whose GET / through Traefik answers 200 once the
	// plugin is loaded.
	readyHost string
	// readyPath is the path of that request ("/" when empty).
	readyPath string
	// expectedErrors are parts of error lines the test causes on purpose
	// (such as the plugin's when the collector is stopped).
	expectedErrors []string
}

// startStack starts every part and stops them when the test ends; the
// test fails if Traefik logged an error meanwhile.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	rd, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rd.Close(); err != nil {
			t.Error(err)
		}
	})
	c := startCollector(t, o.collector(rd.Addr))
	tr, entry := startTraefik(t, traefikOptions{
		Dynamic: o.dynamic(c.base), ReadyHosts: []string{o.readyHost}, ReadyPath: o.readyPath,
	}, o.expectedErrors)
	return &stack{entry: entry, collector: c, redis: rd, traefik: tr}
}

// traefikOptions are traefiktest.Options without what startTraefik fills
// in (the binary, the checkout, the entrypoint and, when empty, the folder).
type traefikOptions = traefiktest.Options

// startTraefik starts the real Traefik of TRAEFIK_BIN with the plugin and
// stops it when the test ends, failing the test if Traefik logged an error
// other than the expected ones. It returns Traefik and its entrypoint.
func startTraefik(t *testing.T, o traefikOptions, expectedErrors []string) (*traefiktest.Traefik, string) {
	t.Helper()
	o.Bin = os.Getenv("TRAEFIK_BIN")
	if o.Bin == "" {
		t.Fatal("TRAEFIK_BIN is not set: run `make test`, which builds Traefik")
	}
	var err error
	if o.Entry, err = traefiktest.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	if o.Root, err = filepath.Abs(filepath.Join("..", "..", "..")); err != nil {
		t.Fatal(err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	tr, err := traefiktest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Stop()
		log, err := tr.Log()
		if err != nil {
			t.Error(err)
		}
		if bad := unexpectedErrors(string(log), expectedErrors); bad != "" {
			t.Errorf("Traefik logged errors:\n%s", bad)
		}
	})
	return tr, o.Entry
}

// unexpectedErrors returns the error lines of a Traefik log (its own ERR
// lines, the plugin's level=ERROR lines, panics) that contain none of
// expected.
func unexpectedErrors(log string, expected []string) string {
	var bad []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " ERR ") && !strings.Contains(strings.ToLower(line), "level=error") && !strings.Contains(line, "panic") {
			continue
		}
		ok := false
		for _, e := range expected {
			ok = ok || strings.Contains(line, e)
		}
		if !ok {
			bad = append(bad, line)
		}
	}
	return strings.Join(bad, "\n")
}

// getAuthorized GETs a collector URL with the test read token.
func getAuthorized(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer it-read")
	return http.DefaultClient.Do(req)
}
