#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Ingest benchmark: the collector writing realistic records into the real
# ClickHouse (Debian 18.16) on loopback, at a few ClickHouse batch sizes.
# Prints records per second (accepted and stored) and the collector's peak
# memory for each. BENCH_RECORDS sets the count (default 100000).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

RECORDS=${BENCH_RECORDS:-100000}
export LLMTAP_RUN=$LLMTAP_RUN/bench-ingest
mapfile -t ports < <(free_ports 3) || die "no free ports"
export CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-${ports[0]}}
export CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-${ports[1]}}
PORT=${ports[2]}

"$ROOT/scripts/install.sh"
mkdir -p "$LLMTAP_RUN" "$LLMTAP_BIN"
(cd "$ROOT/collector" && go build -o "$LLMTAP_BIN/llmtap-collector" ./cmd/llmtap-collector &&
	go build -o "$LLMTAP_BIN/ingestbench" ./internal/ingestbench)

pidfile=$LLMTAP_RUN/collector.pid
cleanup() {
	stop_service collector "$pidfile" || true
	"$ROOT/scripts/clickhouse.sh" stop || true
}
trap cleanup EXIT INT TERM
"$ROOT/scripts/clickhouse.sh" start

collector_up() { curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; }

echo "Ingest into ClickHouse $(clickhouse-client --port "$CLICKHOUSE_TCP_PORT" -q 'SELECT version()') on $(nproc) cores, $RECORDS records of ~6 KB (40-chunk SSE streams)"
for batch in ${BENCH_BATCHES:-1000 2000 5000}; do
	cat >"$LLMTAP_RUN/collector.yaml" <<YAML
listen: 127.0.0.1:$PORT
# A bench on loopback: no tokens.
trusted_network: true
log:
  level: warn
clickhouse:
  addr: 127.0.0.1:$CLICKHOUSE_TCP_PORT
  database: llmtap_bench
  batch_size: $batch
  queue_size: ${BENCH_QUEUE:-$((batch * 2 > 5000 ? batch * 2 : 5000))}
  spool_dir: $LLMTAP_RUN/spool
  retention: 0s
  body_retention: 0s
YAML
	"$LLMTAP_BIN/llmtap-collector" -config "$LLMTAP_RUN/collector.yaml" >"$LLMTAP_RUN/collector.log" 2>&1 &
	echo $! >"$pidfile"
	await_start collector "$pidfile" "" collector_up "$LLMTAP_RUN/collector.log"
	printf "clickhouse.batch_size=%-6s " "$batch"
	"$LLMTAP_BIN/ingestbench" -url "http://127.0.0.1:$PORT" -records "$RECORDS" -pid "$(cat "$pidfile")"
	stop_service collector "$pidfile" >/dev/null 2>&1
done
