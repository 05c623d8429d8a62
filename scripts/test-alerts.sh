#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Tests of the Prometheus example and the alert rules in deploy/prometheus,
# run by `make test`: promtool (Debian's prometheus package, installed by
# install.sh) checks the rules and the configuration and runs the rules'
# unit tests; then every alert must have for, a severity, a summary, a
# description and a runbook link, a test case that fires it and one that
# keeps it silent, and a section in docs/runbooks.md; and every metric the
# rules and runbooks name must be one the collector exports.
# Last line: "alerts: N passed, M failed".
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# shellcheck source=test-lib.sh
source "$(dirname "$0")/test-lib.sh"

DIR=$ROOT/deploy/prometheus
RULES=$DIR/llmtap-alerts.yml
TESTS=$DIR/llmtap-alerts_test.yml
RUNBOOKS=$ROOT/docs/runbooks.md
RUNBOOK_URL=https://github.com/llmtap/llmtap/blob/main/docs/runbooks.md

check "install.sh: packages present" bash "$ROOT/scripts/install.sh"
check "promtool check rules" promtool check rules "$RULES"
# Rule files are read relative to the configuration's folder.
check "promtool check config" promtool check config "$DIR/prometheus.yml"
check "promtool test rules" promtool test rules "$TESTS"

# The files are parsed with awk (PyYAML is not always there), so they keep
# the layout they have: "- alert: Name" and one key a line.

# alert_names: the alerts of the rules file, one a line.
alert_names() { awk '/^[[:space:]]*- alert:/ {print $3}' "$RULES"; }

# rule_fields NAME: prints the keys NAME's rule has among for, severity,
# summary, description and runbook_url, with the value of the last two.
rule_fields() {
	awk -v want="$1" '
		/^[[:space:]]*- (alert|record):/ { name = ($2 == "alert:") ? $3 : ""; next }
		name != want { next }
		/^[[:space:]]+for:/ { print "for" }
		/^[[:space:]]+severity:/ { print "severity", $2 }
		/^[[:space:]]+summary:/ { print "summary" }
		/^[[:space:]]+description:/ { print "description" }
		/^[[:space:]]+runbook_url:/ { print "runbook_url", $2 }
	' "$RULES"
}

# test_cases: "NAME fires" or "NAME silent" for each alert_rule_test case:
# exp_alerts: [] keeps it silent, a list of alerts fires it.
test_cases() {
	awk '
		/^[[:space:]]*alertname:/ { name = $2; gsub(/["\047]/, "", name); next }
		/^[[:space:]]*exp_alerts:[[:space:]]*\[\][[:space:]]*$/ { if (name != "") print name, "silent"; name = ""; next }
		/^[[:space:]]*exp_alerts:[[:space:]]*$/ { open = name; name = ""; next }
		open != "" && /^[[:space:]]*$/ { next }
		open != "" { if ($1 == "-") print open, "fires"; open = "" }
	' "$TESTS"
}

# alert_ok NAME: the rule's fields, its test cases and its runbook section.
alert_ok() {
	local name=$1 fields cases lower problems=()
	fields=$(rule_fields "$name")
	cases=$(test_cases)
	lower=$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]')
	grep -qx 'for' <<<"$fields" || problems+=("no for:")
	grep -qxE 'severity (warning|critical)' <<<"$fields" || problems+=("labels.severity is not warning or critical")
	grep -qx 'summary' <<<"$fields" || problems+=("no annotations.summary")
	grep -qx 'description' <<<"$fields" || problems+=("no annotations.description")
	grep -qxF "runbook_url $RUNBOOK_URL#$lower" <<<"$fields" ||
		problems+=("annotations.runbook_url is not $RUNBOOK_URL#$lower")
	grep -qxF "$name fires" <<<"$cases" || problems+=("no test case in $(basename "$TESTS") that fires it")
	grep -qxF "$name silent" <<<"$cases" || problems+=("no test case in $(basename "$TESTS") that keeps it silent (exp_alerts: [])")
	grep -qxF "## $name" "$RUNBOOKS" || problems+=("no heading '## $name' in docs/runbooks.md")
	[ ${#problems[@]} -eq 0 ] || { printf '%s\n' "${problems[@]}"; return 1; }
}

# tested_alerts_exist: a test of a misspelt alert would pass without
# testing anything, as would a runbook section of a removed one.
tested_alerts_exist() {
	local names name bad=0
	names=$(alert_names)
	while read -r name _; do
		grep -qxF "$name" <<<"$names" || { echo "$(basename "$TESTS") tests $name, which is not an alert"; bad=1; }
	done < <(test_cases | sort -u)
	while read -r name; do
		grep -qxF "$name" <<<"$names" || { echo "docs/runbooks.md has a section for $name, which is not an alert"; bad=1; }
	done < <(sed -n 's/^## \(Llmtap[A-Za-z0-9]*\)$/\1/p' "$RUNBOOKS")
	return "$bad"
}

# metrics_exist: every llmtap_* and gen_ai_* name in the rules and the
# runbooks is a metric of collector/metrics (a histogram's _bucket, _count
# and _sum included).
metrics_exist() {
	local name base bad=0
	while read -r name; do
		base=$(sed -E 's/_(bucket|count|sum)$//' <<<"$name")
		grep -qF "\"$name\"" "$ROOT"/collector/metrics/*.go ||
			grep -qF "\"$base\"" "$ROOT"/collector/metrics/*.go ||
			{ echo "$name is not a metric of collector/metrics"; bad=1; }
	done < <(grep -ohE '\b(llmtap|gen_ai)_[a-z0-9_]+' "$RULES" "$RUNBOOKS" | sort -u)
	return "$bad"
}

alerts=$(alert_names)
if [ -z "$alerts" ]; then
	check "rules: at least one alert" false
fi
for name in $alerts; do
	check "$name: rule fields, a firing and a silent test, runbook section" alert_ok "$name"
done
check "tests and runbook sections name existing alerts" tested_alerts_exist
check "metrics in the rules and runbooks are the collector's" metrics_exist

echo "alerts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
