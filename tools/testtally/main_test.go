package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestTallyDir(t *testing.T) {
	got, err := tallyDir("testdata/runs")
	if err != nil {
		t.Fatal(err)
	}
	want := tally{
		"unit: github.com/llmtap/llmtap/mock TestMaxTruths":      {pass: 2},
		"unit: github.com/llmtap/llmtap/mock TestTruthCancelled": {pass: 1, fail: 1},
		"unit: github.com/llmtap/llmtap/mock (package)":          {pass: 1, fail: 1},
		"unit (exit status)":       {pass: 1, fail: 1},
		"yaegi: TestCapture":       {pass: 1},
		"yaegi: TestCapture/flush": {fail: 1},
		"stack: make up on free ports (Traefik N, collector N)": {pass: 2},
		"stack: scripts/down.sh stops all N parts":              {pass: 1, fail: 1},
	}
	if !reflect.DeepEqual(got, want) {
		for name, c := range got {
			t.Logf("%s: %+v", name, *c)
		}
		t.Fatalf("tally differs from the %d tests wanted", len(want))
	}
	if got.failures() != 5 {
		t.Errorf("failures %d, want 5", got.failures())
	}
	var out strings.Builder
	got.print(&out)
	for _, line := range []string{
		"     1      1  stack: scripts/down.sh stops all N parts",
		"8 tests, 14 runs: 9 passed, 5 failed",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
	if strings.Contains(out.String(), "TestMaxTruths") {
		t.Errorf("output lists a test that never failed:\n%s", out.String())
	}
}
