#!/usr/bin/env bash
# Shared by the shell test scripts (test-infra.sh, test-stack.sh): check
# runs one named check and counts it; the scripts end with
#   echo "NAME: $passed passed, $failed failed"; [ "$failed" -eq 0 ]

passed=0
failed=0
# check NAME CMD...: runs CMD quietly; shows the end of its output only
# when it fails.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		printf 'ok   %s\n' "$name"
	else
		failed=$((failed + 1))
		printf 'FAIL %s\n' "$name"
		[ -z "$out" ] || printf '%s\n' "$out" | tail -n 30 | sed 's/^/     /'
	fi
}
