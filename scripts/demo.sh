#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make demo: the whole stack on loopback: ClickHouse, the collector, a mock
# LLM upstream, and the real Traefik with the llmtap plugin; then a short
# workload and a summary read back from ClickHouse and the metrics. Runs
# until Ctrl-C, then stops everything it started.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

export LLMTAP_RUN=$LLMTAP_RUN/demo
export TRAEFIK_PORT=${TRAEFIK_PORT:-18080}
export CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-19000}
export CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-18123}
export REDIS_PORT=${REDIS_PORT:-16379}
UPSTREAM_PORT=${UPSTREAM_PORT:-18900}
COLLECTOR_PORT=${COLLECTOR_PORT:-17480}

step() { printf '[demo] %s\n' "$*"; }

step "installing what is missing"
"$ROOT/scripts/install.sh"
step "building Traefik $TRAEFIK_VERSION (cached after the first time), the collector and the mock upstream"
"$ROOT/scripts/traefik-build.sh" >/dev/null
mkdir -p "$LLMTAP_RUN" "$LLMTAP_BIN"
go build -o "$LLMTAP_BIN/mock-upstream" "$ROOT/bench/upstream"
(cd "$ROOT/collector" && go build -o "$LLMTAP_BIN/llmtap-collector" ./cmd/llmtap-collector)

upstream_pid=
collector_pid=$LLMTAP_RUN/collector.pid
cleanup() {
	step "stopping"
	"$ROOT/scripts/traefik.sh" stop || true
	stop_service collector "$collector_pid" || true
	[ -z "$upstream_pid" ] || { kill "$upstream_pid" 2>/dev/null; wait "$upstream_pid" 2>/dev/null || true; }
	"$ROOT/scripts/redis.sh" stop || true
	"$ROOT/scripts/clickhouse.sh" stop || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

step "starting ClickHouse (empty: each demo starts afresh)"
"$ROOT/scripts/clickhouse.sh" stop >/dev/null 2>&1 || true
rm -rf "$LLMTAP_RUN/clickhouse" "$LLMTAP_RUN/spool"
"$ROOT/scripts/clickhouse.sh" start

step "starting Redis (the tenants' limits)"
"$ROOT/scripts/redis.sh" stop >/dev/null 2>&1 || true
"$ROOT/scripts/redis.sh" start

step "starting the collector on 127.0.0.1:$COLLECTOR_PORT"
port_in_use "$COLLECTOR_PORT" && die "port 127.0.0.1:$COLLECTOR_PORT is in use (set COLLECTOR_PORT)"
cat >"$LLMTAP_RUN/collector.yaml" <<YAML
listen: 127.0.0.1:$COLLECTOR_PORT
ingest_token: demo-token
admin_token: demo-admin
clickhouse:
  addr: 127.0.0.1:$CLICKHOUSE_TCP_PORT
  spool_dir: $LLMTAP_RUN/spool
redis:
  addr: 127.0.0.1:$REDIS_PORT
limits:
  tenants:
    team-small:
      requests: {limit: 2, period: 1m}
YAML
"$LLMTAP_BIN/llmtap-collector" -config "$LLMTAP_RUN/collector.yaml" >"$LLMTAP_RUN/collector.log" 2>&1 &
echo $! >"$collector_pid"
collector_up() { curl -sf -o /dev/null "http://127.0.0.1:$COLLECTOR_PORT/readyz"; }
await_start collector "$collector_pid" "" collector_up "$LLMTAP_RUN/collector.log"

step "starting the mock LLM upstream on 127.0.0.1:$UPSTREAM_PORT"
port_in_use "$UPSTREAM_PORT" && die "port 127.0.0.1:$UPSTREAM_PORT is in use (set UPSTREAM_PORT)"
"$LLMTAP_BIN/mock-upstream" -addr "127.0.0.1:$UPSTREAM_PORT" -first 120ms -gap 40ms -events 8 2>"$LLMTAP_RUN/upstream.log" &
upstream_pid=$!
wait_for 10 port_in_use "$UPSTREAM_PORT" || die "mock upstream did not start; log: $LLMTAP_RUN/upstream.log"

step "starting Traefik with the plugin on 127.0.0.1:$TRAEFIK_PORT"
sed -e "s/__UPSTREAM__/127.0.0.1:$UPSTREAM_PORT/g" -e "s/__COLLECTOR__/127.0.0.1:$COLLECTOR_PORT/g" \
	"$ROOT/traefik/demo.yml" >"$LLMTAP_RUN/dynamic.yml"
"$ROOT/scripts/traefik.sh" start "$LLMTAP_RUN/dynamic.yml"
base=http://127.0.0.1:$TRAEFIK_PORT
wait_for 30 curl -sf -o /dev/null "$base/json" || die "Traefik does not route to the mock upstream; logs in $LLMTAP_RUN/traefik"

step "sending a short workload: JSON, SSE streams, an upstream error, a tenant over its limit, a client that leaves"
for i in 1 2 3; do
	curl -sf -o /dev/null -H "X-Tenant-ID: team-$i" -H 'Content-Type: application/json' \
		-d '{"model":"mock-1","messages":[{"role":"user","content":"hi"}]}' "$base/json"
done
for key in sk-demo-alice sk-demo-bob; do
	curl -sfN -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
		-d '{"model":"mock-1","stream":true,"stream_options":{"include_usage":true}}' "$base/sse"
done
curl -s -o /dev/null "$base/error"
statuses=
for i in 1 2 3; do
	statuses+=" $(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tenant-ID: team-small' "$base/json")"
done
step "tenant team-small, allowed 2 requests a minute, got:$statuses"
curl -sN -m 0.2 -o /dev/null -H 'X-Tenant-ID: impatient' "$base/sse" || true
sleep 3 # the plugin sends every second, the collector writes every second

ch() { clickhouse-client --port "$CLICKHOUSE_TCP_PORT" --format PrettyCompactMonoBlock -q "$1"; }
step "per route, from ClickHouse:"
ch "SELECT route, count() AS requests, quantile(0.5)(ttft_ms) AS p50_ttft_ms, quantile(0.95)(ttft_ms) AS p95_ttft_ms,
	sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, countIf(error_type != '') AS errors
	FROM llmtap.requests FINAL GROUP BY route"
step "the requests:"
ch "SELECT request_id, tenant, path, status, kind, error_type, ttfb_ms, ttft_ms, duration_ms, input_tokens, output_tokens
	FROM llmtap.requests FINAL ORDER BY start, start_ms"
id=$(clickhouse-client --port "$CLICKHOUSE_TCP_PORT" -q "SELECT request_id FROM llmtap.requests FINAL WHERE kind = 'sse' AND error_type = '' LIMIT 1")
cat <<TXT

[demo] the stack is up:
  Traefik with llmtap   $base              (try: curl -N $base/sse)
  collector API         http://127.0.0.1:$COLLECTOR_PORT/v1/requests/$id
  metrics               http://127.0.0.1:$COLLECTOR_PORT/metrics
  limits of a tenant    curl -H 'Authorization: Bearer demo-admin' http://127.0.0.1:$COLLECTOR_PORT/v1/limits/team-small
  ClickHouse            clickhouse-client --port $CLICKHOUSE_TCP_PORT   (HTTP: http://127.0.0.1:$CLICKHOUSE_HTTP_PORT)
  Redis                 redis-cli -p $REDIS_PORT
  logs                  $LLMTAP_RUN
[demo] Ctrl-C stops everything.
TXT
while :; do sleep 3600; done
