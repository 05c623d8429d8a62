#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs Debian's ClickHouse 18.16 server as a plain background process (not a
# system service) on loopback, with a config of our own and every file under
# $LLMTAP_RUN/clickhouse, so tests never touch /etc or /var/lib.
#   scripts/clickhouse.sh start|stop|status
# Ports: CLICKHOUSE_TCP_PORT (native, default 19000), CLICKHOUSE_HTTP_PORT
# (default 18123).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

TCP_PORT=${CLICKHOUSE_TCP_PORT:-19000}
HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-18123}
# TLS: with CLICKHOUSE_TLS_CERT and CLICKHOUSE_TLS_KEY (PEM files), the
# native protocol is also served over TLS on CLICKHOUSE_TCP_SECURE_PORT.
TLS_CERT=${CLICKHOUSE_TLS_CERT:-}
TLS_KEY=${CLICKHOUSE_TLS_KEY:-}
SECURE_PORT=${CLICKHOUSE_TCP_SECURE_PORT:-}
mkdir -p "$LLMTAP_RUN/clickhouse"
# The server resolves relative paths against its own cwd: use absolute ones.
DIR=$(cd "$LLMTAP_RUN/clickhouse" && pwd)
PIDFILE=$DIR/pid
EXE=$(command -v clickhouse-server || true)

ping_http() { curl -sf --max-time 2 "http://127.0.0.1:$HTTP_PORT/ping" >/dev/null; }

write_config() {
	local d tls=""
	d=$(xml_escape "$DIR")
	if [ -n "$TLS_CERT" ]; then
		if [ -z "$TLS_KEY" ] || [ -z "$SECURE_PORT" ]; then
			die "clickhouse: CLICKHOUSE_TLS_CERT needs CLICKHOUSE_TLS_KEY and CLICKHOUSE_TCP_SECURE_PORT"
		fi
		tls="<tcp_port_secure>$SECURE_PORT</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>$(xml_escape "$TLS_CERT")</certificateFile>
            <privateKeyFile>$(xml_escape "$TLS_KEY")</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
        </server>
    </openSSL>"
	fi
	# 18.16 wants <yandex> as the root element; users_config is read
	# relative to this file's folder.
	cat >"$DIR/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$d/server.log</log>
        <errorlog>$d/error.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$TCP_PORT</tcp_port>
    <http_port>$HTTP_PORT</http_port>
    $tls
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <!-- The stock config reserves 5 GiB of mark cache and 8 GiB of
         uncompressed cache: too much for a 2-core test machine. -->
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
EOF
	# LowCardinality(String) is still experimental in 18.16: the default
	# profile turns it on so every session can use it.
	cat >"$DIR/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

start() {
	local pid port
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		log "clickhouse already running (pid $pid)"
		return 0
	fi
	[ -n "$EXE" ] || die "clickhouse-server not found: run scripts/install.sh"
	command -v curl >/dev/null || die "curl not found: run scripts/install.sh"
	rm -f "$PIDFILE"
	# Fail clearly rather than have the ping below answered by someone else.
	for port in "$TCP_PORT" "$HTTP_PORT"; do
		! port_in_use "$port" || die "clickhouse: port 127.0.0.1:$port is already in use"
	done
	mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/format_schemas"
	write_config
	# Fresh logs of errors, so a failure below shows this attempt's only.
	: >"$DIR/error.log"
	: >"$DIR/stdout.log"
	# 18.16 has no "clickhouse server" multi-tool; the server binary takes
	# the config path and stays in the foreground without --daemon.
	"$EXE" --config-file="$DIR/config.xml" </dev/null >>"$DIR/stdout.log" 2>&1 &
	echo $! >"$PIDFILE"
	await_start clickhouse "$PIDFILE" "$EXE" ping_http "$DIR/error.log" "$DIR/server.log" "$DIR/stdout.log"
	log "clickhouse running (pid $(cat "$PIDFILE"), tcp 127.0.0.1:$TCP_PORT, http 127.0.0.1:$HTTP_PORT)"
}

# conf KEY: the value of <KEY> in the config the server was started with.
conf() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$DIR/config.xml" 2>/dev/null; }

stop() { stop_service clickhouse "$PIDFILE" "$EXE"; }

status() {
	local pid
	if pid=$(pid_of "$PIDFILE" "$EXE"); then
		echo "clickhouse running (pid $pid, tcp $(conf tcp_port), http $(conf http_port), dir $DIR)"
	else
		echo "clickhouse not running"
		return 3
	fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac
