//go:build alerts

package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The alert rules in deploy/prometheus, run by make test-alerts (promtool,
// from Debian's prometheus package, which scripts/install.sh installs):
// promtool checks the rules and the configuration and runs the rules' unit
// tests; every alert has for, a severity, a summary, a description and a
// runbook link, a test case that fires it and one that keeps it silent,
// and a section in docs/runbooks.md; every metric the rules and runbooks
// name is one the collector exports.

const (
	promDir    = "deploy/prometheus"
	rulesFile  = promDir + "/llmtap-alerts.yml"
	testsFile  = promDir + "/llmtap-alerts_test.yml"
	runbooks   = "docs/runbooks.md"
	runbookURL = "https://github.com/llmtap/llmtap/blob/main/docs/runbooks.md"
)

func TestPromtool(t *testing.T) {
	root := repoRoot(t)
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"check", "config", promDir + "/prometheus.yml"},
		{"test", "rules", testsFile},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			cmd := exec.Command("promtool", args...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// alertRule is a rule of the rules file, the fields the checks read.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	var doc struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, rulesFile), &doc); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []alertRule
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no alert", rulesFile)
	}
	return out
}

// testCases returns, per alert name, whether a case fires it and whether
// one keeps it silent (exp_alerts: []).
func testCases(t *testing.T) map[string]map[string]bool {
	var doc struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, testsFile), &doc); err != nil {
		t.Fatalf("%s: %v", testsFile, err)
	}
	cases := map[string]map[string]bool{}
	for _, tc := range doc.Tests {
		for _, a := range tc.AlertRuleTest {
			if cases[a.Alertname] == nil {
				cases[a.Alertname] = map[string]bool{}
			}
			if len(a.ExpAlerts) > 0 {
				cases[a.Alertname]["fires"] = true
			} else {
				cases[a.Alertname]["silent"] = true
			}
		}
	}
	return cases
}

func TestEveryAlertIsComplete(t *testing.T) {
	cases := testCases(t)
	headings := map[string]bool{}
	for _, line := range strings.Split(string(readFile(t, runbooks)), "\n") {
		if name, ok := strings.CutPrefix(line, "## "); ok {
			headings[name] = true
		}
	}
	for _, r := range alertRules(t) {
		t.Run(r.Alert, func(t *testing.T) {
			if r.For == "" {
				t.Error("no for:")
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("labels.severity %q is not warning or critical", s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("no annotations.%s", a)
				}
			}
			if want := runbookURL + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("annotations.runbook_url %q, want %q", r.Annotations["runbook_url"], want)
			}
			if !cases[r.Alert]["fires"] {
				t.Errorf("no test case in %s that fires it", filepath.Base(testsFile))
			}
			if !cases[r.Alert]["silent"] {
				t.Errorf("no test case in %s that keeps it silent (exp_alerts: [])", filepath.Base(testsFile))
			}
			if !headings[r.Alert] {
				t.Errorf("no heading '## %s' in %s", r.Alert, runbooks)
			}
		})
	}
}

// A test of a misspelt alert would pass without testing anything, as
// would a runbook section of a removed one.
func TestTestsAndRunbooksNameAlerts(t *testing.T) {
	names := map[string]bool{}
	for _, r := range alertRules(t) {
		names[r.Alert] = true
	}
	for name := range testCases(t) {
		if !names[name] {
			t.Errorf("%s tests %s, which is not an alert", filepath.Base(testsFile), name)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^## (Llmtap[A-Za-z0-9]*)$`).FindAllStringSubmatch(string(readFile(t, runbooks)), -1) {
		if !names[m[1]] {
			t.Errorf("%s has a section for %s, which is not an alert", runbooks, m[1])
		}
	}
}

// Every llmtap_* and gen_ai_* name in the rules and the runbooks is a
// metric of collector/metrics (a histogram's _bucket, _count and _sum
// included).
func TestAlertMetricsExist(t *testing.T) {
	root := repoRoot(t)
	srcs, err := filepath.Glob(filepath.Join(root, "collector", "metrics", "*.go"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("collector/metrics sources: %v", err)
	}
	var code strings.Builder
	for _, f := range srcs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		code.Write(b)
	}
	suffix := regexp.MustCompile(`_(bucket|count|sum)$`)
	seen := map[string]bool{}
	for _, f := range []string{rulesFile, runbooks} {
		for _, name := range regexp.MustCompile(`\b(llmtap|gen_ai)_[a-z0-9_]+`).FindAllString(string(readFile(t, f)), -1) {
			if seen[name] {
				continue
			}
			seen[name] = true
			if !strings.Contains(code.String(), `"`+name+`"`) && !strings.Contains(code.String(), `"`+suffix.ReplaceAllString(name, "")+`"`) {
				t.Errorf("%s (in %s) is not a metric of collector/metrics", name, f)
			}
		}
	}
}
