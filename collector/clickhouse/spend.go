package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/llmtap/llmtap/collector"
)

var _ collector.SpendReader = (*Store)(nil)

// spendColumns are the columns a SpendGroup reads.
var spendColumns = map[collector.SpendGroup]string{
	collector.SpendByTenant: "tenant",
	collector.SpendByRoute:  "route",
	collector.SpendByModel:  "model",
}

// Spend sums the requests of a time range by group, the biggest cost
// first. It reads the table FINAL: a replayed record's rows count once.
func (s *Store) Spend(ctx context.Context, q collector.SpendQuery) ([]collector.SpendRow, error) {
	if err := validDatabase(s.database); err != nil {
		return nil, err
	}
	if len(q.GroupBy) == 0 {
		return nil, fmt.Errorf("clickhouse: spend: no group")
	}
	cols := make([]string, len(q.GroupBy))
	for i, g := range q.GroupBy {
		c, ok := spendColumns[g]
		if !ok {
			return nil, fmt.Errorf("clickhouse: spend: unknown group %q", g)
		}
		cols[i] = c
	}
	group := strings.Join(cols, ", ")
	hours, err := s.rolledUntil(ctx, requestsHourly)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: spend: %w", err)
	}
	days, err := s.rolledUntil(ctx, requestsDaily)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: spend: %w", err)
	}
	p := splitRange(q.From.UTC(), q.To.UTC(), hours, days)
	sums := `count() AS n,
	sum(ifNull(input_tokens, 0)) AS i, sum(ifNull(output_tokens, 0)) AS o, sum(ifNull(cache_read_tokens, 0)) AS cr,
	sum(ifNull(cache_write_tokens, 0)) AS cw, sum(ifNull(reasoning_tokens, 0)) AS r,
	sum(ifNull(cost_nanos, 0)) AS c,
	countIf(isNull(cost_nanos) AND (isNotNull(input_tokens) OR isNotNull(output_tokens))) AS u`
	merged := `countMerge(requests), sumMerge(input), sumMerge(output), sumMerge(cache_read),
	sumMerge(cache_write), sumMerge(reasoning), sumMerge(spend_nanos), sumMerge(unpriced)`
	// The rows: the range but its rolled hours, as two ranges rather than
	// their negation, which the index cannot use.
	parts := []string{"SELECT " + group + ", " + sums + "\nFROM " + s.database + "." + requestsTable + " FINAL\nWHERE start >= " + sqlTime(p.from) +
		" AND start < " + sqlTime(p.to) + " AND (start < " + sqlTime(p.hours[0]) + " OR start >= " + sqlTime(p.hours[1]) + ")\nGROUP BY " + group}
	for _, part := range []struct {
		r        rollup
		from, to time.Time
	}{{requestsHourly, p.hours[0], p.days[0]}, {requestsDaily, p.days[0], p.days[1]}, {requestsHourly, p.days[1], p.hours[1]}} {
		if part.from.Before(part.to) {
			parts = append(parts, "SELECT "+group+", "+merged+"\nFROM "+s.database+"."+part.r.name+
				"\nWHERE "+part.r.latest(s.database, sqlTime(part.from), sqlTime(part.to))+"\nGROUP BY "+group)
		}
	}
	query := "SELECT " + group + `, sum(n), sum(i), sum(o), sum(cr), sum(cw), sum(r), sum(c), sum(u)
FROM (` + strings.Join(parts, "\nUNION ALL\n") + `)
GROUP BY ` + group + `
ORDER BY sum(c) DESC, sum(n) DESC, ` + group
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: spend: %w", err)
	}
	defer rows.Close()
	var out []collector.SpendRow
	for rows.Next() {
		r := collector.SpendRow{Group: make([]string, len(cols))}
		var requests, unpriced uint64
		var cost int64
		dests := make([]any, 0, len(cols)+8)
		for i := range r.Group {
			dests = append(dests, &r.Group[i])
		}
		dests = append(dests, &requests, &r.Input, &r.Output, &r.CacheRead, &r.CacheWrite, &r.Reasoning, &cost, &unpriced)
		if err := rows.Scan(dests...); err != nil {
			return nil, fmt.Errorf("clickhouse: spend: %w", err)
		}
		r.Requests, r.Unpriced, r.Cost = int64(requests), int64(unpriced), collector.Money(cost)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: spend: %w", err)
	}
	return out, nil
}

// rolledUntil is where the rollup's rolled hours or days end (the Roller
// rolls them in order): the zero time when it holds none.
func (s *Store) rolledUntil(ctx context.Context, r rollup) (time.Time, error) {
	var n uint64
	var last time.Time
	if err := s.conn.QueryRow(ctx, "SELECT count(), max("+r.grain.column+") FROM "+s.database+"."+r.name).Scan(&n, &last); err != nil {
		return time.Time{}, fmt.Errorf("read where %s ends: %w", r.name, err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return last.UTC().Add(r.grain.length), nil
}

// rangeParts is a time range [from, to) cut where a report reads each
// part: whole days in [days[0], days[1]) from a daily rollup, whole hours
// in [hours[0], hours[1]) but those days from an hourly one, the rest
// from the rows. An empty part has equal bounds.
type rangeParts struct {
	from, to    time.Time
	hours, days [2]time.Time
}

// splitRange cuts [from, to) given where the hourly and the daily
// rollups' rolled times end.
func splitRange(from, to, hoursUntil, daysUntil time.Time) rangeParts {
	p := rangeParts{from: from, to: to}
	h1, h2 := ceilTo(from, time.Hour), earlier(to.Truncate(time.Hour), hoursUntil)
	if !h1.Before(h2) {
		p.hours = [2]time.Time{from, from}
		p.days = p.hours
		return p
	}
	p.hours = [2]time.Time{h1, h2}
	d1, d2 := ceilTo(from, daily.length), earlier(to, earlier(daysUntil, h2)).Truncate(daily.length)
	if !d1.Before(d2) {
		d1, d2 = h2, h2
	}
	p.days = [2]time.Time{d1, d2}
	return p
}

// ceilTo is t rounded up to a multiple of d.
func ceilTo(t time.Time, d time.Duration) time.Time {
	if c := t.Truncate(d); c.Before(t) {
		return c.Add(d)
	}
	return t
}

// earlier is the earlier of a and b.
func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sqlTime is t as a ClickHouse DateTime literal, in whole seconds.
func sqlTime(t time.Time) string {
	return "toDateTime(" + strconv.FormatInt(t.Unix(), 10) + ")"
}
