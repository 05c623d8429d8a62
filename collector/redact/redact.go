// Package redact masks secrets and, where asked, personal data in the
// bodies and chunks of a fact before it is stored: provider API keys,
// bearer tokens, cloud keys, private keys and JWTs always; e-mail
// addresses, phone, card and IBAN numbers and IP addresses per route and
// tenant; and patterns of the operator's own. A masked value keeps its
// kind and a short hash, [REDACTED:openai_key:3f2a], so that two rows that
// held the same value can still be matched without it.
//
// Secrets are found by scanners anchored on their fixed prefixes, so a
// body without any costs a few substring searches; personal data, opt-in,
// by scanners of their own shape (the Luhn check for cards, mod 97 for
// IBANs).
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/llmtap/llmtap/collector"
)

// Kinds of personal data, opt-in.
const (
	Email = "email"
	Phone = "phone"
	Card  = "card"
	IBAN  = "iban"
	IP    = "ip"
)

// PIIKinds are the personal data kinds a configuration may turn on.
var PIIKinds = []string{Email, Phone, Card, IBAN, IP}

// Pattern is an operator's pattern: what matches Regex is masked as Name.
type Pattern struct {
	Name  string
	Regex string
}

// Options say what is masked. PII kinds add up: those of every request,
// of its route and of its tenant.
type Options struct {
	// Secrets masks the built-in secrets (on by default in the
	// collector's configuration).
	Secrets bool
	PII     []string
	Routes  map[string][]string
	Tenants map[string][]string
	// Patterns apply to every request.
	Patterns []Pattern
}

// Redactor masks facts as its options say. It is safe for concurrent use.
type Redactor struct {
	secrets  bool
	pii      kindSet
	routes   map[string]kindSet
	tenants  map[string]kindSet
	patterns []pattern
}

type pattern struct {
	name string
	re   *regexp.Regexp
}

// kindSet is a set of PII kinds as bits.
type kindSet uint8

var kindBits = map[string]kindSet{Email: 1, Phone: 2, Card: 4, IBAN: 8, IP: 16}

func kinds(field string, names []string) (kindSet, error) {
	var s kindSet
	for _, n := range names {
		b, ok := kindBits[n]
		if !ok {
			return 0, fmt.Errorf("%s: unknown kind %q, want %s", field, n, strings.Join(PIIKinds, ", "))
		}
		s |= b
	}
	return s, nil
}

var patternName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// New checks the options and prepares a Redactor. Errors name the field.
func New(o Options) (*Redactor, error) {
	r := &Redactor{secrets: o.Secrets, routes: map[string]kindSet{}, tenants: map[string]kindSet{}}
	var err error
	if r.pii, err = kinds("pii", o.PII); err != nil {
		return nil, err
	}
	for route, names := range o.Routes {
		if r.routes[route], err = kinds("routes."+route+".pii", names); err != nil {
			return nil, err
		}
	}
	for tenant, names := range o.Tenants {
		if r.tenants[tenant], err = kinds("tenants."+tenant+".pii", names); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for i, p := range o.Patterns {
		field := fmt.Sprintf("patterns[%d]", i)
		if !patternName.MatchString(p.Name) {
			return nil, fmt.Errorf("%s.name %q: want lower-case letters, digits and _, starting with a letter, at most 32", field, p.Name)
		}
		if seen[p.Name] || kindBits[p.Name] != 0 || isSecretKind(p.Name) {
			return nil, fmt.Errorf("%s.name %q: taken by another pattern or a built-in kind", field, p.Name)
		}
		seen[p.Name] = true
		re, err := regexp.Compile(p.Regex)
		if err != nil {
			return nil, fmt.Errorf("%s.regex: %w", field, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("%s.regex %q: matches the empty string, so it would mask nothing or everything", field, p.Regex)
		}
		r.patterns = append(r.patterns, pattern{name: p.Name, re: re})
	}
	return r, nil
}

// Count is what Redact masked, by kind.
type Count = map[string]int

// Redact masks the fact's request and response bodies and chunks in
// place, and says what it masked. A value split across two chunks (a
// stream whose events carry raw text) is masked in both.
func (r *Redactor) Redact(f *collector.Fact) Count {
	pii := r.pii | r.routes[f.Route] | r.tenants[f.Tenant]
	if !r.secrets && pii == 0 && len(r.patterns) == 0 {
		return nil
	}
	var c Count
	s := scan{r: r, pii: pii, count: &c}
	f.RequestBody = s.mask(f.RequestBody, true)
	body := s.mask(f.ResponseBody, true)
	if body == f.ResponseBody && !s.anyChunkSpan(f.Chunks) {
		// Nothing in the body: the chunks are its events' data, except
		// where one value spans two of them (anyChunkSpan).
		return c
	}
	f.ResponseBody = body
	f.Chunks = s.maskChunks(f.Chunks)
	return c
}

// match is a value found in a text: [start, end) and its kind.
type match struct {
	start, end int
	kind       string
}

type scan struct {
	r     *Redactor
	pii   kindSet
	count *Count
}

// find lists the values to mask in text, in order, not overlapping.
func (s scan) find(text string) []match {
	var secrets, ms []match
	if s.r.secrets {
		secrets = findSecrets(text, nil)
	}
	if s.pii != 0 {
		ms = findPII(text, s.pii, ms)
	}
	for _, p := range s.r.patterns {
		for _, loc := range p.re.FindAllStringIndex(text, -1) {
			if loc[1] > loc[0] {
				ms = append(ms, match{loc[0], loc[1], p.name})
			}
		}
	}
	// A secret wins over what overlaps it: the token of
	// https://ghp_...@github.com is a GitHub token, not an address.
	if len(secrets) > 0 {
		kept := secrets
		for _, m := range ms {
			if !overlapsAny(m, secrets) {
				kept = append(kept, m)
			}
		}
		ms = kept
	}
	if len(ms) < 2 {
		return ms
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].start != ms[j].start {
			return ms[i].start < ms[j].start
		}
		return ms[i].end > ms[j].end
	})
	out := ms[:1]
	for _, m := range ms[1:] {
		if last := &out[len(out)-1]; m.start < last.end {
			if m.end > last.end {
				last.end = m.end
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

func overlapsAny(m match, ms []match) bool {
	for _, o := range ms {
		if m.start < o.end && o.start < m.end {
			return true
		}
	}
	return false
}

// mask replaces each value found in text by its marker; counted says
// whether they count in Redact's result.
func (s scan) mask(text string, counted bool) string {
	ms := s.find(text)
	if len(ms) == 0 {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	at := 0
	for _, m := range ms {
		b.WriteString(text[at:m.start])
		b.WriteString(s.marker(m.kind, text[m.start:m.end], counted))
		at = m.end
	}
	b.WriteString(text[at:])
	return b.String()
}

func (s scan) marker(kind, value string, counted bool) string {
	if counted {
		if *s.count == nil {
			*s.count = Count{}
		}
		(*s.count)[kind]++
	}
	return Marker(kind, value)
}

// Marker is what a value of a kind becomes: [REDACTED:kind:hash], the
// hash the first 16 bits of the value's SHA-256, in hex.
func Marker(kind, value string) string {
	sum := sha256.Sum256([]byte(value))
	return "[REDACTED:" + kind + ":" + hex.EncodeToString(sum[:2]) + "]"
}

// anyChunkSpan says whether a value spans two chunks. Only a boundary
// with a character of a value on both sides can cut one (JSON events meet
// as }{), and there a window around the boundary is searched.
func (s scan) anyChunkSpan(chunks []string) bool {
	const reach = 512 // longer than any value but a private key's block
	for i := 1; i < len(chunks); i++ {
		left, right := chunks[i-1], chunks[i]
		if left == "" || right == "" || !valueByte(left[len(left)-1]) || !valueByte(right[0]) {
			continue
		}
		if len(left) > reach {
			left = left[len(left)-reach:]
		}
		if len(right) > reach {
			right = right[:reach]
		}
		for _, m := range s.find(left + right) {
			if m.start < len(left) && m.end > len(left) {
				return true
			}
		}
	}
	return false
}

// valueByte says whether c can be inside a value that is masked.
func valueByte(c byte) bool {
	return c > ' ' && c != '"' && c != '{' && c != '}' && c != '[' && c != ']' && c != ',' && c != '<' && c != '>'
}

func join(chunks []string) (string, []int) {
	starts := make([]int, len(chunks)+1)
	var b strings.Builder
	for i, c := range chunks {
		starts[i] = b.Len()
		b.WriteString(c)
	}
	starts[len(chunks)] = b.Len()
	return b.String(), starts
}

// crosses says whether m spans the start of a chunk other than the first.
func crosses(m match, starts []int) bool {
	for _, st := range starts[1 : len(starts)-1] {
		if m.start < st && st < m.end {
			return true
		}
	}
	return false
}

// maskChunks masks the chunks as they are joined: a value within one
// chunk becomes its marker there; one across several gets the marker in
// the chunk where it starts and is cut from the others. Only the values
// across chunks count: the others were counted in the body.
func (s scan) maskChunks(chunks []string) []string {
	if len(chunks) == 0 {
		return chunks
	}
	joined, starts := join(chunks)
	ms := s.find(joined)
	if len(ms) == 0 {
		return chunks
	}
	out := make([]string, len(chunks))
	mi := 0
	for i := range chunks {
		lo, hi := starts[i], starts[i+1]
		var b strings.Builder
		at := lo
		for ; mi < len(ms) && ms[mi].start < hi; mi++ {
			m := ms[mi]
			if m.start >= lo {
				b.WriteString(joined[at:m.start])
				b.WriteString(s.marker(m.kind, joined[m.start:m.end], crosses(m, starts)))
			}
			// else the match began in an earlier chunk: its marker is there.
			at = m.end
			if m.end > hi {
				break // it goes on in the next chunk
			}
		}
		if at < hi {
			b.WriteString(joined[at:hi])
		}
		out[i] = b.String()
	}
	return out
}
