package clickhouse

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/llmtap/llmtap/collector"
)

// Store reads facts back. It implements collector.Store.
type Store struct {
	conn     driver.Conn
	database string
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
		// The row is found through its sort key's (route, start), which
		// requests_by_id holds by id: the lookup does not grow with the
		// table (GLOBAL: on a cluster both tables are Distributed). Before
		// a merge a replayed request has several rows; the newest version
		// wins as ReplacingMergeTree's merge would pick it, where FINAL
		// would merge every part's key columns.
		getSQL: "SELECT " + columnList() + " FROM " + database + "." + requestsTable +
			" WHERE (route, start) GLOBAL IN (SELECT route, start FROM " + database + "." + byIDTable + " WHERE request_id = ?)" +
			" AND request_id = ? ORDER BY inserted_at DESC, start DESC, start_ms DESC LIMIT 1",
	}
}

// Get returns the fact of a request id, or an error wrapping
// collector.ErrNotFound.
func (s *Store) Get(ctx context.Context, requestID string) (*collector.Fact, error) {
	if err := validDatabase(s.database); err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, s.getSQL, requestID, requestID)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: get request %q: %w", requestID, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("clickhouse: get request %q: %w", requestID, err)
		}
		return nil, fmt.Errorf("clickhouse: request %q: %w", requestID, collector.ErrNotFound)
	}
	var r row
	if err := rows.Scan(r.dests()...); err != nil {
		return nil, fmt.Errorf("clickhouse: get request %q: %w", requestID, err)
	}
	return r.fact(), nil
}

// Ping checks ClickHouse answers, for readiness.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: ping: %w", err)
	}
	return nil
}
