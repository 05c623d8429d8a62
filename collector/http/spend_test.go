package http

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// fakeSpend answers every report with two groups, and records the query.
type fakeSpend struct {
	got collector.SpendQuery
}

func (f *fakeSpend) Spend(_ context.Context, q collector.SpendQuery) ([]collector.SpendRow, error) {
	f.got = q
	rows := []collector.SpendRow{
		{Requests: 10, Input: 1000, Output: 200, CacheRead: 100, Cost: 1_234_567_890, Unpriced: 0},
		{Requests: 3, Input: 30, Output: 3, Cost: 0, Unpriced: 3},
	}
	for i := range rows {
		for _, g := range q.GroupBy {
			rows[i].Group = append(rows[i].Group, []string{"acme", "=HYPERLINK(\"x\")"}[i]+"-"+string(g))
		}
	}
	return rows, nil
}

func TestSpendParameters(t *testing.T) {
	f := newFixture(t, -1)
	for _, tt := range []struct {
		query  string
		token  string
		status int
		want   string // in the body
	}{
		{"?from=2026-12-01", "", 401, "bearer token"},
		{"?from=2026-12-01", "rd", 401, "bearer token"}, // the read token reads requests, not spend
		{"", "adm", 400, "from: required"},
		{"?from=yesterday", "adm", 400, `from: "yesterday" is not a time`},
		{"?from=2026-12-01&to=2026-11-01", "adm", 400, "to: 2026-11-01T00:00:00Z is not after from"},
		{"?from=2020-01-01&to=2026-01-01", "adm", 400, "from: the range is over 400 days"},
		{"?from=2026-12-01&to=2026-12-02&group_by=path", "adm", 400, `group_by: "path" is not one of tenant, route, model`},
		{"?from=2026-12-01&to=2026-12-02&group_by=route,route", "adm", 400, `group_by: "route" twice`},
		{"?from=2026-12-01T00:00:00Z&to=2026-12-02&group_by=route,model", "adm", 200, `"cost_nanos":1234567890`},
		{"?from=2026-12-01T00:00:00%2B23:59&to=2026-12-01T00:00:00-23:59", "adm", 200, `"from":"2026-11-30T00:01:00Z","to":"2026-12-01T23:59:00Z"`},
	} {
		t.Run(tt.query, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/spend"+tt.query, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			f.srv.ServeHTTP(rec, req)
			body := rec.Body.String()
			var e errorBody
			if json.Unmarshal(rec.Body.Bytes(), &e) == nil && e.Error != "" {
				body = e.Error
			}
			if rec.Code != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("%d %s, want %d with %q", rec.Code, rec.Body, tt.status, tt.want)
			}
		})
	}
}

func TestSpendReport(t *testing.T) {
	f := newFixture(t, -1)
	spend := f.srv.opt.Spend.(*fakeSpend)
	get := func(accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/spend?from=2026-12-01&to=2026-12-06T12:00:00%2B01:00&group_by=tenant,model", nil)
		req.Header.Set("Authorization", "Bearer adm")
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, req)
		return rec
	}
	rec := get("application/json")
	want := collector.SpendQuery{
		From: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC),
		GroupBy: []collector.SpendGroup{collector.SpendByTenant, collector.SpendByModel},
	}
	if !spend.got.From.Equal(want.From) || !spend.got.To.Equal(want.To) || !reflect.DeepEqual(spend.got.GroupBy, want.GroupBy) {
		t.Errorf("query %+v, want %+v", spend.got, want)
	}
	var rep struct {
		GroupBy []string `json:"group_by"`
		Groups  []struct {
			Group    map[string]string `json:"group"`
			Requests int64             `json:"requests"`
			Tokens   map[string]int64  `json:"tokens"`
			CostUSD  float64           `json:"cost_usd"`
			Unpriced int64             `json:"unpriced_requests"`
		} `json:"groups"`
		Total struct {
			Requests  int64 `json:"requests"`
			CostNanos int64 `json:"cost_nanos"`
			Unpriced  int64 `json:"unpriced_requests"`
		} `json:"total"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(rep.Groups) != 2 || rep.Groups[0].Group["tenant"] != "acme-tenant" || rep.Groups[0].Group["model"] != "acme-model" ||
		rep.Groups[0].CostUSD != 1.23456789 || rep.Groups[0].Tokens["cache_read"] != 100 || rep.Groups[1].Unpriced != 3 {
		t.Errorf("groups %+v", rep.Groups)
	}
	if rep.Total.Requests != 13 || rep.Total.CostNanos != 1_234_567_890 || rep.Total.Unpriced != 3 {
		t.Errorf("total %+v", rep.Total)
	}

	rec = get("text/csv")
	wantCSV := "tenant,model,requests,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,cost_usd,unpriced_requests\n" +
		"acme-tenant,acme-model,10,1000,200,100,0,0,1.234567890,0\n" +
		"\"'=HYPERLINK(\"\"x\"\")-tenant\",\"'=HYPERLINK(\"\"x\"\")-model\",3,30,3,0,0,0,0.000000000,3\n" +
		"(total),,13,1030,203,100,0,0,1.234567890,3\n"
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") || rec.Body.String() != wantCSV {
		t.Errorf("CSV (%s):\n%s\nwant:\n%s", ct, rec.Body, wantCSV)
	}
}
