#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs the real Traefik with our plugins loaded from plugins-local, as users
# load them:  scripts/traefik.sh start DYNAMIC.yml | stop | status
# The plugin sources are copied from the checkout at each start (Traefik
# reads plugin code only when it starts). Entrypoint: 127.0.0.1:$TRAEFIK_PORT.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

TRAEFIK_PORT=${TRAEFIK_PORT:-18080}
dir=$LLMTAP_RUN/traefik
pidfile=$dir/pid

# install_plugin SRC MODULE FILES...: copies what the plugin catalogue ships.
install_plugin() {
	local src=$1 module=$2 dst
	shift 2
	dst=$dir/plugins-local/src/$module
	rm -rf "$dst"
	mkdir -p "$dst"
	(cd "$src" && cp --parents "$@" "$dst/")
}

start() {
	local dynamic=${1:?usage: traefik.sh start DYNAMIC.yml}
	[ -f "$dynamic" ] || die "traefik: no dynamic configuration at $dynamic"
	if pid_of "$pidfile" >/dev/null; then
		log "traefik already running (pid $(cat "$pidfile"))"
		return 0
	fi
	port_in_use "$TRAEFIK_PORT" && die "traefik: port 127.0.0.1:$TRAEFIK_PORT is already in use (set TRAEFIK_PORT)"
	local bin
	bin=$("$ROOT/scripts/traefik-build.sh")
	mkdir -p "$dir"
	local srcs=() f
	for f in "$ROOT"/plugin/*.go; do
		[[ $f == *_test.go ]] || srcs+=("plugin/${f##*/}")
	done
	install_plugin "$ROOT" github.com/llmtap/llmtap .traefik.yml go.mod "${srcs[@]}"
	install_plugin "$ROOT/bench/noop" github.com/llmtap/noop .traefik.yml go.mod noop.go
	cat >"$dir/traefik.yml" <<YAML
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ${TRAEFIK_LOG_LEVEL:-ERROR}
  filePath: $dir/traefik.log
entryPoints:
  web:
    address: 127.0.0.1:$TRAEFIK_PORT
providers:
  file:
    filename: $(readlink -f "$dynamic")
    watch: true
experimental:
  localPlugins:
    llmtap:
      moduleName: github.com/llmtap/llmtap
    noop:
      moduleName: github.com/llmtap/noop
YAML
	(cd "$dir" && exec "$bin" --configFile="$dir/traefik.yml" </dev/null >>"$dir/stdout.log" 2>&1) &
	echo $! >"$pidfile"
	await_start traefik "$pidfile" "" traefik_up "$dir/traefik.log" "$dir/stdout.log"
	log "traefik $TRAEFIK_VERSION on 127.0.0.1:$TRAEFIK_PORT (logs: $dir)"
}

traefik_up() { port_in_use "$TRAEFIK_PORT"; }

stop() { stop_service traefik "$pidfile"; }

case ${1:-} in
start) start "${2:-}" ;;
stop) stop ;;
status) pid_of "$pidfile" >/dev/null || exit 3 ;;
*) die "usage: traefik.sh start DYNAMIC.yml | stop | status" ;;
esac
