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
// # Chunks stored as spans of the body
//
// A stream's events are runs of its body's bytes, so a row stores the
// body once and each event's data as its byte offsets in it (chunk_starts,
// chunk_ends); only a stream whose events are not (an SSE event of several
// data lines, joined) keeps the texts (response_chunks). toRow decides by
// finding each chunk in the body, so a span always holds its chunk's exact
// bytes. The alias column chunks and Store.Get read either form back.
// Migration 3 adds the columns to older tables; on 18.16, which has no ADD
// COLUMN IF NOT EXISTS, its Done query skips it for a table that has them.
//
// # Writing
//
// Writer.Enqueue takes the facts of an ingest batch, all or none: into a
// queue bounded in facts and bytes, or, past either bound, after waiting
// up to WriterOptions.QueueWait (within its context) for a written batch
// to make room, to the spool; it answers ErrQueueFull only when the spool
// cannot take them either. The wait is flow control: while ClickHouse
// keeps up, it slows the senders down instead of writing batches to disk
// and reading them back, which costs more than storing them
// (docs/collector.md has the figures). Writer.Run batches by size and
// time, retries a failed insert a few times with backoff, then writes the
// batch to a bounded spool on disk (one fsync'd gob file per batch) and
// replays the spool, oldest first, when ClickHouse answers again.
// Writer.Shutdown drains the queue to
// ClickHouse or the spool within its context's deadline, inserts giving
// way to the spool when the deadline nears. A fact Enqueue accepted is
// lost only when the spool is full, disabled or fails, and then it is
// counted (Stats.SpoolDropped). Replays may store a batch twice (an
// insert that failed after the server took it); the sort key makes those
// copies one row.
//
// # Rollups
//
// Migration 8 adds the hourly rollups requests_hourly and routes_hourly,
// migration 9 requests_daily, latency_hourly and errors_hourly, which stay small however
// many requests there are (see rollups). The Roller fills them from the
// rows read FINAL, an hour at a time once the hour has ended, so that
// stored copies of a request count once, then each ended day from
// requests_hourly, and rolls an hour and its day again when rows of it
// come late; every roll is a set of rows with its own rolled_ns, and
// rollup.latest keeps each hour's or day's latest. Store.Spend and the
// dashboard's summary panels read the whole rolled days and hours of a
// range from them and the rest from the rows.
//
// # Scale-out
//
// A collector keeps no state but its spool, so any number of them can run
// behind one Service, writing to the same ClickHouse (the limits live in
// Redis). Migrate is safe to run from several collectors at once: every
// statement is idempotent and the migrations table takes duplicate
// records.
//
// For a ClickHouse cluster, set Schema.Cluster and WriterOptions.Cluster
// to the name of a cluster in the servers' remote_servers. Plan then
// gives the cluster variant:
//
//   - Every statement runs ON CLUSTER: the database, the migrations
//     table, the tables and the retention ALTERs reach every server
//     through the distributed DDL queue.
//   - The rows live in requests_local on every server,
//     ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/<db>/requests_local',
//     '{replica}', inserted_at), with the single-server table's columns,
//     sort key and partitions; the version gate gives it the same codecs,
//     index and TTLs.
//   - requests is Distributed(<cluster>, <db>, requests_local,
//     cityHash64(request_id)): the same column types, no codec, index or
//     TTL (it stores nothing). The writer inserts into it and Store.Get
//     reads it, so queries written for llmtap.requests work unchanged.
//   - llmtap_migrations is ReplicatedMergeTree at
//     /clickhouse/tables/<db>/llmtap_migrations with replica name
//     {shard}-{replica}: every server holds the whole history.
//
// Sharding by request id keeps the deduplication of a single server: all
// copies of a record (a resend, a spool replay) land on one shard, where
// ReplacingMergeTree collapses them, and FINAL or Store.Get's newest-first
// read, which run shard by shard through the Distributed table, see them
// together. Both were run through a Distributed table on 18.16. Adding
// shards changes where an id lands: a record sent again after that may
// stay a second row on another shard.
//
// Each insert waits until every shard it touched has stored its rows
// (insert_distributed_sync=1; see WriterOptions.Cluster), so a shard that
// is down sends the batch to the spool as a down server does. Store.Get
// asks every shard; on modern servers optimize_skip_unused_shards=1 in
// the collector's settings profile narrows it to the one the id hashes
// to (18.16 does not know the setting, and the collector sends none that
// a server may not know).
//
// Every server needs ZooKeeper or ClickHouse Keeper (<zookeeper>), the
// macros {shard} and {replica} (<macros>; each replica its own pair), the
// cluster in <remote_servers> with internal_replication set to true (the
// replicated table copies rows to the other replicas of a shard; without
// it the Distributed table would write each replica itself), and
// distributed DDL (<distributed_ddl>, present in the stock configuration).
// An ON CLUSTER statement waits for every server of the cluster
// (distributed_ddl_task_timeout, 180 s by default), so Migrate fails
// while one is down. The ZooKeeper paths are fixed as above: two llmtap
// databases on one ZooKeeper need different database names.
//
// A database has one layout. Migrate refuses a requests table of the
// other one (a single server's table with a cluster configured, or a
// Distributed table without), since IF NOT EXISTS would otherwise leave
// it as it is. To move to a cluster, migrate a new database and copy the
// rows (INSERT INTO new.requests SELECT * FROM old.requests). The cluster
// name is written into the Distributed table when it is created: renaming
// the cluster later means recreating requests by hand.
package clickhouse
