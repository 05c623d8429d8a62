package dashboards

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSeriesAndMetrics(t *testing.T) {
	tests := []struct {
		desc    string
		expr    string
		series  []string
		metrics []string
	}{
		{
			desc:    "counter rate with variables",
			expr:    `sum by (route) (rate(llmtap_requests_total{route=~"$route", model=~"${model:regex}"}[$__rate_interval]))`,
			series:  []string{"llmtap_requests_total"},
			metrics: []string{"llmtap_requests_total"},
		},
		{
			desc:    "histogram buckets lose their suffix",
			expr:    `histogram_quantile(0.95, sum by (model, le) (rate(gen_ai_server_time_to_first_token_seconds_bucket[5m])))`,
			series:  []string{"gen_ai_server_time_to_first_token_seconds_bucket"},
			metrics: []string{"gen_ai_server_time_to_first_token_seconds"},
		},
		{
			desc:    "sum and count of one histogram name it once",
			expr:    `rate(llmtap_request_duration_seconds_sum[1m]) / rate(llmtap_request_duration_seconds_count[1m])`,
			series:  []string{"llmtap_request_duration_seconds_count", "llmtap_request_duration_seconds_sum"},
			metrics: []string{"llmtap_request_duration_seconds"},
		},
		{
			desc:    "two metrics, sorted, each once",
			expr:    `sum(rate(llmtap_errors_total[1m])) / ignoring(class) group_left sum(rate(llmtap_requests_total[1m])) + sum(rate(llmtap_errors_total[1m]))`,
			series:  []string{"llmtap_errors_total", "llmtap_requests_total"},
			metrics: []string{"llmtap_errors_total", "llmtap_requests_total"},
		},
		{
			desc: "names in strings and variables are not metrics",
			expr: `up{job="llmtap_collector", x='llmtap_y', z=` + "`gen_ai_z`" + `} * on() $llmtap_var`,
		},
		{
			desc:    "a name inside another identifier is not one",
			expr:    `my_llmtap_requests_total + llmtap_active_streams`,
			series:  []string{"llmtap_active_streams"},
			metrics: []string{"llmtap_active_streams"},
		},
		{
			desc:    "escaped quote inside a string",
			expr:    `llmtap_tokens_total{model="a\"llmtap_fake"}`,
			series:  []string{"llmtap_tokens_total"},
			metrics: []string{"llmtap_tokens_total"},
		},
		{desc: "no llmtap metric", expr: `vector(0)`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := Series(tt.expr); !reflect.DeepEqual(got, tt.series) {
				t.Errorf("Series(%s) = %q, want %q", tt.expr, got, tt.series)
			}
			if got := Metrics(tt.expr); !reflect.DeepEqual(got, tt.metrics) {
				t.Errorf("Metrics(%s) = %q, want %q", tt.expr, got, tt.metrics)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		desc string
		expr string
		vars map[string]string
		want string
	}{
		{
			desc: "multi-value variables match all, intervals one minute",
			expr: `rate(x{route=~"$route", model=~"${model}"}[$__rate_interval])`,
			want: `rate(x{route=~".*", model=~".*"}[1m])`,
		},
		{
			desc: "given values win",
			expr: `up{job=~"$job"}[$__rate_interval]`,
			vars: map[string]string{"job": "llmtap-collector", "__rate_interval": "30s"},
			want: `up{job=~"llmtap-collector"}[30s]`,
		},
		{
			desc: "formats and the old syntax",
			expr: `${route:regex}|[[route]]|[[model:pipe]]`,
			vars: map[string]string{"route": "openai"},
			want: `openai|openai|.*`,
		},
		{
			desc: "interval variables in their units",
			expr: `$__interval $__range $__interval_ms $__range_ms $__range_s`,
			want: `1m 1m 60000 60000 60`,
		},
		{
			desc: "a longer name is not a shorter one",
			expr: `$routes $route`,
			vars: map[string]string{"route": "r"},
			want: `.* r`,
		},
		{
			desc: "other built-ins stay for the datasource to expand",
			expr: `WHERE $__timeFilter(start) AND route = '${route}'`,
			want: `WHERE $__timeFilter(start) AND route = '.*'`,
		},
		{desc: "nothing to replace", expr: `sum(llmtap_active_streams)`, want: `sum(llmtap_active_streams)`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := Expand(tt.expr, tt.vars); got != tt.want {
				t.Errorf("Expand(%s) = %s, want %s", tt.expr, got, tt.want)
			}
		})
	}
}

// good is a small valid dashboard; the bad cases each change one thing.
const good = `{
  "title": "t", "uid": "u", "schemaVersion": 38,
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "route", "type": "query", "query": "label_values(llmtap_requests_total, route)",
     "datasource": {"type": "prometheus", "uid": "${datasource}"}, "multi": true, "includeAll": true, "allValue": ".*"},
    {"name": "job", "type": "textbox", "query": "llmtap-collector"},
    {"name": "env", "type": "custom", "query": "a,b", "current": {"value": "a"}}
  ]},
  "panels": [
    {"id": 1, "type": "row", "title": "Row", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}, "panels": []},
    {"id": 2, "type": "timeseries", "title": "QPS", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
     "datasource": {"type": "prometheus", "uid": "${datasource}"},
     "targets": [
       {"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": "sum(rate(llmtap_requests_total{route=~\"$route\"}[$__rate_interval]))"},
       {"refId": "B", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": "up{job=~\"$job\"}"}
     ]},
    {"id": 3, "type": "row", "title": "Collapsed", "collapsed": true, "gridPos": {"x": 0, "y": 9, "w": 24, "h": 1}, "panels": [
      {"id": 4, "type": "stat", "title": "Up", "gridPos": {"x": 0, "y": 10, "w": 6, "h": 4},
       "datasource": {"type": "prometheus", "uid": "${datasource}"},
       "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": "up"}]}
    ]}
  ]
}`

func TestParseGood(t *testing.T) {
	d, err := Parse("good.json", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if d.File != "good.json" || d.Title != "t" || d.UID != "u" || d.Datasource != "prometheus" {
		t.Errorf("dashboard %+v", d)
	}
	wantVars := map[string]string{"route": ".*", "job": "llmtap-collector", "env": "a"}
	if !reflect.DeepEqual(d.Vars, wantVars) {
		t.Errorf("vars %v, want %v", d.Vars, wantVars)
	}
	want := []Panel{
		{ID: 1, Title: "Row", Type: "row"},
		{ID: 2, Title: "QPS", Type: "timeseries", Datasource: "prometheus", Exprs: []string{
			`sum(rate(llmtap_requests_total{route=~"$route"}[$__rate_interval]))`, `up{job=~"$job"}`,
		}},
		{ID: 3, Title: "Collapsed", Type: "row"},
		{ID: 4, Title: "Up", Type: "stat", Datasource: "prometheus", Exprs: []string{"up"}},
	}
	if !reflect.DeepEqual(d.Panels, want) {
		t.Errorf("panels\n%+v\nwant\n%+v", d.Panels, want)
	}
	if got := Expand(d.Panels[1].Exprs[1], d.Vars); got != `up{job=~"llmtap-collector"}` {
		t.Errorf("expanded with the dashboard's defaults: %s", got)
	}
}

func TestParseSQL(t *testing.T) {
	doc := `{"title": "t", "uid": "u", "schemaVersion": 39,
	  "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "grafana-clickhouse-datasource"}]},
	  "panels": [{"id": 1, "type": "table", "title": "Slowest", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 8},
	    "datasource": {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"},
	    "targets": [{"refId": "A", "datasource": {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"},
	      "rawSql": "SELECT 1 FROM llmtap.requests WHERE $__timeFilter(start)"}]}]}`
	d, err := Parse("ch.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if p := d.Panels[0]; len(p.Exprs) != 0 || len(p.RawSQL) != 1 || p.Datasource != "grafana-clickhouse-datasource" {
		t.Errorf("panel %+v", p)
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		desc    string
		old     string // replaced in good by new, once
		new     string
		wantErr string
	}{
		{"not JSON", `"title": "t",`, `"title": "t"`, "bad.json: invalid character"},
		{"no title", `"title": "t"`, `"title": ""`, "bad.json: no title"},
		{"no uid", `"uid": "u"`, `"uid": ""`, "bad.json: no uid"},
		{"Grafana 9 schema", `"schemaVersion": 38`, `"schemaVersion": 37`, "schemaVersion 37: want 38"},
		{
			"no datasource variable",
			`{"name": "datasource", "type": "datasource", "query": "prometheus"},`, ``,
			`no template variable "datasource"`,
		},
		{
			"datasource variable of another type",
			`"name": "datasource", "type": "datasource"`, `"name": "datasource", "type": "custom"`,
			`variable "datasource": want type datasource`,
		},
		{
			"query variable on a fixed datasource",
			`"datasource": {"type": "prometheus", "uid": "${datasource}"}, "multi": true`, `"datasource": {"type": "prometheus", "uid": "P1"}, "multi": true`,
			`variable "route": datasource {type "prometheus", uid "P1"}: want uid "${datasource}"`,
		},
		{
			"variable defined twice",
			`{"name": "job", "type": "textbox"`, `{"name": "route", "type": "textbox"`,
			`variable "route": empty or defined twice`,
		},
		{"duplicate id", `{"id": 4,`, `{"id": 2,`, `panel 2 "Up": id 2 already used by panel "QPS"`},
		{"no id", `{"id": 2,`, `{`, `panel "QPS": no id`},
		{"no type", `"type": "stat"`, `"type": ""`, `panel 4 "Up": no type`},
		{"no title", `"title": "QPS"`, `"title": ""`, `panel 2 "": no title`},
		{"no gridPos", `"gridPos": {"x": 0, "y": 10, "w": 6, "h": 4},`, ``, `panel 4 "Up": gridPos none`},
		{"wider than the grid", `"x": 0, "y": 1, "w": 12`, `"x": 20, "y": 1, "w": 12`, `panel 2 "QPS": gridPos {x 20, y 1, w 12, h 8}`},
		{
			"panel on a fixed datasource",
			`"title": "QPS", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
     "datasource": {"type": "prometheus", "uid": "${datasource}"}`,
			`"title": "QPS", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
     "datasource": {"type": "prometheus", "uid": "prom"}`,
			`panel 2 "QPS": datasource {type "prometheus", uid "prom"}: want {type "prometheus", uid "${datasource}"}`,
		},
		{
			"query without datasource",
			`{"refId": "B", "datasource": {"type": "prometheus", "uid": "${datasource}"},`, `{"refId": "B",`,
			`panel 2 "QPS": query B: datasource none`,
		},
		{"empty query", `"expr": "up"`, `"expr": " "`, `panel 4 "Up": query A: empty`},
		{"refId twice", `{"refId": "B"`, `{"refId": "A"`, `panel 2 "QPS": refId "A" empty or used twice`},
		{
			"no query",
			`"targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": "up"}]`, `"targets": []`,
			`panel 4 "Up": no query`,
		},
		{"undefined variable", `up{job=~\"$job\"}`, `up{job=~\"$jobs\"}`, `panel 2 "QPS": query B names $jobs, which is not defined`},
		{
			"undefined variable in a variable's query",
			`label_values(llmtap_requests_total, route)`, `label_values(llmtap_requests_total{x=\"$tenant\"}, route)`,
			`variable "route": its query names $tenant`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("the good dashboard has no %s", tt.old)
			}
			_, err := Parse("bad.json", []byte(strings.Replace(good, tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %s", err, tt.wantErr)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no *.json") {
		t.Errorf("empty folder: %v", err)
	}
	for name, doc := range map[string]string{
		"b.json":     good,
		"a.json":     strings.Replace(good, `"uid": "u"`, `"uid": "a"`, 1),
		"notes.yml":  "not a dashboard",
		"broken.txt": "{",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].File != "a.json" || ds[0].UID != "a" || ds[1].File != "b.json" {
		t.Errorf("loaded %+v", ds)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.json"), []byte(`{"uid": "c"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "c.json: no title") {
		t.Errorf("a bad file among good ones: %v", err)
	}
}

// TestProvisioning reads the example provisioning files: a file provider
// with a path, and a Prometheus datasource of the type the Prometheus
// dashboard asks for.
func TestProvisioning(t *testing.T) {
	dir := "../../../grafana/provisioning"
	var providers struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct{ Path string }
		}
	}
	readYAML(t, filepath.Join(dir, "dashboards", "llmtap.yml"), &providers)
	if providers.APIVersion != 1 || len(providers.Providers) != 1 {
		t.Fatalf("dashboard providers %+v", providers)
	}
	if p := providers.Providers[0]; p.Name == "" || p.Type != "file" || p.Options.Path == "" {
		t.Errorf("dashboard provider %+v: want a named file provider with a path", p)
	}

	var sources struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct{ Name, Type, UID, URL string }
	}
	readYAML(t, filepath.Join(dir, "datasources", "prometheus.yml"), &sources)
	if sources.APIVersion != 1 || len(sources.Datasources) != 1 {
		t.Fatalf("datasources %+v", sources)
	}
	ds, err := Load("../../../grafana")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, d := range ds {
		types = append(types, d.Datasource)
	}
	if s := sources.Datasources[0]; s.Type != "prometheus" || s.UID != "prometheus" || s.URL == "" || !strings.Contains(strings.Join(types, " "), s.Type) {
		t.Errorf("datasource %+v: want type and uid prometheus, a URL, and a dashboard on it (dashboards on %v)", s, types)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
