package provider

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tt := range []struct {
		file     string
		model    string
		bound    int64
		messages int
		texts    []string // each must be among the texts
		absent   []string // none may be
	}{
		{"openai_chat.json", "gpt-4o-mini", 256, 4,
			[]string{"system", "You are terse.", "ann", "Say hello.", "lookup", `{"q":"hello"}`, "found"},
			[]string{"call_1"}},
		{"openai_chat_parts.json", "gpt-4.1", 17, 1, []string{"What is in this image?"}, []string{"iVBORw0KGgo="}},
		{"openai_responses.json", "gpt-5", 100, 3, []string{"Be brief.", "Hello", "lookup", `{"q":1}`, "42"}, nil},
		{"openai_responses_string.json", "o4-mini", 0, 0, []string{"Tell me a joke."}, nil},
		{"anthropic_messages.json", "claude-sonnet-4-5", 1024, 3, []string{"You are a poet.", "Write a haiku.", "rhyme", `{"word":"moon"}`, "June"}, nil},
		{"ollama_generate.json", "llama3.2", 64, 0, []string{"Why is the sky blue?"}, nil},
		{"completions_list.json", "gpt-3.5-turbo-instruct", 5, 0, []string{"one", "two"}, nil},
		// A bound inside a schema is not the request's.
		{"nested_bound_only.json", "gpt-4o", 0, 1, []string{"hi"}, nil},
		// A value of another type is left out; the rest counts.
		{"odd_types.json", "gpt-4o", 0, 2, []string{"ok"}, nil},
	} {
		t.Run(tt.file, func(t *testing.T) {
			r := parseFixture(t, tt.file)
			if r.Model != tt.model || r.OutputBound != tt.bound || r.Prompt.Messages != tt.messages {
				t.Errorf("model %q bound %d messages %d, want %q %d %d", r.Model, r.OutputBound, r.Prompt.Messages, tt.model, tt.bound, tt.messages)
			}
			for _, s := range tt.texts {
				if !slices.Contains(r.Prompt.Texts, s) {
					t.Errorf("texts %q lack %q", r.Prompt.Texts, s)
				}
			}
			for _, s := range tt.absent {
				for _, got := range r.Prompt.Texts {
					if got == s {
						t.Errorf("texts hold %q", s)
					}
				}
			}
		})
	}
	// Anthropic's tool definitions count as their JSON, with its tool use
	// system prompt.
	body, _ := os.ReadFile("testdata/requests/anthropic_messages.json")
	r, _ := ParseRequest(body)
	if !slices.Contains(r.Prompt.Texts, `{"name":"rhyme","input_schema":{"type":"object"}}`) || r.Prompt.Framing != anthropicToolFraming {
		t.Errorf("tools: texts %q, framing %d; want their JSON and %d", r.Prompt.Texts, r.Prompt.Framing, anthropicToolFraming)
	}
}

// TestOpenAITools: function definitions as OpenAI shows them to its
// models, in each of its request shapes; anything else counts as JSON.
func TestOpenAITools(t *testing.T) {
	weather := "namespace functions {\n\n// Weather now\ntype get_weather = (_: {\n// City name\ncity: string,\nunit?: \"c\" | \"f\",\ndays?: number[],\nwhere?: {\n  lat: number,\n  lon: number,\n},\n}) => any;\n\n} // namespace functions"
	params := `{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["c","f"]},"days":{"type":"array","items":{"type":"integer"}},"where":{"type":"object","properties":{"lat":{"type":"number","description":"deep"},"lon":{"type":"number"}},"required":["lat","lon"]}},"required":["city"]}`
	for _, tt := range []struct {
		name, body, want string
		framing          int64
	}{
		{"chat tools", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":` + params + `}}]}`, weather, openAIToolFraming},
		{"with a system message", `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":` + params + `}}]}`, weather, openAIToolFraming - openAIToolSystemShared},
		{"legacy functions", `{"model":"gpt-3.5-turbo","messages":[],"functions":[{"name":"get_weather","description":"Weather now","parameters":` + params + `}]}`, weather, openAIToolFraming},
		{"responses", `{"model":"gpt-4.1","input":"hi","tools":[{"type":"function","name":"get_weather","description":"Weather now","parameters":` + params + `}]}`, weather, openAIToolFraming},
		{"no parameters", `{"model":"gpt-4o","messages":[],"tools":[{"type":"function","function":{"name":"now"}}]}`, "namespace functions {\n\ntype now = () => any;\n\n} // namespace functions", openAIToolFraming},
		{"a built-in tool", `{"model":"gpt-4.1","input":"hi","tools":[{"type":"web_search_preview"}]}`, `{"type":"web_search_preview"}`, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(r.Prompt.Texts, tt.want) || r.Prompt.Framing != tt.framing {
				t.Errorf("texts %q, framing %d; want %q and %d", r.Prompt.Texts, r.Prompt.Framing, tt.want, tt.framing)
			}
		})
	}
}

// TestResponseFormat: a structured output schema is shown like a
// function's parameters, in chat's and the Responses API's shapes.
func TestResponseFormat(t *testing.T) {
	want := "# Response Formats\n\n## answer\n\n{\n  final?: string,\n}"
	for _, body := range []string{
		`{"model":"gpt-4o","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object","properties":{"final":{"type":"string"}}}}}}`,
		`{"model":"gpt-4o","input":"hi","text":{"format":{"type":"json_schema","name":"answer","schema":{"type":"object","properties":{"final":{"type":"string"}}}}}}`,
	} {
		r, err := ParseRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(r.Prompt.Texts, want) || r.Prompt.Framing != responseFormatFraming {
			t.Errorf("%s: texts %q, framing %d", body, r.Prompt.Texts, r.Prompt.Framing)
		}
	}
}

func TestParseRequestRefuses(t *testing.T) {
	for _, file := range []string{"cut.json", "not_json.txt"} {
		body, err := os.ReadFile(filepath.Join("testdata", "requests", file))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRequest(body); !errors.Is(err, ErrNotRequest) {
			t.Errorf("%s: err %v, want ErrNotRequest", file, err)
		}
	}
	for _, body := range []string{"", "[]", "null", `"model"`} {
		if _, err := ParseRequest([]byte(body)); !errors.Is(err, ErrNotRequest) {
			t.Errorf("%q: err %v, want ErrNotRequest", body, err)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			return
		}
		if r.OutputBound < 0 || r.Prompt.Messages < 0 {
			t.Fatalf("bound %d, messages %d", r.OutputBound, r.Prompt.Messages)
		}
	})
}

// A tool call in a prompt's history costs its recipient, and its result
// is shown under the function's name, which the result does not repeat.
func TestParseRequestToolHistory(t *testing.T) {
	for _, tt := range []struct {
		file    string
		framing int64 // besides the tool definitions'
	}{
		{"openai_chat.json", openAIToolFraming - openAIToolSystemShared + historyCallFraming + toolResultFraming},
		{"openai_responses.json", historyCallFraming + toolResultFraming},
	} {
		t.Run(tt.file, func(t *testing.T) {
			r := parseFixture(t, tt.file)
			names := 0
			for _, s := range r.Prompt.Texts {
				if s == "lookup" {
					names++
				}
			}
			// The call's name and its result's.
			if names != 2 {
				t.Errorf("the function's name is among the texts %d times, want 2 (texts %q)", names, r.Prompt.Texts)
			}
			if r.Prompt.Framing != tt.framing {
				t.Errorf("framing %d, want %d", r.Prompt.Framing, tt.framing)
			}
		})
	}
}

// parseFixture parses testdata/requests/file.
func parseFixture(t *testing.T, file string) Request {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "requests", file))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
