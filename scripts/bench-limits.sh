#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make bench, limits: the collector's limit checks against the real Redis
# (checks per second at saturation, and p50/p99 at a fixed 5k checks/s),
# then the latency a limited route adds over the same route without limits
# through the real Traefik. Both routes run the llmtap plugin and send their
# records to the same collector; only the limit check differs.
# Everything runs on 127.0.0.1, bounded by BENCH_LIMIT_DURATION.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

DURATION=${BENCH_LIMIT_DURATION:-5s}
CHECK_RATE=${BENCH_CHECK_RATE:-5000}
ROUTE_RATE=${BENCH_RATE:-1000}
CONNS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-2}
export LLMTAP_RUN=$LLMTAP_RUN/bench-limits
mapfile -t ports < <(free_ports 6) || die "no free ports"
export TRAEFIK_PORT=${TRAEFIK_PORT:-${ports[0]}}
export CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-${ports[1]}}
export CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-${ports[2]}}
export REDIS_PORT=${REDIS_PORT:-${ports[3]}}
COLLECTOR_PORT=${COLLECTOR_PORT:-${ports[4]}}
UPSTREAM_PORT=${UPSTREAM_PORT:-${ports[5]}}

"$ROOT/scripts/install.sh"
"$ROOT/scripts/traefik-build.sh" >/dev/null
mkdir -p "$LLMTAP_RUN" "$LLMTAP_BIN"
go build -o "$LLMTAP_BIN/bench-upstream" "$ROOT/bench/upstream"
go build -o "$LLMTAP_BIN/bench-load" "$ROOT/bench/load"
(cd "$ROOT/collector" && go build -o "$LLMTAP_BIN/llmtap-collector" ./cmd/llmtap-collector)

upstream_pid=
collector_pid=$LLMTAP_RUN/collector.pid
cleanup() {
	"$ROOT/scripts/traefik.sh" stop || true
	stop_service collector "$collector_pid" || true
	[ -z "$upstream_pid" ] || { kill "$upstream_pid" 2>/dev/null; wait "$upstream_pid" 2>/dev/null || true; }
	"$ROOT/scripts/redis.sh" stop || true
	"$ROOT/scripts/clickhouse.sh" stop || true
}
trap cleanup EXIT INT TERM

rm -rf "$LLMTAP_RUN/clickhouse" "$LLMTAP_RUN/spool"
"$ROOT/scripts/clickhouse.sh" start
"$ROOT/scripts/redis.sh" start
# Quotas far above the load: every check runs the whole script (a request
# quota and a token reservation) and is allowed.
cat >"$LLMTAP_RUN/collector.yaml" <<YAML
listen: 127.0.0.1:$COLLECTOR_PORT
ingest_token: bench-token
log:
  level: warn
clickhouse:
  addr: 127.0.0.1:$CLICKHOUSE_TCP_PORT
  spool_dir: $LLMTAP_RUN/spool
redis:
  addr: 127.0.0.1:$REDIS_PORT
limits:
  default:
    requests: {limit: 1000000000, period: 1h}
    tokens: {limit: 1000000000000, period: 1h}
YAML
"$LLMTAP_BIN/llmtap-collector" -config "$LLMTAP_RUN/collector.yaml" >"$LLMTAP_RUN/collector.log" 2>&1 &
echo $! >"$collector_pid"
collector_up() { curl -sf -o /dev/null "http://127.0.0.1:$COLLECTOR_PORT/readyz"; }
await_start collector "$collector_pid" "" collector_up "$LLMTAP_RUN/collector.log"

check_url=http://127.0.0.1:$COLLECTOR_PORT/v1/limits/check
check_body='{"tenant":"bench","route":"bench","model":"m","request_id":"bench-1","reserve":64}'
curl -sf -o /dev/null -H 'Authorization: Bearer bench-token' -d "$check_body" "$check_url" || die "the limit check does not answer; log: $LLMTAP_RUN/collector.log"

# Saturation: wrk's closed loop finds the most checks per second.
cat >"$LLMTAP_RUN/check.lua" <<LUA
wrk.method = "POST"
wrk.body = '$check_body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
LUA
wrk -t1 -c16 -d1s -s "$LLMTAP_RUN/check.lua" "$check_url" >/dev/null
out=$(wrk -t1 -c16 -d"$DURATION" --latency -s "$LLMTAP_RUN/check.lua" "$check_url")
grep -q 'Non-2xx\|Socket errors' <<<"$out" && { echo "$out" >&2; die "wrk saw errors on the limit check"; }
sat_rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
sat_p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
sat_p99=$(awk '$1 == "99%" {print $2}' <<<"$out")

"$LLMTAP_BIN/bench-upstream" -addr "127.0.0.1:$UPSTREAM_PORT" 2>"$LLMTAP_RUN/upstream.log" &
upstream_pid=$!
wait_for 10 port_in_use "$UPSTREAM_PORT" || die "bench upstream did not start; log: $LLMTAP_RUN/upstream.log"

# The load tool's own floor at this rate, on these cores: the same load
# against a handler that does nothing (the bench upstream's /json).
read -r _ errs f50 _ f99 _ < <("$LLMTAP_BIN/bench-load" -url "http://127.0.0.1:$UPSTREAM_PORT/json" -rate "$CHECK_RATE" -duration "$DURATION")
[ "$errs" = 0 ] || die "$errs failed requests to the bench upstream"

# check_buckets: the collector's check latency histogram, "le count" lines.
check_buckets() {
	curl -sf "http://127.0.0.1:$COLLECTOR_PORT/metrics" |
		awk -F'[{}" ]+' '/^llmtap_limit_check_duration_seconds_bucket/ { print $3, $4 }'
}
# A fixed rate, open loop: the latency a plugin sees at that load.
check_buckets >"$LLMTAP_RUN/buckets.before"
read -r n errs c50 _ c99 cmax < <("$LLMTAP_BIN/bench-load" -url "$check_url" -rate "$CHECK_RATE" -duration "$DURATION" \
	-body "$check_body" -header 'Authorization: Bearer bench-token')
[ "$errs" = 0 ] || die "$errs failed checks at $CHECK_RATE checks/s"
check_buckets >"$LLMTAP_RUN/buckets.after"
# Server side (the collector's histogram over this run): the share within
# 1 ms, and p99 interpolated within its bucket as histogram_quantile does.
read -r within1 s99 < <(paste "$LLMTAP_RUN/buckets.before" "$LLMTAP_RUN/buckets.after" | awk '
	{ le[NR] = $1; c[NR] = $4 - $2 } END {
		total = c[NR]; q = 0.99 * total; prev = 0; prevc = 0; p99 = "?"
		for (i = 1; i <= NR; i++) {
			if (le[i] == "0.001") w = c[i] / total
			if (p99 == "?" && c[i] >= q) {
				hi = (le[i] == "+Inf") ? prev : le[i]
				p99 = sprintf("%.3f", 1000 * (prev + (hi - prev) * (q - prevc) / (c[i] - prevc)))
			}
			if (le[i] != "+Inf") { prev = le[i]; prevc = c[i] }
		}
		printf "%.2f %s\n", 100 * w, p99
	}')

echo
echo "Limit checks, collector + Redis $(redis-server --version | awk '{print $3}' | tr -d v=) on $(nproc) cores (one tenant: the hottest key)"
echo "  saturation (wrk -c16, $DURATION): $sat_rps checks/s, p50 $sat_p50, p99 $sat_p99"
echo "  fixed $CHECK_RATE checks/s for $DURATION (open loop), goal p99 <= 1 ms:"
echo "    client side:  $n checks, p50 ${c50} ms, p99 ${c99} ms, max ${cmax} ms"
echo "    load floor:   p50 ${f50} ms, p99 ${f99} ms (the same load against a handler that does nothing)"
echo "    server side:  ${within1}% of checks answered within 1 ms, p99 about ${s99} ms (collector histogram, Redis included)"

# Through Traefik: the same plugin with and without limits.
dynamic=$LLMTAP_RUN/dynamic.yml
cat >"$dynamic" <<YAML
http:
  routers:
    tap:
      rule: Host(\`tap.test\`)
      service: up
      middlewares: [tap]
    limited:
      rule: Host(\`limited.test\`)
      service: up
      middlewares: [limited]
  middlewares:
    tap:
      plugin:
        llmtap:
          collectorURL: http://127.0.0.1:$COLLECTOR_PORT
          collectorToken: bench-token
          route: bench
    limited:
      plugin:
        llmtap:
          collectorURL: http://127.0.0.1:$COLLECTOR_PORT
          collectorToken: bench-token
          route: bench
          limits:
            enabled: true
  services:
    up:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:$UPSTREAM_PORT
YAML
"$ROOT/scripts/traefik.sh" start "$dynamic"
base=http://127.0.0.1:$TRAEFIK_PORT
for route in tap limited; do
	wait_for 30 curl -sf -o /dev/null -H "Host: $route.test" "$base/json" || die "route $route does not answer; logs in $LLMTAP_RUN/traefik"
	wrk -t1 -c"$CONNS" -d2s -H "Host: $route.test" -H 'Authorization: Bearer sk-bench' "$base/json" >/dev/null
done
declare -A f50 f99 rps
for ((round = 1; round <= ROUNDS; round++)); do
	for route in tap limited; do
		read -r n errs a _ b _ < <("$LLMTAP_BIN/bench-load" -url "$base/json" -host "$route.test" -header 'Authorization: Bearer sk-bench' \
			-rate "$ROUTE_RATE" -duration "$DURATION")
		[ "$errs" = 0 ] || die "$errs errors at $ROUTE_RATE req/s on $route"
		f50[$route]=$(awk -v x="${f50[$route]:-0}" -v y="$a" 'BEGIN {print x + y}')
		f99[$route]=$(awk -v x="${f99[$route]:-0}" -v y="$b" 'BEGIN {print x + y}')
		out=$(wrk -t1 -c"$CONNS" -d"$DURATION" -H "Host: $route.test" -H 'Authorization: Bearer sk-bench' "$base/json")
		grep -q 'Non-2xx\|Socket errors' <<<"$out" && { echo "$out" >&2; die "wrk saw errors on $route"; }
		r=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
		rps[$route]=$(awk -v x="${rps[$route]:-0}" -v y="$r" 'BEGIN {print x + y}')
		log "round $round $route: p50 $a ms, p99 $b ms at $ROUTE_RATE req/s; $r req/s with wrk -c$CONNS"
	done
done
echo
echo "Through Traefik $TRAEFIK_VERSION, /json, mean of $ROUNDS rounds: llmtap without limits (tap) vs with limits (limited)"
printf '%-8s %9s %9s %10s\n' route p50_ms p99_ms req/s
for route in tap limited; do
	awk -v rt="$route" -v n="$ROUNDS" -v a="${f50[$route]}" -v b="${f99[$route]}" -v r="${rps[$route]}" \
		'BEGIN { printf "%-8s %9.3f %9.3f %10.0f\n", rt, a / n, b / n, r / n }'
done
awk -v n="$ROUNDS" -v t50="${f50[tap]}" -v l50="${f50[limited]}" -v t99="${f99[tap]}" -v l99="${f99[limited]}" -v tr="${rps[tap]}" -v lr="${rps[limited]}" \
	'BEGIN { printf "limits add p50 %+.3f ms, p99 %+.3f ms at a fixed rate; throughput limited/tap %.2f\n", (l50 - t50) / n, (l99 - t99) / n, lr / tr }'
