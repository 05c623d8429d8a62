// Package otel exports each stored request as an OpenTelemetry span that
// follows the GenAI semantic conventions (SemconvVersion), over OTLP/HTTP
// or OTLP/gRPC with the official Go exporters. Export runs beside storage
// and never holds it up: spans wait in a bounded queue, are sent in
// batches, retried within a bound by the exporter, and counted when they
// are dropped or their batch fails.
package otel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmtap/llmtap/collector"
)

// Protocols of Options.Protocol.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Options configure the export.
type Options struct {
	// Endpoint is the receiver's URL: http(s)://host:port, and for
	// http/protobuf an optional path (default /v1/traces).
	Endpoint string
	Protocol string // ProtocolHTTP (default) or ProtocolGRPC
	Headers  map[string]string
	// SampleRatio is the share of requests exported, decided by request
	// id so that a replayed record is decided alike; 0 means 1.
	SampleRatio float64
	// Timeout bounds one batch's export, its retries included.
	Timeout time.Duration
	// QueueSize bounds the requests waiting for export; past it they are
	// dropped and counted.
	QueueSize int
	BatchSize int
	Interval  time.Duration
	Logger    *slog.Logger
}

// Stats are the export's counts since start.
type Stats struct {
	Exported, Dropped, Failed uint64
	Queued                    int
}

// Exporter sends spans of facts. Export is safe for concurrent use; Run
// sends until its context ends, then what is queued, within Shutdown's.
type Exporter struct {
	exp       sdktrace.SpanExporter
	queue     chan *collector.Fact
	threshold uint64 // a request is exported when its hash is below
	batchSize int
	interval  time.Duration
	timeout   time.Duration
	resource  *resource.Resource
	log       *slog.Logger

	exported, dropped, failed atomic.Uint64
	done                      chan struct{}
	stopOnce                  sync.Once
}

// New checks the options and connects nothing yet: the exporters dial
// on their first batch.
func New(ctx context.Context, o Options) (*Exporter, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otel: endpoint %q: want http://host:port or https://host:port", o.Endpoint)
	}
	if o.SampleRatio < 0 || o.SampleRatio > 1 {
		return nil, fmt.Errorf("otel: sampling_ratio %v: want 0 to 1 (0 is every request)", o.SampleRatio)
	}
	if o.SampleRatio == 0 {
		o.SampleRatio = 1
	}
	o = o.withDefaults()
	retry := struct {
		initial, max, elapsed time.Duration
	}{time.Second, 5 * time.Second, o.Timeout}
	var exp sdktrace.SpanExporter
	switch o.Protocol {
	case ProtocolHTTP:
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithHeaders(o.Headers), otlptracehttp.WithTimeout(o.Timeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed}),
		}
		if u.Path != "" && u.Path != "/" {
			opts = append(opts, otlptracehttp.WithURLPath(u.Path))
		}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(u.Host), otlptracegrpc.WithHeaders(o.Headers), otlptracegrpc.WithTimeout(o.Timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed}),
		}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("otel: protocol %q: want %s or %s", o.Protocol, ProtocolHTTP, ProtocolGRPC)
	}
	if err != nil {
		return nil, fmt.Errorf("otel: %w", err)
	}
	return &Exporter{
		exp:       exp,
		queue:     make(chan *collector.Fact, o.QueueSize),
		threshold: threshold(o.SampleRatio),
		batchSize: o.BatchSize,
		interval:  o.Interval,
		timeout:   o.Timeout,
		resource: resource.NewSchemaless(attribute.String("service.name", "llmtap"),
			attribute.String("llmtap.semconv_version", SemconvVersion)),
		log:  o.Logger,
		done: make(chan struct{}),
	}, nil
}

// threshold is the hash under which a request is exported: every one at
// a ratio of 1 (2^64 does not fit a uint64), else the ratio's share.
func threshold(ratio float64) uint64 {
	if ratio >= 1 {
		return math.MaxUint64
	}
	return uint64(math.Ldexp(ratio, 64))
}

func (o Options) withDefaults() Options {
	if o.Protocol == "" {
		o.Protocol = ProtocolHTTP
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Export queues a fact's span, unless the sampling leaves it out; a full
// queue drops it and counts it. It never waits.
func (e *Exporter) Export(f *collector.Fact) {
	if e.threshold != math.MaxUint64 {
		if _, id := ids(f.RequestID); hashOf(id) > e.threshold {
			return
		}
	}
	select {
	case e.queue <- f:
	default:
		e.dropped.Add(1)
	}
}

// Run sends batches until ctx ends; then it returns, and Shutdown sends
// what is left.
func (e *Exporter) Run(ctx context.Context) error {
	defer close(e.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, e.batchSize)
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.drain(batch)
			return nil
		case f := <-e.queue:
			if batch = append(batch, e.span(f)); len(batch) >= e.batchSize {
				batch = e.send(batch)
			}
		case <-t.C:
			if len(batch) > 0 {
				batch = e.send(batch)
			}
		}
	}
}

// drain sends the batch and whatever is queued, then stops the exporter.
func (e *Exporter) drain(batch []sdktrace.ReadOnlySpan) {
	for {
		select {
		case f := <-e.queue:
			if batch = append(batch, e.span(f)); len(batch) >= e.batchSize {
				batch = e.send(batch)
			}
			continue
		default:
		}
		break
	}
	if len(batch) > 0 {
		e.send(batch)
	}
}

func (e *Exporter) span(f *collector.Fact) sdktrace.ReadOnlySpan { return spanOf(f, e.resource) }

// send exports a batch within the timeout and counts the outcome; it
// returns the batch emptied.
func (e *Exporter) send(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	if err := e.exp.ExportSpans(ctx, batch); err != nil {
		e.failed.Add(uint64(len(batch)))
		e.log.Warn("spans not exported", "spans", len(batch), "err", err)
	} else {
		e.exported.Add(uint64(len(batch)))
	}
	clear(batch)
	return batch[:0]
}

// Shutdown waits for Run to have sent what was queued (Run's context must
// have ended), then closes the exporter's connections.
func (e *Exporter) Shutdown(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		select {
		case <-e.done:
		case <-ctx.Done():
			err = fmt.Errorf("otel: spans still queued at shutdown: %w", ctx.Err())
		}
		err = errors.Join(err, e.exp.Shutdown(ctx))
	})
	return err
}

// Stats reports the counts.
func (e *Exporter) Stats() Stats {
	return Stats{Exported: e.exported.Load(), Dropped: e.dropped.Load(), Failed: e.failed.Load(), Queued: len(e.queue)}
}
