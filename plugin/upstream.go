package llmtap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A route with upstreams is proxied by the plugin itself instead of the
// router's service, so that a failed attempt can be tried again on the next
// upstream before any byte reached the client: Traefik's own retry
// middleware retries only network errors, and its failover service neither
// looks at statuses nor waits for a first byte (docs/fallback.md).
//
// Per request the plugin picks the first upstream (the first configured, or
// by weight), then tries the others in their order when an attempt fails
// before its first body byte: a 429, a 5xx, a connection error, or no first
// byte within firstByteTimeout. It holds the request body for that, up to
// fallback.maxBodyBytes; a longer body is sent once. Once a byte went to the
// client nothing is tried again: a stream that breaks later is aborted and
// recorded so. Each upstream has a circuit breaker: failures in a row open
// it, an open upstream gets no attempt for a cool-down, then one request
// probes it (half-open) and its result closes or reopens it.
//
// What runs per request is written as functions, not methods: under Yaegi
// a call to a method of an interpreted type costs several times a call to a
// function (docs/plugin.md).

// UpstreamConfig is one upstream of a route (Config.Upstreams).
type UpstreamConfig struct {
	// Name names the upstream in records and metrics; by default its host.
	Name string `json:"name,omitempty"`
	// URL is the upstream's base URL: scheme, host, and an optional path
	// prefix and query, to which each request's path and query are added.
	URL string `json:"url,omitempty"`
	// Weight, when any upstream of the route has one, makes the first
	// attempts follow the weights; the other upstreams stay fallbacks, in
	// their order. An upstream of weight 0 among weighted ones is a
	// fallback only.
	Weight int `json:"weight,omitempty"`
	// Headers are set on every request to this upstream: its own API key,
	// say. They are never recorded.
	Headers map[string]string `json:"headers,omitempty"`
}

// FallbackConfig tunes the attempts of a route with upstreams.
type FallbackConfig struct {
	// FirstByteTimeout bounds the wait for an attempt's first body byte,
	// from the attempt's start: past it the attempt is given up and the
	// next upstream tried (the last one answers 504). Empty: no bound.
	FirstByteTimeout string `json:"firstByteTimeout,omitempty"`
	// MaxBodyBytes bounds the request body held so that it can be sent
	// again; a longer body is sent once, to the first upstream.
	MaxBodyBytes int `json:"maxBodyBytes,omitempty"`
	// MaxRetryAfter bounds how long a 429's Retry-After keeps its upstream
	// out of the attempts.
	MaxRetryAfter string `json:"maxRetryAfter,omitempty"`
	// Breaker is each upstream's circuit breaker.
	Breaker BreakerConfig `json:"breaker,omitempty"`
}

// BreakerConfig is the circuit breaker of each upstream.
type BreakerConfig struct {
	// Failures in a row, each within Window of the one before, open the
	// circuit; 0 turns the breaker off.
	Failures int `json:"failures,omitempty"`
	// Window is the longest gap between two failures that still counts
	// them in a row.
	Window string `json:"window,omitempty"`
	// Cooldown is how long an open circuit keeps its upstream out; then
	// one request probes it.
	Cooldown string `json:"cooldown,omitempty"`
}

// upstream is one upstream and its breaker; the breaker's fields and
// current are guarded by the pool's mutex.
type upstream struct {
	name    string
	base    *url.URL
	headers map[string]string // canonical names; nil when none
	weight  int
	// quick and careful make the attempts on this upstream. Their
	// director is net/http's own, compiled; their hooks are set once (the
	// interpreter makes a wrapper each time it hands a func to the
	// standard library). quick makes an attempt that is not the last and
	// has neither a first byte to wait for nor a success to tell the
	// breaker of: its hooks need no state of the attempt, so it has none.
	// It passes any answer that is not a failure (passOrGiveUp) and hands
	// a failure to try through the writer (gaveUp). careful makes the
	// others: each attempt's state rides in its request's context
	// (attemptOf), and it decides every answer (decideResponse).
	quick   *httputil.ReverseProxy
	careful *httputil.ReverseProxy

	current     int // smooth weighted round robin
	failures    int // in a row
	lastFailure time.Time
	openUntil   time.Time
	probing     bool // a half-open probe is under way
}

// pool is the upstreams of a route and the transport to them.
type pool struct {
	key           string // poolKey, in the registry
	ups           []*upstream
	weighted      bool
	totalWeight   int
	transport     *http.Transport
	firstByte     time.Duration // 0: none
	maxBody       int64
	maxRetryAfter time.Duration
	failures      int // 0: no breaker
	window        time.Duration
	cooldown      time.Duration
	now           func() time.Time

	// quick: the first attempt of a calm plan may go through the quick
	// proxy (serve): the pool is not weighted, waits for no first byte,
	// and has a second upstream.
	quick bool

	mu sync.Mutex
	// calm is every upstream in order, none a probe: the plan of an
	// unweighted pool while no upstream has a failure on record, an open
	// circuit or a probe out (unsettled counts those; written with p.mu
	// held, read without).
	calm      []candidate
	unsettled atomic.Int32
}

// prepareUpstreams checks the upstreams and fallback fields and keeps what
// the pool needs in s.
func prepareUpstreams(s *settings, c *Config) error {
	f := c.Fallback
	var err error
	if f.FirstByteTimeout != "" {
		if s.firstByte, err = positiveDuration("fallback.firstByteTimeout", f.FirstByteTimeout); err != nil {
			return err
		}
	}
	if f.MaxBodyBytes < 0 {
		return fmt.Errorf("fallback.maxBodyBytes %d: must not be negative", f.MaxBodyBytes)
	}
	s.maxRetryBody = int64(f.MaxBodyBytes)
	if s.maxRetryAfter, err = positiveDuration("fallback.maxRetryAfter", f.MaxRetryAfter); err != nil {
		return err
	}
	b := f.Breaker
	if b.Failures < 0 {
		return fmt.Errorf("fallback.breaker.failures %d: must not be negative (0 turns the breaker off)", b.Failures)
	}
	s.breakerFailures = b.Failures
	if s.breakerWindow, err = positiveDuration("fallback.breaker.window", b.Window); err != nil {
		return err
	}
	if s.breakerCooldown, err = positiveDuration("fallback.breaker.cooldown", b.Cooldown); err != nil {
		return err
	}
	if len(c.Upstreams) == 0 {
		return nil
	}
	if c.CollectorURL == "" {
		return errors.New("upstreams: every attempt is recorded, so upstreams need a collectorURL")
	}
	if len(c.Upstreams) > MaxUpstreams {
		return fmt.Errorf("upstreams: %d of them, want at most %d", len(c.Upstreams), MaxUpstreams)
	}
	names := map[string]bool{}
	weighted := false
	for i, u := range c.Upstreams {
		where := "upstreams[" + strconv.Itoa(i) + "]"
		base, perr := url.Parse(u.URL)
		if perr != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil || base.Fragment != "" {
			return fmt.Errorf("%s.url %q: want an absolute http or https URL without credentials, such as https://api.openai.com", where, u.URL)
		}
		name := u.Name
		if name == "" {
			name = base.Host
		}
		if !ValidID(name) {
			return fmt.Errorf("%s.name %q: want %s", where, name, IDRule)
		}
		if names[name] {
			return fmt.Errorf("%s.name %q: another upstream has that name", where, name)
		}
		names[name] = true
		if u.Weight < 0 {
			return fmt.Errorf("%s.weight %d: must not be negative", where, u.Weight)
		}
		if u.Weight > 0 {
			weighted = true
		}
		for h := range u.Headers {
			if h == "" || strings.Trim(h, IDChars) != "" {
				return fmt.Errorf("%s.headers: %q is not a header name", where, h)
			}
		}
		s.upstreams = append(s.upstreams, u)
		s.upstreamNames = append(s.upstreamNames, name)
	}
	if weighted {
		total := 0
		for _, u := range c.Upstreams {
			total += u.Weight
		}
		if total == 0 {
			return errors.New("upstreams: weights add up to 0")
		}
	}
	return nil
}

// poolKey is what makes two routes share a pool: the same upstreams and
// fallback settings.
func poolKey(s *settings) string {
	var b strings.Builder
	for i, u := range s.upstreams {
		fmt.Fprintf(&b, "%s=%s|%d|", s.upstreamNames[i], u.URL, u.Weight)
		for k, v := range u.Headers {
			fmt.Fprintf(&b, "%s:%s,", k, v)
		}
		b.WriteString(";")
	}
	fmt.Fprintf(&b, "%s|%d|%s|%d|%s|%s", s.firstByte, s.maxRetryBody, s.maxRetryAfter, s.breakerFailures, s.breakerWindow, s.breakerCooldown)
	return b.String()
}

func newPool(s *settings) *pool {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	p := &pool{
		firstByte:     s.firstByte,
		maxBody:       s.maxRetryBody,
		maxRetryAfter: s.maxRetryAfter,
		failures:      s.breakerFailures,
		window:        s.breakerWindow,
		cooldown:      s.breakerCooldown,
		now:           time.Now,
		transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			// A closure: Yaegi takes no method value of a compiled type here.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			// The client's Accept-Encoding goes upstream and the body
			// comes back as the upstream sent it.
			DisableCompression: true,
		},
	}
	var bp httputil.BufferPool = &buffers{}
	for i, cfg := range s.upstreams {
		base, _ := url.Parse(cfg.URL) // checked by prepareUpstreams
		u := &upstream{name: s.upstreamNames[i], base: base, weight: cfg.Weight}
		// The director joins the base's path and query with the request's
		// and, with the proxy, appends the client to X-Forwarded-For; the
		// other X-Forwarded headers are Traefik's, set on the way in.
		u.quick = p.proxyTo(base, bp, passOrGiveUp, gaveUp)
		u.careful = p.proxyTo(base, bp, decideResponse, attemptFailed)
		if len(cfg.Headers) > 0 {
			u.headers = map[string]string{}
		}
		for k, v := range cfg.Headers {
			u.headers[http.CanonicalHeaderKey(k)] = v
		}
		if cfg.Weight > 0 {
			p.weighted = true
			p.totalWeight += cfg.Weight
		}
		p.ups = append(p.ups, u)
		p.calm = append(p.calm, candidate{u: u})
	}
	p.quick = !p.weighted && p.firstByte == 0 && len(p.ups) > 1
	return p
}

// proxyTo makes a proxy to base through the pool's transport with these
// hooks.
func (p *pool) proxyTo(base *url.URL, bp httputil.BufferPool, modify func(*http.Response) error, failed func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	rp := httputil.NewSingleHostReverseProxy(base)
	rp.Transport = p.transport
	// Traefik's own default (a service's responseForwarding): event
	// streams and bodies of unknown length are flushed at each write
	// whatever it is, others within 100 ms. A negative interval would
	// also start a timer that fires at once, in a goroutine of its own,
	// for every response with a Content-Length.
	rp.FlushInterval = 100 * time.Millisecond
	rp.BufferPool = bp
	rp.ModifyResponse = modify
	rp.ErrorHandler = failed
	return rp
}

// settled says whether an upstream has nothing on record. p.mu is held.
func settled(u *upstream) bool { return u.failures == 0 && u.openUntil.IsZero() && !u.probing }

// note keeps unsettled right once u changed, given whether it was
// settled before. p.mu is held.
func note(p *pool, u *upstream, was bool) {
	switch now := settled(u); {
	case was && !now:
		p.unsettled.Add(1)
	case !was && now:
		p.unsettled.Add(-1)
	}
}

// allSettled reports whether no upstream has a failure on record, an open
// circuit or a probe out.
func allSettled(p *pool) bool { return p.unsettled.Load() == 0 }

// candidate is an upstream chosen for an attempt; probe says it is the
// half-open probe of its circuit.
type candidate struct {
	u     *upstream
	probe bool
}

// plan returns the upstreams to try, in order, and lists in rec the ones
// skipped because their circuit is open; and, when every one is skipped,
// how long until the first reopens.
//
// Its results are unnamed: under Yaegi a function's named result starts
// as the caller's variable it is assigned to (docs/plugin.md).
func plan(p *pool, rec *Record) ([]candidate, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.weighted && allSettled(p) {
		return p.calm, -1 // the common case: shared, never written to
	}
	var order []candidate
	now := p.now()
	first := 0
	if p.weighted {
		first = pickWeighted(p)
	}
	soonest := time.Duration(-1)
	for i := -1; i < len(p.ups); i++ {
		k := i
		switch {
		case i < 0:
			k = first
		case i == first:
			continue
		}
		u := p.ups[k]
		switch {
		case u.openUntil.IsZero():
			order = append(order, candidate{u: u})
		case !now.Before(u.openUntil) && !u.probing:
			was := settled(u)
			u.probing = true
			note(p, u, was)
			order = append(order, candidate{u: u, probe: true})
		default:
			rec.Attempts = append(rec.Attempts, Attempt{Upstream: u.name, Error: AttemptCircuitOpen})
			if wait := u.openUntil.Sub(now); soonest < 0 || wait < soonest {
				soonest = wait
			}
		}
	}
	return order, soonest
}

// pickWeighted is smooth weighted round robin (as nginx does it): exact
// shares over any run of totalWeight picks, the heavy upstream's picks
// spread out. p.mu is held.
func pickWeighted(p *pool) int {
	best := -1
	for i, u := range p.ups {
		if u.weight == 0 {
			continue
		}
		u.current += u.weight
		if best < 0 || u.current > p.ups[best].current {
			best = i
		}
	}
	p.ups[best].current -= p.totalWeight
	return best
}

// verdict is an attempt's effect on its upstream's breaker.
type verdict int

const (
	verdictNone    verdict = iota // the client left: says nothing of the upstream
	verdictSuccess                // closes a half-open circuit, ends a run of failures
	verdictFailure
)

// report applies an attempt's verdict to its upstream's breaker, and keeps
// the upstream out for a 429's Retry-After. It says whether the circuit
// opened.
func report(p *pool, u *upstream, probe bool, v verdict, retryAfter time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := settled(u)
	if was && v != verdictFailure && retryAfter == 0 {
		return false // nothing on record, nothing to record
	}
	defer note(p, u, was)
	now := p.now()
	opened := false
	if probe {
		u.probing = false
	}
	switch v {
	case verdictSuccess:
		u.failures = 0
		u.openUntil = time.Time{}
	case verdictFailure:
		if p.failures > 0 {
			if now.Sub(u.lastFailure) > p.window {
				u.failures = 0
			}
			u.failures++
			u.lastFailure = now
			if probe || u.failures >= p.failures {
				u.openUntil = now.Add(p.cooldown)
				u.failures = 0
				opened = true
			}
		}
	}
	if retryAfter > 0 {
		if retryAfter > p.maxRetryAfter {
			retryAfter = p.maxRetryAfter
		}
		if until := now.Add(retryAfter); until.After(u.openUntil) {
			opened = opened || !now.Before(u.openUntil)
			u.openUntil = until
		}
	}
	return opened
}

// Errors of an attempt (Attempt.Error).
const (
	// AttemptConnectError: the upstream could not be reached, or failed
	// before its response headers.
	AttemptConnectError = "connect_error"
	// AttemptFirstByteTimeout: no first body byte within firstByteTimeout.
	AttemptFirstByteTimeout = "first_byte_timeout"
	// AttemptReadError: the response broke off before its first body byte.
	AttemptReadError = "read_error"
	// AttemptCircuitOpen: skipped, the upstream's circuit being open.
	AttemptCircuitOpen = "circuit_open"
	// AttemptCancelled: the client left during the attempt.
	AttemptCancelled = "cancelled"
)

// retryable says whether a status sends the request to the next upstream.
func retryable(status int) bool { return status == http.StatusTooManyRequests || status >= 500 }

// serve proxies the request through the pool's upstreams, writing the
// response to c and each attempt to c.rec. The common case, a body read
// whole (or none) and an unweighted pool with nothing on record, tries
// every upstream in order without asking the breaker; and, when the pool
// waits for no first byte, it makes the first attempt here, through the
// quick proxy, and calls no function of its own unless that attempt
// fails: under Yaegi each call and each value costs, so that path makes
// as few as it can.
func serve(p *pool, c *captureWriter, req *http.Request) {
	// A body read whole, or none (a known length of 0 and nothing read).
	if !p.quick || int64(len(c.reqBody)) != req.ContentLength || p.unsettled.Load() != 0 {
		serveAll(p, c, req)
		return
	}
	u := p.ups[0]
	c.rec.Upstream = u.name // until the attempt fails
	u.quick.ServeHTTP(c, outgoing(req.Context(), req, u))
	if c.failed != nil {
		fellBack(p, c, req, u)
	}
}

// fellBack goes on from serve's first attempt, which failed.
func fellBack(p *pool, c *captureWriter, req *http.Request, u *upstream) {
	if !quickFailed(p, c, u) {
		try(p, c, req, c.reqBody, p.calm[1:], false)
	}
}

// serveAll is serve when the pool waits for a first byte, is weighted, or
// has something on record, or the body is still to be read. It asks again
// what serve asked: two reads more off the quick path cost less than
// their slots in serve's frame on it.
func serveAll(p *pool, c *captureWriter, req *http.Request) {
	if int64(len(c.reqBody)) == req.ContentLength && !p.weighted && p.unsettled.Load() == 0 {
		try(p, c, req, c.reqBody, p.calm, p.firstByte > 0)
		return
	}
	servePlanned(p, c, req)
}

// servePlanned is serve when the body is to be read, the pool weighted or
// an upstream has something on record: the breaker plans the attempts.
func servePlanned(p *pool, c *captureWriter, req *http.Request) {
	body, again := holdBody(p, c, req)
	order, wait := plan(p, c.rec)
	if len(order) == 0 {
		allOpen(c, wait)
		return
	}
	if !again {
		release(p, order[1:])
		order = order[:1]
	}
	release(p, order[try(p, c, req, body, order, p.firstByte > 0 || p.unsettled.Load() != 0)+1:])
}

// release gives back the half-open probes of the upstreams left untried:
// their circuits may be probed again by the next request.
func release(p *pool, rest []candidate) {
	for _, cd := range rest {
		if cd.probe {
			report(p, cd.u, true, verdictNone, 0)
		}
	}
}

// holdBody reads the request body whole when it may need sending again:
// it returns the bytes and true, or nil and false with req.Body left to be
// sent once (too long, its length unknown and past the bound, or cut
// short by a read error).
func holdBody(p *pool, c *captureWriter, req *http.Request) ([]byte, bool) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil, true
	}
	if c.reqBody != nil {
		if req.ContentLength < 0 || int64(len(c.reqBody)) == req.ContentLength {
			return c.reqBody, true
		}
		// Short of its length: sent once as it is, so that the upstream
		// request fails as it would have without us, never as a whole
		// body of the shorter length.
		return nil, false
	}
	if req.ContentLength > p.maxBody {
		return nil, false
	}
	// Known length within the bound, or unknown: read one byte past it.
	b, err := io.ReadAll(io.LimitReader(req.Body, p.maxBody+1))
	if err != nil || int64(len(b)) > p.maxBody {
		// Sent once: what was read, then the rest (a read error shows up
		// again there, and the upstream request fails as it would have).
		req.Body = &rejoined{r: io.MultiReader(strings.NewReader(string(b)), req.Body), c: req.Body}
		return nil, false
	}
	return b, true
}

// rejoined is a body whose head was read, put back in front of the rest.
// A named type: Yaegi sends Read on a struct of embedded interfaces to
// the wrong one.
type rejoined struct {
	r io.Reader
	c io.Closer
}

func (b *rejoined) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *rejoined) Close() error               { return b.c.Close() }

// try makes the attempts of order in turn until one answers the client;
// body is what each sends, afresh (nil: req.Body as it is). Each goes
// through net/http's ReverseProxy, which runs compiled: header copies,
// hop-by-hop headers, X-Forwarded-For, the body copy and its flushes,
// upgrades, and the abort of a body that breaks off. The interpreted parts
// are the hooks: ModifyResponse, on every answer, and ErrorHandler, on a
// failure.
//
// An attempt that is not the last goes through its upstream's quick proxy,
// which makes no state for it, unless careful: there is a first byte to
// wait for, or the breaker has something to hear of a success. (Whether it
// has is read once, as the request starts: a success while another
// request's failure is being recorded goes unheard, and the run of
// failures goes on.) A half-open probe and the last attempt go through the
// careful proxy too: the one tells the breaker of its success, and the
// other answers the client whatever it gets. It returns the index of the
// attempt that ended the request.
//
// The attempt that serves is named in the record (Upstream), and listed in
// its attempts only when it has more to say than the record's status and
// header time (Record.AllAttempts). Under Yaegi every call allocates every
// value its function names, whichever branch runs: what only a failure
// needs lives in other functions.
func try(p *pool, c *captureWriter, req *http.Request, body []byte, order []candidate, careful bool) int {
	last := len(order) - 1
	for i := range order {
		cd := &order[i]
		u := cd.u
		c.rec.Upstream = u.name // until the attempt fails
		if careful || cd.probe || i == last {
			if carefully(&attemptRun{pool: p, c: c, u: u, probe: cd.probe, last: i == last}, req, body) {
				return i
			}
		} else {
			u.quick.ServeHTTP(c, withBody(outgoing(req.Context(), req, u), body))
			if c.failed == nil || quickFailed(p, c, u) {
				return i
			}
		}
	}
	return last
}

// outgoing is the request of an attempt on u: the client's with ctx,
// the upstream's host instead of the client's, and its own headers on a
// copy (the next attempt starts from the client's again).
func outgoing(ctx context.Context, req *http.Request, u *upstream) *http.Request {
	out := req.WithContext(ctx)
	out.Host = ""
	if u.headers != nil {
		out.Header = withHeaders(req.Header, u.headers)
	}
	return out
}

// withBody gives out a fresh reader of body, unless nil.
func withBody(out *http.Request, body []byte) *http.Request {
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
	}
	return out
}

// carefully makes the attempt, sending body (nil: req.Body as it is),
// through its upstream's careful proxy, with the first-byte timer when
// there is one. It says whether the attempt ended the request.
func carefully(a *attemptRun, req *http.Request, body []byte) bool {
	ctx := context.WithValue(req.Context(), attemptKey{}, a)
	if a.pool.firstByte > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		// The timer gives the attempt up by cancelling its request.
		a.timer = time.AfterFunc(a.pool.firstByte, cancel)
	}
	a.u.careful.ServeHTTP(a.c, withBody(outgoing(ctx, req, a.u), body))
	return !a.next
}

// quickFailed ends an attempt of the quick proxy that failed, whose error
// gaveUp left in the writer. It says whether the request is over.
func quickFailed(p *pool, c *captureWriter, u *upstream) bool {
	a := &attemptRun{pool: p, c: c, u: u}
	err := c.failed
	c.failed = nil
	// Not errors.As: under Yaegi it panics on a pointer to an
	// interpreted type. The proxy hands the error over unwrapped.
	if f, ok := err.(*failedAnswer); ok { //nolint:errorlint // see above
		gaveUpOn(a, f.resp, int64(f.at.Sub(c.start)))
	} else {
		noResponse(a, err)
	}
	return !a.next
}

// withHeaders is a copy of h with an upstream's own headers set.
func withHeaders(h http.Header, own map[string]string) http.Header {
	h = h.Clone()
	for k, v := range own {
		h[k] = []string{v}
	}
	return h
}

// passOrGiveUp is the ModifyResponse of an upstream's quick proxy: an
// answer that is not a failure (retryable) is the client's, and the
// attempt is given up on a failure.
func passOrGiveUp(resp *http.Response) error {
	if !retryable(resp.StatusCode) {
		return nil
	}
	return giveUp(resp)
}

// giveUp is the error that gives a quick attempt up on resp.
func giveUp(resp *http.Response) error { return &failedAnswer{resp: resp, at: time.Now()} }

// failedAnswer is the error of a quick attempt given up on its answer: a
// 429 or 5xx, which came at at.
type failedAnswer struct {
	resp *http.Response
	at   time.Time
}

func (f *failedAnswer) Error() string { return "llmtap: upstream answered " + f.resp.Status }

// gaveUp is the ErrorHandler of an upstream's quick proxy: it leaves the
// error in the writer, which is the request's own, for try
// (quickFailed).
func gaveUp(w http.ResponseWriter, _ *http.Request, err error) {
	if c, ok := w.(*captureWriter); ok {
		c.failed = err
	}
}

// decideResponse is the ModifyResponse of an upstream's careful proxy.
func decideResponse(resp *http.Response) error { return decide(attemptOf(resp.Request), resp) }

// attemptFailed is the proxies' ErrorHandler.
func attemptFailed(_ http.ResponseWriter, r *http.Request, err error) { noResponse(attemptOf(r), err) }

// attemptKey is the context key of an attempt's state.
type attemptKey struct{}

// attemptOf returns the state of the attempt that r belongs to.
func attemptOf(r *http.Request) *attemptRun {
	return r.Context().Value(attemptKey{}).(*attemptRun)
}

// attemptRun is one attempt's state, shared by the proxy's hooks. Its
// fields are scalars and pointers: under Yaegi an expression that reads a
// struct-valued field copies the struct.
type attemptRun struct {
	pool  *pool
	c     *captureWriter
	u     *upstream
	probe bool // the half-open probe of u's circuit
	last  bool
	timer *time.Timer // the first-byte timer; nil when none
	next  bool        // failed: the next upstream is to be tried
}

// timedOut stops the first-byte timer and says whether it had fired.
func timedOut(a *attemptRun) bool { return a.timer != nil && !a.timer.Stop() }

// recordAttempt lists the attempt in the request's record. One that
// failed served nothing, and the next upstream is to be tried, unless the
// client left or something already reached it (an upgrade whose response
// the proxy could not write once it had the connection).
func recordAttempt(a *attemptRun, status int, headerNs int64, cause string, opened, failed bool) {
	r := a.c.rec
	r.Attempts = append(r.Attempts, Attempt{Upstream: a.u.name, Status: status, HeaderNs: headerNs, Error: cause, Opened: opened})
	if failed {
		r.Upstream = ""
		a.next = r.Status == 0 && a.c.req.Context().Err() == nil
	}
}

// errNext tells ErrorHandler that ModifyResponse gave the attempt up and
// recorded it.
var errNext = errors.New("llmtap: next upstream")

// decide looks at the response before anything of it reaches the client:
// a 429 or 5xx, when another upstream is left, sends the request on;
// otherwise the first body byte is awaited (within firstByteTimeout), and
// the response is the client's.
func decide(a *attemptRun, resp *http.Response) error {
	status := resp.StatusCode
	headerNs := int64(time.Since(a.c.start))
	failed := retryable(status)
	if failed && !a.last {
		gaveUpOn(a, resp, headerNs)
		return errNext
	}
	if a.timer != nil && !awaitFirst(a, resp, status, headerNs) {
		return errNext
	}
	// Committed: from here the response is the client's.
	opened := false
	if failed {
		opened = report(a.pool, a.u, a.probe, verdictFailure, retryAfter(resp.Header))
	} else if a.probe || !allSettled(a.pool) {
		opened = report(a.pool, a.u, a.probe, verdictSuccess, 0)
	}
	recordAttempt(a, status, headerNs, "", opened, false)
	return nil
}

// gaveUpOn records an attempt given up on its answer, a failure, and
// tells the breaker.
func gaveUpOn(a *attemptRun, resp *http.Response, headerNs int64) {
	timedOut(a)
	recordAttempt(a, resp.StatusCode, headerNs, "", report(a.pool, a.u, a.probe, verdictFailure, retryAfter(resp.Header)), true)
}

// awaitFirst waits for the response's first body byte within the
// first-byte timeout, and puts what it read back in front of the body. It
// returns false, the attempt recorded as given up, when none came in time
// or the body broke off first.
func awaitFirst(a *attemptRun, resp *http.Response, status int, headerNs int64) bool {
	first := make([]byte, 4096)
	n, rerr := resp.Body.Read(first)
	for n == 0 && rerr == nil {
		n, rerr = resp.Body.Read(first)
	}
	if timedOut(a) || (rerr != nil && rerr != io.EOF) {
		cause := AttemptFirstByteTimeout
		switch {
		case a.c.req.Context().Err() != nil:
			cause = AttemptCancelled
		case rerr != nil && !errors.Is(rerr, context.Canceled):
			cause = AttemptReadError
		}
		endAttempt(a, status, headerNs, cause)
		return false
	}
	if rerr != nil {
		// The whole body (a JSON answer, mostly): the proxy reads it from
		// a compiled reader, not through the interpreter.
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(first[:n]))
		return true
	}
	resp.Body = &readFirst{first: first[:n], rest: resp.Body}
	return true
}

// noResponse ends an attempt the proxy's ErrorHandler was called for: a
// response decide gave up (already recorded), or no response at all
// (connection refused, no headers before the first-byte timeout, the
// client gone).
func noResponse(a *attemptRun, err error) {
	if errors.Is(err, errNext) {
		return
	}
	cause := AttemptConnectError
	switch {
	case a.c.req.Context().Err() != nil:
		cause = AttemptCancelled
	case timedOut(a):
		cause = AttemptFirstByteTimeout
	}
	endAttempt(a, 0, 0, cause)
}

// endAttempt records an attempt that got nothing to pass on; cause is one
// of the Attempt* errors. The breaker hears of it (a client that left
// says nothing of the upstream), and on the last attempt the client gets
// an answer.
func endAttempt(a *attemptRun, status int, headerNs int64, cause string) {
	opened := false
	if cause == AttemptCancelled {
		report(a.pool, a.u, a.probe, verdictNone, 0)
	} else {
		opened = report(a.pool, a.u, a.probe, verdictFailure, 0)
	}
	recordAttempt(a, status, headerNs, cause, opened, true)
	if a.last && cause != AttemptCancelled {
		gatewayError(a.c, cause)
	}
}

// readFirst is a response body whose first bytes decide already read:
// those, then the rest.
type readFirst struct {
	first []byte
	rest  io.ReadCloser
}

func (r *readFirst) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.rest.Read(p)
}

func (r *readFirst) Close() error { return r.rest.Close() }

// buffers lends the proxy its copy buffers.
type buffers struct{ p sync.Pool }

func (b *buffers) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *buffers) Put(buf []byte) { b.p.Put(&buf) }

// retryAfter reads a 429's Retry-After in seconds or as a date; 0 when
// absent, unreadable, or on another status.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// gatewayError answers the client when the last attempt got no response:
// 504 when it gave no first byte in time, 502 otherwise, with an error in
// the OpenAI shape.
func gatewayError(c *captureWriter, cause string) {
	status, msg := http.StatusBadGateway, "no upstream of this route answered"
	if cause == AttemptFirstByteTimeout {
		status, msg = http.StatusGatewayTimeout, "no upstream of this route sent a first byte in time"
	}
	writeError(c, status, "upstream_unavailable", cause, msg)
}

// allOpen answers 503 when every upstream's circuit is open.
func allOpen(c *captureWriter, wait time.Duration) {
	secs := int64((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	c.h["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
	writeError(c, http.StatusServiceUnavailable, "upstream_unavailable", AttemptCircuitOpen,
		"every upstream of this route is failing (circuits open); retry after "+strconv.FormatInt(secs, 10)+" s")
}

func writeError(c *captureWriter, status int, typ, code, msg string) {
	c.h["Content-Type"] = []string{"application/json"}
	c.WriteHeader(status)
	_, _ = io.WriteString(c, `{"error":{"message":`+strconv.Quote(msg)+`,"type":"`+typ+`","code":"`+code+`"}}`)
}
