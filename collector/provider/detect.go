package provider

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/llmtap/llmtap/collector/stream"
)

// evidence gathers what a response says about who served it.
type evidence struct {
	dialect dialect
	model   string // first non-empty model the response names

	azure, ollama, vllm, openai bool
}

// probe reads the fields that identify a provider, from a JSON body or one
// event. Presence matters more than values, hence the present type.
type probe struct {
	ID                  string  `json:"id"`
	Object              string  `json:"object"`
	Type                string  `json:"type"`
	Model               string  `json:"model"`
	SystemFingerprint   string  `json:"system_fingerprint"`
	PromptFilterResults present `json:"prompt_filter_results"` // Azure
	PromptLogprobs      present `json:"prompt_logprobs"`       // vLLM, null when unused
	KVTransferParams    present `json:"kv_transfer_params"`    // vLLM
	Done                present `json:"done"`                  // Ollama
	Choices             []struct {
		StopReason           present `json:"stop_reason"`            // vLLM
		ContentFilterResults present `json:"content_filter_results"` // Azure
	} `json:"choices"`
	// Message is Anthropic's message_start payload (Ollama's message has
	// neither field).
	Message *struct {
		ID    string `json:"id"`
		Model string `json:"model"`
	} `json:"message"`
	// Response is the Responses API's response object in its events (for
	// Ollama's /api/generate it is a string, and decoding skips it).
	Response *struct {
		ID    string `json:"id"`
		Model string `json:"model"`
	} `json:"response"`
}

// present records that a JSON key was there, null included: UnmarshalJSON
// is called for a null too, and a present field copies nothing.
type present bool

// UnmarshalJSON implements json.Unmarshaler.
func (p *present) UnmarshalJSON([]byte) error {
	*p = true
	return nil
}

// path takes the path's word: Azure's deployment paths and Ollama's native
// API are unmistakable; other paths only suggest a dialect.
func (ev *evidence) path(p string) {
	ev.dialect = pathDialect(p)
	switch {
	case strings.Contains(p, "/openai/deployments/"):
		ev.azure = true
	case ev.dialect == dialectOllama:
		ev.ollama = true
	}
}

// events probes the first and last few events: markers sit at either end
// (Azure's prompt filter results first; vLLM's stop_reason on the final
// choice), and the middle of a long stream says nothing new.
func (ev *evidence) events(events []stream.Event) {
	const ends = 4
	i, n := 0, 0
	for ; i < len(events) && n < ends; i++ {
		if ev.event(events[i]) {
			n++
		}
	}
	n = 0
	for j := len(events) - 1; j >= i && n < ends; j-- {
		if ev.event(events[j]) {
			n++
		}
	}
}

// event probes one event and reports whether it held a JSON object.
func (ev *evidence) event(e stream.Event) bool {
	b := bytes.TrimSpace(e.Data)
	if len(b) == 0 || b[0] != '{' {
		return false // [DONE], or a cut line
	}
	ev.doc(e.Name, b)
	return true
}

// doc probes one JSON document, or the data of an event named name. A
// dialect seen in the response beats the path's guess.
func (ev *evidence) doc(name string, b []byte) {
	var p probe
	if !decode(b, &p) {
		if d := eventDialect(name); d != dialectUnknown {
			ev.dialect = d
		}
		return
	}
	model := p.Model
	if d := docDialect(name, &p); d != dialectUnknown {
		ev.dialect = d
		if d == dialectOllama {
			ev.ollama = true
		}
	}
	if p.Message != nil && model == "" {
		model = p.Message.Model
	}
	if p.Response != nil {
		if model == "" {
			model = p.Response.Model
		}
		if openAIResponseID(p.Response.ID) {
			ev.openai = true
		}
	}
	if ev.model == "" {
		ev.model = model
	}
	if p.PromptFilterResults {
		ev.azure = true
	}
	if p.PromptLogprobs || p.KVTransferParams {
		ev.vllm = true
	}
	for _, c := range p.Choices {
		if c.ContentFilterResults {
			ev.azure = true
		}
		if c.StopReason {
			ev.vllm = true
		}
	}
	switch {
	case p.SystemFingerprint == "fp_ollama":
		ev.ollama = true
	case openAIFingerprint(p.SystemFingerprint), openAIChatID(p.ID), openAIResponseID(p.ID):
		ev.openai = true
	}
}

// provider weighs the evidence: a vendor's own marker beats the format, and
// OpenAI is named only on its id, fingerprint or model name formats.
func (ev *evidence) provider(model string) string {
	switch {
	case ev.azure:
		return Azure
	case ev.ollama:
		return Ollama
	case ev.vllm:
		return VLLM
	case ev.dialect == dialectAnthropic:
		return Anthropic
	case ev.openai || (ev.dialect != dialectUnknown && openAIModel(model)):
		return OpenAI
	case ev.dialect == dialectChat || ev.dialect == dialectResponses:
		return OpenAICompatible
	}
	return Unknown
}

// openAIChatID matches OpenAI's chat completion ids: "chatcmpl-" and 29
// letters and digits. Imitators use a UUID (vLLM, LiteLLM) or a number
// (Ollama).
func openAIChatID(id string) bool {
	rest, ok := strings.CutPrefix(id, "chatcmpl-")
	return ok && len(rest) == 29 && isAlnum(rest)
}

// openAIResponseID matches OpenAI's Responses ids: "resp_" and 48 hex
// digits (40 or more accepted); vLLM's are "resp_" and a 32-digit UUID.
func openAIResponseID(id string) bool {
	rest, ok := strings.CutPrefix(id, "resp_")
	return ok && len(rest) >= 40 && isHex(rest)
}

// openAIFingerprint matches OpenAI's (and Azure's) system_fingerprint:
// "fp_" and 10 hex digits. DeepSeek's carry a suffix, Ollama's is fp_ollama.
func openAIFingerprint(fp string) bool {
	rest, ok := strings.CutPrefix(fp, "fp_")
	return ok && len(rest) == 10 && isHex(rest)
}

// openAIModel reports whether a model name is one of OpenAI's own (the
// open-weight gpt-oss runs anywhere, so it does not count).
func openAIModel(m string) bool {
	if strings.HasPrefix(m, "gpt-oss") {
		return false
	}
	for _, p := range []string{"gpt-", "chatgpt-", "text-embedding-", "tts-", "whisper-", "dall-e-",
		"omni-moderation-", "text-moderation-", "davinci-", "babbage-", "codex-", "computer-use-"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	// o1, o3, o4-mini, o3-pro-2025-06-10, ...
	return len(m) >= 2 && m[0] == 'o' && m[1] >= '1' && m[1] <= '9' && (len(m) == 2 || m[2] == '-')
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return true
}

// isHex reports whether s is lowercase hex, as OpenAI writes its ids.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'f', '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return true
}

// requestModel returns the request's "model". The body may be a cut head:
// then it walks the top-level keys until the cut, since SDKs often send
// "messages" before "model".
func requestModel(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	var m struct {
		Model string `json:"model"`
	}
	if decode(body, &m) {
		return m.Model
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		if key, _ := t.(string); key == "model" {
			var s string
			_ = dec.Decode(&s)
			return s
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}
