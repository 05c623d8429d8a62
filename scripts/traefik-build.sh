#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the real Traefik binary from its Go module (recipe: shared/INFRA.md)
# and caches it by version, so only the first run pays the ~8 min build.
# Prints the binary's path.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

bin=$LLMTAP_CACHE/traefik-$TRAEFIK_VERSION
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || die "go is not installed"
log "building traefik $TRAEFIK_VERSION (first time only, about 8 minutes)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$ROOT/tools/traefik/go.mod" "$ROOT/tools/traefik/tools.go" "$work/"
cd "$work" || exit 1
GOFLAGS=-mod=mod go mod download github.com/traefik/traefik/v3
moddir=$(GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' github.com/traefik/traefik/v3)
# Traefik's own go.sum pins its whole dependency graph.
cp "$moddir/go.sum" go.sum
chmod u+w go.sum
mkdir -p "$LLMTAP_CACHE"
GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/traefik/traefik/v3/cmd/traefik
mv "$bin.tmp" "$bin"
echo "$bin"
