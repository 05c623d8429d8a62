#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Soak: at least 100,000 requests through the stack of `make up` (Traefik
# with the plugin, the collector, ClickHouse, Redis and the mock upstream),
# in a scratch run folder on free ports, with the resident memory of
# Traefik and the collector sampled as it goes. Then:
#   - no request failed;
#   - ClickHouse holds one row per request sent, less what the plugin
#     reported dropped, and the collector lost none;
#   - memory is flat: each process's RSS grows by at most max(+25%,
#     +40 MB) from 30% of the requests to the end, as the least-squares
#     line through the samples says. A trend, not two points: a stall of
#     this shared machine piles requests up and RSS with them, and Go
#     hands the memory back slowly, so RSS after a stall stays high for a
#     while without growing; a leak grows.
# The load is bench/load, open loop at a fixed rate: streamed chat
# completions (3/5) and JSON ones (2/5), the mock answering at once
# (ttft 1ms, gap 0, 8 tokens, set per request by its X-Mock-* knobs).
#
# The rate fits the machine: everything (Traefik, the collector,
# ClickHouse, Redis, the mock and the load) shares its cores, so a fixed
# rate that one machine carries swamps another. First a calibration
# measures the stack's capacity here, end to end: CALIBRATE_SECONDS of the
# same mix in a closed loop, and the rows ClickHouse holds per second from
# the start until they stop coming. The soak then runs at SHARE_PCT% of
# that, and never below the plan's 500 requests per second; the rows of
# the calibration are removed before it starts. Capacity figures belong to
# `make bench`; this only keeps the soak inside what the machine carries.
#
#   SOAK_RATE     requests per second, both kinds together (default: the
#                 calibrated rate)
#   SOAK_SECONDS  how long the load runs (default: what 100,000 requests
#                 take at the rate); RATE x SECONDS must be at least 100000
#
# Loopback only; bounded: the load runs its SECONDS and at most 20 s more;
# with Traefik built (it is cached; `make test` builds it first), about 4
# minutes on 2 cores. Whatever happens, what it started is stopped (trap,
# llmtap-stack down). Last line: "soak: N passed, M failed".
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# The stack gets its settings from here alone.
unset MAKEFLAGS MAKELEVEL MFLAGS UPSTREAM ROUTE LIMITS

# shellcheck source=test-lib.sh
source "$(dirname "$0")/test-lib.sh"

MIN_REQUESTS=100000
MIN_RATE=500
SHARE_PCT=20
CALIBRATE_SECONDS=8
RATE=${SOAK_RATE:-}
SECONDS_LOAD=${SOAK_SECONDS:-}
[[ $RATE =~ ^[0-9]*$ && $SECONDS_LOAD =~ ^[0-9]*$ ]] || die "SOAK_RATE=$RATE SOAK_SECONDS=$SECONDS_LOAD: want whole numbers"
# Memory bound: RSS may grow from 30% of the requests to the end by this
# share or this many MB, whichever is larger.
GROWTH_PCT=25
GROWTH_MB=40
SAMPLE_EVERY=3

# A scratch run folder, and a bin folder of our own so that the builds of
# a concurrent `make test` are left alone.
LLMTAP_RUN=$(mktemp -d "${TMPDIR:-/tmp}/llmtap-soak.XXXXXX")
LLMTAP_BIN=$LLMTAP_RUN/bin
export LLMTAP_RUN LLMTAP_BIN
RUN=$LLMTAP_RUN/up
LOAD_PIDS=()

# pick_ports: six different free ports, below the kernel's range for
# outgoing connections (32768 and up here), where the connections of
# other tests on this machine would take them.
pick_ports() {
	local var port taken=" "
	for var in TRAEFIK_PORT COLLECTOR_PORT CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT REDIS_PORT UPSTREAM_PORT; do
		port=$((20000 + RANDOM % 12000))
		while port_in_use "$port" || [[ $taken == *" $port "* ]]; do port=$((20000 + RANDOM % 12000)); done
		taken+="$port "
		printf -v "$var" %s "$port"
		export "${var?}"
	done
}

cleanup() {
	local pid
	for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	timeout 60 "$LLMTAP_BIN/llmtap-stack" down >/dev/null 2>&1 || true
	finish_run
}
on_exit cleanup

# One soak at a time on a machine: it loads every core, so two at once
# (two checkouts' make test) would each see half a machine and fail,
# whatever the rate. The second waits for the first.
lock=${TMPDIR:-/tmp}/llmtap-soak.lock
exec 9>"$lock"
if ! flock -n 9; then
	log "another soak runs on this machine; waiting for it to end ($lock)"
	flock 9
fi

# $EPOCHREALTIME follows LC_NUMERIC; awk wants a dot.
export LC_NUMERIC=C
# Traefik comes from the cache (built by `make test` before this runs);
# only the rest counts against the time bound.
"$ROOT/scripts/traefik-build.sh" >/dev/null
began=$EPOCHREALTIME

mkdir -p "$LLMTAP_BIN"
(cd "$ROOT" && go build -o "$LLMTAP_BIN/bench-load" ./bench/load && go build -o "$LLMTAP_BIN/llmtap-stack" ./cmd/llmtap-stack)
# A port free when picked may be taken before its server binds it (other
# tests run here too): up to three tries, on other ports each time.
up_ok=0
for attempt in 1 2 3; do
	pick_ports
	if timeout 120 "$LLMTAP_BIN/llmtap-stack" up >"$LLMTAP_RUN/up.log" 2>&1; then
		up_ok=1
		break
	fi
	timeout 60 "$LLMTAP_BIN/llmtap-stack" down >/dev/null 2>&1 || true
	log "make up failed (try $attempt of 3): $(grep -m1 -o 'failed: .*' "$LLMTAP_RUN/up.log" || echo '?')"
done
up_log() { [ "$up_ok" = 1 ] || { tail -n 30 "$LLMTAP_RUN/up.log"; return 1; }; }
check "make up on free ports (Traefik $TRAEFIK_PORT, collector $COLLECTOR_PORT)" up_log
[ "$failed" -eq 0 ] || { echo "soak: $passed passed, $failed failed"; exit 1; }

TRAEFIK_PID=$(cat "$RUN/traefik/pid")
COLLECTOR_PID=$(cat "$RUN/collector/pid")
URL=http://127.0.0.1:$TRAEFIK_PORT/v1/chat/completions
KNOBS=(-header 'X-Mock-Ttft: 1ms' -header 'X-Mock-Gap: 0' -header 'X-Mock-Tokens: 8' -header 'Authorization: Bearer sk-soak')
STREAM_BODY='{"model":"soak","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"soak test"}]}'
JSON_BODY='{"model":"soak","messages":[{"role":"user","content":"soak test"}]}'

# rss_mb PID: resident memory in MB, one decimal ("-" when gone).
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) print "-" }' "/proc/$1/status" 2>/dev/null || echo -; }

# metric NAME: the collector's value of an unlabelled metric (0 if absent).
metric() {
	curl -sf -m 5 "http://127.0.0.1:$COLLECTOR_PORT/metrics" |
		awk -v m="$1" '$1 == m { printf "%d", $2; found = 1 } END { if (!found) print 0 }'
}

# ch SQL: a query's answer from ClickHouse.
ch() { clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" -q "$1"; }

# one_more: one request after a load, so that drops the plugin has not
# reported yet ride on its batch.
one_more() {
	curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H 'X-Mock-Ttft: 1ms' \
		-d "$JSON_BODY" "$URL" || true
}

# wait_rows SENT DROPPED_BEFORE: waits until ClickHouse holds a row for
# each request sent that the plugin did not report dropped (its count
# less DROPPED_BEFORE), or the count stays the same for 5 s (the plugin
# and the collector flush every second), 60 s at most. Sets rows,
# dropped, and settled_at: when rows last grew.
wait_rows() {
	local before same=0
	rows=0 settled_at=$EPOCHREALTIME
	for _ in $(seq 1 120); do
		before=$rows
		dropped=$(($(metric llmtap_plugin_dropped_records_total) - $2))
		rows=$(ch "SELECT count() FROM llmtap.requests FINAL" 2>/dev/null) || rows=0
		[[ $rows =~ ^[0-9]+$ ]] || rows=0
		[ "$rows" = "$before" ] || settled_at=$EPOCHREALTIME
		[ "$rows" -lt $(($1 - dropped)) ] || break
		if [ "$rows" = "$before" ]; then same=$((same + 1)); else same=0; fi
		[ "$same" -lt 10 ] || break
		sleep 0.5
	done
}

# Calibration: the capacity of the whole stack on this machine, in rows
# stored per second, from a closed loop of the soak's mix (3 streamed
# workers for 2 JSON ones per core).
if [ -z "$RATE" ]; then
	cores=$(nproc)
	"$LLMTAP_BIN/bench-load" -url "$URL" -workers $((3 * cores)) -duration "${CALIBRATE_SECONDS}s" -body "$STREAM_BODY" "${KNOBS[@]}" \
		>"$LLMTAP_RUN/calibrate-stream.out" 2>&1 &
	LOAD_PIDS+=($!)
	"$LLMTAP_BIN/bench-load" -url "$URL" -workers $((2 * cores)) -duration "${CALIBRATE_SECONDS}s" -body "$JSON_BODY" "${KNOBS[@]}" \
		>"$LLMTAP_RUN/calibrate-json.out" 2>&1 &
	LOAD_PIDS+=($!)
	cal_began=$EPOCHREALTIME
	for pid in "${LOAD_PIDS[@]}"; do wait "$pid" || true; done
	LOAD_PIDS=()
	read -r cal_s _ < <(tail -n 1 "$LLMTAP_RUN/calibrate-stream.out") || true
	read -r cal_j _ < <(tail -n 1 "$LLMTAP_RUN/calibrate-json.out") || true
	[[ ${cal_s:-} =~ ^[0-9]+$ && ${cal_j:-} =~ ^[0-9]+$ ]] || { cat "$LLMTAP_RUN"/calibrate-*.out; die "calibration: the load failed"; }
	one_more >/dev/null
	wait_rows $((cal_s + cal_j + 1)) 0
	capacity=$(awk -v n="$rows" -v a="$cal_began" -v b="$settled_at" 'BEGIN { printf "%d", n / (b - a) }')
	RATE=$((capacity * SHARE_PCT / 100))
	[ "$RATE" -ge "$MIN_RATE" ] || RATE=$MIN_RATE
	echo "soak: calibration on $cores cores: $((cal_s + cal_j)) requests in a closed loop, $rows rows stored at $capacity/s; the soak runs at $SHARE_PCT% of that, at least $MIN_RATE/s: $RATE/s"
	ch "TRUNCATE TABLE llmtap.requests"
fi
[ -n "$SECONDS_LOAD" ] || SECONDS_LOAD=$(((MIN_REQUESTS + RATE - 1) / RATE))
TOTAL=$((RATE * SECONDS_LOAD))
[ "$TOTAL" -ge "$MIN_REQUESTS" ] || die "rate $RATE x $SECONDS_LOAD s = $TOTAL: want at least $MIN_REQUESTS requests"
STREAM_RATE=$((RATE * 3 / 5))
JSON_RATE=$((RATE - STREAM_RATE))
# What the plugin dropped and the collector received before the soak (the
# calibration overloads the stack on purpose) is not the soak's.
dropped_before=$(metric llmtap_plugin_dropped_records_total)
received_before=$(metric llmtap_records_received_total)

echo "soak: $TOTAL requests in ${SECONDS_LOAD} s ($STREAM_RATE/s streamed, $JSON_RATE/s JSON) through Traefik (pid $TRAEFIK_PID) to the mock; collector pid $COLLECTOR_PID"
# In flight: up to 10 s of each load, so that a stall of the shared
# machine delays requests instead of failing them. The soak checks that
# every request is answered and stored with flat memory; latency is
# `make bench`'s to measure.
"$LLMTAP_BIN/bench-load" -url "$URL" -rate "$STREAM_RATE" -duration "${SECONDS_LOAD}s" -max-inflight $((STREAM_RATE * 10)) -body "$STREAM_BODY" "${KNOBS[@]}" \
	>"$LLMTAP_RUN/load-stream.out" 2>&1 &
LOAD_PIDS+=($!)
"$LLMTAP_BIN/bench-load" -url "$URL" -rate "$JSON_RATE" -duration "${SECONDS_LOAD}s" -max-inflight $((JSON_RATE * 10)) -body "$JSON_BODY" "${KNOBS[@]}" \
	>"$LLMTAP_RUN/load-json.out" 2>&1 &
LOAD_PIDS+=($!)
load_began=$EPOCHREALTIME

# Sample while the load runs: requests sent so far (the load is open loop
# at a fixed rate), records the collector received, each RSS. SAMPLES
# gets "percent-of-requests traefik-MB collector-MB" lines.
SAMPLES=$LLMTAP_RUN/rss.samples
: >"$SAMPLES"
printf '  %6s %9s %9s %12s %14s\n' "t (s)" requests received "Traefik MB" "collector MB"
while :; do
	running=0
	for pid in "${LOAD_PIDS[@]}"; do ! kill -0 "$pid" 2>/dev/null || running=1; done
	t=$(awk -v a="$load_began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
	sent=$((t * RATE))
	[ "$sent" -le "$TOTAL" ] || sent=$TOTAL
	[ "$running" = 1 ] || sent=$TOTAL
	tr_mb=$(rss_mb "$TRAEFIK_PID")
	co_mb=$(rss_mb "$COLLECTOR_PID")
	printf '  %6s %9s %9s %12s %14s\n' "$t" "$sent" "$(($(metric llmtap_records_received_total) - received_before))" "$tr_mb" "$co_mb"
	echo "$((sent * 100 / TOTAL)) $tr_mb $co_mb" >>"$SAMPLES"
	[ "$running" = 1 ] || break
	# Bounded: the load must end within its duration and 20 s.
	if [ "$t" -gt $((SECONDS_LOAD + 20)) ]; then
		log "the load did not end in time; stopping it"
		for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
		break
	fi
	sleep "$SAMPLE_EVERY"
done
for pid in "${LOAD_PIDS[@]}"; do wait "$pid" || true; done
LOAD_PIDS=()

# bench/load prints: requests errors p50_ms p90_ms p99_ms max_ms.
read -r ok_s err_s p50_s _ p99_s max_s unsent_s < <(tail -n 1 "$LLMTAP_RUN/load-stream.out") || true
read -r ok_j err_j p50_j _ p99_j max_j unsent_j < <(tail -n 1 "$LLMTAP_RUN/load-json.out") || true
echo "  streamed: ${ok_s:-?} ok, ${err_s:-?} failed, p50 ${p50_s:-?} ms, p99 ${p99_s:-?} ms, max ${max_s:-?} ms"
echo "  JSON:     ${ok_j:-?} ok, ${err_j:-?} failed, p50 ${p50_j:-?} ms, p99 ${p99_j:-?} ms, max ${max_j:-?} ms"

no_failures() {
	[[ ${ok_s:-} =~ ^[0-9]+$ && ${ok_j:-} =~ ^[0-9]+$ ]] || { cat "$LLMTAP_RUN"/load-*.out; return 1; }
	if [ "$((ok_s + ok_j))" -lt "$TOTAL" ] || [ "$((err_s + err_j))" -ne 0 ]; then
		echo "$((ok_s + ok_j)) ok of $TOTAL, $((err_s + err_j)) failed, of which $((${unsent_s:-0} + ${unsent_j:-0})) not sent (10 s of load in flight)"
		return 1
	fi
}
check "$TOTAL requests, every one 200 and read to its end" no_failures

last=$(one_more)
echo "  one more request after the load: ${last:-no answer}"
# Requests that reached Traefik: the unsent ones never did.
sent=$(( ${ok_s:-0} + ${err_s:-0} - ${unsent_s:-0} + ${ok_j:-0} + ${err_j:-0} - ${unsent_j:-0} + 1 ))

wait_rows "$sent" "$dropped_before"
lost=$(metric llmtap_storage_dropped_total)
echo "  sent $sent (with the last one), the plugin reported $dropped dropped; ClickHouse holds $rows rows; the collector lost $lost"
rows_match() {
	if [ "$rows" -ne $((sent - dropped)) ]; then
		echo "rows $rows, want $sent - $dropped = $((sent - dropped)); by kind and status:"
		ch "SELECT kind, status, outcome, count() FROM llmtap.requests FINAL GROUP BY kind, status, outcome"
		curl -sf -m 5 "http://127.0.0.1:$COLLECTOR_PORT/metrics" | grep -E '^llmtap_(records|storage|plugin)'
		received=$(($(metric llmtap_records_received_total) - received_before))
		if [ "$received" -eq $((sent - dropped)) ] && [ "$rows" -lt "$received" ]; then
			echo "the collector received $received records, as many as were sent and not dropped, but only $rows"
			echo "distinct ids: $((received - rows)) records came twice in place of as many others, unreported"
		fi
		return 1
	fi
	[ "$lost" -eq 0 ] || { echo "llmtap_storage_dropped_total $lost"; return 1; }
}
check "ClickHouse rows = requests sent - dropped by the plugin ($rows = $sent - $dropped), none lost by the collector" rows_match

# median COLUMN FROM TO: the median of a column of SAMPLES (2: Traefik, 3:
# the collector) over the samples taken between FROM% and TO% of the
# requests (TO included when it is 100).
median() {
	awk -v c="$1" -v from="$2" -v to="$3" '$1 >= from && ($1 < to || to == 100) && $c != "-" { print $c }' "$SAMPLES" |
		sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
warm_traefik=$(median 2 20 40) end_traefik=$(median 2 80 100)
warm_collector=$(median 3 20 40) end_collector=$(median 3 80 100)

# trend COLUMN: the least-squares line through a column of SAMPLES from
# 30% of the requests on: "GROWTH START", the MB it rises from 30% to 100%
# and its value at 30% ("- -" with fewer than 3 samples).
trend() {
	awk -v c="$1" '$1 >= 30 && $c != "-" { n++; sx += $1; sy += $c; sxx += $1 * $1; sxy += $1 * $c }
		END {
			d = n * sxx - sx * sx
			if (n < 3 || d == 0) { print "- -"; exit }
			b = (n * sxy - sx * sy) / d; a = (sy - b * sx) / n
			printf "%.1f %.1f\n", b * 70, a + b * 30
		}' "$SAMPLES"
}

# flat NAME GROWTH START: GROWTH within max(GROWTH_PCT% of START, GROWTH_MB).
flat() {
	awk -v g="$2" -v s="$3" -v pct="$GROWTH_PCT" -v mb="$GROWTH_MB" -v name="$1" 'BEGIN {
		if (g == "-" || s == "-") { print name ": too few samples"; exit 1 }
		limit = s * pct / 100; if (mb > limit) limit = mb
		printf "%s: %+.1f MB from 30%% to the end (from %.1f MB), limit %.1f MB\n", name, g, s, limit
		exit !(g <= limit)
	}'
}
bound="max(+$GROWTH_PCT%, +$GROWTH_MB MB)"
read -r grow_traefik start_traefik < <(trend 2)
read -r grow_collector start_collector < <(trend 3)
check "Traefik RSS flat: ${grow_traefik} MB from 30% of the requests to the end, bound $bound (medians: ${warm_traefik:-?} MB at 20-40%, ${end_traefik:-?} MB at 80-100%)" \
	flat Traefik "$grow_traefik" "$start_traefik"
check "collector RSS flat: ${grow_collector} MB from 30% of the requests to the end, bound $bound (medians: ${warm_collector:-?} MB at 20-40%, ${end_collector:-?} MB at 80-100%)" \
	flat collector "$grow_collector" "$start_collector"

stop_all() {
	local out
	out=$("$LLMTAP_BIN/llmtap-stack" down) || return 1
	[ "$(grep -c '^\[up\] stopped ' <<<"$out")" -eq 5 ] || { echo "$out"; return 1; }
}
check "llmtap-stack down stops all 5 parts" stop_all
echo "soak: took $(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }') in all"
echo "soak: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
