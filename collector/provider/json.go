package provider

import (
	"bytes"
	"errors"
	"strconv"

	gojson "github.com/goccy/go-json"
)

// decode unmarshals b into v and reports whether b was JSON. A value of an
// unexpected type (a float count, a string where an object was expected)
// only leaves its field unset: encoding/json goes on with the rest, which is
// what a best-effort reader wants.
func decode(b []byte, v any) bool {
	err := gojson.Unmarshal(b, v)
	var typeErr *gojson.UnmarshalTypeError
	return err == nil || errors.As(err, &typeErr)
}

// nonEmpty records whether a JSON value carries something: a non-empty
// string, array or object. It copies nothing, unlike json.RawMessage.
type nonEmpty bool

// UnmarshalJSON implements json.Unmarshaler.
func (n *nonEmpty) UnmarshalJSON(b []byte) error {
	*n = nonEmpty(hasContent(b))
	return nil
}

// hasContent reports whether the JSON value b is a non-empty string, array
// or object. Numbers, booleans and null carry no generated content.
func hasContent(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) < 2 {
		return false
	}
	switch b[0] {
	case '"':
		return len(b) > 2
	case '[', '{':
		return len(bytes.TrimSpace(b[1:len(b)-1])) > 0
	}
	return false
}

// The byte scans below look for a key with its quotes ("usage") followed by
// a colon. Inside a JSON string every quote is escaped, so that sequence
// only occurs as a key: the scans are cheap stand-ins for decoding, used to
// skip events that cannot matter and to read bodies too cut to decode.

// valueAfter returns the bytes after the last occurrence of key (a JSON key
// with its quotes) and its colon, or nil.
func valueAfter(b []byte, key string) []byte {
	for end := len(b); ; {
		i := bytes.LastIndex(b[:end], []byte(key))
		if i < 0 {
			return nil
		}
		end = i
		if v, ok := afterColon(b[i+len(key):]); ok {
			return v
		}
	}
}

// firstValue returns the bytes after the first occurrence of key and its
// colon, or nil.
func firstValue(b []byte, key string) []byte {
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(key))
		if i < 0 {
			return nil
		}
		off += i + len(key)
		if v, ok := afterColon(b[off:]); ok {
			return v
		}
	}
}

// afterColon skips the colon that follows a key, and the spaces around it.
func afterColon(b []byte) ([]byte, bool) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return nil, false
	}
	return bytes.TrimLeft(b[1:], " \t\r\n"), true
}

// mentions reports whether b has key with a value other than null: a cheap
// test that spares decoding the many chunks that say "usage":null. A false
// positive only costs a decode.
func mentions(b []byte, key string) bool {
	for {
		v := firstValue(b, key)
		if len(v) == 0 {
			return false
		}
		if v[0] != 'n' {
			return true
		}
		b = v
	}
}

// intAfter reads the integer value of the last "key" in a cut body.
func intAfter(b []byte, key string) *int64 {
	v := valueAfter(b, key)
	n := 0
	for n < len(v) && '0' <= v[n] && v[n] <= '9' {
		n++
	}
	if n == 0 {
		return nil
	}
	x, err := strconv.ParseInt(string(v[:n]), 10, 64)
	if err != nil {
		return nil
	}
	return &x
}

// stringOrJSON is a value that is either a string (OpenAI's tool call
// arguments) or other JSON (Ollama's arguments, Anthropic's tool input, an
// object): the string's text, or the JSON as written. Empty values, null
// and numbers leave it empty.
type stringOrJSON []byte

// UnmarshalJSON implements json.Unmarshaler.
func (s *stringOrJSON) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var str string
		if gojson.Unmarshal(b, &str) == nil {
			*s = append((*s)[:0], str...)
		}
	case hasContent(b):
		*s = append((*s)[:0], b...)
	}
	return nil
}

// reuse empties a slice for decoding into again: zeroed, so that a field
// absent from the next document is not left from the last one.
func reuse[T any](s []T) []T {
	s = s[:cap(s)]
	clear(s)
	return s[:0]
}
