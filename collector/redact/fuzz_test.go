package redact

import (
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
)

// FuzzRedact: whatever a body holds, Redact does not panic, masks what it
// masks once (a second pass changes nothing), and leaves no secret that a
// fresh scan would find, in the body or the chunks.
func FuzzRedact(f *testing.F) {
	for _, l := range []string{
		"key sk-9fKx2LmQ8vR4tY7wZ1aB3cD5eF6gH8jK0lM2nP4qS6uV",
		"mail a@b.co and +1 415 555 0132 and 4111 1111 1111 1111",
		"-----BEGIN RSA PRIVATE KEY-----\nabc",
		"DE89 3704 0044 0532 0130 00 2001:db8::1 10.0.0.1",
		"eyJa.eyJb.c",
		"",
	} {
		f.Add(l, 3)
	}
	r := all(f)
	f.Fuzz(func(t *testing.T, body string, cut int) {
		var chunks []string
		if cut > 0 && cut < len(body) {
			chunks = []string{body[:cut], body[cut:]}
		}
		fact := &collector.Fact{RequestBody: body, ResponseBody: body, Chunks: chunks}
		r.Redact(fact)
		once := *fact
		once.Chunks = append([]string(nil), fact.Chunks...)
		r.Redact(fact)
		if fact.RequestBody != once.RequestBody || fact.ResponseBody != once.ResponseBody || strings.Join(fact.Chunks, "") != strings.Join(once.Chunks, "") {
			t.Fatalf("a second pass changed %q into %q", once.RequestBody, fact.RequestBody)
		}
		if left := findSecrets(fact.RequestBody, nil); len(left) > 0 {
			t.Fatalf("secret left in %q: %+v", fact.RequestBody, left)
		}
		if left := findSecrets(strings.Join(fact.Chunks, ""), nil); len(left) > 0 {
			t.Fatalf("secret left in the chunks %q: %+v", fact.Chunks, left)
		}
	})
}
