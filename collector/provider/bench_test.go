package provider_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/stream"
)

// longStream repeats the content chunks of a fixture into a stream of about
// n events, as a long answer would be.
func longStream(b *testing.B, name string, n int) provider.Response {
	body, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		b.Fatal(err)
	}
	evs := stream.ParseSSE(body)
	chunk := body[evs[1].Start:evs[1].End]
	var buf bytes.Buffer
	buf.Write(body[:evs[1].End])
	for i := 0; i < n; i++ {
		buf.Write(chunk)
	}
	buf.Write(body[evs[1].End:])
	long := buf.Bytes()
	return provider.Response{Path: "/v1/chat/completions", Kind: collector.KindSSE, Body: long, Events: stream.ParseSSE(long)}
}

// BenchmarkUsageStream: a 2000-chunk chat stream whose every chunk says
// "usage":null, the worst ordinary case for the search from the end.
func BenchmarkUsageStream(b *testing.B) {
	r := longStream(b, "openai_chat/openai_chat_stream.sse", 2000)
	b.SetBytes(int64(len(r.Body)))
	for b.Loop() {
		provider.Usage(r)
	}
}

// BenchmarkUsageStreamWithoutUsage: the same without usage, which takes
// the slower path that finds out why.
func BenchmarkUsageStreamWithoutUsage(b *testing.B) {
	r := longStream(b, "openai_chat/openai_chat_stream_no_usage.sse", 2000)
	b.SetBytes(int64(len(r.Body)))
	for b.Loop() {
		provider.Usage(r)
	}
}

func BenchmarkDetectStream(b *testing.B) {
	r := longStream(b, "openai_chat/openai_chat_stream.sse", 2000)
	r.RequestBody = []byte(`{"model":"o4-mini","stream":true}`)
	for b.Loop() {
		provider.Detect(r)
	}
}
