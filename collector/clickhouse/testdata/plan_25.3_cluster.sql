-- ClickHouse 25.3.1, database obs, cluster main, retention 90d, body retention 7d
-- features: {Codecs:true TTL:true LowCardinality:true SkipIndex:true IfNotExists:true AdaptiveGranularity:true}

-- bootstrap
CREATE DATABASE IF NOT EXISTS obs ON CLUSTER main;

CREATE TABLE IF NOT EXISTS obs.llmtap_migrations ON CLUSTER main (
    version UInt32,
    name String,
    applied_at DateTime
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/obs/llmtap_migrations', '{shard}-{replica}')
ORDER BY (version, applied_at);

-- migration 1: create_requests
CREATE DATABASE IF NOT EXISTS obs ON CLUSTER main;

CREATE TABLE IF NOT EXISTS obs.requests_local ON CLUSTER main
(
    request_id String CODEC(ZSTD(1)),
    upstream_request_id String CODEC(ZSTD(1)),
    start DateTime CODEC(DoubleDelta, ZSTD(1)),
    start_ms UInt16,
    tenant LowCardinality(String),
    tenant_source LowCardinality(String),
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    method LowCardinality(String),
    host LowCardinality(String),
    path String CODEC(ZSTD(1)),
    status UInt16,
    outcome LowCardinality(String),
    kind LowCardinality(String),
    error_type LowCardinality(String),
    streaming UInt8,
    ttfb_ms Int64 CODEC(ZSTD(1)),
    ttft_ms Nullable(Int64) CODEC(ZSTD(1)),
    ttfa_ms Nullable(Int64) CODEC(ZSTD(1)),
    duration_ms Int64 CODEC(ZSTD(1)),
    input_tokens Nullable(Int64) CODEC(ZSTD(1)),
    output_tokens Nullable(Int64) CODEC(ZSTD(1)),
    cache_read_tokens Nullable(Int64) CODEC(ZSTD(1)),
    cache_write_tokens Nullable(Int64) CODEC(ZSTD(1)),
    reasoning_tokens Nullable(Int64) CODEC(ZSTD(1)),
    usage_source LowCardinality(String),
    usage_missing LowCardinality(String),
    cache_write_1h_tokens Nullable(Int64) CODEC(ZSTD(1)),
    cost_nanos Nullable(Int64) CODEC(ZSTD(1)),
    cost_input_nanos Int64 CODEC(ZSTD(1)),
    cost_cache_read_nanos Int64 CODEC(ZSTD(1)),
    cost_cache_write_nanos Int64 CODEC(ZSTD(1)),
    cost_output_nanos Int64 CODEC(ZSTD(1)),
    cost_reasoning_nanos Int64 CODEC(ZSTD(1)),
    price_version LowCardinality(String),
    upstream LowCardinality(String),
    attempts UInt8,
    attempt_upstreams Array(String) CODEC(ZSTD(1)),
    attempt_results Array(String) CODEC(ZSTD(1)),
    attempt_header_ms Array(Int64) CODEC(ZSTD(1)),
    bodies_omitted UInt8,
    request_bytes Int64 CODEC(ZSTD(1)),
    response_bytes Int64 CODEC(ZSTD(1)),
    request_body String CODEC(ZSTD(3)),
    response_body String CODEC(ZSTD(3)),
    response_chunks Array(String) CODEC(ZSTD(3)),
    chunk_starts Array(UInt32) CODEC(ZSTD(1)),
    chunk_ends Array(UInt32) CODEC(ZSTD(1)),
    chunk_offsets_us Array(Int64) CODEC(ZSTD(1)),
    truncated UInt8,
    inserted_at DateTime CODEC(Delta, ZSTD(1)),
    chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends)),
    INDEX request_id_bf request_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/requests_local', '{replica}', inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY (route, start, start_ms, request_id);

CREATE TABLE IF NOT EXISTS obs.requests ON CLUSTER main
(
    request_id String,
    upstream_request_id String,
    start DateTime,
    start_ms UInt16,
    tenant LowCardinality(String),
    tenant_source LowCardinality(String),
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    method LowCardinality(String),
    host LowCardinality(String),
    path String,
    status UInt16,
    outcome LowCardinality(String),
    kind LowCardinality(String),
    error_type LowCardinality(String),
    streaming UInt8,
    ttfb_ms Int64,
    ttft_ms Nullable(Int64),
    ttfa_ms Nullable(Int64),
    duration_ms Int64,
    input_tokens Nullable(Int64),
    output_tokens Nullable(Int64),
    cache_read_tokens Nullable(Int64),
    cache_write_tokens Nullable(Int64),
    reasoning_tokens Nullable(Int64),
    usage_source LowCardinality(String),
    usage_missing LowCardinality(String),
    cache_write_1h_tokens Nullable(Int64),
    cost_nanos Nullable(Int64),
    cost_input_nanos Int64,
    cost_cache_read_nanos Int64,
    cost_cache_write_nanos Int64,
    cost_output_nanos Int64,
    cost_reasoning_nanos Int64,
    price_version LowCardinality(String),
    upstream LowCardinality(String),
    attempts UInt8,
    attempt_upstreams Array(String),
    attempt_results Array(String),
    attempt_header_ms Array(Int64),
    bodies_omitted UInt8,
    request_bytes Int64,
    response_bytes Int64,
    request_body String,
    response_body String,
    response_chunks Array(String),
    chunk_starts Array(UInt32),
    chunk_ends Array(UInt32),
    chunk_offsets_us Array(Int64),
    truncated UInt8,
    inserted_at DateTime,
    chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends))
)
ENGINE = Distributed(main, obs, requests_local, cityHash64(request_id));

-- migration 2: retention rows=90d bodies=7d
ALTER TABLE obs.requests_local ON CLUSTER main MODIFY TTL start + INTERVAL 90 DAY;

ALTER TABLE obs.requests_local ON CLUSTER main
    MODIFY COLUMN request_body String CODEC(ZSTD(3)) TTL start + INTERVAL 7 DAY,
    MODIFY COLUMN response_body String CODEC(ZSTD(3)) TTL start + INTERVAL 7 DAY,
    MODIFY COLUMN response_chunks Array(String) CODEC(ZSTD(3)) TTL start + INTERVAL 7 DAY,
    MODIFY COLUMN chunk_offsets_us Array(Int64) CODEC(ZSTD(1)) TTL start + INTERVAL 7 DAY;

-- migration 3: chunk_spans bodies=7d
ALTER TABLE obs.requests_local ON CLUSTER main
    ADD COLUMN IF NOT EXISTS chunk_starts Array(UInt32) CODEC(ZSTD(1)) AFTER response_chunks,
    ADD COLUMN IF NOT EXISTS chunk_ends Array(UInt32) CODEC(ZSTD(1)) AFTER chunk_starts,
    ADD COLUMN IF NOT EXISTS chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends));

ALTER TABLE obs.requests ON CLUSTER main
    ADD COLUMN IF NOT EXISTS chunk_starts Array(UInt32) AFTER response_chunks,
    ADD COLUMN IF NOT EXISTS chunk_ends Array(UInt32) AFTER chunk_starts,
    ADD COLUMN IF NOT EXISTS chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends));

ALTER TABLE obs.requests_local ON CLUSTER main
    MODIFY COLUMN chunk_starts Array(UInt32) CODEC(ZSTD(1)) TTL start + INTERVAL 7 DAY,
    MODIFY COLUMN chunk_ends Array(UInt32) CODEC(ZSTD(1)) TTL start + INTERVAL 7 DAY;

-- migration 4: cost
ALTER TABLE obs.requests_local ON CLUSTER main
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens Nullable(Int64) CODEC(ZSTD(1)) AFTER usage_missing,
    ADD COLUMN IF NOT EXISTS cost_nanos Nullable(Int64) CODEC(ZSTD(1)) AFTER cache_write_1h_tokens,
    ADD COLUMN IF NOT EXISTS cost_input_nanos Int64 CODEC(ZSTD(1)) AFTER cost_nanos,
    ADD COLUMN IF NOT EXISTS cost_cache_read_nanos Int64 CODEC(ZSTD(1)) AFTER cost_input_nanos,
    ADD COLUMN IF NOT EXISTS cost_cache_write_nanos Int64 CODEC(ZSTD(1)) AFTER cost_cache_read_nanos,
    ADD COLUMN IF NOT EXISTS cost_output_nanos Int64 CODEC(ZSTD(1)) AFTER cost_cache_write_nanos,
    ADD COLUMN IF NOT EXISTS cost_reasoning_nanos Int64 CODEC(ZSTD(1)) AFTER cost_output_nanos,
    ADD COLUMN IF NOT EXISTS price_version LowCardinality(String) AFTER cost_reasoning_nanos;

ALTER TABLE obs.requests ON CLUSTER main
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens Nullable(Int64) AFTER usage_missing,
    ADD COLUMN IF NOT EXISTS cost_nanos Nullable(Int64) AFTER cache_write_1h_tokens,
    ADD COLUMN IF NOT EXISTS cost_input_nanos Int64 AFTER cost_nanos,
    ADD COLUMN IF NOT EXISTS cost_cache_read_nanos Int64 AFTER cost_input_nanos,
    ADD COLUMN IF NOT EXISTS cost_cache_write_nanos Int64 AFTER cost_cache_read_nanos,
    ADD COLUMN IF NOT EXISTS cost_output_nanos Int64 AFTER cost_cache_write_nanos,
    ADD COLUMN IF NOT EXISTS cost_reasoning_nanos Int64 AFTER cost_output_nanos,
    ADD COLUMN IF NOT EXISTS price_version LowCardinality(String) AFTER cost_reasoning_nanos;

-- migration 5: upstreams
ALTER TABLE obs.requests_local ON CLUSTER main
    ADD COLUMN IF NOT EXISTS upstream LowCardinality(String) AFTER price_version,
    ADD COLUMN IF NOT EXISTS attempts UInt8 AFTER upstream,
    ADD COLUMN IF NOT EXISTS attempt_upstreams Array(String) CODEC(ZSTD(1)) AFTER attempts,
    ADD COLUMN IF NOT EXISTS attempt_results Array(String) CODEC(ZSTD(1)) AFTER attempt_upstreams,
    ADD COLUMN IF NOT EXISTS attempt_header_ms Array(Int64) CODEC(ZSTD(1)) AFTER attempt_results;

ALTER TABLE obs.requests ON CLUSTER main
    ADD COLUMN IF NOT EXISTS upstream LowCardinality(String) AFTER price_version,
    ADD COLUMN IF NOT EXISTS attempts UInt8 AFTER upstream,
    ADD COLUMN IF NOT EXISTS attempt_upstreams Array(String) AFTER attempts,
    ADD COLUMN IF NOT EXISTS attempt_results Array(String) AFTER attempt_upstreams,
    ADD COLUMN IF NOT EXISTS attempt_header_ms Array(Int64) AFTER attempt_results;

-- migration 6: bodies_omitted
ALTER TABLE obs.requests_local ON CLUSTER main
    ADD COLUMN IF NOT EXISTS bodies_omitted UInt8 AFTER attempt_header_ms;

ALTER TABLE obs.requests ON CLUSTER main
    ADD COLUMN IF NOT EXISTS bodies_omitted UInt8 AFTER attempt_header_ms;

-- migration 7: requests_by_id rows=90d
CREATE TABLE IF NOT EXISTS obs.requests_by_id_local ON CLUSTER main
(
    request_id String,
    route String,
    start DateTime,
    start_ms UInt16,
    inserted_at DateTime
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/requests_by_id_local', '{replica}', inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY request_id;

CREATE TABLE IF NOT EXISTS obs.requests_by_id ON CLUSTER main
(
    request_id String,
    route String,
    start DateTime,
    start_ms UInt16,
    inserted_at DateTime
)
ENGINE = Distributed(main, obs, requests_by_id_local, cityHash64(request_id));

ALTER TABLE obs.requests_by_id_local ON CLUSTER main MODIFY TTL start + INTERVAL 90 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS obs.requests_by_id_mv ON CLUSTER main TO obs.requests_by_id_local
AS SELECT request_id, route, start, start_ms, inserted_at FROM obs.requests_local;

-- migration 8: rollups rows=90d
CREATE TABLE IF NOT EXISTS obs.requests_hourly_local ON CLUSTER main
(
    hour DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    tenant LowCardinality(String),
    status_class UInt8,
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    input AggregateFunction(sum, Int64),
    output AggregateFunction(sum, Int64),
    cache_read AggregateFunction(sum, Int64),
    cache_write AggregateFunction(sum, Int64),
    reasoning AggregateFunction(sum, Int64),
    spend_nanos AggregateFunction(sum, Int64),
    unpriced AggregateFunction(sum, UInt64),
    duration AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64),
    ttft AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8),
    ttfa AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/requests_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, provider, model, tenant, status_class, error_type);

CREATE TABLE IF NOT EXISTS obs.requests_hourly ON CLUSTER main
(
    hour DateTime,
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    tenant LowCardinality(String),
    status_class UInt8,
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    input AggregateFunction(sum, Int64),
    output AggregateFunction(sum, Int64),
    cache_read AggregateFunction(sum, Int64),
    cache_write AggregateFunction(sum, Int64),
    reasoning AggregateFunction(sum, Int64),
    spend_nanos AggregateFunction(sum, Int64),
    unpriced AggregateFunction(sum, UInt64),
    duration AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64),
    ttft AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8),
    ttfa AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8)
)
ENGINE = Distributed(main, obs, requests_hourly_local, toUInt32(hour));

ALTER TABLE obs.requests_hourly_local ON CLUSTER main MODIFY TTL hour + INTERVAL 90 DAY;

CREATE TABLE IF NOT EXISTS obs.routes_hourly_local ON CLUSTER main
(
    hour DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    status_class UInt8,
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    input AggregateFunction(sum, Int64),
    output AggregateFunction(sum, Int64),
    cache_read AggregateFunction(sum, Int64),
    cache_write AggregateFunction(sum, Int64),
    reasoning AggregateFunction(sum, Int64),
    spend_nanos AggregateFunction(sum, Int64),
    unpriced AggregateFunction(sum, UInt64),
    duration AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64),
    ttft AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8),
    ttfa AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/routes_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, provider, model, status_class, error_type);

CREATE TABLE IF NOT EXISTS obs.routes_hourly ON CLUSTER main
(
    hour DateTime,
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    status_class UInt8,
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    input AggregateFunction(sum, Int64),
    output AggregateFunction(sum, Int64),
    cache_read AggregateFunction(sum, Int64),
    cache_write AggregateFunction(sum, Int64),
    reasoning AggregateFunction(sum, Int64),
    spend_nanos AggregateFunction(sum, Int64),
    unpriced AggregateFunction(sum, UInt64),
    duration AggregateFunction(quantiles(0.5, 0.9, 0.99), Int64),
    ttft AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8),
    ttfa AggregateFunction(quantilesIf(0.5, 0.9, 0.99), Int64, UInt8)
)
ENGINE = Distributed(main, obs, routes_hourly_local, toUInt32(hour));

ALTER TABLE obs.routes_hourly_local ON CLUSTER main MODIFY TTL hour + INTERVAL 90 DAY;

-- migration 9: rollups_at_scale rows=90d
CREATE TABLE IF NOT EXISTS obs.requests_daily_local ON CLUSTER main
(
    day DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    tenant LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    input AggregateFunction(sum, Int64),
    output AggregateFunction(sum, Int64),
    cache_read AggregateFunction(sum, Int64),
    cache_write AggregateFunction(sum, Int64),
    reasoning AggregateFunction(sum, Int64),
    spend_nanos AggregateFunction(sum, Int64),
    unpriced AggregateFunction(sum, UInt64),
    rate_limited AggregateFunction(sum, UInt64)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/requests_daily_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(day)
ORDER BY (route, day, provider, model, tenant);

CREATE TABLE IF NOT EXISTS obs.requests_daily ON CLUSTER main
(
    day DateTime,
    route LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    tenant LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    input AggregateFunction(sum, Int64),
    output AggregateFunction(sum, Int64),
    cache_read AggregateFunction(sum, Int64),
    cache_write AggregateFunction(sum, Int64),
    reasoning AggregateFunction(sum, Int64),
    spend_nanos AggregateFunction(sum, Int64),
    unpriced AggregateFunction(sum, UInt64),
    rate_limited AggregateFunction(sum, UInt64)
)
ENGINE = Distributed(main, obs, requests_daily_local, toUInt32(day));

ALTER TABLE obs.requests_daily_local ON CLUSTER main MODIFY TTL day + INTERVAL 90 DAY;

CREATE TABLE IF NOT EXISTS obs.latency_hourly_local ON CLUSTER main
(
    hour DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    rolled_ns UInt64,
    duration_hist AggregateFunction(sumForEach, Array(UInt64))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/latency_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour);

CREATE TABLE IF NOT EXISTS obs.latency_hourly ON CLUSTER main
(
    hour DateTime,
    route LowCardinality(String),
    rolled_ns UInt64,
    duration_hist AggregateFunction(sumForEach, Array(UInt64))
)
ENGINE = Distributed(main, obs, latency_hourly_local, toUInt32(hour));

ALTER TABLE obs.latency_hourly_local ON CLUSTER main MODIFY TTL hour + INTERVAL 90 DAY;

CREATE TABLE IF NOT EXISTS obs.errors_hourly_local ON CLUSTER main
(
    hour DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    example AggregateFunction(max, String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/obs/errors_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, error_type);

CREATE TABLE IF NOT EXISTS obs.errors_hourly ON CLUSTER main
(
    hour DateTime,
    route LowCardinality(String),
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    example AggregateFunction(max, String)
)
ENGINE = Distributed(main, obs, errors_hourly_local, toUInt32(hour));

ALTER TABLE obs.errors_hourly_local ON CLUSTER main MODIFY TTL hour + INTERVAL 90 DAY;

