#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs Debian's Prometheus as a plain background process on 127.0.0.1, with
# a configuration given at start and its data under $LLMTAP_RUN/prometheus.
#   scripts/prometheus.sh start CONFIG.yml|stop|status
# The configuration's rule_files are read relative to its own folder.
# Port: PROMETHEUS_PORT (default 19090).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=${PROMETHEUS_PORT:-19090}
mkdir -p "$LLMTAP_RUN/prometheus"
DIR=$(cd "$LLMTAP_RUN/prometheus" && pwd)
PIDFILE=$DIR/pid
LOGFILE=$DIR/prometheus.log
EXE=$(command -v prometheus || true)

ready() { curl -sf --max-time 2 "http://127.0.0.1:$PORT/-/ready" >/dev/null; }

start() {
	local config=${1:?usage: prometheus.sh start CONFIG.yml} pid
	[ -f "$config" ] || die "prometheus: no configuration at $config"
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		log "prometheus already running (pid $pid)"
		return 0
	fi
	[ -n "$EXE" ] || die "prometheus not found: run scripts/install.sh"
	command -v promtool >/dev/null || die "promtool not found: run scripts/install.sh"
	promtool check config "$config" >"$DIR/check.log" 2>&1 ||
		die "prometheus: $config is not a valid configuration: $(tail -n 3 "$DIR/check.log")"
	rm -f "$PIDFILE"
	! port_in_use "$PORT" || die "prometheus: port 127.0.0.1:$PORT is already in use (set PROMETHEUS_PORT)"
	echo "$PORT" >"$DIR/port"
	: >"$LOGFILE"
	"$EXE" --config.file="$(readlink -f "$config")" --storage.tsdb.path="$DIR/data" \
		--web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle \
		</dev/null >>"$LOGFILE" 2>&1 &
	echo $! >"$PIDFILE"
	await_start prometheus "$PIDFILE" "$EXE" ready "$LOGFILE"
	log "prometheus running (pid $(cat "$PIDFILE"), http://127.0.0.1:$PORT)"
}

stop() { stop_service prometheus "$PIDFILE" "$EXE"; }

status() {
	local pid
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		echo "prometheus running (pid $pid, port $(cat "$DIR/port" 2>/dev/null), dir $DIR)"
	else
		echo "prometheus not running"
		return 3
	fi
}

case ${1:-} in
start) start "${2:-}" ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start CONFIG.yml|stop|status" ;;
esac
