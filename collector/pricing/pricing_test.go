package pricing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
)

func n(v int64) *int64 { return &v }

func testTable(t *testing.T) *Table {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "table.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := ParseTable("table.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

// TestCost: each token priced once, at its kind's price, in nano-dollars.
func TestCost(t *testing.T) {
	p := New(testTable(t), Config{})
	for _, tt := range []struct {
		desc  string
		model string
		usage collector.Usage
		want  collector.Cost
	}{
		{
			// 1,000 input at $2.50/M = 2,500,000 n$; 200 output at $10/M.
			desc: "openai, no cache", model: "gpt-4o",
			usage: collector.Usage{Input: n(1000), Output: n(200)},
			want:  collector.Cost{Input: 2_500_000, Output: 2_000_000, Total: 4_500_000},
		},
		{
			// Of 1,117 input, 1,024 cached at $1.25/M: 93 * 2500 + 1024 * 1250.
			desc: "openai, cached input", model: "gpt-4o-2024-08-06",
			usage: collector.Usage{Input: n(1117), Output: n(46), CacheRead: n(1024), Reasoning: n(0)},
			want:  collector.Cost{Input: 232_500, CacheRead: 1_280_000, Output: 460_000, Total: 1_972_500},
		},
		{
			desc: "an exact snapshot id beats the base id", model: "gpt-4o-2024-05-13",
			usage: collector.Usage{Input: n(1000), Output: n(1000)},
			want:  collector.Cost{Input: 5_000_000, Output: 15_000_000, Total: 20_000_000},
		},
		{
			// Reasoning is output, priced at the output price: 215 output,
			// 192 of them reasoning.
			desc: "reasoning priced as output", model: "o4-mini",
			usage: collector.Usage{Input: n(1840), Output: n(215), CacheRead: n(1664), Reasoning: n(192)},
			want:  collector.Cost{Input: 193_600, CacheRead: 457_600, Output: 101_200, Reasoning: 844_800, Total: 1_597_200},
		},
		{
			desc: "reasoning priced apart", model: "reasoner",
			usage: collector.Usage{Input: n(100), Output: n(50), Reasoning: n(40)},
			want:  collector.Cost{Input: 100_000, Output: 20_000, Reasoning: 320_000, Total: 440_000},
		},
		{
			// Anthropic: 12 uncached + 3,000 read + 1,500 written.
			desc: "anthropic, cache reads and writes", model: "claude-sonnet-4-5-20250929",
			usage: collector.Usage{Input: n(4512), Output: n(85), CacheRead: n(3000), CacheWrite: n(1500)},
			want:  collector.Cost{Input: 36_000, CacheRead: 900_000, CacheWrite: 5_625_000, Output: 1_275_000, Total: 7_836_000},
		},
		{
			// Of 1,500 written, 1,000 for an hour ($6/M) and 500 for five
			// minutes ($3.75/M).
			desc: "anthropic, cache writes of an hour", model: "claude-sonnet-4-5",
			usage: collector.Usage{Input: n(1510), Output: n(0), CacheWrite: n(1500), CacheWrite1h: n(1000)},
			want:  collector.Cost{Input: 30_000, CacheWrite: 1_875_000 + 6_000_000, Total: 7_905_000},
		},
		{
			desc: "anthropic, long context tier", model: "claude-sonnet-4-5",
			usage: collector.Usage{Input: n(250_000), Output: n(1000), CacheRead: n(100_000)},
			want:  collector.Cost{Input: 900_000_000, CacheRead: 60_000_000, Output: 22_500_000, Total: 982_500_000},
		},
		{
			desc: "only the output known (estimated)", model: "gpt-4o",
			usage: collector.Usage{Output: n(10)},
			want:  collector.Cost{Output: 100_000, Total: 100_000},
		},
		{
			// 7 tokens at $0.02/M: 140 n$.
			desc: "embeddings", model: "text-embedding-3-small",
			usage: collector.Usage{Input: n(7), Output: n(0)},
			want:  collector.Cost{Input: 140, Total: 140},
		},
		{
			desc: "a gateway's provider prefix", model: "openai/gpt-4o",
			usage: collector.Usage{Input: n(1000), Output: n(0)},
			want:  collector.Cost{Input: 2_500_000, Total: 2_500_000},
		},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			tt.want.PriceVersion = "test-1"
			got, ok := p.Price("r", tt.model, tt.usage)
			if !ok || got != tt.want {
				t.Errorf("cost %+v (%v), want %+v", got, ok, tt.want)
			}
		})
	}
}

// TestLookup: exact ids, snapshots, aliases, configured models and
// routes, in that order; nothing for an unknown model.
func TestLookup(t *testing.T) {
	zero, half, one := 0.0, 0.5, 1.0
	p := New(testTable(t), Config{
		Models:  []Entry{{ID: "llama-3.1-70b", Prices: Prices{Input: &half, Output: &one}}, {ID: "gpt-4o", Prices: Prices{Input: &one, Output: &one}}},
		Routes:  map[string][]Entry{"self-hosted": {{ID: "*", Prices: Prices{Input: &zero, Output: &zero}}}, "eu": {{ID: "claude-sonnet-4-5", Prices: Prices{Input: &one, Output: &one}}}},
		Aliases: map[string]string{"my-deployment": "gpt-4o-mini-unknown", "prod-sonnet": "claude-sonnet-4-5"},
	})
	for _, tt := range []struct {
		route, model string
		id, version  string // "" for no price
	}{
		{"r", "gpt-4o", "gpt-4o", ConfigVersion}, // the configuration overrides the table
		{"r", "GPT-4O-2024-11-20", "gpt-4o", ConfigVersion},
		{"r", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "test-1"},
		{"r", "claude-sonnet-4-5-20991231", "claude-sonnet-4-5", "test-1"}, // a later snapshot
		{"r", "claude-sonnet-4-5-latest", "claude-sonnet-4-5", "test-1"},
		{"r", "prod-sonnet", "claude-sonnet-4-5", "test-1"},
		{"r", "llama-3.1-70b", "llama-3.1-70b", ConfigVersion},
		{"self-hosted", "anything", "*", ConfigVersion},
		{"self-hosted", "gpt-4o", "*", ConfigVersion},
		{"eu", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", ConfigVersion},
		{"eu", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13", "test-1"},
		{"r", "my-deployment", "", ""}, // an alias to a model without a price
		{"r", "gpt-5-unknown", "", ""},
		{"r", "", "", ""},
	} {
		price := p.Lookup(tt.route, tt.model)
		switch {
		case tt.id == "" && price != nil:
			t.Errorf("%s %q: price %v, want none", tt.route, tt.model, price)
		case tt.id != "" && (price == nil || price.ID != tt.id || price.Version != tt.version):
			t.Errorf("%s %q: price %v, want %s (%s)", tt.route, tt.model, price, tt.id, tt.version)
		}
	}
	if _, ok := p.Price("r", "gpt-5-unknown", collector.Usage{Input: n(1)}); ok {
		t.Error("an unknown model was priced")
	}
	if _, ok := p.Price("r", "gpt-4o", collector.Usage{Source: "none"}); ok {
		t.Error("a request without token counts was priced")
	}
}

// TestParseTableRefuses: a bad table is refused with its file, line and
// field.
func TestParseTableRefuses(t *testing.T) {
	for _, tt := range []struct {
		file string
		want []string
	}{
		{"bad_unknown_key.yaml", []string{"bad_unknown_key.yaml", "line 5", `"ouptut"`}},
		{"bad_missing_output.yaml", []string{"bad_missing_output.yaml:3:", "models[0].output is required"}},
		{"bad_negative.yaml", []string{"bad_negative.yaml:6:", "models[1].cache_read", "-0.5"}},
		{"bad_duplicate.yaml", []string{"bad_duplicate.yaml:6:", "models[1].id", `"gpt-4o" is priced twice`}},
		{"bad_tier.yaml", []string{"bad_tier.yaml:3:", "models[0].tiers[0].above_input_tokens"}},
		{"bad_no_version.yaml", []string{"version is required"}},
		{"bad_typo_price.yaml", []string{"models[0].input", "25000"}},
		{"bad_string_price.yaml", []string{"line 4", "cheap"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseTable(tt.file, b)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestDefaultTable: the embedded table parses, prices the current OpenAI
// and Anthropic families, and cites a source for each entry.
func TestDefaultTable(t *testing.T) {
	table, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range table.Models {
		if !strings.HasPrefix(e.Source, "https://") {
			t.Errorf("%s: source %q, want the page its prices came from", e.ID, e.Source)
		}
	}
	p := New(table, Config{})
	for _, m := range []string{"gpt-4o", "gpt-4o-mini-2024-07-18", "gpt-4.1", "o4-mini", "gpt-5", "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-opus-4-1"} {
		if p.Lookup("", m) == nil {
			t.Errorf("the default table has no price for %s", m)
		}
	}
}

// BenchmarkPrice: a request's price, its model a dated snapshot.
func BenchmarkPrice(b *testing.B) {
	table, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	p := New(table, Config{})
	u := collector.Usage{Input: n(1200), Output: n(300), CacheRead: n(1024), Reasoning: n(0)}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.Price("chat", "gpt-4o-mini-2024-07-18", u); !ok {
			b.Fatal("no price")
		}
	}
}
