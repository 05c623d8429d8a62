package llmtap

import "bytes"

// scanKeys are the keys scanBody looks for, quoted as they appear in JSON:
// first the model, then the names of a request's own bound on output
// tokens in order of preference (OpenAI's current and older names, the
// Responses API's, Ollama's). A quote inside a JSON string is escaped, so
// a quoted key cannot match inside a string value.
var scanKeys = [][]byte{
	[]byte(`"model"`),
	[]byte(`"max_completion_tokens"`),
	[]byte(`"max_output_tokens"`),
	[]byte(`"max_tokens"`),
	[]byte(`"num_predict"`),
}

// maxModelLen bounds the model name taken from a request body.
const maxModelLen = 256

// scanBody finds, in a JSON request body, the model and the request's own
// bound on output tokens (0 when it has none), for the limit check.
//
// It is a scan, not a parse: decoding the body would cost far more under
// Yaegi. bytes.Index, compiled, does the searching; interpreted code only
// looks at the few matches. The model is the value of the first "model"
// key whose value is a string; the bound is the value of the first of the
// other scanKeys whose value is an unsigned integer. A key whose value is of
// another kind (a JSON schema property named max_tokens, say) is skipped
// and the scan goes on.
//
// One function with its loops inline and its conditions short, on
// purpose: under Yaegi each call allocates a slot for every expression of
// the callee, and helpers for the whitespace and the digits doubled the
// cost (14 µs against 7 µs for a small chat request, of which the five
// bytes.Index calls are 3). Whitespace is any byte up to ' ': outside
// strings, valid JSON has only space, tab, CR and LF there.
func scanBody(body []byte) (string, int64) {
	i := 0
	for i < len(body) && body[i] <= ' ' {
		i++
	}
	if i == len(body) || body[i] != '{' {
		return "", 0
	}
	model := ""
	for k, key := range scanKeys {
		for from := i; from < len(body); {
			at := bytes.Index(body[from:], key)
			if at < 0 {
				break
			}
			// The value: after the key, optional whitespace, a colon and
			// optional whitespace. The search goes on from there.
			v := from + at + len(key)
			for v < len(body) && body[v] <= ' ' {
				v++
			}
			from = v
			if v == len(body) || body[v] != ':' {
				continue
			}
			v++
			for v < len(body) && body[v] <= ' ' {
				v++
			}
			from = v
			if v == len(body) {
				break
			}
			if k == 0 {
				// The model: a string without escapes (no model name has
				// one), of a bounded length.
				if body[v] != '"' {
					continue
				}
				end := bytes.IndexByte(body[v+1:], '"')
				if end < 0 {
					break
				}
				if s := body[v+1 : v+1+end]; len(s) <= maxModelLen && bytes.IndexByte(s, '\\') < 0 {
					model = string(s)
					break
				}
				continue
			}
			// The bound: at most 18 digits (an int64 holds them), not
			// followed by another digit, a fraction or an exponent.
			var n int64
			d := v
			for d < len(body) && body[d]-'0' <= 9 && d-v < 18 {
				n = n*10 + int64(body[d]-'0')
				d++
			}
			if d > v && (d == len(body) || (body[d]-'0' > 9 && body[d] != '.' && body[d]|0x20 != 'e')) {
				return model, n
			}
		}
	}
	return model, 0
}
