//go:build integration

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// reloadDynamic is Traefik's dynamic configuration for the reload test:
// one router through the plugin, whose sender holds records for
// flushInterval (%[3]s) in batches of batchSize (%[2]d).
const reloadDynamic = `
http:
  routers:
    reload:
      rule: Host(` + "`reload.test`" + `)
      service: upstream
      middlewares: [tap]
  middlewares:
    tap:
      plugin:
        llmtap: {collectorURL: %[1]q, collectorToken: it-token, batchSize: %[2]d, flushInterval: %[3]s}
  services:
    upstream:
      loadBalancer:
        servers:
          - url: %[4]q
`

// TestReloadFlushesOldSender: a real Traefik reloads its dynamic
// configuration with changed plugin settings. The old sender, whose batch
// would wait an hour, sends what it holds at once, and the request that
// began before the reload and ends after it is recorded too.
func TestReloadFlushesOldSender(t *testing.T) {
	c := startCollector(t, nil)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	tr := startTraefik(t, c.stack, traefikOptions{
		Dynamic: fmt.Sprintf(reloadDynamic, c.base, 1000, "1h", up.URL), ReadyHosts: []string{"reload.test"},
	}, nil)
	entry := tr.Addr()

	get := func(path, id string) error {
		req, _ := http.NewRequest(http.MethodGet, "http://"+entry+path, nil)
		req.Host = "reload.test"
		req.Header.Set(llmtap.HeaderRequestID, id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", id, resp.StatusCode)
		}
		return nil
	}
	for i := 0; i < 5; i++ {
		if err := get("/", fmt.Sprintf("rl-before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	inflight := make(chan error, 1)
	go func() { inflight <- get("/slow", "rl-inflight") }()

	stored := func(ids string) string {
		return c.query(t, "SELECT count() FROM llmtap_it.requests FINAL WHERE request_id IN ("+ids+")")
	}
	before := "'rl-before-0', 'rl-before-1', 'rl-before-2', 'rl-before-3', 'rl-before-4'"
	time.Sleep(time.Second)
	if n := stored(before); n != "0" {
		t.Fatalf("%s records stored before the reload: the sender did not hold them", n)
	}

	// The reload: another batch size and flush interval for the same
	// middleware.
	start := time.Now()
	if err := tr.SetDynamic(fmt.Sprintf(reloadDynamic, c.base, 999, "100ms", up.URL)); err != nil {
		t.Fatal(err)
	}
	waitStored := func(what, ids, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			n := stored(ids)
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s of %s records stored 30 s after the reload", what, n, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitStored("held by the old sender", before, "5")
	t.Logf("the old sender's records stored %s after the configuration file changed", time.Since(start).Round(time.Millisecond))

	// New requests go through the new instance and its sender.
	if err := get("/", "rl-after"); err != nil {
		t.Fatal(err)
	}
	waitStored("through the new instance", "'rl-after'", "1")

	// The request that began on the old instance ends now.
	close(release)
	if err := <-inflight; err != nil {
		t.Fatal(err)
	}
	waitStored("in flight across the reload", "'rl-inflight'", "1")
	if route := c.query(t, "SELECT route FROM llmtap_it.requests FINAL WHERE request_id = 'rl-inflight'"); !strings.HasPrefix(route, "tap") {
		t.Errorf("the in-flight request's route is %q", route)
	}
}
