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
	return every(ctx, RollupInterval, r.Roll, r.log, "rollup not updated; tried again later")
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
	// Late rows: rows inserted since the last look (less lateMargin) in
	// hours already rolled.
	late, err := r.hoursWithRows(ctx, "inserted_at >= ? AND start < ?", r.checked.Add(-lateMargin), r.until)
	if err != nil {
		return fmt.Errorf("clickhouse: rollup: look for late rows: %w", err)
	}
	for _, h := range late {
		if err := r.rollHour(ctx, h, now); err != nil {
			return err
		}
	}
	r.checked = now
	// The hours that ended at least rollupLag ago and are not rolled yet:
	// only those with rows need a statement.
	closed := now.Add(-rollupLag).Truncate(time.Hour)
	if !r.until.Before(closed) {
		return nil
	}
	hours, err := r.hoursWithRows(ctx, "start >= ? AND start < ?", r.until, closed)
	if err != nil {
		return fmt.Errorf("clickhouse: rollup: list the hours to roll: %w", err)
	}
	from := r.until
	for _, h := range hours {
		if err := r.rollHour(ctx, h, now); err != nil {
			r.until = h
			return err
		}
	}
	r.until = closed
	if len(hours) > 1 || len(late) > 0 {
		r.log.Info("rolled up", "hours", len(hours), "from", from, "late", len(late), "took", time.Since(now).Round(time.Millisecond))
	}
	return nil
}

// hoursWithRows returns, in order, the hours that rows matching where
// (with its arguments) started in.
func (r *Roller) hoursWithRows(ctx context.Context, where string, args ...any) ([]time.Time, error) {
	rows, err := r.conn.Query(ctx, "SELECT DISTINCT "+hourOf("start")+" AS hour FROM "+r.schema.Database+"."+requestsTable+
		" WHERE "+where+" ORDER BY hour", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hours []time.Time
	for rows.Next() {
		var h time.Time
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		hours = append(hours, h.UTC())
	}
	return hours, rows.Err()
}

// resume finds where the rollups stand: after their last hour, or, when
// one is empty, at the first hour of the requests (a backfill) or the
// current one.
func (r *Roller) resume(ctx context.Context, now time.Time) error {
	db := r.schema.Database
	var last time.Time
	var rows, rolledNs uint64
	if err := r.conn.QueryRow(ctx, "SELECT count(), max(hour), max(rolled_ns) FROM "+db+"."+requestsHourly.name).Scan(&rows, &last, &rolledNs); err != nil {
		return fmt.Errorf("clickhouse: rollup: read where it stands: %w", err)
	}
	var routes uint64
	var routesLast time.Time
	if err := r.conn.QueryRow(ctx, "SELECT count(), max(hour) FROM "+db+"."+routesHourly.name).Scan(&routes, &routesLast); err != nil {
		return fmt.Errorf("clickhouse: rollup: read where it stands: %w", err)
	}
	if rows > 0 && routes > 0 {
		// An hour's roll into routes_hourly follows its roll into
		// requests_hourly: a round stopped between the two left it to do.
		if routesLast.Before(last) {
			last = routesLast
		}
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

// rollHour rolls the hour that starts at h up, as a set with rolledAt:
// requests_hourly from the rows, then routes_hourly from that set.
func (r *Roller) rollHour(ctx context.Context, h, rolledAt time.Time) error {
	db, ns := r.schema.Database, uint64(rolledAt.UnixNano())
	if err := r.conn.Exec(ctx, rollSQL(db), ns, h, h.Add(time.Hour)); err != nil {
		return fmt.Errorf("clickhouse: rollup: roll the hour of %s: %w", h.Format(time.RFC3339), err)
	}
	if err := r.conn.Exec(ctx, rerollSQL(db, routesHourly), h, ns); err != nil {
		return fmt.Errorf("clickhouse: rollup: roll the hour of %s into %s: %w", h.Format(time.RFC3339), routesHourly.name, err)
	}
	return nil
}

// rollSQL is the statement that rolls one hour of rows up into
// requests_hourly: its arguments are the roll's rolled_ns and the hour's
// bounds.
func rollSQL(db string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + db + "." + requestsHourly.name + " (hour, route, " + requestsHourly.dimNames() + ", rolled_ns, " + valueNames() + ")\n")
	b.WriteString("SELECT " + hourOf("start") + " AS hour, route, provider, model, tenant, toUInt8(intDiv(status, 100)) AS status_class, error_type,\n")
	b.WriteString("    toUInt64(?) AS rolled_ns")
	for _, v := range rollupValues {
		b.WriteString(",\n    " + v.state() + " AS " + v.name)
	}
	b.WriteString("\nFROM " + db + "." + requestsTable + " FINAL\nWHERE start >= ? AND start < ?\nGROUP BY hour, route, " + requestsHourly.dimNames())
	return b.String()
}

// rerollSQL is the statement that rolls one set of requests_hourly (its
// arguments: the hour and the set's rolled_ns) up into to, which has
// fewer dimensions.
func rerollSQL(db string, to rollup) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + db + "." + to.name + " (hour, route, " + to.dimNames() + ", rolled_ns, " + valueNames() + ")\n")
	b.WriteString("SELECT hour, route, " + to.dimNames() + ", rolled_ns")
	for _, v := range rollupValues {
		b.WriteString(",\n    " + v.mergeState() + " AS " + v.name)
	}
	b.WriteString("\nFROM " + db + "." + requestsHourly.name + "\nWHERE hour = ? AND rolled_ns = ?\nGROUP BY hour, route, " + to.dimNames() + ", rolled_ns")
	return b.String()
}

// hourOf is the SQL of the UTC hour a DateTime expression falls in:
// toStartOfHour takes the server's time zone, whose hours are not UTC's
// where it is half an hour off (India, Newfoundland, ...), and the roller
// and the readers cut hours in UTC.
func hourOf(expr string) string {
	return "toDateTime(intDiv(toUInt32(" + expr + "), 3600) * 3600)"
}

// RollupFilter is the condition that keeps, of a rollup's rows in [from,
// to) (SQL expressions of DateTime), only each hour's latest roll.
func RollupFilter(db, table, from, to string) string {
	t := db + "." + table
	return "hour >= " + from + " AND hour < " + to + " AND (hour, rolled_ns) GLOBAL IN (SELECT hour, max(rolled_ns) FROM " + t +
		" WHERE hour >= " + from + " AND hour < " + to + " GROUP BY hour)"
}
