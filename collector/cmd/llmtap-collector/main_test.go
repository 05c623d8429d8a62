package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/llmtap/llmtap/collector/config"
)

// The collector is closed by default: without an ingest token it does not
// start, unless its configuration says the network is trusted.
func TestRunRefusesToStartOpen(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	err := run(context.Background(), nil, io.Discard, io.Discard, noEnv)
	if !errors.Is(err, config.ErrNoTokens) {
		t.Fatalf("no configuration: %v, want ErrNoTokens", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:0\nadmin_token: a-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"-config", path}, io.Discard, io.Discard, noEnv); !errors.Is(err, config.ErrNoTokens) {
		t.Fatalf("an admin token only: %v, want ErrNoTokens", err)
	}
	for _, c := range []struct{ file, desc string }{
		{"listen: 127.0.0.1:0\ningest_token: i-token\n", "an ingest token"},
		{"listen: 127.0.0.1:0\ntrusted_network: true\n", "a trusted network"},
	} {
		if err := os.WriteFile(path, []byte(c.file), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path, "", noEnv); err != nil {
			t.Errorf("%s: %v", c.desc, err)
		}
	}
}
