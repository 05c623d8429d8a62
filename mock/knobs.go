package mock

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bounds of the knobs, to keep a typo from asking for a terabyte.
const (
	maxTokens = 1_000_000
	maxChunk  = 1 << 20
)

// knobHeader prefixes the knobs' header names: X-Mock-Ttft.
const knobHeader = "X-Mock-"

// knobs are one request's settings (see the package doc).
type knobs struct {
	ttft, gap time.Duration
	tokens    int
	chunk     int
	fail      int           // 0: none
	hang      time.Duration // 0: none; forever
	drop      int           // -1: none
}

// knobs reads the request's knobs over the server's defaults. A header
// X-Mock-<Name> wins over the query parameter <name>.
func (s *Server) knobs(r *http.Request) (knobs, error) {
	k := knobs{ttft: s.o.TTFT, gap: s.o.Gap, tokens: s.o.Tokens, chunk: DefaultChunk, drop: -1}
	for name := range r.Header {
		if rest, ok := strings.CutPrefix(name, knobHeader); ok && !knownKnob(strings.ToLower(rest)) {
			return k, fmt.Errorf("mock: unknown knob header %s (known: ttft, gap, tokens, chunk, fail, hang, drop)", name)
		}
	}
	query := r.URL.Query()
	value := func(name string) string {
		if v := r.Header.Get(knobHeader + name); v != "" {
			return v
		}
		return query.Get(name)
	}
	var err error
	if v := value("ttft"); v != "" {
		if k.ttft, err = duration("ttft", v); err != nil {
			return k, err
		}
	}
	if v := value("gap"); v != "" {
		if k.gap, err = duration("gap", v); err != nil {
			return k, err
		}
	}
	if v := value("tokens"); v != "" {
		if k.tokens, err = integer("tokens", v, 0, maxTokens); err != nil {
			return k, err
		}
	}
	if v := value("chunk"); v != "" {
		if k.chunk, err = integer("chunk", v, 2, maxChunk); err != nil {
			return k, err
		}
		if k.chunk%2 != 0 {
			return k, knobError("chunk", v, "want an even number of bytes (whole 16-bit samples)")
		}
	}
	if v := value("fail"); v != "" {
		if k.fail, err = integer("fail", v, 400, 599); err != nil {
			return k, err
		}
	}
	if v := value("hang"); v == "forever" {
		k.hang = forever
	} else if v != "" {
		if _, perr := time.ParseDuration(v); perr != nil {
			return k, knobError("hang", v, "want a duration such as 30s, or forever")
		}
		if k.hang, err = duration("hang", v); err != nil {
			return k, err
		}
	}
	if v := value("drop"); v != "" {
		if k.drop, err = integer("drop", v, 0, maxTokens); err != nil {
			return k, err
		}
		if k.drop > k.tokens {
			return k, knobError("drop", v, fmt.Sprintf("more than the %d tokens of this response (knob tokens)", k.tokens))
		}
	}
	return k, nil
}

func knownKnob(name string) bool {
	switch name {
	case "ttft", "gap", "tokens", "chunk", "fail", "hang", "drop":
		return true
	}
	return false
}

func duration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, knobError(name, v, "want a duration such as 150ms")
	case d < 0:
		return 0, knobError(name, v, "must not be negative")
	}
	return d, nil
}

func integer(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, knobError(name, v, fmt.Sprintf("want an integer from %d to %d", lo, hi))
	}
	return n, nil
}

func knobError(name, v, why string) error {
	return fmt.Errorf("mock: knob %s=%q: %s", name, v, why)
}
