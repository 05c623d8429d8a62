package llmtap

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Traefik calls New again on every configuration reload and keeps serving
// the requests that began before it on the old instances. These tests do
// the same with New and ServeHTTP.

// reloadConfig is a configuration sending to url.
func reloadConfig(url string, batchSize int, flush string) *Config {
	c := CreateConfig()
	c.CollectorURL = url
	c.BatchSize = batchSize
	c.FlushInterval = flush
	return c
}

// load calls New as Traefik does for the middleware called name, and
// returns the handler and the sender the middleware now uses.
func load(t *testing.T, next http.Handler, c *Config, name string) (http.Handler, *sender) {
	t.Helper()
	h, err := New(context.Background(), next, c, name)
	if err != nil {
		t.Fatal(err)
	}
	senders.Lock()
	sd := senders.byName[name]
	senders.Unlock()
	return h, sd
}

// serveOne sends one request through h, with its request id.
func serveOne(h http.Handler, path, id string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set(HeaderRequestID, id)
	h.ServeHTTP(httptest.NewRecorder(), req)
}

// holdingHandler answers at once, except on /slow, which waits for release.
func holdingHandler(release chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
}

// recordIDs waits for n records and returns the ids received.
func recordIDs(t *testing.T, col *collectorStub, n int) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, r := range col.records(t, n) {
		ids[r.RequestID]++
	}
	return ids
}

// waitEnded waits until the sender's goroutine has ended.
func waitEnded(t *testing.T, sd *sender, what string) {
	t.Helper()
	select {
	case <-sd.finished():
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: the old sender's goroutine still runs 3 s later (pending %d)", what, atomic.LoadInt64(sd.pending))
	}
}

func TestReloadFlushesReplacedSender(t *testing.T) {
	col := newCollectorStub(t)
	release := make(chan struct{})
	next := holdingHandler(release)
	// A batch that waits an hour: only the reload can send it early.
	h1, old := load(t, next, reloadConfig(col.srv.URL, 1000, "1h"), "reload-flush")
	for i := 0; i < 3; i++ {
		serveOne(h1, "/", fmt.Sprintf("before-%d", i))
	}
	inflight := make(chan struct{})
	go func() {
		serveOne(h1, "/slow", "in-flight") // begins before the reload, ends after
		close(inflight)
	}()
	deadline := time.Now().Add(3 * time.Second)
	for atomic.LoadInt64(old.pending) != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, want 3 finished and 1 running", atomic.LoadInt64(old.pending))
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	col.mu.Lock()
	early := len(col.batches)
	col.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d batches sent before the flush interval", early)
	}

	// The reload changes the batch size and the flush interval.
	start := time.Now()
	h2, cur := load(t, next, reloadConfig(col.srv.URL, 500, "20ms"), "reload-flush")
	if cur == old {
		t.Fatal("changed settings kept the old sender")
	}
	ids := recordIDs(t, col, 3)
	if took := time.Since(start); took > time.Second {
		t.Errorf("the old sender's records arrived %s after the reload, want at once", took)
	}
	for i := 0; i < 3; i++ {
		if ids[fmt.Sprintf("before-%d", i)] != 1 {
			t.Errorf("record before-%d arrived %d times", i, ids[fmt.Sprintf("before-%d", i)])
		}
	}
	select {
	case <-old.finished():
		t.Fatal("the old sender ended while a request of its middleware was running")
	case <-time.After(100 * time.Millisecond):
	}

	// The request that began before the reload ends on the old instance.
	close(release)
	<-inflight
	if ids := recordIDs(t, col, 4); ids["in-flight"] != 1 {
		t.Errorf("the in-flight request's record arrived %d times", ids["in-flight"])
	}
	waitEnded(t, old, "after the last request")

	// Requests reaching the old instance after all revive its sender,
	// which sends them and ends again.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			serveOne(h1, "/", fmt.Sprintf("late-%d", i))
		}(i)
	}
	wg.Wait()
	ids = recordIDs(t, col, 24)
	for i := 0; i < 20; i++ {
		if ids[fmt.Sprintf("late-%d", i)] != 1 {
			t.Errorf("record late-%d arrived %d times", i, ids[fmt.Sprintf("late-%d", i)])
		}
	}
	waitEnded(t, old, "after the late requests")

	// The new sender takes the new instance's records.
	serveOne(h2, "/", "after")
	if ids := recordIDs(t, col, 25); ids["after"] != 1 {
		t.Errorf("the new instance's record arrived %d times", ids["after"])
	}
	select {
	case <-cur.finished():
		t.Error("the new sender's goroutine ended")
	default:
	}
}

func TestReloadKeepsSendersInUse(t *testing.T) {
	url := "http://127.0.0.1:1/reload-keep"
	next := holdingHandler(nil)
	_, a := load(t, next, reloadConfig(url, 10, "1s"), "keep-a")
	if _, again := load(t, next, reloadConfig(url, 10, "1s"), "keep-a"); again != a || a.isRetired() {
		t.Fatal("a reload with the same settings replaced the sender")
	}
	// Another middleware with the same settings shares the sender.
	if _, b := load(t, next, reloadConfig(url, 10, "1s"), "keep-b"); b != a {
		t.Fatal("two middlewares with the same settings got two senders")
	}
	if _, a2 := load(t, next, reloadConfig(url, 11, "1s"), "keep-a"); a2 == a || a.isRetired() {
		t.Fatal("the sender keep-b still uses was retired")
	}
	if _, b2 := load(t, next, reloadConfig(url, 11, "1s"), "keep-b"); !a.isRetired() {
		t.Fatal("the sender no middleware uses any more was not retired")
	} else if b2 == a {
		t.Fatal("keep-b kept the old sender")
	}
	waitEnded(t, a, "idle")
}
