package repocheck

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Every top-level folder in git is in README's folder table, and the table
// names no folder that is gone.
func TestReadmeListsEveryFolder(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`/]+)/").FindAllStringSubmatch(string(readme), -1) {
		listed[m[1]] = true
	}
	entries, err := os.ReadDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	ignored := map[string]bool{".git": true, ".run": true, "bin": true, "plugins-local": true, "vendor": true} // .gitignore
	var missing []string
	for _, e := range entries {
		if !e.IsDir() || ignored[e.Name()] {
			continue
		}
		if !listed[e.Name()] {
			missing = append(missing, e.Name()+"/")
		}
		delete(listed, e.Name())
	}
	if len(missing) > 0 {
		t.Errorf("README.md's folder table lacks %s", strings.Join(missing, ", "))
	}
	var gone []string
	for name := range listed {
		gone = append(gone, name+"/")
	}
	sort.Strings(gone)
	if len(gone) > 0 {
		t.Errorf("README.md's folder table lists %s, which is not a top-level folder", strings.Join(gone, ", "))
	}
}
