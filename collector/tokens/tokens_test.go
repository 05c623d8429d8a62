package tokens

import (
	"strings"
	"testing"
)

func TestPrompt(t *testing.T) {
	c, err := New(map[string]string{"my-gpt": Cl100k})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		model    string
		texts    []string
		messages int
		want     int64
		enc      string
		approx   bool
	}{
		// "hello world" is two tokens in both encodings.
		{"cl100k text", "gpt-4-0613", []string{"hello world"}, 0, 2, Cl100k, false},
		{"o200k text", "gpt-4o-mini", []string{"hello world"}, 0, 2, O200k, false},
		{"a longer prefix wins", "gpt-4.1-nano", []string{"hello world"}, 0, 2, O200k, false},
		{"a provider's prefix is looked through", "openai/GPT-4o", []string{"hello world"}, 0, 2, O200k, false},
		{"framing: 3 a message and 3 for the reply", "gpt-4o", []string{"user", "hello world"}, 1, 1 + 2 + 3 + 3, O200k, false},
		{"configured prefix", "my-gpt-v2", []string{"hello world"}, 0, 2, Cl100k, false},
		{"another model: o200k scaled", "claude-sonnet-4", []string{"hello world"}, 0, 3, O200k, true},
		{"nothing", "gpt-4o", nil, 0, 0, O200k, false},
		{"empty texts", "gpt-4o", []string{"", ""}, 0, 0, O200k, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Prompt(tt.model, Prompt{Texts: tt.texts, Messages: tt.messages})
			if got.Tokens != tt.want || got.Encoding != tt.enc || got.Approximate != tt.approx || got.Extrapolated {
				t.Errorf("got %+v, want %d tokens with %s (approximate %v)", got, tt.want, tt.enc, tt.approx)
			}
		})
	}
}

// TestPromptPastTheExactBound: text past maxExact is counted at the rate
// of what was tokenized, so a long repeated text counts as if whole.
func TestPromptPastTheExactBound(t *testing.T) {
	c, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	unit := "The quarterly report shows steady growth across all regions. "
	short := c.Text("gpt-4o", strings.Repeat(unit, 100))
	long := c.Text("gpt-4o", strings.Repeat(unit, 3000))
	if short.Extrapolated || !long.Extrapolated {
		t.Fatalf("extrapolated: short %v, long %v", short.Extrapolated, long.Extrapolated)
	}
	want := short.Tokens * 30
	if diff := long.Tokens - want; diff < -want/100 || diff > want/100 {
		t.Errorf("%d tokens for 3000 units, want about %d (30 x %d)", long.Tokens, want, short.Tokens)
	}
}

func TestPromptNotUTF8(t *testing.T) {
	c, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Text("gpt-4o", "\xff\xfe bytes \x80"); got.Tokens <= 0 {
		t.Errorf("got %+v for a text that is not UTF-8, want some tokens", got)
	}
}

func TestNewRefusesUnknownEncoding(t *testing.T) {
	if _, err := New(map[string]string{"llama": "llama3_bpe"}); err == nil || !strings.Contains(err.Error(), `"llama3_bpe"`) {
		t.Errorf("err %v, want one naming the unknown encoding", err)
	}
}

// BenchmarkPrompt: a prompt of about 400 tokens counted by the Counter
// (pieces cut by hand, their counts remembered), and its text counted by
// the library alone, the baseline.
func BenchmarkPrompt(b *testing.B) {
	c, err := New(nil)
	if err != nil {
		b.Fatal(err)
	}
	texts := []string{"system", "You are a terse assistant.", "user", strings.Repeat("Summarize the quarterly report in three bullet points. ", 30)}
	b.Run("counter", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Prompt("gpt-4o-mini", Prompt{Texts: texts, Messages: 2})
		}
	})
	b.Run("library", func(b *testing.B) {
		codec := c.encoders[O200k].codec
		b.ReportAllocs()
		for b.Loop() {
			for _, t := range texts {
				if _, err := codec.Count(t); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

func TestReply(t *testing.T) {
	c, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		model string
		want  int64
	}{
		{"gpt-4o", 2 + 1},      // o200k_base: the end-of-message token
		{"gpt-4-0613", 2},      // cl100k_base: the text alone
		{"claude-sonnet-4", 3}, // an approximation: scaled, no end token
	} {
		t.Run(tt.model, func(t *testing.T) {
			if got := c.Reply(tt.model, "hello world"); got.Tokens != tt.want {
				t.Errorf("%d tokens, want %d", got.Tokens, tt.want)
			}
		})
	}
}
