package derive

import (
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// BenchmarkDecodeAndDerive: what the collector spends per record before
// storage, for a 40-chunk stream: the wire record decoded as ingest
// decodes it (goccy/go-json, see http.decode), then derived.
func BenchmarkDecodeAndDerive(b *testing.B) {
	events := []string{openAIStream[0]}
	for i := 0; i < 40; i++ {
		events = append(events, openAIStream[1])
	}
	events = append(events, openAIStream[4], openAIStream[5])
	times := make([]int64, len(events))
	for i := range times {
		times[i] = int64(i)
	}
	line, _ := json.Marshal(sseRecord(events, times))
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var r llmtap.Record
		if err := gojson.Unmarshal(line, &r); err != nil {
			b.Fatal(err)
		}
		Fact(&r)
	}
}
