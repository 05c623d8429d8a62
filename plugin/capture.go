package llmtap

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"time"
)

// captureWriter observes a response on its way to the client: status, byte
// count, the offset and time of every write, and a bounded head and tail of
// the body. It never holds bytes back: each Write goes straight to the writer
// Traefik handed us, and streaming responses are flushed after every write,
// because under Yaegi Traefik sees only Header/Write/WriteHeader(/Hijack) on
// this type and never calls its Flush. Modeled on Traefik's capture
// middleware. Not safe for concurrent use, like any ResponseWriter.
type captureWriter struct {
	rw      http.ResponseWriter
	flusher http.Flusher // set for streaming responses only
	start   time.Time
	set     *settings

	status   int
	headerUs int64
	kind     int
	capture  bool // body bytes are kept for this response
	bytes    int64

	head       []byte
	tail       []byte
	tailOffset int64

	writeEnds     []int64
	writeUs       []int64
	writesDropped int
}

func (c *captureWriter) Header() http.Header { return c.rw.Header() }

// WriteHeader decides, once, whether the response streams and whether its
// body is captured.
func (c *captureWriter) WriteHeader(code int) {
	if c.status != 0 || (code >= 100 && code < 200 && code != http.StatusSwitchingProtocols) {
		// A repeated call, or an informational 1xx: passed on, not the final status.
		c.rw.WriteHeader(code)
		return
	}
	c.status = code
	c.headerUs = time.Since(c.start).Microseconds()
	h := c.rw.Header()
	c.kind = contentKind(h.Get("Content-Type"))
	c.capture = c.set.captureKinds&c.kind != 0
	if c.kind == kindSSE || c.kind == kindNDJSON || h.Get("Content-Length") == "" {
		c.flusher, _ = c.rw.(http.Flusher)
	}
	c.rw.WriteHeader(code)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	n, err := c.rw.Write(p)
	if c.flusher != nil {
		c.flusher.Flush()
	}
	if n > 0 {
		c.observe(p[:n])
	}
	return n, err
}

// observe records one write that reached the client.
func (c *captureWriter) observe(p []byte) {
	c.bytes += int64(len(p))
	if len(c.writeEnds) < c.set.maxWrites {
		c.writeEnds = append(c.writeEnds, c.bytes)
		c.writeUs = append(c.writeUs, time.Since(c.start).Microseconds())
	} else if c.set.maxWrites > 0 {
		// Keep the final write in the last slot; the ones it replaces are counted.
		c.writeEnds[c.set.maxWrites-1] = c.bytes
		c.writeUs[c.set.maxWrites-1] = time.Since(c.start).Microseconds()
		c.writesDropped++
	} else {
		c.writesDropped++
	}
	if !c.capture {
		return
	}
	if room := c.set.respHead - len(c.head); room > 0 {
		if room > len(p) {
			room = len(p)
		}
		c.head = append(c.head, p[:room]...)
		p = p[room:]
		c.tailOffset = int64(len(c.head))
	}
	c.keepTail(p)
}

// keepTail appends p to the tail and keeps it bounded; trimming only once
// the tail holds twice its limit keeps the copying amortized.
func (c *captureWriter) keepTail(p []byte) {
	limit := c.set.respTail
	if len(p) == 0 || limit == 0 {
		return
	}
	c.tail = append(c.tail, p...)
	if len(c.tail) >= 2*limit {
		c.trimTail()
	}
}

func (c *captureWriter) trimTail() {
	if extra := len(c.tail) - c.set.respTail; extra > 0 {
		c.tail = c.tail[:copy(c.tail, c.tail[extra:])]
		c.tailOffset += int64(extra)
	}
}

// Flush lets compiled callers flush through the capture writer.
func (c *captureWriter) Flush() {
	if c.status == 0 {
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
	if c.status == 0 {
		c.status = http.StatusSwitchingProtocols
		c.headerUs = time.Since(c.start).Microseconds()
	}
	return h.Hijack()
}

// fill copies what was observed into the record.
func (c *captureWriter) fill(r *Record) {
	r.Status = c.status
	r.HeaderUs = c.headerUs
	r.ResponseContentType = c.rw.Header().Get("Content-Type")
	r.Streaming = c.flusher != nil
	r.ResponseBytes = c.bytes
	r.WriteEnds = c.writeEnds
	r.WriteUs = c.writeUs
	r.WritesDropped = c.writesDropped
	if !c.capture {
		if c.bytes > 0 {
			r.BodyNotCaptured = kindName(c.kind)
		}
		return
	}
	c.trimTail()
	r.ResponseHead = c.head
	r.ResponseTail = c.tail
	if len(c.tail) > 0 {
		r.ResponseTailOffset = c.tailOffset
	}
	r.ResponseTruncated = int64(len(c.head)+len(c.tail)) < c.bytes
}
