# shellcheck shell=bash source-path=SCRIPTDIR
# The stack that `make demo` (scripts/demo.sh) and `make up` (scripts/up.sh)
# run on loopback: ClickHouse, Redis, the collector, the mock LLM upstream
# (when the stack routes to it) and the real Traefik with the llmtap plugin.
# Both start it with the same steps and stop it with the same function, each
# in its own run folder ($LLMTAP_RUN/demo, $LLMTAP_RUN/up), so that neither
# touches the other's processes.
#
# Ports, all on 127.0.0.1 (default, and the variable that overrides it):
#   18080  TRAEFIK_PORT          Traefik's entrypoint
#   17480  COLLECTOR_PORT        the collector's API and /metrics
#   19000  CLICKHOUSE_TCP_PORT   ClickHouse, native protocol
#   18123  CLICKHOUSE_HTTP_PORT  ClickHouse, HTTP
#   16379  REDIS_PORT            Redis
#   18900  UPSTREAM_PORT         the mock LLM upstream
#
# Every service runs in a session of its own (setsid), so Ctrl-C in the
# terminal reaches the script alone, which then stops the services in order:
# Traefik first, so no request is left half-recorded, ClickHouse last, after
# the collector has written what it holds. It also lets the stack of
# `make up` outlive the terminal that started it.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# $EPOCHREALTIME follows LC_NUMERIC; the step timings want a dot.
export LC_NUMERIC=C

# The parts, in the order they stop.
STACK_PARTS=(traefik mock collector redis clickhouse)

# stack_init NAME: the run folder $LLMTAP_RUN/NAME (absolute) becomes
# $LLMTAP_RUN for the service scripts, and the ports get their defaults.
stack_init() {
	STACK=$1
	mkdir -p "$LLMTAP_RUN/$STACK"
	STACK_BASE=$(cd "$LLMTAP_RUN" && pwd)
	LLMTAP_RUN=$STACK_BASE/$STACK
	STACK_LOG=$LLMTAP_RUN/steps.log
	: "${TRAEFIK_PORT:=18080}" "${COLLECTOR_PORT:=17480}" "${CLICKHOUSE_TCP_PORT:=19000}"
	: "${CLICKHOUSE_HTTP_PORT:=18123}" "${REDIS_PORT:=16379}" "${UPSTREAM_PORT:=18900}"
	export LLMTAP_RUN TRAEFIK_PORT CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT REDIS_PORT
	MOCK_BIN=$LLMTAP_BIN/llmtap-mock
	COLLECTOR_BIN=$LLMTAP_BIN/llmtap-collector
	TRAEFIK_EXE=$LLMTAP_CACHE/traefik-$TRAEFIK_VERSION
	# Set by the caller before stack_start: whether the mock runs, where
	# Traefik routes (the dynamic configuration) and the collector's tokens.
	STACK_MOCK=${STACK_MOCK:-1}
	STACK_DYNAMIC=
	INGEST_TOKEN=${INGEST_TOKEN:-}
	READ_TOKEN=${READ_TOKEN:-}
	ADMIN_TOKEN=${ADMIN_TOKEN:-}
	STACK_LIMITS_YAML=${STACK_LIMITS_YAML:-}
}

# part_pidfile NAME [RUN]: the pid file of a part in RUN (default: ours).
part_pidfile() { printf '%s/%s/pid' "${2:-$LLMTAP_RUN}" "$1"; }

# part_exe NAME [RUN]: the program the part's process runs, as noted when
# it started (else as this checkout builds it), so that a pid file left by
# a reboot never names somebody else's process.
part_exe() {
	local noted=${2:-$LLMTAP_RUN}/$1/exe
	if [ -s "$noted" ]; then
		cat "$noted"
		return 0
	fi
	case $1 in
	traefik) echo "$TRAEFIK_EXE" ;;
	mock) echo "$MOCK_BIN" ;;
	collector) echo "$COLLECTOR_BIN" ;;
	redis) command -v redis-server || true ;;
	clickhouse) command -v clickhouse-server || true ;;
	esac
}

# note_exe NAME: notes the program the part's process runs now that it has
# started.
note_exe() {
	local pid
	pid=$(cat "$(part_pidfile "$1")")
	readlink -f "/proc/$pid/exe" >"$LLMTAP_RUN/$1/exe"
}

# stack_running [RUN]: prints "name pid" for each part alive in RUN; false
# when none is.
stack_running() {
	local part pid found=1
	for part in "${STACK_PARTS[@]}"; do
		if pid=$(pid_of "$(part_pidfile "$part" "${1:-}")" "$(part_exe "$part" "${1:-}")"); then
			echo "$part $pid"
			found=0
		fi
	done
	return "$found"
}

# stack_stop: stops every part of this stack that runs, in order, and says
# which (one "stopped NAME (pid N)" line each). Stale pid files go too; one
# whose pid now runs another program is reported, and that process left
# alone.
stack_stop() {
	local part file pid exe
	for part in "${STACK_PARTS[@]}"; do
		file=$(part_pidfile "$part")
		exe=$(part_exe "$part")
		if pid=$(pid_of "$file" "$exe"); then
			stop_pid_file "$file" "$exe"
			rm -f "$(dirname "$file")/exe"
			echo "stopped $part (pid $pid)"
			continue
		fi
		if pid=$(pid_of "$file"); then
			echo "left alone: pid $pid of $file runs $(readlink "/proc/$pid/exe" 2>/dev/null || echo '?'), not $exe"
		fi
		rm -f "$file" "$(dirname "$file")/exe"
	done
}

# elapsed T0: seconds since $EPOCHREALTIME was T0, e.g. "1.3 s".
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# step MESSAGE CMD...: one progress line for one step. CMD runs in a
# subshell with errexit, its output appended to the steps log; when it
# fails, the line says so, the end of its output follows (the service
# scripts name the part and its logs there) and the script exits 1.
step() {
	local msg=$1 from t0 rc
	shift
	printf '[%s] %s ... ' "$STACK" "$msg"
	STEP_OPEN=1
	touch "$STACK_LOG"
	from=$(wc -l <"$STACK_LOG")
	printf '### %s: %s\n' "$(date -u +%T)" "$msg" >>"$STACK_LOG"
	t0=$EPOCHREALTIME
	set +e
	(
		set -e
		"$@"
	) </dev/null >>"$STACK_LOG" 2>&1
	rc=$?
	set -e
	STEP_OPEN=0
	if [ "$rc" -eq 0 ]; then
		printf 'ok (%s)\n' "$(elapsed "$t0")"
		return 0
	fi
	printf 'FAILED\n'
	tail -n +"$((from + 2))" "$STACK_LOG" | tail -n 25 | sed 's/^/    /' >&2
	printf '[%s] failed: %s (this output and more in %s)\n' "$STACK" "$msg" "$(relpath "$STACK_LOG")" >&2
	exit 1
}

# step_interrupted: ends the progress line of a step that a signal cut.
step_interrupted() {
	[ "${STEP_OPEN:-0}" = 1 ] || return 0
	printf 'interrupted\n'
	STEP_OPEN=0
}

# say MESSAGE: a progress line that is not a step.
say() { printf '[%s] %s\n' "$STACK" "$*"; }

# stack_ports: the variables naming the ports this stack listens on.
stack_ports() {
	echo TRAEFIK_PORT COLLECTOR_PORT CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT REDIS_PORT
	[ "$STACK_MOCK" != 1 ] || echo UPSTREAM_PORT
}

# stack_check_ports: every port is a number, given once, and free; a port in
# use is refused with the variable that moves it, and with the other stack
# when that is what holds it.
stack_check_ports() {
	local var port other hint
	local -A given=()
	for var in $(stack_ports); do
		port=${!var}
		if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
			die "$var=$port: want a TCP port number"
		fi
		[ -z "${given[$port]:-}" ] || die "$var=$port: ${given[$port]} has that port too"
		given[$port]=$var
		port_in_use "$port" || continue
		hint=
		for other in demo up; do
			[ "$other" != "$STACK" ] || continue
			if stack_running "$STACK_BASE/$other" >/dev/null; then
				case $other in
				up) hint=" by the stack of \`make up\` (\`make down\` stops it)" ;;
				demo) hint=" by a running \`make demo\` (Ctrl-C it)" ;;
				esac
			fi
		done
		die "port 127.0.0.1:$port ($var) is in use$hint; free it or set $var to another port"
	done
}

# stack_install: the Debian packages (scripts/install.sh) and Go.
stack_install() {
	command -v go >/dev/null || die "go not found: install Go (https://go.dev/dl) and run again"
	"$ROOT/scripts/install.sh"
}

# stack_build: the collector, and the mock when the stack runs it. Traefik
# is built by its own step (cached by version).
stack_build() {
	mkdir -p "$LLMTAP_BIN"
	(cd "$ROOT/collector" && go build -o "$COLLECTOR_BIN" ./cmd/llmtap-collector)
	if [ "$STACK_MOCK" = 1 ]; then
		[ -d "$ROOT/mock/cmd/llmtap-mock" ] || die "the mock upstream's source is missing: $ROOT/mock/cmd/llmtap-mock"
		(cd "$ROOT" && go build -o "$MOCK_BIN" ./mock/cmd/llmtap-mock)
	fi
}

stack_build_traefik() { "$ROOT/scripts/traefik-build.sh" >/dev/null; }

# Readiness checks.
collector_ready() { curl -sf -m 2 -o /dev/null "http://127.0.0.1:$COLLECTOR_PORT/readyz"; }
mock_ready() { curl -sf -m 2 -o /dev/null "http://127.0.0.1:$UPSTREAM_PORT/healthz"; }
# The dynamic configurations have a router for /.llmtap/ready through an
# llmtap middleware that records nothing, to noop@internal (418): it
# answers once Traefik has loaded the routers and the plugin.
traefik_routes() {
	[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TRAEFIK_PORT/.llmtap/ready")" = 418 ]
}

stack_start_clickhouse() {
	setsid -w "$ROOT/scripts/clickhouse.sh" start
	note_exe clickhouse
}
stack_start_redis() {
	setsid -w "$ROOT/scripts/redis.sh" start
	note_exe redis
}

# stack_start_collector: writes its configuration (tokens, ClickHouse,
# Redis, the spool in the run folder, $STACK_LIMITS_YAML) and starts it.
stack_start_collector() {
	local dir=$LLMTAP_RUN/collector
	mkdir -p "$dir/spool"
	cat >"$dir/collector.yaml" <<YAML
# Written by scripts/stack-lib.sh for \`make $STACK\`.
listen: 127.0.0.1:$COLLECTOR_PORT
ingest_token: $INGEST_TOKEN
read_token: $READ_TOKEN
admin_token: $ADMIN_TOKEN
shutdown_timeout: 8s
clickhouse:
  addr: 127.0.0.1:$CLICKHOUSE_TCP_PORT
  spool_dir: '$dir/spool'
redis:
  addr: 127.0.0.1:$REDIS_PORT
$STACK_LIMITS_YAML
YAML
	: >"$dir/collector.log"
	# The collector lets LLMTAP_* variables override its file: an env file
	# of an earlier stack sourced into this shell must not redirect it.
	setsid env -u LLMTAP_LISTEN -u LLMTAP_INGEST_TOKEN -u LLMTAP_READ_TOKEN -u LLMTAP_ADMIN_TOKEN \
		-u LLMTAP_CLICKHOUSE_ADDR -u LLMTAP_CLICKHOUSE_PASSWORD -u LLMTAP_REDIS_ADDR \
		-u LLMTAP_REDIS_PASSWORD -u LLMTAP_LOG_LEVEL \
		"$COLLECTOR_BIN" -config "$dir/collector.yaml" </dev/null >>"$dir/collector.log" 2>&1 &
	echo $! >"$dir/pid"
	await_start collector "$dir/pid" "" collector_ready "$dir/collector.log"
	note_exe collector
}

# stack_start_mock ARGS...: the mock upstream on UPSTREAM_PORT.
stack_start_mock() {
	local dir=$LLMTAP_RUN/mock
	mkdir -p "$dir"
	: >"$dir/mock.log"
	setsid "$MOCK_BIN" -addr "127.0.0.1:$UPSTREAM_PORT" "$@" </dev/null >>"$dir/mock.log" 2>&1 &
	echo $! >"$dir/pid"
	await_start mock "$dir/pid" "" mock_ready "$dir/mock.log"
	note_exe mock
}

# render TEMPLATE OUT KEY=VALUE...: TEMPLATE with every __KEY__ replaced by
# VALUE; a placeholder left unfilled is an error.
render() {
	local text kv left
	text=$(<"$1")
	for kv in "${@:3}"; do
		# Quoted, so that & in a value stays itself (bash 5.2).
		text=${text//"__${kv%%=*}__"/"${kv#*=}"}
	done
	left=$(grep -o '__[A-Z_]*__' <<<"$text" | sort -u | tr '\n' ' ') || true
	[ -z "$left" ] || die "$1: no value for $left"
	printf '%s\n' "$text" >"$2"
}

# stack_start_traefik: Traefik with the plugin and $STACK_DYNAMIC, then
# waits until it routes through the plugin.
stack_start_traefik() {
	setsid -w "$ROOT/scripts/traefik.sh" start "$STACK_DYNAMIC"
	note_exe traefik
	wait_for 20 traefik_routes ||
		die "traefik runs but does not route through the llmtap plugin (did the plugin load?); logs: $LLMTAP_RUN/traefik/traefik.log"
}

# stack_start: every step from a bare machine to a stack that routes.
# STACK_DYNAMIC_TEMPLATE and STACK_DYNAMIC_VALUES (KEY=VALUE...) describe
# Traefik's dynamic configuration; STACK_MOCK_ARGS the mock's flags.
stack_start() {
	: >"$STACK_LOG"
	step "checking the ports: $(for v in $(stack_ports); do printf '%s ' "${!v}"; done | sed 's/ $//')" stack_check_ports
	step "installing what is missing (Debian packages)" stack_install
	step "building Traefik $TRAEFIK_VERSION (cached; the first build takes ~8 min)" stack_build_traefik
	if [ "$STACK_MOCK" = 1 ]; then
		step "building the collector and the mock upstream" stack_build
	else
		step "building the collector" stack_build
	fi
	step "starting ClickHouse on 127.0.0.1:$CLICKHOUSE_TCP_PORT (native), :$CLICKHOUSE_HTTP_PORT (HTTP)" stack_start_clickhouse
	step "starting Redis on 127.0.0.1:$REDIS_PORT" stack_start_redis
	step "starting the collector on 127.0.0.1:$COLLECTOR_PORT" stack_start_collector
	if [ "$STACK_MOCK" = 1 ]; then
		step "starting the mock upstream on 127.0.0.1:$UPSTREAM_PORT" stack_start_mock "${STACK_MOCK_ARGS[@]}"
	fi
	mkdir -p "$LLMTAP_RUN/traefik"
	STACK_DYNAMIC=$LLMTAP_RUN/traefik/dynamic.yml
	render "$STACK_DYNAMIC_TEMPLATE" "$STACK_DYNAMIC" "${STACK_DYNAMIC_VALUES[@]}"
	step "starting Traefik with the plugin on 127.0.0.1:$TRAEFIK_PORT" stack_start_traefik
}

# stack_write_env UPSTREAM: the addresses, one KEY=value a line, in
# $LLMTAP_RUN/env (for `set -a; . FILE; set +a`, docker --env-file, systemd).
stack_write_env() {
	local f=$LLMTAP_RUN/env
	{
		echo "# The llmtap stack of \`make $STACK\`, started $(date -u +%FT%TZ)."
		echo "# Load it with: set -a; . $f; set +a"
		echo "LLMTAP_TRAEFIK_URL=http://127.0.0.1:$TRAEFIK_PORT"
		echo "LLMTAP_COLLECTOR_URL=http://127.0.0.1:$COLLECTOR_PORT"
		echo "LLMTAP_METRICS_URL=http://127.0.0.1:$COLLECTOR_PORT/metrics"
		echo "LLMTAP_CLICKHOUSE_NATIVE=127.0.0.1:$CLICKHOUSE_TCP_PORT"
		echo "LLMTAP_CLICKHOUSE_HTTP=http://127.0.0.1:$CLICKHOUSE_HTTP_PORT"
		echo "LLMTAP_REDIS_ADDR=127.0.0.1:$REDIS_PORT"
		echo "LLMTAP_UPSTREAM=$1"
		if [ "$STACK_MOCK" = 1 ]; then
			echo "LLMTAP_MOCK_URL=http://127.0.0.1:$UPSTREAM_PORT"
		fi
		echo "LLMTAP_INGEST_TOKEN=$INGEST_TOKEN"
		echo "LLMTAP_READ_TOKEN=$READ_TOKEN"
		echo "LLMTAP_ADMIN_TOKEN=$ADMIN_TOKEN"
		echo "LLMTAP_LOGS=$LLMTAP_RUN"
	} >"$f.tmp"
	mv "$f.tmp" "$f"
}

# stack_addresses UPSTREAM TENANT ADMIN [REQUEST_ID]: where everything is,
# for people, within 100 columns; UPSTREAM and ADMIN (the admin token, or
# where to find it) as they should read.
stack_addresses() {
	local c=http://127.0.0.1:$COLLECTOR_PORT ports
	printf '  %-11s %s\n' \
		"Traefik" "http://127.0.0.1:$TRAEFIK_PORT" \
		"upstream" "$1" \
		"collector" "$c/v1/requests/${4:-<X-Request-Id>} (admin token)" \
		"metrics" "$c/metrics" \
		"limits" "$c/v1/limits/$2 (admin token: $3)" \
		"ClickHouse" "127.0.0.1:$CLICKHOUSE_TCP_PORT (clickhouse-client --port $CLICKHOUSE_TCP_PORT), http://127.0.0.1:$CLICKHOUSE_HTTP_PORT" \
		"Redis" "127.0.0.1:$REDIS_PORT (redis-cli -p $REDIS_PORT)" \
		"logs" "$(relpath "$LLMTAP_RUN")/ (steps.log, and a folder per part)" \
		"env file" "$(relpath "$LLMTAP_RUN/env") (these addresses and the tokens, as LLMTAP_* lines)"
	ports="TRAEFIK_PORT=$TRAEFIK_PORT COLLECTOR_PORT=$COLLECTOR_PORT REDIS_PORT=$REDIS_PORT"
	[ "$STACK_MOCK" != 1 ] || ports+=" UPSTREAM_PORT=$UPSTREAM_PORT"
	printf '  %-11s %s\n' "ports" "$ports" \
		"" "CLICKHOUSE_TCP_PORT=$CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT=$CLICKHOUSE_HTTP_PORT (set to move them)"
}

# relpath PATH: PATH relative to the checkout when it is inside it.
relpath() {
	case $1 in
	"$ROOT"/*) echo "${1#"$ROOT"/}" ;;
	*) echo "$1" ;;
	esac
}

# random_token: 32 hex digits.
random_token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
