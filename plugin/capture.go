package llmtap

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// captureWriter observes one request and its response on the way to the
// client: status, byte count, the offset and time of every write, and a
// bounded head and tail of the body. It never holds bytes back: each Write
// goes straight to the writer Traefik handed us, and streaming responses are
// flushed after every write, because under Yaegi Traefik sees only
// Header/Write/WriteHeader(/Hijack) on this type and never calls its Flush.
// Modeled on Traefik's capture middleware.
//
// Its methods are the hot path, interpreted for every request and write.
// Measured under Yaegi v0.16 (tools/yaegibench), every call is dear: a
// standard-library call costs about 0.25 µs, a call into an interpreted
// function 0.3 µs or more, a compiled caller's call into one of these
// methods over 1 µs, while a field update costs a few ns. So the methods
// fill the wire record in place (rec), keep the common paths inline, and
// leave everything that can wait to the sender's goroutine.
type captureWriter struct {
	rw      http.ResponseWriter
	h       http.Header  // rw.Header(), fetched once
	flusher http.Flusher // set for streaming responses only
	set     *settings
	active  *int64 // the sender's count of streams in flight
	req     *http.Request
	start   time.Time

	// rec is the wire record, filled as the request goes; record completes
	// it. A pointer: under Yaegi every expression that reads a struct-valued
	// field gets a copy of the whole struct allocated at each call.
	rec *Record

	// request body: the whole small body read up front, or its capture in
	// flight; headRead is what readHead read of a longer body of unknown
	// length before the limit check.
	reqBody  []byte
	bodyHead *bodyHead
	headRead int64

	kind       int
	capture    bool // body bytes are kept for this response
	returned   bool // the next handler returned instead of panicking
	tenantDone bool // rec.Tenant is resolved (for the limit check)

	head       []byte
	tail       []byte
	tailOffset int64

	// size is what the queued observation holds (observationBytes), set
	// by finish and given back by the sender.
	size int64

	// failed is the error of an attempt through an upstream's quick
	// proxy, left by its ErrorHandler for try (upstream.go).
	failed error
}

func (c *captureWriter) Header() http.Header { return c.h }

// WriteHeader passes the status on; the first final status also decides
// whether the response streams and whether its body is captured, and sets
// the request id the client gets.
func (c *captureWriter) WriteHeader(code int) {
	r := c.rec
	if r.Status != 0 || (code < 200 && code != http.StatusSwitchingProtocols) {
		// A repeated call, or an informational 1xx: not the final status.
		c.rw.WriteHeader(code)
		return
	}
	r.Status = code
	r.HeaderNs = int64(time.Since(c.start))
	h := c.h
	if up := h[HeaderRequestID]; len(up) > 0 {
		upstreamID(r, up[0])
	}
	h[HeaderRequestID] = []string{r.RequestID}
	if v := h["Content-Type"]; len(v) > 0 {
		r.ResponseContentType = v[0]
	}
	kind, known := commonKinds[r.ResponseContentType]
	if !known {
		kind = contentKind(r.ResponseContentType)
	}
	c.kind = kind
	c.capture = c.set.captureKinds&kind != 0
	if kind == kindSSE || kind == kindNDJSON || len(h["Content-Length"]) == 0 {
		streaming(c)
	}
	c.rw.WriteHeader(code)
}

// upstreamID keeps the upstream's own request id when it differs from ours.
func upstreamID(r *Record, id string) {
	if id != r.RequestID {
		r.UpstreamRequestID = NormalizeID(id)
	}
}

// streaming sets the response up to be flushed after every write, and
// counts it among the active streams until finish.
func streaming(c *captureWriter) {
	c.flusher, _ = c.rw.(http.Flusher)
	c.rec.Streaming = c.flusher != nil
	if c.rec.Streaming {
		atomic.AddInt64(c.active, 1)
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	r := c.rec
	if r.Status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	// Stamped before the bytes go on: a stamp taken after the flush would
	// also count any pause of this goroutine once the client had them.
	at := int64(time.Since(c.start))
	n, err := c.rw.Write(p)
	if c.flusher != nil {
		c.flusher.Flush()
	}
	if n <= 0 {
		return n, err
	}
	r.ResponseBytes += int64(n)
	if len(r.WriteEnds) < c.set.maxWrites {
		r.WriteEnds = append(r.WriteEnds, r.ResponseBytes)
		r.WriteNs = append(r.WriteNs, at)
	} else {
		lateWrite(c, at)
	}
	if c.capture {
		if len(c.head)+n <= c.set.respHead {
			c.head = append(c.head, p[:n]...)
			c.tailOffset = int64(len(c.head))
		} else {
			captureBody(c, p[:n])
		}
	}
	return n, err
}

// lateWrite records a write past the bound: the last slot keeps moving to
// the latest write, so the final one is always listed.
func lateWrite(c *captureWriter, at int64) {
	r := c.rec
	r.WritesDropped++
	if last := c.set.maxWrites - 1; last >= 0 {
		r.WriteEnds[last] = r.ResponseBytes
		r.WriteNs[last] = at
	}
}

// captureBody keeps the body's head, then a tail that is trimmed only once
// it holds twice its limit, which keeps the copying amortized.
func captureBody(c *captureWriter, p []byte) {
	if room := c.set.respHead - len(c.head); room > 0 {
		if room > len(p) {
			room = len(p)
		}
		c.head = append(c.head, p[:room]...)
		p = p[room:]
		c.tailOffset = int64(len(c.head))
	}
	if len(p) == 0 || c.set.respTail == 0 {
		return
	}
	c.tail = append(c.tail, p...)
	if len(c.tail) >= 2*c.set.respTail {
		trimTail(c)
	}
}

func trimTail(c *captureWriter) {
	if extra := len(c.tail) - c.set.respTail; extra > 0 {
		c.tail = c.tail[:copy(c.tail, c.tail[extra:])]
		c.tailOffset += int64(extra)
	}
}

// Flush lets compiled callers flush through the capture writer.
func (c *captureWriter) Flush() {
	if c.rec.Status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if f, ok := c.rw.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection over for protocol upgrades (websockets);
// without it Traefik answers an upgrade with 500.
func (c *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := c.rw.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("llmtap: %T cannot hijack the connection", c.rw)
	}
	if c.rec.Status == 0 {
		c.rec.Status = http.StatusSwitchingProtocols
		c.rec.HeaderNs = int64(time.Since(c.start))
		// The proxy writes the upgrade response from these headers itself.
		c.h[HeaderRequestID] = []string{c.rec.RequestID}
	}
	return h.Hijack()
}

// finish notes how the request ended, takes what the record needs of the
// request, and hands the observation to the sender without ever waiting:
// past the queue's count or its byte budget it is dropped and counted.
// What is queued holds no request, headers or response writer, and its
// bodies are cut to their limits; the sender completes the record off the
// request path (record), where its interpreted work costs the request
// nothing.
//
// ServeHTTP defers it, so that a request that ends in a panic is recorded
// too: Go's reverse proxy panics with http.ErrAbortHandler when a streamed
// body breaks off. It does not recover: under Yaegi a re-panicked value is
// no longer http.ErrAbortHandler, and Traefik would log every abort as an
// error. The sender is an argument, not a field of the writer: one field
// less to set on every request.
func finish(sd *sender, c *captureWriter) {
	r := c.rec
	r.DurationNs = int64(time.Since(c.start))
	if r.Streaming {
		atomic.AddInt64(c.active, -1)
	}
	// A handler that returned with a success wrote the whole response
	// (the proxy panics when its copy fails): a client that leaves after
	// the last byte, as SDKs do once they read a stream's end, cancelled
	// nothing. So the context is read only when the request may have
	// been cut short: two calls spared on every successful response.
	if !c.returned || r.Status >= 400 || r.Status == 0 {
		cutShort(c)
	}
	// What the record needs of the request is taken now; the request,
	// its headers and the response writer are let go. Separate
	// statements, because Yaegi v0.16 fails on `c.rw, c.flusher = nil, nil`.
	fromRequest(c, sd.keys)
	c.req = nil
	c.rw = nil
	c.flusher = nil
	c.h = nil
	if len(c.tail) > c.set.respTail {
		trimTail(c)
	}
	size := observationBytes(c)
	c.size = size
	// A slot and the bytes are reserved before a plain send, not taken by
	// a select with a default: under Yaegi v0.16, concurrent sends in such
	// a select now and then deliver another goroutine's value (a record
	// sent twice and its neighbour lost; found by the soak, reproduced in
	// isolation).
	if atomic.AddInt64(&sd.queuedBytes, size) <= sd.maxBytes {
		if atomic.AddInt64(&sd.queued, 1) <= sd.capacity {
			sd.queue <- c // never blocks: the slot is ours
			return
		}
		atomic.AddInt64(&sd.queued, -1)
	}
	drop(sd, size)
}

// cutShort sets the outcome of a request that may have been cut short:
// one whose handler panicked, or whose status is an error or none.
func cutShort(c *captureWriter) {
	r := c.rec
	switch {
	case c.req.Context().Err() != nil:
		r.Outcome = OutcomeClientCancelled
	case !c.returned:
		r.Outcome = OutcomeAborted
	case r.Status >= 400 && r.Outcome == "":
		// Not when the plugin answered itself (OutcomeLimited).
		r.Outcome = OutcomeUpstreamError
	}
}

// drop counts an observation of size bytes that the queue had no room
// for, and gives back what finish reserved.
func drop(sd *sender, size int64) {
	atomic.AddInt64(&sd.queuedBytes, -size)
	atomic.AddInt64(&sd.dropped, 1)
	atomic.AddInt64(sd.pending, -1) // it will never be taken
}

// recordOverhead is what a queued record holds besides its bodies, write
// timings and request strings: the struct, its short strings, the slot.
const recordOverhead = 2 << 10

// observationBytes is the memory a queued observation holds, as the byte
// budget counts it: what its slices hold (capacity, not length; the write
// times have as many as the write ends) and the strings from the request
// that nothing bounds. The content types and ids are short or cut short.
// finish counts it once (size) and the sender gives back the same sum:
// slices are not cut to their length, which costs more than it saves, so
// the capacity is what they hold.
func observationBytes(c *captureWriter) int64 {
	r := c.rec
	n := recordOverhead + cap(c.reqBody) + cap(c.head) + cap(c.tail) + 16*cap(r.WriteEnds) +
		len(r.Path) + len(r.Host) + len(r.UserAgent)
	if b := c.bodyHead; b != nil {
		// headRead: what readHead holds for the upstream to read again,
		// kept whole when it never did (a denied request).
		n += cap(b.head) + int(c.headRead)
	}
	return int64(n)
}

// fromRequest copies into the record what it keeps of the request, and
// names its tenant when the limit check has not.
func fromRequest(c *captureWriter, keys *tenantKeys) {
	req := c.req
	h := req.Header
	r := c.rec
	r.Method = req.Method
	r.Host = req.Host
	r.Path = req.URL.Path
	if v := h["User-Agent"]; len(v) > 0 {
		r.UserAgent = v[0]
	}
	if v := h["Content-Type"]; len(v) > 0 {
		r.RequestContentType = v[0]
	}
	if v := h["Traceparent"]; len(v) == 1 && len(v[0]) == TraceparentLen {
		r.TraceParent = v[0]
	}
	if !c.tenantDone {
		resolveTenant(c, keys)
	}
}

// maxRecordBytes is the largest record the capture limits allow (strings
// from the request aside).
func maxRecordBytes(c *Config) int {
	return c.MaxRequestBodyBytes + c.MaxResponseBodyBytes + 16*c.MaxWrites + recordOverhead
}

// record completes the wire record of a finished observation (fromRequest
// has run). It runs in the sender's goroutine.
func record(c *captureWriter) *Record {
	r := c.rec
	if r.Outcome == "" {
		r.Outcome = OutcomeCompleted
	}
	r.StartUnixNs = c.start.UnixNano()
	r.Route = c.set.route
	r.RequestBytes = int64(len(c.reqBody))

	kind, known := commonKinds[r.RequestContentType]
	if !known {
		kind = contentKind(r.RequestContentType)
	}
	keepReq := c.set.captureKinds&kind != 0
	if c.bodyHead != nil {
		c.bodyHead.fill(r, keepReq)
	} else if keepReq {
		r.RequestBody = c.reqBody
	}

	if !c.capture {
		if r.ResponseBytes > 0 {
			r.BodyNotCaptured = kindName(c.kind)
		}
		return r
	}
	r.ResponseHead = c.head
	if len(c.tail) > 0 {
		r.ResponseTail = c.tail
		r.ResponseTailOffset = c.tailOffset
		r.ResponseTruncated = int64(len(c.head)+len(c.tail)) < r.ResponseBytes
	}
	return r
}
