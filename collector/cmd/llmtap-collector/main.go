// Command llmtap-collector receives the llmtap plugin's records, derives
// facts from them, stores them in ClickHouse and exports Prometheus
// metrics.
//
//	llmtap-collector [-config FILE] [-listen ADDR]          serve
//	llmtap-collector [-config FILE] migrate                  apply schema migrations and exit
//
// # Start and stop
//
// serve states the order once, as a group of parts (group.go) that start
// in the order they are added and stop in the reverse order, each part
// stopped only once the one after it has returned:
//
//  1. ClickHouse connection (migrations applied before serve; when
//     ClickHouse does not answer, the writer applies them once it does,
//     and records are spooled meanwhile)
//  2. Redis client (it connects on first use: Redis being down only
//     triggers the limits' failure modes)
//  3. writer (opens the spool; replays it once ClickHouse answers)
//  4. HTTP server
//
// On SIGINT or SIGTERM, or when a part stops by itself (the writer failing
// stops the server), the parts stop in the order 4, 3, 2, 1, all within
// shutdown_timeout:
//
//  4. The HTTP server stops accepting (readiness probes then fail to
//     connect) and finishes in-flight requests, for at most half of
//     shutdown_timeout; a request cut off then is not acknowledged. A
//     record batch is acknowledged (202) only once every record of it is
//     in the writer's queue.
//  3. The writer takes no more facts and writes what is queued to
//     ClickHouse, or to the spool if ClickHouse is down; inserts give way
//     to the spool when a quarter of the time left remains.
//  2. The Redis client closes (in-flight limit checks and settlements are
//     over by then).
//  1. The ClickHouse connection closes.
//
// The process exits 0 after a signal when every part stopped in time. It
// exits 1 with a line naming each part that did not (for the writer, how
// many acknowledged facts were neither written nor spooled), or when a part
// failed. A second signal kills the process at once.
package main

import (
	"context"
	"crypto/tls"
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
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/clickhouse"
	"github.com/llmtap/llmtap/collector/config"
	"github.com/llmtap/llmtap/collector/derive"
	apihttp "github.com/llmtap/llmtap/collector/http"
	"github.com/llmtap/llmtap/collector/limits"
	"github.com/llmtap/llmtap/collector/metrics"
	"github.com/llmtap/llmtap/collector/otel"
	"github.com/llmtap/llmtap/collector/pricing"
	"github.com/llmtap/llmtap/collector/redact"
	"github.com/llmtap/llmtap/collector/redis"
	"github.com/llmtap/llmtap/collector/tokens"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "llmtap-collector:", err)
		os.Exit(1)
	}
}

// run is main without the process: it returns when ctx ends (after a clean
// shutdown) or on a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) (string, bool)) error {
	fs := flag.NewFlagSet("llmtap-collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmtap-collector [-config FILE] [-listen ADDR] [migrate | prices-missing]")
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

	chTLS, err := cfg.ClickHouse.TLS.Config()
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	prompts, err := tokens.New(cfg.Tokens.Encodings)
	if err != nil {
		return err
	}
	pricer, err := newPricer(cfg.Pricing, log)
	if err != nil {
		return err
	}
	redactor, err := redact.New(cfg.Redaction.Options())
	if err != nil {
		return fmt.Errorf("redaction: %w", err)
	}
	conn, err := clickhouse.Dial(clickhouse.Options{
		TLS:          chTLS,
		Addr:         cfg.ClickHouse.Addr,
		Username:     cfg.ClickHouse.Username,
		Password:     cfg.ClickHouse.Password.Reveal(),
		DialTimeout:  time.Duration(cfg.ClickHouse.DialTimeout),
		MaxOpenConns: cfg.ClickHouse.MaxOpenConns,
	})
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", cfg.ClickHouse.Addr, err)
	}
	migrator := clickhouse.NewMigrator(conn, schemaOf(cfg), log)
	switch {
	case fs.Arg(0) == "migrate":
		if err := migrator.Migrate(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		log.Info("migrations applied")
		return conn.Close()
	case fs.Arg(0) == "prices-missing":
		err := pricesMissing(ctx, clickhouse.NewStore(conn, cfg.ClickHouse.Database), pricer, stdout)
		_ = conn.Close()
		return err
	case fs.NArg() > 0:
		_ = conn.Close()
		return fmt.Errorf("unknown command %q: want migrate, prices-missing, or none to serve", fs.Arg(0))
	}
	// ClickHouse down at start does not keep the collector from serving:
	// limits need only Redis, and records go to the spool until it
	// answers, when the writer migrates (Prepare) and replays. A server
	// that answers but refuses the migrations stops the start.
	var prepare func(context.Context) error
	pctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.ClickHouse.DialTimeout))
	pingErr := conn.Ping(pctx)
	cancel()
	if pingErr == nil {
		if err := migrator.Migrate(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("migrate: %w", err)
		}
	} else {
		log.Warn("ClickHouse does not answer at start; serving limit checks, spooling records, migrating when it answers",
			"addr", cfg.ClickHouse.Addr, "err", pingErr)
		prepare = migrator.Migrate
	}
	return serve(ctx, cfg, conn, prepare, readers{prompts: prompts, pricer: pricer, redactor: redactor}, log) // closes conn
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
	if err := cfg.CheckTrust(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// newPricer loads the price table, the embedded one or pricing.file,
// with the configuration's prices.
func newPricer(c config.Pricing, log *slog.Logger) (*pricing.Pricer, error) {
	table, err := pricing.Default()
	if c.File != "" {
		var b []byte
		if b, err = os.ReadFile(c.File); err != nil {
			return nil, fmt.Errorf("pricing.file: %w", err)
		}
		table, err = pricing.ParseTable(c.File, b)
	}
	if err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	log.Info("prices", "version", table.Version, "models", len(table.Models), "configured", len(c.Models), "routes", len(c.Routes), "aliases", len(c.Aliases))
	return pricing.New(table, pricing.Config{Models: c.Models, Routes: c.Routes, Aliases: c.Aliases}), nil
}

// pricesMissing prints the models ClickHouse holds requests with token
// counts of, on each route, that the current prices do not cover, the
// most used first.
func pricesMissing(ctx context.Context, store collector.SpendReader, pricer *pricing.Pricer, out io.Writer) error {
	rows, err := store.Spend(ctx, collector.SpendQuery{
		From: time.Unix(0, 0), To: time.Now().Add(time.Hour),
		GroupBy: []collector.SpendGroup{collector.SpendByRoute, collector.SpendByModel},
	})
	if err != nil {
		return fmt.Errorf("prices-missing: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tMODEL\tREQUESTS\tINPUT TOKENS\tOUTPUT TOKENS")
	missing := 0
	for _, r := range rows {
		route, model := r.Group[0], r.Group[1]
		if r.Input+r.Output == 0 || pricer.Lookup(route, model) != nil {
			continue
		}
		missing++
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", route, model, r.Requests, r.Input, r.Output)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if missing == 0 {
		fmt.Fprintln(out, "every model seen has a price")
	} else {
		fmt.Fprintf(out, "%d models without a price: add them to pricing.models (or pricing.aliases) in the collector's configuration\n", missing)
	}
	return nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listen opens the API's listener: HTTPS when cfg.TLS names a certificate.
func listen(cfg *config.Config) (net.Listener, error) {
	var tc *tls.Config
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if tc != nil {
		lis = tls.NewListener(lis, tc)
	}
	return lis, nil
}

// serve runs the collector until ctx ends or a part fails; it owns conn
// and closes it last. The group below is the one statement of the start
// and stop order (see the package documentation).
// schemaOf is the ClickHouse schema the configuration asks for.
func schemaOf(cfg *config.Config) clickhouse.Schema {
	return clickhouse.Schema{
		Database:      cfg.ClickHouse.Database,
		Retention:     time.Duration(cfg.ClickHouse.Retention),
		BodyRetention: time.Duration(cfg.ClickHouse.EffectiveBodyRetention()),
		Cluster:       cfg.ClickHouse.Cluster,
	}
}

// newExporter makes the OpenTelemetry export of c, or nil when it is off
// (no endpoint, or a sampling ratio of 0).
func newExporter(ctx context.Context, c config.OTel, log *slog.Logger) (*otel.Exporter, error) {
	if c.Endpoint == "" || c.SamplingRatio == 0 {
		return nil, nil
	}
	headers := make(map[string]string, len(c.Headers))
	for k, v := range c.Headers {
		headers[k] = v.Reveal()
	}
	e, err := otel.New(ctx, otel.Options{
		Endpoint: c.Endpoint, Protocol: c.Protocol, Headers: headers, SampleRatio: c.SamplingRatio,
		Timeout: time.Duration(c.Timeout), QueueSize: c.QueueSize, Logger: log.With("component", "otel"),
	})
	if err != nil {
		return nil, err
	}
	log.Info("exporting spans", "endpoint", c.Endpoint, "protocol", c.Protocol, "sampling_ratio", c.SamplingRatio, "semconv", otel.SemconvVersion)
	return e, nil
}

// readers are what reads a request's bodies: its prompt's tokens, its
// price, what of it is masked before it is stored.
type readers struct {
	prompts  *tokens.Counter
	pricer   *pricing.Pricer
	redactor *redact.Redactor
}

func serve(ctx context.Context, cfg *config.Config, conn driver.Conn, prepare func(context.Context) error, rd readers, log *slog.Logger) error {
	redisTLS, err := cfg.Redis.TLS.Config()
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("redis: %w", err)
	}
	lis, err := listen(cfg)
	if err != nil {
		_ = conn.Close()
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, cfg.Metrics.MaxSeries)
	writer := clickhouse.NewWriter(conn, clickhouse.WriterOptions{
		Database:      cfg.ClickHouse.Database,
		Cluster:       cfg.ClickHouse.Cluster,
		BatchSize:     cfg.ClickHouse.BatchSize,
		FlushInterval: time.Duration(cfg.ClickHouse.FlushInterval),
		QueueSize:     cfg.ClickHouse.QueueSize,
		QueueBytes:    int64(cfg.ClickHouse.QueueMaxBytes),
		QueueWait:     time.Duration(cfg.ClickHouse.QueueWait),
		SpoolDir:      cfg.ClickHouse.SpoolDir,
		SpoolMaxBytes: int64(cfg.ClickHouse.SpoolMaxBytes),
		Logger:        log,
		Lost:          m.Lost,
		Prepare:       prepare,
	})
	store := clickhouse.NewStore(conn, cfg.ClickHouse.Database)
	rdb := redis.NewClient(redis.Options{
		TLS:  redisTLS,
		Addr: cfg.Redis.Addr, Addrs: cfg.Redis.Addrs, MasterName: cfg.Redis.MasterName,
		Password: cfg.Redis.Password.Reveal(), SentinelPassword: cfg.Redis.SentinelPassword.Reveal(),
		DB: cfg.Redis.DB, Timeout: time.Duration(cfg.Redis.Timeout),
	})
	lim := limits.New(limits.Options{
		Prompts:            rd.prompts,
		Prices:             rd.pricer,
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
	settler := limits.NewSettler(lim)
	exporter, err := newExporter(ctx, cfg.OTel, log)
	if err != nil {
		return err
	}
	var export func(*collector.Fact)
	exportStats := func() metrics.Export { return metrics.Export{} }
	if exporter != nil {
		export = exporter.Export
		exportStats = func() metrics.Export {
			s := exporter.Stats()
			return metrics.Export{Exported: s.Exported, Dropped: s.Dropped, Failed: s.Failed, Queued: s.Queued}
		}
	}
	metrics.RegisterExport(reg, exportStats)
	metrics.RegisterStorage(reg, func() metrics.Storage {
		s := writer.Stats()
		return metrics.Storage{
			Queued: s.Queued, QueuedBytes: s.QueuedBytes, SpooledBatches: s.SpooledBatches, SpooledBytes: s.SpooledBytes,
			Written: s.Written, WriteErrors: s.WriteErrors, Rejected: s.Rejected, Spilled: s.Spilled,
			SpoolDropped: s.SpoolDropped, SpoolErrors: s.SpoolErrors, Replayed: s.Replayed, SetAside: s.SetAside,
		}
	})
	api := apihttp.New(apihttp.Options{
		IngestToken:  cfg.IngestToken.Reveal(),
		ReadToken:    cfg.ReadToken.Reveal(),
		AdminToken:   cfg.AdminToken.Reveal(),
		Limits:       lim,
		Settle:       settler,
		MaxBodyBytes: int64(cfg.MaxBodyBytes),
		MaxIngest:    cfg.MaxIngestRequests,
		Queue:        writer,
		Store:        store,
		Spend:        store,
		Derive:       derive.New(derive.Steps{Counter: rd.prompts, Pricer: rd.pricer, Redactor: rd.redactor}),
		Export:       export,
		Observer:     m,
		Ready:        ready(store, writer, cfg.ClickHouse.SpoolDir, int64(cfg.ClickHouse.SpoolMaxBytes)),
		Gatherer:     reg,
		Logger:       log,
	})
	// A client that trickles its body or idles on a connection holds a
	// goroutine and buffers: both are bounded in time.
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}

	// Start order top down, stop order bottom up.
	g := &group{log: log}
	g.add("clickhouse", nil, func(context.Context) error { return conn.Close() })
	g.add("redis", nil, func(context.Context) error { return rdb.Close() })
	g.addLoop("limit policy snapshots", lim.Run)
	if sc := schemaOf(cfg); sc.Retention > 0 || sc.BodyRetention > 0 {
		// Where the server has no TTL, the collector expires the rows.
		g.addLoop("retention", clickhouse.NewRetainer(conn, sc, log.With("component", "clickhouse.retention")).Run)
	}
	// The hourly rollup the dashboards and the spend report read.
	g.addLoop("rollup", clickhouse.NewRoller(conn, schemaOf(cfg), log.With("component", "clickhouse.rollup")).Run)
	g.add("writer",
		func() error { return writer.Run(context.Background()) },
		writer.Shutdown)
	if exporter != nil {
		// Parts stop in reverse: once HTTP has stopped, the loop exports
		// what ingest queued, then the exporter closes its connections.
		g.add("otel exporter", nil, exporter.Shutdown)
		g.addLoop("otel export", exporter.Run)
	}
	// Stopped once HTTP has stopped: settles what ingest queued, then returns.
	g.addLoop("limit settlements", settler.Run)
	g.add("http",
		func() error {
			log.Info("serving", "addr", lis.Addr().String())
			if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		func(ctx context.Context) error { return shutdownHTTP(ctx, srv) })
	return g.run(ctx, time.Duration(cfg.ShutdownTimeout))
}

// shutdownHTTP stops accepting and waits for in-flight requests, for at
// most half the time ctx has left: the writer's drain needs the rest.
// Requests still running then have their connections closed, so their
// records are not acknowledged.
func shutdownHTTP(ctx context.Context, srv *http.Server) error {
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(d)/2))
		defer cancel()
	}
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("requests still in flight were cut off: %w", err)
	}
	return nil
}

// ready says whether records can be taken: ClickHouse answers, or else the
// spool can hold what it does not take; and in which state each part is.
func ready(store *clickhouse.Store, writer *clickhouse.Writer, spoolDir string, spoolMax int64) apihttp.Checker {
	return func(ctx context.Context) (apihttp.Parts, error) {
		st := writer.Stats()
		parts := apihttp.Parts{
			"clickhouse": "up",
			"spool":      fmt.Sprintf("%d batches, %d of %d bytes", st.SpooledBatches, st.SpooledBytes, spoolMax),
		}
		pingErr := store.Ping(ctx)
		if pingErr == nil {
			return parts, nil
		}
		parts["clickhouse"] = "down: " + pingErr.Error()
		if spoolDir == "" {
			parts["spool"] = "none configured"
			return parts, fmt.Errorf("clickhouse: %w; no spool configured", pingErr)
		}
		if st.SpooledBytes >= spoolMax {
			return parts, fmt.Errorf("clickhouse: %w; spool full (%d of %d bytes)", pingErr, st.SpooledBytes, spoolMax)
		}
		probe, err := os.CreateTemp(spoolDir, ".ready-*")
		if err != nil {
			return parts, fmt.Errorf("clickhouse: %w; spool not writable: %w", pingErr, err)
		}
		_ = probe.Close()
		_ = os.Remove(probe.Name())
		return parts, nil // degraded: records go to the spool until ClickHouse is back
	}
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
