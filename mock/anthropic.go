package mock

import (
	"fmt"
	"net/http"
)

// anthropicError is Anthropic's error body: {"type": "error", "error":
// {type, message}, "request_id"}.
func anthropicError(status int, message, requestID string) []byte {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusUnauthorized:
		typ = "authentication_error"
	case status == http.StatusForbidden:
		typ = "permission_error"
	case status == http.StatusNotFound:
		typ = "not_found_error"
	case status == http.StatusRequestEntityTooLarge:
		typ = "request_too_large"
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status == 529:
		typ = "overloaded_error"
	case status >= 500:
		typ = "api_error"
	}
	return fmt.Appendf(nil, `{"type":"error","error":{"type":%q,"message":%s},"request_id":%s}`, typ, quote(message), quote(requestID))
}

// messages answers POST /v1/messages.
func (s *Server) messages(x *exchange, req *request, k knobs) {
	id, model := quote(s.nextID("msg_mock_")), quote(req.model())
	in, out := x.t.InputTokens, k.tokens
	if !req.Stream {
		body := fmt.Appendf(nil, `{"id":%s,"type":"message","role":"assistant","model":%s,`+
			`"content":[{"type":"text","text":%s}],"stop_reason":"end_turn","stop_sequence":null,`+
			`"usage":{"input_tokens":%d,"output_tokens":%d}}`, id, model, quote(text(out)), in, out)
		x.complete(k, body, `"text":"`)
		return
	}

	event := func(typ, fields string) []byte {
		if fields != "" {
			fields = "," + fields
		}
		return fmt.Appendf(nil, "event: %s\ndata: {\"type\":%q%s}\n\n", typ, typ, fields)
	}
	// message_start reports output_tokens 1, as Anthropic's does; the
	// count that holds is message_delta's.
	start := fmt.Sprintf(`"message":{"id":%s,"type":"message","role":"assistant","model":%s,"content":[],`+
		`"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":1}}`, id, model, in)
	// Each step runs only while the client is still there.
	_ = x.open(http.StatusOK, sseType, -1) &&
		x.send(event("message_start", start), false) &&
		x.send(event("content_block_start", `"index":0,"content_block":{"type":"text","text":""}`), false) &&
		x.send(event("ping", ""), false) &&
		x.awaitFirst(k) &&
		x.tokens(k, func(i int) []byte {
			return event("content_block_delta", `"index":0,"delta":{"type":"text_delta","text":"`+token(i)+`"}`)
		}) &&
		x.send(event("content_block_stop", `"index":0`), false) &&
		x.send(event("message_delta", fmt.Sprintf(`"delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}`, out)), false) &&
		x.send(event("message_stop", ""), false)
}
