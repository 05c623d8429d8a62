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
			body, err := os.ReadFile(filepath.Join("testdata", "requests", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseRequest(body)
			if err != nil {
				t.Fatal(err)
			}
			if r.Model != tt.model || r.OutputBound != tt.bound || r.Messages != tt.messages {
				t.Errorf("model %q bound %d messages %d, want %q %d %d", r.Model, r.OutputBound, r.Messages, tt.model, tt.bound, tt.messages)
			}
			for _, s := range tt.texts {
				if !slices.Contains(r.Texts, s) {
					t.Errorf("texts %q lack %q", r.Texts, s)
				}
			}
			for _, s := range tt.absent {
				for _, got := range r.Texts {
					if got == s {
						t.Errorf("texts hold %q", s)
					}
				}
			}
		})
	}
	// The tool definitions count as their JSON.
	body, _ := os.ReadFile("testdata/requests/anthropic_messages.json")
	r, _ := ParseRequest(body)
	if !slices.Contains(r.Texts, `[{"name":"rhyme","input_schema":{"type":"object"}}]`) {
		t.Errorf("tools not among the texts: %q", r.Texts)
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
		if r.OutputBound < 0 || r.Messages < 0 {
			t.Fatalf("bound %d, messages %d", r.OutputBound, r.Messages)
		}
	})
}
