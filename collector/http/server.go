// Package http is the collector's HTTP API: record ingest from the plugins,
// request lookup, spend reports, limit checks and policies, health, readiness and metrics. Errors are answered as
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

	gojson "github.com/goccy/go-json"
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

// Settler settles the limit reservations of facts.
type Settler interface {
	Settle(ctx context.Context, facts []*collector.Fact)
}

// Checker reports whether the collector can accept records now, and the
// state of each part it depends on ("clickhouse": "up", "spool": ...).
type Checker func(ctx context.Context) (Parts, error)

// Parts are the states of the parts behind readiness, by name.
type Parts map[string]string

// Options configure a Server.
type Options struct {
	IngestToken  string // bearer token of ingest and limit checks; empty: none required (a trusted network)
	ReadToken    string // bearer token of request lookups and limit status; the admin token reads too
	AdminToken   string // bearer token of the admin endpoints; empty: they are off
	MaxBodyBytes int64  // request body limit, after gzip decoding too
	// MaxIngest bounds the ingest requests read at once (0: 16); past it
	// ingest answers 503 with Retry-After at once.
	MaxIngest int
	Queue     collector.Queue
	Store     collector.Store
	Spend     collector.SpendReader
	Derive    Deriver
	Observer  Observer
	Ready     Checker
	Limits    Limiter
	// Settle settles the reservations of the facts ingest takes
	// (limits.Settler, off the request's path; limits.Service inline).
	Settle   Settler
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Export is given each fact taken, after storage queued it (the
	// OpenTelemetry export); nil: none.
	Export func(*collector.Fact)
	// Recent remembers the records accepted lately, so that a batch sent
	// again is not counted twice; nil: a new one of DefaultRecent.
	Recent *collector.Recent
}

// DefaultRecent is the size of each generation of Options.Recent: more
// records than a collector takes in the seconds a plugin's retries span.
const DefaultRecent = 1 << 16

// Server serves the API.
type Server struct {
	opt    Options
	router *mux.Router
	// ingesting holds a token per ingest request being read (MaxIngest).
	ingesting chan struct{}
	// records is the records use case the ingest handler adapts.
	records *collector.Ingest
}

// New builds the router. Paths are matched as sent (no cleaning of ".."
// into a redirect elsewhere), and unknown paths and wrong methods get a
// JSON error like every other refusal.
func New(opt Options) *Server {
	if opt.Recent == nil {
		opt.Recent = collector.NewRecent(DefaultRecent)
	}
	if opt.MaxIngest <= 0 {
		opt.MaxIngest = 16
	}
	s := &Server{opt: opt, router: mux.NewRouter().SkipClean(true), ingesting: make(chan struct{}, opt.MaxIngest)}
	s.records = &collector.Ingest{Derive: opt.Derive, Recent: opt.Recent, Queue: opt.Queue, Observer: opt.Observer, Export: opt.Export}
	if opt.Settle != nil {
		s.records.Settle = opt.Settle.Settle
	}
	s.router.HandleFunc(llmtap.RecordsPath, s.ingest).Methods(http.MethodPost)
	s.router.HandleFunc("/v1/requests/{id}", s.request).Methods(http.MethodGet)
	s.router.HandleFunc("/v1/spend", s.spend).Methods(http.MethodGet)
	s.limitRoutes()
	s.router.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}).Methods(http.MethodGet, http.MethodHead)
	s.router.HandleFunc("/readyz", s.ready).Methods(http.MethodGet, http.MethodHead)
	s.router.Handle("/metrics", promhttp.HandlerFor(opt.Gatherer, promhttp.HandlerOpts{})).Methods(http.MethodGet, http.MethodHead)
	s.router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no endpoint %s", truncate(r.URL.Path, 64))})
	})
	s.router.MethodNotAllowedHandler = http.HandlerFunc(s.methodNotAllowed)
	return s
}

// methodNotAllowed answers 405 with the methods the path does take.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if s.router.Match(probe, &match) && match.MatchErr == nil {
			allowed = append(allowed, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: fmt.Sprintf("method %s not allowed on %s; want %s",
		r.Method, truncate(r.URL.Path, 64), strings.Join(allowed, " or "))})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Rejection names a refused record line.
type Rejection struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// IngestResult is the answer to a records POST.
type IngestResult struct {
	// Accepted counts the lines queued for storage by this request.
	Accepted int `json:"accepted"`
	// Duplicates counts the lines already accepted before (a batch sent
	// again): acknowledged, not counted or stored twice.
	Duplicates int `json:"duplicates,omitempty"`
	// Rejected names the lines refused for good, by number and reason:
	// sending them again cannot help.
	Rejected []Rejection `json:"rejected,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// maxReported bounds the counts a plugin reports in its headers: more
// than any one plugin can hold (its queue is bounded, and it cannot keep
// a billion streams open).
const maxReported = 1 << 30

// maxLine bounds one NDJSON line; a record carries at most the plugin's
// capture limits, base64-encoded.
const maxLine = 8 << 20

// ingest takes a batch of NDJSON records, line by line. The answer is 202
// when the body was read to its end and at least one line was taken (or
// the batch was empty): it counts the lines accepted and those already
// accepted before, and names each refused line with its reason. A line is
// refused for good (sending it again cannot help), so the sender must not
// resend the batch. Only when every line was refused is the answer 400.
// 503 means neither the write queue nor its spool could take the batch:
// none of its lines was taken, and the sender sends it again (lines taken
// by an earlier try are recognized by Options.Recent and neither counted
// nor stored twice).
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, errMissingToken)
		return
	}
	select {
	case s.ingesting <- struct{}{}:
		defer func() { <-s.ingesting }()
	default:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, IngestResult{Error: fmt.Sprintf("%d ingest requests already being read; retry later", s.opt.MaxIngest)})
		return
	}
	// Both reports are bounded, so that a broken or hostile sender cannot
	// throw the counters out (or overflow the sum of active streams). The
	// drops are counted only when the batch is answered as the plugin
	// counts its report delivered (answered); otherwise it sends the
	// report again with its retry.
	if n, err := strconv.ParseInt(r.Header.Get(llmtap.HeaderDropped), 10, 64); err == nil && n > 0 && n <= maxReported {
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		defer func() {
			if answered(sw.status) {
				s.opt.Observer.PluginDropped(n)
			}
		}()
	}
	if sender := r.Header.Get(llmtap.HeaderSender); sender != "" && len(sender) <= 64 {
		if n, err := strconv.ParseInt(r.Header.Get(llmtap.HeaderActiveStreams), 10, 64); err == nil && n >= 0 && n <= maxReported {
			s.opt.Observer.ActiveStreams(sender, n)
		}
	}
	body := http.MaxBytesReader(w, r.Body, s.opt.MaxBodyBytes)
	var src io.Reader = body
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			s.refuse(w, IngestResult{}, err, "content is not gzip")
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
	var batch collector.IngestBatch
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
		s.records.Add(&batch, rec)
	}
	// The lines read before a broken body are taken, as the answer says.
	res.Duplicates = batch.Duplicates
	var err error
	if res.Accepted, err = s.records.Commit(s.commitContext(r.Context()), &batch); err != nil {
		status := statusOf(err)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		res.Error = fmt.Sprintf("%v; retry later", err)
		writeJSON(w, status, res)
		return
	}
	if err := sc.Err(); err != nil {
		s.refuse(w, res, err, fmt.Sprintf("after line %d", line))
		return
	}
	status := http.StatusAccepted
	if len(res.Rejected) > 0 && res.Accepted == 0 && res.Duplicates == 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, res)
}

// commitContext is the context a batch waits for room in the queue
// with: with most ingest slots taken, none, so that the batch goes to the
// spool at once rather than hold its slot and turn other senders away.
func (s *Server) commitContext(ctx context.Context) context.Context {
	if len(s.ingesting) > cap(s.ingesting)/2 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		cancel()
	}
	return ctx
}

// answered says whether the plugin takes a batch answered with status as
// read, its report of drops with it: 2xx, or a 4xx other than 408 and
// 429, after which it does not send the batch again (plugin/sender.go).
func answered(status int) bool {
	return status/100 == 2 || (status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests)
}

// statusWriter notes the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// refuse answers a body that could not be read to the end. res holds what
// was read before: its lines are queued already, and the answer says so.
func (s *Server) refuse(w http.ResponseWriter, res IngestResult, err error, where string) {
	var tooLarge *http.MaxBytesError
	status := http.StatusBadRequest
	switch {
	case errors.As(err, &tooLarge), errors.Is(err, errDecodedTooLarge):
		status, res.Error = http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes %s", s.opt.MaxBodyBytes, where)
	case errors.Is(err, bufio.ErrTooLong):
		status, res.Error = http.StatusRequestEntityTooLarge, fmt.Sprintf("a line over %d bytes %s", maxLine, where)
	case errors.Is(err, io.ErrUnexpectedEOF):
		res.Error = fmt.Sprintf("%s: the body ends too early (a cut gzip stream?): %v", where, err)
	default:
		res.Error = fmt.Sprintf("%s: %v", where, err)
	}
	writeJSON(w, status, res)
}

// decode checks one line; reason is a short label for the metric. The
// wire record is decoded with goccy/go-json, several times faster than
// encoding/json on records that carry bodies; FuzzDecodeAgreesWithStd
// holds it to encoding/json's verdicts and values.
func decode(line []byte) (*llmtap.Record, string, error) {
	rec := new(llmtap.Record)
	if err := unmarshalRecord(line, rec); err != nil {
		return nil, "bad_json", fmt.Errorf("not a record: %w", err)
	}
	switch {
	case rec.V != llmtap.RecordVersion:
		return nil, "bad_version", fmt.Errorf("record version %d: this collector reads version %d", rec.V, llmtap.RecordVersion)
	case !llmtap.ValidID(rec.RequestID):
		return nil, "bad_request_id", fmt.Errorf("request_id %q: want %s", truncate(rec.RequestID, 32), llmtap.IDRule)
	case rec.Tenant != "" && !llmtap.ValidID(rec.Tenant):
		return nil, "bad_tenant", fmt.Errorf("tenant %q: want %s", truncate(rec.Tenant, 32), llmtap.IDRule)
	case rec.LimitReservation != "" && !llmtap.ValidID(rec.LimitReservation):
		return nil, "bad_limit_reservation", fmt.Errorf("limit_reservation %q: want %s", truncate(rec.LimitReservation, 32), llmtap.IDRule)
	case len(rec.Attempts) > llmtap.MaxUpstreams:
		return nil, "bad_attempts", fmt.Errorf("attempts: %d of them, want at most %d", len(rec.Attempts), llmtap.MaxUpstreams)
	case rec.Upstream != "" && !llmtap.ValidID(rec.Upstream):
		return nil, "bad_attempts", fmt.Errorf("upstream %q: want %s", truncate(rec.Upstream, 32), llmtap.IDRule)
	case rec.StartUnixNs <= 0:
		return nil, "bad_start", fmt.Errorf("start_unix_ns %d: want a positive time", rec.StartUnixNs)
	case len(rec.WriteEnds) != len(rec.WriteNs):
		return nil, "bad_writes", fmt.Errorf("write_ends has %d entries, write_ns %d: want the same", len(rec.WriteEnds), len(rec.WriteNs))
	}
	for i, a := range rec.Attempts {
		if !llmtap.ValidID(a.Upstream) || (a.Error != "" && !llmtap.ValidID(a.Error)) || a.Status < 0 || a.Status > 999 {
			return nil, "bad_attempts", fmt.Errorf("attempts[%d]: upstream %q, status %d, error %q: want names of %s and a status from 0 to 999",
				i, truncate(a.Upstream, 32), a.Status, truncate(a.Error, 32), llmtap.IDRule)
		}
	}
	return rec, "", nil
}

// unmarshalRecord decodes a wire record. A panic in the decoder, which
// runs on what a sender wrote, is an error for that line, not a crash.
func unmarshalRecord(line []byte, rec *llmtap.Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder failed: %v", p)
		}
	}()
	return gojson.Unmarshal(line, rec)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// authorized checks the ingest token, which the plugins send: it writes
// records and asks limit checks, and reads nothing.
func (s *Server) authorized(r *http.Request) bool {
	return s.opt.IngestToken == "" || bearer(r, s.opt.IngestToken)
}

// reader checks the read or the admin token. With no token at all (a
// collector on a trusted network), everyone reads.
func (s *Server) reader(r *http.Request) bool {
	if s.opt.ReadToken != "" && bearer(r, s.opt.ReadToken) {
		return true
	}
	if s.admin(r) {
		return true
	}
	return s.opt.IngestToken == "" && s.opt.ReadToken == "" && s.opt.AdminToken == ""
}

// request returns a stored request, bodies included: it takes the read or
// the admin token.
func (s *Server) request(w http.ResponseWriter, r *http.Request) {
	if !s.reader(r) {
		writeError(w, errMissingToken)
		return
	}
	id := mux.Vars(r)["id"]
	if !llmtap.ValidID(id) {
		writeError(w, fail(errInvalid, "request id %q: want %s", truncate(id, 32), llmtap.IDRule))
		return
	}
	f, err := s.opt.Store.Get(r.Context(), id)
	switch {
	case errors.Is(err, collector.ErrNotFound):
		writeError(w, fail(collector.ErrNotFound, "request %q not found", id))
	case err != nil:
		s.opt.Logger.Error("request lookup", "request_id", id, "err", err)
		writeError(w, unavailable("storage unavailable"))
	default:
		writeJSON(w, http.StatusOK, factJSON(f))
	}
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	parts, err := s.opt.Ready(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, readiness{Status: "not ready", Error: err.Error(), Parts: parts})
		return
	}
	writeJSON(w, http.StatusOK, readiness{Status: "ready", Parts: parts})
}

// readiness is the answer of /readyz.
type readiness struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	Parts  Parts  `json:"parts,omitempty"`
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
