package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultDatabase is used when a Database option is empty.
const DefaultDatabase = "llmtap"

// Table names. requests is the table every query reads and the writer
// inserts into: the rows themselves on a single server, a Distributed
// table over requests_local on a cluster (see Schema.Cluster).
const (
	requestsTable   = "requests"
	localTable      = "requests_local"
	byIDTable       = "requests_by_id"
	byIDLocalTable  = "requests_by_id_local"
	byIDView        = "requests_by_id_mv"
	migrationsTable = "llmtap_migrations"
)

// ZooKeeper paths of the replicated tables on a cluster. {shard} and
// {replica} are macros every server must define (<macros> in its
// configuration); the database name keeps two llmtap databases on one
// ZooKeeper apart. The migrations table has no {shard} in its path: every
// server of the cluster is a replica of one table, so a collector reads
// the same history whichever server it talks to, and its replica name is
// {shard}-{replica}, unique across the cluster.
const (
	localZKPath      = "/clickhouse/tables/{shard}/%s/" + localTable
	byIDZKPath       = "/clickhouse/tables/{shard}/%s/" + byIDLocalTable
	rollupZKPath     = "/clickhouse/tables/{shard}/%s/%s_local"
	migrationsZKPath = "/clickhouse/tables/%s/" + migrationsTable
)

// legacyGranularity is the rows of a granule of the requests table on a
// server without adaptive granularity (see Features.AdaptiveGranularity).
const legacyGranularity = 1024

// sortKey is the ORDER BY of the requests table. ReplacingMergeTree
// collapses rows of equal sorting key within a partition, so every part is
// a value a replay of the same record repeats exactly; see the package doc.
const sortKey = "(route, start, start_ms, request_id)"

// colClass says how a column varies between the legacy and modern schema.
type colClass int

const (
	plain   colClass = iota // same type everywhere, default compression
	lowCard                 // String; LowCardinality(String) where the server has it
	body                    // captured bodies: ZSTD(3), and body retention's TTL
)

// column is one column of the requests table. The DDL, the INSERT column
// list, the SELECT list and the row conversion (row.go) all follow this
// order.
type column struct {
	name  string
	typ   string
	class colClass
	codec string // modern servers only; "" means the server default (LZ4)
	// since is the migration that added the column to existing tables;
	// 0 for the columns of migration 1. A new table has every column.
	since int
}

// Rows sort by route then time, so start and inserted_at climb along the
// sort order: DoubleDelta (and Delta) compress them to almost nothing.
// Bodies are text or bytes: ZSTD. Arrays get only general-purpose codecs,
// which every modern server takes on any element type.
var columns = []column{
	{name: "request_id", typ: "String", codec: "ZSTD(1)"},
	{name: "upstream_request_id", typ: "String", codec: "ZSTD(1)"},
	{name: "start", typ: "DateTime", codec: "DoubleDelta, ZSTD(1)"},
	{name: "start_ms", typ: "UInt16"},
	{name: "tenant", typ: "String", class: lowCard},
	{name: "tenant_source", typ: "String", class: lowCard},
	{name: "route", typ: "String", class: lowCard},
	{name: "provider", typ: "String", class: lowCard},
	{name: "model", typ: "String", class: lowCard},
	{name: "method", typ: "String", class: lowCard},
	{name: "host", typ: "String", class: lowCard},
	{name: "path", typ: "String", codec: "ZSTD(1)"},
	{name: "status", typ: "UInt16"},
	{name: "outcome", typ: "String", class: lowCard},
	{name: "kind", typ: "String", class: lowCard},
	{name: "error_type", typ: "String", class: lowCard},
	{name: "streaming", typ: "UInt8"},
	{name: "ttfb_ms", typ: "Int64", codec: "ZSTD(1)"},
	{name: "ttft_ms", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "ttfa_ms", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "duration_ms", typ: "Int64", codec: "ZSTD(1)"},
	{name: "input_tokens", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "output_tokens", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "cache_read_tokens", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "cache_write_tokens", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "reasoning_tokens", typ: "Nullable(Int64)", codec: "ZSTD(1)"},
	{name: "usage_source", typ: "String", class: lowCard},
	{name: "usage_missing", typ: "String", class: lowCard},
	// The part of cache_write_tokens written to a cache of an hour.
	{name: "cache_write_1h_tokens", typ: "Nullable(Int64)", codec: "ZSTD(1)", since: costSince},
	// What the request cost in US nano-dollars: NULL when it could not
	// be priced (a model without a price, no token counts), never 0 for
	// that; the parts add up to cost_nanos.
	{name: "cost_nanos", typ: "Nullable(Int64)", codec: "ZSTD(1)", since: costSince},
	{name: "cost_input_nanos", typ: "Int64", codec: "ZSTD(1)", since: costSince},
	{name: "cost_cache_read_nanos", typ: "Int64", codec: "ZSTD(1)", since: costSince},
	{name: "cost_cache_write_nanos", typ: "Int64", codec: "ZSTD(1)", since: costSince},
	{name: "cost_output_nanos", typ: "Int64", codec: "ZSTD(1)", since: costSince},
	{name: "cost_reasoning_nanos", typ: "Int64", codec: "ZSTD(1)", since: costSince},
	{name: "price_version", typ: "String", class: lowCard, since: costSince},
	// On routes whose upstreams the plugin chooses: the upstream that
	// answered, the attempts made, and each upstream tried or skipped
	// with its result (a status, or why none came) and when its headers
	// came (-1: none).
	{name: "upstream", typ: "String", class: lowCard, since: upstreamsSince},
	{name: "attempts", typ: "UInt8", since: upstreamsSince},
	{name: "attempt_upstreams", typ: "Array(String)", codec: "ZSTD(1)", since: upstreamsSince},
	{name: "attempt_results", typ: "Array(String)", codec: "ZSTD(1)", since: upstreamsSince},
	{name: "attempt_header_ms", typ: "Array(Int64)", codec: "ZSTD(1)", since: upstreamsSince},
	// The client asked that the bodies not be stored (the plugin's omit
	// header): the row has the facts and no bodies.
	{name: "bodies_omitted", typ: "UInt8", since: omittedSince},
	{name: "request_bytes", typ: "Int64", codec: "ZSTD(1)"},
	{name: "response_bytes", typ: "Int64", codec: "ZSTD(1)"},
	{name: "request_body", typ: "String", class: body, codec: "ZSTD(3)"},
	{name: "response_body", typ: "String", class: body, codec: "ZSTD(3)"},
	// The events' data: where each lies in response_body (chunk_starts,
	// chunk_ends: byte offsets), or, for a stream whose events are not
	// each one run of its bytes, the texts themselves (response_chunks).
	// Users read them through the alias chunks (chunksAlias).
	{name: "response_chunks", typ: "Array(String)", class: body, codec: "ZSTD(3)"},
	{name: "chunk_starts", typ: "Array(UInt32)", class: body, codec: "ZSTD(1)", since: chunkSpansSince},
	{name: "chunk_ends", typ: "Array(UInt32)", class: body, codec: "ZSTD(1)", since: chunkSpansSince},
	{name: "chunk_offsets_us", typ: "Array(Int64)", class: body, codec: "ZSTD(1)"},
	{name: "truncated", typ: "UInt8"},
	{name: "inserted_at", typ: "DateTime", codec: "Delta, ZSTD(1)"},
}

// chunkSpansSince is the migration that added chunk_starts and
// chunk_ends: a table created before it gets them by ALTER.
const chunkSpansSince = 3

// costSince is the migration that added the cost columns.
const costSince = 4

// upstreamsSince is the migration that added the upstream and attempts
// columns.
const upstreamsSince = 5

// omittedSince is the migration that added bodies_omitted.
const omittedSince = 6

// byIDSince is the migration that added requests_by_id.
const byIDSince = 7

// hourlySince is the migration that added the hourly rollups.
const hourlySince = 8

// scaleSince is the migration that added the rollups that stay small
// (requests_daily, latency_hourly, errors_hourly).
const scaleSince = 9

// chunksAlias is the alias column chunks: every event's data, whichever
// way the row stores it. The lambda reads response_body, which the
// expression also names outside it: 18.16 reads a column a lambda
// captures only when the query needs it elsewhere.
const chunksAlias = "chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, " +
	"arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends))"

// columnList is "a, b, c" in table order, for INSERT and SELECT.
func columnList() string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// Schema is what the DDL depends on besides the server version.
type Schema struct {
	// Database holds llmtap's tables; DefaultDatabase when empty.
	// Migration 1 creates it.
	Database string
	// Retention drops a request's row this long after its start; 0 keeps
	// rows forever. Needs TTL (modern servers); see the package doc for
	// 18.16.
	Retention time.Duration
	// BodyRetention empties the bodies and chunks of a row this long after
	// its start while the rest of the row stays; 0 keeps them as long as
	// the row.
	BodyRetention time.Duration
	// Cluster is the name of a cluster in the servers' remote_servers, or
	// empty for a single server. With a cluster every statement runs ON
	// CLUSTER, the rows live in requests_local
	// (ReplicatedReplacingMergeTree) on every server, and requests is a
	// Distributed table over them sharded by request id; see "Scale-out"
	// in the package doc.
	Cluster string
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validCluster checks a cluster name is empty or a plain identifier, so
// SQL can carry it unquoted in ON CLUSTER and in the Distributed engine.
func validCluster(name string) error {
	if name != "" && !identRE.MatchString(name) {
		return fmt.Errorf("clickhouse: cluster name %q: use letters, digits and _ only, not starting with a digit", name)
	}
	return nil
}

// onCluster is the ON CLUSTER clause of every DDL statement, or "".
func (s Schema) onCluster() string {
	if s.Cluster == "" {
		return ""
	}
	return " ON CLUSTER " + s.Cluster
}

// storageTable is the table that holds the rows: the one TTLs, codecs and
// merges apply to.
func (s Schema) storageTable() string {
	if s.Cluster == "" {
		return s.Database + "." + requestsTable
	}
	return s.Database + "." + localTable
}

// validDatabase checks a database name is a plain identifier, so SQL can
// carry it unquoted.
func validDatabase(name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("clickhouse: database name %q: use letters, digits and _ only, not starting with a digit", name)
	}
	return nil
}

func databaseOr(name string) string {
	if name == "" {
		return DefaultDatabase
	}
	return name
}

// withDefaults fills in the default database.
func (s Schema) withDefaults() Schema {
	s.Database = databaseOr(s.Database)
	return s
}

// Validate reports a schema that Plan cannot express.
func (s Schema) Validate() error {
	s = s.withDefaults()
	var errs []error
	if err := validDatabase(s.Database); err != nil {
		errs = append(errs, err)
	}
	if err := validCluster(s.Cluster); err != nil {
		errs = append(errs, err)
	}
	for _, r := range []struct {
		name string
		d    time.Duration
	}{{"retention", s.Retention}, {"body retention", s.BodyRetention}} {
		if r.d < 0 || r.d%time.Second != 0 {
			errs = append(errs, fmt.Errorf("clickhouse: %s %s: want 0 (keep) or a positive whole number of seconds", r.name, r.d))
		}
	}
	if s.Retention > 0 && s.BodyRetention > s.Retention {
		errs = append(errs, fmt.Errorf("clickhouse: body retention %s exceeds retention %s: bodies go with their rows; lower it or set 0", s.BodyRetention, s.Retention))
	}
	return errors.Join(errs...)
}

// Migration is one numbered schema step. Its statements are safe to run
// again (IF NOT EXISTS, MODIFY), so a step interrupted before it was
// recorded is simply applied again at the next start.
type Migration struct {
	Version uint32
	// Name is recorded with the version. For a step that depends on
	// settings (retention) the name carries them, so a change of settings
	// makes the step pending again.
	Name string
	// Statements for this server, in order. None means the step does not
	// apply to this server: it is skipped and not recorded, so it runs
	// once the server is upgraded.
	Statements []string
	// Backfill, when set, fills what the step created from the rows
	// written before it, in bounded batches: Backfill.Days lists the
	// days that hold rows (toString of a Date), and Backfill.Insert is
	// run once per day with the day as its one argument. Running it
	// again inserts copies that the target's ReplacingMergeTree merges
	// away.
	Backfill *Backfill
	// Done, when set, is a query whose count is not 0 when the step's
	// effect is already there (a table created with the columns the step
	// adds): the step is then recorded without its statements. It makes
	// steps safe to run again where the server has no IF NOT EXISTS for
	// them (ADD COLUMN on 18.16).
	Done string
}

// Backfill is a migration's fill of existing rows, a day at a time.
type Backfill struct {
	Days, Insert string
}

// Plan is the DDL generator: the migrations for a server version and
// schema settings, in order. It is a pure function of its arguments, so
// both branches of the version gate are tested against golden files.
// s must be valid (Schema.Validate).
func Plan(v Version, s Schema) []Migration {
	s = s.withDefaults()
	f := FeaturesOf(v)
	return []Migration{
		{Version: 1, Name: "create_requests", Statements: createRequests(f, s)},
		retentionMigration(f, s),
		chunkSpansMigration(f, s),
		columnsMigration(f, s, costSince, "cost"),
		columnsMigration(f, s, upstreamsSince, "upstreams"),
		columnsMigration(f, s, omittedSince, "bodies_omitted"),
		byIDMigration(f, s),
		hourlyMigration(f, s),
		scaleMigration(f, s),
	}
}

// bootstrap creates what Migrate needs before it can read its own record:
// the database and the migrations table.
func bootstrap(s Schema) []string {
	engine := "MergeTree"
	if s.Cluster != "" {
		// Replicated, so that every server holds the whole history.
		engine = "ReplicatedMergeTree('" + fmt.Sprintf(migrationsZKPath, s.Database) + "', '{shard}-{replica}')"
	}
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + s.Database + s.onCluster(),
		"CREATE TABLE IF NOT EXISTS " + s.Database + "." + migrationsTable + s.onCluster() + ` (
    version UInt32,
    name String,
    applied_at DateTime
)
ENGINE = ` + engine + `
ORDER BY (version, applied_at)`,
	}
}

// columnType is the column's type and codec on a server with features f.
func columnType(c column, f Features) string {
	typ := c.typ
	if c.class == lowCard && f.LowCardinality {
		typ = "LowCardinality(" + typ + ")"
	}
	if c.codec != "" && f.Codecs {
		typ += " CODEC(" + c.codec + ")"
	}
	return typ
}

// createRequests is migration 1: the database and the requests table, or
// on a cluster the local tables and the Distributed table over them.
func createRequests(f Features, s Schema) []string {
	db := "CREATE DATABASE IF NOT EXISTS " + s.Database + s.onCluster()
	// Without adaptive granularity, granules of fewer rows: a lookup reads
	// one granule of bodies, and the narrow columns the dashboards read
	// cost a few more marks.
	settings := ""
	if !f.AdaptiveGranularity {
		settings = "\nSETTINGS index_granularity = " + strconv.Itoa(legacyGranularity)
	}
	if s.Cluster == "" {
		return []string{db, createTable(f, s.Database+"."+requestsTable, true,
			"ReplacingMergeTree(inserted_at)\nPARTITION BY toYYYYMM(start)\nORDER BY "+sortKey+settings)}
	}
	local := createTable(f, s.storageTable()+s.onCluster(), true,
		"ReplicatedReplacingMergeTree('"+fmt.Sprintf(localZKPath, s.Database)+"', '{replica}', inserted_at)\n"+
			"PARTITION BY toYYYYMM(start)\nORDER BY "+sortKey+settings)
	// Sharding by request id sends every copy of a record (a resend by
	// the plugin, a spool replay) to the same shard, where
	// ReplacingMergeTree collapses it as on a single server, and lets
	// Store.Get and FINAL dedupe shard by shard. A Distributed table
	// stores nothing: it has the columns' types but no codecs, index or
	// TTL, which stay on requests_local.
	dist := createTable(f, s.Database+"."+requestsTable+s.onCluster(), false,
		"Distributed("+s.Cluster+", "+s.Database+", "+localTable+", cityHash64(request_id))")
	return []string{db, local, dist}
}

// createTable is CREATE TABLE IF NOT EXISTS name with the columns of
// requests and engine. A table that stores the rows gets the codecs and
// the request_id index its server has; a Distributed one only the types.
func createTable(f Features, name string, stores bool, engine string) string {
	cf := f
	if !stores {
		cf.Codecs = false
	}
	index := stores && f.SkipIndex
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + name + "\n(\n")
	for _, c := range columns {
		b.WriteString("    " + c.name + " " + columnType(c, cf) + ",\n")
	}
	b.WriteString("    " + chunksAlias)
	if index {
		// Get looks rows up by id alone; the sort key cannot help it.
		b.WriteString(",\n    INDEX request_id_bf request_id TYPE bloom_filter(0.01) GRANULARITY 4")
	}
	b.WriteString("\n")
	b.WriteString(")\n")
	b.WriteString("ENGINE = " + engine)
	return b.String()
}

// retentionMigration sets the row TTL and the body columns' TTL. It has
// statements only on servers with TTL and only for the retentions that are
// set.
func retentionMigration(f Features, s Schema) Migration {
	m := Migration{
		Version: 2,
		Name:    "retention rows=" + shortDuration(s.Retention) + " bodies=" + shortDuration(s.BodyRetention),
	}
	if !f.TTL {
		return m
	}
	// TTLs belong to the table that stores the rows: requests_local on a
	// cluster (a Distributed table has none).
	table := s.storageTable() + s.onCluster()
	if s.Retention > 0 {
		m.Statements = append(m.Statements,
			"ALTER TABLE "+table+" MODIFY TTL start + "+interval(s.Retention))
	}
	if s.BodyRetention > 0 {
		// The columns of later migrations get theirs there: they may
		// not exist yet when this step runs.
		m.Statements = append(m.Statements, "ALTER TABLE "+table+"\n"+strings.Join(bodyTTLs(f, s, 0), ",\n"))
	}
	return m
}

// chunkSpansMigration adds chunk_starts, chunk_ends and the alias chunks
// to a table created before them, and gives the two columns the TTL the
// retention step gives bodies. On a cluster the local tables get the
// columns and the Distributed table their types. Where the server has no
// ADD COLUMN IF NOT EXISTS (18.16), Done skips the step for a table that
// has them (created by migration 1). Its name carries the body retention
// where there is TTL, so that a change of it applies again.
func chunkSpansMigration(f Features, s Schema) Migration {
	m := Migration{Version: chunkSpansSince, Name: "chunk_spans"}
	if f.TTL {
		m.Name += " bodies=" + shortDuration(s.BodyRetention)
	}
	m.Statements, m.Done = addColumns(f, s, chunkSpansSince, "response_chunks", "chunks", "ADD COLUMN %s"+chunksAlias)
	if f.TTL && s.BodyRetention > 0 {
		m.Statements = append(m.Statements, "ALTER TABLE "+s.storageTable()+s.onCluster()+"\n"+
			strings.Join(bodyTTLs(f, s, chunkSpansSince), ",\n"))
	}
	return m
}

// columnsMigration is a migration that adds the columns of migration
// since (their `since` in columns) to a table created before them, after
// the column before them, on a cluster to the local tables and the
// Distributed table; Done skips it where there is no IF NOT EXISTS and
// the table has the last of them (a table made by migration 1 has them
// all).
func columnsMigration(f Features, s Schema, since int, name string) Migration {
	var after, last string
	for i, c := range columns {
		if c.since != since {
			continue
		}
		if last == "" {
			after = columns[i-1].name
		}
		last = c.name
	}
	m := Migration{Version: uint32(since), Name: name}
	m.Statements, m.Done = addColumns(f, s, since, after, last)
	return m
}

// byIDMigration creates requests_by_id, which finds a request's row from
// its id alone: a small table keyed by request_id holding the row's sort
// key prefix (route, start), filled by a materialized view with every
// insert into the rows' table, and backfilled a day at a time from the
// rows written before. Store.Get and the drill-down dashboards read the
// row through it and the sort key, where a lookup by id alone reads every
// row's bodies on servers without the request_id index. Its rows go with
// the requests' rows: the same TTL where the server has one (the name
// carries the retention, so a change applies again), the Retainer's
// partition drops where not. On a cluster each server's view feeds its
// local table, sharded like the rows by request id, and requests_by_id is
// a Distributed table over them.
func byIDMigration(f Features, s Schema) Migration {
	m := Migration{Version: byIDSince, Name: "requests_by_id"}
	if f.TTL {
		m.Name += " rows=" + shortDuration(s.Retention)
	}
	columns := `(
    request_id String,
    route String,
    start DateTime,
    start_ms UInt16,
    inserted_at DateTime
)`
	keyed := "PARTITION BY toYYYYMM(start)\nORDER BY request_id"
	source, target := s.Database+"."+requestsTable, s.Database+"."+byIDTable
	if s.Cluster == "" {
		m.Statements = append(m.Statements, "CREATE TABLE IF NOT EXISTS "+target+"\n"+columns+"\nENGINE = ReplacingMergeTree(inserted_at)\n"+keyed)
	} else {
		local := s.Database + "." + byIDLocalTable
		m.Statements = append(m.Statements,
			"CREATE TABLE IF NOT EXISTS "+local+s.onCluster()+"\n"+columns+"\nENGINE = ReplicatedReplacingMergeTree('"+
				fmt.Sprintf(byIDZKPath, s.Database)+"', '{replica}', inserted_at)\n"+keyed,
			"CREATE TABLE IF NOT EXISTS "+target+s.onCluster()+"\n"+columns+"\nENGINE = Distributed("+s.Cluster+", "+s.Database+", "+byIDLocalTable+", cityHash64(request_id))")
		source, target = s.storageTable(), local
	}
	if f.TTL && s.Retention > 0 {
		m.Statements = append(m.Statements, "ALTER TABLE "+s.byIDStorage()+s.onCluster()+" MODIFY TTL start + "+interval(s.Retention))
	}
	m.Statements = append(m.Statements, "CREATE MATERIALIZED VIEW IF NOT EXISTS "+s.Database+"."+byIDView+s.onCluster()+" TO "+target+
		"\nAS SELECT request_id, route, start, start_ms, inserted_at FROM "+source)
	m.Backfill = &Backfill{
		Days: "SELECT DISTINCT toString(toDate(start)) FROM " + s.Database + "." + requestsTable,
		Insert: "INSERT INTO " + s.Database + "." + byIDTable + " (request_id, route, start, start_ms, inserted_at)\n" +
			"SELECT request_id, route, start, start_ms, inserted_at FROM " + s.Database + "." + requestsTable + " WHERE toDate(start) = toDate(?)",
	}
	return m
}

// byIDStorage is the table that holds requests_by_id's rows.
func (s Schema) byIDStorage() string {
	if s.Cluster == "" {
		return s.Database + "." + byIDTable
	}
	return s.Database + "." + byIDLocalTable
}

// rollup is a rollup table: per time bucket of its grain (an hour or a
// day), route and dimension values, aggregate states (values). Its rows
// live in name, or on a cluster in name_local under the Distributed table
// name.
type rollup struct {
	name   string
	grain  grain
	dims   []column // the sort key after route and the time bucket
	values []rollupValue
	rows   string // the rows it rolls up, when not all: a condition
	// setsIn is the rollup whose sets (rolls) are this one's, when this
	// one may have none for a rolled hour (rows).
	setsIn string
}

// grain is a rollup's time bucket: its column and length.
type grain struct {
	column string
	length time.Duration
}

var (
	hourly = grain{column: "hour", length: time.Hour}
	daily  = grain{column: "day", length: 24 * time.Hour}
)

// The rollups. requestsHourly has every dimension the dashboards and
// reports group by; routesHourly has them but the tenant, so it holds a
// few rows an hour where requestsHourly holds a few per tenant. The Roller makes routesHourly's roll of an hour from
// requestsHourly's. Over long ranges neither stays small: with many
// tenants requestsHourly has nearly a row per request, and a quantile
// state keeps every value up to thousands of them, so reading either
// costs as the rows do. Migration 9 therefore adds requestsDaily, the
// sums of requestsHourly by day without the status and error dimensions,
// whose rare values would multiply its rows (the spend report and the
// tenants panel read whole days from it; it counts the rate-limited
// requests instead); latencyHourly, one row per route and hour with a
// histogram of durations of a fixed size, which counts the requests too
// (the requests panel's time series); and errorsHourly, the failed requests per route, hour and
// error type with an example request id (the errors panel). An hour's
// roll writes latencyHourly and errorsHourly with one rolled_ns, and
// latencyHourly has a row for every hour with requests: its latest set
// tells errorsHourly's, which has none for an hour without errors.
var (
	requestsHourly = rollup{name: "requests_hourly", grain: hourly, dims: []column{
		{name: "provider", typ: "String", class: lowCard},
		{name: "model", typ: "String", class: lowCard},
		{name: "tenant", typ: "String", class: lowCard},
		{name: "status_class", typ: "UInt8"},
		{name: "error_type", typ: "String", class: lowCard},
	}, values: append(slices.Clip(sumValues), quantileValues...)}
	routesHourly = rollup{name: "routes_hourly", grain: hourly, dims: []column{
		{name: "provider", typ: "String", class: lowCard},
		{name: "model", typ: "String", class: lowCard},
		{name: "status_class", typ: "UInt8"},
		{name: "error_type", typ: "String", class: lowCard},
	}, values: requestsHourly.values}
	requestsDaily = rollup{name: "requests_daily", grain: daily, dims: []column{
		{name: "provider", typ: "String", class: lowCard},
		{name: "model", typ: "String", class: lowCard},
		{name: "tenant", typ: "String", class: lowCard},
	}, values: append(slices.Clip(sumValues), rateLimitedValue)}
	latencyHourly = rollup{name: "latency_hourly", grain: hourly, values: []rollupValue{durationHistogram}}
	errorsHourly  = rollup{name: "errors_hourly", grain: hourly, dims: []column{
		{name: "error_type", typ: "String", class: lowCard},
	}, values: []rollupValue{sumValues[0], exampleValue}, rows: "error_type != ''", setsIn: "latency_hourly"}
	rollups = []rollup{requestsHourly, routesHourly, requestsDaily, latencyHourly, errorsHourly}
)

// sumValues are the rollups' sums, each with the expression over a
// request's row that a roll from the rows aggregates: requests, tokens by
// kind, spend in nanodollars (cost_nanos) and the requests with tokens
// but no price. None is named as a column of the requests table: an
// alias that shadows the column it aggregates is cyclic to older servers.
var sumValues = []rollupValue{
	{"requests", "AggregateFunction(count)", "count", "", ""},
	{"input", "AggregateFunction(sum, Int64)", "sum", "", "ifNull(input_tokens, toInt64(0))"},
	{"output", "AggregateFunction(sum, Int64)", "sum", "", "ifNull(output_tokens, toInt64(0))"},
	{"cache_read", "AggregateFunction(sum, Int64)", "sum", "", "ifNull(cache_read_tokens, toInt64(0))"},
	{"cache_write", "AggregateFunction(sum, Int64)", "sum", "", "ifNull(cache_write_tokens, toInt64(0))"},
	{"reasoning", "AggregateFunction(sum, Int64)", "sum", "", "ifNull(reasoning_tokens, toInt64(0))"},
	{"spend_nanos", "AggregateFunction(sum, Int64)", "sum", "", "ifNull(cost_nanos, toInt64(0))"},
	{"unpriced", "AggregateFunction(sum, UInt64)", "sum", "",
		"toUInt64(isNull(cost_nanos) AND (isNotNull(input_tokens) OR isNotNull(output_tokens)))"},
}

// quantileValues are migration 8's quantile states of duration, TTFT and
// TTFA in ms (read with quantilesMerge(0.5, 0.9, 0.99) and
// quantilesIfMerge(...)): exact up to thousands of values, and as large.
var quantileValues = []rollupValue{
	{"duration", "AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64)", "quantiles", "(0.5, 0.9, 0.99)", "duration_ms"},
	{"ttft", "AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8)", "quantilesIf", "(0.5, 0.9, 0.99)",
		"ifNull(ttft_ms, toInt64(0)), isNotNull(ttft_ms)"},
	{"ttfa", "AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8)", "quantilesIf", "(0.5, 0.9, 0.99)",
		"ifNull(ttfa_ms, toInt64(0)), isNotNull(ttfa_ms)"},
}

// rateLimitedValue counts the requests answered 429 by a limit
// (error_type rate_limited), for a rollup without the error type. Rolled
// from requests_hourly, it is rateLimitedReroll.
var rateLimitedValue = rollupValue{"rate_limited", "AggregateFunction(sum, UInt64)", "sum", "", "toUInt64(error_type = 'rate_limited')"}

// rateLimitedReroll is rateLimitedValue's state from requests_hourly's
// rows, which have the error type and a count.
const rateLimitedReroll = "sumState(toUInt64(if(error_type = 'rate_limited', finalizeAggregation(requests), 0)))"

// exampleValue is one request id of a rollup row's requests (the
// greatest, as the rows' max(request_id) would be): a way into the
// drill-down from a count, such as a route's errors of one type.
var exampleValue = rollupValue{"example", "AggregateFunction(max, String)", "max", "", "request_id"}

// durationHistogram is latency_hourly's histogram of durations in ms: a
// sumForEach state of an array of latencyBuckets counts, bucket i
// (latencyBucket) at SQL index i+1. A fixed array, not a map of the buckets seen:
// its state has one size however many requests it counts, and merging it
// adds arrays, several times faster than merging maps (docs/collector.md
// reads a quantile from it). latencySQL rolls it.
var durationHistogram = rollupValue{"duration_hist", "AggregateFunction(sumForEach, Array(UInt64))", "sumForEach", "", ""}

// latencyBuckets is the length of a latency histogram: eight buckets to a
// doubling from 1 ms, the last holding every latency from 2^(158/8) ms
// (about 15 minutes) on.
const latencyBuckets = 160

// latencyBucket is the SQL of the histogram bucket of a latency in ms
// (an Int64 expression), as a UInt64: bucket i holds the latencies in
// (2^((i-1)/8), 2^(i/8)] ms, eight buckets to a doubling, as Prometheus's
// native histograms at their default schema; a quantile read at a
// bucket's geometric middle, 2^((i-0.5)/8), is within 4.4% of the
// latency.
func latencyBucket(ms string) string {
	return "toUInt64(least(ceil(log2(greatest(" + ms + ", 1)) * 8), " + strconv.Itoa(latencyBuckets-1) + "))"
}

// histogramOf is the SQL of a latency histogram (an Array(UInt64) of
// latencyBuckets) with count at bucket, both UInt64 expressions: what
// sumForEach adds up.
func histogramOf(bucket, count string) string {
	return "arrayResize(arrayPushBack(arrayResize(emptyArrayUInt64(), " + bucket + "), " + count + "), " + strconv.Itoa(latencyBuckets) + ")"
}

// rollupValue is one aggregate state of the rollups: its column, type,
// function with its parameters, and its arguments over a request's row.
type rollupValue struct{ name, typ, fn, params, args string }

// state is the value's state made from requests' rows.
func (v rollupValue) state() string { return v.fn + "State" + v.params + "(" + v.args + ")" }

// mergeState is the value's state made from a rollup's states of it.
func (v rollupValue) mergeState() string { return v.fn + "MergeState" + v.params + "(" + v.name + ")" }

// hourlyMigration creates the rollups the summary panels and the spend
// report read for whole hours (see rollups). The Roller fills them from
// the requests table read FINAL, an hour at a time, so that the copies a
// replay or a resend stores count once (a view on inserts would count
// each copy); a roll of an hour is a set of rows with one rolled_ns (its
// time in nanoseconds: two collectors rolling an hour in the same second
// make two sets), and readers take each hour's latest (rollup.latest). An
// hour, not a minute: a dashboard's buckets over the ranges a rollup
// serves are wider, and a minute's rows would be nearly as many as the
// requests (docs/collector.md). Retention and the cluster variant are
// requests_by_id's; on a cluster a rollup is sharded by its time bucket,
// so that two rolls of one meet on one shard.
func hourlyMigration(f Features, s Schema) Migration {
	return rollupMigration(f, s, hourlySince, "rollups", requestsHourly, routesHourly)
}

// scaleMigration creates the rollups whose size does not grow with the
// requests (requestsDaily, latencyHourly, errorsHourly), filled as
// hourlyMigration's.
func scaleMigration(f Features, s Schema) Migration {
	return rollupMigration(f, s, scaleSince, "rollups_at_scale", requestsDaily, latencyHourly, errorsHourly)
}

// rollupMigration is the migration since, named name, that creates the
// rollup tables rs.
func rollupMigration(f Features, s Schema, since uint32, name string, rs ...rollup) Migration {
	m := Migration{Version: since, Name: name}
	if f.TTL {
		m.Name += " rows=" + shortDuration(s.Retention)
	}
	types := f // a Distributed table has the types, not the codecs
	types.Codecs = false
	for _, r := range rs {
		key := strings.TrimSuffix("route, "+r.grain.column+", "+r.dimList(), ", ")
		keyed := "PARTITION BY toYYYYMM(" + r.grain.column + ")\nORDER BY (" + key + ")"
		if s.Cluster == "" {
			m.Statements = append(m.Statements, "CREATE TABLE IF NOT EXISTS "+s.Database+"."+r.name+"\n"+r.columns(f)+"\nENGINE = ReplacingMergeTree(rolled_ns)\n"+keyed)
		} else {
			m.Statements = append(m.Statements,
				"CREATE TABLE IF NOT EXISTS "+s.Database+"."+r.name+"_local"+s.onCluster()+"\n"+r.columns(f)+"\nENGINE = ReplicatedReplacingMergeTree('"+
					fmt.Sprintf(rollupZKPath, s.Database, r.name)+"', '{replica}', rolled_ns)\n"+keyed,
				"CREATE TABLE IF NOT EXISTS "+s.Database+"."+r.name+s.onCluster()+"\n"+r.columns(types)+"\nENGINE = Distributed("+s.Cluster+", "+s.Database+", "+r.name+"_local, toUInt32("+r.grain.column+"))")
		}
		if f.TTL && s.Retention > 0 {
			m.Statements = append(m.Statements, "ALTER TABLE "+r.storage(s)+s.onCluster()+" MODIFY TTL "+r.grain.column+" + "+interval(s.Retention))
		}
	}
	return m
}

// columns is the rollup's column list on a server with features f.
func (r rollup) columns(f Features) string {
	var b strings.Builder
	b.WriteString("(\n    " + r.grain.column + " DateTime" + codecOf(f, "DoubleDelta, ZSTD(1)") + ",\n    route " + columnType(column{typ: "String", class: lowCard}, f) + ",\n")
	for _, d := range r.dims {
		b.WriteString("    " + d.name + " " + columnType(d, f) + ",\n")
	}
	b.WriteString("    rolled_ns UInt64")
	for _, v := range r.values {
		b.WriteString(",\n    " + v.name + " " + v.typ)
	}
	b.WriteString("\n)")
	return b.String()
}

func (r rollup) valueNames() string {
	names := make([]string, len(r.values))
	for i, v := range r.values {
		names[i] = v.name
	}
	return strings.Join(names, ", ")
}

// codecOf is " CODEC(codec)" where the server has codecs, else "".
func codecOf(f Features, codec string) string {
	if !f.Codecs {
		return ""
	}
	return " CODEC(" + codec + ")"
}

// storage is the table that holds the rollup's rows.
func (r rollup) storage(s Schema) string {
	if s.Cluster == "" {
		return s.Database + "." + r.name
	}
	return s.Database + "." + r.name + "_local"
}

// addColumns are the statements that add the columns of migration since
// after the column after, and extra clauses (with a %s for IF NOT
// EXISTS); on a cluster to the local tables, then with their types alone
// to the Distributed table. Where the server has no ADD COLUMN IF NOT
// EXISTS (18.16), done is the Migration.Done query that finds the column
// probe already there.
func addColumns(f Features, s Schema, since int, after, probe string, extra ...string) (stmts []string, done string) {
	ifNotExists := "IF NOT EXISTS "
	if !f.IfNotExists {
		ifNotExists = ""
		done = "SELECT count() FROM system.columns WHERE database = '" + s.Database +
			"' AND table = '" + requestsTable + "' AND name = '" + probe + "'"
	}
	add := func(table string, cf Features) string {
		var adds []string
		prev := after
		for _, c := range columns {
			if c.since == since {
				adds = append(adds, "    ADD COLUMN "+ifNotExists+c.name+" "+columnType(c, cf)+" AFTER "+prev)
				prev = c.name
			}
		}
		for _, e := range extra {
			adds = append(adds, "    "+fmt.Sprintf(e, ifNotExists))
		}
		return "ALTER TABLE " + table + s.onCluster() + "\n" + strings.Join(adds, ",\n")
	}
	stmts = append(stmts, add(s.storageTable(), f))
	if s.Cluster != "" {
		types := f
		types.Codecs = false
		stmts = append(stmts, add(s.Database+"."+requestsTable, types))
	}
	return stmts, done
}

// bodyTTLs are the MODIFY COLUMN clauses that give the body columns added
// by migration since the body retention's TTL.
func bodyTTLs(f Features, s Schema, since int) []string {
	var mods []string
	for _, c := range columns {
		if c.class == body && c.since == since {
			mods = append(mods, "    MODIFY COLUMN "+c.name+" "+columnType(c, f)+" TTL start + "+interval(s.BodyRetention))
		}
	}
	return mods
}

// interval renders d in the largest whole unit ClickHouse's INTERVAL takes.
func interval(d time.Duration) string {
	n, unit := durationUnits(d)
	return fmt.Sprintf("INTERVAL %d %s", n, map[string]string{"d": "DAY", "h": "HOUR", "m": "MINUTE", "s": "SECOND"}[unit])
}

// shortDuration is "90d", "36h", "off" for 0: stable text for a record.
func shortDuration(d time.Duration) string {
	if d <= 0 {
		return "off"
	}
	n, unit := durationUnits(d)
	return fmt.Sprintf("%d%s", n, unit)
}

func durationUnits(d time.Duration) (int64, string) {
	day := 24 * time.Hour
	switch {
	case d%day == 0:
		return int64(d / day), "d"
	case d%time.Hour == 0:
		return int64(d / time.Hour), "h"
	case d%time.Minute == 0:
		return int64(d / time.Minute), "m"
	default:
		return int64(d / time.Second), "s"
	}
}

// renderPlan is the plan as one SQL script, as the golden files hold it.
func renderPlan(v Version, s Schema) string {
	s = s.withDefaults()
	var b strings.Builder
	cluster := ""
	if s.Cluster != "" {
		cluster = ", cluster " + s.Cluster
	}
	fmt.Fprintf(&b, "-- ClickHouse %s, database %s%s, retention %s, body retention %s\n", v, s.Database, cluster, shortDuration(s.Retention), shortDuration(s.BodyRetention))
	fmt.Fprintf(&b, "-- features: %+v\n\n-- bootstrap\n", FeaturesOf(v))
	for _, st := range bootstrap(s) {
		b.WriteString(st + ";\n\n")
	}
	for _, m := range Plan(v, s) {
		fmt.Fprintf(&b, "-- migration %d: %s\n", m.Version, m.Name)
		if len(m.Statements) == 0 {
			b.WriteString("-- (does not apply to this server)\n\n")
		}
		if m.Done != "" {
			b.WriteString("-- applied already when this counts more than 0:\n-- " + m.Done + "\n\n")
		}
		for _, st := range m.Statements {
			b.WriteString(st + ";\n\n")
		}
	}
	return b.String()
}
