package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("500ms", "15s", "720h"). Convert with time.Duration(d).
type Duration time.Duration

// String prints the duration without the zero minutes and seconds that
// time.Duration adds ("720h", not "720h0m0s"), so the effective-config
// line reads like the file.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Set parses s, so a command line can bind the field with flag.Var.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a number with a unit: ns, us, ms, s, m, h; e.g. 500ms, 15s, 720h)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the String form; JSON and YAML encoders use it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML reads a scalar such as "1s". A bad value is reported with
// its position, and Load names the field from that position.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{line: n.Line, column: n.Column, msg: "a duration must be a single value such as 15s"}
	}
	if err := d.Set(n.Value); err != nil {
		return &valueError{line: n.Line, column: n.Column, msg: err.Error()}
	}
	return nil
}

// Size is a number of bytes, written in YAML as a plain integer or with a
// unit: SI (kB, MB, GB, TB: powers of 1000) or IEC (KiB, MiB, GiB, TiB:
// powers of 1024), case-insensitive. Both families are accepted because
// operators write both, and "16MB" silently meaning 16 MiB would be a
// lie. Convert with int64(s).
type Size int64

// sizeUnits maps a lower-case unit to its multiplier. Units that are not
// in the table, such as a bare "k" or "m", are rejected: nobody can tell
// whether they mean 1000 or 1024.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// Units for String, largest multiplier first, the two families
// interleaved: the first that divides a size exactly gives the shortest
// number (2TB, not 1953125000KiB).
var sizeNames = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9},
	{"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"kB", 1e3},
}

// ParseSize reads "16MiB", "512 KiB", "1GB" or "1048576".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("invalid size %q (want a whole number of bytes with an optional unit: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB; e.g. 16MiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * mult), nil
}

// String prints the size in the largest unit that divides it exactly, so
// it parses back to the same value.
func (s Size) String() string {
	if s != 0 {
		for _, u := range sizeNames {
			if int64(s)%u.mult == 0 {
				return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// Set parses v, so a command line can bind the field with flag.Var.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// MarshalText writes the String form; JSON and YAML encoders use it.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalYAML reads a scalar such as 16MiB or 1048576. A bad value is
// reported with its position, and Load names the field from that position.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{line: n.Line, column: n.Column, msg: "a size must be a single value such as 16MiB"}
	}
	if err := s.Set(n.Value); err != nil {
		return &valueError{line: n.Line, column: n.Column, msg: err.Error()}
	}
	return nil
}

// redacted stands in for a secret's value wherever it could be printed.
const redacted = "[redacted]"

// Secret is a string that never prints: every way Go formats, encodes or
// logs a value shows "[redacted]" (or "" when the secret is empty, so an
// unset token is visible as unset). The value sits in an unexported field
// so that reflection-based encoders cannot reach it either; code that
// needs it calls Reveal, which is easy to find in review.
type Secret struct {
	value string
}

// NewSecret wraps v, for code that sets a secret without a config file.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return s.value }

// String returns "[redacted]", or "" when the secret is empty.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// GoString is String: %#v must not print the value either.
func (s Secret) GoString() string { return s.String() }

// Format prints String for every verb. Without it, verbs such as %x or %q
// could still reach fields through fmt's fallbacks; %q keeps its quotes.
func (s Secret) Format(f fmt.State, verb rune) {
	out := s.String()
	if verb == 'q' {
		out = strconv.Quote(out)
	}
	_, _ = f.Write([]byte(out))
}

// MarshalText returns String.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON returns String as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML returns String.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue returns String, for slog handlers of every kind.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// UnmarshalYAML reads a scalar verbatim, whatever its YAML type: a
// password of 0x1F or 12345 stays the text that was written. Errors never
// include the value.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{line: n.Line, column: n.Column, msg: "a secret must be a single string value"}
	}
	s.value = n.Value
	return nil
}

// valueError is a bad scalar found while decoding. yaml.v3 returns it
// unchanged from Decode, and Load turns its position into a field path.
type valueError struct {
	line, column int
	msg          string
}

func (e *valueError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }
