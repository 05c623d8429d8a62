// Package dashboards reads llmtap's Grafana dashboards (grafana/*.json) for
// the tests: it checks each has the structure Grafana needs to import it,
// lists its panels and their queries, names the metrics a PromQL query
// uses, and replaces Grafana's variables in a query so that a real
// Prometheus can run it.
package dashboards

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// MinSchemaVersion is the dashboard schema of Grafana 10.0.
const MinSchemaVersion = 38

// DatasourceVar is the name of the template variable every panel takes its
// datasource from, so that the dashboard imports onto any datasource.
const DatasourceVar = "datasource"

// dsRef is how panels and queries name it.
const dsRef = "${" + DatasourceVar + "}"

// Dashboard is one dashboard file.
type Dashboard struct {
	File  string // base name, e.g. llmtap.json
	Title string
	UID   string
	// Datasource is the plugin type of the datasource variable's query
	// ("prometheus", "grafana-clickhouse-datasource"): what the panels run on.
	Datasource string
	Variables  []Variable
	// Vars holds a default value for each variable a query can name: the
	// "All" value of multi-value variables, a textbox's or constant's
	// text. Pass it to Expand to run the queries outside Grafana.
	Vars map[string]string
	// Panels in the order of the file, rows included (Type "row"), the
	// panels of a collapsed row after it.
	Panels []Panel
}

// Variable is a template variable.
type Variable struct {
	Name, Type string
	// Query is the datasource type of a datasource variable, the label
	// query of a query variable, the default text of a textbox.
	Query      string
	Multi      bool
	IncludeAll bool
	AllValue   string
}

// Panel is a panel and its queries.
type Panel struct {
	ID    int
	Title string
	Type  string
	// Datasource is the type of the panel's datasource ("" for a row).
	Datasource string
	Exprs      []string // PromQL, one per target that has one
	RawSQL     []string // SQL, one per target that has one
}

// The JSON as Grafana writes it, only what is checked.
type (
	jsonDashboard struct {
		Title         string      `json:"title"`
		UID           string      `json:"uid"`
		SchemaVersion int         `json:"schemaVersion"`
		Panels        []jsonPanel `json:"panels"`
		Templating    struct {
			List []jsonVariable `json:"list"`
		} `json:"templating"`
	}
	jsonPanel struct {
		ID         *int            `json:"id"`
		Title      string          `json:"title"`
		Type       string          `json:"type"`
		Datasource *jsonDatasource `json:"datasource"`
		GridPos    *jsonGridPos    `json:"gridPos"`
		Targets    []jsonTarget    `json:"targets"`
		Panels     []jsonPanel     `json:"panels"` // a collapsed row's
	}
	jsonTarget struct {
		RefID      string          `json:"refId"`
		Datasource *jsonDatasource `json:"datasource"`
		Expr       string          `json:"expr"`
		RawSQL     string          `json:"rawSql"`
	}
	jsonDatasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	jsonGridPos struct {
		X, Y, W, H int
	}
	jsonVariable struct {
		Name       string          `json:"name"`
		Type       string          `json:"type"`
		Query      json.RawMessage `json:"query"`
		Datasource *jsonDatasource `json:"datasource"`
		Multi      bool            `json:"multi"`
		IncludeAll bool            `json:"includeAll"`
		AllValue   string          `json:"allValue"`
		Current    struct {
			Value json.RawMessage `json:"value"`
		} `json:"current"`
	}
)

// Load parses every *.json file of dir, in name order. A file Grafana
// could not import, or that breaks the rules Parse checks, is an error
// naming the file and the panel.
func Load(dir string) ([]Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("dashboards: no *.json in %s", dir)
	}
	sort.Strings(files)
	var out []Dashboard
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d, err := Parse(filepath.Base(f), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

// Parse reads one dashboard and checks it: a title, a uid, schemaVersion
// 38 (Grafana 10) or later, a datasource variable that every panel and
// every query uses as "${datasource}", panels with unique ids and a grid
// position, at least one query in every panel but rows, and no query
// naming a variable the dashboard does not define. Every problem found is
// returned, each prefixed with the file name and the panel.
func Parse(file string, data []byte) (Dashboard, error) {
	d := Dashboard{File: file, Vars: make(map[string]string)}
	var raw jsonDashboard
	if err := json.Unmarshal(data, &raw); err != nil {
		return d, fmt.Errorf("%s: %w", file, err)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{file}, args...)...))
	}
	d.Title, d.UID = raw.Title, raw.UID
	if d.Title == "" {
		bad("no title")
	}
	if d.UID == "" {
		bad("no uid")
	}
	if raw.SchemaVersion < MinSchemaVersion {
		bad("schemaVersion %d: want %d (Grafana 10) or later", raw.SchemaVersion, MinSchemaVersion)
	}

	defined := make(map[string]bool)
	for _, rv := range raw.Templating.List {
		v := Variable{Name: rv.Name, Type: rv.Type, Query: queryText(rv.Query), Multi: rv.Multi, IncludeAll: rv.IncludeAll, AllValue: rv.AllValue}
		d.Variables = append(d.Variables, v)
		if v.Name == "" || defined[v.Name] {
			bad("variable %q: empty or defined twice", v.Name)
			continue
		}
		defined[v.Name] = true
		switch {
		case v.Name == DatasourceVar:
			if v.Type != "datasource" || v.Query == "" {
				bad("variable %q: want type datasource with the plugin type as query, got type %q query %q", v.Name, v.Type, v.Query)
			}
			d.Datasource = v.Query
		case v.Multi || v.IncludeAll:
			d.Vars[v.Name] = ".*"
			if v.AllValue != "" {
				d.Vars[v.Name] = v.AllValue
			}
		case v.Type == "textbox" || v.Type == "constant":
			d.Vars[v.Name] = v.Query
		default:
			d.Vars[v.Name] = currentText(rv.Current.Value)
		}
		if v.Type == "query" {
			if rv.Datasource == nil || rv.Datasource.UID != dsRef {
				bad("variable %q: datasource %v: want uid %q", v.Name, rv.Datasource, dsRef)
			}
			if v.Query == "" {
				bad("variable %q: empty query", v.Name)
			}
		}
	}
	if d.Datasource == "" {
		bad("no template variable %q of type datasource: the panels cannot follow the datasource chosen at import", DatasourceVar)
	}
	for _, v := range d.Variables {
		if v.Type == "query" {
			for _, name := range unknownVars(v.Query, defined) {
				bad("variable %q: its query names $%s, which is not defined", v.Name, name)
			}
		}
	}

	ids := make(map[int]string)
	var walk func(ps []jsonPanel)
	walk = func(ps []jsonPanel) {
		for _, rp := range ps {
			p := Panel{Title: rp.Title, Type: rp.Type}
			where := fmt.Sprintf("panel %q", rp.Title)
			if rp.ID == nil || *rp.ID <= 0 {
				bad("%s: no id", where)
			} else {
				p.ID = *rp.ID
				where = fmt.Sprintf("panel %d %q", p.ID, rp.Title)
				if other, ok := ids[p.ID]; ok {
					bad("%s: id %d already used by panel %q", where, p.ID, other)
				}
				ids[p.ID] = rp.Title
			}
			if rp.Title == "" {
				bad("%s: no title", where)
			}
			if rp.Type == "" {
				bad("%s: no type", where)
			}
			if g := rp.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				bad("%s: gridPos %v: want w and h above 0 within the 24 columns", where, g)
			}
			if rp.Type == "row" {
				d.Panels = append(d.Panels, p)
				walk(rp.Panels)
				continue
			}
			if !usesVar(rp.Datasource, d.Datasource) {
				bad("%s: datasource %v: want {type %q, uid %q}", where, rp.Datasource, d.Datasource, dsRef)
			}
			if rp.Datasource != nil {
				p.Datasource = rp.Datasource.Type
			}
			if len(rp.Targets) == 0 {
				bad("%s: no query", where)
			}
			refs := make(map[string]bool)
			for _, t := range rp.Targets {
				if t.RefID == "" || refs[t.RefID] {
					bad("%s: refId %q empty or used twice", where, t.RefID)
				}
				refs[t.RefID] = true
				if !usesVar(t.Datasource, d.Datasource) {
					bad("%s: query %s: datasource %v: want {type %q, uid %q}", where, t.RefID, t.Datasource, d.Datasource, dsRef)
				}
				q := strings.TrimSpace(t.Expr)
				if q != "" {
					p.Exprs = append(p.Exprs, q)
				} else if q = strings.TrimSpace(t.RawSQL); q != "" {
					p.RawSQL = append(p.RawSQL, q)
				} else {
					bad("%s: query %s: empty (no expr, no rawSql)", where, t.RefID)
					continue
				}
				for _, name := range unknownVars(q, defined) {
					bad("%s: query %s names $%s, which is not defined", where, t.RefID, name)
				}
			}
			d.Panels = append(d.Panels, p)
		}
	}
	walk(raw.Panels)
	if len(ids) == 0 {
		bad("no panels")
	}
	return d, errors.Join(errs...)
}

func (ds *jsonDatasource) String() string {
	if ds == nil {
		return "none"
	}
	return fmt.Sprintf("{type %q, uid %q}", ds.Type, ds.UID)
}

func (g *jsonGridPos) String() string {
	if g == nil {
		return "none"
	}
	return fmt.Sprintf("{x %d, y %d, w %d, h %d}", g.X, g.Y, g.W, g.H)
}

// usesVar says whether a panel's or query's datasource is the datasource
// variable, of the dashboard's datasource type.
func usesVar(ds *jsonDatasource, typ string) bool {
	return ds != nil && ds.UID == dsRef && ds.Type == typ
}

// queryText is a variable's query: Grafana writes a string, or for some
// datasources an object holding it under "query".
func queryText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.Query
	}
	return ""
}

// currentText is a variable's current value: a string or a list of them.
func currentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
		return list[0]
	}
	return ""
}

// varRE matches a variable reference: ${name}, ${name:format}, $name or
// [[name]]. Names starting with __ are Grafana's own ($__rate_interval,
// $__timeFilter(...)).
var varRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]`)

func varName(m []string) string {
	for _, s := range m[1:] {
		if s != "" {
			return s
		}
	}
	return ""
}

// unknownVars lists the variables q names that are neither defined nor
// Grafana's own.
func unknownVars(q string, defined map[string]bool) []string {
	var out []string
	for _, m := range varRE.FindAllStringSubmatch(q, -1) {
		if name := varName(m); !strings.HasPrefix(name, "__") && !defined[name] {
			out = append(out, name)
		}
	}
	return out
}

// Interval variables and what Expand puts in their place by default: one
// minute, in the unit each one has.
var intervalDefaults = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__range":         "1m",
	"__interval_ms":   "60000",
	"__range_ms":      "60000",
	"__range_s":       "60",
}

// Expand replaces the Grafana variables of a query by values, as Grafana
// would before sending it: vars first (a Dashboard's Vars, say), then 1m
// for the interval variables ($__rate_interval, $__interval, $__range, and
// their _ms and _s forms in their units), then ".*" for any other
// variable, the "All" of a multi-value variable. Other built-ins
// ($__timeFilter(...) and the like) are left as they are.
func Expand(expr string, vars map[string]string) string {
	return varRE.ReplaceAllStringFunc(expr, func(ref string) string {
		name := varName(varRE.FindStringSubmatch(ref))
		if v, ok := vars[name]; ok {
			return v
		}
		if v, ok := intervalDefaults[name]; ok {
			return v
		}
		if strings.HasPrefix(name, "__") {
			return ref
		}
		return ".*"
	})
}

// identRE matches PromQL identifiers: metric names, label names,
// functions and keywords alike.
var identRE = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// stringRE matches PromQL string literals, whose content is not a name.
var stringRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")

// histogramSuffixes are the series a histogram exposes beside its name.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// Series lists the llmtap series names a PromQL query reads: identifiers
// starting with llmtap_ or gen_ai_ outside string literals and variable
// references, as written (llmtap_request_duration_seconds_bucket), sorted,
// each once.
func Series(expr string) []string {
	expr = stringRE.ReplaceAllString(expr, `""`)
	expr = varRE.ReplaceAllString(expr, " ")
	seen := make(map[string]bool)
	var out []string
	for _, id := range identRE.FindAllString(expr, -1) {
		if (strings.HasPrefix(id, "llmtap_") || strings.HasPrefix(id, "gen_ai_")) && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Metrics lists the llmtap metrics a PromQL query reads: its Series with
// the histogram suffixes (_bucket, _sum, _count) taken off, so that each
// is the name of a metric family as the collector registers it; sorted,
// each once.
func Metrics(expr string) []string {
	seen := make(map[string]bool)
	var out []string
	for _, s := range Series(expr) {
		name := MetricOf(s)
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// MetricOf is the metric family of a series name: the name without a
// histogram suffix.
func MetricOf(series string) string {
	for _, suf := range histogramSuffixes {
		if base, ok := strings.CutSuffix(series, suf); ok && base != "" {
			return base
		}
	}
	return series
}
