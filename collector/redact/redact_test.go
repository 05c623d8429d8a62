package redact

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
)

// all turns every kind on.
func all(t testing.TB) *Redactor {
	t.Helper()
	r, err := New(Options{Secrets: true, PII: PIIKinds})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lines reads a corpus file: its lines, less comments and blank ones.
func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestCorpusPositive: every value between ⟦ and ⟧ is masked as its kind,
// and nothing else is touched.
func TestCorpusPositive(t *testing.T) {
	r := all(t)
	for i, line := range lines(t, "testdata/positive.txt") {
		kind, marked, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("positive.txt case %d: no tab", i+1)
		}
		var text, want strings.Builder
		for rest := marked; rest != ""; {
			open := strings.Index(rest, "⟦")
			if open < 0 {
				text.WriteString(rest)
				want.WriteString(rest)
				break
			}
			shut := strings.Index(rest, "⟧")
			value := rest[open+len("⟦") : shut]
			text.WriteString(rest[:open] + value)
			want.WriteString(rest[:open] + Marker(kind, value))
			rest = rest[shut+len("⟧"):]
		}
		f := &collector.Fact{RequestBody: text.String()}
		count := r.Redact(f)
		if f.RequestBody != want.String() {
			t.Errorf("case %d (%s):\n got %s\nwant %s", i+1, kind, f.RequestBody, want.String())
		}
		if n := strings.Count(marked, "⟦"); count[kind] != n {
			t.Errorf("case %d (%s): counted %v, want %d", i+1, kind, count, n)
		}
	}
}

// TestCorpusNegative: ordinary text and code that merely looks alike is
// left as it is, every kind on.
func TestCorpusNegative(t *testing.T) {
	r := all(t)
	for i, line := range lines(t, "testdata/negative.txt") {
		f := &collector.Fact{RequestBody: line, ResponseBody: line, Chunks: []string{line}}
		if count := r.Redact(f); count != nil || f.RequestBody != line || f.ResponseBody != line || f.Chunks[0] != line {
			t.Errorf("case %d masked %v:\n%s\n%s", i+1, count, line, f.RequestBody)
		}
	}
}

// TestChunks: the chunks are masked as the body is, and a value split
// across two chunks is masked too: its marker where it starts, the rest
// cut from the next.
func TestChunks(t *testing.T) {
	r := all(t)
	key := "sk-9fKx2LmQ8vR4tY7wZ1aB3cD5eF6gH8jK0lM2nP4qS6uV"
	mark := Marker(OpenAIKey, key)
	for _, tt := range []struct {
		name         string
		body         string
		chunks, want []string
		counted      int
	}{
		{"in one chunk", "data: your key " + key + "\n\n", []string{"your key " + key}, []string{"your key " + mark}, 1},
		{"across two chunks", "data: your key sk-9fKx2LmQ8vR4\n\ndata: tY7wZ1aB3cD5eF6gH8jK0lM2nP4qS6uV ok\n\n",
			[]string{"your key sk-9fKx2LmQ8vR4", "tY7wZ1aB3cD5eF6gH8jK0lM2nP4qS6uV ok"}, []string{"your key " + mark, " ok"}, 1},
		{"across three", "", []string{"sk-9fKx2Lm", "Q8vR4tY7wZ1aB3cD5", "eF6gH8jK0lM2nP4qS6uV."}, []string{mark, "", "."}, 1},
		{"none", "data: hello\n\n", []string{"hello"}, []string{"hello"}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &collector.Fact{ResponseBody: tt.body, Chunks: tt.chunks}
			count := r.Redact(f)
			if !reflect.DeepEqual(f.Chunks, tt.want) || count[OpenAIKey] != tt.counted {
				t.Errorf("chunks %q counted %v, want %q and %d", f.Chunks, count, tt.want, tt.counted)
			}
			if strings.Contains(f.ResponseBody, key) {
				t.Errorf("body still holds the key: %q", f.ResponseBody)
			}
		})
	}
}

// TestScopes: PII kinds add up per request, route and tenant; secrets are
// masked wherever they are on, and nothing when all is off.
func TestScopes(t *testing.T) {
	r, err := New(Options{Secrets: true, PII: []string{Email}, Routes: map[string][]string{"support": {Phone}}, Tenants: map[string][]string{"bank": {Card, IBAN}},
		Patterns: []Pattern{{Name: "employee_id", Regex: `EMP-[0-9]{6}`}}})
	if err != nil {
		t.Fatal(err)
	}
	text := "a@example.com +1 415 555 0132 4111111111111111 EMP-123456 AKIAIOSFODNN7EXAMPLE"
	for _, tt := range []struct {
		route, tenant string
		want          []string
	}{
		{"chat", "acme", []string{Email, "employee_id", AWSAccessKey}},
		{"support", "acme", []string{Email, Phone, "employee_id", AWSAccessKey}},
		{"chat", "bank", []string{Email, Card, "employee_id", AWSAccessKey}},
	} {
		f := &collector.Fact{Route: tt.route, Tenant: tt.tenant, RequestBody: text}
		count := r.Redact(f)
		var got []string
		for _, k := range []string{Email, Phone, Card, "employee_id", AWSAccessKey} {
			if count[k] > 0 {
				got = append(got, k)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("route %s tenant %s: masked %v, want %v (%s)", tt.route, tt.tenant, got, tt.want, f.RequestBody)
		}
	}
	off, _ := New(Options{})
	f := &collector.Fact{RequestBody: text}
	if off.Redact(f) != nil || f.RequestBody != text {
		t.Errorf("all off masked: %s", f.RequestBody)
	}
}

// TestOptions: bad options are refused, naming the field.
func TestOptions(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{PII: []string{"ssn"}}, `pii: unknown kind "ssn"`},
		{Options{Routes: map[string][]string{"chat": {"mail"}}}, "routes.chat.pii"},
		{Options{Tenants: map[string][]string{"acme": {"x"}}}, "tenants.acme.pii"},
		{Options{Patterns: []Pattern{{Name: "Bad Name", Regex: "x"}}}, "patterns[0].name"},
		{Options{Patterns: []Pattern{{Name: "email", Regex: "x"}}}, "taken by another pattern or a built-in kind"},
		{Options{Patterns: []Pattern{{Name: "x", Regex: "("}}}, "patterns[0].regex"},
		{Options{Patterns: []Pattern{{Name: "x", Regex: "a*"}}}, "matches the empty string"},
	} {
		if _, err := New(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error with %q", tt.o, err, tt.want)
		}
	}
}
