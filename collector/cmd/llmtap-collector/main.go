// Command llmtap-collector receives the llmtap plugin's records, derives
// facts from them, stores them in ClickHouse and exports Prometheus
// metrics.
//
//	llmtap-collector [-config FILE] [-listen ADDR]          serve
//	llmtap-collector [-config FILE] migrate                  apply schema migrations and exit
//
// Start order: configuration, ClickHouse connection and migrations, the
// Redis client (which connects on first use: Redis being down only
// triggers the limits' failure modes), the writer, then the HTTP server.
// Stop order (SIGINT, SIGTERM): the HTTP server stops accepting and
// finishes in-flight requests, then the writer drains its queue to
// ClickHouse (or the spool), then the Redis client and the ClickHouse
// connection close; all within shutdown_timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector/clickhouse"
	"github.com/llmtap/llmtap/collector/config"
	"github.com/llmtap/llmtap/collector/derive"
	apihttp "github.com/llmtap/llmtap/collector/http"
	"github.com/llmtap/llmtap/collector/limits"
	"github.com/llmtap/llmtap/collector/metrics"
	"github.com/llmtap/llmtap/collector/redis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "llmtap-collector:", err)
		os.Exit(1)
	}
}

// run is main without the process: it returns when ctx ends (after a clean
// shutdown) or on a failure.
func run(ctx context.Context, args []string, stderr io.Writer, env func(string) (string, bool)) error {
	fs := flag.NewFlagSet("llmtap-collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmtap-collector [-config FILE] [-listen ADDR] [migrate]")
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "configuration file (YAML); defaults apply without one")
	listen := fs.String("listen", "", "listen address, overrides the configuration's listen")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, *listen, env)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log)
	log.Info("configuration", "config", cfg)
	// go-redis would log every failed dial on its own (process-wide); the
	// limits log Redis failures themselves, rate-limited.
	goredis.SetLogger(quietLogger{})

	conn, err := clickhouse.Open(ctx, clickhouse.Options{
		Addr:         cfg.ClickHouse.Addr,
		Username:     cfg.ClickHouse.Username,
		Password:     cfg.ClickHouse.Password.Reveal(),
		DialTimeout:  time.Duration(cfg.ClickHouse.DialTimeout),
		MaxOpenConns: cfg.ClickHouse.MaxOpenConns,
	})
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", cfg.ClickHouse.Addr, err)
	}
	defer conn.Close()
	schema := clickhouse.Schema{
		Database:      cfg.ClickHouse.Database,
		Retention:     time.Duration(cfg.ClickHouse.Retention),
		BodyRetention: time.Duration(cfg.ClickHouse.EffectiveBodyRetention()),
	}
	if err := clickhouse.NewMigrator(conn, schema, log).Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if fs.Arg(0) == "migrate" {
		log.Info("migrations applied")
		return nil
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unknown command %q: want migrate, or none to serve", fs.Arg(0))
	}
	return serve(ctx, cfg, conn, log)
}

func loadConfig(path, listen string, env func(string) (string, bool)) (*config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path, env); err != nil {
			return nil, err
		}
	}
	if err := cfg.ApplyEnv(env); err != nil {
		return nil, err
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, cfg *config.Config, conn driver.Conn, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, cfg.Metrics.MaxSeries)
	writer := clickhouse.NewWriter(conn, clickhouse.WriterOptions{
		Database:      cfg.ClickHouse.Database,
		BatchSize:     cfg.ClickHouse.BatchSize,
		FlushInterval: time.Duration(cfg.ClickHouse.FlushInterval),
		QueueSize:     cfg.ClickHouse.QueueSize,
		SpoolDir:      cfg.ClickHouse.SpoolDir,
		SpoolMaxBytes: int64(cfg.ClickHouse.SpoolMaxBytes),
		Logger:        log,
		Lost:          m.Lost,
	})
	store := clickhouse.NewStore(conn, cfg.ClickHouse.Database)
	rdb := redis.NewClient(redis.Options{
		Addr: cfg.Redis.Addr, Password: cfg.Redis.Password.Reveal(), DB: cfg.Redis.DB,
		Timeout: time.Duration(cfg.Redis.Timeout),
	})
	defer rdb.Close()
	lim := limits.New(limits.Options{
		Store:              redis.NewLimiter(rdb),
		Policies:           redis.NewPolicies(rdb),
		Default:            cfg.Limits.Default,
		Tenants:            cfg.Limits.Tenants,
		DefaultReservation: cfg.Limits.DefaultReservation,
		ReservationTTL:     time.Duration(cfg.Limits.ReservationTimeout),
		PolicyCacheTTL:     time.Duration(cfg.Limits.PolicyCache),
		Observer:           metrics.NewLimits(reg, cfg.Metrics.MaxSeries),
		Logger:             log,
	})
	metrics.RegisterStorage(reg, func() metrics.Storage {
		s := writer.Stats()
		return metrics.Storage{
			Queued: s.Queued, SpooledBatches: s.SpooledBatches, SpooledBytes: s.SpooledBytes,
			Written: s.Written, WriteErrors: s.WriteErrors, Rejected: s.Rejected,
			SpoolDropped: s.SpoolDropped, SpoolErrors: s.SpoolErrors, Replayed: s.Replayed,
		}
	})

	api := apihttp.New(apihttp.Options{
		IngestToken:  cfg.IngestToken.Reveal(),
		AdminToken:   cfg.AdminToken.Reveal(),
		Limits:       lim,
		MaxBodyBytes: int64(cfg.MaxBodyBytes),
		Queue:        writer,
		Store:        store,
		Derive:       derive.Fact,
		Observer:     m,
		Ready:        ready(store, writer, cfg.ClickHouse.SpoolDir, int64(cfg.ClickHouse.SpoolMaxBytes)),
		Gatherer:     reg,
		Logger:       log,
	})
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("serving", "addr", lis.Addr().String())

	// The writer runs until the HTTP server has stopped taking records.
	writerCtx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()
	writerDone := make(chan error, 1)
	go func() { writerDone <- writer.Run(writerCtx) }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	var serveErr error
	writerStopped := false
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	case err := <-writerDone:
		writerStopped = true
		serveErr = fmt.Errorf("writer stopped: %w", err)
	}
	log.Info("shutting down")
	deadline, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(deadline); err != nil {
		log.Error("http shutdown", "err", err)
	}
	stopWriter()
	if writerStopped {
		return serveErr
	}
	select {
	case err := <-writerDone:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("writer drain", "err", err)
		}
	case <-deadline.Done():
		log.Error("writer did not drain before the shutdown timeout", "queued", writer.Stats().Queued)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// ready says whether records can be taken: ClickHouse answers, or else the
// spool can hold what it does not take.
func ready(store *clickhouse.Store, writer *clickhouse.Writer, spoolDir string, spoolMax int64) apihttp.Checker {
	return func(ctx context.Context) error {
		pingErr := store.Ping(ctx)
		if pingErr == nil {
			return nil
		}
		if spoolDir == "" {
			return fmt.Errorf("clickhouse: %w; no spool configured", pingErr)
		}
		if used := writer.Stats().SpooledBytes; used >= spoolMax {
			return fmt.Errorf("clickhouse: %w; spool full (%d of %d bytes)", pingErr, used, spoolMax)
		}
		probe, err := os.CreateTemp(spoolDir, ".ready-*")
		if err != nil {
			return fmt.Errorf("clickhouse: %w; spool not writable: %w", pingErr, err)
		}
		_ = probe.Close()
		_ = os.Remove(probe.Name())
		return nil // degraded: records go to the spool until ClickHouse is back
	}
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
