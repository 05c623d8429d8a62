// Package http is the collector's HTTP API: record ingest from the plugins,
// request lookup, limit checks and policies, health, readiness and metrics. Errors are answered as
// JSON {"error": ...} with the status decided in one place (writeError).
package http

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llmtap/llmtap/collector"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Deriver turns a wire record into a fact.
type Deriver func(*llmtap.Record) *collector.Fact

// Observer is told of every fact and ingest event (the metrics).
type Observer interface {
	Observe(f *collector.Fact)
	Received(n int)
	Rejected(reason string)
	PluginDropped(n int64)
	ActiveStreams(sender string, n int64)
}

// Checker reports whether the collector can accept records now.
type Checker func(ctx context.Context) error

// Options configure a Server.
type Options struct {
	IngestToken  string // bearer token required on ingest and limit checks; empty: none
	AdminToken   string // bearer token of the admin endpoints; empty: they are off
	MaxBodyBytes int64  // request body limit, after gzip decoding too
	Queue        collector.Queue
	Store        collector.Store
	Derive       Deriver
	Observer     Observer
	Ready        Checker
	Limits       Limiter
	Gatherer     prometheus.Gatherer
	Logger       *slog.Logger
}

// Server serves the API.
type Server struct {
	opt    Options
	router *mux.Router
}

// New builds the router.
func New(opt Options) *Server {
	s := &Server{opt: opt, router: mux.NewRouter()}
	s.router.HandleFunc(llmtap.RecordsPath, s.ingest).Methods(http.MethodPost)
	s.router.HandleFunc("/v1/requests/{id}", s.request).Methods(http.MethodGet)
	s.limitRoutes()
	s.router.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.router.HandleFunc("/readyz", s.ready).Methods(http.MethodGet)
	s.router.Handle("/metrics", promhttp.HandlerFor(opt.Gatherer, promhttp.HandlerOpts{}))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Rejection names a refused record line.
type Rejection struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// IngestResult is the answer to a records POST.
type IngestResult struct {
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// maxLine bounds one NDJSON line; a record carries at most the plugin's
// capture limits, base64-encoded.
const maxLine = 8 << 20

// ingest takes a batch of NDJSON records. Valid lines are queued even when
// others are refused: the answer is 400 listing the refused lines by number
// and reason, 202 when all were taken, 503 when the write queue is full
// (the lines before the full one are queued; a retried batch is
// deduplicated by request id in storage).
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		unauthorized(w)
		return
	}
	if n, err := strconv.ParseInt(r.Header.Get(llmtap.HeaderDropped), 10, 64); err == nil && n > 0 {
		s.opt.Observer.PluginDropped(n)
	}
	if sender := r.Header.Get(llmtap.HeaderSender); sender != "" && len(sender) <= 64 {
		if n, err := strconv.ParseInt(r.Header.Get(llmtap.HeaderActiveStreams), 10, 64); err == nil && n >= 0 {
			s.opt.Observer.ActiveStreams(sender, n)
		}
	}
	body := http.MaxBytesReader(w, r.Body, s.opt.MaxBodyBytes)
	var src io.Reader = body
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			s.refuse(w, err, "content is not gzip")
			return
		}
		defer zr.Close()
		// The limit holds for the decoded stream too: a small bomb stays small.
		src = &limitedReader{r: zr, left: s.opt.MaxBodyBytes}
	case "", "identity":
	default:
		writeJSON(w, http.StatusUnsupportedMediaType, IngestResult{Error: fmt.Sprintf("content encoding %q: want gzip or none", enc)})
		return
	}

	var res IngestResult
	// Facts with token reservations, settled once the batch is read.
	var reserved []*collector.Fact
	defer func() { s.opt.Limits.Settle(r.Context(), reserved) }()
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		rec, reason, err := decode(b)
		if err != nil {
			res.Rejected = append(res.Rejected, Rejection{Line: line, Error: err.Error()})
			s.opt.Observer.Rejected(reason)
			continue
		}
		f := s.opt.Derive(rec)
		if err := s.opt.Queue.Enqueue(f); err != nil {
			s.opt.Observer.Received(res.Accepted)
			res.Error = fmt.Sprintf("line %d: %v; retry later", line, err)
			status := http.StatusInternalServerError
			if errors.Is(err, collector.ErrQueueFull) {
				status = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", "1")
			}
			writeJSON(w, status, res)
			return
		}
		s.opt.Observer.Observe(f)
		res.Accepted++
		if f.LimitReserved > 0 {
			reserved = append(reserved, f)
		}
	}
	s.opt.Observer.Received(res.Accepted)
	if err := sc.Err(); err != nil {
		s.refuse(w, err, fmt.Sprintf("after line %d", line))
		return
	}
	status := http.StatusAccepted
	if len(res.Rejected) > 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, res)
}

// refuse answers a body that could not be read to the end.
func (s *Server) refuse(w http.ResponseWriter, err error, where string) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge), errors.Is(err, errDecodedTooLarge):
		writeJSON(w, http.StatusRequestEntityTooLarge, IngestResult{Error: fmt.Sprintf("body over %d bytes %s", s.opt.MaxBodyBytes, where)})
	case errors.Is(err, bufio.ErrTooLong):
		writeJSON(w, http.StatusRequestEntityTooLarge, IngestResult{Error: fmt.Sprintf("a line over %d bytes %s", maxLine, where)})
	default:
		writeJSON(w, http.StatusBadRequest, IngestResult{Error: fmt.Sprintf("%s: %v", where, err)})
	}
}

// decode checks one line; reason is a short label for the metric.
func decode(line []byte) (*llmtap.Record, string, error) {
	var rec llmtap.Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return nil, "bad_json", fmt.Errorf("not a record: %w", err)
	}
	switch {
	case rec.V != llmtap.RecordVersion:
		return nil, "bad_version", fmt.Errorf("record version %d: this collector reads version %d", rec.V, llmtap.RecordVersion)
	case rec.RequestID == "" || len(rec.RequestID) > 128:
		return nil, "bad_request_id", fmt.Errorf("request_id %q: want 1 to 128 characters", truncate(rec.RequestID, 32))
	case rec.StartUnixNs <= 0:
		return nil, "bad_start", fmt.Errorf("start_unix_ns %d: want a positive time", rec.StartUnixNs)
	case len(rec.WriteEnds) != len(rec.WriteNs):
		return nil, "bad_writes", fmt.Errorf("write_ends has %d entries, write_ns %d: want the same", len(rec.WriteEnds), len(rec.WriteNs))
	}
	return &rec, "", nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// authorized checks the ingest token, which the plugins send.
func (s *Server) authorized(r *http.Request) bool {
	return s.opt.IngestToken == "" || bearer(r, s.opt.IngestToken)
}

func (s *Server) request(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if id == "" || len(id) > 128 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "request id: want 1 to 128 characters"})
		return
	}
	f, err := s.opt.Store.Get(r.Context(), id)
	switch {
	case errors.Is(err, collector.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("request %q not found", id)})
	case err != nil:
		s.opt.Logger.Error("request lookup", "request_id", id, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "storage unavailable"})
	default:
		writeJSON(w, http.StatusOK, factJSON(f))
	}
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opt.Ready(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var errDecodedTooLarge = errors.New("decoded body too large")

// limitedReader fails, rather than stopping silently, past its limit.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	// One byte past the limit tells a stream that ends there from one that
	// goes on.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, errDecodedTooLarge
	}
	return n, err
}
