package provider_test

import (
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
)

func TestDetectCases(t *testing.T) {
	tests := []struct {
		desc      string
		r         provider.Response
		wantProv  string
		wantModel string
	}{
		{
			desc:     "tts: no body, openai by model name",
			r:        provider.Response{Path: "/v1/audio/speech", Kind: collector.KindRaw, RequestBody: []byte(`{"model":"gpt-4o-mini-tts","input":"Hello","voice":"coral"}`)},
			wantProv: "openai", wantModel: "gpt-4o-mini-tts",
		},
		{
			desc: "request body cut after model, messages first",
			r: provider.Response{Path: "/v1/chat/completions", Kind: collector.KindJSON,
				RequestBody: []byte(`{"messages":[{"role":"user","content":"hi"}],"model":"o3","tools":[{"type":"func`)},
			wantProv: "openai", wantModel: "o3",
		},
		{
			desc: "request body cut before model",
			r: provider.Response{Path: "/v1/chat/completions", Kind: collector.KindJSON,
				RequestBody: []byte(`{"messages":[{"role":"user","content":"a long prompt`)},
			wantProv: "openai-compatible", wantModel: "",
		},
		{
			desc: "request model when the response names none",
			r: provider.Response{Path: "/v1/chat/completions", Kind: collector.KindJSON, RequestBody: []byte(`{"model":"mistral-large-latest"}`),
				Body: []byte(`{"object":"chat.completion","choices":[]}`)},
			wantProv: "openai-compatible", wantModel: "mistral-large-latest",
		},
		{
			desc: "gpt-oss served by an unmarked server",
			r: provider.Response{Path: "/v1/chat/completions", Kind: collector.KindJSON, RequestBody: []byte(`{"model":"gpt-oss-120b"}`),
				Body: []byte(`{"id":"chatcmpl-abc","object":"chat.completion","model":"gpt-oss-120b","choices":[]}`)},
			wantProv: "openai-compatible", wantModel: "gpt-oss-120b",
		},
		{
			desc:     "azure by path alone",
			r:        provider.Response{Path: "/openai/deployments/my-gpt/chat/completions", Kind: collector.KindJSON, Body: []byte(`{"error":{"code":"429"}}`)},
			wantProv: "azure", wantModel: "",
		},
		{
			desc: "anthropic by stream shape on an unknown path",
			r: named("/proxy/claude",
				"message_start", `{"type":"message_start","message":{"id":"msg_1","model":"claude-opus-4-1-20250805","usage":{"input_tokens":1}}}`),
			wantProv: "anthropic", wantModel: "claude-opus-4-1-20250805",
		},
		{
			desc: "ollama by NDJSON on an unknown path",
			r: provider.Response{Path: "/generate", Kind: collector.KindNDJSON,
				Body: []byte(`{"model":"llama3.2","created_at":"2025-06-18T10:22:11Z","response":"Hi","done":false}` + "\n")},
			wantProv: "ollama", wantModel: "llama3.2",
		},
		{
			desc:     "unknown path and body",
			r:        provider.Response{Path: "/health", Kind: collector.KindOther, Body: []byte("ok")},
			wantProv: "unknown", wantModel: "",
		},
		{
			desc:     "not json request",
			r:        provider.Response{Path: "/v1/audio/transcriptions", Kind: collector.KindJSON, RequestBody: []byte("--boundary\r\nContent-Disposition: form-data"), Body: []byte(`{"text":"hi"}`)},
			wantProv: "openai-compatible", wantModel: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if tt.r.Events == nil && tt.r.Kind == collector.KindSSE {
				tt.r.Events = parse(tt.r)
			}
			prov, model := provider.Detect(tt.r)
			if prov != tt.wantProv || model != tt.wantModel {
				t.Errorf("Detect = %q, %q, want %q, %q", prov, model, tt.wantProv, tt.wantModel)
			}
		})
	}
}
