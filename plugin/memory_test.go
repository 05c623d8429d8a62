//go:build !yaegi
// +build !yaegi

package llmtap

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// TestLongCredentialsAreNotKept: many requests, each with its own 1 MiB
// API key, leave nothing of the keys behind once their records are sent:
// the credential cache holds fixed-size hashes. Compiled only: it reads
// the Go heap.
func TestLongCredentialsAreNotKept(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	sd := startSender(t, s)
	h := &Middleware{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}), set: s, sender: sd, pending: sd.pending}
	long := strings.Repeat("k", 1<<20)
	before := heapAlloc()
	const n = 300
	for i := 0; i < n; i++ {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{}`))
		req.Header.Set("Authorization", fmt.Sprintf("Bearer %d-%s", i, long))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	col.records(t, n)
	kept := int64(heapAlloc()) - int64(before)
	t.Logf("heap after %d requests with 1 MiB keys: %+d bytes", n, kept)
	if kept > 16<<20 {
		t.Errorf("the heap kept %d MiB after %d requests with 1 MiB keys, want their keys gone", kept>>20, n)
	}
}

// TestHungCollectorCostsAtMostTheBudget: with the sender stalled (a
// collector that accepts and never answers leaves its batches waiting),
// 1,000 streamed responses of 1 MiB each, with 512 KiB request headers,
// pass through; what the queue holds stays within maxQueueBytes, the heap
// grows by about that much and no more, and every record is queued or
// counted as dropped.
func TestHungCollectorCostsAtMostTheBudget(t *testing.T) {
	const budget = 16 << 20
	s := testSettings(t, "http://127.0.0.1:1", func(c *Config) { c.MaxQueueBytes = budget })
	sd := newSender(s, discardLogger()) // never started: nothing is taken from the queue
	chunk := []byte("data: " + strings.Repeat("x", 4090) + "\n\n")
	h := &Middleware{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 256; i++ { // 1 MiB in 4 KiB events
			_, _ = w.Write(chunk)
		}
	}), set: s, sender: sd, pending: sd.pending}
	header := strings.Repeat("h", 512<<10)
	before := heapAlloc()
	const n = 1000
	for i := 0; i < n; i++ {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
		req.Header.Set("X-Big", header)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	kept := int64(heapAlloc()) - int64(before)
	queued, dropped := len(sd.queue), atomic.LoadInt64(&sd.dropped)
	t.Logf("%d records queued (%d bytes by the budget), %d dropped; the heap grew by %d KiB", queued, atomic.LoadInt64(&sd.queuedBytes), dropped, kept>>10)
	if int64(queued)+dropped != n {
		t.Errorf("%d queued + %d dropped, want %d", queued, dropped, n)
	}
	if q := atomic.LoadInt64(&sd.queuedBytes); q > budget {
		t.Errorf("the queue holds %d bytes by its count, over the budget of %d", q, budget)
	}
	if dropped == 0 {
		t.Error("nothing dropped: the budget was never reached")
	}
	// The budget counts what the records hold; the heap adds the queue's
	// own slots and allocator rounding, well below a quarter more.
	if kept > budget*5/4+(2<<20) {
		t.Errorf("the heap grew by %d MiB, over the budget of %d MiB", kept>>20, budget>>20)
	}
}

// heapAlloc is the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestObservationCountsTheHeadReadAhead: a chunked body read ahead of the
// limit check (readHead) is held for the upstream until it reads it, and
// whole when it never does (a denied request): the budget counts it.
func TestObservationCountsTheHeadReadAhead(t *testing.T) {
	s := testSettings(t, "http://127.0.0.1:1", func(c *Config) {
		c.Limits = LimitsConfig{Enabled: true, Timeout: "1s", FailureMode: "closed"}
	})
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", io.MultiReader(strings.NewReader(strings.Repeat("x", 200<<10))))
	req.ContentLength = -1
	c := &captureWriter{set: s, req: req, rec: &Record{}}
	captureRequest(c, req)
	if c.headRead != int64(s.maxReqBody)+1 {
		t.Fatalf("read ahead %d bytes, want %d", c.headRead, s.maxReqBody+1)
	}
	if got := observationBytes(c); got < c.headRead {
		t.Errorf("observation counted at %d bytes, under the %d it holds", got, c.headRead)
	}
}
