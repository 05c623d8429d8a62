package http

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// maxSpendRange bounds a report's time range: a longer one is a scan of
// the whole table, which a report endpoint must not start by mistake.
const maxSpendRange = 400 * 24 * time.Hour

// spendQuery reads a report's parameters: from (required) and to (default
// now), each RFC 3339 or a UTC date; group_by, a comma list of tenant,
// route, model (default tenant). The error names the field.
func spendQuery(r *http.Request, now time.Time) (collector.SpendQuery, error) {
	q := collector.SpendQuery{To: now}
	v := r.URL.Query()
	from := v.Get("from")
	if from == "" {
		return q, fmt.Errorf("from: required, a time (RFC 3339, e.g. 2026-12-01T00:00:00Z) or a date (2026-12-01, UTC)")
	}
	var err error
	if q.From, err = parseTime(from); err != nil {
		return q, fmt.Errorf("from: %w", err)
	}
	if to := v.Get("to"); to != "" {
		if q.To, err = parseTime(to); err != nil {
			return q, fmt.Errorf("to: %w", err)
		}
	}
	if !q.From.Before(q.To) {
		return q, fmt.Errorf("to: %s is not after from (%s)", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	}
	if q.To.Sub(q.From) > maxSpendRange {
		return q, fmt.Errorf("from: the range is over %d days; ask for less", int(maxSpendRange.Hours()/24))
	}
	groups := v.Get("group_by")
	if groups == "" {
		groups = string(collector.SpendByTenant)
	}
	for _, g := range strings.Split(groups, ",") {
		g := collector.SpendGroup(strings.TrimSpace(g))
		if !slices.Contains(collector.SpendGroups, g) {
			return q, fmt.Errorf("group_by: %q is not one of tenant, route, model", truncate(string(g), 32))
		}
		if slices.Contains(q.GroupBy, g) {
			return q, fmt.Errorf("group_by: %q twice", g)
		}
		q.GroupBy = append(q.GroupBy, g)
	}
	return q, nil
}

// parseTime reads RFC 3339 or a date, which is midnight UTC.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, e.g. 2026-12-01T00:00:00Z) or a date (2026-12-01)", truncate(s, 40))
}

// spendJSON is one group of a report.
type spendJSON struct {
	Group            map[string]string `json:"group"`
	Requests         int64             `json:"requests"`
	Tokens           tokensJSON        `json:"tokens"`
	CostUSD          float64           `json:"cost_usd"`
	CostNanos        int64             `json:"cost_nanos"`
	UnpricedRequests int64             `json:"unpriced_requests"`
}

type tokensJSON struct {
	Input      int64 `json:"input"`
	Output     int64 `json:"output"`
	CacheRead  int64 `json:"cache_read"`
	CacheWrite int64 `json:"cache_write"`
	Reasoning  int64 `json:"reasoning"`
}

type spendReport struct {
	From    time.Time              `json:"from"`
	To      time.Time              `json:"to"`
	GroupBy []collector.SpendGroup `json:"group_by"`
	Groups  []spendJSON            `json:"groups"`
	Total   spendJSON              `json:"total"`
}

// spend answers a spend report (admin): JSON, or CSV for Accept: text/csv.
func (s *Server) spend(w http.ResponseWriter, r *http.Request) {
	if err := s.adminOnly(r); err != nil {
		writeError(w, err)
		return
	}
	q, err := spendQuery(r, time.Now())
	if err != nil {
		writeError(w, fail(errInvalid, "%v", err))
		return
	}
	rows, err := s.opt.Spend.Spend(r.Context(), q)
	if err != nil {
		s.opt.Logger.Error("spend report", "err", err)
		writeError(w, unavailable("storage unavailable"))
		return
	}
	rep := spendReport{From: q.From.UTC(), To: q.To.UTC(), GroupBy: q.GroupBy, Groups: []spendJSON{}}
	var total collector.SpendRow
	for _, row := range rows {
		rep.Groups = append(rep.Groups, spendBody(q.GroupBy, row))
		total.Requests += row.Requests
		total.Input += row.Input
		total.Output += row.Output
		total.CacheRead += row.CacheRead
		total.CacheWrite += row.CacheWrite
		total.Reasoning += row.Reasoning
		total.Cost += row.Cost
		total.Unpriced += row.Unpriced
	}
	rep.Total = spendBody(nil, total)
	if strings.Contains(r.Header.Get("Accept"), "text/csv") {
		writeSpendCSV(w, rep)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func spendBody(groups []collector.SpendGroup, r collector.SpendRow) spendJSON {
	b := spendJSON{
		Requests: r.Requests,
		Tokens:   tokensJSON{Input: r.Input, Output: r.Output, CacheRead: r.CacheRead, CacheWrite: r.CacheWrite, Reasoning: r.Reasoning},
		CostUSD:  r.Cost.Dollars(), CostNanos: int64(r.Cost), UnpricedRequests: r.Unpriced,
	}
	if len(groups) > 0 {
		b.Group = map[string]string{}
		for i, g := range groups {
			if i < len(r.Group) {
				b.Group[string(g)] = r.Group[i]
			}
		}
	}
	return b
}

// writeSpendCSV writes a report as CSV, one group a line, the total last.
func writeSpendCSV(w http.ResponseWriter, rep spendReport) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	c := csv.NewWriter(w)
	head := make([]string, 0, len(rep.GroupBy)+9)
	for _, g := range rep.GroupBy {
		head = append(head, string(g))
	}
	head = append(head, "requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "unpriced_requests")
	_ = c.Write(head)
	line := func(group []string, b spendJSON) {
		rec := append(group, strconv.FormatInt(b.Requests, 10),
			strconv.FormatInt(b.Tokens.Input, 10), strconv.FormatInt(b.Tokens.Output, 10), strconv.FormatInt(b.Tokens.CacheRead, 10),
			strconv.FormatInt(b.Tokens.CacheWrite, 10), strconv.FormatInt(b.Tokens.Reasoning, 10),
			dollars(b.CostNanos), strconv.FormatInt(b.UnpricedRequests, 10))
		_ = c.Write(rec)
	}
	for _, g := range rep.Groups {
		group := make([]string, len(rep.GroupBy))
		for i, name := range rep.GroupBy {
			group[i] = csvSafe(g.Group[string(name)])
		}
		line(group, g)
	}
	total := make([]string, len(rep.GroupBy))
	if len(total) > 0 {
		total[0] = "(total)"
	}
	line(total, rep.Total)
	c.Flush()
}

// dollars writes nano-dollars as an exact decimal of US dollars.
func dollars(nanos int64) string {
	sign := ""
	if nanos < 0 {
		sign, nanos = "-", -nanos
	}
	return fmt.Sprintf("%s%d.%09d", sign, nanos/1e9, nanos%1e9)
}

// csvSafe keeps a spreadsheet from reading a client-chosen name (a tenant,
// a model) as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
