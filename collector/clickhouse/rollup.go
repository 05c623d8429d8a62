package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// RollupInterval is how often the Roller runs a round.
const RollupInterval = time.Minute

// rollupLag is how long after its end an hour is first rolled: the
// records of its last requests are still on their way (the plugin's
// batches, the collector's queue). A record that comes later is a late
// row, and its hour is rolled again.
const rollupLag = 2 * time.Minute

// lateMargin widens the search for late rows back in time: a row's
// inserted_at is taken by the collector that wrote it, before its insert
// ended, and collectors' clocks differ a little.
const lateMargin = time.Minute

// Roller keeps requests_hourly (migration 8) up to date: it rolls each
// hour up from the requests table read FINAL once the hour has ended, the
// hours before it first (the backfill of rows written before the rollup
// existed, an hour a statement), and rolls an hour again when rows of it
// are written after it was rolled (a spool replay, a resend). Every roll
// of an hour is a set of rows with its own rolled_ns; readers take each
// hour's latest set (RollupFilter). Rolls are idempotent: several
// collectors may run a Roller each.
type Roller struct {
	conn   driver.Conn
	schema Schema
	now    func() time.Time
	log    *slog.Logger

	// until: every hour before it is rolled (zero: not read yet);
	// checked: rows inserted before it were looked at for late rows.
	until, checked time.Time
}

// NewRoller returns a Roller for schema on conn; a nil logger discards.
func NewRoller(conn driver.Conn, schema Schema, logger *slog.Logger) *Roller {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Roller{conn: conn, schema: schema.withDefaults(), now: time.Now, log: logger}
}

// Run rolls now and then every RollupInterval until ctx ends. A failed
// round is logged and tried again at the next.
func (r *Roller) Run(ctx context.Context) error {
	t := time.NewTicker(RollupInterval)
	defer t.Stop()
	for {
		if err := r.Roll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("rollup not updated; tried again later", "err", err, "in", RollupInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Roll runs one round: the hours with late rows rolled again, then every
// ended hour not rolled yet.
func (r *Roller) Roll(ctx context.Context) error {
	now := r.now().UTC()
	if r.until.IsZero() {
		if err := r.resume(ctx, now); err != nil {
			return err
		}
	}
	late, err := r.lateHours(ctx)
	if err != nil {
		return err
	}
	for _, h := range late {
		if err := r.rollHour(ctx, h, now); err != nil {
			return err
		}
	}
	r.checked = now
	start, n := r.until, 0
	for ; !r.until.Add(time.Hour + rollupLag).After(now); r.until = r.until.Add(time.Hour) {
		if err := r.rollHour(ctx, r.until, now); err != nil {
			return err
		}
		n++
	}
	if n > 1 || len(late) > 0 {
		r.log.Info("rolled up", "hours", n, "from", start, "late", len(late), "took", time.Since(now).Round(time.Millisecond))
	}
	return nil
}

// resume finds where the rollup stands: after its last hour, or, when it
// is empty, at the first hour of the requests (a backfill) or the current
// one.
func (r *Roller) resume(ctx context.Context, now time.Time) error {
	db := r.schema.Database
	var last time.Time
	var rows, rolledNs uint64
	if err := r.conn.QueryRow(ctx, "SELECT count(), max(hour), max(rolled_ns) FROM "+db+"."+hourlyTable).Scan(&rows, &last, &rolledNs); err != nil {
		return fmt.Errorf("clickhouse: rollup: read where it stands: %w", err)
	}
	if rows > 0 {
		r.until, r.checked = last.UTC().Add(time.Hour), time.Unix(0, int64(rolledNs)).UTC()
		return nil
	}
	var first time.Time
	if err := r.conn.QueryRow(ctx, "SELECT count(), min(start) FROM "+db+"."+requestsTable).Scan(&rows, &first); err != nil {
		return fmt.Errorf("clickhouse: rollup: find the first request: %w", err)
	}
	r.until = now.Truncate(time.Hour)
	if rows > 0 {
		r.until = first.UTC().Truncate(time.Hour)
	}
	// Everything before until is rolled now: nothing can be late yet.
	r.checked = now
	return nil
}

// lateHours returns the rolled hours that rows inserted since the last
// look (less lateMargin) belong to.
func (r *Roller) lateHours(ctx context.Context) ([]time.Time, error) {
	rows, err := r.conn.Query(ctx, "SELECT DISTINCT toStartOfHour(start) FROM "+r.schema.Database+"."+requestsTable+
		" WHERE inserted_at >= ? AND start < ?", r.checked.Add(-lateMargin), r.until)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: rollup: look for late rows: %w", err)
	}
	defer rows.Close()
	var hours []time.Time
	for rows.Next() {
		var h time.Time
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("clickhouse: rollup: look for late rows: %w", err)
		}
		hours = append(hours, h.UTC())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: rollup: look for late rows: %w", err)
	}
	return hours, nil
}

// rollHour rolls the hour that starts at h up, as a set with rolled_ns.
func (r *Roller) rollHour(ctx context.Context, h, rolledAt time.Time) error {
	if err := r.conn.Exec(ctx, rollSQL(r.schema.Database), uint64(rolledAt.UnixNano()), h, h.Add(time.Hour)); err != nil {
		return fmt.Errorf("clickhouse: rollup: roll the hour of %s: %w", h.Format(time.RFC3339), err)
	}
	return nil
}

// rollSQL is the statement that rolls one hour up: its arguments are the
// roll's time and the hour's bounds.
func rollSQL(db string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + db + "." + hourlyTable + " (hour, route, " + dimNames() + ", rolled_ns, " + valueNames() + ")\n")
	b.WriteString("SELECT toStartOfHour(start) AS hour, route, provider, model, tenant, toUInt8(intDiv(status, 100)) AS status_class, error_type,\n")
	b.WriteString("    toUInt64(?) AS rolled_ns")
	for _, v := range hourlyValues {
		b.WriteString(",\n    " + v.state + " AS " + v.name)
	}
	b.WriteString("\nFROM " + db + "." + requestsTable + " FINAL\nWHERE start >= ? AND start < ?\nGROUP BY hour, route, " + dimNames())
	return b.String()
}

// RollupFilter is the condition that keeps, of requests_hourly's rows in
// [from, to) (SQL expressions of DateTime), only each hour's latest roll.
func RollupFilter(db, from, to string) string {
	t := db + "." + hourlyTable
	return "hour >= " + from + " AND hour < " + to + " AND (hour, rolled_ns) GLOBAL IN (SELECT hour, max(rolled_ns) FROM " + t +
		" WHERE hour >= " + from + " AND hour < " + to + " GROUP BY hour)"
}
