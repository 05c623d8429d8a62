// Package clickhouse stores collector.Facts in ClickHouse: schema
// migrations (Migrator), a batching writer with a disk spool (Writer), and
// reads by request id (Store). It talks to the server over the native
// protocol with clickhouse-go/v2 and runs on ClickHouse 18.16 (the oldest
// server it is tested against) as well as on current releases.
//
// # One table, one row per request
//
// Every Fact is one row of requests. 18.16 has no DateTime64, so the start
// is start (DateTime, seconds) plus start_ms (UInt16); Store.Get joins them
// back into a UTC time with millisecond precision. Optional numbers are
// Nullable(Int64) so "not reported" stays apart from 0. inserted_at is the
// ReplacingMergeTree version: the newest copy of a row wins.
//
// # Sort key: (route, start, start_ms, request_id)
//
// ReplacingMergeTree collapses rows whose whole sorting key is equal, and
// only within one partition, so the key decides both query speed and what
// counts as "the same request":
//
//   - Dashboards ask for a time range, most often per route. route comes
//     first (a few dozen values), then the exact start: a route's time
//     range is one contiguous run of granules, and an all-routes range is
//     one run per route, both found through the primary index. Rows of a
//     route lie in time order, so on modern servers start and inserted_at
//     compress with DoubleDelta/Delta to almost nothing.
//   - Every key column repeats exactly when the same record is stored
//     again (a resend by the plugin, a spool replay, a re-derivation by a
//     newer collector): route is the Traefik router, start the arrival
//     time. Values parsed out of bodies or resolved from configuration
//     (model, provider, tenant, status, usage) stay out of the key: if a
//     replay derived them differently it would not collapse. The
//     partition, toYYYYMM(start), is a function of start too, so both
//     copies land in the same partition.
//   - The key ends in request_id, and the exact start is part of it: the
//     plugin keeps a client's own X-Request-Id, so two different requests
//     can share an id. With (route, toStartOfHour(start), request_id) two
//     such requests within the same hour would silently merge into one;
//     here they stay apart unless they hit the same route in the same
//     millisecond.
//
// Before background merges a replayed request has several rows. Store.Get
// reads the newest (ORDER BY inserted_at DESC LIMIT 1), which is the row a
// merge keeps; analytical queries use FINAL or argMax. The key cannot
// serve a lookup by id alone; modern servers get a bloom_filter index on
// request_id for it, 18.16 scans the request_id column.
//
// # The version gate
//
// Migrate reads SELECT version() once; FeaturesOf is the only place that
// turns it into schema choices, with one threshold: 20.1, the first release
// where everything below works without an experimental setting (CODEC
// appeared in 19.1, DoubleDelta in 19.11, table and column TTL in 19.6,
// bloom_filter indices left experimental in 20.1.2.4). From 20.1 on the table gets compression codecs (ZSTD(3)
// for bodies, DoubleDelta/Delta+ZSTD for times), LowCardinality(String)
// for dimension columns, the request_id index, and retention by TTL: a
// table TTL drops rows Schema.Retention after their start, column TTLs
// empty the bodies after Schema.BodyRetention. Before 20.1 none of these:
// retention is not enforced by the server (Migrate logs a warning; monthly
// partitions make ALTER TABLE ... DROP PARTITION cheap).
//
// LowCardinality on 18.16: it exists there only behind the setting
// allow_experimental_low_cardinality_type, as a pre-release feature.
// Using it would mean sending
// that setting on every connection, and since a server that does not know
// a setting fails the query, sending it only to servers that know it: a
// second version gate, on the connection, for a feature in test. The
// dimension columns are short, repetitive strings that LZ4 compresses well
// anyway, so the legacy schema uses plain String and the connection sends
// no settings at all; from 20.1 the columns are LowCardinality(String).
//
// # Migrations
//
// Plan generates the numbered migrations from (server version, Schema) as
// a pure function; golden files in testdata hold its output for both
// sides of the gate. Migrate applies the pending ones in order and records
// each in llmtap_migrations. A migration with no statements for this
// server (the TTL step on 18.16) is not recorded, so it runs once the
// server is upgraded. The retention step's recorded name carries its
// settings, so changing the retention applies it again. Limits: a table
// created on 18.16 keeps its legacy column types and codecs after a
// server upgrade (changing them rewrites every part; do it by hand if
// wanted), and setting a retention back to 0 does not remove a TTL set
// before (ALTER TABLE ... REMOVE TTL by hand).
//
// # Writing
//
// Writer.Enqueue never blocks and answers ErrQueueFull when the queue is
// full. Writer.Run batches by size and time, retries a failed insert a few
// times with backoff, then writes the batch to a bounded spool on disk
// (one fsync'd gob file per batch) and replays the spool, oldest first,
// when ClickHouse answers again. Writer.Shutdown drains the queue to
// ClickHouse or the spool within its context's deadline, inserts giving
// way to the spool when the deadline nears. A fact Enqueue accepted is
// lost only when the spool is full, disabled or fails, and then it is
// counted (Stats.SpoolDropped). Replays may store a batch twice (an
// insert that failed after the server took it); the sort key makes those
// copies one row.
package clickhouse
