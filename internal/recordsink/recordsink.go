// Package recordsink is a stand-in collector for tests of the plugin: it
// takes the record batches the plugin POSTs (gzip-compressed NDJSON) and
// keeps each record by request id, the latest copy winning.
package recordsink

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// Sink is an http.Handler of llmtap.RecordsPath. It is safe for
// concurrent use.
type Sink struct {
	mu      sync.Mutex
	records map[string]llmtap.Record
}

// New returns an empty sink.
func New() *Sink { return &Sink{records: map[string]llmtap.Record{}} }

// ServeHTTP takes one batch: 202, or 400 naming what it could not read.
func (k *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != llmtap.RecordsPath || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "want a gzip POST of "+llmtap.RecordsPath, http.StatusBadRequest)
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var rec llmtap.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k.mu.Lock()
		k.records[rec.RequestID] = rec
		k.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// Len is how many request ids have a record.
func (k *Sink) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.records)
}

// Record waits up to 10 s for the record of a request id.
func (k *Sink) Record(t testing.TB, id string) llmtap.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		k.mu.Lock()
		rec, ok := k.records[id]
		k.mu.Unlock()
		if ok {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of request %q reached the sink", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
