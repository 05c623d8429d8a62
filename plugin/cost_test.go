package llmtap

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The cost benchmarks run compiled with `go test -bench` and interpreted
// with `scripts/yaegi-test.sh -bench . -benchmem`, where they show what each
// piece of the hot path costs as Traefik runs it.

func benchObservation(b *testing.B) (*captureWriter, *settings) {
	c := CreateConfig()
	c.CollectorURL = "http://127.0.0.1:1"
	s, err := c.validate("bench")
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-bench")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bench/1")
	rw := httptest.NewRecorder()
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Content-Length", "27")
	cw := &captureWriter{rw: rw, h: rw.Header(), req: req, set: s, active: new(int64), start: time.Now(), rec: &Record{V: RecordVersion, RequestID: "id"}}
	cw.reqBody = []byte(`{"model":"m"}`)
	return cw, s
}

func BenchmarkRecord(b *testing.B) {
	cw, _ := benchObservation(b)
	cw.WriteHeader(http.StatusOK)
	_, _ = cw.Write([]byte(`{"usage":{"total_tokens":3}}`))
	keys := newTenantKeys()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cw.tenantDone = false // resolved by each record, as without limits
		fromRequest(cw, keys)
		record(cw)
	}
}

func BenchmarkWriteHeaderAndWrite(b *testing.B) {
	cw, _ := benchObservation(b)
	body := []byte(`{"usage":{"total_tokens":3}}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cw.rec.Status = 0
		cw.rec.WriteEnds = cw.rec.WriteEnds[:0]
		cw.rec.WriteNs = cw.rec.WriteNs[:0]
		cw.head = cw.head[:0]
		cw.WriteHeader(http.StatusOK)
		_, _ = cw.Write(body)
	}
}

func BenchmarkFinish(b *testing.B) {
	cw, s := benchObservation(b)
	sd := newSender(s, discardLogger())
	cw.returned = true
	cw.rec.Status = 200
	req, h := cw.req, cw.h
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cw.req, cw.h = req, h // finish lets them go
		finish(sd, cw)
		takeQueued(sd)
	}
}

// BenchmarkServeHTTP is the request path alone: ServeHTTP around a handler
// that writes a small JSON answer, its record handed to the sender's queue
// (emptied here, never sent). Compare with tools/yaegibench, which adds the
// sender's work and the noise of a whole process.
func BenchmarkServeHTTP(b *testing.B) {
	c := CreateConfig()
	c.CollectorURL = "http://127.0.0.1:1"
	s, err := c.validate("bench")
	if err != nil {
		b.Fatal(err)
	}
	sd := newSender(s, discardLogger())
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "28")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"usage":{"total_tokens":3}}`))
	})
	var h http.Handler = &Middleware{next: next, set: s, sender: sd, pending: sd.pending}
	req := httptest.NewRequest(http.MethodGet, "/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-bench")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(httptest.NewRecorder(), req)
		takeQueued(sd)
	}
}

// takeQueued takes one queued record as the sender's goroutine would,
// giving back its slot and its bytes, so that finish never drops.
func takeQueued(sd *sender) {
	batch := []*captureWriter{<-sd.queue}
	atomic.AddInt64(&sd.queuedBytes, -sd.taken(batch))
}
