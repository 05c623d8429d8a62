package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/limits"
	"github.com/llmtap/llmtap/collector/metrics"
	"github.com/llmtap/llmtap/collector/redis"
	llmtap "github.com/llmtap/llmtap/plugin"
)

type fakeQueue struct {
	mu    sync.Mutex
	facts []*collector.Fact
	room  int // facts it takes before ErrQueueFull; <0: unlimited
	// mayWait records, for each Enqueue, whether its context let it wait.
	mayWait []bool
}

func (q *fakeQueue) Enqueue(ctx context.Context, facts ...*collector.Fact) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mayWait = append(q.mayWait, ctx.Err() == nil)
	if q.room >= 0 && len(q.facts)+len(facts) > q.room {
		return collector.ErrQueueFull
	}
	q.facts = append(q.facts, facts...)
	return nil
}

type fakeStore map[string]*collector.Fact

func (s fakeStore) Get(_ context.Context, id string) (*collector.Fact, error) {
	if f, ok := s[id]; ok {
		return f, nil
	}
	return nil, collector.ErrNotFound
}

func deriveStub(r *llmtap.Record) *collector.Fact {
	return &collector.Fact{RequestID: r.RequestID, Route: r.Route, Status: r.Status, Start: time.Unix(0, r.StartUnixNs)}
}

type fixture struct {
	srv   *Server
	queue *fakeQueue
	reg   *prometheus.Registry
	ready error
	redis *miniredis.Miniredis
}

// limitsPolicy is the fixture's default limit policy.
var limitsPolicy = &limits.Policy{
	Requests: &limits.RequestLimit{Limit: 3, Period: limits.Period(time.Hour)},
	Tokens:   &limits.TokenLimit{Limit: 1000, Period: limits.Period(time.Hour)},
}

func newFixture(t *testing.T, room int) *fixture {
	t.Helper()
	f := &fixture{queue: &fakeQueue{room: room}, reg: prometheus.NewRegistry(), redis: miniredis.RunT(t)}
	rdb := redis.NewClient(redis.Options{Addr: f.redis.Addr(), Timeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	lim := limits.New(limits.Options{
		Store: redis.NewLimiter(rdb), Policies: redis.NewPolicies(rdb),
		Default:            limitsPolicy,
		Tenants:            map[string]*limits.Policy{"strict": {Requests: limitsPolicy.Requests, FailureMode: limits.FailClosed}},
		DefaultReservation: 100, ReservationTTL: time.Minute, PolicyCacheTTL: time.Hour,
		Observer: metrics.NewLimits(f.reg, 100), Logger: logger,
	})
	f.srv = New(Options{
		IngestToken:  "tok",
		ReadToken:    "rd",
		AdminToken:   "adm",
		Limits:       lim,
		Settle:       lim,
		MaxBodyBytes: 64 << 10,
		Queue:        f.queue,
		Store: fakeStore{
			"known": {RequestID: "known", Route: "openai", Status: 200, Start: time.Unix(1700000000, 123e6)},
			"priced": {RequestID: "priced", Route: "openai", Status: 200, Start: time.Unix(1700000000, 0),
				Cost: &collector.Cost{Input: 1500, Output: 2_000_000, Total: 2_001_500, PriceVersion: "2026-12-06"}},
		},
		Spend:    &fakeSpend{},
		Derive:   deriveStub,
		Observer: metrics.New(f.reg, 100),
		Ready:    func(context.Context) (Parts, error) { return Parts{"clickhouse": "up"}, f.ready },
		Gatherer: f.reg,
		Logger:   logger,
	})
	return f
}

func line(id string) string {
	b, _ := json.Marshal(llmtap.Record{V: llmtap.RecordVersion, RequestID: id, StartUnixNs: 1700000000e9, Route: "openai", Status: 200})
	return string(b)
}

func gz(s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = io.WriteString(zw, s)
	_ = zw.Close()
	return buf.Bytes()
}

func TestIngest(t *testing.T) {
	tests := []struct {
		desc       string
		room       int
		token      string
		encoding   string
		body       []byte
		wantStatus int
		wantQueued int
		wantInBody string
	}{
		{desc: "no token", body: []byte(line("a")), wantStatus: 401, wantInBody: "bearer token"},
		{desc: "wrong token", token: "nope", body: []byte(line("a")), wantStatus: 401},
		{desc: "plain ndjson", token: "tok", body: []byte(line("a") + "\n" + line("b") + "\n"), wantStatus: 202, wantQueued: 2, wantInBody: `"accepted":2`},
		{desc: "gzip ndjson", token: "tok", encoding: "gzip", body: gz(line("a") + "\n\n" + line("b")), wantStatus: 202, wantQueued: 2},
		{
			desc: "bad lines refused, good ones kept and acknowledged", token: "tok",
			body:       []byte(line("a") + "\n{not json\n" + strings.Replace(line("c"), `"v":1`, `"v":9`, 1) + "\n" + line("d") + "\n"),
			wantStatus: 202, wantQueued: 2, wantInBody: `{"accepted":2,"rejected":[{"line":2,"error":"not a record: invalid character 'n' looking for beginning of object key string"},{"line":3,"error":"record version 9: this collector reads version 1"}]}`,
		},
		{desc: "every line bad: 400", token: "tok", body: []byte("{not json\n" + strings.Replace(line("c"), `"v":1`, `"v":9`, 1)), wantStatus: 400, wantInBody: `"accepted":0`},
		{desc: "one bad id among good lines", token: "tok", body: []byte(line("a") + "\n" + line("a\tb") + "\n" + line("c")), wantStatus: 202, wantQueued: 2, wantInBody: `{"accepted":2,"rejected":[{"line":2,"error":"request_id \"a\\tb\": want`},
		{desc: "missing request id", token: "tok", body: []byte(strings.Replace(line("x"), `"request_id":"x"`, `"request_id":""`, 1)), wantStatus: 400, wantInBody: `request_id \"\": want 1 to 128 bytes of letters, digits and - _ . : @ + =`},
		{desc: "body too large", token: "tok", body: bytes.Repeat([]byte("x"), 70<<10), wantStatus: 413, wantInBody: "body over 65536 bytes"},
		{desc: "gzip bomb", token: "tok", encoding: "gzip", body: gz(strings.Repeat(" ", 1<<20)), wantStatus: 413},
		{desc: "bad gzip", token: "tok", encoding: "gzip", body: []byte("not gzip"), wantStatus: 400, wantInBody: "content is not gzip"},
		{desc: "unknown encoding", token: "tok", encoding: "br", body: []byte(line("a")), wantStatus: 415, wantInBody: `content encoding \"br\"`},
		{desc: "queue full: none of the batch taken", token: "tok", room: 1, body: []byte(line("a") + "\n" + line("b")), wantStatus: 503, wantQueued: 0, wantInBody: `{"accepted":0,"error":"write queue full; retry later"}`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			room := tt.room
			if room == 0 {
				room = -1
			}
			f := newFixture(t, room)
			req := httptest.NewRequest(http.MethodPost, "/v1/records", bytes.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			rec := httptest.NewRecorder()
			f.srv.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tt.wantInBody) {
				t.Errorf("body %s, want it to contain %s", rec.Body, tt.wantInBody)
			}
			if len(f.queue.facts) != tt.wantQueued {
				t.Errorf("%d facts queued, want %d", len(f.queue.facts), tt.wantQueued)
			}
			if tt.wantStatus == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// TestIngestRetryCountsOnce: a batch the queue could not take and sent
// again, or sent twice because its answer was lost, is queued and counted
// once.
func TestIngestRetryCountsOnce(t *testing.T) {
	f := newFixture(t, 2)
	batch := line("a") + "\n" + line("b") + "\n" + line("c") + "\n"
	post := func() (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/records", strings.NewReader(batch))
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := post(); code != 503 || !strings.Contains(body, `"accepted":0`) {
		t.Fatalf("first: %d %s, want 503, nothing taken", code, body)
	}
	f.queue.mu.Lock()
	f.queue.room = -1 // the writer caught up
	f.queue.mu.Unlock()
	for i, want := range []string{`{"accepted":3}`, `{"accepted":0,"duplicates":3}`} {
		if code, body := post(); code != 202 || !strings.Contains(body, want) {
			t.Errorf("retry %d: %d %s, want 202 %s", i+1, code, body, want)
		}
	}
	var ids []string
	for _, fact := range f.queue.facts {
		ids = append(ids, fact.RequestID)
	}
	if strings.Join(ids, " ") != "a b c" {
		t.Errorf("queued %v, want a b c once each", ids)
	}
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP llmtap_records_received_total Records accepted at ingest.
# TYPE llmtap_records_received_total counter
llmtap_records_received_total 3
`), "llmtap_records_received_total"); err != nil {
		t.Error(err)
	}
}

func TestIngestCountsPluginReports(t *testing.T) {
	f := newFixture(t, -1)
	req := httptest.NewRequest(http.MethodPost, "/v1/records", strings.NewReader(line("a")))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set(llmtap.HeaderDropped, "12")
	req.Header.Set(llmtap.HeaderSender, "proxy-1")
	req.Header.Set(llmtap.HeaderActiveStreams, "5")
	f.srv.ServeHTTP(httptest.NewRecorder(), req)
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP llmtap_active_streams Streaming responses open now, summed over the plugins that reported in the last 15 s.
# TYPE llmtap_active_streams gauge
llmtap_active_streams 5
`), "llmtap_active_streams"); err != nil {
		t.Error(err)
	}
	got, err := testutil.GatherAndCount(f.reg, "llmtap_plugin_dropped_records_total")
	if err != nil || got != 1 {
		t.Fatalf("series %d, %v", got, err)
	}
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP llmtap_plugin_dropped_records_total Records the plugins report they dropped (queue full or undeliverable).
# TYPE llmtap_plugin_dropped_records_total counter
llmtap_plugin_dropped_records_total 12
`), "llmtap_plugin_dropped_records_total"); err != nil {
		t.Error(err)
	}
}

func TestLookupHealthReadyMetrics(t *testing.T) {
	f := newFixture(t, -1)
	tests := []struct {
		desc       string
		path       string
		token      string
		ready      error
		wantStatus int
		wantInBody string
	}{
		{desc: "known request", path: "/v1/requests/known", token: "rd", wantStatus: 200, wantInBody: `"start":"2023-11-14T22:13:20.123Z"`},
		{desc: "known request, admin token", path: "/v1/requests/known", token: "adm", wantStatus: 200, wantInBody: `"request_id":"known"`},
		{desc: "an unpriced request's cost is null", path: "/v1/requests/known", token: "rd", wantStatus: 200, wantInBody: `"cost":null`},
		{desc: "a priced request's cost", path: "/v1/requests/priced", token: "rd", wantStatus: 200,
			wantInBody: `"cost":{"usd":0.0020015,"nanos":2001500,"input_nanos":1500,"cache_read_nanos":0,"cache_write_nanos":0,"output_nanos":2000000,"reasoning_nanos":0,"price_version":"2026-12-06"}`},
		{desc: "known request, no token", path: "/v1/requests/known", wantStatus: 401, wantInBody: "missing or wrong bearer token"},
		{desc: "known request, ingest token", path: "/v1/requests/known", token: "tok", wantStatus: 401, wantInBody: "missing or wrong bearer token"},
		{desc: "unknown request", path: "/v1/requests/nope", token: "rd", wantStatus: 404, wantInBody: `request \"nope\" not found`},
		{desc: "health", path: "/healthz", wantStatus: 200},
		{desc: "ready", path: "/readyz", wantStatus: 200},
		{desc: "not ready", path: "/readyz", ready: errors.New("clickhouse down and spool full"), wantStatus: 503, wantInBody: "spool full"},
		{desc: "metrics", path: "/metrics", wantStatus: 200, wantInBody: "llmtap_records_received_total"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			f.ready = tt.ready
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			f.srv.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantInBody) {
				t.Errorf("%s: %d %s, want %d containing %s", tt.path, rec.Code, rec.Body, tt.wantStatus, tt.wantInBody)
			}
		})
	}
}

func TestLimitedReader(t *testing.T) {
	for _, tt := range []struct {
		n, limit int
		wantErr  bool
	}{{10, 10, false}, {11, 10, true}, {0, 0, false}, {1, 0, true}} {
		_, err := io.ReadAll(&limitedReader{r: strings.NewReader(strings.Repeat("x", tt.n)), left: int64(tt.limit)})
		if (err != nil) != tt.wantErr {
			t.Errorf("%d bytes, limit %d: err %v", tt.n, tt.limit, err)
		}
	}
}

// With no token at all (a collector on a trusted network) every scope is
// open; with a read token alone, reads need it.
func TestReadScopeWithoutTokens(t *testing.T) {
	for _, tt := range []struct {
		desc   string
		opt    Options
		token  string
		status int
	}{
		{desc: "no tokens: open", status: 200},
		{desc: "an ingest token only: no reads", opt: Options{IngestToken: "tok"}, token: "tok", status: 401},
		{desc: "a read token: read with it", opt: Options{IngestToken: "tok", ReadToken: "rd"}, token: "rd", status: 200},
		{desc: "a read token: not without it", opt: Options{ReadToken: "rd"}, status: 401},
	} {
		f := newFixture(t, -1)
		o := f.srv.opt
		o.IngestToken, o.ReadToken, o.AdminToken = tt.opt.IngestToken, tt.opt.ReadToken, ""
		srv := New(o)
		req := httptest.NewRequest(http.MethodGet, "/v1/requests/known", nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.desc, w.Code, w.Body, tt.status)
		}
	}
}

// Copies of one batch arriving at once are taken once between them.
func TestIngestConcurrentCopiesCountOnce(t *testing.T) {
	f := newFixture(t, -1)
	batch := line("a") + "\n" + line("b") + "\n" + line("c") + "\n"
	const copies = 8
	var wg sync.WaitGroup
	results := make([]IngestResult, copies)
	for i := 0; i < copies; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodPost, "/v1/records", strings.NewReader(batch))
			req.Header.Set("Authorization", "Bearer tok")
			rec := httptest.NewRecorder()
			f.srv.ServeHTTP(rec, req)
			_ = json.Unmarshal(rec.Body.Bytes(), &results[i])
		}(i)
	}
	wg.Wait()
	accepted, duplicates := 0, 0
	for _, r := range results {
		accepted += r.Accepted
		duplicates += r.Duplicates
	}
	if accepted != 3 || duplicates != 3*(copies-1) || len(f.queue.facts) != 3 {
		t.Errorf("accepted %d, duplicates %d, queued %d; want 3, %d, 3", accepted, duplicates, len(f.queue.facts), 3*(copies-1))
	}
}

// TestIngestBoundedInRequests: with MaxIngest requests already being read,
// one more is answered 503 with Retry-After at once, and taken again once
// one of them is done.
func TestIngestBoundedInRequests(t *testing.T) {
	f := newFixture(t, 10)
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, llmtap.RecordsPath, strings.NewReader(line("bounded-id")))
		req.Header.Set("Authorization", "Bearer tok")
		return serve(t, f.srv, req)
	}
	for i := 0; i < cap(f.srv.ingesting); i++ {
		f.srv.ingesting <- struct{}{} // requests being read
	}
	w := post()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "16 ingest requests already being read") {
		t.Fatalf("one past the bound: %d, Retry-After %q, %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	<-f.srv.ingesting
	if w := post(); w.Code != http.StatusAccepted {
		t.Fatalf("within the bound again: %d %s", w.Code, w.Body)
	}
}

// TestIngestWaitsForRoomOnlyWithSlotsToSpare: a batch may wait for room
// in the queue (its context is live) while at most half the ingest slots
// are taken, and is told not to (spill at once) past that, so that waiting
// batches never turn other senders away.
func TestIngestWaitsForRoomOnlyWithSlotsToSpare(t *testing.T) {
	f := newFixture(t, -1)
	post := func(id string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, llmtap.RecordsPath, strings.NewReader(line(id)))
		req.Header.Set("Authorization", "Bearer tok")
		if w := serve(t, f.srv, req); w.Code != http.StatusAccepted {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	half := cap(f.srv.ingesting) / 2
	for i := 0; i < half-1; i++ {
		f.srv.ingesting <- struct{}{} // other requests being read
	}
	post("with-slots-to-spare") // this one makes half
	f.srv.ingesting <- struct{}{}
	post("past-half")
	if want := []bool{true, false}; !slices.Equal(f.queue.mayWait, want) {
		t.Errorf("may wait %v, want %v", f.queue.mayWait, want)
	}
}

// TestDropReportCountedOnlyWhenAnswered: a batch answered 503 (the queue
// is full) is sent again with its report of drops, so the report counts
// only with the answer the plugin takes as final.
func TestDropReportCountedOnlyWhenAnswered(t *testing.T) {
	f := newFixture(t, 0) // the queue takes nothing: 503
	post := func() int {
		req := httptest.NewRequest(http.MethodPost, "/v1/records", strings.NewReader(line("a")))
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set(llmtap.HeaderDropped, "7")
		return serve(t, f.srv, req).Code
	}
	want := func(n string) {
		t.Helper()
		if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP llmtap_plugin_dropped_records_total Records the plugins report they dropped (queue full or undeliverable).
# TYPE llmtap_plugin_dropped_records_total counter
llmtap_plugin_dropped_records_total `+n+"\n"), "llmtap_plugin_dropped_records_total"); err != nil {
			t.Error(err)
		}
	}
	if code := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("a full queue: %d, want 503", code)
	}
	want("0")
	f.queue.room = -1
	if code := post(); code != http.StatusAccepted {
		t.Fatalf("the retry: %d, want 202", code)
	}
	want("7")
}
