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
	from, to := q.From.UTC(), q.To.UTC()
	// Whole hours the rollup holds come from it; the rest from the rows.
	h1, h2 := from.Truncate(time.Hour), to.Truncate(time.Hour)
	if h1.Before(from) {
		h1 = h1.Add(time.Hour)
	}
	until, err := s.rolledUntil(ctx)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: spend: %w", err)
	}
	if until.Before(h2) {
		h2 = until
	}
	raw := "SELECT " + group + `, count() AS n,
	sum(ifNull(input_tokens, 0)) AS i, sum(ifNull(output_tokens, 0)) AS o, sum(ifNull(cache_read_tokens, 0)) AS cr,
	sum(ifNull(cache_write_tokens, 0)) AS cw, sum(ifNull(reasoning_tokens, 0)) AS r,
	sum(ifNull(cost_nanos, 0)) AS c,
	countIf(isNull(cost_nanos) AND (isNotNull(input_tokens) OR isNotNull(output_tokens))) AS u
FROM ` + s.database + "." + requestsTable + ` FINAL
WHERE start >= ` + sqlTime(from) + " AND start < " + sqlTime(to)
	union := raw + "\nGROUP BY " + group
	if h1.Before(h2) {
		// Two ranges, not the one range's negation, which the index cannot use.
		union = raw + " AND (start < " + sqlTime(h1) + " OR start >= " + sqlTime(h2) + ")\nGROUP BY " + group + `
UNION ALL
SELECT ` + group + `, countMerge(requests), sumMerge(input), sumMerge(output), sumMerge(cache_read),
	sumMerge(cache_write), sumMerge(reasoning), sumMerge(spend_nanos), sumMerge(unpriced)
FROM ` + s.database + "." + requestsHourly.name + `
WHERE ` + RollupFilter(s.database, requestsHourly.name, sqlTime(h1), sqlTime(h2)) + `
GROUP BY ` + group
	}
	query := "SELECT " + group + `, sum(n), sum(i), sum(o), sum(cr), sum(cw), sum(r), sum(c), sum(u)
FROM (` + union + `)
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

// rolledUntil is where requests_hourly's rolled hours end (the Roller
// rolls them in order): the zero time when it holds none.
func (s *Store) rolledUntil(ctx context.Context) (time.Time, error) {
	var n uint64
	var last time.Time
	if err := s.conn.QueryRow(ctx, "SELECT count(), max(hour) FROM "+s.database+"."+requestsHourly.name).Scan(&n, &last); err != nil {
		return time.Time{}, fmt.Errorf("read where the rollup ends: %w", err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return last.UTC().Add(time.Hour), nil
}

// sqlTime is t as a ClickHouse DateTime literal, in whole seconds.
func sqlTime(t time.Time) string {
	return "toDateTime(" + strconv.FormatInt(t.Unix(), 10) + ")"
}
