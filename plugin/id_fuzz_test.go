//go:build !yaegi
// +build !yaegi

package llmtap

import "testing"

// FuzzNormalizeID: whatever a client sends as an id or tenant, the
// normalized form is valid (or empty for empty input), stable, and a
// valid id is kept as it is. Compiled only: Yaegi does not fuzz.
func FuzzNormalizeID(f *testing.F) {
	for _, seed := range []string{"req-1", "a\tb", "caf\xc3\xa9", "", " ", "a/b", "\x00", "x\r\nSet-Cookie: a=b", string(make([]byte, 200))} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeID(s)
		if s == "" {
			if n != "" {
				t.Fatalf("NormalizeID(\"\") = %q", n)
			}
			return
		}
		if !ValidID(n) {
			t.Fatalf("NormalizeID(%q) = %q, not valid", s, n)
		}
		if NormalizeID(n) != n {
			t.Fatalf("NormalizeID is not stable on %q", n)
		}
		if ValidID(s) && n != s {
			t.Fatalf("the valid id %q became %q", s, n)
		}
	})
}
