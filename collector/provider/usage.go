package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/stream"
)

// counts is a usage object as the providers write it: the union of their
// field names, since a name means the same thing wherever it appears. Which
// names are there tells the dialect (see dialectOf).
type counts struct {
	// OpenAI chat/completions and imitators.
	PromptTokens            tokenCount `json:"prompt_tokens"`
	CompletionTokens        tokenCount `json:"completion_tokens"`
	PromptTokensDetails     *cached    `json:"prompt_tokens_details"`
	CompletionTokensDetails *reasoning `json:"completion_tokens_details"`
	PromptCacheHitTokens    tokenCount `json:"prompt_cache_hit_tokens"` // DeepSeek
	// OpenAI Responses and Anthropic.
	InputTokens         tokenCount `json:"input_tokens"`
	OutputTokens        tokenCount `json:"output_tokens"`
	InputTokensDetails  *cached    `json:"input_tokens_details"`  // Responses
	OutputTokensDetails *reasoning `json:"output_tokens_details"` // Responses
	// Anthropic.
	CacheCreationInputTokens tokenCount `json:"cache_creation_input_tokens"`
	// CacheCreation splits Anthropic's cache writes by how long they last.
	CacheCreation *struct {
		Ephemeral1h tokenCount `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	CacheReadInputTokens tokenCount `json:"cache_read_input_tokens"`
}

type cached struct {
	CachedTokens tokenCount `json:"cached_tokens"`
}

type reasoning struct {
	ReasoningTokens tokenCount `json:"reasoning_tokens"`
}

// usageDoc is a JSON response, or one streamed event, as far as usage goes.
type usageDoc struct {
	Type   string  `json:"type"`   // Anthropic and Responses events
	Object string  `json:"object"` // OpenAI
	Usage  *counts `json:"usage"`
	// Message is Anthropic's message_start payload.
	Message *struct {
		Usage *counts `json:"usage"`
	} `json:"message"`
	// Response is the response object of Responses API events (a string
	// in Ollama's /api/generate lines, which decoding skips).
	Response *struct {
		Usage *counts `json:"usage"`
	} `json:"response"`
	Error nonEmpty `json:"error"` // null in a successful Responses object
	// Ollama.
	Done            *bool      `json:"done"`
	PromptEvalCount tokenCount `json:"prompt_eval_count"`
	EvalCount       tokenCount `json:"eval_count"`
}

// Usage returns the token usage r reports, normalized as the package doc
// says. It never fails: without usage, Source is "none" and Missing says why.
func Usage(r Response) collector.Usage {
	hint := pathDialect(r.Path)
	body := bytes.TrimSpace(r.Body)
	events := r.Events
	if events == nil {
		events = parseBody(r)
	}
	switch {
	case len(events) > 0:
		return streamUsage(events, hint)
	case len(body) == 0:
		return none(MissingNoBody)
	case body[0] == '{':
		// Also an error answered as JSON to a streaming request.
		return jsonUsage(body, hint)
	case r.Kind == collector.KindSSE || r.Kind == collector.KindNDJSON:
		return none(MissingTruncated) // a stream cut before its first event
	case looksSSE(body):
		// An event stream labelled otherwise.
		return streamUsage(stream.ParseSSE(body), hint)
	case body[0] == '[':
		return none(MissingUnknownFormat) // JSON, but no provider here answers with an array
	}
	return none(MissingNotJSON)
}

func none(missing string) collector.Usage {
	return collector.Usage{Source: SourceNone, Missing: missing}
}

// looksSSE reports whether b starts like an event stream.
func looksSSE(b []byte) bool {
	for _, p := range []string{"data:", "event:", "id:", ":"} {
		if bytes.HasPrefix(b, []byte(p)) {
			return true
		}
	}
	return false
}

// jsonUsage reads the usage of a non-streaming JSON response.
func jsonUsage(body []byte, hint dialect) collector.Usage {
	var d usageDoc
	if !decode(body, &d) {
		return salvage(body, hint)
	}
	if u, ok := d.usage(hint, false); ok {
		return u
	}
	switch {
	case bool(d.Error) || d.Type == "error" || d.Object == "error": // vLLM: {"object":"error",...}
		return none(MissingErrorResponse)
	case hint != dialectUnknown || d.Object != "" || d.Type != "" || d.Done != nil:
		return none(MissingNoUsage)
	}
	return none(MissingUnknownFormat)
}

// salvage reads the usage of a JSON body too cut to decode: the head and
// tail of a large response, whose usage comes last (OpenAI, Anthropic,
// Ollama all put it at the end).
func salvage(body []byte, hint dialect) collector.Usage {
	if v := valueAfter(body, `"usage"`); len(v) > 0 && v[0] == '{' {
		var c counts
		err := json.NewDecoder(bytes.NewReader(v)).Decode(&c)
		var typeErr *json.UnmarshalTypeError
		if err == nil || errors.As(err, &typeErr) {
			dl := dialectOf(&c, "", "", hint)
			if u := normalize(&c, dl); found(u) {
				u.Source = dl.source(false)
				return u
			}
		}
	}
	in, out := intAfter(body, `"prompt_eval_count"`), intAfter(body, `"eval_count"`)
	if in != nil || out != nil {
		return collector.Usage{Input: in, Output: out, Source: dialectOllama.source(false)}
	}
	return none(MissingTruncated)
}

// usage returns the usage a document carries, if any.
func (d *usageDoc) usage(hint dialect, streamed bool) (collector.Usage, bool) {
	var c *counts
	dl := dialectUnknown
	switch {
	case d.Usage != nil:
		c, dl = d.Usage, dialectOf(d.Usage, d.Type, d.Object, hint)
	case d.Response != nil && d.Response.Usage != nil:
		c, dl = d.Response.Usage, dialectResponses
	case d.Message != nil && d.Message.Usage != nil:
		c, dl = d.Message.Usage, dialectAnthropic
	case d.PromptEvalCount.seen || d.EvalCount.seen:
		u := collector.Usage{Input: count(d.PromptEvalCount), Output: count(d.EvalCount), Source: dialectOllama.source(streamed)}
		return u, found(u)
	default:
		return collector.Usage{}, false
	}
	u := normalize(c, dl)
	u.Source = dl.source(streamed)
	return u, found(u)
}

// dialectOf tells how to read a usage object from the names it uses, the
// type or object of the document holding it, and the path's guess.
func dialectOf(c *counts, typ, object string, hint dialect) dialect {
	switch {
	case c.PromptTokens.seen || c.CompletionTokens.seen:
		return dialectChat
	case c.CacheCreationInputTokens.seen || c.CacheReadInputTokens.seen ||
		typ == "message" || typ == "message_start" || typ == "message_delta":
		return dialectAnthropic
	case c.InputTokensDetails != nil || c.OutputTokensDetails != nil || object == "response":
		return dialectResponses
	case hint == dialectAnthropic:
		return dialectAnthropic
	}
	// input_tokens and output_tokens alone read the same either way.
	return dialectResponses
}

// normalize maps a usage object onto collector.Usage as its dialect
// reads (see the package doc).
func normalize(c *counts, dl dialect) collector.Usage {
	if f := dl.format(); f != nil {
		return f.normalize(c)
	}
	return collector.Usage{}
}

// tokenCount is a token count as a provider wrote it. A value that is not a
// count (null, negative, fractional, a string) reads as absent: no provider
// sends one on purpose, and it would poison every sum it joins. A *int64
// would not do: encoding/json allocates it before finding a float, leaving
// a 0 where nothing was said.
type tokenCount struct {
	n    int64
	set  bool // n is a count
	seen bool // the key was there, whatever its value: names tell dialects apart
}

// UnmarshalJSON implements json.Unmarshaler. It is called for null too.
func (t *tokenCount) UnmarshalJSON(b []byte) error {
	*t = tokenCount{seen: true}
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		t.n, t.set = n, n >= 0
		return nil
	}
	// 12.0 from a server that counts in floats is still 12.
	if f, err := strconv.ParseFloat(string(b), 64); err == nil && f >= 0 && f < 1<<53 && f == math.Trunc(f) {
		t.n, t.set = int64(f), true
	}
	return nil
}

// count returns a fresh pointer to the count, or nil when there is none.
func count(t tokenCount) *int64 {
	if !t.set {
		return nil
	}
	n := t.n
	return &n
}

// sum adds the parts that are there, or gives nil on overflow.
func sum(n int64, parts ...*int64) *int64 {
	for _, p := range parts {
		if p == nil {
			continue
		}
		if *p > math.MaxInt64-n {
			return nil
		}
		n += *p
	}
	return &n
}

func found(u collector.Usage) bool {
	return u.Input != nil || u.Output != nil
}

// streamUsage reads the usage of a streamed response. The usage that counts
// is the last one: OpenAI and vLLM send it in the final chunk (vLLM's
// continuous usage in every chunk, cumulative), Responses in
// response.completed, Ollama in the done line, and Anthropic's message_delta
// counts are cumulative. So it searches from the end, and decodes only
// events that mention a usage.
func streamUsage(events []stream.Event, hint dialect) collector.Usage {
	// Anthropic's message_start, looked up once: a stream of many odd
	// message_delta events must not cost a scan each.
	var (
		start       *counts
		startLooked bool
	)
	for i := len(events) - 1; i >= 0; i-- {
		data := events[i].Data
		// `eval_count"` matches Ollama's "eval_count" and "prompt_eval_count".
		if !mentions(data, `"usage"`) && !mentions(data, `eval_count"`) {
			continue
		}
		var d usageDoc
		if !decode(data, &d) {
			continue
		}
		if d.Message != nil && d.Message.Usage != nil {
			// Anthropic's message_start with no message_delta after it:
			// the input counts hold, the output count is only the start's.
			c := *d.Message.Usage
			c.OutputTokens = tokenCount{}
			u := normalize(&c, dialectAnthropic)
			if found(u) {
				u.Source = dialectAnthropic.source(true)
				u.Missing = streamMissing(events)
				return u
			}
			continue
		}
		if d.Usage != nil && dialectOf(d.Usage, d.Type, d.Object, hint) == dialectAnthropic {
			// message_delta: its counts win, message_start fills the rest.
			if !startLooked {
				start, startLooked = messageStart(events[:i]), true
			}
			c := *d.Usage
			if start != nil {
				c = merge(*start, c)
			}
			u := normalize(&c, dialectAnthropic)
			if found(u) {
				u.Source = dialectAnthropic.source(true)
				return u
			}
			continue
		}
		if u, ok := d.usage(hint, true); ok {
			return u
		}
	}
	return none(streamMissing(events))
}

// messageStart returns the usage of the first Anthropic message_start event.
func messageStart(events []stream.Event) *counts {
	for _, e := range events {
		if e.Name != "" && e.Name != "message_start" || !mentions(e.Data, `"usage"`) {
			continue
		}
		var d usageDoc
		if decode(e.Data, &d) && d.Message != nil && d.Message.Usage != nil {
			return d.Message.Usage
		}
	}
	return nil
}

// merge returns base with every field that next has replaced by next's.
func merge(base, next counts) counts {
	for _, f := range []struct{ dst, src *tokenCount }{
		{&base.InputTokens, &next.InputTokens},
		{&base.OutputTokens, &next.OutputTokens},
		{&base.CacheCreationInputTokens, &next.CacheCreationInputTokens},
		{&base.CacheReadInputTokens, &next.CacheReadInputTokens},
	} {
		if f.src.set {
			*f.dst = *f.src
		}
	}
	if next.CacheCreation != nil {
		base.CacheCreation = next.CacheCreation
	}
	return base
}

// endProbe reads how a stream ended.
type endProbe struct {
	Type    string   `json:"type"`
	Object  string   `json:"object"`
	Error   nonEmpty `json:"error"`
	Done    bool     `json:"done"`
	Choices []struct {
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
}

// streamMissing says why a stream has no usage: an error event, or a stream
// that ended properly without usage, or else one that was cut. Only the last
// events are read: a stream ends right after its end marker ([DONE],
// message_stop, the done line, response.completed, a finish_reason) or its
// error, so the rest of a long stream cannot change the answer.
func streamMissing(events []stream.Event) string {
	const tail = 8
	if len(events) > tail {
		events = events[len(events)-tail:]
	}
	ended, failed := false, false
	for _, e := range events {
		switch e.Name {
		case "error", "response.failed":
			failed = true
			continue
		case "message_stop", "response.completed", "response.incomplete":
			ended = true
			continue
		}
		data := bytes.TrimSpace(e.Data)
		if string(data) == "[DONE]" {
			ended = true
			continue
		}
		if !mayEnd(data) {
			continue
		}
		var p endProbe
		if !decode(data, &p) {
			continue
		}
		switch p.Type {
		case "error", "response.failed":
			failed = true
		case "message_stop", "response.completed", "response.incomplete":
			ended = true
		}
		if p.Error || p.Object == "error" {
			failed = true
		}
		if p.Done {
			ended = true
		}
		for _, c := range p.Choices {
			if c.FinishReason != nil {
				ended = true
			}
		}
	}
	switch {
	case failed:
		return MissingErrorResponse
	case ended:
		return MissingStreamWithoutUsage
	}
	return MissingTruncated
}

// mayEnd is a cheap test for an event that streamMissing must decode.
func mayEnd(data []byte) bool {
	if mentions(data, `"finish_reason"`) || bytes.HasPrefix(firstValue(data, `"done"`), []byte("true")) {
		return true
	}
	for _, w := range endWords {
		if bytes.Contains(data, w) {
			return true
		}
	}
	return false
}

// endWords are the words of the events that end a stream or report an
// error (as a key or a type: "error":{...} or "type":"error").
var endWords = [][]byte{
	[]byte(`"error"`), []byte(`"message_stop"`),
	[]byte(`"response.completed"`), []byte(`"response.incomplete"`), []byte(`"response.failed"`),
}
