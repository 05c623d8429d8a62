// Package pricing prices requests: a dated table of each model's prices
// per million tokens (prices.yaml, embedded; the collector's YAML adds,
// overrides and prices per route), the lookup of a model's price, and the
// cost of a request's normalized usage, in integer nano-dollars so that
// sums are exact.
//
// A model is found by its id exactly (or one of its listed snapshots),
// then by its id without a date suffix (gpt-4o-mini-2024-07-18,
// claude-sonnet-4-5-20250929, claude-3-5-haiku-latest), then through the
// configured aliases (an Azure deployment, a vLLM served-model name). A
// route's own prices come first (its "*" entry prices every other model
// of the route); then, for each of those names in turn, the configured
// models before the table. A model found nowhere has no price: its cost
// is unknown, never 0.
package pricing

import (
	_ "embed"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/llmtap/llmtap/collector"
)

//go:embed prices.yaml
var defaultTable []byte

// DefaultTableName names the embedded table in errors.
const DefaultTableName = "prices.yaml (embedded)"

// Default returns the embedded price table.
func Default() (*Table, error) {
	return ParseTable(DefaultTableName, defaultTable)
}

// rate is a price in pico-dollars per token, which is US dollars per
// million tokens times a million: exact for prices of up to six decimals.
type rate int64

// rateOf converts US dollars per million tokens.
func rateOf(dollarsPerMillion float64) rate {
	return rate(math.Round(dollarsPerMillion * 1e6))
}

// cost is the price of n tokens, in nano-dollars.
func (r rate) cost(n int64) collector.Money {
	if n <= 0 || r <= 0 {
		return 0
	}
	return collector.Money((n*int64(r) + 500) / 1000)
}

// unset is the rate of a price not given: another one applies.
const unset rate = -1

// Rates are the prices of one tier of a model.
type Rates struct {
	Input      rate
	CacheRead  rate // unset: priced as Input
	CacheWrite rate // unset: priced as Input
	// CacheWrite1h prices the writes to a cache of an hour; unset:
	// priced as CacheWrite.
	CacheWrite1h rate
	Output       rate
	Reasoning    rate // unset: priced as Output
}

// Price is what a model costs.
type Price struct {
	ID     string
	Source string
	// Version is where the price comes from: the table's version, or
	// "config".
	Version string
	Rates
	// Tiers apply when a request's input is above their threshold, the
	// highest first.
	Tiers []Tier
}

// Tier is a long-context tier: above AboveInput prompt tokens, every
// token of the request is priced at its Rates.
type Tier struct {
	AboveInput int64
	Rates
}

// Cost prices a request's usage. Input counts every prompt token, of which
// CacheRead and CacheWrite are parts; Output counts every generated token,
// of which Reasoning is a part (see collector.Usage): each token is priced
// once, at the rate of its kind. ok is false without token counts.
func (p *Price) Cost(u collector.Usage) (c collector.Cost, ok bool) {
	if u.Input == nil && u.Output == nil {
		return c, false
	}
	in, out := value(u.Input), value(u.Output)
	cacheRead, cacheWrite, reasoning := value(u.CacheRead), value(u.CacheWrite), value(u.Reasoning)
	r := p.Rates
	for _, t := range p.Tiers {
		if in > t.AboveInput {
			r = t.Rates
			break
		}
	}
	uncached := max(in-cacheRead-cacheWrite, 0)
	visible := max(out-reasoning, 0)
	hour := min(value(u.CacheWrite1h), cacheWrite)
	write := or(r.CacheWrite, r.Input)
	c.Input = r.Input.cost(uncached)
	c.CacheRead = or(r.CacheRead, r.Input).cost(cacheRead)
	c.CacheWrite = write.cost(cacheWrite-hour) + or(r.CacheWrite1h, write).cost(hour)
	c.Output = r.Output.cost(visible)
	c.Reasoning = or(r.Reasoning, r.Output).cost(reasoning)
	c.Total = c.Input + c.CacheRead + c.CacheWrite + c.Output + c.Reasoning
	c.PriceVersion = p.Version
	return c, true
}

func value(p *int64) int64 {
	if p == nil || *p < 0 {
		return 0
	}
	return *p
}

func or(r, fallback rate) rate {
	if r != unset {
		return r
	}
	return fallback
}

// Pricer finds the price of a route's model. It is safe for concurrent
// use: it does not change after New.
type Pricer struct {
	table   map[string]*Price            // the table's ids and snapshots
	models  map[string]*Price            // configured models
	routes  map[string]map[string]*Price // route -> id ("*" for any) -> price
	aliases map[string]string
}

// Config is the collector's pricing configuration.
type Config struct {
	// Models add to or override the table's entries.
	Models []Entry
	// Routes price some routes' models apart; an entry with id "*" prices
	// every model of its route.
	Routes map[string][]Entry
	// Aliases map a model name (an Azure deployment, a served-model name)
	// to a priced id.
	Aliases map[string]string
}

// New returns a Pricer for a table and a configuration.
func New(t *Table, cfg Config) *Pricer {
	p := &Pricer{table: map[string]*Price{}, models: map[string]*Price{}, routes: map[string]map[string]*Price{}, aliases: map[string]string{}}
	if t != nil {
		for i := range t.Models {
			e := &t.Models[i]
			price := e.price(t.Version)
			p.table[strings.ToLower(e.ID)] = price
			for _, s := range e.Snapshots {
				p.table[strings.ToLower(s)] = price
			}
		}
	}
	for i := range cfg.Models {
		e := &cfg.Models[i]
		price := e.price(ConfigVersion)
		p.models[strings.ToLower(e.ID)] = price
		for _, s := range e.Snapshots {
			p.models[strings.ToLower(s)] = price
		}
	}
	for route, entries := range cfg.Routes {
		m := map[string]*Price{}
		for i := range entries {
			m[strings.ToLower(entries[i].ID)] = entries[i].price(ConfigVersion)
		}
		p.routes[route] = m
	}
	for from, to := range cfg.Aliases {
		p.aliases[strings.ToLower(from)] = strings.ToLower(to)
	}
	return p
}

// ConfigVersion is the Version of prices from the collector's YAML.
const ConfigVersion = "config"

// snapshotSuffix is a dated snapshot's suffix, or "-latest".
var snapshotSuffix = regexp.MustCompile(`-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$`)

// Lookup returns the price of a model on a route, or nil.
func (p *Pricer) Lookup(route, model string) *Price {
	m := strings.ToLower(strings.TrimSpace(model))
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:] // openai/gpt-4o, as gateways name them
	}
	if m == "" {
		return nil
	}
	candidates := []string{m}
	if base := snapshotSuffix.ReplaceAllString(m, ""); base != m {
		candidates = append(candidates, base)
	}
	if to, ok := p.aliases[m]; ok {
		candidates = append(candidates, to)
	}
	if r := p.routes[route]; r != nil {
		for _, c := range candidates {
			if price := r[c]; price != nil {
				return price
			}
		}
		if price := r["*"]; price != nil {
			return price
		}
	}
	for _, c := range candidates {
		for _, set := range []map[string]*Price{p.models, p.table} {
			if price := set[c]; price != nil {
				return price
			}
		}
	}
	return nil
}

// Price prices a request: its cost, or ok false when its model has no
// price or it has no token counts.
func (p *Pricer) Price(route, model string, u collector.Usage) (collector.Cost, bool) {
	price := p.Lookup(route, model)
	if price == nil {
		return collector.Cost{}, false
	}
	return price.Cost(u)
}

// String describes a price for logs and errors.
func (p *Price) String() string {
	return fmt.Sprintf("%s (%s)", p.ID, p.Version)
}
