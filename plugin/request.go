package llmtap

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxIDLen bounds a client-sent request id or tenant; longer ones are
// replaced or cut, so a hostile header cannot bloat every record.
const maxIDLen = 128

// requestID returns the client's X-Request-Id when it is usable, else a new
// UUIDv7 (time-ordered, which suits ClickHouse's sort keys).
func requestID(h http.Header, now time.Time) (string, bool) {
	if id := h.Get(HeaderRequestID); id != "" && len(id) <= maxIDLen {
		return id, false
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16|uint64(b[6]&0x0f)<<8|uint64(b[7])|0x7000)
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	hex.Encode(s[9:13], b[4:6])
	hex.Encode(s[14:18], b[6:8])
	hex.Encode(s[19:23], b[8:10])
	hex.Encode(s[24:], b[10:])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:]), true
}

// tenantOf derives the tenant: the tenant header, else a short hash of the
// API key (the key itself is never kept), else the router's static tenant.
func tenantOf(h http.Header, s *settings) (string, string) {
	if s.tenantHeader != "" {
		if t := h.Get(s.tenantHeader); t != "" {
			if len(t) > maxIDLen {
				t = t[:maxIDLen]
			}
			return t, TenantFromHeader
		}
	}
	if key := apiKey(h); key != "" {
		sum := sha256.Sum256([]byte(key))
		return "key-" + hex.EncodeToString(sum[:6]), TenantFromAPIKey
	}
	if s.tenant != "" {
		return s.tenant, TenantFromStatic
	}
	return "", ""
}

// apiKey finds the caller's key: a bearer token (OpenAI and compatibles),
// x-api-key (Anthropic) or api-key (Azure OpenAI).
func apiKey(h http.Header) string {
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	if k := h.Get("X-Api-Key"); k != "" {
		return k
	}
	return h.Get("Api-Key")
}

// bodyHead captures the head of a request body as the upstream reads it.
// The proxy may still read or close the body from its own goroutine after
// the handler returns, hence the lock.
type bodyHead struct {
	body  io.ReadCloser
	limit int

	mu   sync.Mutex
	head []byte
	n    int64
}

func (b *bodyHead) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	if room := b.limit - len(b.head); room > 0 && n > 0 {
		if room > n {
			room = n
		}
		b.head = append(b.head, p[:room]...)
	}
	b.mu.Unlock()
	return n, err
}

func (b *bodyHead) Close() error { return b.body.Close() }

func (b *bodyHead) fill(r *Record, keep bool) {
	b.mu.Lock()
	r.RequestBytes = b.n
	if keep {
		r.RequestBody = b.head
		r.RequestTruncated = b.n > int64(len(b.head))
	}
	b.mu.Unlock()
}

// captureRequest prepares the request body's capture. A body whose length is
// known and within the limit (the usual LLM request) is read at once by the
// standard library and replayed to the upstream unchanged; any other body is
// observed while the upstream reads it.
func captureRequest(req *http.Request, s *settings) (*bodyHead, []byte) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil, nil
	}
	if req.ContentLength > 0 && req.ContentLength <= int64(s.maxReqBody) {
		// On a read error buf is short of ContentLength, so the proxy fails
		// the request as it would have without us.
		buf, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(buf))
		return nil, buf
	}
	b := &bodyHead{body: req.Body, limit: s.maxReqBody}
	req.Body = b
	return b, nil
}
