package metrics

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryMetric: docs/collector.md's metrics table names every
// metric the collector exposes (a family, or for the storage metrics the
// llmtap_storage_ prefix and its suffix).
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/collector.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	_, families := exposedSeries(t)
	for name := range families {
		// The storage rows list their names as `_suffix` after the first.
		listed := strings.Contains(text, "`"+name+"`") ||
			strings.HasPrefix(name, "llmtap_storage_") && strings.Contains(text, "`_"+strings.TrimPrefix(name, "llmtap_storage_")+"`")
		if !listed {
			t.Errorf("docs/collector.md does not list the metric %s", name)
		}
	}
}
