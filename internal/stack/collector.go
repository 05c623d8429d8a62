package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// CollectorConfig is the collector's configuration file, typed. Write is
// the one writer of that file, for the tests and make up alike; it writes
// JSON, which YAML reads as it is. The keys are the collector's
// (collector/config); strings may use ${VAR}, which the collector expands.
type CollectorConfig struct {
	Listen          string                 `json:"listen"`
	IngestToken     string                 `json:"ingest_token,omitempty"`
	ReadToken       string                 `json:"read_token,omitempty"`
	AdminToken      string                 `json:"admin_token,omitempty"`
	TrustedNetwork  bool                   `json:"trusted_network,omitempty"`
	TLS             *ServerTLS             `json:"tls,omitempty"`
	MaxBodyBytes    string                 `json:"max_body_bytes,omitempty"`
	ShutdownTimeout string                 `json:"shutdown_timeout,omitempty"`
	Log             *CollectorLog          `json:"log,omitempty"`
	ClickHouse      CollectorClickHouse    `json:"clickhouse"`
	Redis           *CollectorRedis        `json:"redis,omitempty"`
	Limits          *CollectorLimits       `json:"limits,omitempty"`
	Metrics         map[string]interface{} `json:"metrics,omitempty"`
	Redaction       map[string]interface{} `json:"redaction,omitempty"`
	OTel            map[string]interface{} `json:"otel,omitempty"`
}

// ServerTLS is the listener's certificate and key (PEM files).
type ServerTLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// CollectorLog is the log section.
type CollectorLog struct {
	Level  string `json:"level,omitempty"`
	Format string `json:"format,omitempty"`
}

// ClientTLS is TLS to ClickHouse or Redis.
type ClientTLS struct {
	Enabled    bool   `json:"enabled"`
	CAFile     string `json:"ca_file,omitempty"`
	ServerName string `json:"server_name,omitempty"`
}

// CollectorClickHouse is the clickhouse section; durations as Go writes
// them ("100ms", "0s"), sizes as the collector reads them ("1MiB").
type CollectorClickHouse struct {
	Addr          string     `json:"addr"`
	Database      string     `json:"database,omitempty"`
	Cluster       string     `json:"cluster,omitempty"`
	FlushInterval string     `json:"flush_interval,omitempty"`
	BatchSize     int        `json:"batch_size,omitempty"`
	QueueSize     int        `json:"queue_size,omitempty"`
	Retention     string     `json:"retention,omitempty"`
	BodyRetention string     `json:"body_retention,omitempty"`
	SpoolDir      string     `json:"spool_dir,omitempty"`
	SpoolMaxBytes string     `json:"spool_max_bytes,omitempty"`
	DialTimeout   string     `json:"dial_timeout,omitempty"`
	TLS           *ClientTLS `json:"tls,omitempty"`
}

// CollectorRedis is the redis section.
type CollectorRedis struct {
	Addr    string     `json:"addr,omitempty"`
	Timeout string     `json:"timeout,omitempty"`
	TLS     *ClientTLS `json:"tls,omitempty"`
}

// CollectorLimits is the limits section; a policy is the JSON the admin
// API takes ({"requests":{"limit":2,"period":"1m"}}).
type CollectorLimits struct {
	DefaultReservation int64                      `json:"default_reservation,omitempty"`
	ReservationTimeout string                     `json:"reservation_timeout,omitempty"`
	PolicyCache        string                     `json:"policy_cache,omitempty"`
	Default            json.RawMessage            `json:"default,omitempty"`
	Tenants            map[string]json.RawMessage `json:"tenants,omitempty"`
}

// Write writes the configuration to path, readable by its owner only (it
// holds tokens).
func (c *CollectorConfig) Write(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("collector config: %w", err)
	}
	head := "# Written by internal/stack (CollectorConfig.Write); JSON is YAML.\n"
	return os.WriteFile(path, append([]byte(head), append(b, '\n')...), 0o600)
}

// Collector is the collector binary with its configuration.
type Collector struct {
	server
	Bin    string
	Config CollectorConfig
	// Scheme is "https" when Config.TLS is set (default "http").
	Scheme string
	// Env is added to the collector's environment (KEY=value), for
	// ${VAR} in the configuration.
	Env []string
}

// LogPath is the collector's log file.
func (c *Collector) LogPath() string { return filepath.Join(c.Dir, "collector.log") }

// Name is "collector".
func (c *Collector) Name() string { return "collector" }

// URL is the collector's base URL.
func (c *Collector) URL() string {
	scheme := c.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + c.Config.Listen
}

// Start writes collector.yaml and starts the collector. Its environment
// has no LLMTAP_* variable: one exported by an earlier stack's env file
// would otherwise override the file.
func (c *Collector) Start(ctx context.Context) error {
	if c.Bin == "" {
		return fmt.Errorf("collector: no binary (Bin)")
	}
	if err := c.mkdirs(c.Name()); err != nil {
		return err
	}
	cfg := filepath.Join(c.Dir, "collector.yaml")
	if err := c.Config.Write(cfg); err != nil {
		return err
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LLMTAP_") {
			env = append(env, kv)
		}
	}
	env = append(env, c.Env...)
	return c.run(ctx, Command{
		Name: c.Name(),
		Path: c.Bin,
		Args: []string{"-config", cfg},
		Dir:  c.Dir,
		Env:  env,
		Log:  c.LogPath(),
	}, c.Ready)
}

// Ready asks /readyz.
func (c *Collector) Ready(ctx context.Context) error {
	if c.Scheme == "https" {
		// A caller with a client that trusts the certificate checks it;
		// here, accepting connections is enough.
		if !Answers(c.Config.Listen) {
			return fmt.Errorf("collector: %s not listening", c.Config.Listen)
		}
		return nil
	}
	return httpOK(ctx, c.URL()+"/readyz", http.StatusOK)
}

// Stop stops the collector, which writes what it holds first.
func (c *Collector) Stop(ctx context.Context) error { return c.stop(ctx) }

// Mock is the mock LLM upstream (mock/cmd/llmtap-mock).
type Mock struct {
	server
	Bin  string
	Port int
	Args []string // flags: -ttft, -gap, -tokens
}

// Name is "mock".
func (m *Mock) Name() string { return "mock" }

// URL is the mock's base URL.
func (m *Mock) URL() string { return "http://" + addr(m.Port) }

// Start starts the mock.
func (m *Mock) Start(ctx context.Context) error {
	if m.Bin == "" {
		return fmt.Errorf("mock: no binary (Bin)")
	}
	if err := m.mkdirs(m.Name()); err != nil {
		return err
	}
	return m.run(ctx, Command{
		Name: m.Name(),
		Path: m.Bin,
		Args: append([]string{"-addr", addr(m.Port)}, m.Args...),
		Dir:  m.Dir,
		Log:  filepath.Join(m.Dir, "mock.log"),
	}, m.Ready)
}

// Ready asks /healthz.
func (m *Mock) Ready(ctx context.Context) error {
	return httpOK(ctx, m.URL()+"/healthz", http.StatusOK)
}

// Stop stops the mock.
func (m *Mock) Stop(ctx context.Context) error { return m.stop(ctx) }
