//go:build integration || chdb

package clickhouse

// Checks that run on every ClickHouse the tests have: the real 18.16
// server (integration) and the current engine in process (chdb).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/internal/dashboards"
)

// migrateFresh drops schema's database and migrates it from nothing, runs
// times (a second run must change nothing), and returns the migrations
// recorded, "version name" in order.
func migrateFresh(t *testing.T, conn driver.Conn, schema Schema, runs int) []string {
	t.Helper()
	ctx := context.Background()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+schema.Database); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= runs; run++ {
		if err := NewMigrator(conn, schema, testLogger(t)).Migrate(ctx); err != nil {
			t.Fatalf("migrate, run %d: %v", run, err)
		}
	}
	rows, err := conn.Query(ctx, "SELECT version, name FROM "+schema.Database+".llmtap_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var (
			v    uint32
			name string
		)
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, name))
	}
	return got
}

func count(t *testing.T, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// checkColumns: table has the columns of requests with the types of its
// server, in the writer's order (system.columns lists them in table
// order), then the alias chunks. The columns of migrations before
// madeBy keep the legacy types of the table's first DDL (an upgraded
// table); 0 is a table made on this server.
func checkColumns(t *testing.T, conn driver.Conn, db, table string, madeBy int) {
	t.Helper()
	v, err := ServerVersion(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	f := FeaturesOf(v)
	rows, err := conn.Query(context.Background(), "SELECT name, type, default_kind FROM system.columns WHERE database = ? AND table = ?", db, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name, typ, kind string
		if err := rows.Scan(&name, &typ, &kind); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.TrimSpace(name+" "+typ+" "+kind))
	}
	var want []string
	for _, c := range columns {
		typ := columnType(column{typ: c.typ, class: c.class}, f)
		if c.since < madeBy {
			typ = c.typ
		}
		want = append(want, c.name+" "+typ)
	}
	want = append(want, "chunks Array(String) ALIAS")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s.%s columns:\n%s\nwant\n%s", db, table, strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// checkUpgrade upgrades a table of the schema before migration 3, holding
// a row written then: migrations 3 (chunk spans) and 4 (cost) add their
// columns, each applies once, the alias reads the chunks of the old row
// (texts) and of new rows (spans) alike, as Store.Get does, and the old
// row has no cost (NULL, not $0). keep says which facts the backend can
// round-trip (chDB's JSON results carry no bytes that are not UTF-8).
func checkUpgrade(t *testing.T, conn driver.Conn, db string, keep func(*collector.Fact) bool) {
	t.Helper()
	ctx := context.Background()
	old, err := os.ReadFile("testdata/requests_before_chunk_spans.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{
		"DROP DATABASE IF EXISTS " + db,
		"CREATE DATABASE " + db,
		strings.ReplaceAll(string(old), "llmtap.", db+"."),
	} {
		if err := conn.Exec(ctx, st); err != nil {
			t.Fatalf("%v\n%s", err, st)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".requests (request_id, start, route, response_body, response_chunks)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append("old", time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC), "r", "data: a\n\ndata: b\n\n", []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		if err := NewMigrator(conn, Schema{Database: db}, testLogger(t)).Migrate(ctx); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
	for _, v := range []int{chunkSpansSince, costSince} {
		if got := count(t, conn, "SELECT count() FROM "+db+".llmtap_migrations WHERE version = ?", v); got != 1 {
			t.Errorf("migration %d recorded %d times, want once", v, got)
		}
	}
	checkColumns(t, conn, db, "requests", chunkSpansSince) // the old table is 18.16's
	if got := count(t, conn, "SELECT count() FROM "+db+".requests_by_id WHERE request_id = 'old' AND route = 'r'"); got != 1 {
		t.Errorf("the row written before migration 7 has %d entries in requests_by_id, want 1 (backfilled)", got)
	}
	// The backfill of the rollups: the hours and days of rows written
	// before them; then again where migration 9's rollups came after
	// migration 8's were filled.
	for _, stage := range []string{"migrations 8 and 9", "migration 9 after 8"} {
		if err := NewRoller(conn, Schema{Database: db}, testLogger(t)).Roll(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range rollups {
			want := uint64(1)
			if r.rows != "" {
				want = 0 // the old row did not fail
			}
			if got := count(t, conn, "SELECT "+requestsOf(r)+" FROM "+db+"."+r.name+" WHERE route = 'r' AND "+
				r.latest(db, "toDateTime('2026-03-14 00:00:00', 'UTC')", "toDateTime('2026-03-15 00:00:00', 'UTC')")); got != want {
				t.Errorf("%s: the row written before the rollups counts %d times in %s, want %d (backfilled)", stage, got, r.name, want)
			}
		}
		for _, r := range []rollup{requestsDaily, latencyHourly, errorsHourly} {
			if err := conn.Exec(ctx, "TRUNCATE TABLE "+db+"."+r.name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests WHERE request_id = 'old' AND isNull(cost_nanos) AND price_version = ''"); got != 1 {
		t.Error("the row written before migration 4 does not read as unpriced")
	}

	facts := map[string]*collector.Fact{"old": {RequestID: "old", Chunks: []string{"a", "b"}}}
	for _, i := range []int{0, 2, 4, 6} { // spans for 4; texts for 2, 6 and 0 (a binary body); 4 and 6 priced
		if f := testFact(i); keep(f) {
			facts[f.RequestID] = f
		}
	}
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	for id, f := range facts {
		if id != "old" {
			if err := w.Enqueue(context.Background(), f); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop()
	waitFor(t, "rows written", func() bool { return count(t, conn, "SELECT count() FROM "+db+".requests") == uint64(len(facts)) })
	store := NewStore(conn, db)
	for id, f := range facts {
		var alias []string
		if err := conn.QueryRow(ctx, "SELECT chunks FROM "+db+".requests WHERE request_id = ?", id).Scan(&alias); err != nil {
			t.Fatal(err)
		}
		got, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(alias, f.Chunks) || !reflect.DeepEqual(got.Chunks, f.Chunks) {
			t.Errorf("%s: chunks %q by the alias, %q by Get; want %q", id, alias, got.Chunks, f.Chunks)
		}
		if !reflect.DeepEqual(got.Cost, f.Cost) {
			t.Errorf("%s: cost %+v, want %+v", id, got.Cost, f.Cost)
		}
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests WHERE notEmpty(chunk_ends) AND empty(response_chunks)"); got != 1 {
		t.Errorf("%d rows store their chunks as spans, want 1 (testFact(4))", got)
	}
}

// checkSpend: the spend report, grouped by one and by two dimensions,
// matches sums made here from the same facts, spread over three days:
// from the rows alone, with part of the hours rolled up, with all of them
// and the whole days, and with a late row rolled again; a replayed record counts once, and
// requests outside the range not at all.
func checkSpend(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	const n = 200
	ctx := context.Background()
	migrateFresh(t, conn, Schema{Database: db}, 1)
	base := testFact(0).Start
	var facts []*collector.Fact
	for i := 0; i <= n; i++ {
		f := testFact(i)
		f.Start = base.Add(time.Duration(i) * 20 * time.Minute)
		facts = append(facts, f)
	}
	// The last is written after the rest are rolled up: a late row.
	late := facts[n]
	late.Start = facts[100].Start.Add(time.Second)
	from, to := facts[20].Start.Truncate(time.Second), facts[150].Start.Truncate(time.Second)
	want := map[string]*collector.SpendRow{}
	wantPair := map[string]*collector.SpendRow{}
	for _, f := range facts {
		if f.Start.Before(from) || !f.Start.Before(to) {
			continue
		}
		for key, m := range map[string]map[string]*collector.SpendRow{f.Tenant: want, f.Route + "|" + f.Model: wantPair} {
			r := m[key]
			if r == nil {
				r = &collector.SpendRow{Group: strings.Split(key, "|")}
				m[key] = r
			}
			r.Requests++
			u := f.Usage
			for _, p := range []struct {
				dst *int64
				v   *int64
			}{{&r.Input, u.Input}, {&r.Output, u.Output}, {&r.CacheRead, u.CacheRead}, {&r.CacheWrite, u.CacheWrite}, {&r.Reasoning, u.Reasoning}} {
				if p.v != nil {
					*p.dst += *p.v
				}
			}
			switch {
			case f.Cost != nil:
				r.Cost += f.Cost.Total
			case u.Input != nil || u.Output != nil:
				r.Unpriced++
			}
		}
	}
	write := func(facts ...*collector.Fact) {
		t.Helper()
		w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
		if err := w.Enqueue(ctx, facts...); err != nil {
			t.Fatal(err)
		}
		stop() // Run drains its queue before it returns
		if st := w.Stats(); st.Written != uint64(len(facts)) || st.WriteErrors != 0 {
			t.Fatalf("writer stats %+v, want %d rows written", st, len(facts))
		}
	}
	// A replay of some records: the same rows again.
	write(append(facts[:n:n], facts[30:60]...)...)

	store := NewStore(conn, db)
	check := func(stage string, skip map[string]bool) {
		t.Helper()
		for _, tt := range []struct {
			groups []collector.SpendGroup
			want   map[string]*collector.SpendRow
		}{
			{[]collector.SpendGroup{collector.SpendByTenant}, want},
			{[]collector.SpendGroup{collector.SpendByRoute, collector.SpendByModel}, wantPair},
		} {
			got, err := store.Spend(ctx, collector.SpendQuery{From: from, To: to, GroupBy: tt.groups})
			if err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("%s, %v: %d groups, want %d: %+v", stage, tt.groups, len(got), len(tt.want), got)
			}
			for i, r := range got {
				key := strings.Join(r.Group, "|")
				if w := tt.want[key]; !skip[key] && (w == nil || !reflect.DeepEqual(r, *w)) {
					t.Errorf("%s, %v: %+v, want %+v", stage, tt.groups, r, w)
				}
				if i > 0 && got[i-1].Cost < r.Cost {
					t.Errorf("%s, %v: not the biggest cost first: %+v before %+v", stage, tt.groups, got[i-1], r)
				}
			}
		}
	}
	lateGroups := map[string]bool{late.Tenant: true, late.Route + "|" + late.Model: true}
	check("the rows alone", lateGroups)
	roller := NewRoller(conn, Schema{Database: db}, testLogger(t))
	for h := base.Truncate(time.Hour); h.Before(facts[90].Start); h = h.Add(time.Hour) {
		if err := roller.rollHour(ctx, h, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	check("the first hours rolled up", lateGroups)
	if err := roller.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, "SELECT count(DISTINCT hour) FROM "+db+".requests_hourly"); got != 67 {
		t.Fatalf("%d hours rolled up, want the 67 of the facts", got)
	}
	if got := count(t, conn, "SELECT count(DISTINCT day) FROM "+db+".requests_daily"); got != 4 {
		t.Fatalf("%d days rolled up, want the 4 the facts fall on", got)
	}
	check("every hour rolled up", lateGroups)
	write(late)
	if err := roller.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	check("a late row rolled again", nil)
	// Every rollup counts what the rows do, hour by hour or day by day:
	// latency_hourly's histograms every request once, errors_hourly the
	// failed ones.
	var all, failed, output, spend int64
	for _, f := range facts {
		all++
		if f.ErrorType != "" {
			failed++
		}
		if f.Usage.Output != nil {
			output += *f.Usage.Output
		}
		if f.Cost != nil {
			spend += int64(f.Cost.Total)
		}
	}
	for _, r := range rollups {
		sums, want := "sumMerge(output), sumMerge(spend_nanos)", [3]int64{all, output, spend}
		switch r.name {
		case latencyHourly.name:
			sums, want = "toInt64(0), toInt64(0)", [3]int64{all, 0, 0}
		case errorsHourly.name:
			sums, want = "toInt64(0), toInt64(0)", [3]int64{failed, 0, 0}
		}
		q := "SELECT " + requestsOf(r) + ", " + sums + " FROM " + db + "." + r.name + " WHERE " + r.latest(db, "toDateTime(0)", "toDateTime(4000000000)")
		var n uint64
		var got [3]int64
		if err := conn.QueryRow(ctx, q).Scan(&n, &got[1], &got[2]); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if got[0] = int64(n); got != want {
			t.Errorf("%s: %d requests, %d output tokens, %d spent; want %v", r.name, got[0], got[1], got[2], want)
		}
	}
	if failed == 0 {
		t.Fatal("no failed request among the facts")
	}
	if _, err := store.Spend(ctx, collector.SpendQuery{From: from, To: to, GroupBy: []collector.SpendGroup{"path"}}); err == nil {
		t.Error("a report grouped by an unknown dimension was answered")
	}
}

// checkDocumentedQueries runs every SQL block of docs/queries.md over
// recent facts of every kind and error class: each answers with rows.
func checkDocumentedQueries(t *testing.T, conn driver.Conn) {
	t.Helper()
	now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	const db = "llmtap_docs"
	ctx := context.Background()
	migrateFresh(t, conn, Schema{Database: db}, 1)
	w := NewWriter(conn, WriterOptions{Database: db, BatchSize: 10, FlushInterval: 50 * time.Millisecond, QueueSize: 100, Logger: testLogger(t)})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for i := 0; i < 5; i++ {
		f := testFact(i)
		f.Start = now.Add(-time.Minute)
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// The facts' hour and day rolled up, for the queries of the rollups.
	roller := NewRoller(conn, Schema{Database: db}, testLogger(t))
	if err := roller.rollHour(ctx, now.Add(-time.Minute).Truncate(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if err := roller.rollDay(ctx, now.Truncate(daily.length), now); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/queries.md")
	if err != nil {
		t.Fatal(err)
	}
	queries := fencedBlocks(string(doc), "sql")
	if len(queries) < 5 {
		t.Fatalf("found %d queries in docs/queries.md", len(queries))
	}
	for _, q := range queries {
		q = strings.ReplaceAll(q, "llmtap.", db+".")
		q = strings.ReplaceAll(q, "{request_id}", testFact(0).RequestID)
		q = strings.ReplaceAll(q, "now()", now.Format("toDateTime('2006-01-02 15:04:05', 'UTC')"))
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Errorf("documented query fails: %v\n%s", err, q)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("documented query fails: %v\n%s", err, q)
		}
		_ = rows.Close()
		// The facts include every kind and error class, so each query has rows.
		if n == 0 {
			t.Errorf("documented query returned no rows over recent facts:\n%s", q)
		}
	}
}

// fencedBlocks returns the Markdown text's code blocks fenced as lang.
func fencedBlocks(md, lang string) []string {
	var out []string
	for _, part := range strings.Split(md, "```"+lang+"\n")[1:] {
		if end := strings.Index(part, "```"); end >= 0 {
			out = append(out, part[:end])
		}
	}
	return out
}

// timeFilterRE is the ClickHouse datasource's $__timeFilter(column).
var timeFilterRE = regexp.MustCompile(`\$__timeFilter\((\w+)\)`)

// checkDashboardQueries runs the SQL of every panel of the Grafana
// ClickHouse dashboards as the datasource would send it, over the time of
// the facts written, with all routes and one request id chosen: each
// answers with rows. Then again over a range of days, with the facts'
// hour rolled up, where the summary panels read the rollup: they answer
// as they did from the rows.
func checkDashboardQueries(t *testing.T, conn driver.Conn) {
	t.Helper()
	const db = "llmtap_dashboards"
	ctx := context.Background()
	migrateFresh(t, conn, Schema{Database: db}, 1)
	var facts []*collector.Fact
	for i := 1; i <= 40; i++ {
		facts = append(facts, testFact(i))
	}
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	if err := w.Enqueue(ctx, facts...); err != nil {
		t.Fatal(err)
	}
	stop()
	// A streamed fact with chunks, so the drill-down panels have rows.
	// Hourly buckets: the facts' one hour is one bucket over both ranges.
	vars := map[string]string{"request_id": facts[3].RequestID, "__interval_s": "3600"}
	boards, err := dashboards.Load("../../grafana")
	if err != nil {
		t.Fatal(err)
	}
	// What the summary panels answer, compared across the two ranges.
	summaries := map[string]string{
		"Requests and median duration": "SELECT concat(toString(time), ' ', toString(requests), ' ', toString(duration_p50_s)) FROM (%s)",
		"Errors by route and class":    "SELECT concat(route, ' ', error_type, ' ', toString(requests), ' ', example) FROM (%s)",
		"Tenants by spend": "SELECT concat(tenant, ' ', toString(requests), ' ', toString(cost_usd), ' ', toString(unpriced), ' ', " +
			"toString(input), ' ', toString(output), ' ', toString(rate_limited)) FROM (%s)",
	}
	run := func(from, to time.Time) map[string][]string {
		t.Helper()
		fromSQL := "toDateTime(" + strconv.FormatInt(from.Unix(), 10) + ", 'UTC')"
		toSQL := "toDateTime(" + strconv.FormatInt(to.Unix(), 10) + ", 'UTC')"
		filter := "$1 >= " + fromSQL + " AND $1 <= " + toSQL
		answers := map[string][]string{}
		n := 0
		for _, d := range boards {
			for _, p := range d.Panels {
				for _, q := range p.RawSQL {
					n++
					q = timeFilterRE.ReplaceAllString(dashboards.Expand(q, vars), filter)
					q = strings.NewReplacer("$__fromTime", fromSQL, "$__toTime", toSQL, "llmtap.", db+".").Replace(q)
					if wrap, ok := summaries[p.Title]; ok {
						q = fmt.Sprintf(wrap, q)
					}
					rows, err := conn.Query(ctx, q)
					if err != nil {
						t.Errorf("%s, panel %q: %v\n%s", d.Title, p.Title, err, q)
						continue
					}
					var got []string
					for rows.Next() {
						var s string
						if _, ok := summaries[p.Title]; ok {
							if err := rows.Scan(&s); err != nil {
								t.Errorf("%s, panel %q: %v", d.Title, p.Title, err)
							}
						}
						got = append(got, s)
					}
					if err := rows.Err(); err != nil {
						t.Errorf("%s, panel %q: %v", d.Title, p.Title, err)
					}
					_ = rows.Close()
					if len(got) == 0 {
						t.Errorf("%s, panel %q: no rows over the facts written\n%s", d.Title, p.Title, q)
					}
					sort.Strings(got)
					answers[p.Title] = got
				}
			}
		}
		if n == 0 {
			t.Fatal("no panel with SQL in grafana/")
		}
		return answers
	}
	from, to := facts[0].Start.Truncate(time.Second), facts[len(facts)-1].Start.Add(time.Second)
	rows := run(from, to)
	if err := NewRoller(conn, Schema{Database: db}, testLogger(t)).Roll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests_daily"); got == 0 {
		t.Fatal("the facts' day is not rolled up")
	}
	rolled := run(from.Add(-48*time.Hour), to.Add(48*time.Hour))
	for title := range summaries {
		if !reflect.DeepEqual(rows[title], rolled[title]) {
			t.Errorf("panel %q over days, from the rollup:\n%q\nfrom the rows:\n%q", title, rolled[title], rows[title])
		}
	}
}
