package provider

import (
	"bytes"
	"slices"
	"strings"

	gojson "github.com/goccy/go-json"

	"github.com/llmtap/llmtap/collector/tokens"
)

// tool is a function a request offers the model, in any dialect: OpenAI
// chat's {"type":"function","function":{...}}, its legacy functions,
// the Responses API's flat {"type":"function","name":...}, Anthropic's
// {"name","description","input_schema"}.
type tool struct {
	Type        string            `json:"type"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Parameters  gojson.RawMessage `json:"parameters"`
	InputSchema gojson.RawMessage `json:"input_schema"` // Anthropic
	Function    *tool             `json:"function"`
}

// schema is the part of a JSON schema that OpenAI shows its models.
type schema struct {
	Type        any               `json:"type"` // a string, or a list of them
	Description string            `json:"description"`
	Enum        []any             `json:"enum"`
	Items       *schema           `json:"items"`
	Properties  orderedProperties `json:"properties"`
	Required    []string          `json:"required"`
}

// orderedProperties keeps a schema's properties in the order written,
// which is the order the model sees them in.
type orderedProperties []property

type property struct {
	name string
	*schema
}

// UnmarshalJSON implements json.Unmarshaler. It never fails: what does
// not read is left out.
func (o *orderedProperties) UnmarshalJSON(b []byte) error {
	o.read(gojson.NewDecoder(bytes.NewReader(b)))
	return nil
}

// read reads the properties until the object ends or does not read.
func (o *orderedProperties) read(dec *gojson.Decoder) {
	if t, err := dec.Token(); err != nil || t != gojson.Delim('{') {
		return
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return
		}
		name, _ := t.(string)
		var s schema
		if dec.Decode(&s) != nil {
			return
		}
		*o = append(*o, property{name, &s})
	}
}

// The tokens a provider adds to a prompt that offers tools, besides their
// definitions: OpenAI's preamble of the functions namespace, less a few
// when the prompt has a system message that the tools join; Anthropic's
// tool use system prompt, as its pricing page documents it for current
// models (the auto and none tool choices; any and tool take a little less).
const (
	openAIToolFraming      = 9
	openAIToolSystemShared = 4
	anthropicToolFraming   = 346
)

// The tokens OpenAI's models see around a tool call in a prompt's history
// (its recipient), and around a tool's result (its author, the function's
// name, counted as text besides), as measured on the accuracy corpus.
const (
	historyCallFraming = 3
	toolResultFraming  = 2
)

// responseFormatFraming is a structured output format's preamble, as
// measured on the accuracy corpus (docs/collector.md): no provider
// documents it.
const responseFormatFraming = 10

// addTools adds a request's tool definitions to its prompt: rendered as
// OpenAI renders them when they are all functions in its format, else as
// their JSON; with the framing of the provider whose format they are in.
func addTools(p *tokens.Prompt, raw []gojson.RawMessage, system bool) {
	if len(raw) == 0 {
		return
	}
	anthropic := false
	for _, r := range raw {
		var t tool
		if decode(r, &t) && len(t.InputSchema) > 0 {
			anthropic = true
		}
	}
	if !anthropic {
		if text, ok := openAITools(raw); ok {
			p.Texts = append(p.Texts, text)
			p.Framing += openAIToolFraming
			if system {
				p.Framing -= openAIToolSystemShared
			}
			return
		}
	}
	for _, r := range raw {
		p.Texts = append(p.Texts, string(r))
	}
	if anthropic {
		p.Framing += anthropicToolFraming
	}
}

// responseFormat is a request's structured output format: chat's
// {"type":"json_schema","json_schema":{"name","schema"}}, the Responses
// API's {"type":"json_schema","name","schema"}.
type responseFormat struct {
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Schema     gojson.RawMessage `json:"schema"`
	JSONSchema *struct {
		Name   string            `json:"name"`
		Schema gojson.RawMessage `json:"schema"`
	} `json:"json_schema"`
}

// addResponseFormat adds a JSON schema the output must follow, which
// OpenAI shows its model as it shows a function's parameters.
func addResponseFormat(p *tokens.Prompt, f *responseFormat) {
	if f == nil || f.Type != "json_schema" {
		return
	}
	name, raw := f.Name, f.Schema
	if f.JSONSchema != nil {
		name, raw = f.JSONSchema.Name, f.JSONSchema.Schema
	}
	var s schema
	if len(raw) == 0 || !decode(raw, &s) {
		return
	}
	var b strings.Builder
	b.WriteString("# Response Formats\n\n## " + name + "\n\n")
	writeType(&b, &s, 0)
	p.Texts = append(p.Texts, b.String())
	p.Framing += responseFormatFraming
}

// openAITools renders function definitions as OpenAI renders them for its
// models, a TypeScript namespace (as measured against its reported
// prompt_tokens, and as its community tokenizers count them); ok is false
// when a definition is not a function: then the caller counts the JSON.
func openAITools(raw []gojson.RawMessage) (text string, ok bool) {
	var b strings.Builder
	b.WriteString("namespace functions {\n\n")
	for _, r := range raw {
		var t tool
		if !decode(r, &t) {
			return "", false
		}
		if t.Function != nil {
			t = *t.Function
		} else if t.Type != "" && t.Type != "function" {
			return "", false // a built-in tool (web search, code interpreter)
		}
		if t.Name == "" {
			return "", false
		}
		if t.Description != "" {
			b.WriteString("// " + t.Description + "\n")
		}
		var params schema
		if len(t.Parameters) > 0 {
			decode(t.Parameters, &params)
		}
		if len(params.Properties) > 0 {
			b.WriteString("type " + t.Name + " = (_: {\n")
			writeProperties(&b, &params, 0)
			b.WriteString("}) => any;\n\n")
		} else {
			b.WriteString("type " + t.Name + " = () => any;\n\n")
		}
	}
	b.WriteString("} // namespace functions")
	return b.String(), true
}

func writeProperties(b *strings.Builder, s *schema, indent int) {
	pad := strings.Repeat(" ", indent)
	for _, p := range s.Properties {
		if p.Description != "" && indent < 2 {
			b.WriteString(pad + "// " + p.Description + "\n")
		}
		optional := "?"
		if slices.Contains(s.Required, p.name) {
			optional = ""
		}
		b.WriteString(pad + p.name + optional + ": ")
		writeType(b, p.schema, indent)
		b.WriteString(",\n")
	}
}

func writeType(b *strings.Builder, s *schema, indent int) {
	typ, _ := s.Type.(string)
	switch typ {
	case "string", "number", "integer":
		if len(s.Enum) > 0 {
			for i, v := range s.Enum {
				if i > 0 {
					b.WriteString(" | ")
				}
				enc, _ := gojson.Marshal(v)
				b.Write(enc)
			}
			return
		}
		if typ == "integer" {
			typ = "number"
		}
		b.WriteString(typ)
	case "boolean", "null":
		b.WriteString(typ)
	case "object":
		b.WriteString("{\n")
		writeProperties(b, s, indent+2)
		b.WriteString(strings.Repeat(" ", indent) + "}")
	case "array":
		if s.Items != nil {
			writeType(b, s.Items, indent)
			b.WriteString("[]")
			return
		}
		b.WriteString("any[]")
	default:
		b.WriteString("any")
	}
}
