#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make demo: the real Traefik with the llmtap plugin in front of a mock LLM
# upstream, a short workload, and the records the plugin sends, printed as
# they arrive. Runs until Ctrl-C, then stops everything it started.
# (The collector that stores records in ClickHouse comes with the
# collector; until then a sink prints them.)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

export LLMTAP_RUN=$LLMTAP_RUN/demo
export TRAEFIK_PORT=${TRAEFIK_PORT:-18080}
UPSTREAM_PORT=${UPSTREAM_PORT:-18900}

step() { printf '[demo] %s\n' "$*"; }

step "installing what is missing"
"$ROOT/scripts/install.sh"
step "building Traefik $TRAEFIK_VERSION (cached after the first time)"
"$ROOT/scripts/traefik-build.sh" >/dev/null
mkdir -p "$LLMTAP_RUN" "$LLMTAP_BIN"
go build -o "$LLMTAP_BIN/mock-upstream" "$ROOT/bench/upstream"

upstream_pid=
cleanup() {
	step "stopping"
	"$ROOT/scripts/traefik.sh" stop || true
	[ -z "$upstream_pid" ] || { kill "$upstream_pid" 2>/dev/null; wait "$upstream_pid" 2>/dev/null || true; }
}
trap cleanup EXIT
trap 'exit 0' INT TERM

port_in_use "$UPSTREAM_PORT" && die "port 127.0.0.1:$UPSTREAM_PORT is in use (set UPSTREAM_PORT)"
step "starting the mock upstream and record sink on 127.0.0.1:$UPSTREAM_PORT"
"$LLMTAP_BIN/mock-upstream" -addr "127.0.0.1:$UPSTREAM_PORT" -gap 100ms -events 8 -print \
	>"$LLMTAP_RUN/records.log" 2>"$LLMTAP_RUN/upstream.log" &
upstream_pid=$!
wait_for 10 port_in_use "$UPSTREAM_PORT" || die "mock upstream did not start; log: $LLMTAP_RUN/upstream.log"

dynamic=$LLMTAP_RUN/dynamic.yml
sed "s/__UPSTREAM__/127.0.0.1:$UPSTREAM_PORT/g" "$ROOT/traefik/demo.yml" >"$dynamic"
step "starting Traefik with the plugin on 127.0.0.1:$TRAEFIK_PORT"
"$ROOT/scripts/traefik.sh" start "$dynamic"

base=http://127.0.0.1:$TRAEFIK_PORT
wait_for 30 curl -sf -o /dev/null "$base/json" || die "Traefik does not route to the mock upstream; logs in $LLMTAP_RUN/traefik"
step "sending a short workload"
for i in 1 2 3; do
	curl -sf -o /dev/null -H "X-Tenant-ID: team-$i" -H 'Content-Type: application/json' \
		-d '{"model":"mock","messages":[{"role":"user","content":"hi"}]}' "$base/json"
done
events=$(curl -sfN -H 'Authorization: Bearer sk-demo-key' -H 'Content-Type: application/json' \
	-d '{"model":"mock","stream":true}' "$base/sse" | grep -c '^data:')
step "streamed $events SSE events through the plugin"
curl -sfN -m 0.35 -H 'X-Tenant-ID: impatient' "$base/sse" >/dev/null || true # a client that leaves mid-stream
sleep 2 # the plugin sends a batch every second

step "records the plugin sent (also in $LLMTAP_RUN/records.log):"
cat "$LLMTAP_RUN/records.log"
echo
step "try it: curl -N $base/sse   (Ctrl-C stops the demo)"
tail -n 0 -f "$LLMTAP_RUN/records.log" &
wait $!
