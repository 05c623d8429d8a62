package provider

import (
	"strings"

	"github.com/llmtap/llmtap/collector"
)

// dialect is a response format family, which fixes how its usage reads,
// which of its events carry content and where its generated text is. Each
// one lives in a file of its own (chat.go, responses.go, anthropic.go,
// ollama.go) as a format; a new provider format is one more file, a
// constant here and its place in formats.
type dialect int

const (
	dialectUnknown   dialect = iota
	dialectChat              // OpenAI chat/completions, completions, embeddings and imitators
	dialectResponses         // OpenAI Responses
	dialectAnthropic         // Anthropic Messages
	dialectOllama            // Ollama's native API
)

// format is what a dialect knows of its own documents and events.
type format interface {
	// name is the dialect's Usage.Source, without ".stream".
	name() string
	// ownsPath reports whether a request path (its trailing slash cut) is
	// one of the dialect's.
	ownsPath(path string) bool
	// ownsEvent reports whether an SSE event name is one of the dialect's.
	ownsEvent(name string) bool
	// ownsDoc reports whether a JSON document or event, as probed, is
	// written in the dialect.
	ownsDoc(p *probe) bool
	// normalize maps a usage object written in the dialect onto
	// collector.Usage (see the package doc).
	normalize(c *counts) collector.Usage
	// contentBearing reports whether an event carries generated content
	// (see ContentBearing). data is a JSON object.
	contentBearing(name string, data []byte) bool
	// toolCallFraming is the tokens the dialect's models spend on each
	// tool call besides its name and arguments (OpenAI's recipient and
	// channel markers, Anthropic's tool use block), as measured on the
	// accuracy corpus (docs/collector.md).
	toolCallFraming() int64
	// text adds the generated text of a JSON document or event to g.
	text(data []byte, g *generated)
}

// formats holds each dialect's format, in the order that paths are
// matched: Ollama's /api/chat before the many /chat suffixes.
var formats = []struct {
	dialect
	format
}{
	{dialectOllama, ollama{}},
	{dialectChat, chat{}},
	{dialectResponses, responses{}},
	{dialectAnthropic, anthropic{}},
}

// format returns a dialect's format, nil for dialectUnknown.
func (d dialect) format() format {
	for _, f := range formats {
		if f.dialect == d {
			return f.format
		}
	}
	return nil
}

// source returns the Usage.Source of a dialect.
func (d dialect) source(streamed bool) string {
	f := d.format()
	if f == nil {
		return SourceNone
	}
	if streamed {
		return f.name() + ".stream"
	}
	return f.name()
}

// pathDialect guesses the dialect from the request path. Suffixes, not
// whole paths, so that gateway prefixes (/openai/deployments/x/...,
// /api/v1/... of OpenRouter) still match; the response's shape has the last
// word where it is decisive.
func pathDialect(path string) dialect {
	p := strings.TrimSuffix(path, "/")
	for _, f := range formats {
		if f.ownsPath(p) {
			return f.dialect
		}
	}
	return dialectUnknown
}

// docDialect tells the dialect of a JSON document or event from its SSE
// name and probe, dialectUnknown when none owns it.
func docDialect(name string, p *probe) dialect {
	if d := eventDialect(name); d != dialectUnknown {
		return d
	}
	for _, f := range formats {
		if f.ownsDoc(p) {
			return f.dialect
		}
	}
	return dialectUnknown
}

// eventDialect tells the dialect that names its events name.
func eventDialect(name string) dialect {
	if name == "" {
		return dialectUnknown
	}
	for _, f := range formats {
		if f.ownsEvent(name) {
			return f.dialect
		}
	}
	return dialectUnknown
}

// hasSuffix reports whether path ends with one of suffixes.
func hasSuffix(path string, suffixes ...string) bool {
	for _, s := range suffixes {
		if strings.HasSuffix(path, s) {
			return true
		}
	}
	return false
}
