package derive

import (
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/pricing"
	"github.com/llmtap/llmtap/collector/tokens"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// BenchmarkDecodeAndDerive: what the collector spends per record before
// storage, for a 40-chunk stream: the wire record decoded as ingest
// decodes it (goccy/go-json, see http.decode), then derived. "provider"
// streams carry their usage ("+priced" also prices them: pricing's
// cost); "estimated" ones do not, so both their counts are estimated: the
// pair is estimation's cost.
func BenchmarkDecodeAndDerive(b *testing.B) {
	counter, err := tokens.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	table, err := pricing.Default()
	if err != nil {
		b.Fatal(err)
	}
	pricer := pricing.New(table, pricing.Config{})
	for _, bc := range []struct {
		name   string
		tail   []string
		derive func(*llmtap.Record) *collector.Fact
	}{
		{"provider", []string{openAIStream[3], openAIStream[4], openAIStream[5]}, New(Steps{Counter: counter})},
		{"provider+priced", []string{openAIStream[3], openAIStream[4], openAIStream[5]}, New(Steps{Counter: counter, Pricer: pricer})},
		{"estimated", []string{openAIStream[3], openAIStream[5]}, New(Steps{Counter: counter})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			events := []string{openAIStream[0]}
			for i := 0; i < 40; i++ {
				events = append(events, openAIStream[1])
			}
			events = append(events, bc.tail...)
			times := make([]int64, len(events))
			for i := range times {
				times[i] = int64(i)
			}
			line, _ := json.Marshal(sseRecord(events, times))
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				var r llmtap.Record
				if err := gojson.Unmarshal(line, &r); err != nil {
					b.Fatal(err)
				}
				if f := bc.derive(&r); f.Usage.Output == nil {
					b.Fatal("no output count")
				}
			}
		})
	}
}
