#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Prints, for tools/yaegibench's benchmarks, what the frames of each
# interpreted function allocate per request: under Yaegi every call
# allocates a slot for each local and temporary of the function, whichever
# branch runs, and that is most of the plugin's garbage. It runs the
# benchmarks against a copy of Yaegi that counts frames
# (tools/yaegibench/testdata/frameprof.go.txt); nothing of ours is changed.
#   scripts/yaegi-frames.sh 'LLMTapFallback$|LLMTapProxied'
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

bench=${1:-LLMTapFallback\$}
bench_dir=$ROOT/tools/yaegibench
src=$(cd "$bench_dir" && go list -m -f '{{.Dir}}' github.com/traefik/yaegi)
[ -n "$src" ] || die "Yaegi's module is not in the module cache (cd tools/yaegibench && go mod download)"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
cp -r "$src" "$tmp/yaegi"
chmod -R u+w "$tmp/yaegi"
cp "$bench_dir/testdata/frameprof.go.txt" "$tmp/yaegi/interp/frameprof.go"
# Each call of an interpreted function makes its frame at one of two
# places: the call from interpreted code and the wrapper a compiled caller
# goes through.
run=$tmp/yaegi/interp/run.go
sed -i -E 's/^([[:space:]]*)([a-z]+ := newFrame\(f, len\(def\.types\), f\.runid\(\)\))$/\1recordFrame(def)\n\1\2/' "$run"
[ "$(grep -c 'recordFrame(def)' "$run")" = 2 ] || die "Yaegi's run.go is not as expected: patch the two newFrame calls by hand"
cp "$bench_dir/go.mod" "$tmp/go.mod"
cp "$bench_dir/go.sum" "$tmp/go.sum"
echo "replace github.com/traefik/yaegi => $tmp/yaegi" >>"$tmp/go.mod"
cd "$bench_dir"
go test -modfile="$tmp/go.mod" -tags yaegiframes -run '^$' -bench "$bench" -benchtime 3000x -count 1
