package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Retainer enforces the schema's retention on a server without TTL
// (before 20.1, such as 18.16), where the table cannot expire its own
// rows: it drops each monthly partition once all of its rows are past
// Schema.Retention, and empties the bodies and chunks of rows past
// Schema.BodyRetention with a mutation. On a server with TTL it does
// nothing: the table's TTLs do it (migration 2).
type Retainer struct {
	conn   driver.Conn
	schema Schema
	now    func() time.Time
	log    *slog.Logger
}

// NewRetainer returns a Retainer for schema on conn; a nil logger discards.
func NewRetainer(conn driver.Conn, schema Schema, logger *slog.Logger) *Retainer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Retainer{conn: conn, schema: schema.withDefaults(), now: time.Now, log: logger}
}

// RetentionInterval is how often Run enforces the retention.
const RetentionInterval = time.Hour

// Run enforces the retention now and then every RetentionInterval until
// ctx ends. A failed round is logged and tried again at the next.
func (r *Retainer) Run(ctx context.Context) error {
	return every(ctx, RetentionInterval, r.Enforce, r.log, "retention not enforced; tried again later")
}

// every runs round now and then every interval until ctx ends; a failed
// round is logged with msg and tried again at the next.
func every(ctx context.Context, interval time.Duration, round func(context.Context) error, log *slog.Logger, msg string) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := round(ctx); err != nil && ctx.Err() == nil {
			log.Warn(msg, "err", err, "in", interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Enforce runs one round: partitions past the retention dropped, bodies
// past the body retention emptied. It reports what it did through the log.
func (r *Retainer) Enforce(ctx context.Context) error {
	v, err := ServerVersion(ctx, r.conn)
	if err != nil {
		return err
	}
	if FeaturesOf(v).TTL {
		return nil
	}
	s := r.schema
	now := r.now().UTC()
	if s.Retention > 0 {
		tables := []string{s.storageTable(), s.byIDStorage()}
		for _, t := range rollups {
			tables = append(tables, t.storage(s))
		}
		for _, table := range tables {
			if err := r.dropPartitions(ctx, table, now.Add(-s.Retention)); err != nil {
				return err
			}
		}
	}
	if s.BodyRetention > 0 && (s.Retention == 0 || s.BodyRetention < s.Retention) {
		if err := r.emptyBodies(ctx, now.Add(-s.BodyRetention)); err != nil {
			return err
		}
	}
	return nil
}

// dropPartitions drops the monthly partitions of table whose every row
// started before cutoff: a partition's rows go once its whole month is past, so a
// row may stay up to a month longer than the retention.
func (r *Retainer) dropPartitions(ctx context.Context, table string, cutoff time.Time) error {
	rows, err := r.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active",
		r.schema.Database, tableName(table))
	if err != nil {
		return fmt.Errorf("clickhouse: retention: list the partitions of %s: %w", table, err)
	}
	var old []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fmt.Errorf("clickhouse: retention: list the partitions of %s: %w", table, err)
		}
		month, err := strconv.Atoi(p)
		if err != nil {
			continue // not a toYYYYMM partition: not ours to judge
		}
		end := time.Date(month/100, time.Month(month%100)+1, 1, 0, 0, 0, 0, time.UTC)
		if !end.After(cutoff) {
			old = append(old, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: retention: list the partitions of %s: %w", table, err)
	}
	for _, p := range old {
		if err := r.conn.Exec(ctx, "ALTER TABLE "+table+r.schema.onCluster()+" DROP PARTITION "+p); err != nil {
			return fmt.Errorf("clickhouse: retention: drop partition %s of %s: %w", p, table, err)
		}
		r.log.Info("dropped a partition past the retention", "table", table, "partition", p, "retention", r.schema.Retention)
	}
	return nil
}

// emptyBodies empties the bodies and chunks of the rows that started
// before cutoff and still hold some, with one mutation (a rewrite of the
// parts it touches, in the background).
func (r *Retainer) emptyBodies(ctx context.Context, cutoff time.Time) error {
	table := r.schema.storageTable()
	var n uint64
	if err := r.conn.QueryRow(ctx, "SELECT count() FROM "+table+" WHERE start < ? AND "+holdsBodies, cutoff).Scan(&n); err != nil {
		return fmt.Errorf("clickhouse: retention: count the bodies past the body retention in %s: %w", table, err)
	}
	if n == 0 {
		return nil
	}
	stmt := "ALTER TABLE " + table + r.schema.onCluster() + ` UPDATE request_body = '', response_body = '',
    response_chunks = emptyArrayString(), chunk_starts = emptyArrayUInt32(), chunk_ends = emptyArrayUInt32(),
    chunk_offsets_us = emptyArrayInt64() WHERE start < ? AND ` + holdsBodies
	if err := r.conn.Exec(ctx, stmt, cutoff); err != nil {
		return fmt.Errorf("clickhouse: retention: empty the bodies past the body retention in %s: %w", table, err)
	}
	r.log.Info("emptying the bodies past the body retention", "table", table, "rows", n, "body_retention", r.schema.BodyRetention)
	return nil
}

// holdsBodies is true of a row with a body or chunks left.
const holdsBodies = "(request_body != '' OR response_body != '' OR notEmpty(response_chunks) OR notEmpty(chunk_offsets_us))"

// tableName is the table part of db.table.
func tableName(qualified string) string {
	for i := len(qualified) - 1; i >= 0; i-- {
		if qualified[i] == '.' {
			return qualified[i+1:]
		}
	}
	return qualified
}
