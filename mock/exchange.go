package mock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"net/http"
	"time"
)

// exchange is one request being answered: every byte of the response goes
// through it, so that its truth says exactly what was sent and when.
type exchange struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	ctx    context.Context
	start  time.Time
	sum    hash.Hash
	shape  errorShape
	store  *truthStore
	flight flight // the request's place in the store, until its truth is stored
	audio  bool   // the body is audio: its first byte sets TTFA, its chunks are no tokens
	done   bool
	t      Truth
}

func newExchange(w http.ResponseWriter, r *http.Request, start time.Time, shape errorShape, store *truthStore, t Truth) *exchange {
	return &exchange{
		w:      w,
		rc:     http.NewResponseController(w),
		ctx:    r.Context(),
		start:  start,
		sum:    sha256.New(),
		shape:  shape,
		store:  store,
		flight: store.begin(t.RequestID),
		t:      t,
	}
}

// open sends the status and headers. A response without a length (a
// stream) has its headers flushed at once. It reports whether the client
// is still there.
func (x *exchange) open(status int, contentType string, length int) bool {
	h := x.w.Header()
	h.Set("Content-Type", contentType)
	if length >= 0 {
		h.Set("Content-Length", itoa(length))
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	x.w.WriteHeader(status)
	x.t.Status = status
	if length < 0 {
		return x.flush()
	}
	return true
}

// send writes p and flushes it. content says p carries generated content:
// the first such write sets the time to first token. It reports whether the
// client is still there; when it is not, the truth says cancelled.
func (x *exchange) send(p []byte, content bool) bool {
	if x.ctx.Err() != nil {
		x.t.Cancelled = true
		return false
	}
	n, err := x.w.Write(p)
	x.sum.Write(p[:n])
	x.t.Bytes += int64(n)
	if err != nil {
		x.t.Cancelled = true
		return false
	}
	if !x.flush() {
		return false
	}
	now := time.Now()
	if x.t.FirstByteUnixNs == 0 && n > 0 {
		x.t.FirstByteUnixNs = now.UnixNano()
		if x.audio {
			x.t.TTFAUs = int64(now.Sub(x.start) / time.Microsecond)
		}
	}
	if content && x.t.FirstTokenUnixNs == 0 {
		x.t.FirstTokenUnixNs = now.UnixNano()
		x.t.TTFTUs = int64(now.Sub(x.start) / time.Microsecond)
	}
	return true
}

// flush pushes what was written to the client.
func (x *exchange) flush() bool {
	if err := x.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		x.t.Cancelled = true
		return false
	}
	return true
}

// forever is the hang knob's "forever": sleep until the client leaves.
const forever = time.Duration(-1)

// sleep waits d (forever when d is negative), or until the client leaves.
// It reports whether the client is still there.
func (x *exchange) sleep(d time.Duration) bool {
	var expired <-chan time.Time // nil, never ready: forever
	switch {
	case d == 0:
		if x.ctx.Err() != nil {
			x.t.Cancelled = true
			return false
		}
		return true
	case d > 0:
		t := time.NewTimer(d)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-expired:
		return true
	case <-x.ctx.Done():
		x.t.Cancelled = true
		return false
	}
}

// awaitFirst waits for the time to first token, or drops the connection
// first when the drop knob is 0. It reports whether the response goes on.
func (x *exchange) awaitFirst(k knobs) bool {
	if k.drop == 0 {
		x.drop()
		return false
	}
	return x.sleep(k.ttft)
}

// tokens sends the k.tokens content events that event makes, the first at
// once and the others k.gap apart, and drops the connection after the
// k.drop-th. It reports whether the response goes on. event's result may be
// reused by the next call.
func (x *exchange) tokens(k knobs, event func(i int) []byte) bool {
	for i := 0; i < k.tokens; i++ {
		if i > 0 && !x.sleep(k.gap) {
			return false
		}
		if !x.send(event(i), !x.audio) {
			return false
		}
		x.t.OutputTokens++
		if i+1 == k.drop {
			x.drop()
			return false
		}
	}
	return true
}

// complete sends a non-streamed JSON body after the whole generation time.
// key is the JSON key and opening quote just before the generated text in
// body: with the drop knob the body is cut after the text of k.drop tokens.
func (x *exchange) complete(k knobs, body []byte, key string) {
	wait := k.ttft
	if k.tokens > 1 {
		wait += time.Duration(k.tokens-1) * k.gap
	}
	if !x.sleep(wait) || !x.open(http.StatusOK, "application/json", len(body)) {
		return
	}
	if k.drop < 0 {
		if x.send(body, false) {
			x.t.OutputTokens = k.tokens
		}
		return
	}
	cut := len(body)
	if i := indexOf(body, key); i >= 0 {
		cut = i + len(key) + len(text(k.drop))
	}
	if x.send(body[:cut], false) {
		x.t.OutputTokens = k.drop
		x.drop()
	}
}

// fail answers status with the endpoint's error body.
func (x *exchange) fail(status int, message string) {
	body := x.shape(status, message, x.t.RequestID)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		x.w.Header().Set("Retry-After", "1")
	}
	if x.open(status, "application/json", len(body)) {
		x.send(body, false)
	}
}

// drop stores the truth, then closes the connection without ending the
// body: the client reads what was flushed, then an unexpected EOF.
func (x *exchange) drop() {
	x.t.Dropped = true
	conn, _, err := x.rc.Hijack()
	x.finish()
	if err != nil {
		// No connection to take over (HTTP/2, a recorder): the server's
		// own way to break a response off.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// finish stores the truth, once.
func (x *exchange) finish() {
	if x.done {
		return
	}
	x.done = true
	x.t.DoneUnixNs = time.Now().UnixNano()
	x.t.SHA256 = hex.EncodeToString(x.sum.Sum(nil))
	x.store.end(x.t, x.flight)
}
