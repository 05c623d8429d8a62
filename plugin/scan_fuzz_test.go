//go:build !yaegi
// +build !yaegi

package llmtap

import (
	"bytes"
	"testing"
)

// FuzzScanBody: whatever the body, scanBody does not panic, and what it
// returns comes from the body. Compiled only: Yaegi does not fuzz.
func FuzzScanBody(f *testing.F) {
	for _, seed := range []string{
		`{"model":"gpt-4o","max_tokens":256}`,
		`{"max_completion_tokens" : 12, "model" : "m"}`,
		`{"options":{"num_predict":128},"model":"x"}`,
		`{"model":"a\"b","max_tokens":-1}`,
		`{"max_tokens":`,
		`{"model"`,
		`{"max_output_tokens":999999999999999999}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		model, reserve := scanBody(body)
		if reserve < 0 {
			t.Errorf("reserve %d is negative", reserve)
		}
		if len(model) > len(body) || len(model) > maxModelLen || !bytes.Contains(body, []byte(model)) {
			t.Errorf("model %q is not a part of the body %q", model, body)
		}
	})
}
