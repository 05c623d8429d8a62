#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs Debian's redis-server as a plain background process (not a system
# service) on 127.0.0.1, with no persistence and every file under
# $LLMTAP_RUN/redis.
#   scripts/redis.sh start|stop|status
# Port: REDIS_PORT (default 16379).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=${REDIS_PORT:-16379}
mkdir -p "$LLMTAP_RUN/redis"
DIR=$(cd "$LLMTAP_RUN/redis" && pwd)
PIDFILE=$DIR/pid
LOGFILE=$DIR/redis.log
EXE=$(command -v redis-server || true)

ping_redis() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; }

# up_or_gone: stops the start-up wait early when the server has died.
up_or_gone() { ping_redis || ! pid_of "$PIDFILE" "$EXE" >/dev/null; }

start() {
	local pid why
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
	"$EXE" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize no --dir "$DIR" --logfile "$LOGFILE" \
		</dev/null >>"$DIR/stdout.log" 2>&1 &
	echo $! >"$PIDFILE"
	wait_for 30 up_or_gone || true
	why=
	if ! pid_of "$PIDFILE" "$EXE" >/dev/null; then
		why="exited during start-up"
	elif ! ping_redis; then
		why="did not answer on 127.0.0.1:$PORT within 30 s"
	fi
	if [ -n "$why" ]; then
		log "redis $why; last log lines:"
		tail -n 20 "$LOGFILE" "$DIR/stdout.log" >&2 2>/dev/null || true
		log "logs: $LOGFILE $DIR/stdout.log"
		stop_pid_file "$PIDFILE" "$EXE"
		exit 1
	fi
	log "redis running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"
}

stop() {
	if ! pid_of "$PIDFILE" "$EXE" >/dev/null; then
		rm -f "$PIDFILE"
		log "redis not running"
		return 0
	fi
	stop_pid_file "$PIDFILE" "$EXE"
	log "redis stopped"
}

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
