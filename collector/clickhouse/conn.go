package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Options says how to reach ClickHouse.
type Options struct {
	// Addr is host:port of the native protocol (clickhouse-go's HTTP
	// transport does not work with 18.16).
	Addr     string
	Username string // "default" when empty
	Password string
	// DialTimeout bounds connecting (default 5s); ReadTimeout bounds
	// waiting for the server within a query (default 30s).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	MaxOpenConns int // default 4: one writer, Get calls, readiness
	MaxIdleConns int // default 2
	// TLS, when not nil, connects to the native protocol's secure port.
	TLS *tls.Config
}

// LogValue keeps the password out of logs.
func (o Options) LogValue() slog.Value {
	pw := ""
	if o.Password != "" {
		pw = "<redacted>"
	}
	return slog.GroupValue(
		slog.String("addr", o.Addr), slog.String("username", o.Username), slog.String("password", pw),
		slog.Duration("dial_timeout", o.DialTimeout), slog.Duration("read_timeout", o.ReadTimeout),
		slog.Int("max_open_conns", o.MaxOpenConns), slog.Int("max_idle_conns", o.MaxIdleConns),
	)
}

func (o Options) withDefaults() Options {
	if o.Username == "" {
		o.Username = "default"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 30 * time.Second
	}
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 4
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 2
	}
	if o.MaxIdleConns > o.MaxOpenConns {
		o.MaxIdleConns = o.MaxOpenConns
	}
	return o
}

// Open connects over the native protocol (Dial) and pings the server;
// the caller closes the connection. No database is selected: the database may
// not exist before Migrate, so every statement names it. No session
// settings are sent: the schema needs none on 18.16 (it avoids
// LowCardinality there), and a setting a server does not know fails every
// query.
func Open(ctx context.Context, opts Options) (driver.Conn, error) {
	conn, err := Dial(opts)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("clickhouse: ping %s: %w", opts.Addr, err)
	}
	return conn, nil
}

// Dial is Open without the ping: the connection is made when first used,
// so a server that is down now can come up later.
func Dial(opts Options) (driver.Conn, error) {
	if opts.Addr == "" {
		return nil, errors.New("clickhouse: no address: set host:port of the native protocol (e.g. 127.0.0.1:9000)")
	}
	o := opts.withDefaults()
	conn, err := ch.Open(o.chOptions())
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", o.Addr, err)
	}
	return conn, nil
}

// chOptions are clickhouse-go's options for o (with its defaults).
func (o Options) chOptions() *ch.Options {
	return &ch.Options{
		Protocol: ch.Native,
		Addr:     []string{o.Addr},
		Auth:     ch.Auth{Username: o.Username, Password: o.Password},
		// Bodies dominate the inserts and compress well; LZ4 is cheap.
		Compression:     &ch.Compression{Method: ch.CompressionLZ4},
		DialTimeout:     o.DialTimeout,
		ReadTimeout:     o.ReadTimeout,
		MaxOpenConns:    o.MaxOpenConns,
		MaxIdleConns:    o.MaxIdleConns,
		ConnMaxLifetime: time.Hour,
		TLS:             o.TLS,
	}
}
