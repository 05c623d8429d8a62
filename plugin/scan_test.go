package llmtap

import (
	"strings"
	"testing"
)

func TestScanBody(t *testing.T) {
	tests := []struct {
		desc        string
		body        string
		wantModel   string
		wantReserve int64
	}{
		{desc: "openai chat", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":256}`, wantModel: "gpt-4o", wantReserve: 256},
		{desc: "spaces and newlines", body: "{\n  \"model\" :\t\"llama3\" ,\n  \"max_completion_tokens\" : \r\n 1024\n}", wantModel: "llama3", wantReserve: 1024},
		{desc: "preferred key wins over an earlier one", body: `{"max_tokens":10,"model":"m","max_completion_tokens":20}`, wantModel: "m", wantReserve: 20},
		{desc: "responses api", body: `{"model":"o3","input":"x","max_output_tokens":5000}`, wantModel: "o3", wantReserve: 5000},
		{desc: "ollama options", body: `{"model":"qwen2:7b","options":{"temperature":0,"num_predict":128}}`, wantModel: "qwen2:7b", wantReserve: 128},
		{desc: "no bound", body: `{"model":"gpt-4o-mini","stream":true}`, wantModel: "gpt-4o-mini"},
		{desc: "zero bound", body: `{"model":"m","max_tokens":0}`, wantModel: "m"},
		{desc: "nothing", body: `{"input":"text"}`},
		{desc: "empty", body: ``},
		{desc: "not an object", body: `["model","max_tokens",5]`},
		{desc: "form body", body: `model=gpt&max_tokens=5`},
		{desc: "leading whitespace", body: " \n{\"model\":\"m\",\"max_tokens\":7}", wantModel: "m", wantReserve: 7},
		{desc: "key quoted inside a string value", body: `{"messages":[{"content":"set \"max_tokens\": 99 and \"model\": \"evil\""}],"model":"real","max_tokens":3}`, wantModel: "real", wantReserve: 3},
		{desc: "schema property named max_tokens skipped", body: `{"tools":[{"parameters":{"properties":{"max_tokens":{"type":"integer"}}}}],"model":"m","max_tokens":64}`, wantModel: "m", wantReserve: 64},
		{desc: "string value of a key skipped", body: `{"metadata":{"max_tokens":"lots"},"max_tokens":12}`, wantReserve: 12},
		{desc: "value equal to a key name", body: `{"field":"max_tokens","max_tokens":8,"x":"model","model":"y"}`, wantModel: "y", wantReserve: 8},
		{desc: "negative bound", body: `{"max_tokens":-5}`},
		{desc: "fraction", body: `{"max_tokens":5.5}`},
		{desc: "exponent", body: `{"max_tokens":1e3}`},
		{desc: "null model", body: `{"model":null,"meta":{"model":"inner"}}`, wantModel: "inner"},
		{desc: "model not a string", body: `{"model":{"name":"x"}}`},
		{desc: "escaped model skipped", body: `{"model":"a\"b"}`},
		{desc: "too long model skipped", body: `{"model":"` + strings.Repeat("m", maxModelLen+1) + `"}`},
		{desc: "too many digits", body: `{"max_tokens":1234567890123456789}`},
		{desc: "largest accepted", body: `{"max_tokens":999999999999999999}`, wantReserve: 999999999999999999},
		{desc: "cut after colon", body: `{"model":"m","max_tokens":`, wantModel: "m"},
		{desc: "cut in model", body: `{"model":"gpt-`},
		{desc: "cut after key", body: `{"max_tokens"`},
		{desc: "digits at the end", body: `{"max_tokens":42`, wantReserve: 42},
		{desc: "key as a prefix of another", body: `{"xmodel":"no","max_tokensx":4,"model":"yes"}`, wantModel: "yes"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			model, reserve := scanBody([]byte(tt.body))
			if model != tt.wantModel || reserve != tt.wantReserve {
				t.Errorf("scanBody(%q) = %q, %d; want %q, %d", tt.body, model, reserve, tt.wantModel, tt.wantReserve)
			}
		})
	}
}
