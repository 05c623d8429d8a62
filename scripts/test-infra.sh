#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Self-check of the real-infrastructure scripts, run by `make test`: installs
# the packages, starts ClickHouse, Redis and Prometheus in a scratch run
# folder on free ports (so a developer's own instances are left alone), runs
# real queries, stops them and checks that nothing is left running. Whatever happens, what
# it started is stopped (trap). Last line: "infra: N passed, M failed".
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# shellcheck source=test-lib.sh
source "$(dirname "$0")/test-lib.sh"

LLMTAP_RUN=$(mktemp -d "${TMPDIR:-/tmp}/llmtap-infra.XXXXXX")
export LLMTAP_RUN
mapfile -t ports < <(free_ports 4) || die "no free ports"
CLICKHOUSE_TCP_PORT=${ports[0]} CLICKHOUSE_HTTP_PORT=${ports[1]} REDIS_PORT=${ports[2]} PROMETHEUS_PORT=${ports[3]}
export CLICKHOUSE_TCP_PORT CLICKHOUSE_HTTP_PORT REDIS_PORT PROMETHEUS_PORT
PROM_PID=$LLMTAP_RUN/prometheus/pid

CH_PID=$LLMTAP_RUN/clickhouse/pid
REDIS_PID=$LLMTAP_RUN/redis/pid

cleanup() {
	bash "$ROOT/scripts/clickhouse.sh" stop >/dev/null 2>&1 || true
	bash "$ROOT/scripts/redis.sh" stop >/dev/null 2>&1 || true
	bash "$ROOT/scripts/prometheus.sh" stop >/dev/null 2>&1 || true
	finish_run
}
on_exit cleanup

ch() { timeout 30 clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" "$@"; }
rc() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# expect WANT CMD...: CMD must print exactly WANT.
expect() {
	local want=$1 got
	shift
	got=$("$@") || return 1
	[ "$got" = "$want" ] || { echo "want '$want', got '$got'"; return 1; }
}

# same_pid FILE NAME [ARG]: a second start of NAME must keep the pid of the
# first.
same_pid() {
	local before
	before=$(cat "$1") || return 1
	bash "$ROOT/scripts/$2.sh" start "${@:3}" || return 1
	expect "$before" cat "$1"
}

ch_version() {
	local v
	v=$(ch -q 'SELECT version()') || return 1
	echo "version $v"
	[[ $v =~ ^[0-9]+\. ]]
}

ch_table() {
	ch -q 'CREATE TABLE default.infra_check (ts DateTime, model LowCardinality(String), tokens UInt32)
		ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (model, ts)' || return 1
	ch -q "INSERT INTO default.infra_check (ts, model, tokens) VALUES
		('2024-01-01 00:00:00', 'gpt', 10), ('2024-01-01 00:00:01', 'claude', 20), ('2024-02-01 00:00:00', 'gpt', 30)" || return 1
	expect 3 ch -q 'SELECT count() FROM default.infra_check' || return 1
	expect 60 ch -q 'SELECT sum(tokens) FROM default.infra_check' || return 1
	# The data must live in the run folder, not in /var/lib/clickhouse.
	[ -d "$LLMTAP_RUN/clickhouse/data/data/default/infra_check" ]
}

redis_set_get() {
	expect OK rc SET llmtap:infra-check hello || return 1
	expect hello rc GET llmtap:infra-check
}

# stopped NAME PIDFILE PORT...: stop ends the process, drops the pid file
# and frees the ports.
stopped() {
	local name=$1 file=$2 pid port
	shift 2
	pid=$(cat "$file") || return 1
	bash "$ROOT/scripts/$name.sh" stop || return 1
	pid_gone "$pid" || { echo "pid $pid still running"; return 1; }
	[ ! -e "$file" ] || { echo "$file still there"; return 1; }
	for port in "$@"; do
		! port_in_use "$port" || { echo "port $port still open"; return 1; }
	done
	# The server's zombie lingers until init reaps it (about 1.5 s in this
	# sandbox); wait a little so `pgrep` afterwards shows nothing.
	wait_for 5 reaped "$pid" || true
}

reaped() { ! kill -0 "$1" 2>/dev/null; }

# Prometheus is configured to scrape itself every second; prom_scrapes_itself
# waits for a sample of its own `up`.
prom_config() {
	cat >"$LLMTAP_RUN/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ['127.0.0.1:$PROMETHEUS_PORT']
YAML
}
prom_start() { prom_config && bash "$ROOT/scripts/prometheus.sh" start "$LLMTAP_RUN/prometheus.yml"; }
prom_up() {
	curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=up%7Bjob%3D%22self%22%7D" | grep -q '"value":\[[0-9.]*,"1"\]'
}
prom_scrapes_itself() { wait_for 15 prom_up; }

check "install.sh: packages present" bash "$ROOT/scripts/install.sh"
check "clickhouse: start (tcp $CLICKHOUSE_TCP_PORT, http $CLICKHOUSE_HTTP_PORT)" bash "$ROOT/scripts/clickhouse.sh" start
check "clickhouse: second start is a no-op" same_pid "$CH_PID" clickhouse
check "clickhouse: status" bash "$ROOT/scripts/clickhouse.sh" status
check "clickhouse: SELECT version()" ch_version
# 18.16 prints DateTime 0 as 0000-00-00 00:00:00: use another instant.
check "clickhouse: server time zone is UTC" expect '1970-01-01 01:00:00' ch -q 'SELECT toString(toDateTime(3600))'
check "clickhouse: MergeTree table with LowCardinality, insert, count" ch_table
check "redis: start (port $REDIS_PORT)" bash "$ROOT/scripts/redis.sh" start
check "redis: second start is a no-op" same_pid "$REDIS_PID" redis
check "redis: SET/GET" redis_set_get
check "prometheus: start (port $PROMETHEUS_PORT)" prom_start
check "prometheus: second start is a no-op" same_pid "$PROM_PID" prometheus "$LLMTAP_RUN/prometheus.yml"
check "prometheus: scrapes a target (up == 1)" prom_scrapes_itself
check "prometheus: stop leaves no process" stopped prometheus "$PROM_PID" "$PROMETHEUS_PORT"
check "clickhouse: stop leaves no process" stopped clickhouse "$CH_PID" "$CLICKHOUSE_TCP_PORT" "$CLICKHOUSE_HTTP_PORT"
check "redis: stop leaves no process" stopped redis "$REDIS_PID" "$REDIS_PORT"
check "clickhouse: stop when stopped is a no-op" bash "$ROOT/scripts/clickhouse.sh" stop
check "redis: stop when stopped is a no-op" bash "$ROOT/scripts/redis.sh" stop

echo "infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
