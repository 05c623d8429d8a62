package derive

import (
	"math"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/stream"
	"github.com/llmtap/llmtap/collector/tokens"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Counter counts the tokens of texts as a model's tokenizer would
// (tokens.Counter).
type Counter interface {
	Prompt(model string, p tokens.Prompt) tokens.Count
	Text(model, text string) tokens.Count
	Reply(model, text string) tokens.Count
}

// SourceEstimate starts Usage.Source when llmtap estimated some of the
// usage, followed by the encoding: "estimate.o200k_base".
const SourceEstimate = "estimate"

// Pricer prices a route's model's usage (pricing.Pricer); ok is false
// when the model has no price or the usage no token counts.
type Pricer interface {
	Price(route, model string, u collector.Usage) (c collector.Cost, ok bool)
}

// Redactor masks what must not be stored in a fact's bodies and chunks
// (redact.Redactor).
type Redactor interface {
	Redact(f *collector.Fact) map[string]int
}

// Steps are what follows a record's reading: the estimate of the usage
// its provider did not report, its price, and the masking of its bodies.
// A nil step is skipped.
type Steps struct {
	Counter  Counter
	Pricer   Pricer
	Redactor Redactor
}

// New returns Fact followed by the steps: where the provider reported no
// usage, it is estimated (see estimate); then the request is priced; then
// its bodies are dropped when the client asked (BodiesOmitted) or masked.
// Both read the bodies whole, so they come first.
func New(s Steps) func(*llmtap.Record) *collector.Fact {
	return func(r *llmtap.Record) *collector.Fact {
		f, events := fact(r)
		if s.Counter != nil {
			estimate(f, r, events, s.Counter)
		}
		if s.Pricer != nil {
			if c, ok := s.Pricer.Price(f.Route, f.Model, f.Usage); ok {
				f.Cost = &c
			}
		}
		switch {
		case f.BodiesOmitted:
			f.RequestBody, f.ResponseBody, f.Chunks = "", "", nil
		case s.Redactor != nil:
			f.Redactions = s.Redactor.Redact(f)
		}
		return f
	}
}

// estimate fills the token counts the provider did not report, never over
// one it did: the output from the generated text that reached the client
// (a stream that broke off or was cancelled counts what was delivered; a
// capture cut in the middle counts its missing bytes pro rata), the input
// from the request body's prompt. Source then says "estimate.<encoding>";
// Missing keeps why the provider's usage was missing. Errors and raw
// bodies (audio) get none.
func estimate(f *collector.Fact, r *llmtap.Record, events []stream.Event, c Counter) {
	u := &f.Usage
	// Speech and other raw bodies are not counted in tokens (text to
	// speech is billed by the character of its input).
	if c == nil || f.Kind == collector.KindRaw || f.Status >= 400 || f.Status == 0 || (u.Input != nil && u.Output != nil) {
		return
	}
	encoding := ""
	if u.Output == nil {
		resp := provider.Response{Path: r.Path, Kind: f.Kind, Events: events}
		if len(events) == 0 {
			resp.Body = captured(r)
		}
		if gen := provider.Output(resp); gen.Text != "" {
			// A reply that ended has its end-of-message token; the part
			// of one cut short does not.
			count := c.Text
			if f.Outcome == llmtap.OutcomeCompleted {
				count = c.Reply
			}
			n := count(f.Model, gen.Text)
			out := n.Tokens
			if captured := int64(len(r.ResponseHead) + len(r.ResponseTail)); r.ResponseTruncated && captured > 0 {
				out = int64(math.Ceil(float64(out) * float64(r.ResponseBytes) / float64(captured)))
			}
			out += gen.Framing
			u.Output, encoding = &out, n.Encoding
		}
	}
	if u.Input == nil && len(r.RequestBody) > 0 && !r.RequestTruncated {
		if req, err := provider.ParseRequest(r.RequestBody); err == nil {
			n := c.Prompt(f.Model, req.Prompt)
			in := n.Tokens
			u.Input, encoding = &in, n.Encoding
		}
	}
	if encoding != "" {
		u.Source = SourceEstimate + "." + encoding
	}
}
