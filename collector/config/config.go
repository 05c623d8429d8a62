// Package config is the collector's configuration: one YAML file, then a
// few environment variables, then command-line flags, each overriding the
// one before.
//
// Load reads the file, replaces ${VAR} and ${VAR:-default} with values
// from the environment, decodes it strictly (an unknown key is an error,
// because a misspelt key silently left at its default is worse than a
// refusal to start), fills in defaults and validates. The caller then
// calls ApplyEnv, sets fields from its flags, and calls Validate again.
//
// Environment variables that override fields (ApplyEnv; an empty value
// is ignored, so "VAR=" from a template cannot switch authentication off):
//
//	LLMTAP_LISTEN                   listen
//	LLMTAP_INGEST_TOKEN             ingest_token
//	LLMTAP_READ_TOKEN               read_token
//	LLMTAP_ADMIN_TOKEN              admin_token
//	LLMTAP_CLICKHOUSE_ADDR          clickhouse.addr
//	LLMTAP_CLICKHOUSE_PASSWORD      clickhouse.password
//	LLMTAP_REDIS_ADDR               redis.addr or redis.addrs (see below)
//	LLMTAP_REDIS_PASSWORD           redis.password
//	LLMTAP_REDIS_SENTINEL_PASSWORD  redis.sentinel_password
//	LLMTAP_LOG_LEVEL                log.level
//
// LLMTAP_REDIS_ADDR replaces the file's Redis addresses, both addr and
// addrs: it holds one host:port or several separated by commas. One
// address, with no redis.master_name, becomes redis.addr; otherwise the
// list becomes redis.addrs (a Redis Cluster's nodes, or the Sentinels
// when the file sets redis.master_name).
//
// Tokens and passwords are Secrets: they print as "[redacted]" through
// fmt, encoding/json, yaml and slog, and no error repeats them. Log the
// whole configuration with slog (Config is a slog.LogValuer) to get one
// effective-config line that is safe to ship.
//
// Errors say where: the file, the line, and the field path such as
// clickhouse.batch_size. Test them with errors.Is against ErrParse,
// ErrUnsetVar, ErrInvalid, or fs.ErrNotExist for a missing file.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/llmtap/llmtap/collector/limits"
	"github.com/llmtap/llmtap/collector/pricing"
	"github.com/llmtap/llmtap/collector/redact"
)

// Sentinel errors, for errors.Is.
var (
	// ErrParse: the file is not valid YAML, has an unknown key, or a
	// value of the wrong shape (a bad duration or size).
	ErrParse = errors.New("cannot parse")
	// ErrUnsetVar: the file refers to ${VAR}, VAR is not set, and there
	// is no ${VAR:-default}.
	ErrUnsetVar = errors.New("environment variable not set")
	// ErrInvalid: a value breaks a rule, such as batch_size out of range.
	ErrInvalid = errors.New("invalid configuration")
)

// Config is the collector's configuration. The YAML keys are the json
// tags; example.yaml documents each one.
type Config struct {
	// Listen is the host:port of the HTTP API and /metrics.
	Listen string `yaml:"listen" json:"listen"`
	// IngestToken is the bearer token the plugins send: records and limit
	// checks (write only).
	IngestToken Secret `yaml:"ingest_token" json:"ingest_token"`
	// ReadToken is the bearer token of what reads stored data: request
	// lookups (bodies included) and limit status. The admin token reads
	// too.
	ReadToken Secret `yaml:"read_token" json:"read_token"`
	// AdminToken is the bearer token of the admin endpoints (limits).
	AdminToken Secret `yaml:"admin_token" json:"admin_token"`
	// TrustedNetwork lets the collector start without an ingest token: say
	// so only where nobody but Traefik and the operator reaches it.
	TrustedNetwork bool `yaml:"trusted_network" json:"trusted_network"`
	// TLS serves the API and /metrics over HTTPS when both files are set.
	TLS TLS `yaml:"tls" json:"tls"`
	// MaxBodyBytes caps a POST /v1/records body, after gzip decoding too.
	MaxBodyBytes Size `yaml:"max_body_bytes" json:"max_body_bytes"`
	// MaxIngestRequests bounds the POST /v1/records requests read at once;
	// past it ingest answers 503 with Retry-After. With max_body_bytes it
	// bounds the memory ingest can take.
	MaxIngestRequests int `yaml:"max_ingest_requests" json:"max_ingest_requests"`
	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout Duration   `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	Log             Log        `yaml:"log" json:"log"`
	ClickHouse      ClickHouse `yaml:"clickhouse" json:"clickhouse"`
	Redis           Redis      `yaml:"redis" json:"redis"`
	Limits          Limits     `yaml:"limits" json:"limits"`
	Metrics         Metrics    `yaml:"metrics" json:"metrics"`
	Tokens          Tokens     `yaml:"tokens" json:"tokens"`
	Pricing         Pricing    `yaml:"pricing" json:"pricing"`
	Redaction       Redaction  `yaml:"redaction" json:"redaction"`
	OTel            OTel       `yaml:"otel" json:"otel"`
}

// Log configures the collector's own logs.
type Log struct {
	Level  string `yaml:"level" json:"level"`   // debug, info, warn or error
	Format string `yaml:"format" json:"format"` // text or json
}

// ClickHouse is where records are stored.
type ClickHouse struct {
	Addr          string   `yaml:"addr" json:"addr"` // host:port, native protocol
	Database      string   `yaml:"database" json:"database"`
	Username      string   `yaml:"username" json:"username"`
	Password      Secret   `yaml:"password" json:"password"`
	DialTimeout   Duration `yaml:"dial_timeout" json:"dial_timeout"`
	MaxOpenConns  int      `yaml:"max_open_conns" json:"max_open_conns"`
	BatchSize     int      `yaml:"batch_size" json:"batch_size"`         // rows per insert
	FlushInterval Duration `yaml:"flush_interval" json:"flush_interval"` // longest wait before a partial batch is sent
	QueueSize     int      `yaml:"queue_size" json:"queue_size"`         // records waiting to be written
	// QueueMaxBytes bounds the memory those records hold; past it (or
	// queue_size) ingest batches go to the spool, and 503 only when the
	// spool is full too.
	QueueMaxBytes Size `yaml:"queue_max_bytes" json:"queue_max_bytes"`
	// QueueWait is how long an ingest batch may wait for room in the
	// queue before it goes to the spool; 0 spills at once.
	QueueWait Duration `yaml:"queue_wait" json:"queue_wait"`
	// Retention is the row TTL; 0 keeps rows forever.
	Retention Duration `yaml:"retention" json:"retention"`
	// BodyRetention is the TTL of the body columns; 0 means Retention.
	// Use EffectiveBodyRetention rather than reading it.
	BodyRetention Duration `yaml:"body_retention" json:"body_retention"`
	// TLS to ClickHouse (its native protocol's secure port).
	TLS ClientTLS `yaml:"tls" json:"tls"`
	// SpoolDir holds batches ClickHouse refused; Load and Default turn ""
	// into <os temp>/llmtap-spool.
	SpoolDir      string `yaml:"spool_dir" json:"spool_dir"`
	SpoolMaxBytes Size   `yaml:"spool_max_bytes" json:"spool_max_bytes"`
	// Cluster names a cluster of the servers' remote_servers; set, the
	// schema is the cluster variant (ON CLUSTER, replicated tables and a
	// Distributed requests table; see the clickhouse package). Empty: one
	// server.
	Cluster string `yaml:"cluster" json:"cluster"`
}

// Redis holds shared state such as rate limits. It is one server (Addr),
// a Redis Cluster (Addrs) or a master found through Sentinels
// (MasterName and Addrs).
type Redis struct {
	// Addr is one server, host:port. Load and Default turn "" into
	// 127.0.0.1:6379 when Addrs is empty too.
	Addr string `yaml:"addr" json:"addr"`
	// Addrs, instead of Addr: a Redis Cluster's nodes (two or more), or
	// with MasterName the Sentinels (one or more). One address without
	// MasterName is one server, as Addr.
	Addrs []string `yaml:"addrs" json:"addrs"`
	// MasterName is the master's name in the Sentinels' configuration.
	MasterName string `yaml:"master_name" json:"master_name"`
	Password   Secret `yaml:"password" json:"password"`
	// SentinelPassword is the Sentinels' own password, if they need one.
	SentinelPassword Secret `yaml:"sentinel_password" json:"sentinel_password"`
	DB               int    `yaml:"db" json:"db"` // 0..15; 0 on a Redis Cluster
	// Timeout bounds each Redis command of a limit check; past it the
	// limit's failure mode decides.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// TLS to Redis.
	TLS ClientTLS `yaml:"tls" json:"tls"`
}

// Limits are the per-tenant limits the plugins check. Policies set through
// the admin API (kept in Redis) take precedence over Tenants, and Default
// applies to every tenant with neither.
type Limits struct {
	// DefaultReservation is the tokens reserved for a request that sets
	// no max_tokens (or max_output_tokens, max_completion_tokens).
	DefaultReservation int64 `yaml:"default_reservation" json:"default_reservation"`
	// ReservationTimeout releases a reservation whose record never comes.
	ReservationTimeout Duration `yaml:"reservation_timeout" json:"reservation_timeout"`
	// PolicyCache is how long a policy read from Redis is reused.
	PolicyCache Duration                  `yaml:"policy_cache" json:"policy_cache"`
	Default     *limits.Policy            `yaml:"default" json:"default"`
	Tenants     map[string]*limits.Policy `yaml:"tenants" json:"tenants"`
}

// ClientTLS is TLS to a server the collector connects to.
type ClientTLS struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// CAFile is a PEM file of the authorities the server's certificate is
	// checked against; empty: the system's.
	CAFile string `yaml:"ca_file" json:"ca_file"`
	// ServerName is the name the certificate must carry; empty: the
	// address's host.
	ServerName string `yaml:"server_name" json:"server_name"`
}

// Config returns the client's TLS configuration, nil when TLS is off.
func (t ClientTLS) Config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate in it", t.CAFile)
		}
	}
	return c, nil
}

// TLS names the listener's certificate and key, PEM files.
type TLS struct {
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// Enabled reports whether the listener serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Tokens configures how prompts are counted (collector/tokens).
type Tokens struct {
	// Encodings maps model name prefixes to tokenizer encodings
	// (o200k_base, cl100k_base), adding to or overriding the defaults.
	Encodings map[string]string `yaml:"encodings" json:"encodings"`
}

// Pricing configures how requests are priced (collector/pricing).
type Pricing struct {
	// File is a price table in the embedded one's format that replaces
	// it; empty for the embedded table.
	File string `yaml:"file" json:"file"`
	// Models add to or override the table's entries.
	Models []pricing.Entry `yaml:"models" json:"models"`
	// Routes price some routes' models apart; id "*" prices every model
	// of its route (a self-hosted model at an internal rate, or 0).
	Routes map[string][]pricing.Entry `yaml:"routes" json:"routes"`
	// Aliases map a model name (an Azure deployment, a vLLM served-model
	// name) to a priced model id.
	Aliases map[string]string `yaml:"aliases" json:"aliases"`
}

// Redaction says what is masked in bodies and chunks before they are
// stored (collector/redact).
type Redaction struct {
	// Secrets masks API keys, bearer tokens, cloud keys, private keys and
	// JWTs; on by default.
	Secrets bool `yaml:"secrets" json:"secrets"`
	// PII lists the personal data kinds masked for every request: email,
	// phone, card, iban, ip. None by default.
	PII []string `yaml:"pii" json:"pii"`
	// Routes and Tenants add kinds for their requests.
	Routes  map[string]RedactionScope `yaml:"routes" json:"routes"`
	Tenants map[string]RedactionScope `yaml:"tenants" json:"tenants"`
	// Patterns are the operator's own: what a regular expression (Go's
	// syntax) matches is masked under its name.
	Patterns []RedactionPattern `yaml:"patterns" json:"patterns"`
}

// RedactionScope is what a route or a tenant adds.
type RedactionScope struct {
	PII []string `yaml:"pii" json:"pii"`
}

// RedactionPattern is one pattern of the operator's.
type RedactionPattern struct {
	Name  string `yaml:"name" json:"name"`
	Regex string `yaml:"regex" json:"regex"`
}

// Options are the redact package's options of r.
func (r *Redaction) Options() redact.Options {
	o := redact.Options{Secrets: r.Secrets, PII: r.PII, Routes: map[string][]string{}, Tenants: map[string][]string{}}
	for k, v := range r.Routes {
		o.Routes[k] = v.PII
	}
	for k, v := range r.Tenants {
		o.Tenants[k] = v.PII
	}
	for _, p := range r.Patterns {
		o.Patterns = append(o.Patterns, redact.Pattern{Name: p.Name, Regex: p.Regex})
	}
	return o
}

// OTel configures the export of each request as an OpenTelemetry span
// (collector/otel); off while Endpoint is empty.
type OTel struct {
	// Endpoint is the OTLP receiver: http(s)://host:port, with a path for
	// http/protobuf (default /v1/traces).
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Protocol is http/protobuf or grpc.
	Protocol string `yaml:"protocol" json:"protocol"`
	// Headers are sent with every export (an API key, say).
	Headers map[string]Secret `yaml:"headers" json:"headers"`
	// SamplingRatio is the share of requests exported, from 0 (none) to 1.
	SamplingRatio float64 `yaml:"sampling_ratio" json:"sampling_ratio"`
	// Timeout bounds one batch's export, retries included.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// QueueSize bounds the spans waiting; past it they are dropped and
	// counted.
	QueueSize int `yaml:"queue_size" json:"queue_size"`
}

// Metrics configures the Prometheus metrics.
type Metrics struct {
	// MaxSeries caps the label sets of each metric; label values past it
	// are counted as "other".
	MaxSeries int `yaml:"max_series" json:"max_series"`
}

// defaultRedisAddr is redis.addr when neither addr nor addrs is set.
const defaultRedisAddr = "127.0.0.1:6379"

// Default returns the configuration an empty file gives.
func Default() *Config {
	c := defaults()
	c.fillDefaults()
	return c
}

// defaults is Default before fillDefaults: what a file is decoded over.
// Defaults that depend on other fields are left to fillDefaults, so that
// a file setting redis.addrs does not also get redis.addr.
func defaults() *Config {
	return &Config{
		Listen:            "127.0.0.1:7480",
		MaxBodyBytes:      16 << 20,
		MaxIngestRequests: 16,
		ShutdownTimeout:   Duration(15 * time.Second),
		Log:               Log{Level: "info", Format: "text"},
		ClickHouse: ClickHouse{
			Addr:          "127.0.0.1:9000",
			Database:      "llmtap",
			Username:      "default",
			DialTimeout:   Duration(5 * time.Second),
			MaxOpenConns:  4,
			BatchSize:     2000,
			FlushInterval: Duration(time.Second),
			QueueSize:     5000,
			QueueMaxBytes: 256 << 20,
			QueueWait:     Duration(time.Second),
			Retention:     Duration(30 * 24 * time.Hour),
			BodyRetention: Duration(7 * 24 * time.Hour),
			SpoolMaxBytes: 1 << 30,
		},
		Redis: Redis{Timeout: Duration(50 * time.Millisecond)},
		Limits: Limits{
			DefaultReservation: 1024,
			ReservationTimeout: Duration(10 * time.Minute),
			PolicyCache:        Duration(time.Second),
		},
		Metrics:   Metrics{MaxSeries: 1000},
		Redaction: Redaction{Secrets: true},
		OTel:      OTel{Protocol: "http/protobuf", SamplingRatio: 1, Timeout: Duration(10 * time.Second), QueueSize: 4096},
	}
}

// fillDefaults sets the defaults that depend on the host or on other
// fields, after decoding, so that an explicit "" in the file gets them
// too.
func (c *Config) fillDefaults() {
	if c.ClickHouse.SpoolDir == "" {
		c.ClickHouse.SpoolDir = filepath.Join(os.TempDir(), "llmtap-spool")
	}
	if len(c.Redis.Addrs) == 0 {
		c.Redis.Addrs = nil // "addrs: []" is no list
		if c.Redis.Addr == "" {
			c.Redis.Addr = defaultRedisAddr
		}
	}
}

// EffectiveBodyRetention is the TTL of the body columns: BodyRetention,
// or Retention when BodyRetention is 0.
func (c *ClickHouse) EffectiveBodyRetention() Duration {
	if c.BodyRetention == 0 {
		return c.Retention
	}
	return c.BodyRetention
}

// SlogLevel is Level as a slog.Level; Info for a value Validate would
// reject.
func (l *Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Load reads the YAML file at path, replaces ${VAR}, ${VAR:-default} and
// $$ using env (os.LookupEnv when nil), decodes it over Default, and
// validates the result.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// The *PathError already names the file.
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(b, env)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// parse is Load without the file.
func parse(b []byte, env func(string) (string, bool)) (*Config, error) {
	text, err := expand(b, env)
	if err != nil {
		return nil, err
	}
	c := defaults()
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	// io.EOF: the file is empty or only comments, which means defaults.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, decodeError(text, err)
	}
	// A second document would be ignored without a word; refuse it.
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, fmt.Errorf("%w: line %d: a second YAML document; the file must hold one", ErrParse, next.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, decodeError(text, err)
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeError rewrites yaml.v3's errors into one line that names the
// place: a type error's list is joined, and a bad duration or size gets
// the path of its field.
func decodeError(text []byte, err error) error {
	var ve *valueError
	if errors.As(err, &ve) {
		// The decoder already parsed this text, so this parse succeeds.
		var root yaml.Node
		if yaml.Unmarshal(text, &root) == nil {
			if path := pathAt(&root, ve.line, ve.column); path != "" {
				return fmt.Errorf("%w: line %d: %s: %s", ErrParse, ve.line, path, ve.msg)
			}
		}
		return fmt.Errorf("%w: %w", ErrParse, ve)
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%w: %s", ErrParse, strings.Join(te.Errors, "; "))
	}
	return fmt.Errorf("%w: %w", ErrParse, err)
}

// pathAt returns the dotted key path ("clickhouse.flush_interval") of the
// mapping value at line and column, or "" when there is none.
func pathAt(n *yaml.Node, line, column int) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := pathAt(c, line, column); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Line == line && v.Column == column {
				return k.Value
			}
			if p := pathAt(v, line, column); p != "" {
				return k.Value + "." + p
			}
		}
	}
	return ""
}

// LogValue makes the configuration one structured log record, with every
// secret redacted: log it at startup as the effective configuration.
func (c *Config) LogValue() slog.Value {
	ch := &c.ClickHouse
	return slog.GroupValue(
		slog.String("listen", c.Listen),
		slog.Any("ingest_token", c.IngestToken),
		slog.Any("read_token", c.ReadToken),
		slog.Any("admin_token", c.AdminToken),
		slog.Bool("trusted_network", c.TrustedNetwork),
		slog.Group("tls",
			slog.String("cert_file", c.TLS.CertFile),
			slog.String("key_file", c.TLS.KeyFile)),
		slog.String("max_body_bytes", c.MaxBodyBytes.String()),
		slog.Int("max_ingest_requests", c.MaxIngestRequests),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.Group("log",
			slog.String("level", c.Log.Level),
			slog.String("format", c.Log.Format)),
		slog.Group("clickhouse",
			slog.String("addr", ch.Addr),
			slog.String("database", ch.Database),
			slog.String("username", ch.Username),
			slog.Any("password", ch.Password),
			slog.String("dial_timeout", ch.DialTimeout.String()),
			slog.Int("max_open_conns", ch.MaxOpenConns),
			slog.Int("batch_size", ch.BatchSize),
			slog.String("flush_interval", ch.FlushInterval.String()),
			slog.Int("queue_size", ch.QueueSize),
			slog.Int64("queue_max_bytes", int64(ch.QueueMaxBytes)),
			slog.String("queue_wait", ch.QueueWait.String()),
			slog.String("retention", ch.Retention.String()),
			slog.String("body_retention", ch.BodyRetention.String()),
			slog.String("spool_dir", ch.SpoolDir),
			slog.String("spool_max_bytes", ch.SpoolMaxBytes.String()),
			slog.String("cluster", ch.Cluster)),
		slog.Group("redis",
			slog.String("addr", c.Redis.Addr),
			slog.Any("addrs", c.Redis.Addrs),
			slog.String("master_name", c.Redis.MasterName),
			slog.Any("password", c.Redis.Password),
			slog.Any("sentinel_password", c.Redis.SentinelPassword),
			slog.Int("db", c.Redis.DB),
			slog.String("timeout", c.Redis.Timeout.String())),
		slog.Group("limits",
			slog.Int64("default_reservation", c.Limits.DefaultReservation),
			slog.String("reservation_timeout", c.Limits.ReservationTimeout.String()),
			slog.String("policy_cache", c.Limits.PolicyCache.String()),
			slog.Bool("default", c.Limits.Default != nil),
			slog.Int("tenants", len(c.Limits.Tenants))),
		slog.Group("metrics",
			slog.Int("max_series", c.Metrics.MaxSeries)),
		slog.Group("tokens",
			slog.Any("encodings", c.Tokens.Encodings)),
	)
}
