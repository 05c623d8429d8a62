# shellcheck shell=bash
# Shared settings for the scripts that install, start and stop the real parts.
# Every part writes its pid, log and data under one run folder, $LLMTAP_RUN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLMTAP_RUN=${LLMTAP_RUN:-$ROOT/.run}
LLMTAP_CACHE=${LLMTAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmtap}
LLMTAP_BIN=${LLMTAP_BIN:-$ROOT/bin}
TRAEFIK_VERSION=v3.6.12
YAEGI_VERSION=v0.16.1
GOLANGCI_LINT_VERSION=v2.15.0
export LLMTAP_RUN LLMTAP_CACHE LLMTAP_BIN TRAEFIK_VERSION YAEGI_VERSION GOLANGCI_LINT_VERSION

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian puts clickhouse-server in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds; returns 1
# when SECONDS pass first. CMD's output is discarded.
wait_for() {
	local tries=$(($1 * 10))
	shift
	until "$@" >/dev/null 2>&1; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.1
	done
}

# key_tenant KEY: the tenant the plugin names for requests with this API
# key (Authorization: Bearer KEY): "key-" and 12 hex digits of its SHA-256.
# Set a tenant's limits under this name.
key_tenant() { printf 'key-%s\n' "$(printf %s "$1" | sha256sum | cut -c1-12)"; }

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT
# (a refused connect means the port is free).
port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on now.
# It is below Linux's ephemeral range (32768 and up), so that an outgoing
# connection cannot take it between now and the server's bind.
free_port() {
	local port _
	for _ in $(seq 1 200); do
		port=$((20000 + RANDOM % 12768))
		if ! port_in_use "$port"; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# free_ports N: prints N different free ports, one per line.
free_ports() {
	local ports=" " port
	while [ "$(wc -w <<<"$ports")" -lt "$1" ]; do
		port=$(free_port) || return 1
		[[ $ports == *" $port "* ]] || ports+="$port "
	done
	tr ' ' '\n' <<<"${ports# }" | sed '/^$/d'
}

# pid_running PID [EXE]: true while PID is alive and not a zombie (an orphan
# whose reaper is slow still answers kill -0) and, when EXE is given, runs
# that program, so a recycled pid in a stale pid file is not taken for ours.
pid_running() {
	local pid=$1 exe=${2:-} state actual
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
	[ "$state" != Z ] || return 1
	if [ -n "$exe" ] && actual=$(readlink "/proc/$pid/exe" 2>/dev/null); then
		[ "${actual% (deleted)}" = "$(readlink -f "$exe")" ] || return 1
	fi
}

# pid_of FILE [EXE]: prints the pid stored in FILE if that process runs.
pid_of() {
	local pid
	[ -f "$1" ] || return 1
	pid=$(cat "$1" 2>/dev/null) || return 1
	pid_running "$pid" "${2:-}" || return 1
	echo "$pid"
}

# pid_gone PID: true once PID has exited.
pid_gone() { ! pid_running "$1"; }

# stop_pid_file FILE [EXE]: stops the process named in FILE with TERM, then
# KILL after 10 s, and removes FILE. Nothing to do when it is not running.
stop_pid_file() {
	local file=$1 exe=${2:-} pid
	if ! pid=$(pid_of "$file" "$exe"); then
		rm -f "$file"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_for 10 pid_gone "$pid"; then
		log "pid $pid did not stop in 10 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		wait_for 5 pid_gone "$pid" || die "pid $pid survived SIGKILL"
	fi
	rm -f "$file"
}

# xml_escape STRING: makes a path safe to put inside an XML element.
xml_escape() {
	local s=$1
	s=${s//&/&amp;}
	s=${s//</&lt;}
	s=${s//>/&gt;}
	printf '%s' "$s"
}

# await_start NAME PIDFILE EXE READY LOG...: waits up to 30 s for the
# process in PIDFILE to pass the check READY (a command), stopping early if
# it dies. On failure it shows the logs' last lines, stops the process and
# exits 1, so a failed start names the part and where its logs are.
await_start() {
	local name=$1 pidfile=$2 exe=$3 ready=$4 why=
	shift 4
	wait_for 30 _up_or_gone "$pidfile" "$exe" "$ready" || true
	if ! pid_of "$pidfile" "$exe" >/dev/null; then
		why="exited during start-up"
	elif ! "$ready"; then
		why="did not answer within 30 s"
	fi
	[ -n "$why" ] || return 0
	log "$name $why; last log lines:"
	tail -n 20 "$@" >&2 2>/dev/null || true
	log "$name logs: $*"
	stop_pid_file "$pidfile" "$exe"
	exit 1
}
_up_or_gone() { "$3" || ! pid_of "$1" "$2" >/dev/null; }

# stop_service NAME PIDFILE [EXE]: stops it if it runs, and says so.
stop_service() {
	if ! pid_of "$2" "${3:-}" >/dev/null; then
		rm -f "$2"
		log "$1 not running"
		return 0
	fi
	stop_pid_file "$2" "${3:-}"
	log "$1 stopped"
}
