package tokens

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"
)

// splitSeeds are texts where the expressions' alternatives meet.
var splitSeeds = []string{
	"Hello world! How's it going? I'LL be there, they'Re fine, we've done it.",
	"   leading and trailing spaces   ",
	"line one\nline two\r\n\r\n  indented\n\n\n",
	"tabs\tand\u00a0no-break\u2003spaces \t\n end",
	"numbers 1234567 3.14159 1,000,000 ①②③ ٣٤٥",
	"paths /usr/local/bin and urls https://example.com/a/b?c=d//\n//",
	"code: func main() { fmt.Println(\"hi\") }\n\t// comment\n",
	"CamelCaseWords and ALLCAPS and iPhone McDonald's",
	"日本語のテキスト、中文文本。한국어 텍스트",
	"combining: e\u0301te\u0301 n\u0303 a\u0308\u0308\u0308 x\u0300",
	"emoji 👋🏽 family 👨‍👩‍👧 flags 🇫🇷 ✨",
	"Ǆungla ǅemal ǈj Lt titlecase ᾈ greek",
	"ʰmodifier ʲletters ˈstress ꜰsmallcap",
	"Arabic نص عربي and Hebrew טקסט עברי",
	"'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D 'x ' '",
	"{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
	"!!!???...---***\n\n",
	"a\u200bzero\u200dwidth\ufeffbom",
}

// FuzzSplitAgrees: the hand-cut pieces count as the library counts the
// whole text, for both encodings.
func FuzzSplitAgrees(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add(s)
	}
	codecs := map[string]tokenizer.Codec{}
	encoders := map[string]*encoder{}
	for _, name := range []string{O200k, Cl100k} {
		e, err := encoderOf(name)
		if err != nil {
			f.Fatal(err)
		}
		codecs[name], encoders[name] = e.codec, e
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // the encoder leaves invalid UTF-8 to the library
		}
		if strings.ContainsRune(s, 0x7f) {
			// The library's matcher never starts a piece at DEL, and so
			// drops it before a symbol ("\x7f$a" gives "$a"): its own
			// bug, which the expression and OpenAI's tokenizer have not.
			return
		}
		for name, e := range encoders {
			want, err := codecs[name].Count(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.count(s)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: %d tokens, the library counts %d, in %q", name, got, want, s)
			}
		}
	})
}

// TestSplitPieces: the pieces of a few texts, as the expressions cut them.
func TestSplitPieces(t *testing.T) {
	for _, tt := range []struct {
		next splitter
		text string
		want []string
	}{
		{nextO200k, "I'LL say: Hello  world\n\n", []string{"I'LL", " say", ":", " Hello", " ", " world", "\n\n"}},
		{nextO200k, "iPhone 12345 a/b//\n", []string{"i", "Phone", " ", "123", "45", " a", "/b", "//\n"}},
		{nextCl100k, "I'LL say: Hello  world\n\n", []string{"I", "'LL", " say", ":", " Hello", " ", " world", "\n\n"}},
		{nextCl100k, "iPhone 12345", []string{"iPhone", " ", "123", "45"}},
	} {
		var got []string
		for i := 0; i < len(tt.text); {
			j := tt.next(tt.text, i)
			got = append(got, tt.text[i:j])
			i = j
		}
		if len(got) != len(tt.want) {
			t.Errorf("%q: pieces %q, want %q", tt.text, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%q: pieces %q, want %q", tt.text, got, tt.want)
				break
			}
		}
	}
}
