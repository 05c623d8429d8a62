#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Self-check of `make up` and `make down`, run by `make test`: in a scratch
# run folder and on free ports (a developer's own stacks are left alone),
#   1. make up with the mock: one SSE request through Traefik, its row in
#      ClickHouse and at the collector's API, every address in the env file,
#      a second `make up` refused; make down leaves no process and no port;
#   2. make up UPSTREAM=URL (ROUTE, LIMITS=1) in front of a mock started
#      here: the request reaches that upstream, a tenant's policy set
#      through the admin API gives 200 then 429; make down again.
# Loopback only, every wait bounded. Whatever happens, what it started is
# stopped (trap). Last line: "stack: N passed, M failed".
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# The stacks under test get their settings from here alone, not from the
# make that runs this or the caller's environment.
unset MAKEFLAGS MAKELEVEL MFLAGS UPSTREAM ROUTE LIMITS

# shellcheck source=test-lib.sh
source "$(dirname "$0")/test-lib.sh"

LLMTAP_RUN=$(mktemp -d "${TMPDIR:-/tmp}/llmtap-stack.XXXXXX")
export LLMTAP_RUN
RUN=$LLMTAP_RUN/up
ENV_FILE=$RUN/env
PORT_VARS=(TRAEFIK_PORT COLLECTOR_PORT CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT REDIS_PORT UPSTREAM_PORT OTHER_PORT)
# Random picks may collide: draw again until every port differs.
taken=" "
for var in "${PORT_VARS[@]}"; do
	until port=$(free_port) && [[ $taken != *" $port "* ]]; do :; done
	taken+="$port "
	printf -v "$var" %s "$port"
	export "${var?}"
done
OTHER_MOCK_PID=

cleanup() {
	timeout 60 make -s -C "$ROOT" down >/dev/null 2>&1 || true
	if [ -n "$OTHER_MOCK_PID" ]; then
		kill "$OTHER_MOCK_PID" 2>/dev/null || true
		wait "$OTHER_MOCK_PID" 2>/dev/null || true
	fi
	finish_run
}
on_exit cleanup

# make_up ARGS...: make up, bounded (a cold Traefik build takes ~8 min).
make_up() { timeout 900 make -s -C "$ROOT" up "$@"; }
make_down() { timeout 60 make -s -C "$ROOT" down; }

# env_value KEY: its value in the env file.
env_value() { sed -n "s/^$1=//p" "$ENV_FILE"; }

# env_has KEY=VALUE...: the env file holds each line exactly.
env_has() {
	local kv bad=0
	[ -f "$ENV_FILE" ] || { echo "no $ENV_FILE"; return 1; }
	for kv in "$@"; do
		grep -qxF "$kv" "$ENV_FILE" || { echo "missing: $kv"; bad=1; }
	done
	[ "$bad" -eq 0 ] || cat "$ENV_FILE"
	return "$bad"
}
env_addresses() {
	env_has "LLMTAP_TRAEFIK_URL=http://127.0.0.1:$TRAEFIK_PORT" \
		"LLMTAP_COLLECTOR_URL=http://127.0.0.1:$COLLECTOR_PORT" \
		"LLMTAP_METRICS_URL=http://127.0.0.1:$COLLECTOR_PORT/metrics" \
		"LLMTAP_CLICKHOUSE_NATIVE=127.0.0.1:$CLICKHOUSE_TCP_PORT" \
		"LLMTAP_CLICKHOUSE_HTTP=http://127.0.0.1:$CLICKHOUSE_HTTP_PORT" \
		"LLMTAP_REDIS_ADDR=127.0.0.1:$REDIS_PORT" \
		"$@" || return 1
	if [ -z "$(env_value LLMTAP_INGEST_TOKEN)" ] || [ -z "$(env_value LLMTAP_ADMIN_TOKEN)" ]; then
		echo "no tokens"
		return 1
	fi
	# Sourceable, and what it says answers.
	# shellcheck disable=SC2016
	bash -euc 'source "$1"; curl -sf -m 5 -o /dev/null "$LLMTAP_METRICS_URL"
		curl -sf -m 5 -o /dev/null "$LLMTAP_CLICKHOUSE_HTTP/ping"' _ "$ENV_FILE"
}

# sse ID KEY: one streamed chat through Traefik with X-Request-Id ID and
# the API key KEY; the stream must end with [DONE].
sse() {
	local body
	body=$(curl -sfN -m 20 -H "X-Request-Id: $1" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
		-d '{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi there"}]}' \
		"http://127.0.0.1:$TRAEFIK_PORT/v1/chat/completions") || { echo "curl failed: $?"; return 1; }
	grep -q '^data: \[DONE\]' <<<"$body" || { echo "no [DONE] in: $body"; return 1; }
}

# row ID WANT: within 20 s, ClickHouse holds the request's row as
# "route kind status output_tokens".
row_of() {
	clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" -q "SELECT route, kind, status, output_tokens
		FROM llmtap.requests FINAL WHERE request_id = '$1' FORMAT TSV" 2>/dev/null | tr '\t' ' '
}
row_is() { [ "$(row_of "$1")" = "$2" ]; }
row() {
	wait_for 20 row_is "$1" "$2" || { echo "want '$2', got '$(row_of "$1")'"; return 1; }
}

# collector_has ID: the collector's API answers the request by id.
collector_has() {
	curl -sf -m 5 -H "Authorization: Bearer $(env_value LLMTAP_ADMIN_TOKEN)" \
		"http://127.0.0.1:$COLLECTOR_PORT/v1/requests/$1" | grep -q "$1"
}

# refused WANT ARGS...: make up ARGS fails and says WANT.
refused() {
	local want=$1 out
	shift
	if out=$(make_up "$@" 2>&1); then
		echo "make up succeeded: $out"
		return 1
	fi
	grep -qF -- "$want" <<<"$out" || { echo "want '$want' in: $out"; return 1; }
}

# PIDS: the pids of the stack's parts now, from their pid files.
record_pids() { PIDS=$(cat "$RUN"/*/pid 2>/dev/null | tr '\n' ' '); }

# down_clean N: make down says it stopped N parts, and no pid of the stack
# runs, no port of it answers.
down_clean() {
	local out pid var n
	out=$(make_down 2>&1) || { echo "$out"; return 1; }
	n=$(grep -c '^\[up\] stopped ' <<<"$out") || true
	[ "$n" = "$1" ] || { echo "want $1 parts stopped: $out"; return 1; }
	for pid in $PIDS; do
		wait_for 5 pid_gone "$pid" || { echo "pid $pid still runs"; return 1; }
	done
	for var in TRAEFIK_PORT COLLECTOR_PORT CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT REDIS_PORT UPSTREAM_PORT; do
		! port_in_use "${!var}" || { echo "port ${!var} ($var) still answers"; return 1; }
	done
	[ ! -e "$ENV_FILE" ] || { echo "$ENV_FILE left behind"; return 1; }
	no_pid_files
}

down_again() { make_down | grep -q 'nothing was running'; }

# limited KEY: with a policy of 1 request a minute set through the admin
# API for the tenant of API key KEY, its first request passes and its
# second gets 429.
limited() {
	local codes='' _ tenant
	tenant=$(key_tenant "$1")
	curl -sf -m 5 -X PUT -H "Authorization: Bearer $(env_value LLMTAP_ADMIN_TOKEN)" \
		-d '{"requests":{"limit":1,"period":"1m"}}' "http://127.0.0.1:$COLLECTOR_PORT/v1/limits/$tenant" >/dev/null ||
		{ echo "PUT /v1/limits/$tenant failed"; return 1; }
	for _ in 1 2; do
		codes+="$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
			-d '{"model":"m","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$TRAEFIK_PORT/v1/chat/completions") "
	done
	[ "$codes" = "200 429 " ] || { echo "want 200 429, got $codes"; return 1; }
}

no_pid_files() { [ -z "$(ls "$RUN"/*/pid 2>/dev/null)" ] || { ls "$RUN"/*/pid; return 1; }; }
no_mock() { [ ! -e "$RUN/mock/pid" ] && ! port_in_use "$UPSTREAM_PORT"; }

# served_by_other ID: the mock at OTHER_PORT served the request.
served_by_other() {
	curl -sf -m 10 "http://127.0.0.1:$OTHER_PORT/mock/truth/$1" | grep -q '"status":200'
}

# --- 1. make up with the mock -----------------------------------------------
id1=stack-test-$(date +%s)-1
check "make up (the mock on $UPSTREAM_PORT, Traefik on $TRAEFIK_PORT)" make_up
record_pids
check "env file: every address, the tokens; sourceable" env_addresses \
	"LLMTAP_UPSTREAM=http://127.0.0.1:$UPSTREAM_PORT" "LLMTAP_MOCK_URL=http://127.0.0.1:$UPSTREAM_PORT"
check "SSE through Traefik to the mock" sse "$id1" stack-test
check "its row in ClickHouse (route llm, sse, 200, 16 tokens)" row "$id1" "llm sse 200 16"
check "the collector's API has it" collector_has "$id1"
check "a second make up is refused" refused "already runs"
check "make down stops all 5 parts; no process, no port, no env file left" down_clean 5
check "make down again stops nothing" down_again

# --- 2. make up UPSTREAM=URL --------------------------------------------------
"$LLMTAP_BIN/llmtap-mock" -addr "127.0.0.1:$OTHER_PORT" >"$LLMTAP_RUN/other-mock.log" 2>&1 &
OTHER_MOCK_PID=$!
other_up() { curl -sf -m 2 -o /dev/null "http://127.0.0.1:$OTHER_PORT/healthz"; }
check "an upstream of our own on $OTHER_PORT" wait_for 10 other_up
check "make up refuses a port in use, naming its variable" refused "(TRAEFIK_PORT) is in use" TRAEFIK_PORT="$OTHER_PORT"
check "the refused start left nothing running" no_pid_files
upstream=http://127.0.0.1:$OTHER_PORT
id2=stack-test-$(date +%s)-2
check "make up UPSTREAM=$upstream ROUTE=chat LIMITS=1" make_up UPSTREAM="$upstream" ROUTE=chat LIMITS=1
record_pids
check "env file names the upstream, no mock" env_addresses "LLMTAP_UPSTREAM=$upstream"
check "no mock started by make up" no_mock
check "SSE through Traefik to the named upstream" sse "$id2" stack-test
check "that upstream served it (its /mock/truth)" served_by_other "$id2"
check "its row in ClickHouse (route chat)" row "$id2" "chat sse 200 16"
check "limits on: a tenant's policy from the admin API gives 200 then 429" limited stack-test-limited
check "make down stops all 4 parts; no process, no port left" down_clean 4
check "the upstream of our own still runs" pid_running "$OTHER_MOCK_PID"

echo "stack: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
