//go:build !yaegi
// +build !yaegi

package llmtap

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
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
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	long := strings.Repeat("k", 1<<20)
	before := heap()
	const n = 300
	for i := 0; i < n; i++ {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{}`))
		req.Header.Set("Authorization", fmt.Sprintf("Bearer %d-%s", i, long))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	col.records(t, n)
	kept := int64(heap()) - int64(before)
	t.Logf("heap after %d requests with 1 MiB keys: %+d bytes", n, kept)
	if kept > 16<<20 {
		t.Errorf("the heap kept %d MiB after %d requests with 1 MiB keys, want their keys gone", kept>>20, n)
	}
}
