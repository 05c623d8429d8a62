package clickhouse

import (
	"context"
	"fmt"
	"strings"

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
	query := "SELECT " + group + `, count(),
	sum(ifNull(input_tokens, 0)), sum(ifNull(output_tokens, 0)), sum(ifNull(cache_read_tokens, 0)),
	sum(ifNull(cache_write_tokens, 0)), sum(ifNull(reasoning_tokens, 0)),
	sum(ifNull(cost_nanos, 0)),
	countIf(isNull(cost_nanos) AND (isNotNull(input_tokens) OR isNotNull(output_tokens)))
FROM ` + s.database + "." + requestsTable + ` FINAL
WHERE start >= ? AND start < ?
GROUP BY ` + group + `
ORDER BY sum(ifNull(cost_nanos, 0)) DESC, count() DESC, ` + group
	rows, err := s.conn.Query(ctx, query, q.From.UTC(), q.To.UTC())
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
