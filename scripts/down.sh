#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make down: stops what `make up` started, from its pid files in .run/up
# ($LLMTAP_RUN/up), in order (Traefik, the mock, the collector, Redis,
# ClickHouse), and says what it stopped. Nothing else is touched: not a
# running `make demo`, not a process whose pid a stale file names. Running
# it again does nothing. The data stay in .run/up (`make clean` drops them).
# shellcheck source=stack-lib.sh
source "$(dirname "$0")/stack-lib.sh"

stack_init up
stopped=$(stack_stop)
rm -f "$LLMTAP_RUN/env"
if [ -z "$stopped" ]; then
	say "nothing was running ($(relpath "$LLMTAP_RUN"))"
	exit 0
fi
while read -r line; do say "$line"; done <<<"$stopped"
