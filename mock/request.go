package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// defaultModel is the model of a request that names none.
const defaultModel = "mock-1"

// request is what the endpoints read of a request body: the union of the
// formats' fields that matter here.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Content any `json:"content"`
	} `json:"messages"`
	System       any `json:"system"`       // Anthropic
	Instructions any `json:"instructions"` // Responses
	Input        any `json:"input"`        // Responses, speech
}

// readRequest decodes the JSON body and reads the rest of it, so that the
// client always gets to send its whole body. An empty body is {}.
func readRequest(body io.Reader) (*request, error) {
	req := &request{}
	err := json.NewDecoder(body).Decode(req)
	_, _ = io.Copy(io.Discard, body)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("mock: the request body is not a JSON request: %w", err)
	}
	return req, nil
}

func (r *request) model() string {
	if r.Model == "" {
		return defaultModel
	}
	return r.Model
}

func (r *request) includeUsage() bool {
	return r.StreamOptions != nil && r.StreamOptions.IncludeUsage
}

// inputTokens counts the words of the prompt, at least 1.
func (r *request) inputTokens() int {
	n := words(r.System) + words(r.Instructions) + words(r.Input)
	for _, m := range r.Messages {
		n += words(m.Content)
	}
	return max(n, 1)
}

// words counts the whitespace-separated words of a prompt part: a string,
// a list of parts, or a part object's "text" and "content" (content parts,
// Responses input items).
func words(v any) int {
	switch v := v.(type) {
	case string:
		return len(strings.Fields(v))
	case []any:
		n := 0
		for _, e := range v {
			n += words(e)
		}
		return n
	case map[string]any:
		return words(v["text"]) + words(v["content"])
	}
	return 0
}

// token is the text of the i-th generated token.
func token(i int) string {
	return "tok" + strconv.Itoa(i) + " "
}

// text is the text of the first n tokens.
func text(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(token(i))
	}
	return b.String()
}

// quote returns s as a JSON string.
func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

func indexOf(b []byte, s string) int { return bytes.Index(b, []byte(s)) }
