#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make up [UPSTREAM=URL] [ROUTE=NAME] [LIMITS=1]: the stack of `make demo`
# (ClickHouse, Redis, the collector, Traefik with the llmtap plugin) left
# running in the background, with Traefik sending every path through the
# plugin to UPSTREAM: a provider (https://api.openai.com), a local vLLM
# (http://127.0.0.1:8000), anything that speaks HTTP. Without UPSTREAM the
# mock LLM upstream is started and routed to. `make down` stops it.
#
#   UPSTREAM  scheme://host[:port][/path]; a path is put before the
#             client's (https://example.com/openai + /v1/chat/...)
#   ROUTE     the route's name in the records (default llm)
#   LIMITS    1: the plugin checks per-tenant limits with the collector
#             (no tenant is limited until you set a policy: PUT
#             /v1/limits/{tenant} with the admin token); default 0
#
# Ports, all on 127.0.0.1 (default, and the variable that overrides it):
#   18080  TRAEFIK_PORT          Traefik's entrypoint
#   17480  COLLECTOR_PORT        the collector's API and /metrics
#   19000  CLICKHOUSE_TCP_PORT   ClickHouse, native protocol
#   18123  CLICKHOUSE_HTTP_PORT  ClickHouse, HTTP
#   16379  REDIS_PORT            Redis
#   18900  UPSTREAM_PORT         the mock upstream (without UPSTREAM)
#
# Everything lives in .run/up ($LLMTAP_RUN/up): pid files, logs, the data
# (ClickHouse's is kept from one `make up` to the next; `make clean` drops
# it) and `env`, the addresses and tokens as KEY=value lines. Refuses to
# start when a port is taken or the stack already runs; a failed start
# stops what it had started.
# shellcheck source=stack-lib.sh
source "$(dirname "$0")/stack-lib.sh"

UPSTREAM=${UPSTREAM:-}
ROUTE=${ROUTE:-llm}
LIMITS=${LIMITS:-0}
STACK_MOCK=1
[ -z "$UPSTREAM" ] || STACK_MOCK=0
stack_init up

UPSTREAM=${UPSTREAM%/}
[ -z "$UPSTREAM" ] || [[ $UPSTREAM =~ ^https?://[][A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/%+-]*)?$ ]] ||
	die "UPSTREAM=$UPSTREAM: want http://host[:port][/path] or https://..."
[[ $ROUTE =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "ROUTE=$ROUTE: want letters, digits, . _ -"
case $LIMITS in
1 | true) limits=true ;;
0 | false | '') limits=false ;;
*) die "LIMITS=$LIMITS: want 1 (on) or 0 (off)" ;;
esac

if running=$(stack_running); then
	die "the stack of \`make up\` already runs ($(echo "$running" | paste -sd, - | sed 's/,/, /g')): \`make down\` first"
fi

[ -n "$UPSTREAM" ] || UPSTREAM=http://127.0.0.1:$UPSTREAM_PORT
INGEST_TOKEN=$(random_token)
READ_TOKEN=$(random_token)
ADMIN_TOKEN=$(random_token)
STACK_MOCK_ARGS=()
STACK_DYNAMIC_TEMPLATE=$ROOT/traefik/up.yml
STACK_DYNAMIC_VALUES=(
	"UPSTREAM=$UPSTREAM"
	"ROUTE=$ROUTE"
	"LIMITS=$limits"
	"COLLECTOR=http://127.0.0.1:$COLLECTOR_PORT"
	"TOKEN=$INGEST_TOKEN"
)

# A start that fails or is interrupted stops what it had started.
abort() {
	local rc=$? line
	[ "$rc" -ne 0 ] || return 0
	step_interrupted
	while read -r line; do [ -z "$line" ] || say "$line"; done <<<"$(stack_stop)"
	rm -f "$LLMTAP_RUN/env"
	exit "$rc"
}
trap abort EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -f "$LLMTAP_RUN/env"
stack_start
stack_write_env "$UPSTREAM"
trap - EXIT INT TERM

auth=" -H 'Authorization: Bearer sk-me'"
if [ "$STACK_MOCK" = 1 ]; then
	upstream_line="$UPSTREAM (the mock)"
else
	upstream_line=$UPSTREAM
	auth=" -H \"Authorization: Bearer \$YOUR_KEY\""
	code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$UPSTREAM/" 2>/dev/null) || true
	[ "${code:-000}" != 000 ] ||
		say "warning: $UPSTREAM does not answer now; Traefik answers 502 until it does"
fi
say "the stack runs in the background; \`make down\` stops it."
say "route \"$ROUTE\": every path through the plugin to the upstream; limits $([ "$limits" = true ] && echo on || echo off)"
stack_addresses "$upstream_line" "<tenant: key-... for an API key, see docs/security.md>" "LLMTAP_ADMIN_TOKEN in the env file"
cat <<TXT
  try it:
    source $(relpath "$LLMTAP_RUN/env")
    curl -N \$LLMTAP_TRAEFIK_URL/v1/chat/completions \\
      -H 'Content-Type: application/json'$auth \\
      -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
           "messages":[{"role":"user","content":"Hi"}]}'
    clickhouse-client --port $CLICKHOUSE_TCP_PORT -q 'SELECT * FROM llmtap.requests FINAL FORMAT Vertical'
TXT
