package llmtap

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config is the plugin's configuration, as written in Traefik's dynamic
// configuration (field names are matched case-insensitively). The defaults
// from CreateConfig work as they are.
type Config struct {
	// CollectorURL is the collector's base URL; records are POSTed to
	// CollectorURL + "/v1/records". Empty turns recording off: the plugin
	// then only sets request ids.
	CollectorURL string `json:"collectorURL,omitempty"`
	// CollectorToken is sent as a bearer token to the collector.
	CollectorToken string `json:"collectorToken,omitempty"`
	// CollectorCA is the PEM of the certificate authorities an https
	// collectorURL is checked against, instead of the system's (a private
	// CA). Empty: the system's.
	CollectorCA string `json:"collectorCA,omitempty"`
	// Route names the route in records; empty means the middleware's name.
	Route string `json:"route,omitempty"`
	// TenantHeader is the request header that names the tenant, for
	// routers where a forward-auth middleware or Traefik itself sets it:
	// a client that could set it would choose its own quota (see
	// docs/security.md). Empty, the default: the tenant is a short hash of
	// the request's API key, else Tenant.
	TenantHeader string `json:"tenantHeader,omitempty"`
	// Tenant is the tenant of requests without an API key (or without the
	// tenant header, when one is configured).
	Tenant string `json:"tenant,omitempty"`
	// MaxRequestBodyBytes bounds the captured head of each request body.
	MaxRequestBodyBytes int `json:"maxRequestBodyBytes,omitempty"`
	// MaxResponseBodyBytes bounds the captured response body: the first half
	// is its head, the second half its tail.
	MaxResponseBodyBytes int `json:"maxResponseBodyBytes,omitempty"`
	// MaxWrites bounds the response writes whose offset and time are listed.
	MaxWrites int `json:"maxWrites,omitempty"`
	// CaptureBodies lists the content kinds whose bodies are captured:
	// json, sse, ndjson, text, audio, other. Audio is off by default.
	CaptureBodies []string `json:"captureBodies,omitempty"`
	// QueueSize bounds the records waiting to be sent; past it records are
	// dropped and counted, never waited for.
	QueueSize int `json:"queueSize,omitempty"`
	// MaxQueueBytes bounds the memory of the records waiting to be sent,
	// per sender (bodies, write timings, headers kept); past it records
	// are dropped and counted like those past QueueSize.
	MaxQueueBytes int `json:"maxQueueBytes,omitempty"`
	// BatchSize is the most records sent in one POST.
	BatchSize int `json:"batchSize,omitempty"`
	// FlushInterval is the longest a record waits for its batch to fill.
	FlushInterval string `json:"flushInterval,omitempty"`
	// SendTimeout bounds one POST to the collector.
	SendTimeout string `json:"sendTimeout,omitempty"`
	// Limits has the collector check each request against its tenant's
	// limits before it is proxied.
	Limits LimitsConfig `json:"limits,omitempty"`
	// OmitHeader is the request header with which a client asks that its
	// request's bodies not be stored ("1" or "true"); the plugin removes
	// it before the upstream sees it. The facts are recorded all the
	// same. Empty: no such header.
	OmitHeader string `json:"omitHeader,omitempty"`
	// Upstreams, when set, make the plugin proxy the route's requests
	// itself, to these upstreams in turn, instead of calling the router's
	// service: a request that fails before its first byte reached the
	// client is tried on the next one (see upstream.go, docs/fallback.md).
	// Needs CollectorURL.
	Upstreams []UpstreamConfig `json:"upstreams,omitempty"`
	// Fallback tunes the attempts across Upstreams.
	Fallback FallbackConfig `json:"fallback,omitempty"`
	// IncludeUsage adds "stream_options": {"include_usage": true} to
	// OpenAI-style streaming chat requests (a top-level "stream": true on
	// a path ending in /chat/completions) that set no stream_options, so
	// that the provider reports the tokens; clients then see one more
	// final chunk, with empty choices. Off by default. Needs CollectorURL.
	IncludeUsage bool `json:"includeUsage,omitempty"`
}

// LimitsConfig turns the per-tenant limit check on for a router.
type LimitsConfig struct {
	// Enabled makes the plugin ask the collector (CollectorURL +
	// LimitsCheckPath) before proxying each request.
	Enabled bool `json:"enabled,omitempty"`
	// Timeout bounds the check; past it the failure mode decides.
	Timeout string `json:"timeout,omitempty"`
	// FailureMode is what happens when the check gets no answer in time:
	// "open" proxies the request anyway, "closed" answers 503.
	FailureMode string `json:"failureMode,omitempty"`
}

// CreateConfig returns the default configuration.
func CreateConfig() *Config {
	return &Config{
		CollectorURL:         "http://127.0.0.1:7480",
		MaxRequestBodyBytes:  64 << 10,
		MaxResponseBodyBytes: 256 << 10,
		MaxWrites:            4096,
		CaptureBodies:        []string{"json", "sse", "ndjson", "text"},
		QueueSize:            8192,
		MaxQueueBytes:        64 << 20,
		BatchSize:            64,
		FlushInterval:        "1s",
		SendTimeout:          "5s",
		Limits:               LimitsConfig{Timeout: "100ms", FailureMode: "open"},
		OmitHeader:           DefaultOmitHeader,
		Fallback: FallbackConfig{
			MaxBodyBytes:  4 << 20,
			MaxRetryAfter: "30s",
			Breaker:       BreakerConfig{Failures: 5, Window: "30s", Cooldown: "10s"},
		},
	}
}

// Content kinds, as bits of a kindSet.
const (
	kindJSON = 1 << iota
	kindSSE
	kindNDJSON
	kindText
	kindAudio
	kindOther
)

var kindNames = map[string]int{
	"json": kindJSON, "sse": kindSSE, "ndjson": kindNDJSON,
	"text": kindText, "audio": kindAudio, "other": kindOther,
}

// settings is a validated Config, prepared once in New.
type settings struct {
	route         string
	tenantHeader  string
	tenant        string
	maxReqBody    int
	respHead      int
	respTail      int
	maxWrites     int
	captureKinds  int
	recordsURL    string // empty: recording off
	token         string
	collectorCA   string         // as configured, for the sender's key
	rootCAs       *x509.CertPool // nil: the system's
	queueSize     int
	maxQueueBytes int64
	batchSize     int
	flushInterval time.Duration
	sendTimeout   time.Duration

	checkURL     string // empty: limits off
	checkTimeout time.Duration
	failClosed   bool

	includeUsage bool
	omitHeader   string // canonical; empty: none

	// upstreams (see prepareUpstreams); none: the router's service.
	upstreams       []UpstreamConfig
	upstreamNames   []string
	firstByte       time.Duration
	maxRetryBody    int64
	maxRetryAfter   time.Duration
	breakerFailures int
	breakerWindow   time.Duration
	breakerCooldown time.Duration
}

// validate checks every field and returns the prepared settings, or an error
// naming the first bad field and its value.
func (c *Config) validate(name string) (*settings, error) {
	s := &settings{
		route:        c.Route,
		tenantHeader: http.CanonicalHeaderKey(c.TenantHeader),
		tenant:       c.Tenant,
		token:        c.CollectorToken,
		maxReqBody:   c.MaxRequestBodyBytes,
		maxWrites:    c.MaxWrites,
		queueSize:    c.QueueSize,
		batchSize:    c.BatchSize,
	}
	if s.route == "" {
		s.route = name
	}
	if c.IncludeUsage && c.CollectorURL == "" {
		return nil, fmt.Errorf("includeUsage: needs collectorURL (the request body is read only when recording)")
	}
	s.includeUsage = c.IncludeUsage
	if c.Tenant != "" && !ValidID(c.Tenant) {
		return nil, fmt.Errorf("tenant %q: want %s", c.Tenant, IDRule)
	}
	if c.OmitHeader != "" && strings.Trim(c.OmitHeader, IDChars) != "" {
		return nil, fmt.Errorf("omitHeader %q: want a header name such as %s", c.OmitHeader, DefaultOmitHeader)
	}
	s.omitHeader = http.CanonicalHeaderKey(c.OmitHeader)
	if c.TenantHeader != "" && strings.Trim(c.TenantHeader, IDChars) != "" {
		return nil, fmt.Errorf("tenantHeader %q: want a header name such as X-Tenant-ID", c.TenantHeader)
	}
	if c.CollectorURL != "" {
		u, err := url.Parse(c.CollectorURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("collectorURL %q: want an absolute http or https URL such as http://collector:7480", c.CollectorURL)
		}
		s.recordsURL = strings.TrimSuffix(c.CollectorURL, "/") + RecordsPath
	}
	if c.CollectorCA != "" {
		s.collectorCA = c.CollectorCA
		s.rootCAs = x509.NewCertPool()
		if !s.rootCAs.AppendCertsFromPEM([]byte(c.CollectorCA)) {
			return nil, errors.New("collectorCA: no PEM certificate in it; want the CA's certificate, -----BEGIN CERTIFICATE----- and all")
		}
	}
	if err := nonNegative("maxRequestBodyBytes", c.MaxRequestBodyBytes); err != nil {
		return nil, err
	}
	if err := nonNegative("maxResponseBodyBytes", c.MaxResponseBodyBytes); err != nil {
		return nil, err
	}
	s.respHead = c.MaxResponseBodyBytes / 2
	s.respTail = c.MaxResponseBodyBytes - s.respHead
	if err := nonNegative("maxWrites", c.MaxWrites); err != nil {
		return nil, err
	}
	if c.QueueSize < 1 {
		return nil, fmt.Errorf("queueSize %d: want at least 1", c.QueueSize)
	}
	// One record at the capture limits must fit, or every one is dropped.
	if most := maxRecordBytes(c); c.MaxQueueBytes < most {
		return nil, fmt.Errorf("maxQueueBytes %d: want at least %d, the largest record the capture limits allow (maxRequestBodyBytes + maxResponseBodyBytes + 16 x maxWrites + %d)", c.MaxQueueBytes, most, recordOverhead)
	}
	s.maxQueueBytes = int64(c.MaxQueueBytes)
	if c.BatchSize < 1 {
		return nil, fmt.Errorf("batchSize %d: want at least 1", c.BatchSize)
	}
	for _, k := range c.CaptureBodies {
		bit, ok := kindNames[strings.ToLower(strings.TrimSpace(k))]
		if !ok {
			return nil, fmt.Errorf("captureBodies %q: unknown content kind, want json, sse, ndjson, text, audio or other", k)
		}
		s.captureKinds |= bit
	}
	var err error
	if s.flushInterval, err = positiveDuration("flushInterval", c.FlushInterval); err != nil {
		return nil, err
	}
	if s.sendTimeout, err = positiveDuration("sendTimeout", c.SendTimeout); err != nil {
		return nil, err
	}
	if err = prepareLimits(s, c); err != nil {
		return nil, err
	}
	if err = prepareUpstreams(s, c); err != nil {
		return nil, err
	}
	return s, nil
}

// prepareLimits checks the limits fields, also when limits are off (a typo
// should not wait for the day they are turned on), and sets up the check.
func prepareLimits(s *settings, c *Config) error {
	l := c.Limits
	var err error
	if s.checkTimeout, err = positiveDuration("limits.timeout", l.Timeout); err != nil {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(l.FailureMode)) {
	case "open":
	case "closed":
		s.failClosed = true
	default:
		return fmt.Errorf("limits.failureMode %q: want open (proxy the request when limits cannot be checked) or closed (answer 503)", l.FailureMode)
	}
	if !l.Enabled {
		return nil
	}
	if c.CollectorURL == "" {
		return errors.New("limits.enabled: limits are checked by the collector, so they need a collectorURL")
	}
	s.checkURL = strings.TrimSuffix(c.CollectorURL, "/") + LimitsCheckPath
	return nil
}

func nonNegative(field string, v int) error {
	if v < 0 {
		return fmt.Errorf("%s %d: must not be negative", field, v)
	}
	return nil
}

func positiveDuration(field, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as 500ms or 2s", field, v)
	}
	return d, nil
}

// commonKinds spares the parsing of the most frequent Content-Type values.
// It is only read after package initialization.
var commonKinds = map[string]int{
	"":                                 kindOther,
	"application/json":                 kindJSON,
	"application/json; charset=utf-8":  kindJSON,
	"text/event-stream":                kindSSE,
	"text/event-stream; charset=utf-8": kindSSE,
	"application/x-ndjson":             kindNDJSON,
	"audio/mpeg":                       kindAudio,
	"audio/wav":                        kindAudio,
	"audio/pcm":                        kindAudio,
	"audio/ogg":                        kindAudio,
	"audio/opus":                       kindAudio,
	"audio/aac":                        kindAudio,
	"audio/flac":                       kindAudio,
	"text/plain; charset=utf-8":        kindText,
	"application/octet-stream":         kindOther,
}

// contentKind classifies a Content-Type header value.
func contentKind(ct string) int {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	switch {
	case ct == "text/event-stream":
		return kindSSE
	case ct == "application/x-ndjson" || ct == "application/ndjson" || ct == "application/jsonl":
		return kindNDJSON
	case ct == "application/json" || strings.HasSuffix(ct, "+json"):
		return kindJSON
	case strings.HasPrefix(ct, "text/"):
		return kindText
	case strings.HasPrefix(ct, "audio/"):
		return kindAudio
	}
	return kindOther
}

// kindName is the name of a single content kind bit.
func kindName(kind int) string {
	for n, b := range kindNames {
		if b == kind {
			return n
		}
	}
	return "other"
}
