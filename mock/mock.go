// Package mock is a mock LLM upstream for tests, benchmarks and the demo.
// It speaks OpenAI chat completions and Responses, Anthropic Messages (each
// streamed or not) and OpenAI-style text to speech (streamed WAV audio), at
// a pace set per request, and it keeps the truth of every request it
// served: when it really flushed its first byte and first token, and what
// it sent. Tests compare that truth with what the proxy measured.
//
// A Server is an http.Handler: use it in process (httptest.NewServer) or
// run cmd/llmtap-mock.
//
// # Endpoints
//
// Every POST takes a JSON body (an empty body counts as {}), read whole.
// The response's model is the request's "model", "mock-1" without one. The
// input token count is the number of whitespace-separated words in the
// prompt (chat and Anthropic messages[].content, strings or the text of
// content parts; Anthropic "system"; Responses "instructions" and "input";
// speech "input"), at least 1. Generated text is the tokens "tok0 ",
// "tok1 ", ... one per content event.
//
//   - POST /v1/chat/completions: "stream": false, a chat.completion with
//     usage {prompt_tokens, completion_tokens, total_tokens}. "stream": true,
//     an event stream: the headers and a role-only chunk (delta
//     {"role":"assistant","content":""}, no content) at once; after the
//     time to first token one chunk per token, Gap apart; a chunk with
//     finish_reason "stop"; with stream_options.include_usage a usage chunk
//     ("choices": []); then "data: [DONE]".
//   - POST /v1/responses: streamed, response.created and
//     response.in_progress at once; after the time to first token
//     response.output_item.added, response.content_part.added and one
//     response.output_text.delta per token; then response.output_text.done,
//     response.content_part.done, response.output_item.done and
//     response.completed with usage {input_tokens, output_tokens,
//     total_tokens}. Not streamed, a response object with output and usage.
//   - POST /v1/messages (Anthropic): streamed, message_start (usage
//     input_tokens, output_tokens 1), content_block_start and ping at once;
//     after the time to first token one content_block_delta (text_delta)
//     per token; then content_block_stop, message_delta (stop_reason
//     end_turn, usage.output_tokens) and message_stop. Not streamed, a
//     message with usage {input_tokens, output_tokens}.
//   - POST /v1/audio/speech (OpenAI TTS): audio/wav without a
//     Content-Length (chunked). The headers at once; after the time to
//     first token (here the time to first audio byte) a WAV header and the
//     first PCM chunk; the other chunks Gap apart. The tokens knob is the
//     number of chunks, the chunk knob their size. The body is exactly
//     Audio(tokens, chunk).
//   - GET /mock/truth/{request_id}: the request's Truth as JSON; 404 with a
//     JSON error when there is none.
//   - GET /healthz: 200.
//
// Any other method or path answers 404 with an OpenAI-shaped error.
//
// Every event of a stream is written and flushed on its own. A non-streamed
// response waits the whole generation time (TTFT, then Gap for each token
// after the first) and is sent in one write with a Content-Length.
//
// # Knobs
//
// A request sets its knobs as query parameters (?ttft=150ms&tokens=3) or as
// headers X-Mock-<Name> (X-Mock-Ttft: 150ms). When both name a knob, the
// header wins (an empty header counts as absent). A header X-Mock-<Name>
// that names no knob is an error, to catch typos.
//
//	knob    value                     default, meaning
//	ttft    duration ≥ 0              Options.TTFT: time to first token (first audio byte)
//	gap     duration ≥ 0              Options.Gap: pause between tokens (audio chunks)
//	tokens  0 to 1000000              Options.Tokens: content tokens (audio chunks)
//	chunk   even, 2 to 1048576        4800: bytes per audio chunk (speech only)
//	fail    400 to 599                none: answer at once with this status and an
//	                                  error body in the endpoint's provider shape:
//	                                  OpenAI {"error": {message, type, param, code}},
//	                                  Anthropic {"type": "error", "error": {type,
//	                                  message}}; 429 and 503 add Retry-After: 1
//	hang    duration ≥ 0, or forever  none: wait this long, or until the client
//	                                  leaves, before sending anything (for upstream
//	                                  timeouts); then go on
//	drop    0 to tokens               none: right after the n-th content token (audio
//	                                  chunk), close the connection without ending
//	                                  the body; 0 drops right after the headers and
//	                                  the non-content events sent before the first
//	                                  token. A non-streamed body is cut just after
//	                                  the n-th token's text.
//
// The order is: body, knobs, hang, fail, the response. A bad knob, or a body
// that is not JSON, answers 400 in the endpoint's error shape, naming the
// knob and its value. Durations are Go durations (150ms, 1.5s). drop needs a
// connection it can hijack (HTTP/1.1); elsewhere it aborts the handler with
// http.ErrAbortHandler.
//
// # Truth
//
// Each request to one of the four POST endpoints leaves a Truth, keyed by
// its X-Request-Id header (the llmtap plugin always sets one). A request
// without one gets a random id; the id, given or made, is returned in the
// X-Request-Id response header. The truth is stored when the server is done
// with the request: the last write, the drop, or noticing that the client
// left (Cancelled). Server.Truth and GET /mock/truth/{request_id} wait up to
// 5 s for a request with that id still being served. The server keeps the
// latest Options.MaxTruths truths and forgets the oldest.
package mock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"
)

// Defaults of Options and of the chunk knob.
const (
	DefaultTTFT      = 100 * time.Millisecond
	DefaultGap       = 20 * time.Millisecond
	DefaultTokens    = 16
	DefaultMaxTruths = 10000
	DefaultChunk     = 4800
)

// HeaderRequestID keys the truths; see the package doc.
const HeaderRequestID = "X-Request-Id"

// truthWait bounds how long Truth waits for a request still being served:
// a client that has read a response to its end may ask before the handler
// has returned, and a client that gave up may ask before the handler has
// noticed.
const truthWait = 5 * time.Second

// Options are the server's defaults for requests that set no knob. A zero
// field takes its default; a negative TTFT, Gap or Tokens means none (0).
// Tokens is at most 1000000, as the knob.
type Options struct {
	TTFT      time.Duration // time to first token; default DefaultTTFT
	Gap       time.Duration // pause between tokens; default DefaultGap
	Tokens    int           // content tokens (audio chunks) per response; default DefaultTokens
	MaxTruths int           // truths kept, the oldest forgotten first; default DefaultMaxTruths
}

// withDefaults resolves the zero and negative fields (see Options).
func (o Options) withDefaults() Options {
	switch {
	case o.TTFT == 0:
		o.TTFT = DefaultTTFT
	case o.TTFT < 0:
		o.TTFT = 0
	}
	switch {
	case o.Gap == 0:
		o.Gap = DefaultGap
	case o.Gap < 0:
		o.Gap = 0
	}
	switch {
	case o.Tokens == 0:
		o.Tokens = DefaultTokens
	case o.Tokens < 0:
		o.Tokens = 0
	}
	if o.Tokens > maxTokens {
		o.Tokens = maxTokens
	}
	if o.MaxTruths <= 0 {
		o.MaxTruths = DefaultMaxTruths
	}
	return o
}

// Server is the mock upstream, an http.Handler. It is safe for concurrent
// use.
type Server struct {
	o      Options
	mux    *http.ServeMux
	truths *truthStore
	ids    atomic.Uint64 // response ids: chatcmpl-mock-1, resp_mock_2, ...
}

// New returns a server with the given defaults.
func New(o Options) *Server {
	s := &Server{o: o.withDefaults(), mux: http.NewServeMux()}
	s.truths = newTruthStore(s.o.MaxTruths)
	s.mux.Handle("POST /v1/chat/completions", s.endpoint(openAIError, s.chat))
	s.mux.Handle("POST /v1/responses", s.endpoint(openAIError, s.responses))
	s.mux.Handle("POST /v1/messages", s.endpoint(anthropicError, s.messages))
	s.mux.Handle("POST /v1/audio/speech", s.endpoint(openAIError, s.speech))
	s.mux.HandleFunc("GET /mock/truth/{request_id}", s.serveTruth)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, openAIError(http.StatusNotFound, "Invalid URL ("+r.Method+" "+r.URL.Path+")", ""))
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// Truth returns the truth of the request with this id. For a request still
// being served it first waits for the end, at most 5 s.
func (s *Server) Truth(requestID string) (Truth, bool) {
	return s.truths.get(context.Background(), requestID, truthWait)
}

// serveTruth answers GET /mock/truth/{request_id}.
func (s *Server) serveTruth(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("request_id")
	t, ok := s.truths.get(r.Context(), id, truthWait)
	if !ok {
		writeJSON(w, http.StatusNotFound, openAIError(http.StatusNotFound, "no truth for request id "+quote(id), ""))
		return
	}
	b, err := json.Marshal(t)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, openAIError(http.StatusInternalServerError, err.Error(), ""))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// serveFunc answers one endpoint's request once the body, the knobs, the
// hang and the fail knob have been dealt with.
type serveFunc func(x *exchange, req *request, k knobs)

// endpoint wraps an endpoint's serveFunc in what all endpoints share: the
// request id, the body, the knobs, hang and fail, and the truth.
func (s *Server) endpoint(shape errorShape, serve serveFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := s.begin(w, r, shape)
		defer x.finish()
		req, err := readRequest(r.Body)
		if err != nil {
			x.fail(http.StatusBadRequest, err.Error())
			return
		}
		x.t.InputTokens = req.inputTokens()
		k, err := s.knobs(r)
		if err != nil {
			x.fail(http.StatusBadRequest, err.Error())
			return
		}
		if !x.sleep(k.hang) {
			return
		}
		if k.fail != 0 {
			x.fail(k.fail, "mock failure (knob fail="+itoa(k.fail)+")")
			return
		}
		serve(x, req, k)
	})
}

// begin starts the exchange of a request: its id, its arrival time, its
// truth in flight.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, shape errorShape) *exchange {
	start := time.Now()
	id := r.Header.Get(HeaderRequestID)
	if id == "" {
		id = newID()
	}
	w.Header().Set(HeaderRequestID, id)
	return newExchange(w, r, start, shape, s.truths, Truth{
		RequestID:      id,
		Endpoint:       r.URL.Path,
		ReceivedUnixNs: start.UnixNano(),
	})
}

// nextID returns the next response id with this prefix.
func (s *Server) nextID(prefix string) string {
	return prefix + itoa(int(s.ids.Add(1)))
}

// newID returns 128 random bits in hex, as the plugin makes request ids.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // the system's generator does not fail on the platforms Go supports
	return hex.EncodeToString(b[:])
}

// writeJSON answers a small JSON document in one write.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
