#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs a pinned Go tool once into $LLMTAP_CACHE/tools/NAME-VERSION/ and
# prints the binary's path; later calls only print it. A version bump in
# lib.sh gets a new folder, so a stale binary is never reused.
#   scripts/tools.sh yaegi|golangci-lint
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

name=${1:-}
case $name in
yaegi)
	pkg=github.com/traefik/yaegi/cmd/yaegi
	version=$YAEGI_VERSION
	;;
golangci-lint)
	pkg=github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	version=$GOLANGCI_LINT_VERSION
	;;
*) die "tools.sh: unknown tool '$name' (known: yaegi, golangci-lint)" ;;
esac

dir=$LLMTAP_CACHE/tools/$name-$version
bin=$dir/$name
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || die "go is not installed"
log "installing $name $version (first time only)"
# Build into a scratch folder and move the binary in at the end, so an
# interrupted install never leaves a half-written tool that looks cached.
mkdir -p "$LLMTAP_CACHE/tools"
tmp=$(mktemp -d "$LLMTAP_CACHE/tools/.$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# pkg@version ignores the checkout's go.mod; clearing GOFLAGS keeps a
# caller's -mod=... from breaking that build.
GOFLAGS='' GOBIN=$tmp go install "$pkg@$version" >&2
mkdir -p "$dir"
mv -f "$tmp/$name" "$bin"
echo "$bin"
