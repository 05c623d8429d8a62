package redact

import "strings"

// Secret kinds, masked whenever Options.Secrets is on.
const (
	OpenAIKey     = "openai_key"
	AnthropicKey  = "anthropic_key"
	AWSAccessKey  = "aws_access_key"
	GitHubToken   = "github_token"
	GoogleAPIKey  = "google_api_key"
	SlackToken    = "slack_token"
	StripeKey     = "stripe_key"
	BearerToken   = "bearer_token"
	JWT           = "jwt"
	PrivateKey    = "private_key"
	HuggingFaceTk = "huggingface_token"
)

// secretKinds are the kinds findSecrets reports.
var secretKinds = []string{OpenAIKey, AnthropicKey, AWSAccessKey, GitHubToken, GoogleAPIKey, SlackToken, StripeKey, HuggingFaceTk, BearerToken, JWT, PrivateKey}

func isSecretKind(name string) bool {
	for _, k := range secretKinds {
		if k == name {
			return true
		}
	}
	return false
}

// A prefixed secret: a fixed prefix, then at least min characters of
// the token alphabet; mixed says the rest must hold a digit and an
// upper-case letter (real keys do, names like sk-learn-pipeline do not).
type prefixed struct {
	prefix string
	kind   string
	min    int
	max    int // 0: no bound
	mixed  bool
	alpha  func(byte) bool
	sepAt  int // where its first - or _ is (separated only)
}

func tokenByte(c byte) bool  { return isAlnum(c) || c == '-' || c == '_' }
func upperAlnum(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }

// The prefixed secrets whose prefix holds a - or _: found from the
// occurrences of those bytes, one fast pass each (most text has few),
// longer prefixes of one start first (sk-ant- before sk-).
var separated = []prefixed{
	{prefix: "sk-ant-", kind: AnthropicKey, min: 20, alpha: tokenByte},
	{prefix: "sk-", kind: OpenAIKey, min: 20, mixed: true, alpha: tokenByte},
	{prefix: "ghp_", kind: GitHubToken, min: 30, alpha: tokenByte},
	{prefix: "gho_", kind: GitHubToken, min: 30, alpha: tokenByte},
	{prefix: "ghu_", kind: GitHubToken, min: 30, alpha: tokenByte},
	{prefix: "ghs_", kind: GitHubToken, min: 30, alpha: tokenByte},
	{prefix: "github_pat_", kind: GitHubToken, min: 30, alpha: tokenByte},
	{prefix: "xoxb-", kind: SlackToken, min: 20, alpha: tokenByte},
	{prefix: "xoxp-", kind: SlackToken, min: 20, alpha: tokenByte},
	{prefix: "xoxa-", kind: SlackToken, min: 20, alpha: tokenByte},
	{prefix: "sk_live_", kind: StripeKey, min: 20, alpha: tokenByte},
	{prefix: "rk_live_", kind: StripeKey, min: 20, alpha: tokenByte},
	{prefix: "hf_", kind: HuggingFaceTk, min: 30, mixed: true, alpha: tokenByte},
}

// bySeparator lists, for - and _, the separated prefixes by the byte
// before their separator: a - in "chatcmpl-9x" (after an l) is dismissed
// with one look.
var bySeparator = map[byte]*[256][]int{'-': {}, '_': {}}

func init() {
	for k := range separated {
		p := &separated[k]
		p.sepAt = strings.IndexAny(p.prefix, "-_")
		table := bySeparator[p.prefix[p.sepAt]]
		before := p.prefix[p.sepAt-1]
		table[before] = append(table[before], k)
	}
}

// The prefixed secrets of capitals and digits only: a search each.
var capitals = []prefixed{
	{prefix: "AKIA", kind: AWSAccessKey, min: 16, max: 16, alpha: upperAlnum},
	{prefix: "ASIA", kind: AWSAccessKey, min: 16, max: 16, alpha: upperAlnum},
	{prefix: "AIza", kind: GoogleAPIKey, min: 35, max: 35, alpha: tokenByte},
}

// at returns the match of p at start, if the text there is one.
func (p *prefixed) at(text string, start int) (match, bool) {
	if start > 0 && tokenByte(text[start-1]) {
		return match{}, false // inside a longer word: task-..., mask-...
	}
	from := start + len(p.prefix)
	end := from
	for end < len(text) && p.alpha(text[end]) {
		end++
	}
	n := end - from
	if n < p.min || (p.max > 0 && n > p.max) || (p.max > 0 && end < len(text) && isAlnum(text[end])) {
		return match{}, false
	}
	if p.mixed && !mixedCase(text[from:end]) {
		return match{}, false
	}
	return match{start, end, p.kind}, true
}

// findSecrets appends the secrets in text to ms.
func findSecrets(text string, ms []match) []match {
	for _, sep := range []byte{'-', '_'} {
		table := bySeparator[sep]
		next := 0 // past the last match: no match starts inside another
		for from := 1; from < len(text); {
			i := strings.IndexByte(text[from:], sep)
			if i < 0 {
				break
			}
			pos := from + i
			from = pos + 1
			for _, k := range table[text[pos-1]] {
				p := &separated[k]
				start := pos - p.sepAt
				if start < next || start < 0 || !strings.HasPrefix(text[start:], p.prefix) {
					continue
				}
				if m, ok := p.at(text, start); ok {
					ms = append(ms, m)
					next = m.end
					if m.end > from {
						from = m.end
					}
					break
				}
			}
		}
	}
	for k := range capitals {
		p := &capitals[k]
		for from := 0; ; {
			i := strings.Index(text[from:], p.prefix)
			if i < 0 {
				break
			}
			start := from + i
			from = start + len(p.prefix)
			if m, ok := p.at(text, start); ok {
				ms = append(ms, m)
				from = m.end
			}
		}
	}
	ms = findBearer(text, ms)
	ms = findJWT(text, ms)
	return findPrivateKeys(text, ms)
}

// mixedCase: at least one digit and one upper-case letter.
func mixedCase(s string) bool {
	digit, upper := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		digit = digit || c >= '0' && c <= '9'
		upper = upper || c >= 'A' && c <= 'Z'
	}
	return digit && upper
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// findBearer finds "Bearer <token>": the token (at least 16 characters of
// the token68 alphabet, one a digit) is masked, the word kept.
func findBearer(text string, ms []match) []match {
	for _, word := range []string{"Bearer ", "bearer "} {
		for from := 0; ; {
			i := strings.Index(text[from:], word)
			if i < 0 {
				break
			}
			start := from + i + len(word)
			from = start
			end := start
			digit := false
			for end < len(text) && (tokenByte(text[end]) || strings.IndexByte("._~+/=", text[end]) >= 0) {
				digit = digit || text[end] >= '0' && text[end] <= '9'
				end++
			}
			if end-start >= 16 && digit {
				ms = append(ms, match{start, end, BearerToken})
				from = end
			}
		}
	}
	return ms
}

// findJWT finds header.payload.signature, both first parts base64url JSON
// objects (eyJ...).
func findJWT(text string, ms []match) []match {
	// Anchored on the J, rarer in text than the e.
	for from := 2; from < len(text); {
		i := strings.IndexByte(text[from:], 'J')
		if i < 0 {
			return ms
		}
		start := from + i - 2
		from = start + 3
		if text[start:start+2] != "ey" {
			continue
		}
		if start > 0 && tokenByte(text[start-1]) {
			continue
		}
		end, ok := start, true
		for part := 0; part < 3 && ok; part++ {
			if part > 0 {
				if end >= len(text) || text[end] != '.' {
					ok = false
					break
				}
				end++
				if part == 1 && !strings.HasPrefix(text[end:], "eyJ") {
					ok = false
					break
				}
			}
			seg := end
			for end < len(text) && tokenByte(text[end]) {
				end++
			}
			ok = end-seg >= 10
		}
		if ok {
			ms = append(ms, match{start, end, JWT})
			from = end
		}
	}
	return ms
}

// findPrivateKeys masks whole PEM private key blocks, BEGIN to END (or to
// the end of the text, when the block was cut).
func findPrivateKeys(text string, ms []match) []match {
	for from := 0; ; {
		i := strings.Index(text[from:], "-----BEGIN ")
		if i < 0 {
			return ms
		}
		start := from + i
		from = start + 11
		line := text[from:]
		if j := strings.Index(line, "-----"); j < 0 || j > 40 || !strings.HasSuffix(line[:j], "PRIVATE KEY") {
			continue
		}
		end := len(text)
		if j := strings.Index(text[from:], "-----END "); j >= 0 {
			end = from + j + len("-----END ")
			if k := strings.Index(text[end:], "-----"); k >= 0 && k <= 40 {
				end += k + 5
			}
		}
		ms = append(ms, match{start, end, PrivateKey})
		from = end
	}
}
