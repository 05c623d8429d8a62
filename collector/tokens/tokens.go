// Package tokens counts the tokens of a prompt the way the provider's
// tokenizer would, with OpenAI's BPE encodings (tiktoken-go, vocabularies
// compiled in, nothing fetched at run time): o200k_base and cl100k_base
// for the OpenAI models that use them, and o200k_base as a documented
// approximation, scaled up by approximationMargin, for every other model
// (Claude, Llama, Qwen, DeepSeek, Mistral), whose tokenizers are not
// public or not BPE-compatible. docs/collector.md has the method and its
// measured error.
package tokens

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/tiktoken-go/tokenizer"
)

// Encodings.
const (
	O200k  = "o200k_base"
	Cl100k = "cl100k_base"
)

// DefaultEncodings maps model name prefixes to encodings (the longest
// matching prefix wins): OpenAI's current families use o200k_base, GPT-4
// and GPT-3.5 cl100k_base.
func DefaultEncodings() map[string]string {
	return map[string]string{
		"gpt-4o":         O200k,
		"chatgpt-4o":     O200k,
		"gpt-4.1":        O200k,
		"gpt-4.5":        O200k,
		"gpt-5":          O200k,
		"gpt-oss":        O200k,
		"o1":             O200k,
		"o3":             O200k,
		"o4":             O200k,
		"gpt-4":          Cl100k,
		"gpt-3.5":        Cl100k,
		"text-embedding": Cl100k,
	}
}

// Per-message framing of OpenAI's chat models: each message costs a few
// tokens besides its text, and every reply is primed with a few more.
const (
	tokensPerMessage = 3
	tokensForReply   = 3
)

// approximationMargin scales a count made with an encoding that is not
// the model's own: other tokenizers cut text finer than o200k_base (more
// tokens for the same text), and a reservation must not fall short.
const approximationMargin = 1.25

// maxExact is how many bytes of prompt text are tokenized; the rest is
// counted pro rata, at the rate of what was tokenized, so that a huge
// prompt costs a bounded amount of CPU on the limit check's path.
const maxExact = 32 << 10

// Counter counts prompts. It is safe for concurrent use.
type Counter struct {
	prefixes []string // longest first
	byPrefix map[string]string
	encoders map[string]*encoder
}

// Count is a prompt's token count and how it was made.
type Count struct {
	Tokens int64
	// Encoding is the encoding used; Approximate is set when it is not
	// the model's own (the count is then scaled by approximationMargin).
	Encoding    string
	Approximate bool
	// Extrapolated is set when part of the text was counted pro rata.
	Extrapolated bool
}

// New returns a Counter with DefaultEncodings and extra, which adds or
// overrides prefixes (a collector's configuration).
func New(extra map[string]string) (*Counter, error) {
	fallback, err := encoderOf(O200k)
	if err != nil {
		return nil, err
	}
	c := &Counter{byPrefix: map[string]string{}, encoders: map[string]*encoder{O200k: fallback}}
	for p, e := range DefaultEncodings() {
		c.byPrefix[p] = e
	}
	for p, e := range extra {
		c.byPrefix[strings.ToLower(p)] = e
	}
	for p, e := range c.byPrefix {
		c.prefixes = append(c.prefixes, p)
		if _, ok := c.encoders[e]; ok {
			continue
		}
		enc, err := encoderOf(e)
		if err != nil {
			return nil, fmt.Errorf("tokens: model prefix %q: %w", p, err)
		}
		c.encoders[e] = enc
	}
	sort.Slice(c.prefixes, func(i, j int) bool {
		if len(c.prefixes[i]) != len(c.prefixes[j]) {
			return len(c.prefixes[i]) > len(c.prefixes[j])
		}
		return c.prefixes[i] < c.prefixes[j]
	})
	return c, nil
}

// encoderOf loads an encoding by name.
func encoderOf(name string) (*encoder, error) {
	var (
		id   tokenizer.Encoding
		next splitter
	)
	switch name {
	case O200k:
		id, next = tokenizer.O200kBase, nextO200k
	case Cl100k:
		id, next = tokenizer.Cl100kBase, nextCl100k
	default:
		return nil, fmt.Errorf("unknown encoding %q: want %s or %s", name, O200k, Cl100k)
	}
	codec, err := tokenizer.Get(id)
	if err != nil {
		return nil, err
	}
	return newEncoder(codec, next), nil
}

// encoding returns the encoding of a model and whether it is the model's
// own. Provider prefixes ("openai/gpt-4o", Azure deployments aside) are
// looked through.
func (c *Counter) encoding(model string) (string, bool) {
	m := strings.ToLower(model)
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	for _, p := range c.prefixes {
		if strings.HasPrefix(m, p) {
			return c.byPrefix[p], true
		}
	}
	return O200k, false
}

// Prompt is what a prompt's token count is made of.
type Prompt struct {
	// Texts are the prompt's texts, tokenized one by one.
	Texts []string
	// Messages is the number of its messages, each framed by a few tokens
	// (0 for a prompt that is not a chat).
	Messages int
	// Framing is the tokens the provider adds that are in none of the
	// texts, such as the preamble of its tool definitions. It is the
	// provider's own count: no encoding's margin applies.
	Framing int64
}

// Text counts the tokens of one text, such as a response's output.
func (c *Counter) Text(model, text string) Count {
	return c.Prompt(model, Prompt{Texts: []string{text}})
}

// Reply counts the tokens of a model's reply: its text and, for models
// whose own encoding is o200k_base, the end-of-message token those
// models' usage counts more often than not (measured on the accuracy
// corpus, docs/collector.md; cl100k_base models' usage does not).
func (c *Counter) Reply(model, text string) Count {
	n := c.Text(model, text)
	if !n.Approximate && n.Encoding == O200k {
		n.Tokens++
	}
	return n
}

// Prompt counts the tokens of a prompt.
func (c *Counter) Prompt(model string, p Prompt) Count {
	texts, messages := p.Texts, p.Messages
	enc, own := c.encoding(model)
	encoder := c.encoders[enc]
	out := Count{Encoding: enc, Approximate: !own}
	var counted, total, tokens int64
	for _, t := range texts {
		total += int64(len(t))
		if room := int64(maxExact) - counted; room > 0 && t != "" {
			if int64(len(t)) > room {
				t = cutUTF8(t, int(room))
			}
			n, err := encoder.count(t)
			if err != nil {
				// Invalid UTF-8 is replaced by the codec; any other error
				// leaves the text to the pro-rata count.
				continue
			}
			tokens += int64(n)
			counted += int64(len(t))
		}
	}
	if rest := total - counted; rest > 0 {
		out.Extrapolated = true
		rate := 0.25 // tokens per byte of English text, when nothing was counted
		if counted > 0 {
			rate = float64(tokens) / float64(counted)
		}
		tokens += int64(math.Ceil(float64(rest) * rate))
	}
	if messages > 0 {
		tokens += int64(messages*tokensPerMessage + tokensForReply)
	}
	if out.Approximate {
		tokens = int64(math.Ceil(float64(tokens) * approximationMargin))
	}
	out.Tokens = tokens + p.Framing
	return out
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
