package http

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/llmtap/llmtap/collector"
)

// The kinds of the API's errors. A handler returns an error of one kind
// (or a domain error: collector.ErrNotFound, collector.ErrQueueFull), and
// statusOf maps kinds to statuses, in this one place.
var (
	errInvalid      = errors.New("invalid request")        // 400: a parameter, an id or a body is wrong
	errUnauthorized = errors.New("unauthorized")           // 401: no token, or not this endpoint's
	errAdminOff     = errors.New("admin endpoints off")    // 403: no admin token configured
	errUnavailable  = errors.New("dependency unavailable") // 503: storage or the limits store
)

// apiError is an error of a kind with the message its client reads.
type apiError struct {
	kind error
	msg  string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

// fail returns an error of kind whose message the client reads.
func fail(kind error, format string, args ...any) error {
	return &apiError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// unavailable is a dependency's failure: logged with its cause by the
// handler, answered with what (not why: the cause may name hosts).
func unavailable(what string) error { return fail(errUnavailable, "%s", what) }

// statusOf is the status of an error's kind.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errAdminOff):
		return http.StatusForbidden
	case errors.Is(err, collector.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, collector.ErrQueueFull), errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError answers err as JSON {"error": ...} with its status. Only an
// apiError's message reaches the client; any other error is answered
// with its status's text (the handler logged it).
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	msg := http.StatusText(status)
	var ae *apiError
	if errors.As(err, &ae) {
		msg = ae.msg
	}
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="llmtap"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{Error: msg})
}

// errMissingToken is the answer to a request without the right token.
var errMissingToken = fail(errUnauthorized, "missing or wrong bearer token")

// errNoAdmin is the answer to an admin request when there is no admin
// token.
var errNoAdmin = fail(errAdminOff, "admin endpoints are off: set admin_token in the collector's configuration")
