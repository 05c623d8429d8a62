#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make demo: on a bare Debian machine, installs what is missing, builds, and
# starts on loopback ClickHouse, Redis, the collector, the mock LLM upstream
# and the real Traefik with the llmtap plugin (traefik/demo.yml: routes
# openai, anthropic and tts, each with limits). Then a short mixed workload
# through Traefik, a summary read back from ClickHouse, the addresses, and
# the stack stays up until Ctrl-C, which stops everything the demo started.
#
# One progress line per step; a step that fails says which part failed and
# where its logs are. Everything lives in .run/demo ($LLMTAP_RUN/demo),
# apart from `make up`'s .run/up; ClickHouse starts empty each time. Ports
# and their variables: see scripts/stack-lib.sh (Traefik 18080, collector
# 17480, ClickHouse 19000 and 18123, Redis 16379, mock 18900).
# shellcheck source=stack-lib.sh
source "$(dirname "$0")/stack-lib.sh"

STACK_MOCK=1
INGEST_TOKEN=demo-token
READ_TOKEN=demo-read
ADMIN_TOKEN=demo-admin
# Tenants are named by their API key (a hash of it: the plugin never keeps
# the key). The tenant of key sk-team-small may send 2 requests a minute:
# its third gets a 429.
SMALL_TENANT=$(key_tenant sk-team-small)
STACK_LIMITS_YAML="limits:
  tenants:
    $SMALL_TENANT:
      requests: {limit: 2, period: 1m}"
stack_init demo
STACK_MOCK_ARGS=(-ttft 100ms -gap 20ms -tokens 16)
STACK_DYNAMIC_TEMPLATE=$ROOT/traefik/demo.yml
STACK_DYNAMIC_VALUES=(
	"MOCK=http://127.0.0.1:$UPSTREAM_PORT"
	"COLLECTOR=http://127.0.0.1:$COLLECTOR_PORT"
	"TOKEN=$INGEST_TOKEN"
)
base=http://127.0.0.1:$TRAEFIK_PORT
work=$LLMTAP_RUN/workload

# One demo at a time in this run folder.
demo_pid=$LLMTAP_RUN/demo.pid
if pid=$(pid_of "$demo_pid") && grep -qa demo.sh "/proc/$pid/cmdline"; then
	die "a demo already runs (pid $pid); Ctrl-C it first"
fi
echo $$ >"$demo_pid"

# Ctrl-C (or TERM) ends the demo: the stack stops, in order, and the demo
# exits 0, as it was meant to end.
cleanup() {
	local stopped
	trap - INT TERM
	step_interrupted
	[ -z "${sleeper:-}" ] || kill "$sleeper" 2>/dev/null || true
	if stack_running >/dev/null; then
		printf '[demo] stopping the stack ... '
		stopped=$(stack_stop 2>&1 | sed 's/^stopped //; s/ (pid [0-9]*)//' | paste -sd, - | sed 's/,/, /g')
		printf 'stopped %s\n' "$stopped"
	fi
	rm -f "$demo_pid" "$LLMTAP_RUN/env"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# A demo killed outright (SIGKILL, a closed laptop) leaves its stack.
if stack_running >/dev/null; then
	step "stopping what an earlier demo left running" stack_stop
fi
# Each demo starts afresh: empty ClickHouse, this run's logs only.
find "$LLMTAP_RUN" -mindepth 1 -maxdepth 1 ! -name demo.pid -exec rm -rf {} +
stack_start

# --- the workload -------------------------------------------------------------
mkdir -p "$work"
sent=0
# send ROUTE WHAT WHO FILE CURL_ARGS...: one request through Traefik, the
# response body saved in the workload folder; prints what the client saw.
send() {
	local route=$1 what=$2 who=$3 file=$work/$4 seen code secs
	shift 4
	sent=$((sent + 1))
	seen=$(curl -sN -m 10 -o "$file" -w '%{http_code} %{time_total}' "$@" 2>/dev/null) || true
	read -r code secs <<<"$seen"
	printf '  %-9s  %-26s  %-19s  %3s  %5.2f s%s\n' "$route" "$what" "$who" "$code" "${secs:-0}" "${NOTE:-}"
	LAST_CODE=$code
}
json=(-H 'Content-Type: application/json')
chat='"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the demo"}]'
sse_usage='"stream":true,"stream_options":{"include_usage":true}'
claude='"model":"claude-3-5-haiku-latest","max_tokens":256,"messages":[{"role":"user","content":"Say hello to the demo"}]'
chat_url=$base/v1/chat/completions

say "workload through Traefik (answers in $(relpath "$work")/):"
printf '  %-9s  %-26s  %-19s  %s  %s\n' route request tenant/key got time
send openai "chat, SSE + usage" "key sk-team-a" 01-chat.sse "${json[@]}" -H 'Authorization: Bearer sk-team-a' \
	-H 'X-Mock-Ttft: 120ms' -d "{$chat,$sse_usage}" "$chat_url"
send openai "chat, SSE + usage" "key sk-team-b" 02-chat.sse "${json[@]}" -H 'Authorization: Bearer sk-team-b' \
	-H 'X-Mock-Ttft: 250ms' -d "{$chat,$sse_usage}" "$chat_url"
send openai "chat, SSE + usage" "key sk-demo-alice" 03-chat.sse "${json[@]}" \
	-H 'Authorization: Bearer sk-demo-alice-0123456789' -d "{$chat,$sse_usage}" "$chat_url"
send openai "chat, JSON" "key sk-team-a" 04-chat.json "${json[@]}" -H 'Authorization: Bearer sk-team-a' \
	-d "{$chat}" "$chat_url"
send openai "responses, SSE" "key sk-team-b" 05-responses.sse "${json[@]}" -H 'Authorization: Bearer sk-team-b' \
	-H 'X-Mock-Ttft: 180ms' -d '{"model":"gpt-4o-mini","input":"Say hello to the demo","stream":true}' \
	"$base/v1/responses"
send anthropic "messages, SSE" "key sk-ant-demo-bob" 06-messages.sse "${json[@]}" \
	-H 'x-api-key: sk-ant-demo-bob-0123456789' -H 'anthropic-version: 2023-06-01' \
	-H 'X-Mock-Ttft: 150ms' -d "{$claude,\"stream\":true}" "$base/v1/messages"
send anthropic "messages, SSE" "key sk-team-a" 07-messages.sse "${json[@]}" -H 'Authorization: Bearer sk-team-a' \
	-H 'anthropic-version: 2023-06-01' -d "{$claude,\"stream\":true}" "$base/v1/messages"
send tts "speech, WAV stream" "key sk-team-a" 08-speech.wav "${json[@]}" -H 'Authorization: Bearer sk-team-a' \
	-H 'X-Mock-Ttft: 200ms' -H 'X-Mock-Tokens: 8' \
	-d '{"model":"tts-1","voice":"alloy","input":"Hello from the llmtap demo","response_format":"wav"}' \
	"$base/v1/audio/speech"
send tts "speech, WAV stream" "key sk-team-b" 09-speech.wav "${json[@]}" -H 'Authorization: Bearer sk-team-b' \
	-H 'X-Mock-Tokens: 8' -d '{"model":"tts-1","voice":"alloy","input":"Hello again"}' \
	"$base/v1/audio/speech"
limited=
for i in 1 2 3; do
	[ "$i" -lt 3 ] || NOTE="   (2 a minute)"
	send openai "chat, JSON ($i of 3)" "key sk-team-small" "1$((i - 1))-limited.json" "${json[@]}" \
		-H 'Authorization: Bearer sk-team-small' -d "{$chat}" "$chat_url"
	limited+=" $LAST_CODE"
	NOTE=
done
NOTE="   (X-Mock-Fail: 503)"
send openai "chat, upstream error" "key sk-team-b" 13-error.json "${json[@]}" -H 'Authorization: Bearer sk-team-b' \
	-H 'X-Mock-Fail: 503' -d "{$chat,$sse_usage}" "$chat_url"
NOTE="   (client left at 0.2 s)"
send openai "chat, SSE, client leaves" "key sk-team-a" 14-cancel.sse "${json[@]}" -H 'Authorization: Bearer sk-team-a' \
	-m 0.2 -H 'X-Mock-Ttft: 1s' -d "{$chat,$sse_usage}" "$chat_url"
NOTE=
[ "$limited" = " 200 200 429" ] || say "warning: key sk-team-small got$limited, not 200 200 429"

# --- what ClickHouse holds ----------------------------------------------------
ch() { clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" "$@"; }
records() { ch -q 'SELECT count() FROM llmtap.requests FINAL' 2>/dev/null || echo 0; }
all_landed() { [ "$(records)" -ge "$sent" ]; }
# The plugin sends every second, the collector writes every second: poll,
# within a bound, and show what there is if some are missing.
printf '[demo] waiting for the %d records to reach ClickHouse ... ' "$sent"
t0=$EPOCHREALTIME
if wait_for 20 all_landed; then
	printf 'ok (%s)\n' "$(elapsed "$t0")"
else
	printf 'only %s after 20 s; see %s\n' "$(records)" "$(relpath "$LLMTAP_RUN/collector/collector.log")"
fi

echo
say "per route, from ClickHouse (llmtap.requests FINAL; TTFT for streams, TTFA for audio):"
ch -q "SELECT route, count(),
		if(countIf(ttfa_ms IS NOT NULL) > 0, 'TTFA', 'TTFT'),
		quantile(0.5)(ifNull(ttft_ms, ttfa_ms)), quantile(0.95)(ifNull(ttft_ms, ttfa_ms)),
		sum(input_tokens), sum(output_tokens), countIf(error_type != '')
	FROM llmtap.requests FINAL GROUP BY route ORDER BY route FORMAT TSV" |
	awk -F'\t' '
	function ms(v) { return (v == "\\N" || v == "nan" || v == "") ? "-" : sprintf("%d ms", v + 0.5) }
	function num(v) { return (v == "\\N" || v == "") ? "-" : v }
	BEGIN { printf "  %-9s  %8s  %-6s  %7s  %7s  %9s  %6s  %6s\n", "route", "requests", "metric", "p50", "p95", "tokens in", "out", "errors" }
	{ printf "  %-9s  %8d  %-6s  %7s  %7s  %9s  %6s  %6d\n", $1, $2, $3, ms($4), ms($5), num($6), num($7), $8 }'
ch -q "SELECT route, error_type, count() FROM llmtap.requests FINAL
	WHERE error_type != '' GROUP BY route, error_type ORDER BY route, error_type FORMAT TSV" |
	awk -F'\t' '
	$1 != route { if (line != "") print line; route = $1; line = "  errors of " $1 ": " $2 " " $3; next }
	{ line = line ", " $2 " " $3 }
	END { if (line != "") print line }'

echo
say "the requests, oldest first (times in ms; first: TTFT or TTFA; tokens: in/out):"
ch --format PrettyCompactNoEscapes -q "SELECT route, tenant, status, kind, error_type AS error,
		ttfb_ms AS ttfb, multiIf(ttft_ms IS NOT NULL, concat('ttft ', toString(ttft_ms)),
			ttfa_ms IS NOT NULL, concat('ttfa ', toString(ttfa_ms)), '') AS first,
		duration_ms AS took,
		concat(ifNull(toString(input_tokens), '-'), '/', ifNull(toString(output_tokens), '-')) AS tokens
	FROM llmtap.requests FINAL ORDER BY start, start_ms, request_id" | sed 's/^/  /'

# One stream measured at the proxy against the mock's own clock.
read -r id ttft <<<"$(ch -q "SELECT request_id, ttft_ms FROM llmtap.requests FINAL
	WHERE route = 'openai' AND kind = 'sse' AND error_type = '' AND ttft_ms IS NOT NULL
	ORDER BY start, start_ms LIMIT 1 FORMAT TSV")"
truth=$(curl -s -m 5 "http://127.0.0.1:$UPSTREAM_PORT/mock/truth/$id" | grep -o '"ttft_us":[0-9]*' | cut -d: -f2) || true
echo
if [ -n "$truth" ]; then
	say "request $id: TTFT $ttft ms at the proxy, $((truth / 1000)) ms at the mock (/mock/truth)"
fi

echo
say "the stack is up; Ctrl-C stops it:"
stack_addresses "http://127.0.0.1:$UPSTREAM_PORT (the mock; routes: $(relpath "$LLMTAP_RUN/traefik/dynamic.yml"))" \
	"$SMALL_TENANT" "$ADMIN_TOKEN" "${id:-}"
stack_write_env "http://127.0.0.1:$UPSTREAM_PORT"
cat <<TXT
  try it:
    curl -N $base/v1/chat/completions -H 'Authorization: Bearer sk-me' -H 'X-Mock-Ttft: 300ms' \\
      -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}'
    clickhouse-client --port $CLICKHOUSE_TCP_PORT -q 'SELECT * FROM llmtap.requests FINAL FORMAT Vertical'
TXT
while :; do
	sleep 60 &
	sleeper=$!
	wait "$sleeper" || true
done
