package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: whatever the file holds, Load does not panic; it returns a
// configuration that validates, or an error that is one of the package's.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"full.good.yaml", "env.good.yaml", "minimal.good.yaml", "duplicate_key.bad.yaml", "limits_policy.bad.yaml", "not_a_mapping.bad.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("listen: ${X:-127.0.0.1:1}\nlimits: {tenants: {a: {requests: {limit: 1, period: 1s}}}}\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		env := func(k string) (string, bool) {
			if k == "LLMTAP_TEST_TOKEN" {
				return "s3cret", true
			}
			return "", false
		}
		c, err := Load(path, env)
		if err != nil {
			if !errors.Is(err, ErrParse) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsetVar) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned a configuration that does not validate: %v", err)
		}
	})
}
