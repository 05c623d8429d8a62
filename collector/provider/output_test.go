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

// TestOutput: the generated text of recorded responses, streamed or not,
// in each format, holds what the response said.
func TestOutput(t *testing.T) {
	for _, tt := range []struct {
		file string
		want []string // in this order in the joined text
	}{
		{"openai_chat/openai_chat.json", []string{"The image shows a wooden boardwalk extending through a lush green marshland."}},
		{"openai_chat/openai_chat_stream.sse", []string{"Paris is the capital of France."}},
		{"openai_responses/openai_responses.json", []string{"The image depicts a scenic landscape"}},
		{"openai_responses/openai_responses_stream.sse", []string{"Hi there! How can I help you today?"}},
		{"anthropic_messages/anthropic_messages.json", []string{"the termination clause requires 30 days' written notice."}},
		{"anthropic_messages/anthropic_messages_stream_tools.sse", []string{`{"`}},
		{"ollama/ollama_chat.ndjson", []string{"The user greets me.", "Hello"}},
		{"ollama/ollama_generate.json", []string{"The sky is blue because of Rayleigh scattering."}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r := provider.Response{Kind: collector.KindJSON, Body: body}
			switch filepath.Ext(tt.file) {
			case ".sse":
				r = provider.Response{Kind: collector.KindSSE, Events: stream.ParseSSE(body)}
			case ".ndjson":
				r = provider.Response{Kind: collector.KindNDJSON, Events: stream.ParseNDJSON(body)}
			}
			gen := provider.Output(r)
			all := gen.Text
			at := 0
			for _, w := range tt.want {
				i := strings.Index(all[at:], w)
				if i < 0 {
					t.Fatalf("text %q lacks %q", all, w)
				}
				at += i + len(w)
				if n := strings.Count(all, w); n != 1 {
					t.Errorf("text %q has %q %d times, want once", all, w, n)
				}
			}
		})
	}
}
