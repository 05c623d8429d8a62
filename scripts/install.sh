#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs the Debian packages that the real-infrastructure tests run:
# ClickHouse 18.16 server and client, Redis, Prometheus (for promtool),
# ZooKeeper (the ClickHouse cluster test), wrk, curl (the ClickHouse
# start-up check) and shellcheck (make lint). Idempotent: a package whose
# command is already there is skipped, and apt-get update runs only when
# something is missing. Works as root or through sudo.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# command that proves a package is installed -> Debian package
declare -A PACKAGES=(
	[clickhouse-server]=clickhouse-server
	[clickhouse-client]=clickhouse-client
	[redis-server]=redis-server
	[redis-cli]=redis-tools
	[promtool]=prometheus
	# ZooKeeper puts no command on PATH; zooinspector comes with it.
	[zooinspector]=zookeeper
	[wrk]=wrk
	[curl]=curl
	[shellcheck]=shellcheck
)

missing=()
for cmd in "${!PACKAGES[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
if [ ${#missing[@]} -eq 0 ]; then
	log "install: all packages present"
	exit 0
fi
# Stable order for the log line and apt.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} as root"
	sudo=(sudo)
fi

aptlog=$(mktemp)
trap 'rm -f "$aptlog"' EXIT
apt_get() {
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$aptlog" 2>&1; then
		tail -n 30 "$aptlog" >&2
		die "apt-get $1 failed"
	fi
}

log "install: apt-get update"
apt_get update -q
log "install: ${missing[*]}"
apt_get install -y -q --no-install-recommends "${missing[@]}"

for cmd in "${!PACKAGES[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || die "install: $cmd still missing after installing ${PACKAGES[$cmd]}"
done
log "install: done"
