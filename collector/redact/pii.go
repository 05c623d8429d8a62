package redact

import (
	"net/netip"
	"strings"
)

// findPII appends the personal data of the kinds in set found in text.
func findPII(text string, set kindSet, ms []match) []match {
	if set&kindBits[Email] != 0 {
		ms = findEmails(text, ms)
	}
	if set&(kindBits[Phone]|kindBits[Card]|kindBits[IP]) != 0 {
		ms = findNumbers(text, set, ms)
	}
	if set&kindBits[IBAN] != 0 {
		ms = findIBANs(text, ms)
	}
	return ms
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// findEmails finds local@domain.tld around each @.
func findEmails(text string, ms []match) []match {
	local := func(c byte) bool { return isAlnum(c) || strings.IndexByte(".!#$%&'*+=?^_`~-", c) >= 0 }
	for from := 0; ; {
		i := strings.IndexByte(text[from:], '@')
		if i < 0 {
			return ms
		}
		at := from + i
		from = at + 1
		start := at
		for start > 0 && local(text[start-1]) && at-start < 64 {
			start--
		}
		for start < at && text[start] == '.' {
			start++
		}
		if start == at {
			continue
		}
		// Domain: labels of letters, digits and -, at least two, the last
		// (the TLD) of two letters or more.
		end, labels, lastLetters := at+1, 0, 0
		for {
			l := end
			for end < len(text) && (isAlnum(text[end]) || text[end] == '-') {
				end++
			}
			if end == l {
				break
			}
			labels++
			lastLetters = 0
			for k := l; k < end && !isDigit(text[k]) && text[k] != '-'; k++ {
				lastLetters++
			}
			if lastLetters != end-l {
				lastLetters = 0
			}
			if end+1 < len(text) && text[end] == '.' && isAlnum(text[end+1]) {
				end++
				continue
			}
			break
		}
		if labels >= 2 && lastLetters >= 2 {
			ms = append(ms, match{start, end, Email})
			from = end
		}
	}
}

// findNumbers walks the runs of digits and the separators between them
// (space, -, ., parentheses, a leading +) and classifies each: an IPv4
// address, a card number (13 to 19 digits passing Luhn), or a phone number
// (+ and 8 to 15 digits, or the North American (555) 123-4567 shape).
// IPv6 addresses are found on their own.
func findNumbers(text string, set kindSet, ms []match) []match {
	for i := 0; i < len(text); {
		c := text[i]
		if !isDigit(c) && c != '+' && c != '(' {
			i++
			continue
		}
		if i > 0 && (isAlnum(text[i-1]) || strings.IndexByte("._-]", text[i-1]) >= 0) {
			// Inside a word, a version, an identifier, or right after a
			// marker (whose value ran on): skip it whole.
			i++
			for i < len(text) && (isAlnum(text[i]) || text[i] == '.' || text[i] == '-' || text[i] == '_') {
				i++
			}
			continue
		}
		end, _ := numberRun(text, i)
		if end < len(text) && (isAlnum(text[end]) || text[end] == '_') {
			i = end + 1
			continue
		}
		// Two numbers side by side make one run (a phone number, then a
		// card's): the longest part from i, cut at a space, that is one.
		next := end + 1
		for cut := end; cut > i; cut = lastSpace(text, i, cut) {
			run := text[i:trimRun(text, i, cut)]
			if run == "" {
				break
			}
			if kind := classify(run, set); kind != "" {
				ms = append(ms, match{i, i + len(run), kind})
				next = i + len(run) + 1
				break
			}
			if sp := strings.IndexByte(text[i:cut], ' '); sp >= 0 {
				next = i + sp + 1
			}
		}
		i = next
	}
	if set&kindBits[IP] != 0 {
		ms = findIPv6(text, ms)
	}
	return ms
}

// classify says what a run of digits is, among the kinds in set: "" for
// none.
func classify(run string, set kindSet) string {
	digits := 0
	for k := 0; k < len(run); k++ {
		if isDigit(run[k]) {
			digits++
		}
	}
	switch {
	case digits == 0:
		return ""
	case set&kindBits[IP] != 0 && isIPv4(run):
		return IP
	case set&kindBits[Card] != 0 && isCard(run, digits):
		return Card
	case set&kindBits[Phone] != 0 && isPhone(run, digits):
		return Phone
	}
	return ""
}

// lastSpace is the last space in text[i:cut], or i when there is none.
func lastSpace(text string, i, cut int) int {
	if k := strings.LastIndexByte(text[i:cut], ' '); k > 0 {
		return i + k
	}
	return i
}

// numberRun is the end of the number starting at i: digits, a leading +,
// parentheses, and single spaces, dashes or dots each followed by a digit
// or a parenthesis; it ends on a digit or a closing parenthesis.
func numberRun(text string, i int) (end, digits int) {
	end = i
	for end < len(text) {
		ch := text[end]
		switch {
		case isDigit(ch):
			digits++
		case ch == '+' && end == i, ch == '(', ch == ')':
		case (ch == ' ' || ch == '-' || ch == '.') && end+1 < len(text) && (isDigit(text[end+1]) || text[end+1] == '('):
		default:
			return trimRun(text, i, end), digits
		}
		end++
	}
	return trimRun(text, i, end), digits
}

func trimRun(text string, i, end int) int {
	for end > i && !isDigit(text[end-1]) && text[end-1] != ')' {
		end--
	}
	return end
}

func isIPv4(run string) bool {
	if strings.Count(run, ".") != 3 || strings.ContainsAny(run, " -()+") {
		return false
	}
	a, err := netip.ParseAddr(run)
	return err == nil && a.Is4()
}

// isCard: 13 to 19 digits starting 2 to 6 (epoch milliseconds start with
// 1), written whole or in the groups cards print (4-4-4-4, 4-6-5, the last
// group of 1 to 4), passing Luhn.
func isCard(run string, digits int) bool {
	if digits < 13 || digits > 19 || strings.ContainsAny(run, ".()+") || run[0] < '2' || run[0] > '6' {
		return false
	}
	if groups := strings.FieldsFunc(run, func(r rune) bool { return r == ' ' || r == '-' }); len(groups) > 1 {
		amex := len(groups) == 3 && len(groups[0]) == 4 && len(groups[1]) == 6 && len(groups[2]) >= 4
		for k, g := range groups {
			if !amex && (len(g) > 4 || (len(g) < 4 && k < len(groups)-1)) {
				return false
			}
		}
	}
	sum, double := 0, false
	for k := len(run) - 1; k >= 0; k-- {
		if !isDigit(run[k]) {
			continue
		}
		d := int(run[k] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// isPhone: + and 8 to 15 digits (E.164, separators allowed), or ten digits
// shaped (555) 123-4567, 555-123-4567 or 555.123.4567.
func isPhone(run string, digits int) bool {
	if run[0] == '+' {
		return digits >= 8 && digits <= 15
	}
	if digits != 10 {
		return false
	}
	groups := strings.FieldsFunc(run, func(r rune) bool { return r < '0' || r > '9' })
	return len(groups) == 3 && len(groups[0]) == 3 && len(groups[1]) == 3 && len(groups[2]) == 4
}

// findIPv6 finds runs of hex digits and colons with at least two colons
// that parse as an IPv6 address.
func findIPv6(text string, ms []match) []match {
	hex := func(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	for from := 0; ; {
		i := strings.Index(text[from:], ":")
		if i < 0 {
			return ms
		}
		start := from + i
		for start > 0 && (hex(text[start-1]) || text[start-1] == ':') {
			start--
		}
		end := from + i
		for end < len(text) && (hex(text[end]) || text[end] == ':' || text[end] == '.') {
			end++
		}
		from = end
		if end < len(text) && (isAlnum(text[end])) || start > 0 && isAlnum(text[start-1]) {
			continue
		}
		cand := strings.TrimRight(text[start:end], ".")
		if strings.Count(cand, ":") < 2 || !strings.ContainsAny(cand, "0123456789abcdefABCDEF") {
			continue
		}
		if a, err := netip.ParseAddr(cand); err == nil && a.Is6() {
			ms = append(ms, match{start, start + len(cand), IP})
		}
	}
}

// findIBANs finds two letters, two check digits and 11 to 30 letters or
// digits (in groups of four when spaced) whose mod-97 check holds.
func findIBANs(text string, ms []match) []match {
	upper := func(c byte) bool { return c >= 'A' && c <= 'Z' }
	for i := 0; i+4 <= len(text); i++ {
		if !upper(text[i]) || !upper(text[i+1]) || !isDigit(text[i+2]) || !isDigit(text[i+3]) || (i > 0 && isAlnum(text[i-1])) {
			continue
		}
		var b strings.Builder
		end := i
		for end < len(text) && b.Len() < 34 {
			c := text[end]
			if upper(c) || isDigit(c) {
				b.WriteByte(c)
				end++
				continue
			}
			if c == ' ' && end+1 < len(text) && (upper(text[end+1]) || isDigit(text[end+1])) && (b.Len())%4 == 0 {
				end++
				continue
			}
			break
		}
		if end < len(text) && isAlnum(text[end]) {
			continue
		}
		iban := b.String()
		if len(iban) < 15 || !mod97(iban) {
			continue
		}
		ms = append(ms, match{i, end, IBAN})
		i = end
	}
	return ms
}

// mod97 is the IBAN check: the first four characters moved to the end,
// letters as 10 to 35, the number mod 97 is 1.
func mod97(iban string) bool {
	r := 0
	for _, c := range iban[4:] + iban[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = (r*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			r = (r*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return r == 1
}
