package llmtap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/maphash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// maxKeyCache bounds each of the two generations of the credential cache.
const maxKeyCache = 4096

// credential returns the header value that carries the caller's API key:
// Authorization (OpenAI and compatibles), X-Api-Key (Anthropic) or Api-Key
// (Azure OpenAI).
func credential(h http.Header) string {
	if v := h["Authorization"]; len(v) > 0 {
		return v[0]
	}
	if v := h["X-Api-Key"]; len(v) > 0 {
		return v[0]
	}
	if v := h["Api-Key"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// tenantKeys caches the tenant of each credential, for the sender's
// goroutine (record) and for the limit checks on the request path: a
// look-up costs a fraction of hashing the key under Yaegi.
//
// An entry is keyed by a 64-bit hash of the credential (maphash, seeded at
// random per cache), never by the credential itself, so every entry has
// the same small size whatever a client sends: the cache holds at most
// 2 x maxKeyCache fixed-size entries. Two credentials would share an entry
// only if their hashes collided, which a client cannot aim for without the
// seed. When the current generation is full it becomes the old one and the
// old one is dropped; a credential found in the old one moves to the
// current one, so the keys in use stay.
type tenantKeys struct {
	mu   sync.Mutex
	seed maphash.Seed
	cur  map[uint64]string
	old  map[uint64]string
}

func newTenantKeys() *tenantKeys {
	return &tenantKeys{seed: maphash.MakeSeed(), cur: map[uint64]string{}, old: map[uint64]string{}}
}

// tenantOf returns the tenant of a credential: from the cache, else hashed.
func (k *tenantKeys) tenantOf(cred string) string {
	h := maphash.String(k.seed, cred)
	k.mu.Lock()
	t, inCur := k.cur[h]
	inOld := false
	if !inCur {
		t, inOld = k.old[h]
	}
	k.mu.Unlock()
	if inCur {
		return t
	}
	if !inOld {
		t = KeyTenant(cred)
	}
	k.mu.Lock()
	if len(k.cur) >= maxKeyCache {
		k.old = k.cur
		k.cur = make(map[uint64]string, maxKeyCache)
	}
	k.cur[h] = t
	k.mu.Unlock()
	return t
}

// resolveTenant names the request's tenant in its record. By default it is
// a short hash of the request's API key, which a client cannot choose
// without holding that key; else the router's static tenant. Only a router
// configured with tenantHeader takes the tenant from that header (a header
// a forward-auth middleware or Traefik itself sets: see docs/security.md),
// normalized into a valid id, and only when the request carries exactly
// one such header. keys may be nil (no cache). It runs in the sender's
// goroutine (record), or first on the request path when the limit check
// needs the tenant; record then keeps that one.
func resolveTenant(c *captureWriter, keys *tenantKeys) {
	c.tenantDone = true
	r := c.rec
	h := c.req.Header
	if c.set.tenantHeader != "" {
		if v := h[c.set.tenantHeader]; len(v) == 1 && v[0] != "" {
			// Two statements: Yaegi v0.16 loses the second value of a
			// tuple assignment whose first is a call.
			r.Tenant = NormalizeID(v[0])
			r.TenantSource = TenantFromHeader
			return
		}
	}
	if cred := credential(h); cred != "" {
		t := ""
		if keys != nil {
			t = keys.tenantOf(cred)
		} else {
			t = KeyTenant(cred)
		}
		if t != "" {
			r.Tenant, r.TenantSource = t, TenantFromAPIKey
			return
		}
	}
	if c.set.tenant != "" {
		r.Tenant, r.TenantSource = c.set.tenant, TenantFromStatic
	}
}

// KeyTenant names the tenant of an API key credential (an Authorization,
// X-Api-Key or Api-Key header value) by a short hash of the key, so the
// key itself never leaves the proxy. Limits for a key are set under this
// name. A non-bearer Authorization value
// (Basic, Digest) carries no API key and names no tenant.
func KeyTenant(cred string) string {
	key := cred
	if sp := strings.IndexByte(cred, ' '); sp >= 0 {
		if !strings.EqualFold(cred[:sp], "bearer") {
			return ""
		}
		key = strings.TrimSpace(cred[sp+1:])
	}
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return "key-" + hex.EncodeToString(sum[:6])
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
// observed while the upstream reads it. On a router with limits, a body of
// unknown length (chunked) is read up to the limit first too, so that the
// limit check counts its prompt: a client cannot keep it from being counted
// by streaming it.
func captureRequest(c *captureWriter, req *http.Request) {
	if req.Body == http.NoBody {
		return
	}
	if req.ContentLength > 0 && req.ContentLength <= int64(c.set.maxReqBody) {
		// On a read error the body is short of ContentLength, so the proxy
		// fails the request as it would have without us.
		c.reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(c.reqBody))
		return
	}
	if req.ContentLength < 0 && c.set.checkURL != "" {
		readHead(c, req)
		return
	}
	c.bodyHead = &bodyHead{body: req.Body, limit: c.set.maxReqBody}
	req.Body = c.bodyHead
}

// readHead reads a body of unknown length up to the capture limit before
// the limit check: the whole body when it fits (then as the known-length
// case), else the upstream reads that head again and then the rest, and
// the capture observes them as for any body past the limit (headFirst).
// An error while reading is the upstream's to meet: it gets what was read,
// then the error.
func readHead(c *captureWriter, req *http.Request) {
	head, err := io.ReadAll(io.LimitReader(req.Body, int64(c.set.maxReqBody)+1))
	if err == nil && len(head) <= c.set.maxReqBody {
		c.reqBody = head
		req.Body = io.NopCloser(bytes.NewReader(head))
		return
	}
	both := &headFirst{head: head, err: err, body: req.Body}
	c.bodyHead = &bodyHead{body: both, limit: c.set.maxReqBody}
	c.headRead = int64(len(head))
	req.Body = c.bodyHead
}

// headFirst reads what readHead read, then the error it met or the rest
// of the body; Close closes the body. (Not an io.MultiReader: under Yaegi
// an interpreted reader cannot be handed to it.)
type headFirst struct {
	head []byte
	err  error
	body io.ReadCloser
}

func (h *headFirst) Read(p []byte) (int, error) {
	if len(h.head) > 0 {
		n := copy(p, h.head)
		h.head = h.head[n:]
		if len(h.head) == 0 {
			h.head = nil // let the head's bytes go
		}
		return n, nil
	}
	if h.err != nil {
		return 0, h.err
	}
	return h.body.Read(p)
}

func (h *headFirst) Close() error { return h.body.Close() }

// usageOption is what askUsage adds at the start of a request's object.
const usageOption = `"stream_options":{"include_usage":true},`

// askUsage asks an OpenAI-style streaming chat request for its usage
// (includeUsage): a body read whole, on a path ending in /chat/completions,
// whose top-level "stream" is true and which sets no "stream_options", gets
// {"include_usage": true} as its stream_options, and its length follows.
// It decodes only the two top-level keys (compiled), so that a "stream"
// inside another object cannot make a request that does not stream ask for
// stream options, which OpenAI refuses.
func askUsage(c *captureWriter, req *http.Request) {
	if !strings.HasSuffix(req.URL.Path, "/chat/completions") {
		return
	}
	var top struct {
		Stream        bool            `json:"stream"`
		StreamOptions json.RawMessage `json:"stream_options"`
	}
	// encoding/json matches keys regardless of case; the provider does
	// not: the key must be there as written.
	if !bytes.Contains(c.reqBody, []byte(`"stream"`)) {
		return
	}
	if err := json.Unmarshal(c.reqBody, &top); err != nil || !top.Stream || top.StreamOptions != nil {
		return
	}
	open := bytes.IndexByte(c.reqBody, '{') + 1
	body := make([]byte, 0, len(c.reqBody)+len(usageOption))
	body = append(body, c.reqBody[:open]...)
	body = append(body, usageOption...)
	body = append(body, c.reqBody[open:]...)
	c.reqBody = body
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
}
