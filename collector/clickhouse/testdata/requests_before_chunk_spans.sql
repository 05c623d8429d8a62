-- The requests table as migration 1 made it before migration 3 (chunk_spans),
-- on 18.16: TestIntegrationMigrateChunkSpans upgrades it.
CREATE TABLE IF NOT EXISTS llmtap.requests
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
    request_bytes Int64,
    response_bytes Int64,
    request_body String,
    response_body String,
    response_chunks Array(String),
    chunk_offsets_us Array(Int64),
    truncated UInt8,
    inserted_at DateTime
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(start)
ORDER BY (route, start, start_ms, request_id)
