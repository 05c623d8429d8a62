package limits

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Policy is a tenant's limits, as written in the configuration file (YAML)
// and in the admin API (JSON): the same keys in both.
//
// A route listed under Routes gets its own limits and its own quotas for
// that route: they replace the tenant's limits there (a route entry without
// tokens has no token limit), and inherit only the failure mode.
type Policy struct {
	Requests    *RequestLimit      `json:"requests,omitempty" yaml:"requests"`
	Tokens      *TokenLimit        `json:"tokens,omitempty" yaml:"tokens"`
	Spend       *SpendLimit        `json:"spend,omitempty" yaml:"spend"`
	FailureMode FailureMode        `json:"failure_mode,omitempty" yaml:"failure_mode"`
	Routes      map[string]*Policy `json:"routes,omitempty" yaml:"routes"`
}

// RequestLimit allows Limit requests per Period, Burst of them at once
// (0: Limit).
type RequestLimit struct {
	Limit  int64  `json:"limit" yaml:"limit"`
	Period Period `json:"period" yaml:"period"`
	Burst  int64  `json:"burst,omitempty" yaml:"burst"`
}

// TokenLimit allows Limit tokens per Period, counted as Count says.
type TokenLimit struct {
	Limit  int64      `json:"limit" yaml:"limit"`
	Period Period     `json:"period" yaml:"period"`
	Count  TokenCount `json:"count,omitempty" yaml:"count"`
}

// SpendLimit allows Limit US dollars of spend per Period: each request
// reserves its worst-case cost (its prompt at the input price, its output
// bound at the output price) and settles to its real cost.
type SpendLimit struct {
	Limit  float64 `json:"limit" yaml:"limit"`
	Period Period  `json:"period" yaml:"period"`
}

// Nanos is the limit in nano-dollars.
func (l *SpendLimit) Nanos() int64 { return int64(math.Round(l.Limit * 1e9)) }

// maxSpendLimit bounds a spend limit: Redis counts money in nano-dollars
// in doubles, exact up to 2^53 of them (about 9 million dollars).
const maxSpendLimit = 1_000_000

// TokenCount says which tokens a token limit counts.
type TokenCount string

// Token counts.
const (
	CountTotal  TokenCount = "total"  // input and output (the default)
	CountOutput TokenCount = "output" // output only
)

// FailureMode says what a check does when the limits cannot be checked
// (Redis down or too slow).
type FailureMode string

// Failure modes.
const (
	FailOpen   FailureMode = "open"   // allow, and count it (the default)
	FailClosed FailureMode = "closed" // deny with 503
)

// Period is a duration written as a Go duration string ("1m", "24h") in
// JSON and YAML.
type Period time.Duration

// MarshalText writes the duration as time.Duration prints it.
func (p Period) MarshalText() ([]byte, error) { return []byte(time.Duration(p).String()), nil }

// UnmarshalYAML reads a Go duration string, and names the line of a bad one.
func (p *Period) UnmarshalYAML(n *yaml.Node) error {
	if err := p.UnmarshalText([]byte(n.Value)); err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: period %q: want a duration such as 1s, 1m or 24h", n.Line, n.Value)
	}
	return nil
}

// UnmarshalText reads a Go duration string.
func (p *Period) UnmarshalText(b []byte) error {
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("period %q: want a duration such as 1s, 1m or 24h", b)
	}
	*p = Period(d)
	return nil
}

// Limits of a policy's values.
const (
	maxRouteName = 128
	minPeriod    = time.Millisecond
	maxPeriod    = 366 * 24 * time.Hour
)

// Problems returns what is wrong with p, each as "path: problem" with the
// field path under prefix (such as "limits.default" or "" for an API
// body), sorted so that the answer is the same every time.
func (p *Policy) Problems(prefix string) []string {
	var out []string
	p.problems(join(prefix, ""), true, &out)
	sort.Strings(out)
	return out
}

func (p *Policy) problems(prefix string, top bool, out *[]string) {
	add := func(field, format string, args ...any) {
		*out = append(*out, join(prefix, field)+": "+fmt.Sprintf(format, args...))
	}
	if r := p.Requests; r != nil {
		if r.Limit < 1 {
			add("requests.limit", "%d: want at least 1 (leave requests out for no request limit)", r.Limit)
		}
		checkPeriod(add, "requests.period", r.Period)
		if r.Burst < 0 {
			add("requests.burst", "%d: want 0 (the limit) or more", r.Burst)
		}
	}
	if t := p.Tokens; t != nil {
		if t.Limit < 1 {
			add("tokens.limit", "%d: want at least 1 (leave tokens out for no token limit)", t.Limit)
		}
		checkPeriod(add, "tokens.period", t.Period)
		switch t.Count {
		case "", CountTotal, CountOutput:
		default:
			add("tokens.count", "%q: want total or output", t.Count)
		}
	}
	if sp := p.Spend; sp != nil {
		if math.IsNaN(sp.Limit) || sp.Limit < 1e-6 || sp.Limit > maxSpendLimit {
			add("spend.limit", "%v: want US dollars from 0.000001 to %d (leave spend out for no budget)", sp.Limit, maxSpendLimit)
		}
		checkPeriod(add, "spend.period", sp.Period)
	}
	switch p.FailureMode {
	case "", FailOpen, FailClosed:
	default:
		add("failure_mode", "%q: want open or closed", p.FailureMode)
	}
	if len(p.Routes) > 0 && !top {
		add("routes", "routes cannot be nested in a route")
		return
	}
	for name, rp := range p.Routes {
		switch {
		case name == "" || len(name) > maxRouteName:
			add("routes", "route name %q: want 1 to %d characters", name, maxRouteName)
		case rp == nil:
			add("routes."+name, "empty: give requests, tokens or spend, or remove the route")
		default:
			rp.problems(join(prefix, "routes."+name), false, out)
		}
	}
}

func checkPeriod(add func(string, string, ...any), field string, p Period) {
	if d := time.Duration(p); d < minPeriod || d > maxPeriod {
		add(field, "%q: want a duration from %s to %s, such as 1m", d, minPeriod, maxPeriod)
	}
}

func join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// ParsePolicy decodes a JSON policy strictly (an unknown key is an error)
// and validates it; the error says what is wrong and where.
func ParsePolicy(b []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("policy: one JSON object expected, more follows")
	}
	if probs := p.Problems(""); len(probs) > 0 {
		return nil, fmt.Errorf("policy: %s", strings.Join(probs, "; "))
	}
	return &p, nil
}

// limited says whether the policy limits anything.
func (p *Policy) limited() bool {
	return p != nil && (p.Requests != nil || p.Tokens != nil || p.Spend != nil)
}
