-- ClickHouse 19.17.9, database obs, retention 30d, body retention off
-- features: {Codecs:false TTL:false LowCardinality:false SkipIndex:false IfNotExists:false AdaptiveGranularity:false}

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
    request_id String,
    upstream_request_id String,
    start DateTime,
    start_ms UInt16,
    tenant String,
    tenant_source String,
    route String,
    provider String,
    model String,
    method String,
    host String,
    path String,
    status UInt16,
    outcome String,
    kind String,
    error_type String,
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
    usage_source String,
    usage_missing String,
    cache_write_1h_tokens Nullable(Int64),
    cost_nanos Nullable(Int64),
    cost_input_nanos Int64,
    cost_cache_read_nanos Int64,
    cost_cache_write_nanos Int64,
    cost_output_nanos Int64,
    cost_reasoning_nanos Int64,
    price_version String,
    upstream String,
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
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY (route, start, start_ms, request_id)
SETTINGS index_granularity = 1024;

-- migration 2: retention rows=30d bodies=off
-- (does not apply to this server)

-- migration 3: chunk_spans
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'obs' AND table = 'requests' AND name = 'chunks'

ALTER TABLE obs.requests
    ADD COLUMN chunk_starts Array(UInt32) AFTER response_chunks,
    ADD COLUMN chunk_ends Array(UInt32) AFTER chunk_starts,
    ADD COLUMN chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends));

-- migration 4: cost
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'obs' AND table = 'requests' AND name = 'price_version'

ALTER TABLE obs.requests
    ADD COLUMN cache_write_1h_tokens Nullable(Int64) AFTER usage_missing,
    ADD COLUMN cost_nanos Nullable(Int64) AFTER cache_write_1h_tokens,
    ADD COLUMN cost_input_nanos Int64 AFTER cost_nanos,
    ADD COLUMN cost_cache_read_nanos Int64 AFTER cost_input_nanos,
    ADD COLUMN cost_cache_write_nanos Int64 AFTER cost_cache_read_nanos,
    ADD COLUMN cost_output_nanos Int64 AFTER cost_cache_write_nanos,
    ADD COLUMN cost_reasoning_nanos Int64 AFTER cost_output_nanos,
    ADD COLUMN price_version String AFTER cost_reasoning_nanos;

-- migration 5: upstreams
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'obs' AND table = 'requests' AND name = 'attempt_header_ms'

ALTER TABLE obs.requests
    ADD COLUMN upstream String AFTER price_version,
    ADD COLUMN attempts UInt8 AFTER upstream,
    ADD COLUMN attempt_upstreams Array(String) AFTER attempts,
    ADD COLUMN attempt_results Array(String) AFTER attempt_upstreams,
    ADD COLUMN attempt_header_ms Array(Int64) AFTER attempt_results;

-- migration 6: bodies_omitted
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'obs' AND table = 'requests' AND name = 'bodies_omitted'

ALTER TABLE obs.requests
    ADD COLUMN bodies_omitted UInt8 AFTER attempt_header_ms;

-- migration 7: requests_by_id
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

-- migration 8: rollups
CREATE TABLE IF NOT EXISTS obs.requests_hourly
(
    hour DateTime,
    route String,
    provider String,
    model String,
    tenant String,
    status_class UInt8,
    error_type String,
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
    hour DateTime,
    route String,
    provider String,
    model String,
    status_class UInt8,
    error_type String,
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

-- migration 9: rollups_at_scale
CREATE TABLE IF NOT EXISTS obs.requests_daily
(
    day DateTime,
    route String,
    provider String,
    model String,
    tenant String,
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
    hour DateTime,
    route String,
    rolled_ns UInt64,
    duration_hist AggregateFunction(sumForEach, Array(UInt64))
)
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour);

CREATE TABLE IF NOT EXISTS obs.errors_hourly
(
    hour DateTime,
    route String,
    error_type String,
    rolled_ns UInt64,
    requests AggregateFunction(count),
    example AggregateFunction(max, String)
)
ENGINE = ReplacingMergeTree(rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, error_type);

