-- ClickHouse 20.1.2, database obs, retention off, body retention 36h
-- features: {Codecs:true TTL:true LowCardinality:true SkipIndex:true IfNotExists:true AdaptiveGranularity:true}

-- bootstrap
CREATE DATABASE IF NOT EXISTS obs;

CREATE TABLE IF NOT EXISTS obs.llmtap_migrations (
    version UInt32,
    name String,
    applied_at DateTime
)
ENGINE = MergeTree
ORDER BY (version, applied_at);

-- migration 1: create_requests
CREATE DATABASE IF NOT EXISTS obs;

CREATE TABLE IF NOT EXISTS obs.requests
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
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY (route, start, start_ms, request_id);

-- migration 2: retention rows=off bodies=36h
ALTER TABLE obs.requests
    MODIFY COLUMN request_body String CODEC(ZSTD(3)) TTL start + INTERVAL 36 HOUR,
    MODIFY COLUMN response_body String CODEC(ZSTD(3)) TTL start + INTERVAL 36 HOUR,
    MODIFY COLUMN response_chunks Array(String) CODEC(ZSTD(3)) TTL start + INTERVAL 36 HOUR,
    MODIFY COLUMN chunk_offsets_us Array(Int64) CODEC(ZSTD(1)) TTL start + INTERVAL 36 HOUR;

-- migration 3: chunk_spans bodies=36h
ALTER TABLE obs.requests
    ADD COLUMN IF NOT EXISTS chunk_starts Array(UInt32) CODEC(ZSTD(1)) AFTER response_chunks,
    ADD COLUMN IF NOT EXISTS chunk_ends Array(UInt32) CODEC(ZSTD(1)) AFTER chunk_starts,
    ADD COLUMN IF NOT EXISTS chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends));

ALTER TABLE obs.requests
    MODIFY COLUMN chunk_starts Array(UInt32) CODEC(ZSTD(1)) TTL start + INTERVAL 36 HOUR,
    MODIFY COLUMN chunk_ends Array(UInt32) CODEC(ZSTD(1)) TTL start + INTERVAL 36 HOUR;

-- migration 4: cost
ALTER TABLE obs.requests
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens Nullable(Int64) CODEC(ZSTD(1)) AFTER usage_missing,
    ADD COLUMN IF NOT EXISTS cost_nanos Nullable(Int64) CODEC(ZSTD(1)) AFTER cache_write_1h_tokens,
    ADD COLUMN IF NOT EXISTS cost_input_nanos Int64 CODEC(ZSTD(1)) AFTER cost_nanos,
    ADD COLUMN IF NOT EXISTS cost_cache_read_nanos Int64 CODEC(ZSTD(1)) AFTER cost_input_nanos,
    ADD COLUMN IF NOT EXISTS cost_cache_write_nanos Int64 CODEC(ZSTD(1)) AFTER cost_cache_read_nanos,
    ADD COLUMN IF NOT EXISTS cost_output_nanos Int64 CODEC(ZSTD(1)) AFTER cost_cache_write_nanos,
    ADD COLUMN IF NOT EXISTS cost_reasoning_nanos Int64 CODEC(ZSTD(1)) AFTER cost_output_nanos,
    ADD COLUMN IF NOT EXISTS price_version LowCardinality(String) AFTER cost_reasoning_nanos;

-- migration 5: upstreams
ALTER TABLE obs.requests
    ADD COLUMN IF NOT EXISTS upstream LowCardinality(String) AFTER price_version,
    ADD COLUMN IF NOT EXISTS attempts UInt8 AFTER upstream,
    ADD COLUMN IF NOT EXISTS attempt_upstreams Array(String) CODEC(ZSTD(1)) AFTER attempts,
    ADD COLUMN IF NOT EXISTS attempt_results Array(String) CODEC(ZSTD(1)) AFTER attempt_upstreams,
    ADD COLUMN IF NOT EXISTS attempt_header_ms Array(Int64) CODEC(ZSTD(1)) AFTER attempt_results;

-- migration 6: bodies_omitted
ALTER TABLE obs.requests
    ADD COLUMN IF NOT EXISTS bodies_omitted UInt8 AFTER attempt_header_ms;

-- migration 7: requests_by_id rows=off
CREATE TABLE IF NOT EXISTS obs.requests_by_id
(
    request_id String,
    route String,
    start DateTime,
    start_ms UInt16,
    inserted_at DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY request_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS obs.requests_by_id_mv TO obs.requests_by_id
AS SELECT request_id, route, start, start_ms, inserted_at FROM obs.requests;

-- migration 8: rollups rows=off
CREATE TABLE IF NOT EXISTS obs.requests_hourly
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
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, provider, model, tenant, status_class, error_type);

CREATE TABLE IF NOT EXISTS obs.routes_hourly
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
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, provider, model, status_class, error_type);

-- migration 9: rollups_at_scale rows=off
CREATE TABLE IF NOT EXISTS obs.requests_daily
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
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(day)
ORDER BY (route, day, provider, model, tenant);

CREATE TABLE IF NOT EXISTS obs.latency_hourly
(
    hour DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    rolled_ns UInt64,
    duration_hist AggregateFunction(sumForEach, Array(UInt64))
)
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour);

CREATE TABLE IF NOT EXISTS obs.errors_hourly
(
    hour DateTime CODEC(DoubleDelta, ZSTD(1)),
    route LowCardinality(String),
    error_type LowCardinality(String),
    rolled_ns UInt64,
    requests AggregateFunction(count),
    example AggregateFunction(max, String)
)
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, error_type);

