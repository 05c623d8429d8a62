package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/llmtap/llmtap/collector"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Hostile and malformed input to every endpoint of the API: each request
// is answered with a 4xx and a JSON body that says what was wrong, never
// a 5xx, never a panic, and nothing it carries reaches the write queue.
// The fixture (server_test.go) has ingest token "tok", admin token "adm"
// and max_body_bytes 64 KiB.

type hostile struct {
	desc   string
	method string
	target string // as sent: escapes are the attacker's
	header map[string]string
	body   []byte
	status int
	want   string // in the body, which is a JSON error
}

func bearerOf(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func withHeader(h map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for hk, hv := range h {
		out[hk] = hv
	}
	return out
}

// gzipCorrupt is gzip of s with its CRC-32 trailer replaced.
func gzipCorrupt(s string) []byte {
	b := gz(s)
	copy(b[len(b)-8:], []byte{1, 2, 3, 4})
	return b
}

// authCases are the Authorization values a protected endpoint refuses.
var authCases = []struct{ desc, value string }{
	{"no Authorization", ""},
	{"scheme only", "Bearer"},
	{"empty token", "Bearer "},
	{"Basic", "Basic dG9rOmFkbQ=="},
	{"token and more", "Bearer tok extra"},
	{"token with a NUL", "Bearer tok\x00"},
	{"other scheme", "Token tok"},
	{"the token without a scheme", "tok"},
}

func hostileCases() []hostile {
	ingest, read, admin := bearerOf("tok"), bearerOf("rd"), bearerOf("adm")
	gzipped := withHeader(ingest, "Content-Encoding", "gzip")
	oneRecord := line("r1")
	var cases []hostile

	// Every protected endpoint, every bad Authorization.
	protected := []struct{ method, target, body string }{
		{http.MethodPost, "/v1/records", oneRecord},
		{http.MethodPost, "/v1/limits/check", `{"tenant":"a"}`},
		{http.MethodGet, "/v1/limits/a", ""},
		{http.MethodPut, "/v1/limits/a", `{"requests":{"limit":1,"period":"1m"}}`},
		{http.MethodDelete, "/v1/limits/a", ""},
		{http.MethodGet, "/v1/requests/known", ""},
		{http.MethodGet, "/v1/spend?from=2026-12-01", ""},
	}
	for _, p := range protected {
		for _, a := range authCases {
			h := map[string]string{}
			if a.value != "" {
				h["Authorization"] = a.value
			}
			cases = append(cases, hostile{desc: p.method + " " + p.target + ": " + a.desc, method: p.method, target: p.target,
				header: h, body: []byte(p.body), status: 401, want: "missing or wrong bearer token"})
		}
	}
	// The ingest token does not open the admin endpoints; the admin token
	// does not open ingest or the check.
	cases = append(cases,
		hostile{desc: "records with the admin token", method: "POST", target: "/v1/records", header: admin, body: []byte(oneRecord), status: 401, want: "bearer token"},
		hostile{desc: "check with the admin token", method: "POST", target: "/v1/limits/check", header: admin, body: []byte(`{}`), status: 401, want: "bearer token"},
		hostile{desc: "put with the ingest token", method: "PUT", target: "/v1/limits/a", header: ingest, body: []byte(`{}`), status: 401, want: "bearer token"},
		hostile{desc: "delete with the ingest token", method: "DELETE", target: "/v1/limits/a", header: ingest, status: 401, want: "bearer token"},
		// Each scope its token: the ingest token reads nothing, the read
		// token writes nothing.
		hostile{desc: "lookup with the ingest token", method: "GET", target: "/v1/requests/known", header: ingest, status: 401, want: "bearer token"},
		hostile{desc: "status with the ingest token", method: "GET", target: "/v1/limits/a", header: ingest, status: 401, want: "bearer token"},
		hostile{desc: "records with the read token", method: "POST", target: "/v1/records", header: read, body: []byte(oneRecord), status: 401, want: "bearer token"},
		hostile{desc: "check with the read token", method: "POST", target: "/v1/limits/check", header: read, body: []byte(`{}`), status: 401, want: "bearer token"},
		hostile{desc: "put with the read token", method: "PUT", target: "/v1/limits/a", header: read, body: []byte(`{}`), status: 401, want: "bearer token"},
	)

	// POST /v1/records: sizes, encodings, shapes. No body below holds a
	// valid record before the fault, so nothing may be queued.
	records := func(desc string, h map[string]string, body []byte, status int, want string) {
		cases = append(cases, hostile{desc: "records: " + desc, method: "POST", target: "/v1/records", header: h, body: body, status: status, want: want})
	}
	records("over max_body_bytes", ingest, bytes.Repeat([]byte("x"), 70<<10), 413, "body over 65536 bytes")
	records("over max_body_bytes in one record", ingest, []byte(`{"v":1,"request_id":"`+strings.Repeat("a", 70<<10)+`"}`), 413, "body over 65536 bytes")
	records("gzip bomb: 8 KB that decode to 8 MiB of spaces", gzipped, gz(strings.Repeat(" ", 8<<20)), 413, "body over 65536 bytes")
	records("gzip bomb inside one record", gzipped, gz(`{"v":1,"request_id":"`+strings.Repeat("a", 8<<20)+`"}`), 413, "body over 65536 bytes")
	records("not gzip", gzipped, []byte("not gzip at all"), 400, "content is not gzip")
	records("gzip, empty body", gzipped, nil, 400, "content is not gzip")
	records("gzip header cut", gzipped, gz(oneRecord)[:5], 400, "content is not gzip")
	records("gzip stream cut in the middle of the record", gzipped, gz(oneRecord)[:len(gz(oneRecord))/2], 400, "unexpected EOF")
	records("gzip checksum wrong", gzipped, gzipCorrupt("{not a record}\n"), 400, "gzip: invalid checksum")
	records("gzip twice declared", withHeader(ingest, "Content-Encoding", "gzip, gzip"), gz(oneRecord), 415, `content encoding \"gzip, gzip\": want gzip or none`)
	records("deflate", withHeader(ingest, "Content-Encoding", "deflate"), []byte(oneRecord), 415, `content encoding \"deflate\"`)
	records("br", withHeader(ingest, "Content-Encoding", "br"), []byte(oneRecord), 415, `want gzip or none`)
	records("bad JSON", ingest, []byte("{not json\n"), 400, "not a record: invalid character")
	records("bad JSON, gzip", gzipped, gz("{\"v\":1,\n"), 400, "not a record: unexpected end of JSON input")
	records("an array", ingest, []byte(`[1,2,3]`), 400, "cannot unmarshal array")
	records("a string", ingest, []byte(`"record"`), 400, "cannot unmarshal string")
	records("a number", ingest, []byte(`42`), 400, "cannot unmarshal number")
	records("null", ingest, []byte(`null`), 400, "record version 0: this collector reads version 1")
	records("an empty object", ingest, []byte(`{}`), 400, "record version 0")
	records("nested objects", ingest, []byte(`{"v":{"v":{"v":1}}}`), 400, "cannot unmarshal object")
	records("nesting past the decoder's depth", ingest, []byte(strings.Repeat("[", 20000)), 400, "exceeded max depth")
	records("a huge number", ingest, []byte(`{"v":1,"request_id":"a","start_unix_ns":1e400}`), 400, "cannot unmarshal number 1e400")
	records("a number past int64", ingest, []byte(`{"v":99999999999999999999,"request_id":"a"}`), 400, "cannot unmarshal number 99999999999999999999")
	records(`"NaN" for a number`, ingest, []byte(`{"v":1,"request_id":"a","start_unix_ns":"NaN"}`), 400, "cannot unmarshal string")
	records(`"Infinity" for a number`, ingest, []byte(`{"v":"Infinity"}`), 400, "cannot unmarshal string")
	records("bare NaN", ingest, []byte(`{"v":NaN}`), 400, "invalid character 'N'")
	records("negative start", ingest, []byte(`{"v":1,"request_id":"a","start_unix_ns":-1}`), 400, "start_unix_ns -1: want a positive time")
	records("writes that do not pair", ingest, []byte(`{"v":1,"request_id":"a","start_unix_ns":1,"write_ends":[1]}`), 400, "write_ends has 1 entries, write_ns 0")
	records("invalid UTF-8", ingest, []byte("\xff\xfe\xfd\n"), 400, "not a record: invalid character")
	records("a request id of 129 characters", ingest, []byte(line(strings.Repeat("i", 129))), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + =")
	records("an empty request id", ingest, []byte(line("")), 400, `request_id \"\": want 1 to 128 bytes of letters, digits and - _ . : @ + =`)
	records("a request id with a NUL", ingest, []byte(`{"v":1,"request_id":"a\u0000b","start_unix_ns":1}`), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + =")
	records("a request id that is not UTF-8", ingest, []byte("{\"v\":1,\"request_id\":\"a\xffb\",\"start_unix_ns\":1}"), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + =")

	// GET /v1/requests/{id}: the odd ids that cannot be stored ids.
	cases = append(cases,
		hostile{desc: "spend with the ingest token", method: "GET", target: "/v1/spend?from=2026-12-01", header: ingest, status: 401, want: "bearer token"},
		hostile{desc: "spend with the read token", method: "GET", target: "/v1/spend?from=2026-12-01", header: read, status: 401, want: "bearer token"},
		hostile{desc: "spend: a huge group_by", method: "GET", target: "/v1/spend?from=2026-12-01&group_by=" + strings.Repeat("tenant,", 5000), header: admin, status: 400, want: "twice"},
		hostile{desc: "spend: an escaped NUL in group_by", method: "GET", target: "/v1/spend?from=2026-12-01&group_by=%00", header: admin, status: 400, want: "group_by:"},
		hostile{desc: "spend: a year 99999", method: "GET", target: "/v1/spend?from=99999-01-01", header: admin, status: 400, want: "from:"},
		hostile{desc: "lookup: an id of 129 characters", method: "GET", target: "/v1/requests/" + strings.Repeat("i", 129), header: read, status: 400, want: "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		hostile{desc: "lookup: an id of 129 escaped bytes", method: "GET", target: "/v1/requests/" + strings.Repeat("%C3%A9", 65), header: read, status: 400, want: "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		hostile{desc: "lookup: an id with a NUL", method: "GET", target: "/v1/requests/a%00b", header: read, status: 400, want: "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		hostile{desc: "lookup: no id", method: "GET", target: "/v1/requests/", header: read, status: 404, want: "no endpoint /v1/requests/"},
		hostile{desc: "lookup: an escaped slash", method: "GET", target: "/v1/requests/a%2Fb", header: read, status: 404, want: "no endpoint"},
		hostile{desc: "lookup: dot-dot segments", method: "GET", target: "/v1/requests/../../etc/passwd", header: read, status: 404, want: "no endpoint"},
		hostile{desc: "lookup: escaped dot-dot segments", method: "GET", target: "/v1/requests/..%2F..%2Fetc%2Fpasswd", header: read, status: 404, want: "no endpoint"},
		hostile{desc: "limits: escaped dot-dot", method: "GET", target: "/v1/limits/..%2F..%2Fetc", header: ingest, status: 404, want: "no endpoint"},
		hostile{desc: "an unknown path", method: "GET", target: "/nope", status: 404, want: "no endpoint /nope"},
		hostile{desc: "GET on the records endpoint", method: "GET", target: "/v1/records", header: ingest, status: 405, want: "method GET not allowed on /v1/records; want POST"},
		hostile{desc: "PATCH a policy", method: "PATCH", target: "/v1/limits/a", header: admin, body: []byte(`{}`), status: 405, want: "want GET or PUT or DELETE"},
		hostile{desc: "POST a lookup", method: "POST", target: "/v1/requests/x", status: 405, want: "want GET"},
		hostile{desc: "POST readiness", method: "POST", target: "/readyz", status: 405, want: "want GET or HEAD"},
		hostile{desc: "POST health", method: "POST", target: "/healthz", status: 405, want: "want GET or HEAD"},
		hostile{desc: "DELETE metrics", method: "DELETE", target: "/metrics", status: 405, want: "want GET or HEAD"},
	)
	// The odd ids that could be (NUL, SQL, a quote, unicode) are looked up
	// as they are and not found: TestHostileRequestIDReachesStoreVerbatim.

	// POST /v1/limits/check.
	check := func(desc string, body []byte, status int, want string) {
		cases = append(cases, hostile{desc: "check: " + desc, method: "POST", target: "/v1/limits/check", header: ingest, body: body, status: status, want: want})
	}
	check("bad JSON", []byte(`{"tenant":`), 400, "check: not a JSON object: unexpected EOF")
	check("empty body", nil, 400, "check: not a JSON object: EOF")
	check("an array", []byte(`[{"tenant":"a"}]`), 400, "cannot unmarshal array")
	check("a string", []byte(`"a"`), 400, "cannot unmarshal string")
	check("nested objects", []byte(`{"tenant":{"a":{"b":1}}}`), 400, "cannot unmarshal object")
	check("a huge reserve", []byte(`{"tenant":"a","reserve":1e30}`), 400, "cannot unmarshal number 1e30")
	check(`"NaN" reserve`, []byte(`{"tenant":"a","reserve":"NaN"}`), 400, "cannot unmarshal string")
	check("a negative reserve", []byte(`{"tenant":"a","reserve":-1}`), 400, "reserve -1: want 0")
	check("invalid UTF-8", []byte("\xff\xfe"), 400, "not a JSON object: invalid character")
	check("gzip it cannot read", gz(`{"tenant":"a"}`), 400, "not a JSON object: invalid character")
	check("a tenant of 129 characters", []byte(`{"tenant":"`+strings.Repeat("t", 129)+`"}`), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + =")
	check("a tenant with a NUL", []byte(`{"tenant":"a\u0000"}`), 400, "want 1 to 128 bytes of letters, digits and - _ . : @ + =")
	check("a route with a newline", []byte(`{"tenant":"a","route":"r\n"}`), 400, "route")
	check("a request id of 129 characters", []byte(`{"request_id":"`+strings.Repeat("i", 129)+`"}`), 400, "request_id")
	check("over the bound", []byte(`{"tenant":"a","pad":"`+strings.Repeat("x", maxCheckBody)+`"}`), 413, fmt.Sprintf("check: body too large: over %d bytes", maxCheckBody))
	check("junk after the object", []byte(`{"tenant":"a"} {"tenant":"b"}`), 400, "one JSON object expected")

	// /v1/limits/{tenant}.
	tenantCases := []struct{ desc, tenant, want string }{
		{"a tenant of 129 characters", strings.Repeat("t", 129), "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"a tenant with a NUL", "a%00b", "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"a tenant with a newline", "a%0Ab", "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"a tenant of 129 escaped bytes", strings.Repeat("%C3%A9", 65), "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
	}
	for _, tc := range tenantCases {
		cases = append(cases,
			hostile{desc: "status: " + tc.desc, method: "GET", target: "/v1/limits/" + tc.tenant, header: read, status: 400, want: tc.want},
			hostile{desc: "put: " + tc.desc, method: "PUT", target: "/v1/limits/" + tc.tenant, header: admin, body: []byte(`{}`), status: 400, want: tc.want},
			hostile{desc: "delete: " + tc.desc, method: "DELETE", target: "/v1/limits/" + tc.tenant, header: admin, status: 400, want: tc.want},
		)
	}
	cases = append(cases,
		hostile{desc: "status: a route of 129 characters", method: "GET", target: "/v1/limits/a?route=" + strings.Repeat("r", 129), header: read, status: 400, want: "route"},
		hostile{desc: "status: a route with a NUL", method: "GET", target: "/v1/limits/a?route=%00", header: read, status: 400, want: "route \\\"\\\\x00\\\": control characters"},
		hostile{desc: "delete: a tenant without a policy", method: "DELETE", target: "/v1/limits/nobody", header: admin, status: 404, want: "no policy set through the API"},
	)
	put := func(desc string, body []byte, status int, want string) {
		cases = append(cases, hostile{desc: "put: " + desc, method: "PUT", target: "/v1/limits/a", header: admin, body: body, status: status, want: want})
	}
	put("over 64 KiB", []byte(`{"x":"`+strings.Repeat("x", 70<<10)+`"}`), 413, "policy: body over 65536 bytes")
	put("bad JSON", []byte(`{"requests":`), 400, "policy is not valid JSON")
	put("empty body", nil, 400, "policy is not valid JSON: EOF")
	put("an array", []byte(`[{"requests":{"limit":1,"period":"1m"}}]`), 400, "cannot unmarshal array")
	put("a string", []byte(`"unlimited"`), 400, "cannot unmarshal string")
	put("two objects", []byte(`{} {}`), 400, "one JSON object expected")
	put("unknown nested keys", []byte(`{"requests":{"limit":1,"period":"1m","x":{"y":1}}}`), 400, `unknown field \"x\"`)
	put("a huge limit", []byte(`{"requests":{"limit":1e400,"period":"1m"}}`), 400, "cannot unmarshal number 1e400")
	put(`"NaN" limit`, []byte(`{"requests":{"limit":"NaN","period":"1m"}}`), 400, "cannot unmarshal string")
	put("a negative limit", []byte(`{"requests":{"limit":-1,"period":"1m"}}`), 400, "requests.limit: -1")
	put("a period of NaN", []byte(`{"tokens":{"limit":10,"period":"NaN"}}`), 400, `period \"NaN\"`)
	put("invalid UTF-8", []byte("\xff\xfe"), 400, "policy is not valid JSON: invalid character")
	return cases
}

// serve runs one request through the server; a panic fails the test.
func serve(t *testing.T, s *Server, req *http.Request) (w *httptest.ResponseRecorder) {
	t.Helper()
	w = httptest.NewRecorder()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s %s panicked: %v", req.Method, req.URL, p)
		}
	}()
	s.ServeHTTP(w, req)
	return w
}

func hostileRequest(h hostile) *http.Request {
	req := httptest.NewRequest(h.method, h.target, bytes.NewReader(h.body))
	for k, v := range h.header {
		req.Header.Set(k, v)
	}
	return req
}

func TestHostileInput(t *testing.T) {
	f := newFixture(t, -1)
	for _, h := range hostileCases() {
		t.Run(h.desc, func(t *testing.T) {
			w := serve(t, f.srv, hostileRequest(h))
			body := w.Body.Bytes()
			if w.Code != h.status {
				t.Errorf("status %d, want %d; body %.300s", w.Code, h.status, body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Errorf("body is not a JSON object (%v): %.300s", err, body)
			}
			if _, ok := v["error"]; !ok && v["rejected"] == nil {
				t.Errorf("body has neither error nor rejected: %.300s", body)
			}
			if !strings.Contains(string(body), h.want) {
				t.Errorf("body %.300s, want it to contain %s", body, h.want)
			}
			if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	f.queue.mu.Lock()
	defer f.queue.mu.Unlock()
	if n := len(f.queue.facts); n != 0 {
		t.Errorf("%d facts from hostile input reached the write queue, first %+v", n, f.queue.facts[0])
	}
}

// TestHostileNoServerError sweeps odd requests once more without a token
// or with odd methods: none gets a 5xx or panics.
func TestHostileNoServerError(t *testing.T) {
	f := newFixture(t, -1)
	ingest := bearerOf("tok")
	for _, h := range []hostile{
		{method: "GET", target: "/nope"},
		{method: "GET", target: "/v1/requests/"},
		{method: "GET", target: "/v1/requests/a%2Fb"},
		{method: "GET", target: "/v1/requests/../../etc/passwd"},
		{method: "GET", target: "/v1/requests/..%2F..%2Fetc%2Fpasswd"},
		{method: "GET", target: "/v1/requests/known"},
		{method: "GET", target: "/v1/limits/..%2F..%2Fetc", header: ingest},
		{method: "GET", target: "/v1/records", header: ingest},
		{method: "PATCH", target: "/v1/limits/a", header: bearerOf("adm"), body: []byte(`{}`)},
		{method: "POST", target: "/v1/requests/x"},
		{method: "POST", target: "/readyz"},
		{method: "POST", target: "/healthz"},
		{method: "DELETE", target: "/metrics"},
		{method: "POST", target: "/v1/limits/check", header: ingest, body: []byte(`{"tenant":"a","pad":"` + strings.Repeat("x", 70<<10) + `"}`)},
		{method: "POST", target: "/v1/records", header: ingest, body: []byte(`{"v":1,"request_id":"a\u0000b","start_unix_ns":1}`)},
		{method: "POST", target: "/v1/records", header: ingest, body: []byte("{\"v\":1,\"request_id\":\"a\xffb\",\"start_unix_ns\":1}")},
	} {
		w := serve(t, f.srv, hostileRequest(h))
		if w.Code >= 500 {
			t.Errorf("%s %.60s: %d %.200s", h.method, h.target, w.Code, w.Body)
		}
	}
}

// recordingStore finds nothing and notes each id it was asked for.
type recordingStore struct {
	mu  sync.Mutex
	ids []string
}

func (s *recordingStore) Get(_ context.Context, id string) (*collector.Fact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, id)
	return nil, fmt.Errorf("store: %q: %w", id, collector.ErrNotFound)
}

// TestHostileRequestIDLookup: an id outside the valid set (quotes, SQL,
// NUL, spaces, non-ASCII) is refused with 400 naming it, before the store
// is asked; a valid id reaches the store exactly as sent, as a value: the
// ClickHouse store binds it as a query parameter (clickhouse/store.go,
// "WHERE request_id = ?"), never into the SQL text; the integration test
// TestFaultHostileInputEndToEnd runs these against the real ClickHouse.
func TestHostileRequestIDLookup(t *testing.T) {
	f := newFixture(t, -1)
	store := &recordingStore{}
	f.srv.opt.Store = store
	refused := []string{
		"' OR 1=1 --", `" OR ""="`, "'; DROP TABLE llmtap.requests; --", `\'`,
		"%00", "日本語-🦙", "a b", "x?y=1", strings.Repeat("é", 64),
	}
	valid := []string{"..", "...", "req-1:a@b+c=d", strings.Repeat("i", 128)}
	for _, id := range refused {
		target := "/v1/requests/" + url.PathEscape(id)
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer rd")
		w := serve(t, f.srv, req)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "want 1 to 128 bytes of letters, digits and - _ . : @ + =") {
			t.Errorf("%s: %d %s, want 400 with the rule", target, w.Code, w.Body)
		}
	}
	for _, id := range valid {
		target := "/v1/requests/" + url.PathEscape(id)
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer rd")
		w := serve(t, f.srv, req)
		quoted, _ := json.Marshal(fmt.Sprintf("request %q not found", id))
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), string(quoted[1:len(quoted)-1])) {
			t.Errorf("%s: %d %s, want 404 naming the id", target, w.Code, w.Body)
		}
	}
	if !reflect.DeepEqual(store.ids, valid) {
		t.Fatalf("the store was asked for %q, want the valid ids only: %q", store.ids, valid)
	}
}

// TestHostileIngestHeaders: odd plugin report headers on a valid (empty)
// batch are ignored: the batch is taken, the metrics stay sane.
func TestHostileIngestHeaders(t *testing.T) {
	f := newFixture(t, -1)
	for _, h := range []map[string]string{
		{llmtap.HeaderDropped: "-5"},
		{llmtap.HeaderDropped: "abc"},
		{llmtap.HeaderDropped: "1e3"},
		{llmtap.HeaderDropped: "99999999999999999999"},
		{llmtap.HeaderDropped: " 7"},
		{llmtap.HeaderSender: "s1", llmtap.HeaderActiveStreams: "-1"},
		{llmtap.HeaderSender: "s2", llmtap.HeaderActiveStreams: "99999999999999999999"},
		{llmtap.HeaderSender: "s3", llmtap.HeaderActiveStreams: "NaN"},
		{llmtap.HeaderSender: strings.Repeat("s", 65), llmtap.HeaderActiveStreams: "5"},
		{llmtap.HeaderSender: "", llmtap.HeaderActiveStreams: "5"},
		{llmtap.HeaderSender: "s4", llmtap.HeaderActiveStreams: strings.Repeat("9", 1<<16)},
		{llmtap.HeaderDropped: "9223372036854775807"},
		{llmtap.HeaderSender: "s5", llmtap.HeaderActiveStreams: "9223372036854775807"},
		{llmtap.HeaderSender: "s6", llmtap.HeaderActiveStreams: "9223372036854775807"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/records", nil)
		req.Header.Set("Authorization", "Bearer tok")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		if w := serve(t, f.srv, req); w.Code != http.StatusAccepted {
			t.Errorf("headers %.80v: %d %s, want 202", h, w.Code, w.Body)
		}
	}
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP llmtap_active_streams Streaming responses open now, summed over the plugins that reported in the last 15 s.
# TYPE llmtap_active_streams gauge
llmtap_active_streams 0
# HELP llmtap_plugin_dropped_records_total Records the plugins report they dropped (queue full or undeliverable).
# TYPE llmtap_plugin_dropped_records_total counter
llmtap_plugin_dropped_records_total 0
`), "llmtap_active_streams", "llmtap_plugin_dropped_records_total"); err != nil {
		t.Error(err)
	}
}

// TestHostileQueries: health, readiness and metrics with odd query
// strings and headers still answer 200.
func TestHostileQueries(t *testing.T) {
	f := newFixture(t, -1)
	for _, tc := range []struct {
		target string
		header map[string]string
	}{
		{"/healthz?x=%00&y=" + strings.Repeat("a", 4096), nil},
		{"/readyz?;;&&==", map[string]string{"Authorization": "Bearer nope"}},
		{"/metrics?name[]=%00", map[string]string{"Accept": "application/vnd.google.protobuf;proto=x;encoding=y, */*;q=x"}},
		{"/metrics", map[string]string{"Accept-Encoding": "gzip;q=NaN, br, zstd, ;;"}},
		{"/metrics", map[string]string{"Accept": strings.Repeat("text/plain;", 1000)}},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.target, nil)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		if w := serve(t, f.srv, req); w.Code != http.StatusOK {
			t.Errorf("%.60s %v: %d %.200s", tc.target, tc.header, w.Code, w.Body)
		}
	}
}

// TestIngestCutBodyReportsWhatWasQueued: lines read before a body breaks
// off are queued, and the answer counts them, so the plugin's retry of the
// batch (deduplicated in storage) is not mistaken for new data.
func TestIngestCutBodyReportsWhatWasQueued(t *testing.T) {
	f := newFixture(t, -1)
	full := gz(line("r1") + "\n" + line("r2") + "\n" + line("r3") + "\n")
	req := httptest.NewRequest(http.MethodPost, "/v1/records", bytes.NewReader(full[:len(full)-9]))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Encoding", "gzip")
	w := serve(t, f.srv, req)
	var res IngestResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	f.queue.mu.Lock()
	queued := len(f.queue.facts)
	f.queue.mu.Unlock()
	if w.Code != http.StatusBadRequest || !strings.Contains(res.Error, "the body ends too early") || res.Accepted != queued || queued == 0 {
		t.Fatalf("%d %s: accepted %d, queued %d; want 400 counting the queued lines", w.Code, w.Body, res.Accepted, queued)
	}
}
