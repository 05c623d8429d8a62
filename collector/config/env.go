package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// expand replaces ${VAR} and ${VAR:-default} with values from env, and $$
// with $, before the text is parsed, so a variable can stand anywhere a
// value can. Whole-line comments are left alone so that documentation in
// the file may mention ${VAR} freely. A $ followed by anything else is
// kept as it is: a password such as "pa$word" needs no escaping.
//
// The text is substituted, not the parsed value, so a value with YAML
// syntax in it (": ", " #") changes the meaning of the line; secrets are
// better passed through ApplyEnv's variables, which are not parsed.
func expand(b []byte, env func(string) (string, bool)) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(b))
	for i, line := range bytes.SplitAfter(b, []byte("\n")) {
		if t := bytes.TrimLeft(line, " \t"); len(t) > 0 && t[0] == '#' {
			out.Write(line)
			continue
		}
		if err := expandLine(&out, line, i+1, env); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// expandLine writes one line of the file to out with its variables
// replaced; n is its line number, for errors.
func expandLine(out *bytes.Buffer, line []byte, n int, env func(string) (string, bool)) error {
	for {
		j := bytes.IndexByte(line, '$')
		if j < 0 || j == len(line)-1 {
			out.Write(line)
			return nil
		}
		out.Write(line[:j])
		rest := line[j+1:]
		switch rest[0] {
		case '$':
			out.WriteByte('$')
			line = rest[1:]
		case '{':
			end := bytes.IndexByte(rest, '}')
			if end < 0 {
				return fmt.Errorf("%w: line %d: ${ without a closing } (write $$ for a literal $)", ErrParse, n)
			}
			v, err := lookup(string(rest[1:end]), n, env)
			if err != nil {
				return err
			}
			out.WriteString(v)
			line = rest[end+1:]
		default:
			out.WriteByte('$')
			line = rest
		}
	}
}

// lookup resolves the inside of one ${...}. As in the shell, ":-" also
// covers a variable that is set but empty.
func lookup(expr string, n int, env func(string) (string, bool)) (string, error) {
	name, def, hasDef := strings.Cut(expr, ":-")
	if !isName(name) {
		return "", fmt.Errorf("%w: line %d: ${%s}: %q is not a variable name (letters, digits and _)", ErrParse, n, expr, name)
	}
	v, ok := env(name)
	switch {
	case hasDef && v == "":
		v = def
	case !ok:
		return "", fmt.Errorf("line %d: %w: %s (write ${%s:-default} to give a default)", n, ErrUnsetVar, name, name)
	}
	// A line break would add lines (and keys) to the file and shift every
	// line number after it. The value is not shown: it may be a secret.
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%w: line %d: the value of %s contains a line break", ErrParse, n, name)
	}
	return v, nil
}

// isName reports whether s is a shell variable name.
func isName(s string) bool {
	for i, r := range s {
		letter := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// overrides are the environment variables ApplyEnv reads, in the order of
// the package documentation. Each checks its value and sets its field,
// and returns what is wrong, or "".
var overrides = []struct {
	name  string
	apply func(c *Config, v string) string
}{
	{"LLMTAP_LISTEN", func(c *Config, v string) string {
		c.Listen = v
		return checkListen(v)
	}},
	{"LLMTAP_INGEST_TOKEN", func(c *Config, v string) string {
		c.IngestToken = NewSecret(v)
		return checkToken(c.IngestToken)
	}},
	{"LLMTAP_READ_TOKEN", func(c *Config, v string) string {
		c.ReadToken = NewSecret(v)
		return checkToken(c.ReadToken)
	}},
	{"LLMTAP_ADMIN_TOKEN", func(c *Config, v string) string {
		c.AdminToken = NewSecret(v)
		return checkToken(c.AdminToken)
	}},
	{"LLMTAP_CLICKHOUSE_ADDR", func(c *Config, v string) string {
		c.ClickHouse.Addr = v
		return checkAddr(v)
	}},
	{"LLMTAP_CLICKHOUSE_PASSWORD", func(c *Config, v string) string {
		c.ClickHouse.Password = NewSecret(v)
		return ""
	}},
	{"LLMTAP_REDIS_ADDR", func(c *Config, v string) string {
		var addrs []string
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		// It replaces both of the file's fields, so that one variable
		// points a collector elsewhere whatever the file says.
		if len(addrs) == 1 && c.Redis.MasterName == "" {
			c.Redis.Addr, c.Redis.Addrs = addrs[0], nil
		} else {
			c.Redis.Addr, c.Redis.Addrs = "", addrs
		}
		if len(addrs) == 0 {
			return fmt.Sprintf("%q holds no host:port", v)
		}
		var p []string
		for _, a := range addrs {
			if msg := checkAddr(a); msg != "" {
				p = append(p, msg)
			}
		}
		return strings.Join(p, "; ")
	}},
	{"LLMTAP_REDIS_PASSWORD", func(c *Config, v string) string {
		c.Redis.Password = NewSecret(v)
		return ""
	}},
	{"LLMTAP_REDIS_SENTINEL_PASSWORD", func(c *Config, v string) string {
		c.Redis.SentinelPassword = NewSecret(v)
		return ""
	}},
	{"LLMTAP_LOG_LEVEL", func(c *Config, v string) string {
		// Environments are often written LOG_LEVEL=DEBUG.
		c.Log.Level = strings.ToLower(v)
		return checkOneOf(c.Log.Level, logLevels)
	}},
}

// ApplyEnv sets the fields named in the package documentation from the
// environment variables that env (os.LookupEnv when nil) reports set and
// not empty. An error (ErrInvalid) names the variable, never a secret's
// value. Call Validate after the last change to the configuration.
func (c *Config) ApplyEnv(env func(string) (string, bool)) error {
	if env == nil {
		env = os.LookupEnv
	}
	var p problems
	for _, o := range overrides {
		if v, ok := env(o.name); ok && v != "" {
			p.add(o.name, o.apply(c, v))
		}
	}
	return p.err()
}
