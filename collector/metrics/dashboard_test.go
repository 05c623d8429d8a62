package metrics

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/internal/dashboards"
	"github.com/llmtap/llmtap/collector/limits"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// dashboardDir holds the Grafana dashboards, from this package's folder.
const dashboardDir = "../../grafana"

// exposedSeries registers every metric the collector serves, as
// cmd/llmtap-collector does, and feeds each one so that every vector has a
// series; it returns the series names a scrape shows (a histogram's
// _bucket, _sum and _count) and the metric family names.
func exposedSeries(t *testing.T) (series, families map[string]bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg, 100)
	l := NewLimits(reg, 100)
	RegisterStorage(reg, func() Storage { return Storage{} })
	RegisterExport(reg, func() Export { return Export{} })

	f := &collector.Fact{
		Route: "chat", Provider: "openai", Model: "gpt-4o", Status: 503, DurationMs: 900,
		TTFTMs: ptr(100), TTFAMs: ptr(120), GenerationUs: ptr(200000), ErrorType: collector.ErrUpstream5xx, Limit: llmtap.LimitFailedOpen,
		Usage: collector.Usage{
			Input: ptr(10), Output: ptr(5), CacheRead: ptr(2), CacheWrite: ptr(1), Reasoning: ptr(3),
			Source: "none", Missing: "error_response",
		},
		Upstream:      "b",
		Redactions:    map[string]int{"openai_key": 1},
		BodiesOmitted: true,
		Attempts:      []collector.Attempt{{Upstream: "a", Result: "503", HeaderMs: 10, Opened: true}, {Upstream: "b", Result: "503", HeaderMs: 20}},
	}
	m.Observe(f)
	priced := *f
	priced.Cost = &collector.Cost{Output: 1000, Total: 1000}
	m.Observe(&priced)
	m.Lost(f)
	m.Received(1)
	m.Rejected("bad_json")
	m.PluginDropped(1)
	m.ActiveStreams("proxy-a", 1)
	l.Checked(&limits.Decision{Route: "chat", Reason: collector.ReasonTokens}, time.Millisecond)
	l.Checked(&limits.Decision{Route: "chat", Tenant: "acme", Allowed: true, Spend: &limits.QuotaStatus{Limit: 1000, Remaining: 200}}, time.Millisecond)
	l.StoreFailed("take")

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series, families = make(map[string]bool), make(map[string]bool)
	for _, mf := range mfs {
		name := mf.GetName()
		families[name] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			series[name+"_bucket"], series[name+"_sum"], series[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			series[name], series[name+"_sum"], series[name+"_count"] = true, true, true
		default:
			series[name] = true
		}
	}
	return series, families
}

// upRE matches a query on Prometheus's own up series.
var upRE = regexp.MustCompile(`^up\b`)

// queryProblems lists the queries of a Prometheus dashboard, of its panels
// and variables, that read a series the collector does not expose (series)
// or no llmtap metric at all; it adds the metrics the queries read to used.
func queryProblems(d dashboards.Dashboard, series, used map[string]bool) []string {
	var problems []string
	check := func(where, expr string) {
		names := dashboards.Series(expr)
		if len(names) == 0 && !upRE.MatchString(expr) {
			problems = append(problems, fmt.Sprintf("%s: %s: query names no llmtap metric: %s", d.File, where, expr))
		}
		for _, s := range names {
			used[dashboards.MetricOf(s)] = true
			if !series[s] {
				problems = append(problems, fmt.Sprintf("%s: %s: %s is not a metric the collector exposes (query: %s)", d.File, where, s, expr))
			}
		}
	}
	for _, v := range d.Variables {
		if v.Type == "query" {
			check(fmt.Sprintf("variable %q", v.Name), v.Query)
		}
	}
	for _, p := range d.Panels {
		for _, expr := range p.Exprs {
			check(fmt.Sprintf("panel %q", p.Title), expr)
		}
	}
	return problems
}

// TestDashboards checks the Grafana dashboards: each one is a dashboard
// Grafana 10 imports (see dashboards.Parse), and every PromQL query, of a
// panel or of a variable, reads only series the collector really exposes.
// It also fails when the collector exposes a metric that no panel shows.
func TestDashboards(t *testing.T) {
	ds, err := dashboards.Load(dashboardDir)
	if err != nil {
		t.Fatalf("grafana dashboards:\n%v", err)
	}
	series, families := exposedSeries(t)
	used := make(map[string]bool)
	var prom int
	for _, d := range ds {
		if d.Datasource != "prometheus" {
			continue
		}
		prom++
		for _, p := range queryProblems(d, series, used) {
			t.Error(p)
		}
	}
	if prom == 0 {
		t.Fatalf("no Prometheus dashboard in %s", dashboardDir)
	}
	var unshown []string
	for name := range families {
		if (strings.HasPrefix(name, "llmtap_") || strings.HasPrefix(name, "gen_ai_")) && !used[name] {
			unshown = append(unshown, name)
		}
	}
	sort.Strings(unshown)
	if len(unshown) > 0 {
		t.Errorf("the collector exposes %s, which no dashboard panel shows: add them to a dashboard in grafana/", strings.Join(unshown, ", "))
	}
}

// TestDashboardUnknownMetric shows what a renamed metric gives: the
// dashboard, the panel and the name that is not exposed. A histogram's
// bare name is not a series either.
func TestDashboardUnknownMetric(t *testing.T) {
	var id int
	panel := func(title, expr string) string {
		id++
		return `{"id": ` + fmt.Sprint(id) + `, "type": "timeseries", "title": "` + title + `", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 8},
		  "datasource": {"type": "prometheus", "uid": "${datasource}"},
		  "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": "` + expr + `"}]}`
	}
	doc := `{"title": "t", "uid": "u", "schemaVersion": 38,
	  "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
	  "panels": [` + strings.Join([]string{
		panel("Latency", "histogram_quantile(0.95, sum by (le) (rate(llmtap_request_latency_seconds_bucket[1m])))"),
		panel("Duration sum", "rate(llmtap_request_duration_seconds[1m])"),
		panel("Fine", "sum(rate(llmtap_requests_total[1m])) + sum(llmtap_active_streams)"),
		panel("Nothing", "vector(1)"),
	}, ",") + `]}`
	d, err := dashboards.Parse("bad.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	series, _ := exposedSeries(t)
	used := make(map[string]bool)
	got := queryProblems(d, series, used)
	want := []string{
		`bad.json: panel "Latency": llmtap_request_latency_seconds_bucket is not a metric the collector exposes (query: histogram_quantile(0.95, sum by (le) (rate(llmtap_request_latency_seconds_bucket[1m]))))`,
		`bad.json: panel "Duration sum": llmtap_request_duration_seconds is not a metric the collector exposes (query: rate(llmtap_request_duration_seconds[1m]))`,
		`bad.json: panel "Nothing": query names no llmtap metric: vector(1)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !used["llmtap_requests_total"] || !used["llmtap_active_streams"] {
		t.Errorf("used %v", used)
	}
}
