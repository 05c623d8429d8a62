package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/config"
	"github.com/llmtap/llmtap/collector/pricing"
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

// fakeSpend answers a spend report by route and model.
type fakeSpend []collector.SpendRow

func (f fakeSpend) Spend(context.Context, collector.SpendQuery) ([]collector.SpendRow, error) {
	return f, nil
}

// TestPricesMissing: the models seen with token counts that no price
// covers, on their route; a route's own "*" price covers its models.
func TestPricesMissing(t *testing.T) {
	zero := 0.0
	table, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	pricer := pricing.New(table, pricing.Config{Routes: map[string][]pricing.Entry{"self": {{ID: "*", Prices: pricing.Prices{Input: &zero, Output: &zero}}}}})
	var out strings.Builder
	err = pricesMissing(context.Background(), fakeSpend{
		{Group: []string{"chat", "mystery-7b"}, Requests: 12, Input: 300, Output: 40},
		{Group: []string{"chat", "gpt-4o-mini-2024-07-18"}, Requests: 5, Input: 10, Output: 10},
		{Group: []string{"self", "mystery-7b"}, Requests: 3, Input: 30, Output: 3},
		{Group: []string{"tts", "tts-1"}, Requests: 2}, // no tokens: not priced by tokens
	}, pricer, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := "ROUTE  MODEL       REQUESTS  INPUT TOKENS  OUTPUT TOKENS\nchat   mystery-7b  12        300           40\n" +
		"1 models without a price: add them to pricing.models (or pricing.aliases) in the collector's configuration\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
