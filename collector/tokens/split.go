package tokens

import (
	"unicode"
	"unicode/utf8"
)

// An encoding first cuts text into pieces with a regular expression, then
// merges each piece's bytes into tokens. The library runs the expressions
// on a backtracking engine that allocates for every piece; the functions
// here cut the same pieces by hand, alternative by alternative, in the
// expressions' order (FuzzSplitAgrees holds them to the library):
//
// o200k_base:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// cl100k_base:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//	| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+

// splitter returns the end of the piece that starts at i (i < len(s)).
type splitter func(s string, i int) int

// nextO200k cuts o200k_base's pieces.
func nextO200k(s string, i int) int {
	r, n := runeAt(s, i)
	// The two word alternatives, each with its optional prefix first.
	if prefix(r) {
		if j := upperThenLower(s, i+n); j > i+n {
			return contraction(s, j)
		}
	}
	if j := upperThenLower(s, i); j > i {
		return contraction(s, j)
	}
	if prefix(r) {
		if j := upperAndLower(s, i+n); j > i+n {
			return contraction(s, j)
		}
	}
	if j := upperAndLower(s, i); j > i {
		return contraction(s, j)
	}
	if j := digits(s, i); j > i {
		return j
	}
	if j := punctuation(s, i, true); j > i {
		return j
	}
	return spaces(s, i)
}

// nextCl100k cuts cl100k_base's pieces.
func nextCl100k(s string, i int) int {
	if j := contraction(s, i); j > i {
		return j
	}
	r, n := runeAt(s, i)
	if prefix(r) {
		if j := letters(s, i+n); j > i+n {
			return j
		}
	}
	if j := letters(s, i); j > i {
		return j
	}
	if j := digits(s, i); j > i {
		return j
	}
	if j := punctuation(s, i, false); j > i {
		return j
	}
	return spaces(s, i)
}

// runeAt decodes the rune at i; n is 0 at the end of s.
func runeAt(s string, i int) (r rune, n int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// The classes of the expressions.

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isSpace is \s: Unicode's white space, as unicode.IsSpace.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// prefix is [^\r\n\p{L}\p{N}].
func prefix(r rune) bool {
	return r >= 0 && r != '\r' && r != '\n' && !isLetter(r) && !isNumber(r)
}

// upper is [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}].
func upper(r rune) bool {
	if r < utf8.RuneSelf {
		return 'A' <= r && r <= 'Z'
	}
	return r >= 0 && (unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M))
}

// lower is [\p{Ll}\p{Lm}\p{Lo}\p{M}].
func lower(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z'
	}
	return r >= 0 && (unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M))
}

// run returns the end of the run of runes in class from i.
func run(s string, i int, class func(rune) bool) int {
	for {
		r, n := runeAt(s, i)
		if n == 0 || !class(r) {
			return i
		}
		i += n
	}
}

// upperThenLower matches upper*lower+ at i, giving back upper runes to
// lower+ as backtracking would (lower and upper share Lm, Lo and M); it
// returns i when there is no match.
func upperThenLower(s string, i int) int {
	k, lastShared, lastEnd := i, -1, -1
	for {
		r, n := runeAt(s, k)
		if n == 0 || !upper(r) {
			break
		}
		if lower(r) {
			lastShared, lastEnd = k, k+n
		}
		k += n
	}
	if r, n := runeAt(s, k); n > 0 && lower(r) {
		return run(s, k, lower)
	}
	if lastShared >= 0 {
		return lastEnd
	}
	return i
}

// upperAndLower matches upper+lower* at i, or returns i.
func upperAndLower(s string, i int) int {
	k := run(s, i, upper)
	if k == i {
		return i
	}
	return run(s, k, lower)
}

// letters matches \p{L}+ at i, or returns i.
func letters(s string, i int) int { return run(s, i, isLetter) }

// digits matches \p{N}{1,3} at i, or returns i.
func digits(s string, i int) int {
	j := i
	for range 3 {
		r, n := runeAt(s, j)
		if n == 0 || !isNumber(r) {
			break
		}
		j += n
	}
	return j
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) at i, or returns i.
func contraction(s string, i int) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return i
	}
	switch s[i+1] | 0x20 {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v', 'l':
		if i+2 < len(s) {
			want := byte('e')
			if s[i+1]|0x20 == 'l' {
				want = 'l'
			}
			if s[i+2]|0x20 == want {
				return i + 3
			}
		}
	}
	return i
}

// symbol is [^\s\p{L}\p{N}].
func symbol(r rune) bool { return r >= 0 && !isSpace(r) && !isLetter(r) && !isNumber(r) }

// punctuation matches " ?[^\s\p{L}\p{N}]+" and then [\r\n]* (cl100k) or
// [\r\n/]* (o200k) at i, or returns i.
func punctuation(s string, i int, slash bool) int {
	j := i
	if s[j] == ' ' {
		if r, n := runeAt(s, j+1); n > 0 && symbol(r) {
			j++
		}
	}
	k := run(s, j, symbol)
	if k == j {
		return i
	}
	for k < len(s) && (s[k] == '\r' || s[k] == '\n' || slash && s[k] == '/') {
		k++
	}
	return k
}

// spaces matches \s*[\r\n]+, else \s+(?!\S), else \s+ at i; a rune of no
// class at all (invalid UTF-8) is a piece of its own.
func spaces(s string, i int) int {
	end, lastNewline, last := i, -1, -1
	for {
		r, n := runeAt(s, end)
		if n == 0 || !isSpace(r) {
			break
		}
		if r == '\r' || r == '\n' {
			lastNewline = end
		}
		last = end
		end += n
	}
	switch {
	case end == i:
		_, n := runeAt(s, i)
		return i + max(n, 1)
	case lastNewline >= 0:
		return lastNewline + 1
	case end == len(s) || last == i:
		return end
	}
	return last // leave the last space to the next piece
}
