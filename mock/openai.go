package mock

import (
	"fmt"
	"net/http"
)

// The bodies are written as the fixtures in collector/provider/testdata
// show the providers' own: field names, order and event sequences follow
// them. Ids are the mock's own (chatcmpl-mock-1, resp_mock_2), so that the
// collector does not take the mock for OpenAI itself.

// sseType is the Content-Type of the event streams.
const sseType = "text/event-stream; charset=utf-8"

// errorShape writes an endpoint's error body.
type errorShape func(status int, message, requestID string) []byte

// openAIError is OpenAI's error body: {"error": {message, type, param, code}}.
func openAIError(status int, message, _ string) []byte {
	typ, code := "invalid_request_error", "null"
	switch {
	case status == http.StatusUnauthorized:
		code = `"invalid_api_key"`
	case status == http.StatusNotFound:
		code = `"not_found"`
	case status == http.StatusTooManyRequests:
		typ, code = "requests", `"rate_limit_exceeded"`
	case status >= 500:
		typ = "server_error"
	}
	return fmt.Appendf(nil, `{"error":{"message":%s,"type":%q,"param":null,"code":%s}}`, quote(message), typ, code)
}

// chat answers POST /v1/chat/completions.
func (s *Server) chat(x *exchange, req *request, k knobs) {
	id, model, created := quote(s.nextID("chatcmpl-mock-")), quote(req.model()), x.start.Unix()
	in, out := x.t.InputTokens, k.tokens
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, in, out, in+out)
	if !req.Stream {
		body := fmt.Appendf(nil, `{"id":%s,"object":"chat.completion","created":%d,"model":%s,`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},"logprobs":null,"finish_reason":"stop"}],`+
			`"usage":%s,"system_fingerprint":null}`, id, created, model, quote(text(out)), usage)
		x.complete(k, body, `"content":"`)
		return
	}

	// With include_usage OpenAI sends "usage":null in every chunk but the
	// last.
	head := fmt.Sprintf(`data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"system_fingerprint":null,"choices":`, id, created, model)
	tail := "}\n\n"
	if req.includeUsage() {
		tail = `,"usage":null}` + "\n\n"
	}
	chunk := func(delta, finish string) []byte {
		return fmt.Appendf(nil, `%s[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]%s`, head, delta, finish, tail)
	}
	// Each step runs only while the client is still there.
	ok := x.open(http.StatusOK, sseType, -1) &&
		x.send(chunk(`{"role":"assistant","content":""}`, "null"), false) &&
		x.awaitFirst(k) &&
		x.tokens(k, func(i int) []byte { return chunk(`{"content":"`+token(i)+`"}`, "null") }) &&
		x.send(chunk(`{}`, `"stop"`), false)
	if ok && req.includeUsage() {
		ok = x.send([]byte(head+`[],"usage":`+usage+"}\n\n"), false)
	}
	if ok {
		x.send([]byte("data: [DONE]\n\n"), false)
	}
}

// responses answers POST /v1/responses.
func (s *Server) responses(x *exchange, req *request, k knobs) {
	id, msgID, model, created := quote(s.nextID("resp_mock_")), quote(s.nextID("msg_mock_")), quote(req.model()), x.start.Unix()
	in, out := x.t.InputTokens, k.tokens
	full := quote(text(out))
	usage := fmt.Sprintf(`{"input_tokens":%d,"input_tokens_details":{"cached_tokens":0},`+
		`"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":%d}`, in, out, in+out)
	item := func(status, content string) string {
		return fmt.Sprintf(`{"id":%s,"type":"message","status":%q,"role":"assistant","content":%s}`, msgID, status, content)
	}
	part := func(t string) string {
		return `{"type":"output_text","annotations":[],"text":` + t + `}`
	}
	response := func(status, output, usage string) string {
		return fmt.Sprintf(`{"id":%s,"object":"response","created_at":%d,"status":%q,"error":null,"incomplete_details":null,`+
			`"model":%s,"output":%s,"usage":%s}`, id, created, status, model, output, usage)
	}
	done := item("completed", "["+part(full)+"]")
	if !req.Stream {
		x.complete(k, []byte(response("completed", "["+done+"]", usage)), `"text":"`)
		return
	}

	seq := 0
	event := func(typ, fields string) []byte {
		b := fmt.Appendf(nil, "event: %s\ndata: {\"type\":%q,\"sequence_number\":%d,%s}\n\n", typ, typ, seq, fields)
		seq++
		return b
	}
	inText := `"item_id":` + msgID + `,"output_index":0,"content_index":0`
	// Each step runs only while the client is still there.
	_ = x.open(http.StatusOK, sseType, -1) &&
		x.send(event("response.created", `"response":`+response("in_progress", "[]", "null")), false) &&
		x.send(event("response.in_progress", `"response":`+response("in_progress", "[]", "null")), false) &&
		x.awaitFirst(k) &&
		x.send(event("response.output_item.added", `"output_index":0,"item":`+item("in_progress", "[]")), false) &&
		x.send(event("response.content_part.added", inText+`,"part":`+part(`""`)), false) &&
		x.tokens(k, func(i int) []byte {
			return event("response.output_text.delta", inText+`,"delta":"`+token(i)+`","logprobs":[]`)
		}) &&
		x.send(event("response.output_text.done", inText+`,"text":`+full+`,"logprobs":[]`), false) &&
		x.send(event("response.content_part.done", inText+`,"part":`+part(full)), false) &&
		x.send(event("response.output_item.done", `"output_index":0,"item":`+done), false) &&
		x.send(event("response.completed", `"response":`+response("completed", "["+done+"]", usage)), false)
}
