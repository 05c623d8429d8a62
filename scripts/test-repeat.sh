#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Flake hunt: runs the parts of `make test` N times in a row, in PARALLEL
# loops at once (2 makes a busy machine: each loop's servers, Traefiks and
# loads compete for the cores), keeps every log, then prints per test how
# often it passed and failed (tools/testtally). A test that both passed and
# failed is a flake: fix its cause.
#
#   N         runs per loop (default 3)
#   PARALLEL  loops at once (default 1)
#   PARTS     the parts, without "test-" (default: every part of make test)
#   COUNT     go test -count of the unit tests within a run (default 1;
#             COUNT=20 reruns each unit test 20 times)
#
#   make test-repeat N=3 PARALLEL=2 PARTS="integration e2e stack soak"
#   make test-repeat N=1 COUNT=20 PARTS=unit
#
# Logs in $TEST_REPEAT_DIR (default a new folder under /tmp, printed), one
# file per part and run. Exits 1 when any test failed.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1
export LC_NUMERIC=C

N=${N:-3}
PARALLEL=${PARALLEL:-1}
COUNT=${COUNT:-1}
PARTS=${PARTS:-$(make --no-print-directory -s test-parts)}
[[ $N =~ ^[1-9][0-9]*$ && $PARALLEL =~ ^[1-9][0-9]*$ && $COUNT =~ ^[1-9][0-9]*$ ]] ||
	die "N=$N PARALLEL=$PARALLEL COUNT=$COUNT: want positive whole numbers"
out=${TEST_REPEAT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/llmtap-repeat.XXXXXX")}
mkdir -p "$out"

# Installed and built once, before the loops race to do it.
"$ROOT/scripts/install.sh"
"$ROOT/scripts/traefik-build.sh" >/dev/null
"$ROOT/scripts/tools.sh" yaegi >/dev/null

# loop K: N runs of every part; logs PART.RUN-K.log, exit status in .exit.
loop() {
	local k=$1 run part began status
	for run in $(seq 1 "$N"); do
		for part in $PARTS; do
			began=$EPOCHREALTIME
			status=0
			# go test's own timeout (10 minutes a package) grows with COUNT.
			make --no-print-directory "test-$part" COUNT="$COUNT" GOTESTFLAGS="-json -timeout $((10 * COUNT))m" YAEGIFLAGS=-v \
				>"$out/$part.$run-$k.log" 2>&1 || status=$?
			echo "$status" >"$out/$part.$run-$k.exit"
			printf '  loop %d run %d/%d: %-12s %s in %s s\n' "$k" "$run" "$N" "$part" \
				"$([ "$status" -eq 0 ] && echo ok || echo "FAILED (exit $status)")" \
				"$(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')"
		done
	done
}

log "test-repeat: $N runs of [$PARTS] in $PARALLEL loop(s) at once; logs in $out"
pids=()
for k in $(seq 1 "$PARALLEL"); do
	loop "$k" &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
echo
go run ./tools/testtally "$out"
