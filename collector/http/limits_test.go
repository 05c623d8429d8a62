package http

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
	llmtap "github.com/llmtap/llmtap/plugin"
)

func (f *fixture) do(t *testing.T, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, req)
	return w
}

func (f *fixture) checkLimit(t *testing.T, tenant string, reserve int64) *httptest.ResponseRecorder {
	t.Helper()
	b, _ := json.Marshal(llmtap.LimitCheck{Tenant: tenant, Route: "chat", RequestID: "id-" + tenant, Reserve: reserve})
	return f.do(t, http.MethodPost, llmtap.LimitsCheckPath, "tok", string(b))
}

func decodeDecision(t *testing.T, w *httptest.ResponseRecorder) decisionJSON {
	t.Helper()
	var d decisionJSON
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return d
}

func TestCheckAllowsWithQuotaHeaders(t *testing.T) {
	f := newFixture(t, -1)
	w := f.checkLimit(t, "acme", 600)
	h := w.Header()
	if w.Code != http.StatusOK || h.Get(llmtap.HeaderDecision) != llmtap.DecisionAllow || h.Get(llmtap.HeaderReserved) != "600" {
		t.Fatalf("status %d, headers %v", w.Code, h)
	}
	// Tokens (400 of 1000 left) are nearer to running out than requests (2 of 3).
	if h.Get("RateLimit-Limit") != "1000" || h.Get("RateLimit-Remaining") != "400" || h.Get("RateLimit-Reset") == "" {
		t.Fatalf("RateLimit headers %v", h)
	}
	d := decodeDecision(t, w)
	if !d.Allowed || d.Requests.Remaining != 2 || d.Tokens.Remaining != 400 || d.Reserved != 600 || d.Error != nil {
		t.Fatalf("decision %+v", d)
	}
	if h.Get(llmtap.HeaderReservation) != "" {
		t.Errorf("a check of an older plugin got reservation %q: its request id names it", h.Get(llmtap.HeaderReservation))
	}
	// A versioned check gets a reservation of its own.
	b, _ := json.Marshal(llmtap.LimitCheck{V: llmtap.CheckVersion, Tenant: "acme", Route: "chat", RequestID: "id-acme", Reserve: 100})
	w = f.do(t, http.MethodPost, llmtap.LimitsCheckPath, "tok", string(b))
	if res := w.Header().Get(llmtap.HeaderReservation); w.Code != http.StatusOK || !llmtap.ValidID(res) {
		t.Fatalf("versioned check: %d, reservation %q", w.Code, res)
	}
}

func TestCheckDeniesWith429(t *testing.T) {
	f := newFixture(t, -1)
	for i := 0; i < 3; i++ {
		if w := f.checkLimit(t, "acme", 1); w.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, w.Code, w.Body)
		}
	}
	w := f.checkLimit(t, "acme", 1)
	h := w.Header()
	if w.Code != http.StatusTooManyRequests || h.Get(llmtap.HeaderDecision) != llmtap.DecisionDeny {
		t.Fatalf("past the limit: %d %v", w.Code, h)
	}
	if h.Get("Retry-After") == "" || h.Get("RateLimit-Limit") != "3" || h.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("headers %v", h)
	}
	d := decodeDecision(t, w)
	if d.Allowed || d.Reason != "requests" || d.Error == nil || d.Error.Code != "rate_limit_exceeded" || d.Error.Type != "requests" ||
		!strings.Contains(d.Error.Message, "3 requests per 1h0m0s") {
		t.Fatalf("decision %+v, error %+v", d, d.Error)
	}
	// The body is an OpenAI error as clients parse it.
	var oa struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &oa); err != nil || oa.Error.Message == "" {
		t.Fatalf("not an OpenAI error body: %s (%v)", w.Body, err)
	}
	metrics := f.do(t, http.MethodGet, "/metrics", "", "").Body.String()
	for _, want := range []string{
		`llmtap_limit_checks_total{decision="allowed"} 3`,
		`llmtap_limit_checks_total{decision="denied"} 1`,
		`llmtap_limit_denials_total{reason="requests",route="chat"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestCheckWithoutTenantSharesOneQuota(t *testing.T) {
	f := newFixture(t, -1)
	for i := 0; i < 3; i++ {
		if w := f.do(t, http.MethodPost, llmtap.LimitsCheckPath, "tok", `{"route":"chat"}`); w.Code != http.StatusOK {
			t.Fatalf("anonymous request %d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := f.do(t, http.MethodPost, llmtap.LimitsCheckPath, "tok", `{"route":"chat"}`); w.Code != http.StatusTooManyRequests {
		t.Fatalf("anonymous requests past the default limit: %d", w.Code)
	}
}

func TestCheckTenantsAreIsolated(t *testing.T) {
	f := newFixture(t, -1)
	for i := 0; i < 4; i++ {
		f.checkLimit(t, "a", 1)
	}
	if w := f.checkLimit(t, "a", 1); w.Code != http.StatusTooManyRequests {
		t.Fatalf("tenant a not exhausted: %d", w.Code)
	}
	if w := f.checkLimit(t, "b", 1); w.Code != http.StatusOK {
		t.Fatalf("tenant b denied: %d %s", w.Code, w.Body)
	}
}

func TestCheckBadInput(t *testing.T) {
	f := newFixture(t, -1)
	tests := []struct {
		token, body string
		status      int
		want        string
	}{
		{"", `{"tenant":"a"}`, http.StatusUnauthorized, "bearer token"},
		{"adm", `{"tenant":"a"}`, http.StatusUnauthorized, "bearer token"},
		{"tok", `{"tenant":"a","route":"` + strings.Repeat("r", 200) + `"}`, http.StatusBadRequest, "route"},
		{"tok", `{"tenant":"a","request_id":"x\u0000"}`, http.StatusBadRequest, "request_id"},
		{"tok", `{"tenant":"a\nb"}`, http.StatusBadRequest, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"tok", `{"tenant":"` + strings.Repeat("x", 129) + `"}`, http.StatusBadRequest, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{"tok", `{"tenant":"a","request_id":"a\tb"}`, http.StatusBadRequest, "request_id"},
		{"tok", `{"tenant":"a","reserve":-5}`, http.StatusBadRequest, "reserve -5"},
		{"tok", `{"tenant":`, http.StatusBadRequest, "not a JSON object"},
		{"tok", `{"tenant":"a","pad":"` + strings.Repeat("x", maxCheckBody) + `"}`, http.StatusRequestEntityTooLarge, fmt.Sprintf("over %d bytes", maxCheckBody)},
	}
	for _, tt := range tests {
		w := f.do(t, http.MethodPost, llmtap.LimitsCheckPath, tt.token, tt.body)
		if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("%.40s: %d %s, want %d with %q", tt.body, w.Code, w.Body, tt.status, tt.want)
		}
	}
}

func TestCheckWithRedisDown(t *testing.T) {
	f := newFixture(t, -1)
	f.redis.Close()
	w := f.checkLimit(t, "acme", 1)
	if w.Code != http.StatusOK || w.Header().Get(llmtap.HeaderDecision) != llmtap.DecisionAllow || !decodeDecision(t, w).FailedOpen {
		t.Fatalf("fail open: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = f.checkLimit(t, "strict", 1)
	d := decodeDecision(t, w)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get(llmtap.HeaderDecision) != llmtap.DecisionDeny ||
		w.Header().Get("Retry-After") != "1" || d.Error == nil || d.Error.Type != "limits_unavailable" {
		t.Fatalf("fail closed: %d %v %s", w.Code, w.Header(), w.Body)
	}
	metrics := f.do(t, http.MethodGet, "/metrics", "", "").Body.String()
	for _, want := range []string{
		`llmtap_limit_checks_total{decision="failed_open"} 1`,
		`llmtap_limit_checks_total{decision="failed_closed"} 1`,
		`llmtap_limit_denials_total{reason="unavailable",route="chat"} 1`,
		`llmtap_limit_redis_errors_total{op="take"} 2`,
		`llmtap_limit_check_duration_seconds_count 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestLimitsAdminAPI(t *testing.T) {
	f := newFixture(t, -1)
	// Validation and auth.
	bad := []struct {
		method, token, tenant, body string
		status                      int
		want                        string
	}{
		{http.MethodPut, "", "acme", `{}`, http.StatusUnauthorized, "bearer token"},
		{http.MethodPut, "tok", "acme", `{}`, http.StatusUnauthorized, "bearer token"},
		{http.MethodDelete, "tok", "acme", ``, http.StatusUnauthorized, "bearer token"},
		{http.MethodPut, "adm", "acme", `{"requests":{"limit":0,"period":"1m"}}`, http.StatusBadRequest, "requests.limit: 0: want at least 1"},
		{http.MethodPut, "adm", "acme", `{"tokens":{"limit":10,"period":"soon"}}`, http.StatusBadRequest, `period \"soon\"`},
		{http.MethodPut, "adm", "acme", `{"requests":{"limit":1,"period":"1m"},"extra":1}`, http.StatusBadRequest, `unknown field \"extra\"`},
		{http.MethodPut, "adm", "acme", `{"requests":`, http.StatusBadRequest, "not valid JSON"},
		{http.MethodPut, "adm", "acme", `{"x":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, "body over"},
		{http.MethodPut, "adm", "a%0Ab", `{}`, http.StatusBadRequest, "want 1 to 128 bytes of letters, digits and - _ . : @ + ="},
		{http.MethodDelete, "adm", "nobody", ``, http.StatusNotFound, "no policy set through the API"},
		{http.MethodGet, "", "acme", ``, http.StatusUnauthorized, "bearer token"},
	}
	for _, tt := range bad {
		w := f.do(t, tt.method, "/v1/limits/"+tt.tenant, tt.token, tt.body)
		if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("%s %s %.40s: %d %s, want %d with %q", tt.method, tt.tenant, tt.body, w.Code, w.Body, tt.status, tt.want)
		}
	}

	// Put, then the check and the status use it.
	w := f.do(t, http.MethodPut, "/v1/limits/acme", "adm", `{"requests":{"limit":1,"period":"1m"}}`)
	if w.Code != http.StatusOK {
		t.Fatalf("put: %d %s", w.Code, w.Body)
	}
	if w := f.checkLimit(t, "acme", 1); w.Code != http.StatusOK {
		t.Fatalf("first check: %d", w.Code)
	}
	if w := f.checkLimit(t, "acme", 1); w.Code != http.StatusTooManyRequests {
		t.Fatalf("second check under a limit of 1: %d", w.Code)
	}
	for _, token := range []string{"rd", "adm"} {
		w = f.do(t, http.MethodGet, "/v1/limits/acme", token, "")
		var st statusJSON
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != http.StatusOK {
			t.Fatalf("status: %d %s", w.Code, w.Body)
		}
		if st.Source != "api" || st.Policy.Requests.Limit != 1 || st.Requests == nil || st.Requests.Remaining != 0 || st.Tokens != nil {
			t.Fatalf("status %s", w.Body)
		}
	}

	// Delete: the default applies again.
	if w := f.do(t, http.MethodDelete, "/v1/limits/acme", "adm", ""); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	w = f.do(t, http.MethodGet, "/v1/limits/acme", "rd", "")
	if !strings.Contains(w.Body.String(), `"source":"default"`) {
		t.Fatalf("after delete: %s", w.Body)
	}
}

func TestAdminAPIIsOffWithoutToken(t *testing.T) {
	f := newFixture(t, -1)
	f.srv.opt.AdminToken = ""
	w := f.do(t, http.MethodPut, "/v1/limits/acme", "", `{}`)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "set admin_token") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestIngestSettlesReservations(t *testing.T) {
	f := newFixture(t, -1)
	f.srv.records.Derive = func(r *llmtap.Record) *collector.Fact {
		in, out := int64(20), int64(30)
		return &collector.Fact{RequestID: r.RequestID, Tenant: r.Tenant, Route: r.Route, Status: r.Status,
			Limit: r.Limit, LimitReserved: r.LimitReserved, Usage: collector.Usage{Input: &in, Output: &out}}
	}
	if w := f.checkLimit(t, "acme", 500); w.Header().Get(llmtap.HeaderReserved) != "500" {
		t.Fatalf("check: %v", w.Header())
	}
	rec, _ := json.Marshal(llmtap.Record{V: llmtap.RecordVersion, RequestID: "id-acme", StartUnixNs: 1700000000e9, Route: "chat",
		Tenant: "acme", Status: 200, Limit: llmtap.LimitAllowed, LimitReserved: 500})
	if w := f.do(t, http.MethodPost, llmtap.RecordsPath, "tok", string(rec)); w.Code != http.StatusAccepted {
		t.Fatalf("ingest: %d %s", w.Code, w.Body)
	}
	w := f.do(t, http.MethodGet, "/v1/limits/acme?route=chat", "rd", "")
	var st statusJSON
	_ = json.Unmarshal(w.Body.Bytes(), &st)
	// 1000 - 50 used; the hour's refill adds well under a token here.
	if st.Tokens == nil || st.Tokens.Remaining != 950 {
		t.Fatalf("after settling 50 of 500: %s", w.Body)
	}
}
