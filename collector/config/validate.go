package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/llmtap/llmtap/collector/pricing"
	"github.com/llmtap/llmtap/collector/redact"
	"github.com/llmtap/llmtap/collector/tokens"
	llmtap "github.com/llmtap/llmtap/plugin"
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Limits of the rules below.
const (
	maxBatchSize = 1_000_000 // a bigger insert holds too much memory on both sides
	maxRedisDB   = 15        // Redis has 16 databases unless reconfigured
	maxQueueWait = Duration(4 * time.Second)
)

// Validate checks every field and reports all problems at once, each with
// its field path and value (secrets excepted), so that one run shows the
// operator everything to fix. The error wraps ErrInvalid.
func (c *Config) Validate() error {
	var p problems
	p.add("listen", checkListen(c.Listen))
	p.add("ingest_token", checkToken(c.IngestToken))
	p.add("read_token", checkToken(c.ReadToken))
	p.add("admin_token", checkToken(c.AdminToken))
	p.add("read_token", sameToken(c.ReadToken, c.IngestToken, "ingest_token"))
	p.add("admin_token", sameToken(c.AdminToken, c.IngestToken, "ingest_token"))
	p.add("admin_token", sameToken(c.AdminToken, c.ReadToken, "read_token"))
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.add("tls", "cert_file and key_file go together: set both for HTTPS, or neither")
	}
	p.add("clickhouse.tls", checkClientTLS(c.ClickHouse.TLS))
	p.add("redis.tls", checkClientTLS(c.Redis.TLS))
	p.add("max_body_bytes", checkSize(c.MaxBodyBytes))
	p.add("max_ingest_requests", checkRange(c.MaxIngestRequests, 1, 10000))
	p.add("shutdown_timeout", checkPositive(c.ShutdownTimeout))
	p.add("log.level", checkOneOf(c.Log.Level, logLevels))
	p.add("log.format", checkOneOf(c.Log.Format, logFormats))

	ch := &c.ClickHouse
	p.add("clickhouse.addr", checkAddr(ch.Addr))
	p.add("clickhouse.database", checkIdentifier(ch.Database))
	p.add("clickhouse.dial_timeout", checkPositive(ch.DialTimeout))
	p.add("clickhouse.max_open_conns", checkRange(ch.MaxOpenConns, 1, -1))
	p.add("clickhouse.batch_size", checkRange(ch.BatchSize, 1, maxBatchSize))
	p.add("clickhouse.flush_interval", checkPositive(ch.FlushInterval))
	// A batch is cut from the queue, so a queue smaller than a batch
	// would never fill one.
	if ch.QueueSize < ch.BatchSize {
		p.add("clickhouse.queue_size", fmt.Sprintf("%d is smaller than clickhouse.batch_size (%d)", ch.QueueSize, ch.BatchSize))
	}
	// The records of one ingest request must fit in the queue's bytes.
	if ch.QueueMaxBytes < 2*c.MaxBodyBytes {
		p.add("clickhouse.queue_max_bytes", fmt.Sprintf("%s is smaller than twice max_body_bytes (%s): one batch of records must fit", ch.QueueMaxBytes, 2*c.MaxBodyBytes))
	}
	p.add("clickhouse.queue_wait", checkNotNegative(ch.QueueWait))
	// The plugins give up on a POST after their sendTimeout (5s by
	// default) and send the batch again: a longer wait only doubles it.
	if ch.QueueWait > maxQueueWait {
		p.add("clickhouse.queue_wait", fmt.Sprintf("%s is longer than %s: the plugins would give up on the batch (their sendTimeout) and send it again", ch.QueueWait, maxQueueWait))
	}
	p.add("clickhouse.retention", checkNotNegative(ch.Retention))
	p.add("clickhouse.body_retention", checkNotNegative(ch.BodyRetention))
	// Bodies outliving their rows would be kept by a TTL that can never
	// fire: the row is gone first.
	if ch.Retention > 0 && ch.BodyRetention > ch.Retention {
		p.add("clickhouse.body_retention", fmt.Sprintf("%s is longer than clickhouse.retention (%s); use at most %s, or 0 for the same as retention",
			ch.BodyRetention, ch.Retention, ch.Retention))
	}
	p.add("clickhouse.spool_max_bytes", checkSize(ch.SpoolMaxBytes))
	if ch.Cluster != "" && !isName(ch.Cluster) {
		p.add("clickhouse.cluster", fmt.Sprintf("%q is not a plain identifier (letters, digits and _, not starting with a digit): "+
			"it goes unquoted into ON CLUSTER and the Distributed engine (rename the cluster in remote_servers if need be)", ch.Cluster))
	}

	c.Redis.validate(&p)
	c.Limits.validate(&p)
	p.add("metrics.max_series", checkRange(c.Metrics.MaxSeries, 1, -1))
	prefixes := make([]string, 0, len(c.Tokens.Encodings))
	for prefix := range c.Tokens.Encodings {
		prefixes = append(prefixes, prefix)
	}
	sort.Strings(prefixes)
	for _, prefix := range prefixes {
		field := fmt.Sprintf("tokens.encodings[%q]", prefix)
		if prefix == "" {
			p.add(field, "an empty model prefix would match every model")
		}
		if enc := c.Tokens.Encodings[prefix]; enc != tokens.O200k && enc != tokens.Cl100k {
			p.add(field, fmt.Sprintf("%q is not an encoding: want %s or %s", enc, tokens.O200k, tokens.Cl100k))
		}
	}
	c.Pricing.validate(&p)
	if _, err := redact.New(c.Redaction.Options()); err != nil {
		p.add("redaction", err.Error())
	}
	c.OTel.validate(&p)
	return p.err()
}

// validate checks the price entries, naming each one's line.
func (pr *Pricing) validate(p *problems) {
	check := func(at string, e *pricing.Entry) {
		if err := e.Check(); err != nil {
			var fe *pricing.FieldError
			if errors.As(err, &fe) {
				p.add(fmt.Sprintf("line %d: %s.%s", e.Line, at, fe.Field), fe.Msg)
				return
			}
			p.add(fmt.Sprintf("line %d: %s", e.Line, at), err.Error())
		}
	}
	for i := range pr.Models {
		check(fmt.Sprintf("pricing.models[%d]", i), &pr.Models[i])
	}
	routes := make([]string, 0, len(pr.Routes))
	for r := range pr.Routes {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		for i := range pr.Routes[r] {
			check(fmt.Sprintf("pricing.routes[%q][%d]", r, i), &pr.Routes[r][i])
		}
	}
	for from, to := range pr.Aliases {
		if strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" {
			p.add(fmt.Sprintf("pricing.aliases[%q]", from), fmt.Sprintf("%q: an alias maps a model name to a priced id, neither empty", to))
		}
	}
}

// validate checks the export's fields, also while it is off.
func (o *OTel) validate(p *problems) {
	p.add("otel.protocol", checkOneOf(o.Protocol, []string{"http/protobuf", "grpc"}))
	if o.Endpoint != "" {
		if u, err := url.Parse(o.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("otel.endpoint", fmt.Sprintf("%q: want http://host:port or https://host:port", o.Endpoint))
		}
	}
	if o.SamplingRatio < 0 || o.SamplingRatio > 1 {
		p.add("otel.sampling_ratio", fmt.Sprintf("%v is not from 0 to 1", o.SamplingRatio))
	}
	p.add("otel.timeout", checkPositive(o.Timeout))
	p.add("otel.queue_size", checkRange(o.QueueSize, 1, 1_000_000))
}

// problems collects "field: what is wrong" lines.
type problems []string

// add records msg against field, unless msg is "".
func (p *problems) add(field, msg string) {
	if msg != "" {
		*p = append(*p, field+": "+msg)
	}
}

// err joins the problems into one line (a log line, not a paragraph),
// wrapping ErrInvalid; nil when there are none.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(p, "; "))
}

// The checks return what is wrong with a value, or "". They do not know
// the field's name, so Validate and ApplyEnv can each say where.

func checkListen(v string) string {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. \":7480\" or \"127.0.0.1:7480\")", v)
	}
	return checkPort(v, port, 0) // :0 picks a free port, which tests use
}

func checkAddr(v string) string {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", v)
	}
	if host == "" {
		return fmt.Sprintf("%q has no host", v)
	}
	return checkPort(v, port, 1)
}

func checkPort(v, port string, lowest int) string {
	if n, err := strconv.Atoi(port); err != nil || n < lowest || n > 65535 {
		return fmt.Sprintf("%q: the port must be a number from %d to 65535", v, lowest)
	}
	return ""
}

// ErrNoTokens means the collector would start without an ingest token on a
// network not declared trusted.
var ErrNoTokens = errors.New("no ingest_token: the collector does not start open to anyone who reaches it; set ingest_token (and read_token, admin_token), or trusted_network: true when only Traefik and the operator reach its address")

// CheckTrust refuses to run open by accident: without an ingest token, the
// collector takes records, limit checks and lookups from anyone who
// reaches it, which only a network declared trusted may allow.
func (c *Config) CheckTrust() error {
	if c.IngestToken.Reveal() == "" && !c.TrustedNetwork {
		return fmt.Errorf("%w", ErrNoTokens)
	}
	return nil
}

// checkClientTLS refuses TLS settings that TLS off would ignore.
func checkClientTLS(t ClientTLS) string {
	if !t.Enabled && (t.CAFile != "" || t.ServerName != "") {
		return "ca_file or server_name set, but enabled is false: set enabled: true for TLS"
	}
	return ""
}

// sameToken refuses a token equal to another scope's, which would merge
// the two scopes.
func sameToken(s, other Secret, otherName string) string {
	if s.Reveal() != "" && s.Reveal() == other.Reveal() {
		return "the same as " + otherName + ": each scope needs its own token"
	}
	return ""
}

// checkToken refuses whitespace and control characters, which a bearer
// token cannot carry in an Authorization header; they are usually a
// newline pasted from a file. The value is not shown.
func checkToken(s Secret) string {
	if strings.IndexFunc(s.Reveal(), func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "must not contain whitespace or control characters (value not shown)"
	}
	return ""
}

// checkIdentifier accepts a plain SQL identifier: the database name is
// written into DDL statements, so it must not need quoting.
func checkIdentifier(v string) string {
	if !isName(v) {
		return fmt.Sprintf("%q is not a plain identifier (letters, digits and _, not starting with a digit)", v)
	}
	return ""
}

func checkOneOf(v string, allowed []string) string {
	for _, a := range allowed {
		if v == a {
			return ""
		}
	}
	return fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

// checkRange checks lo <= v <= hi; hi < 0 means no upper limit.
func checkRange(v, lo, hi int) string {
	switch {
	case hi < 0 && v < lo:
		return fmt.Sprintf("%d must be at least %d", v, lo)
	case hi >= 0 && (v < lo || v > hi):
		return fmt.Sprintf("%d is out of range %d..%d", v, lo, hi)
	}
	return ""
}

func checkPositive(d Duration) string {
	if d <= 0 {
		return fmt.Sprintf("%s must be greater than 0", d)
	}
	return ""
}

func checkNotNegative(d Duration) string {
	if d < 0 {
		return fmt.Sprintf("%s must not be negative", d)
	}
	return ""
}

func checkSize(s Size) string {
	if s <= 0 {
		return fmt.Sprintf("%s must be greater than 0", s)
	}
	return ""
}

func (r *Redis) validate(p *problems) {
	switch {
	case r.Addr != "" && len(r.Addrs) > 0:
		p.add("redis.addrs", fmt.Sprintf("set together with redis.addr (%q): give one server in redis.addr, "+
			"or a Redis Cluster's nodes or the Sentinels in redis.addrs, not both", r.Addr))
	case len(r.Addrs) == 0:
		p.add("redis.addr", checkAddr(r.Addr))
	}
	for i, a := range r.Addrs {
		p.add(fmt.Sprintf("redis.addrs[%d]", i), checkAddr(a))
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		p.add("redis.master_name", fmt.Sprintf("%q needs the Sentinels' addresses in redis.addrs", r.MasterName))
	}
	if r.MasterName == "" && r.SentinelPassword.Reveal() != "" {
		p.add("redis.sentinel_password", "is set but redis.master_name is not: there are no Sentinels to use it (value not shown)")
	}
	// Several addresses without a master name are a Redis Cluster.
	if r.MasterName == "" && len(r.Addrs) > 1 && r.DB != 0 {
		p.add("redis.db", fmt.Sprintf("%d: a Redis Cluster has only database 0", r.DB))
	} else {
		p.add("redis.db", checkRange(r.DB, 0, maxRedisDB))
	}
	p.add("redis.timeout", checkPositive(r.Timeout))
}

func (l *Limits) validate(p *problems) {
	if l.DefaultReservation < 1 {
		p.add("limits.default_reservation", fmt.Sprintf("%d: want at least 1", l.DefaultReservation))
	}
	p.add("limits.reservation_timeout", checkPositive(l.ReservationTimeout))
	p.add("limits.policy_cache", checkPositive(l.PolicyCache))
	if l.Default != nil {
		*p = append(*p, l.Default.Problems("limits.default")...)
	}
	names := make([]string, 0, len(l.Tenants))
	for name := range l.Tenants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch pol := l.Tenants[name]; {
		case !llmtap.ValidID(name):
			// The plugin names no tenant outside this set: a policy for
			// one would never apply.
			p.add("limits.tenants", fmt.Sprintf("tenant name %q: want %s", name, llmtap.IDRule))
		case pol == nil:
			p.add("limits.tenants."+name, "empty: give requests, tokens or spend, or remove the tenant")
		default:
			*p = append(*p, pol.Problems("limits.tenants."+name)...)
		}
	}
}
