package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/derive"
	"github.com/llmtap/llmtap/collector/metrics"
)

// discardQueue takes every fact and keeps none.
type discardQueue struct{}

func (discardQueue) Enqueue(context.Context, ...*collector.Fact) error { return nil }

// BenchmarkIngest: what the collector spends per record before storage,
// through its HTTP handler as the plugins reach it: a gzip batch of 64
// realistic records (a 40-chunk SSE stream each, testdata) read, decoded,
// derived, counted in the metrics and queued. ns/op is per record.
func BenchmarkIngest(b *testing.B) {
	line, err := os.ReadFile("testdata/record-sse-40-chunks.ndjson")
	if err != nil {
		b.Fatal(err)
	}
	const batch = 64
	reg := prometheus.NewRegistry()
	srv := New(Options{
		MaxBodyBytes: 64 << 20,
		Queue:        discardQueue{},
		Derive:       derive.Fact,
		Observer:     metrics.New(reg, 1000),
		Limits:       noLimits{},
		Gatherer:     reg,
		Logger:       slog.New(slog.DiscardHandler),
	})
	// Each batch's ids are new: a repeated id would be taken for a retry.
	bodies := make([][]byte, 64)
	for i := range bodies {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for j := 0; j < batch; j++ {
			_, _ = zw.Write(bytes.Replace(line, []byte("bench-000000"), fmt.Appendf(nil, "bench-%06d", i*batch+j), 1))
		}
		_ = zw.Close()
		bodies[i] = buf.Bytes()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		if n/batch%len(bodies) == 0 && n > 0 {
			srv.records.Recent = collector.NewRecent(DefaultRecent)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/records", bytes.NewReader(bodies[n/batch%len(bodies)]))
		req.Header.Set("Content-Encoding", "gzip")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// noLimits settles nothing; ingest calls nothing else of it.
type noLimits struct{ Limiter }

func (noLimits) Settle(context.Context, []*collector.Fact) {}
