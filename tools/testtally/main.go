// Command testtally counts, per test, the passes and failures in the logs
// of repeated test runs, so that a flaky test shows up as a test that both
// passed and failed. It reads the three kinds of lines this project's
// suites print:
//
//   - go test -json events (unit, integration and e2e suites);
//   - "--- PASS: Name (0.01s)" and "--- FAIL: Name" (go test -v, yaegi test -v);
//   - "ok   name" and "FAIL name" (the shell suites' check lines).
//
// Each log file is named SUITE.RUN.log (scripts/test-repeat.sh writes
// them), and a file "SUITE.RUN.exit" holding the suite's exit status counts
// as one more test, "SUITE (exit status)", so that a suite that fails
// without a failing test (a build error, a crash) is counted too. Digits in
// check names are replaced by N: they are ports and counts that differ
// from run to run.
//
//	testtally DIR
//
// Prints a table, failures first, and exits 1 when any test failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testtally DIR (the logs of scripts/test-repeat.sh)")
		os.Exit(2)
	}
	t, err := tallyDir(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "testtally:", err)
		os.Exit(2)
	}
	t.print(os.Stdout)
	if t.failures() > 0 {
		os.Exit(1)
	}
}

// counts is one test's tally.
type counts struct{ pass, fail int }

// tally maps "suite: test" to its counts.
type tally map[string]*counts

func (t tally) add(name string, passed bool) {
	c := t[name]
	if c == nil {
		c = &counts{}
		t[name] = c
	}
	if passed {
		c.pass++
	} else {
		c.fail++
	}
}

func (t tally) failures() int {
	n := 0
	for _, c := range t {
		n += c.fail
	}
	return n
}

// print writes the tests that failed at least once, then a summary of the
// others.
func (t tally) print(w io.Writer) {
	names := make([]string, 0, len(t))
	for name := range t {
		names = append(names, name)
	}
	sort.Strings(names)
	passed, runs := 0, 0
	fmt.Fprintf(w, "%6s %6s  %s\n", "passed", "failed", "test")
	for _, name := range names {
		c := t[name]
		runs += c.pass + c.fail
		passed += c.pass
		if c.fail > 0 {
			fmt.Fprintf(w, "%6d %6d  %s\n", c.pass, c.fail, name)
		}
	}
	fmt.Fprintf(w, "%d tests, %d runs: %d passed, %d failed", len(names), runs, passed, runs-passed)
	if runs == passed {
		fmt.Fprint(w, " (every test passed every time)")
	}
	fmt.Fprintln(w)
}

// tallyDir reads every SUITE.RUN.log and SUITE.RUN.exit in dir.
func tallyDir(dir string) (tally, error) {
	t := tally{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		suite, _, _ := strings.Cut(name, ".")
		path := filepath.Join(dir, name)
		switch filepath.Ext(name) {
		case ".log":
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			err = readLog(f, suite, t)
			_ = f.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		case ".exit":
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			t.add(suite+" (exit status)", strings.TrimSpace(string(b)) == "0")
		}
	}
	return t, nil
}

var (
	verboseLine = regexp.MustCompile(`^\s*--- (PASS|FAIL): (\S+)`)
	checkLine   = regexp.MustCompile(`^(ok|FAIL) {1,3}(\S.*)$`)
	goSummary   = regexp.MustCompile(`^(ok|FAIL)\s+\S+\s+(\d|\[|\(cached\))`) // go test's per-package line
	digits      = regexp.MustCompile(`[0-9]+`)
)

// event is the part of a go test -json event that matters here.
type event struct {
	Action  string
	Package string
	Test    string
}

// readLog adds the results in one suite's log to t.
func readLog(r io.Reader, suite string, t tally) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "{") {
			var e event
			if json.Unmarshal([]byte(line), &e) == nil && e.Action != "" {
				if e.Action == "pass" || e.Action == "fail" {
					name := e.Package
					if e.Test != "" {
						name += " " + e.Test
					} else {
						name += " (package)"
					}
					t.add(suite+": "+name, e.Action == "pass")
				}
				continue
			}
		}
		if m := verboseLine.FindStringSubmatch(line); m != nil {
			t.add(suite+": "+m[2], m[1] == "PASS")
			continue
		}
		if goSummary.MatchString(line) {
			continue // counted by its tests
		}
		if m := checkLine.FindStringSubmatch(line); m != nil {
			t.add(suite+": "+digits.ReplaceAllString(m[2], "N"), m[1] == "ok")
		}
	}
	return sc.Err()
}
