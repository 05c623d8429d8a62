-- ClickHouse 18.16.1, database llmtap, cluster llmtap_cluster, retention 90d, body retention 7d
-- features: {Codecs:false TTL:false LowCardinality:false SkipIndex:false IfNotExists:false AdaptiveGranularity:false}

-- bootstrap
CREATE DATABASE IF NOT EXISTS llmtap ON CLUSTER llmtap_cluster;

CREATE TABLE IF NOT EXISTS llmtap.llmtap_migrations ON CLUSTER llmtap_cluster (
    version UInt32,
    name String,
    applied_at DateTime
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/llmtap/llmtap_migrations', '{shard}-{replica}')
ORDER BY (version, applied_at);

-- migration 1: create_requests
CREATE DATABASE IF NOT EXISTS llmtap ON CLUSTER llmtap_cluster;

CREATE TABLE IF NOT EXISTS llmtap.requests_local ON CLUSTER llmtap_cluster
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/requests_local', '{replica}', inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY (route, start, start_ms, request_id)
SETTINGS index_granularity = 1024;

CREATE TABLE IF NOT EXISTS llmtap.requests ON CLUSTER llmtap_cluster
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
ENGINE = Distributed(llmtap_cluster, llmtap, requests_local, cityHash64(request_id));

-- migration 2: retention rows=90d bodies=7d
-- (does not apply to this server)

-- migration 3: chunk_spans
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'llmtap' AND table = 'requests' AND name = 'chunks'

ALTER TABLE llmtap.requests_local ON CLUSTER llmtap_cluster
    ADD COLUMN chunk_starts Array(UInt32) AFTER response_chunks,
    ADD COLUMN chunk_ends Array(UInt32) AFTER chunk_starts,
    ADD COLUMN chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends));

ALTER TABLE llmtap.requests ON CLUSTER llmtap_cluster
    ADD COLUMN chunk_starts Array(UInt32) AFTER response_chunks,
    ADD COLUMN chunk_ends Array(UInt32) AFTER chunk_starts,
    ADD COLUMN chunks Array(String) ALIAS if(empty(chunk_ends) OR empty(response_body), response_chunks, arrayMap((s, e) -> substring(response_body, s + 1, e - s), chunk_starts, chunk_ends));

-- migration 4: cost
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'llmtap' AND table = 'requests' AND name = 'price_version'

ALTER TABLE llmtap.requests_local ON CLUSTER llmtap_cluster
    ADD COLUMN cache_write_1h_tokens Nullable(Int64) AFTER usage_missing,
    ADD COLUMN cost_nanos Nullable(Int64) AFTER cache_write_1h_tokens,
    ADD COLUMN cost_input_nanos Int64 AFTER cost_nanos,
    ADD COLUMN cost_cache_read_nanos Int64 AFTER cost_input_nanos,
    ADD COLUMN cost_cache_write_nanos Int64 AFTER cost_cache_read_nanos,
    ADD COLUMN cost_output_nanos Int64 AFTER cost_cache_write_nanos,
    ADD COLUMN cost_reasoning_nanos Int64 AFTER cost_output_nanos,
    ADD COLUMN price_version String AFTER cost_reasoning_nanos;

ALTER TABLE llmtap.requests ON CLUSTER llmtap_cluster
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
-- SELECT count() FROM system.columns WHERE database = 'llmtap' AND table = 'requests' AND name = 'attempt_header_ms'

ALTER TABLE llmtap.requests_local ON CLUSTER llmtap_cluster
    ADD COLUMN upstream String AFTER price_version,
    ADD COLUMN attempts UInt8 AFTER upstream,
    ADD COLUMN attempt_upstreams Array(String) AFTER attempts,
    ADD COLUMN attempt_results Array(String) AFTER attempt_upstreams,
    ADD COLUMN attempt_header_ms Array(Int64) AFTER attempt_results;

ALTER TABLE llmtap.requests ON CLUSTER llmtap_cluster
    ADD COLUMN upstream String AFTER price_version,
    ADD COLUMN attempts UInt8 AFTER upstream,
    ADD COLUMN attempt_upstreams Array(String) AFTER attempts,
    ADD COLUMN attempt_results Array(String) AFTER attempt_upstreams,
    ADD COLUMN attempt_header_ms Array(Int64) AFTER attempt_results;

-- migration 6: bodies_omitted
-- applied already when this counts more than 0:
-- SELECT count() FROM system.columns WHERE database = 'llmtap' AND table = 'requests' AND name = 'bodies_omitted'

ALTER TABLE llmtap.requests_local ON CLUSTER llmtap_cluster
    ADD COLUMN bodies_omitted UInt8 AFTER attempt_header_ms;

ALTER TABLE llmtap.requests ON CLUSTER llmtap_cluster
    ADD COLUMN bodies_omitted UInt8 AFTER attempt_header_ms;

-- migration 7: requests_by_id
CREATE TABLE IF NOT EXISTS llmtap.requests_by_id_local ON CLUSTER llmtap_cluster
(
    request_id String,
    route String,
    start DateTime,
    start_ms UInt16,
    inserted_at DateTime
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/requests_by_id_local', '{replica}', inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY request_id;

CREATE TABLE IF NOT EXISTS llmtap.requests_by_id ON CLUSTER llmtap_cluster
(
    request_id String,
    route String,
    start DateTime,
    start_ms UInt16,
    inserted_at DateTime
)
ENGINE = Distributed(llmtap_cluster, llmtap, requests_by_id_local, cityHash64(request_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS llmtap.requests_by_id_mv ON CLUSTER llmtap_cluster TO llmtap.requests_by_id_local
AS SELECT request_id, route, start, start_ms, inserted_at FROM llmtap.requests_local;

-- migration 8: rollups
CREATE TABLE IF NOT EXISTS llmtap.requests_hourly_local ON CLUSTER llmtap_cluster
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/requests_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, provider, model, tenant, status_class, error_type);

CREATE TABLE IF NOT EXISTS llmtap.requests_hourly ON CLUSTER llmtap_cluster
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
ENGINE = Distributed(llmtap_cluster, llmtap, requests_hourly_local, toUInt32(hour));

CREATE TABLE IF NOT EXISTS llmtap.routes_hourly_local ON CLUSTER llmtap_cluster
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/routes_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, provider, model, status_class, error_type);

CREATE TABLE IF NOT EXISTS llmtap.routes_hourly ON CLUSTER llmtap_cluster
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
ENGINE = Distributed(llmtap_cluster, llmtap, routes_hourly_local, toUInt32(hour));

-- migration 9: rollups_at_scale
CREATE TABLE IF NOT EXISTS llmtap.requests_daily_local ON CLUSTER llmtap_cluster
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/requests_daily_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(day)
ORDER BY (route, day, provider, model, tenant);

CREATE TABLE IF NOT EXISTS llmtap.requests_daily ON CLUSTER llmtap_cluster
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
ENGINE = Distributed(llmtap_cluster, llmtap, requests_daily_local, toUInt32(day));

CREATE TABLE IF NOT EXISTS llmtap.latency_hourly_local ON CLUSTER llmtap_cluster
(
    hour DateTime,
    route String,
    rolled_ns UInt64,
    duration_hist AggregateFunction(sumForEach, Array(UInt64))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/latency_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour);

CREATE TABLE IF NOT EXISTS llmtap.latency_hourly ON CLUSTER llmtap_cluster
(
    hour DateTime,
    route String,
    rolled_ns UInt64,
    duration_hist AggregateFunction(sumForEach, Array(UInt64))
)
ENGINE = Distributed(llmtap_cluster, llmtap, latency_hourly_local, toUInt32(hour));

CREATE TABLE IF NOT EXISTS llmtap.errors_hourly_local ON CLUSTER llmtap_cluster
(
    hour DateTime,
    route String,
    error_type String,
    rolled_ns UInt64,
    requests AggregateFunction(count),
    example AggregateFunction(max, String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/llmtap/errors_hourly_local', '{replica}', rolled_ns)
PARTITION BY toYYYYMM(hour)
ORDER BY (route, hour, error_type);

CREATE TABLE IF NOT EXISTS llmtap.errors_hourly ON CLUSTER llmtap_cluster
(
    hour DateTime,
    route String,
    error_type String,
    rolled_ns UInt64,
    requests AggregateFunction(count),
    example AggregateFunction(max, String)
)
ENGINE = Distributed(llmtap_cluster, llmtap, errors_hourly_local, toUInt32(hour));

