// Package llmtap is a Traefik middleware plugin that observes LLM and
// text-to-speech traffic: for each request it records who sent it, the
// status, the bytes and the timing of every streamed write, and a bounded
// head and tail of the bodies, and sends these records to the llmtap
// collector in the background. It streams every write to the client at once
// and never waits on the collector, except on routers with limits, where
// each request waits for its limit check, at most limits.timeout.
//
// The package runs interpreted by Yaegi inside Traefik, so it uses only the
// standard library, keeps per-request work small, and avoids what Yaegi
// handles badly (generics, range over ints, min/max, value receivers).
package llmtap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Middleware is the plugin's http.Handler.
type Middleware struct {
	next    http.Handler
	set     *settings
	sender  *sender
	pending *int64 // the sender's
	pool    *pool  // nil: the router's service proxies (next)
}

// New validates the configuration and prepares the middleware. It does no
// network I/O: the collector is contacted only by the background sender
// and, on routers with limits, by each request's limit check.
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	s, err := config.validate(name)
	if err != nil {
		return nil, err
	}
	if s.recordsURL == "" {
		return &idOnly{next: next}, nil
	}
	sd := senderFor(s, name)
	return &Middleware{next: next, set: s, sender: sd, pending: sd.pending, pool: poolFor(s, name)}, nil
}

func (m *Middleware) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	c := &captureWriter{rw: rw, h: rw.Header(), req: req, set: m.set, active: m.sender.active, start: time.Now(), rec: &Record{V: RecordVersion}}
	// A client's id is kept only when it is one valid id; any other is
	// replaced, for the upstream and the client too.
	if v := req.Header[HeaderRequestID]; len(v) == 1 && ValidID(v[0]) {
		c.rec.RequestID = v[0]
	} else {
		c.rec.RequestID = randomID()
		req.Header[HeaderRequestID] = []string{c.rec.RequestID}
	}
	if h := m.set.omitHeader; h != "" {
		if _, ok := req.Header[h]; ok {
			omitBodies(c, req, h)
		}
	}
	if req.ContentLength != 0 && req.Body != nil {
		captureRequest(c, req)
		if m.set.includeUsage && c.reqBody != nil {
			askUsage(c, req)
		}
	}
	// Counted until the sender's goroutine takes the record, so that a
	// retired sender ends only when no request of its middleware is left.
	// Negative: the retired sender had stopped (see runRetired).
	if atomic.AddInt64(m.pending, 1) < 0 {
		revive(m.sender)
	}
	defer finish(m.sender, c)
	if m.set.checkURL != "" && !checkLimits(m.sender, c, req) {
		c.returned = true
		return
	}
	if m.pool != nil {
		serve(m.pool, c, req)
	} else {
		m.next.ServeHTTP(c, req)
	}
	c.returned = true
	if c.rec.Status == 0 {
		// Nothing was written: the server sends the response after we return.
		c.h[HeaderRequestID] = []string{c.rec.RequestID}
	}
}

// omitBodies takes the omit header h off the request, and notes whether
// the client asked that the bodies be left out of what is stored.
func omitBodies(c *captureWriter, req *http.Request, h string) {
	v := req.Header[h]
	delete(req.Header, h)
	c.rec.BodiesOmitted = len(v) == 1 && (v[0] == "1" || strings.EqualFold(v[0], "true"))
}

// randomID makes a request id: 128 random bits in hex.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// idOnly is the handler when recording is off: it only sets request ids.
type idOnly struct{ next http.Handler }

func (m *idOnly) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	v := req.Header[HeaderRequestID]
	id := ""
	if len(v) == 1 && ValidID(v[0]) {
		id = v[0]
	} else {
		id = randomID()
		req.Header[HeaderRequestID] = []string{id}
	}
	rw.Header().Set(HeaderRequestID, id)
	m.next.ServeHTTP(rw, req)
}
