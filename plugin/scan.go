package llmtap

import "bytes"

// The keys scanBody looks for, quoted as they appear in JSON. A quote inside
// a JSON string is escaped, so a quoted key cannot match inside a string
// value.
var (
	modelKey = []byte(`"model"`)
	// reserveKeys name a request's own bound on output tokens, in order of
	// preference: OpenAI's current and older names, the Responses API's,
	// and Ollama's.
	reserveKeys = [][]byte{
		[]byte(`"max_completion_tokens"`),
		[]byte(`"max_output_tokens"`),
		[]byte(`"max_tokens"`),
		[]byte(`"num_predict"`),
	}
)

// maxModelLen bounds the model name taken from a request body.
const maxModelLen = 256

// scanBody finds, in a JSON request body, the model and the request's own
// bound on output tokens (0 when it has none), for the limit check.
//
// It is a scan, not a parse: decoding the whole body would cost far more
// under Yaegi. The searching is done by bytes.Index, compiled; only the few
// matches are looked at by interpreted code. The model is the first "model"
// key with a string value; the bound is the value of the first of
// reserveKeys that has an unsigned integer value. A key whose value is of
// another kind (a JSON schema property named max_tokens, say) is skipped
// and the scan goes on.
func scanBody(body []byte) (string, int64) {
	if i := skipSpace(body, 0); i == len(body) || body[i] != '{' {
		return "", 0
	}
	model := ""
	for v := valueAfter(body, modelKey, 0); v >= 0; v = valueAfter(body, modelKey, v) {
		if body[v] != '"' {
			continue
		}
		end := bytes.IndexByte(body[v+1:], '"')
		if end < 0 {
			break
		}
		s := body[v+1 : v+1+end]
		// A backslash would need unescaping: no model name has one.
		if len(s) <= maxModelLen && bytes.IndexByte(s, '\\') < 0 {
			model = string(s)
			break
		}
	}
	for _, key := range reserveKeys {
		for v := valueAfter(body, key, 0); v >= 0; v = valueAfter(body, key, v) {
			if n, ok := unsignedAt(body, v); ok {
				return model, n
			}
		}
	}
	return model, 0
}

// valueAfter returns where the value of the first occurrence of key at or
// after from begins: key must be followed by optional whitespace, a colon
// and optional whitespace. It returns -1 when there is no such occurrence
// or the body ends before the value. The result is always past from.
func valueAfter(body, key []byte, from int) int {
	for from < len(body) {
		i := bytes.Index(body[from:], key)
		if i < 0 {
			return -1
		}
		v := skipSpace(body, from+i+len(key))
		from = v
		if v < len(body) && body[v] == ':' {
			if v = skipSpace(body, v+1); v < len(body) {
				return v
			}
			return -1
		}
	}
	return -1
}

// skipSpace returns the offset of the first byte at or after i that is not
// JSON whitespace, or len(b).
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// unsignedAt reads the unsigned integer that starts at i, if the JSON value
// there is one: digits not followed by a fraction or an exponent, and few
// enough to fit an int64.
func unsignedAt(b []byte, i int) (int64, bool) {
	var n int64
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		if j-i == 18 {
			return 0, false
		}
		n = n*10 + int64(b[j]-'0')
		j++
	}
	if j == i || (j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
		return 0, false
	}
	return n, true
}
