package llmtap

import (
	"encoding/json"
	"strings"
)

// The wire format between the plugin and the collector. It is defined once,
// here, and the collector decodes these same types: change a field only with
// a new RecordVersion. A new optional field (omitempty), which a collector
// that does not know it ignores, keeps the version.

// RecordVersion is the version of Record's wire format. The collector refuses
// a record whose version it does not know instead of guessing its meaning.
const RecordVersion = 1

const (
	// RecordsPath is the collector's ingest endpoint, relative to its base URL.
	// It takes gzip-compressed NDJSON: one Record per line.
	RecordsPath = "/v1/records"

	// HeaderDropped is set on a batch POST to how many records the sender
	// lost (queue full, or a batch the collector never acknowledged) since
	// its last acknowledged batch, so that losses are counted, not silent.
	HeaderDropped = "Llmtap-Dropped"

	// HeaderActiveStreams is set on every batch POST to how many streaming
	// responses pass through the sender's middlewares now; with
	// HeaderSender it lets the collector sum active streams across proxies.
	// A sender with active streams and no records to send posts an empty
	// batch every flush interval, so the count stays fresh.
	HeaderActiveStreams = "Llmtap-Active-Streams"

	// HeaderSender identifies the sending plugin instance (random, per
	// process and configuration).
	HeaderSender = "Llmtap-Sender"

	// HeaderRequestID is reused when the client sends it, made otherwise,
	// passed upstream and returned to the client.
	HeaderRequestID = "X-Request-Id"

	// DefaultOmitHeader is the default Config.OmitHeader.
	DefaultOmitHeader = "X-Llmtap-Omit-Bodies"
)

// Outcomes of a proxied request, as the plugin saw them.
const (
	// OutcomeCompleted: the response ended normally with a status below 400.
	OutcomeCompleted = "completed"
	// OutcomeUpstreamError: the response ended with a status of 400 or more
	// (from the upstream, or from Traefik when the upstream failed).
	OutcomeUpstreamError = "upstream_error"
	// OutcomeClientCancelled: the client went away (the request's context
	// ended) before the response was complete; the upstream request is
	// cancelled with it.
	OutcomeClientCancelled = "client_cancelled"
	// OutcomeAborted: the response broke off while the client was still
	// there, typically the upstream connection failing mid-body.
	OutcomeAborted = "aborted"
	// OutcomeLimited: the plugin answered the request itself because of
	// llmtap's limits (a denial, or limits that could not be checked on a
	// fail-closed router); the upstream never saw it.
	OutcomeLimited = "limited"
)

// The limit check between the plugin and the collector. When a router has
// limits enabled, the plugin POSTs a LimitCheck as JSON to
// collectorURL+LimitsCheckPath before proxying. The collector answers with
// HeaderDecision set:
//   - DecisionAllow (200): proxy the request; the RateLimit-Limit,
//     RateLimit-Remaining and RateLimit-Reset headers of the answer, when
//     present, are copied onto the response, and HeaderReserved says how
//     many tokens were reserved for it (settled when its record arrives).
//   - DecisionDeny (429 when a limit is reached, 503 when limits cannot be
//     checked and the limit fails closed): the plugin answers the client
//     with that status, the Retry-After and RateLimit-* headers and the
//     answer's body, a JSON error in the OpenAI error shape.
//
// An answer without HeaderDecision, an error or a timeout leaves the
// decision to the router's own failure mode.
const (
	// LimitsCheckPath is the collector's limit check endpoint.
	LimitsCheckPath = "/v1/limits/check"
	// MaxCheckBody bounds the request body a check carries (Body); a
	// longer one is sent as its length (BodyBytes).
	MaxCheckBody = 1 << 20
	// HeaderDecision carries the collector's decision on a limit check.
	HeaderDecision = "Llmtap-Decision"
	// HeaderReserved is the number of tokens reserved by an allowed check.
	HeaderReserved = "Llmtap-Reserved"
	// HeaderReservation names the reservation of an allowed check (from
	// checks of CheckVersion 2 on): the record carries it back
	// (Record.LimitReservation), and its settlement settles that one.
	HeaderReservation = "Llmtap-Reservation"

	// CheckVersion is LimitCheck.V. Version 2 checks get a reservation of
	// their own, named in HeaderReservation, whatever their request id:
	// a client's X-Request-Id is kept, so two requests may share one.
	CheckVersion = 2

	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// How a request fared with llmtap's limits (Record.Limit).
const (
	LimitAllowed      = "allowed"       // the collector allowed it
	LimitDenied       = "denied"        // the collector denied it
	LimitFailedOpen   = "failed_open"   // no answer in time; proxied anyway
	LimitFailedClosed = "failed_closed" // no answer in time; answered 503
)

// LimitCheck is the body of a limit check.
type LimitCheck struct {
	// V is CheckVersion; 0 from plugins before versions.
	V int `json:"v,omitempty"`
	// Tenant is the request's tenant, as Record.Tenant would name it.
	Tenant string `json:"tenant"`
	// Route is the configured route name.
	Route string `json:"route"`
	// RequestID names the token reservation, settled by the record.
	RequestID string `json:"request_id,omitempty"`
	// Body is the request's body, when the plugin read it whole before
	// the check (its length known and within maxRequestBodyBytes), it is
	// JSON and holds at most MaxCheckBody bytes: the collector reads the model, the request's own bound on
	// output tokens and the prompt from it, and reserves the prompt's
	// tokens and that bound. The plugin does no parsing of its own.
	Body json.RawMessage `json:"body,omitempty"`
	// BodyBytes is the request body's length when known (its
	// Content-Length), for a body not sent: the collector reserves for
	// a prompt of that size.
	BodyBytes int64 `json:"body_bytes,omitempty"`

	// Model and Reserve are what plugins before Body sent, read when a
	// check has no Body: the request's model and its own bound on output
	// tokens (0: the collector reserves its configured default).
	Model   string `json:"model,omitempty"`
	Reserve int64  `json:"reserve,omitempty"`
}

// MaxIDLen bounds a request id and a tenant, in bytes.
const MaxIDLen = 128

// IDChars are the bytes a request id or a tenant may hold. Anything else
// (control characters, spaces, quotes, slashes, non-ASCII) could split a
// log line or a header, or name another API path.
const IDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:@+="

// IDRule says what ValidID accepts, for error messages.
const IDRule = "1 to 128 bytes of letters, digits and - _ . : @ + ="

// ValidID reports whether s is a request id or tenant as the plugin sends
// them: 1 to MaxIDLen bytes of IDChars. The collector holds records and
// limit checks to the same rule.
func ValidID(s string) bool {
	// strings.Trim with an ASCII cutset runs compiled, where a loop over
	// the bytes would run interpreted under Yaegi.
	return s != "" && len(s) <= MaxIDLen && strings.Trim(s, IDChars) == ""
}

// NormalizeID maps s into a valid id: cut to MaxIDLen bytes, each byte
// outside IDChars replaced by '_'. Empty stays empty.
func NormalizeID(s string) string {
	if len(s) > MaxIDLen {
		s = s[:MaxIDLen]
	}
	if strings.Trim(s, IDChars) == "" {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		if strings.IndexByte(IDChars, b[i]) < 0 {
			b[i] = '_'
		}
	}
	return string(b)
}

// Tenant sources: where Record.Tenant came from.
const (
	TenantFromHeader = "header"  // the configured tenant header
	TenantFromAPIKey = "api_key" // a short hash of the API key, never the key
	TenantFromStatic = "static"  // the router's configured tenant
)

// Record is what the plugin sends for each proxied request. It carries raw
// observations only (bytes and their timing); the collector derives the facts
// (SSE events, time to first token, usage, error classes) from them.
//
// Times are nanoseconds: StartUnixNs since the Unix epoch, every *Ns offset
// from StartUnixNs, the moment the request reached the plugin (the plugin
// stores monotonic clock readings as they are, the cheapest thing to do in
// interpreted code). Byte offsets count response body bytes from 0.
type Record struct {
	// V is RecordVersion when the record was made.
	V int `json:"v"`
	// RequestID is the request's X-Request-Id (the client's, or one the plugin made).
	RequestID string `json:"request_id"`
	// UpstreamRequestID is the X-Request-Id the upstream answered with, when
	// it differs (OpenAI sends its own); the client gets RequestID.
	UpstreamRequestID string `json:"upstream_request_id,omitempty"`
	// StartUnixNs is when the request reached the plugin.
	StartUnixNs int64 `json:"start_unix_ns"`
	// Route is the configured route name (by default the middleware's name).
	Route string `json:"route"`
	// Tenant identifies who sent the request; empty when unknown.
	Tenant string `json:"tenant,omitempty"`
	// TenantSource is one of the TenantFrom* constants, empty when Tenant is.
	TenantSource string `json:"tenant_source,omitempty"`

	// Method, Host and Path describe the request (the query string is not kept: it may hold keys).
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
	// UserAgent is the client's User-Agent header.
	UserAgent string `json:"user_agent,omitempty"`
	// RequestContentType is the request's Content-Type header.
	RequestContentType string `json:"request_content_type,omitempty"`
	// RequestBytes counts the request body bytes read by the upstream side.
	RequestBytes int64 `json:"request_bytes"`
	// RequestBody is the head of the request body, when its content kind is captured.
	RequestBody []byte `json:"request_body,omitempty"`
	// RequestTruncated is set when RequestBody holds less than the whole body.
	RequestTruncated bool `json:"request_truncated,omitempty"`

	// Status is the response status code (101 for a protocol upgrade, 0 if none was written).
	Status int `json:"status"`
	// Outcome is one of the Outcome* constants.
	Outcome string `json:"outcome"`
	// ResponseContentType is the response's Content-Type header.
	ResponseContentType string `json:"response_content_type,omitempty"`
	// Streaming is set when the plugin flushed each write to the client
	// (event streams, NDJSON, and bodies without a Content-Length).
	Streaming bool `json:"streaming,omitempty"`
	// ResponseBytes counts the response body bytes written to the client.
	ResponseBytes int64 `json:"response_bytes"`
	// ResponseHead holds the first bytes of the response body: the whole
	// body when it fits, else its first half-limit.
	ResponseHead []byte `json:"response_head,omitempty"`
	// ResponseTail holds the body's last bytes from ResponseTailOffset on,
	// so a final usage event survives when the middle is cut. When
	// ResponseTailOffset equals len(ResponseHead), head and tail are contiguous.
	ResponseTail []byte `json:"response_tail,omitempty"`
	// ResponseTailOffset is the body offset of ResponseTail's first byte.
	ResponseTailOffset int64 `json:"response_tail_offset,omitempty"`
	// ResponseTruncated is set when head and tail together miss part of the body.
	ResponseTruncated bool `json:"response_truncated,omitempty"`
	// BodyNotCaptured names the content kind whose body was deliberately not
	// captured (e.g. "audio"); byte counts and write timing are kept anyway.
	BodyNotCaptured string `json:"body_not_captured,omitempty"`

	// HeaderNs is when the response status and headers were written.
	HeaderNs int64 `json:"header_ns"`
	// WriteEnds[i] is the body offset just after write i; WriteNs[i] is when
	// that write was handed on to the client. The first write is the time to first
	// byte. At most the configured number of writes are listed: past it the
	// last slot keeps moving to the latest write, so the final write is
	// always present, and WritesDropped counts the ones left out.
	WriteEnds []int64 `json:"write_ends,omitempty"`
	WriteNs   []int64 `json:"write_ns,omitempty"`
	// WritesDropped counts writes not listed in WriteEnds/WriteNs.
	WritesDropped int `json:"writes_dropped,omitempty"`
	// DurationNs is when the plugin saw the response end.
	DurationNs int64 `json:"duration_ns"`

	// Limit is one of the Limit* constants, empty when the router has no
	// limits enabled.
	Limit string `json:"limit,omitempty"`
	// LimitReserved is the tokens the collector reserved for the request
	// (HeaderReserved); the collector settles them against the usage it
	// derives from this record.
	LimitReserved int64 `json:"limit_reserved,omitempty"`
	// LimitReservation names the reservation (HeaderReservation), which
	// the settlement settles; empty from collectors before it, and then
	// the reservation is named by RequestID.
	LimitReservation string `json:"limit_reservation,omitempty"`

	// TraceParent is the request's W3C traceparent header, when it had
	// one of the right length: the collector joins its span to that
	// trace. The plugin never makes one.
	TraceParent string `json:"traceparent,omitempty"`

	// BodiesOmitted: the client sent the omit header (Config.OmitHeader):
	// the collector derives the facts from the bodies and then stores
	// them without.
	BodiesOmitted bool `json:"bodies_omitted,omitempty"`

	// Upstream names the upstream whose response the client got, on a
	// route with upstreams (Config.Upstreams); empty on others.
	Upstream string `json:"upstream,omitempty"`
	// Attempts lists, in order, each upstream tried or skipped for the
	// request on a route with upstreams; the one that served (Upstream)
	// only when it has more to say than the record: AllAttempts has them
	// all.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// AllAttempts returns the record's attempts, the one that served among
// them: when Attempts leaves it out, it is the last, with the record's
// status and header time. The plugin leaves it out on the request path,
// where each value it makes costs every request; the collector completes
// it.
func (r *Record) AllAttempts() []Attempt {
	if r.Upstream == "" {
		return r.Attempts
	}
	for _, a := range r.Attempts {
		if a.Upstream == r.Upstream {
			return r.Attempts
		}
	}
	n := len(r.Attempts)
	return append(r.Attempts[:n:n], Attempt{Upstream: r.Upstream, Status: r.Status, HeaderNs: r.HeaderNs})
}

// TraceparentLen is the length of a W3C traceparent of version 00, the
// one Record.TraceParent carries (the collector checks the rest).
const TraceparentLen = 55

// MaxUpstreams bounds a route's upstreams, and so a record's attempts.
const MaxUpstreams = 8

// Attempt is one upstream tried (or skipped) for a request. Times are from
// the request's arrival, like the record's.
type Attempt struct {
	// Upstream is the upstream's configured name, never its URL.
	Upstream string `json:"upstream"`
	// Status is the upstream's response status; 0 when none came.
	Status int `json:"status,omitempty"`
	// Error is one of the Attempt* constants, empty when the attempt got
	// a response whose first byte came in time.
	Error string `json:"error,omitempty"`
	// HeaderNs is when its response headers came (0: none).
	HeaderNs int64 `json:"header_ns,omitempty"`
	// Opened says this attempt opened the upstream's circuit.
	Opened bool `json:"opened,omitempty"`
}
