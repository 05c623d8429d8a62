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

# finish_run: removes the scratch run folder when every check passed,
# else says where its logs are kept. For a script's cleanup function.
finish_run() {
	if [ "$failed" -eq 0 ]; then
		rm -rf "$LLMTAP_RUN"
	else
		log "logs kept in $LLMTAP_RUN"
	fi
}

# on_exit FUNC: runs FUNC when the script ends, after Ctrl-C or TERM too.
on_exit() {
	# shellcheck disable=SC2064 # FUNC is fixed now, on purpose
	trap "$1" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
