#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs Debian's redis-server as a plain background process (not a system
# service) on 127.0.0.1, with no persistence and every file under
# $LLMTAP_RUN/redis.
#   scripts/redis.sh start|stop|status
# Port: REDIS_PORT (default 16379). With REDIS_TLS_CERT and REDIS_TLS_KEY
# (PEM files), the port speaks TLS only (clients need no certificate).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=${REDIS_PORT:-16379}
mkdir -p "$LLMTAP_RUN/redis"
DIR=$(cd "$LLMTAP_RUN/redis" && pwd)
PIDFILE=$DIR/pid
LOGFILE=$DIR/redis.log
EXE=$(command -v redis-server || true)

TLS_CERT=${REDIS_TLS_CERT:-}
TLS_KEY=${REDIS_TLS_KEY:-}
cli_tls=()
[ -z "$TLS_CERT" ] || cli_tls=(--tls --insecure)

ping_redis() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" "${cli_tls[@]}" ping 2>/dev/null)" = PONG ]; }

start() {
	local pid
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		log "redis already running (pid $pid)"
		return 0
	fi
	[ -n "$EXE" ] || die "redis-server not found: run scripts/install.sh"
	command -v redis-cli >/dev/null || die "redis-cli not found: run scripts/install.sh"
	rm -f "$PIDFILE"
	# Fail clearly rather than have the ping below answered by someone else.
	! port_in_use "$PORT" || die "redis: port 127.0.0.1:$PORT is already in use"
	echo "$PORT" >"$DIR/port"
	# Fresh logs, so a failure below shows this attempt's lines only.
	: >"$LOGFILE"
	: >"$DIR/stdout.log"
	# --daemonize no keeps $! the server's own pid; --save '' and
	# --appendonly no: test data need not outlive the process.
	local ports=(--port "$PORT")
	if [ -n "$TLS_CERT" ]; then
		ports=(--port 0 --tls-port "$PORT" --tls-cert-file "$TLS_CERT" --tls-key-file "$TLS_KEY" --tls-auth-clients no)
	fi
	"$EXE" "${ports[@]}" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize no --dir "$DIR" --logfile "$LOGFILE" \
		</dev/null >>"$DIR/stdout.log" 2>&1 &
	echo $! >"$PIDFILE"
	await_start redis "$PIDFILE" "$EXE" ping_redis "$LOGFILE" "$DIR/stdout.log"
	log "redis running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"
}

stop() { stop_service redis "$PIDFILE" "$EXE"; }

status() {
	local pid
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		echo "redis running (pid $pid, port $(cat "$DIR/port" 2>/dev/null), dir $DIR)"
	else
		echo "redis not running"
		return 3
	fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac
