package pricing

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every error about a price table or entry.
var ErrInvalid = errors.New("invalid price")

// Table is a price table as written (prices.yaml).
type Table struct {
	// Version dates the table; each request's cost records it.
	Version string  `yaml:"version"`
	Models  []Entry `yaml:"models"`
}

// Prices are US dollars per million tokens of each kind, as written; a
// price left out falls back to another (see Rates).
type Prices struct {
	Input     *float64 `yaml:"input"`
	CacheRead *float64 `yaml:"cache_read"`
	// CacheWrite is Anthropic's five-minute cache write; CacheWrite1h its
	// one-hour write (usage's CacheWrite1h).
	CacheWrite   *float64 `yaml:"cache_write"`
	CacheWrite1h *float64 `yaml:"cache_write_1h"`
	Output       *float64 `yaml:"output"`
	Reasoning    *float64 `yaml:"reasoning"`
}

// priceKeys are Prices' keys.
var priceKeys = []string{"input", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning"}

// Entry is one model's prices, as written in a table or the collector's
// YAML.
type Entry struct {
	ID        string   `yaml:"id"`
	Provider  string   `yaml:"provider"`
	Snapshots []string `yaml:"snapshots"`
	Source    string   `yaml:"source"`
	Prices    `yaml:",inline"`
	Tiers     []TierEntry `yaml:"tiers"`

	// Line is where the entry starts in its file.
	Line int `yaml:"-"`
}

// TierEntry is a long-context tier as written.
type TierEntry struct {
	AboveInputTokens int64 `yaml:"above_input_tokens"`
	Prices           `yaml:",inline"`
}

// UnmarshalYAML implements yaml.Unmarshaler: it keeps the entry's line
// and refuses unknown keys.
func (e *Entry) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, append([]string{"id", "provider", "snapshots", "source", "tiers"}, priceKeys...)...); err != nil {
		return err
	}
	type plain Entry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*e = Entry(p)
	e.Line = n.Line
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler: it refuses unknown keys.
func (t *TierEntry) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, append([]string{"above_input_tokens"}, priceKeys...)...); err != nil {
		return err
	}
	type plain TierEntry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*t = TierEntry(p)
	return nil
}

// knownKeys refuses a mapping's keys that are not among known: a
// misspelt price left out would price its tokens at another rate.
func knownKeys(n *yaml.Node, known ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %w: want a mapping of prices", n.Line, ErrInvalid)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			return fmt.Errorf("line %d: %w: unknown key %q (known: %s)", k.Line, ErrInvalid, k.Value, strings.Join(known, ", "))
		}
	}
	return nil
}

// maxPrice bounds a price per million tokens: a typo (25000 for 2.5)
// would price every request at thousands of dollars.
const maxPrice = 10000

// Check validates an entry; the error names the field.
func (e *Entry) Check() error {
	if strings.TrimSpace(e.ID) == "" {
		return fieldError("id", "is required")
	}
	if err := e.check("", "is required (US dollars per million input tokens)",
		"is required (US dollars per million output tokens; 0 for embeddings)"); err != nil {
		return err
	}
	last := int64(0)
	for i, t := range e.Tiers {
		at := fmt.Sprintf("tiers[%d].", i)
		if t.AboveInputTokens <= last {
			return fieldError(at+"above_input_tokens", "must be above 0 and above the tier before's")
		}
		last = t.AboveInputTokens
		if err := t.check(at, "a tier needs input and output", "a tier needs input and output"); err != nil {
			return err
		}
	}
	return nil
}

// check validates prices whose fields are named after prefix; input and
// output are required, with the messages given.
func (p *Prices) check(prefix, needInput, needOutput string) error {
	if p.Input == nil {
		return fieldError(prefix+"input", needInput)
	}
	if p.Output == nil {
		return fieldError(prefix+"output", needOutput)
	}
	for i, v := range p.all() {
		if err := checkPrice(prefix+priceKeys[i], v); err != nil {
			return err
		}
	}
	return nil
}

// all are the prices in priceKeys' order.
func (p *Prices) all() []*float64 {
	return []*float64{p.Input, p.CacheRead, p.CacheWrite, p.CacheWrite1h, p.Output, p.Reasoning}
}

func checkPrice(name string, v *float64) error {
	if v == nil {
		return nil
	}
	if math.IsNaN(*v) || *v < 0 || *v > maxPrice {
		return fieldError(name, fmt.Sprintf("%v is not a price in US dollars per million tokens (0 to %d)", *v, maxPrice))
	}
	return nil
}

// FieldError is an entry's field that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

// Unwrap makes a FieldError an ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldError(field, msg string) error { return &FieldError{Field: field, Msg: msg} }

// ParseTable reads a price table; name is its file, for errors, which say
// the line and field: "prices.yaml:12: models[3].input is required".
func ParseTable(name string, data []byte) (*Table, error) {
	var t Table
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrInvalid, err)
	}
	if strings.TrimSpace(t.Version) == "" {
		return nil, fmt.Errorf("%s: %w: version is required", name, ErrInvalid)
	}
	if len(t.Models) == 0 {
		return nil, fmt.Errorf("%s: %w: models: the table has none", name, ErrInvalid)
	}
	seen := map[string]int{}
	for i := range t.Models {
		e := &t.Models[i]
		if err := e.Check(); err != nil {
			return nil, fmt.Errorf("%s:%d: models[%d].%w", name, e.Line, i, err)
		}
		for _, id := range append([]string{e.ID}, e.Snapshots...) {
			id = strings.ToLower(id)
			if j, dup := seen[id]; dup {
				return nil, fmt.Errorf("%s:%d: models[%d].id: %w: %q is priced twice, also by models[%d]", name, e.Line, i, ErrInvalid, id, j)
			}
			seen[id] = i
		}
	}
	return &t, nil
}

// price converts a checked entry.
func (e *Entry) price(version string) *Price {
	p := &Price{ID: e.ID, Source: e.Source, Version: version, Rates: e.rates()}
	for _, t := range e.Tiers {
		p.Tiers = append(p.Tiers, Tier{AboveInput: t.AboveInputTokens, Rates: t.rates()})
	}
	// The highest threshold first: the first a request is above applies.
	slices.SortFunc(p.Tiers, func(a, b Tier) int { return int(b.AboveInput - a.AboveInput) })
	return p
}

// rates converts checked prices.
func (p *Prices) rates() Rates {
	f := func(v *float64) rate {
		if v == nil {
			return unset
		}
		return rateOf(*v)
	}
	return Rates{Input: f(p.Input), CacheRead: f(p.CacheRead), CacheWrite: f(p.CacheWrite), CacheWrite1h: f(p.CacheWrite1h),
		Output: f(p.Output), Reasoning: f(p.Reasoning)}
}
