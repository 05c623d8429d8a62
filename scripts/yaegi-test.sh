#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs the plugin's tests under Yaegi v0.16.1, the interpreter Traefik embeds.
# yaegi resolves the package through GOPATH as Traefik does, so the checkout
# is linked into a temporary GOPATH and the tests run from that path.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

yaegi=$("$ROOT/scripts/tools.sh" yaegi)
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/github.com/llmtap"
ln -s "$ROOT" "$gopath/src/github.com/llmtap/llmtap"
cd "$gopath/src/github.com/llmtap/llmtap/plugin" || exit 1
# The yaegi tag leaves out the few tests that only make sense compiled.
GOPATH=$gopath GO111MODULE=off "$yaegi" test -tags yaegi "$@" .
