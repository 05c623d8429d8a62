package provider_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/stream"
)

var fuzzPaths = []string{
	"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
	"/api/chat", "/api/generate", "/openai/deployments/d/chat/completions", "/v1/audio/speech", "/",
}

// FuzzUsage feeds arbitrary bytes as a JSON body and as SSE and NDJSON
// events, on every path: nothing may panic, and a Usage must be coherent.
func FuzzUsage(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "*.*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range fuzzPaths {
			for _, r := range []provider.Response{
				{Path: path, RequestBody: body, Kind: collector.KindJSON, Body: body},
				{Path: path, RequestBody: body, Kind: collector.KindSSE, Body: body, Events: stream.ParseSSE(body)},
				{Path: path, RequestBody: body, Kind: collector.KindNDJSON, Body: body, Events: stream.ParseNDJSON(body)},
			} {
				checkUsage(t, provider.Usage(r))
				provider.Output(r)
				provider.StreamEnded(r.Events)
				prov, _ := provider.Detect(r)
				for _, e := range r.Events {
					provider.ContentBearing(prov, e)
				}
			}
		}
	})
}

// checkUsage: counts are never negative; "none" comes with a reason and no
// counts; any other source comes with input or output.
func checkUsage(t *testing.T, u collector.Usage) {
	t.Helper()
	for _, n := range []*int64{u.Input, u.Output, u.CacheRead, u.CacheWrite, u.Reasoning} {
		if n != nil && *n < 0 {
			t.Fatalf("negative count in %s", fmtUsage(u))
		}
	}
	if u.Source == "" {
		t.Fatalf("no source in %s", fmtUsage(u))
	}
	hasCounts := u.Input != nil || u.Output != nil
	if u.Source == provider.SourceNone && (hasCounts || u.Missing == "") || u.Source != provider.SourceNone && !hasCounts {
		t.Fatalf("incoherent %s", fmtUsage(u))
	}
	if u.CacheWrite1h != nil && (u.CacheWrite == nil || *u.CacheWrite1h > *u.CacheWrite) {
		t.Fatalf("1-hour cache writes without or past the writes: %s", fmtUsage(u))
	}
	if u.Input != nil && u.CacheRead != nil && u.CacheWrite != nil && strings.HasPrefix(u.Source, "anthropic") && *u.Input < *u.CacheRead+*u.CacheWrite {
		t.Fatalf("anthropic input below its cached parts: %s", fmtUsage(u))
	}
}
