package redact

import (
	"fmt"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/collector"
)

// benchFact is a streamed chat of 40 events and its prompt, ~6 KB.
func benchFact(secret string) *collector.Fact {
	var body strings.Builder
	var chunks []string
	for i := 0; i < 40; i++ {
		c := fmt.Sprintf(`{"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1733486400,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":" token %d of the answer"},"finish_reason":null}]}`, i)
		chunks = append(chunks, c)
		body.WriteString("data: " + c + "\n\n")
	}
	return &collector.Fact{
		Route:        "chat",
		RequestBody:  `{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant for the support team of Example Corp."},{"role":"user","content":"Summarise the ticket below and propose a reply.` + secret + strings.Repeat(" The customer reports that the export job fails after the upgrade to version 2.4.1 on 2026-11-30.", 8) + `"}]}`,
		ResponseBody: body.String(),
		Chunks:       chunks,
	}
}

// BenchmarkRedact: one record's bodies and chunks, with secrets only (the
// default) and with every kind, without and with a key in the prompt.
func BenchmarkRedact(b *testing.B) {
	secretsOnly, err := New(Options{Secrets: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name   string
		r      *Redactor
		secret string
	}{
		{"secrets/clean", secretsOnly, ""},
		{"secrets/key", secretsOnly, " key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"},
		{"all/clean", all(b), ""},
		{"all/key", all(b), " key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z mail jane@example.com"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			f := benchFact(bb.secret)
			b.SetBytes(int64(len(f.RequestBody) + len(f.ResponseBody)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				g := *f
				bb.r.Redact(&g)
			}
		})
	}
}
