// Package llmtap is a Traefik middleware plugin that observes LLM and
// text-to-speech traffic: for each request it records who sent it, the
// status, the bytes and the timing of every streamed write, and a bounded
// head and tail of the bodies, and sends these records to the llmtap
// collector in the background. It streams every write to the client at once
// and never waits on the collector.
//
// The package runs interpreted by Yaegi inside Traefik, so it uses only the
// standard library, keeps per-request work small, and avoids what Yaegi
// handles badly (generics, range over ints, min/max, value receivers).
package llmtap

import (
	"context"
	"net/http"
	"time"
)

// Middleware is the plugin's http.Handler.
type Middleware struct {
	next   http.Handler
	set    *settings
	sender *sender // nil when recording is off
}

// New validates the configuration and prepares the middleware. It does no
// network I/O: the collector is contacted only by the background sender.
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	s, err := config.validate(name)
	if err != nil {
		return nil, err
	}
	var sd *sender
	if s.recordsURL != "" {
		sd = senderFor(s)
	}
	return newMiddleware(next, s, sd), nil
}

func newMiddleware(next http.Handler, s *settings, sd *sender) *Middleware {
	return &Middleware{next: next, set: s, sender: sd}
}

func (m *Middleware) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	start := time.Now()
	id, made := requestID(req.Header, start)
	if made {
		req.Header.Set(HeaderRequestID, id)
	}
	rw.Header().Set(HeaderRequestID, id)
	if m.sender == nil {
		m.next.ServeHTTP(rw, req)
		return
	}

	t := &tap{start: start, id: id, req: req}
	t.body, t.reqBody = captureRequest(req, m.set)
	t.cw = &captureWriter{rw: rw, start: start, set: m.set}
	defer m.finish(t)
	m.next.ServeHTTP(t.cw, req)
	t.returned = true
}

// tap is one request's observation in progress.
type tap struct {
	start   time.Time
	id      string
	req     *http.Request
	cw      *captureWriter
	body    *bodyHead // the request body's capture when read in flight
	reqBody []byte    // or the whole small body, read up front
	// returned is set when the next handler returned instead of panicking.
	returned bool
}

// finish builds and queues the record. It is deferred so that a request
// that ends in a panic is recorded too: Go's reverse proxy panics with
// http.ErrAbortHandler when a streamed body breaks off, on purpose. finish
// does not recover: under Yaegi a re-panicked value is no longer
// http.ErrAbortHandler, and Traefik would log every abort as an error.
func (m *Middleware) finish(t *tap) {
	req := t.req
	r := &Record{
		V:                  RecordVersion,
		RequestID:          t.id,
		StartUnixUs:        t.start.UnixMicro(),
		Route:              m.set.route,
		Method:             req.Method,
		Host:               req.Host,
		Path:               req.URL.Path,
		UserAgent:          req.UserAgent(),
		RequestContentType: req.Header.Get("Content-Type"),
		DurationUs:         time.Since(t.start).Microseconds(),
	}
	r.Tenant, r.TenantSource = tenantOf(req.Header, m.set)
	keepReq := m.set.captureKinds&contentKind(r.RequestContentType) != 0
	if t.body != nil {
		t.body.fill(r, keepReq)
	} else {
		r.RequestBytes = int64(len(t.reqBody))
		if keepReq {
			r.RequestBody = t.reqBody
		}
	}
	t.cw.fill(r)
	switch {
	case req.Context().Err() != nil:
		r.Outcome = OutcomeClientCancelled
	case !t.returned:
		r.Outcome = OutcomeAborted
	case r.Status >= 400:
		r.Outcome = OutcomeUpstreamError
	default:
		r.Outcome = OutcomeCompleted
	}
	m.sender.enqueue(r)
}
