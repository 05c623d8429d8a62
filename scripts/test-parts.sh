#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs the parts of `make test` (make targets, named on the command line)
# one after the other, each to its end even when an earlier one failed, so
# that one run shows every failure; then prints each part's time and
# result, and fails when any part failed.
#
#   scripts/test-parts.sh test-unit test-yaegi ...
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1
export LC_NUMERIC=C

results=()
failed=0
all_began=$EPOCHREALTIME
for part in "$@"; do
	log "make $part"
	began=$EPOCHREALTIME
	status=0
	make --no-print-directory "$part" || status=$?
	took=$(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
	if [ "$status" -eq 0 ]; then
		results+=("$(printf '  %-18s %6s s  ok' "$part" "$took")")
	else
		failed=$((failed + 1))
		results+=("$(printf '  %-18s %6s s  FAILED (exit %d)' "$part" "$took" "$status")")
	fi
done
echo
echo "make test, each part:"
printf '%s\n' "${results[@]}"
printf '  %-18s %6s s\n' "in all" "$(awk -v a="$all_began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')"
if [ "$failed" -gt 0 ]; then
	echo "make test: $failed of $# parts failed"
	exit 1
fi
echo "make test: all $# parts passed"
