//go:build integration

package clickhouse

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// TestIntegrationSpend: the spend report against the real server, grouped
// by one and by two dimensions, matches sums made here from the same
// facts; a replayed record counts once, and requests outside the range
// not at all.
func TestIntegrationSpend(t *testing.T) {
	const db, n = "it_spend", 200
	conn := openTest(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		t.Fatal(err)
	}
	if err := NewMigrator(conn, Schema{Database: db}, testLogger(t)).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var facts []*collector.Fact
	for i := 0; i < n; i++ {
		facts = append(facts, testFact(i))
	}
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
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	if err := w.Enqueue(ctx, facts...); err != nil {
		t.Fatal(err)
	}
	// A replay of some records: the same rows again.
	if err := w.Enqueue(ctx, facts[30:60]...); err != nil {
		t.Fatal(err)
	}
	stop()
	waitFor(t, "rows written", func() bool { return count(t, conn, "SELECT count() FROM "+db+".requests") == n+30 })

	store := NewStore(conn, db)
	for _, tt := range []struct {
		groups []collector.SpendGroup
		want   map[string]*collector.SpendRow
	}{
		{[]collector.SpendGroup{collector.SpendByTenant}, want},
		{[]collector.SpendGroup{collector.SpendByRoute, collector.SpendByModel}, wantPair},
	} {
		got, err := store.Spend(ctx, collector.SpendQuery{From: from, To: to, GroupBy: tt.groups})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%v: %d groups, want %d: %+v", tt.groups, len(got), len(tt.want), got)
		}
		for i, r := range got {
			w := tt.want[strings.Join(r.Group, "|")]
			if w == nil || !reflect.DeepEqual(r, *w) {
				t.Errorf("%v: %+v, want %+v", tt.groups, r, w)
			}
			if i > 0 && got[i-1].Cost < r.Cost {
				t.Errorf("%v: not the biggest cost first: %+v before %+v", tt.groups, got[i-1], r)
			}
		}
	}
	if _, err := store.Spend(ctx, collector.SpendQuery{From: from, To: to, GroupBy: []collector.SpendGroup{"path"}}); err == nil {
		t.Error("a report grouped by an unknown dimension was answered")
	}
}
