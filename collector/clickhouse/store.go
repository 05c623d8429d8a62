package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/llmtap/llmtap/collector"
)

// Store reads facts back. It implements collector.Store.
type Store struct {
	conn     driver.Conn
	database string
	keySQL   string
	getSQL   string
}

var _ collector.Store = (*Store)(nil)

// NewStore returns a Store over the requests table of database
// (DefaultDatabase when empty).
func NewStore(conn driver.Conn, database string) *Store {
	database = databaseOr(database)
	return &Store{
		conn:     conn,
		database: database,
		keySQL: "SELECT route, start FROM " + database + "." + byIDTable +
			" WHERE request_id = ? ORDER BY inserted_at DESC LIMIT 1",
		// Before a merge a replayed request has several rows; the newest
		// version wins as ReplacingMergeTree's merge would pick it, where
		// FINAL would merge every part's key columns.
		getSQL: "SELECT " + columnList() + " FROM " + database + "." + requestsTable +
			" WHERE route = ? AND start = ? AND request_id = ? ORDER BY inserted_at DESC, start_ms DESC LIMIT 1",
	}
}

// Get returns the fact of a request id, or an error wrapping
// collector.ErrNotFound. It finds the row in two steps that do not grow
// with the table: its sort key's (route, start) from requests_by_id by
// id, then the row through the sort key. (One query with the first as a
// subquery would need GLOBAL IN on a cluster, which 18.16 runs without
// the index.)
func (s *Store) Get(ctx context.Context, requestID string) (*collector.Fact, error) {
	if err := validDatabase(s.database); err != nil {
		return nil, err
	}
	var route string
	var start time.Time
	found, err := s.first(ctx, s.keySQL, []any{requestID}, &route, &start)
	if err == nil && found {
		var r row
		if found, err = s.first(ctx, s.getSQL, []any{route, start, requestID}, r.dests()...); err == nil && found {
			return r.fact(), nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("clickhouse: get request %q: %w", requestID, err)
	}
	return nil, fmt.Errorf("clickhouse: request %q: %w", requestID, collector.ErrNotFound)
}

// first scans the first row of a query into dests; found is false when
// there is none.
func (s *Store) first(ctx context.Context, query string, args []any, dests ...any) (found bool, err error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	return true, rows.Scan(dests...)
}

// Ping checks ClickHouse answers, for readiness.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: ping: %w", err)
	}
	return nil
}
