#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs chDB, the current ClickHouse engine as a library (libchdb.so,
# from the npm package that ships it for linux-x64), and caches it by
# version. The collector's chdb tests load it in process: Debian's
# clickhouse-server is 18.16, and users run current servers. Prints the
# library's path.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

dir=$LLMTAP_CACHE/chdb-$CHDB_VERSION
lib=$dir/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so
if [ -f "$lib" ]; then echo "$lib"; exit 0; fi

command -v npm >/dev/null || die "npm is not installed (Debian: apt-get install npm)"
log "installing chdb $CHDB_VERSION (first time only)"
mkdir -p "$LLMTAP_CACHE"
tmp=$(mktemp -d "$LLMTAP_CACHE/.chdb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error "chdb@$CHDB_VERSION" >&2
[ -f "$tmp/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so" ] || die "chdb $CHDB_VERSION installed no libchdb.so for linux-x64"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "$lib"
