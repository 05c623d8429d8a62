//go:build integration

package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/internal/stack"
)

// rig is the whole path of a request: a real Traefik with the plugin
// loaded from plugins-local, the collector, ClickHouse and Redis.
type rig struct {
	entry     string
	collector *collectorUnderTest
	redis     *stack.Redis
	traefik   *stack.Traefik
}

type stackOptions struct {
	// collector changes the collector's configuration; redisAddr is the
	// test's Redis.
	collector func(c *stack.CollectorConfig, redisAddr string)
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
func startStack(t *testing.T, o stackOptions) *rig {
	t.Helper()
	s := stack.New(t)
	rd := s.Redis()
	c := startCollectorWith(t, collectorSetup{stack: s, configure: func(c *stack.CollectorConfig) { o.collector(c, rd.Addr()) }})
	tr := startTraefik(t, s, traefikOptions{
		Dynamic: o.dynamic(c.base), ReadyHosts: []string{o.readyHost}, ReadyPath: o.readyPath,
	}, o.expectedErrors)
	return &rig{entry: tr.Addr(), collector: c, redis: rd, traefik: tr}
}

// traefikOptions say how startTraefik starts Traefik.
type traefikOptions struct {
	Dynamic    string
	ReadyHosts []string // hosts whose GET ReadyPath answers 200 once ready
	ReadyPath  string
}

// startTraefik starts the real Traefik with the plugin in the test's
// stack; once the stack has stopped it, the test fails if Traefik logged
// an error other than the expected ones.
func startTraefik(t *testing.T, s *stack.T, o traefikOptions, expectedErrors []string) *stack.Traefik {
	t.Helper()
	tr := s.NewTraefik(o.Dynamic)
	tr.ReadyHosts, tr.ReadyPath = o.ReadyHosts, o.ReadyPath
	s.Run(&checkedTraefik{Traefik: tr, t: t, expected: expectedErrors})
	return tr
}

// checkedTraefik is Traefik whose log is checked once it has stopped.
type checkedTraefik struct {
	*stack.Traefik
	t        *testing.T
	expected []string
}

func (c *checkedTraefik) Stop(ctx context.Context) error {
	if err := c.Traefik.Stop(ctx); err != nil {
		return err
	}
	log, err := c.Log()
	if err != nil {
		return err
	}
	if bad := unexpectedErrors(string(log), c.expected); bad != "" {
		c.t.Errorf("Traefik logged errors:\n%s", bad)
	}
	return nil
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
