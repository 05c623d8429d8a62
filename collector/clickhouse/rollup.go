package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
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

// Roller keeps the rollups (migrations 8 and 9) up to date: it rolls
// each hour up from the requests table read FINAL once the hour has ended,
// the hours before it first (the backfill of rows written before the
// rollups existed, an hour a statement), and rolls an hour again when rows
// of it are written after it was rolled (a spool replay, a resend). Each
// day whose hours are all rolled is rolled from requests_hourly into
// requests_daily, and again when one of its hours is. Every roll of an
// hour or a day is a set of rows with its own rolled_ns; readers take each
// one's latest set (rollup.latest). Rolls are idempotent: several
// collectors may run a Roller each.
type Roller struct {
	conn   driver.Conn
	schema Schema
	now    func() time.Time
	log    *slog.Logger

	// until: every hour before it is rolled (zero: not read yet);
	// checked: rows inserted before it were looked at for late rows;
	// days: every day before it is rolled.
	until, checked, days time.Time
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
// ended hour not rolled yet, then the days of both.
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
	var lateDays []time.Time
	for _, h := range late {
		if err := r.rollHour(ctx, h, now); err != nil {
			return err
		}
		if d := h.Truncate(daily.length); d.Before(r.days) && !slices.Contains(lateDays, d) {
			lateDays = append(lateDays, d)
		}
	}
	for _, d := range lateDays {
		if err := r.rollDay(ctx, d, now); err != nil {
			return err
		}
	}
	// Only now: a round stopped before finds the same late rows again.
	r.checked = now
	// The hours that ended at least rollupLag ago and are not rolled yet:
	// only those with rows need a statement.
	closed := now.Add(-rollupLag).Truncate(time.Hour)
	from := r.until
	var hours []time.Time
	if r.until.Before(closed) {
		if hours, err = r.hoursWithRows(ctx, "start >= ? AND start < ?", r.until, closed); err != nil {
			return fmt.Errorf("clickhouse: rollup: list the hours to roll: %w", err)
		}
		for _, h := range hours {
			if err := r.rollHour(ctx, h, now); err != nil {
				r.until = h
				return err
			}
		}
		r.until = closed
	}
	if err := r.rollDays(ctx, now); err != nil {
		return err
	}
	if len(hours) > 1 || len(late) > 0 {
		r.log.Info("rolled up", "hours", len(hours), "from", from, "late", len(late), "took", time.Since(now).Round(time.Millisecond))
	}
	return nil
}

// rollDays rolls the days not rolled yet whose hours all are.
func (r *Roller) rollDays(ctx context.Context, now time.Time) error {
	end := r.until.Truncate(daily.length)
	if !r.days.Before(end) {
		return nil
	}
	days, err := r.times(ctx, "SELECT DISTINCT "+bucketOf(daily, "hour")+" AS day FROM "+r.schema.Database+"."+requestsHourly.name+
		" WHERE hour >= ? AND hour < ? ORDER BY day", r.days, end)
	if err != nil {
		return fmt.Errorf("clickhouse: rollup: list the days to roll: %w", err)
	}
	for _, d := range days {
		if err := r.rollDay(ctx, d, now); err != nil {
			r.days = d
			return err
		}
	}
	r.days = end
	return nil
}

// hoursWithRows returns, in order, the hours that rows matching where
// (with its arguments) started in.
func (r *Roller) hoursWithRows(ctx context.Context, where string, args ...any) ([]time.Time, error) {
	return r.times(ctx, "SELECT DISTINCT "+bucketOf(hourly, "start")+" AS hour FROM "+r.schema.Database+"."+requestsTable+
		" WHERE "+where+" ORDER BY hour", args...)
}

// times returns the query's one DateTime column, in UTC.
func (r *Roller) times(ctx context.Context, query string, args ...any) ([]time.Time, error) {
	rows, err := r.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var t time.Time
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t.UTC())
	}
	return out, rows.Err()
}

// resume finds where the rollups stand: after the last hour every hourly
// rollup holds and the last day requests_daily holds; where one is empty
// (new, or a backfill), at the first hour or day of the requests, or the
// current one when there are none.
func (r *Roller) resume(ctx context.Context, now time.Time) error {
	db := r.schema.Database
	var first time.Time
	var n uint64
	if err := r.conn.QueryRow(ctx, "SELECT count(), min(start) FROM "+db+"."+requestsTable).Scan(&n, &first); err != nil {
		return fmt.Errorf("clickhouse: rollup: find the first request: %w", err)
	}
	start := now
	if n > 0 {
		start = first.UTC()
	}
	// Everything before until is rolled now: nothing can be late yet.
	r.checked = now
	r.until, r.days = time.Time{}, start.Truncate(daily.length)
	for _, t := range rollups {
		if t.setsIn != "" {
			continue // may be empty when all is rolled: it goes with setsIn
		}
		var rows, rolledNs uint64
		var last time.Time
		if err := r.conn.QueryRow(ctx, "SELECT count(), max("+t.grain.column+"), max(rolled_ns) FROM "+db+"."+t.name).Scan(&rows, &last, &rolledNs); err != nil {
			return fmt.Errorf("clickhouse: rollup: read where %s stands: %w", t.name, err)
		}
		next := start.Truncate(t.grain.length)
		if rows > 0 {
			next = last.UTC().Add(t.grain.length)
		}
		switch {
		case t.grain == daily:
			r.days = next
		case r.until.IsZero() || next.Before(r.until):
			r.until = next
		}
		if t.name == requestsHourly.name && rows > 0 {
			r.checked = time.Unix(0, int64(rolledNs)).UTC()
		}
	}
	return nil
}

// rollHour rolls the hour that starts at h up, as a set with rolledAt:
// requests_hourly, latency_hourly and errors_hourly from the rows, then
// routes_hourly from requests_hourly's set.
func (r *Roller) rollHour(ctx context.Context, h, rolledAt time.Time) error {
	db, ns := r.schema.Database, uint64(rolledAt.UnixNano())
	for _, roll := range []struct{ table, sql string }{
		{requestsHourly.name, rollSQL(db, requestsHourly)},
		{latencyHourly.name, latencySQL(db)},
		{errorsHourly.name, rollSQL(db, errorsHourly)},
	} {
		if err := r.conn.Exec(ctx, roll.sql, ns, h, h.Add(time.Hour)); err != nil {
			return fmt.Errorf("clickhouse: rollup: roll the hour of %s into %s: %w", h.Format(time.RFC3339), roll.table, err)
		}
	}
	if err := r.conn.Exec(ctx, rerollSQL(db, routesHourly), h, ns); err != nil {
		return fmt.Errorf("clickhouse: rollup: roll the hour of %s into %s: %w", h.Format(time.RFC3339), routesHourly.name, err)
	}
	return nil
}

// rollDay rolls the day that starts at d up from each of its hours'
// latest set in requests_hourly into requests_daily, as a set with
// rolledAt.
func (r *Roller) rollDay(ctx context.Context, d, rolledAt time.Time) error {
	if err := r.conn.Exec(ctx, dailySQL(r.schema.Database, d), uint64(rolledAt.UnixNano())); err != nil {
		return fmt.Errorf("clickhouse: rollup: roll the day of %s into %s: %w", d.Format(time.DateOnly), requestsDaily.name, err)
	}
	return nil
}

// rowDims are the SQL over a request's row of the rollups' dimensions
// that are not its columns.
var rowDims = map[string]string{"status_class": "toUInt8(intDiv(status, 100))"}

// rollSQL is the statement that rolls one hour of rows up into the
// hourly rollup to: its arguments are the roll's rolled_ns and the hour's
// bounds.
func rollSQL(db string, to rollup) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + db + "." + to.name + " (hour, route, " + to.dimList() + "rolled_ns, " + to.valueNames() + ")\n")
	b.WriteString("SELECT " + bucketOf(hourly, "start") + " AS hour, route, ")
	for _, d := range to.dims {
		if e, ok := rowDims[d.name]; ok {
			b.WriteString(e + " AS " + d.name + ", ")
		} else {
			b.WriteString(d.name + ", ")
		}
	}
	b.WriteString("\n    toUInt64(?) AS rolled_ns")
	for _, v := range to.values {
		b.WriteString(",\n    " + v.state() + " AS " + v.name)
	}
	b.WriteString("\nFROM " + db + "." + requestsTable + " FINAL\nWHERE start >= ? AND start < ?")
	if to.rows != "" {
		b.WriteString(" AND " + to.rows)
	}
	b.WriteString("\nGROUP BY hour, route")
	for _, d := range to.dims {
		b.WriteString(", " + d.name)
	}
	return b.String()
}

// latencySQL is the statement that rolls one hour of rows up into
// latency_hourly (rollSQL's arguments): the requests counted by route and
// duration bucket first, then each route's counts made one array.
func latencySQL(db string) string {
	return "INSERT INTO " + db + "." + latencyHourly.name + " (hour, route, rolled_ns, " + durationHistogram.name + ")\n" +
		"SELECT hour, route, toUInt64(?), sumForEachState(" + histogramOf("b", "c") + ")\n" +
		"FROM\n(\n    SELECT " + bucketOf(hourly, "start") + " AS hour, route, " + latencyBucket("duration_ms") + " AS b, count() AS c\n" +
		"    FROM " + db + "." + requestsTable + " FINAL\n    WHERE start >= ? AND start < ?\n    GROUP BY hour, route, b\n)\nGROUP BY hour, route"
}

// rerollSQL is the statement that rolls one set of requests_hourly (its
// arguments: the hour and the set's rolled_ns) up into to, which has
// fewer dimensions.
func rerollSQL(db string, to rollup) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + db + "." + to.name + " (hour, route, " + to.dimList() + "rolled_ns, " + to.valueNames() + ")\n")
	b.WriteString("SELECT hour, route, " + to.dimList() + "rolled_ns")
	for _, v := range to.values {
		b.WriteString(",\n    " + v.mergeState() + " AS " + v.name)
	}
	b.WriteString("\nFROM " + db + "." + requestsHourly.name + "\nWHERE hour = ? AND rolled_ns = ?\nGROUP BY hour, route, " + to.dimList() + "rolled_ns")
	return b.String()
}

// dailySQL is the statement that rolls the day d up from requests_hourly
// into requests_daily: its argument is the roll's rolled_ns.
func dailySQL(db string, d time.Time) string {
	to := requestsDaily
	var b strings.Builder
	b.WriteString("INSERT INTO " + db + "." + to.name + " (day, route, " + to.dimList() + "rolled_ns, " + to.valueNames() + ")\n")
	// No aliases (the insert's columns go by position): the filter's
	// rolled_ns and rateLimitedReroll's requests would read them.
	b.WriteString("SELECT " + sqlTime(d) + " AS day, route, " + to.dimList() + "toUInt64(?)")
	for _, v := range to.values {
		state := v.mergeState()
		if v == rateLimitedValue {
			state = rateLimitedReroll
		}
		b.WriteString(",\n    " + state)
	}
	b.WriteString("\nFROM " + db + "." + requestsHourly.name + "\nWHERE " + requestsHourly.latest(db, sqlTime(d), sqlTime(d.Add(daily.length))) +
		"\nGROUP BY route, " + strings.TrimSuffix(to.dimList(), ", "))
	return b.String()
}

// dimList is the rollup's dimension names, each followed by a comma and
// a space.
func (r rollup) dimList() string {
	var b strings.Builder
	for _, d := range r.dims {
		b.WriteString(d.name + ", ")
	}
	return b.String()
}

// bucketOf is the SQL of the UTC hour or day a DateTime expression falls
// in: toStartOfHour and toStartOfDay take the server's time zone, whose
// hours are not UTC's where it is half an hour off (India, Newfoundland,
// ...), and the roller and the readers cut them in UTC.
func bucketOf(g grain, expr string) string {
	n := strconv.Itoa(int(g.length / time.Second))
	return "toDateTime(intDiv(toUInt32(" + expr + "), " + n + ") * " + n + ")"
}

// latest is the condition that keeps, of the rollup's rows in [from, to)
// (SQL expressions of DateTime), only each hour's or day's latest roll.
func (r rollup) latest(db, from, to string) string {
	t, c := db+"."+r.name, r.grain.column
	if r.setsIn != "" {
		t = db + "." + r.setsIn
	}
	return c + " >= " + from + " AND " + c + " < " + to + " AND (" + c + ", rolled_ns) GLOBAL IN (SELECT " + c + ", max(rolled_ns) FROM " + t +
		" WHERE " + c + " >= " + from + " AND " + c + " < " + to + " GROUP BY " + c + ")"
}
