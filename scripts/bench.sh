#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make bench: throughput and latency through the real Traefik, three routes
# to the same upstream in the same run: bare (no plugin), noop (a Yaegi
# plugin that only calls next: the floor any plugin pays) and llmtap.
# Prints req/s, p50 and p99 per route and the ratios against both baselines.
# Load goes to 127.0.0.1 only and is bounded by BENCH_DURATION.
# BENCH_THROUGHPUT=0 skips the wrk part; BENCH_PLUGIN_BATCH sets batchSize.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

DURATION=${BENCH_DURATION:-8s}
RATE=${BENCH_RATE:-1000}
RATE_DURATION=${BENCH_RATE_DURATION:-5s}
CONNS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-2}
export LLMTAP_RUN=$LLMTAP_RUN/bench
mapfile -t ports < <(free_ports 2) || die "no free ports"
export TRAEFIK_PORT=${TRAEFIK_PORT:-${ports[0]}}
UPSTREAM_PORT=${UPSTREAM_PORT:-${ports[1]}}

"$ROOT/scripts/install.sh"
"$ROOT/scripts/traefik-build.sh" >/dev/null
mkdir -p "$LLMTAP_RUN" "$LLMTAP_BIN"
go build -o "$LLMTAP_BIN/bench-upstream" "$ROOT/bench/upstream"
go build -o "$LLMTAP_BIN/bench-load" "$ROOT/bench/load"

upstream_pid=
cleanup() {
	"$ROOT/scripts/traefik.sh" stop || true
	[ -z "$upstream_pid" ] || { kill "$upstream_pid" 2>/dev/null; wait "$upstream_pid" 2>/dev/null || true; }
}
trap cleanup EXIT INT TERM

"$LLMTAP_BIN/bench-upstream" -addr "127.0.0.1:$UPSTREAM_PORT" 2>"$LLMTAP_RUN/upstream.log" &
upstream_pid=$!
wait_for 10 port_in_use "$UPSTREAM_PORT" || die "bench upstream did not start; log: $LLMTAP_RUN/upstream.log"

dynamic=$LLMTAP_RUN/dynamic.yml
cat >"$dynamic" <<YAML
http:
  routers:
    bare:
      rule: Host(\`bare.test\`)
      service: up
    noop:
      rule: Host(\`noop.test\`)
      service: up
      middlewares: [noop]
    tap:
      rule: Host(\`tap.test\`)
      service: up
      middlewares: [llmtap]
  middlewares:
    noop:
      plugin:
        noop: {}
    llmtap:
      plugin:
        llmtap:
          collectorURL: http://127.0.0.1:$UPSTREAM_PORT
          route: bench
          batchSize: ${BENCH_PLUGIN_BATCH:-64}
  services:
    up:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:$UPSTREAM_PORT
YAML
"$ROOT/scripts/traefik.sh" start "$dynamic"
base=http://127.0.0.1:$TRAEFIK_PORT

# to_ms VALUE: wrk's latency (e.g. 812.00us, 1.52ms, 1.01s) in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/) n *= 1000; printf "%.3f", n }'; }

# measure ROUTE PATH: one wrk run; prints "req/s p50_ms p99_ms".
measure() {
	local out rps p50 p99
	out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Host: $1.test" "$base$2")
	grep -q 'Non-2xx\|Socket errors' <<<"$out" && { echo "$out" >&2; die "wrk saw errors on $1 $2"; }
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

for route in bare noop tap; do
	wait_for 30 curl -sf -o /dev/null -H "Host: $route.test" "$base/json" || die "route $route does not answer; logs in $LLMTAP_RUN/traefik"
	for path in /json /sse; do
		curl -sf -o /dev/null -H "Host: $route.test" "$base$path" || die "route $route $path does not answer"
		wrk -t1 -c"$CONNS" -d2s -H "Host: $route.test" "$base$path" >/dev/null
	done
done

declare -A rps p50 p99
[ "${BENCH_THROUGHPUT:-1}" = 1 ] || ROUNDS_WRK=0
for path in /json /sse; do
	[ "${ROUNDS_WRK:-1}" != 0 ] || break
	for ((round = 1; round <= ROUNDS; round++)); do
		for route in bare noop tap; do
			read -r r a b < <(measure "$route" "$path")
			log "$path $route round $round: $r req/s, p50 ${a} ms, p99 ${b} ms"
			rps[$path $route]=$(awk -v x="${rps[$path $route]:-0}" -v y="$r" 'BEGIN {print x + y}')
			p50[$path $route]=$(awk -v x="${p50[$path $route]:-0}" -v y="$a" 'BEGIN {print x + y}')
			p99[$path $route]=$(awk -v x="${p99[$path $route]:-0}" -v y="$b" 'BEGIN {print x + y}')
		done
	done
done

if [ "${ROUNDS_WRK:-1}" != 0 ]; then
echo
echo "Traefik $TRAEFIK_VERSION on $(nproc) cores, wrk -t1 -c$CONNS -d$DURATION, mean of $ROUNDS interleaved rounds"
printf '%-7s %-6s %10s %9s %9s\n' path route req/s p50_ms p99_ms
for path in /json /sse; do
	for route in bare noop tap; do
		awk -v p="$path" -v rt="$route" -v n="$ROUNDS" -v r="${rps[$path $route]}" -v a="${p50[$path $route]}" -v b="${p99[$path $route]}" \
			'BEGIN { printf "%-7s %-6s %10.0f %9.3f %9.3f\n", p, rt, r / n, a / n, b / n }'
	done
done
echo
for path in /json /sse; do
	awk -v p="$path" -v bare="${rps[$path bare]}" -v noop="${rps[$path noop]}" -v tap="${rps[$path tap]}" \
		-v b99="${p99[$path bare]}" -v n99="${p99[$path noop]}" -v t99="${p99[$path tap]}" -v n="$ROUNDS" \
		'BEGIN { printf "%-7s throughput llmtap/bare %.2f  llmtap/noop %.2f  noop/bare %.2f   added p99 vs bare %+.3f ms, vs noop %+.3f ms\n",
			p, tap / bare, tap / noop, noop / bare, (t99 - b99) / n, (t99 - n99) / n }'
done
fi

# Latency below saturation: a fixed rate, open loop.
declare -A f50 f99
for path in /json /sse; do
	for ((round = 1; round <= ROUNDS; round++)); do
		for route in bare noop tap; do
			read -r n errs a _ b _ < <("$LLMTAP_BIN/bench-load" -url "$base$path" -host "$route.test" -rate "$RATE" -duration "$RATE_DURATION")
			[ "$errs" = 0 ] || die "$errs errors at $RATE req/s on $route $path"
			log "$path $route round $round at $RATE req/s: $n requests, p50 ${a} ms, p99 ${b} ms"
			f50[$path $route]=$(awk -v x="${f50[$path $route]:-0}" -v y="$a" 'BEGIN {print x + y}')
			f99[$path $route]=$(awk -v x="${f99[$path $route]:-0}" -v y="$b" 'BEGIN {print x + y}')
		done
	done
done
echo
echo "Latency at a fixed $RATE req/s for $RATE_DURATION (open loop), mean of $ROUNDS rounds"
printf '%-7s %-6s %9s %9s\n' path route p50_ms p99_ms
for path in /json /sse; do
	for route in bare noop tap; do
		awk -v p="$path" -v rt="$route" -v n="$ROUNDS" -v a="${f50[$path $route]}" -v b="${f99[$path $route]}" \
			'BEGIN { printf "%-7s %-6s %9.3f %9.3f\n", p, rt, a / n, b / n }'
	done
	awk -v p="$path" -v n="$ROUNDS" -v b50="${f50[$path bare]}" -v t50="${f50[$path tap]}" -v b99="${f99[$path bare]}" -v n99="${f99[$path noop]}" -v t99="${f99[$path tap]}" \
		'BEGIN { printf "%-7s llmtap adds p50 %+.3f ms, p99 %+.3f ms vs bare (%+.3f ms vs noop)\n", p, (t50 - b50) / n, (t99 - b99) / n, (t99 - n99) / n }'
done
echo
sleep 2 # the plugin's sender flushes every second
read -r recorded dropped < <(curl -sf "http://127.0.0.1:$UPSTREAM_PORT/v1/records/count")
echo "records received by the collector sink: $recorded (reported dropped: $dropped)"
