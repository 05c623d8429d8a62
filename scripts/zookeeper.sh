#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs Debian's ZooKeeper (3.8, package zookeeper) standalone as a plain
# background process (not a system service) on 127.0.0.1, with every file
# under $LLMTAP_RUN/zookeeper. ClickHouse needs it for replicated tables and
# ON CLUSTER statements (the cluster variant of the collector's schema).
#   scripts/zookeeper.sh start|stop|status
# Port: ZOOKEEPER_PORT (default 12181).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=${ZOOKEEPER_PORT:-12181}
mkdir -p "$LLMTAP_RUN/zookeeper"
DIR=$(cd "$LLMTAP_RUN/zookeeper" && pwd)
PIDFILE=$DIR/pid
LOGFILE=$DIR/zookeeper.log
EXE=$(command -v java || true)
# Debian's jar names its dependencies in its manifest; slf4j-simple (from
# libslf4j-java, which it depends on) gives it a log file.
JARS=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar

# srvr is one of ZooKeeper's four-letter commands; it names the server's
# mode only once the server takes sessions (ruok answers imok before: a
# client connecting then is dropped during its handshake). The inner
# script gets the port as $1, hence the single quotes.
ping_zk() {
	# shellcheck disable=SC2016
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && cat <&3' _ "$PORT" 2>/dev/null | grep -q '^Mode: standalone'
}

write_config() {
	# admin.enableServer: the admin HTTP server would take port 8080.
	cat >"$DIR/zoo.cfg" <<EOF
tickTime=2000
dataDir=$DIR/data
clientPort=$PORT
clientPortAddress=127.0.0.1
maxClientCnxns=100
admin.enableServer=false
4lw.commands.whitelist=srvr
EOF
}

start() {
	local pid
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		log "zookeeper already running (pid $pid)"
		return 0
	fi
	[ -f /usr/share/java/zookeeper.jar ] || die "zookeeper not found: run scripts/install.sh"
	[ -n "$EXE" ] || die "java not found: run scripts/install.sh"
	rm -f "$PIDFILE"
	# Fail clearly rather than have the ping below answered by someone else.
	! port_in_use "$PORT" || die "zookeeper: port 127.0.0.1:$PORT is already in use"
	mkdir -p "$DIR/data"
	write_config
	# Fresh logs, so a failure below shows this attempt's lines only.
	: >"$LOGFILE"
	: >"$DIR/stdout.log"
	# ZooKeeperServerMain is the standalone server (QuorumPeerMain would
	# be an ensemble member). A small heap: it holds a few hundred znodes.
	"$EXE" -Xms32m -Xmx256m -XX:+UseSerialGC \
		-cp "$JARS" \
		-Dorg.slf4j.simpleLogger.logFile="$LOGFILE" \
		-Dzookeeper.log.dir="$DIR" \
		org.apache.zookeeper.server.ZooKeeperServerMain "$DIR/zoo.cfg" \
		</dev/null >>"$DIR/stdout.log" 2>&1 &
	echo $! >"$PIDFILE"
	await_start zookeeper "$PIDFILE" "$EXE" ping_zk "$LOGFILE" "$DIR/stdout.log"
	log "zookeeper running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"
}

stop() { stop_service zookeeper "$PIDFILE" "$EXE"; }

status() {
	local pid
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		echo "zookeeper running (pid $pid, port $(sed -n 's/^clientPort=//p' "$DIR/zoo.cfg" 2>/dev/null), dir $DIR)"
	else
		echo "zookeeper not running"
		return 3
	fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac
