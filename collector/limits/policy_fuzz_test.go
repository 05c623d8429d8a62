package limits

import (
	"encoding/json"
	"testing"
)

// FuzzParsePolicy: whatever an admin request carries, ParsePolicy does not
// panic, and a policy it accepts has no problems and survives a round trip.
func FuzzParsePolicy(f *testing.F) {
	for _, seed := range []string{
		`{"requests":{"limit":10,"period":"1m"}}`,
		`{"tokens":{"limit":1000,"period":"1h","count":"output"},"failure_mode":"closed"}`,
		`{"requests":{"limit":-1,"period":"1m"}}`,
		`{"requests":{"limit":1,"period":"0s"}}`,
		`{"requests":{"limit":1e30,"period":"1m"}}`,
		`{"routes":{"chat":{"requests":{"limit":1,"period":"1s"}}}}`,
		`{"nope":1}`,
		`{}{}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		if probs := p.Problems(""); len(probs) > 0 {
			t.Fatalf("accepted a policy with problems: %v", probs)
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := ParsePolicy(again); err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
	})
}
