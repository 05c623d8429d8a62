package collector

import (
	"context"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// Ingest is the use case of the records the plugins send: each new record
// becomes a fact (Derive reads it, estimates the usage its provider did
// not report, prices it), a batch's facts are queued for storage all or
// none, counted, and their limit reservations settled. The transport
// decodes the lines and maps the errors to its answers; everything
// between lives here.
type Ingest struct {
	Derive   func(*llmtap.Record) *Fact
	Recent   *Recent
	Queue    Queue
	Observer FactObserver
	// Settle settles the reservations of the facts taken, off the
	// request's path where it can (limits.Settler).
	Settle func(ctx context.Context, facts []*Fact)
	// Export, when set, is given each fact taken, after it was queued
	// for storage (otel.Exporter.Export); it must not wait.
	Export func(f *Fact)
}

// FactObserver is told of every fact taken (the metrics).
type FactObserver interface {
	Observe(f *Fact)
	Received(n int)
}

// IngestBatch is one request's records, as Ingest takes them.
type IngestBatch struct {
	facts []*Fact
	keys  []recentKey
	// Duplicates counts the records already taken before (a batch sent
	// again): acknowledged, neither counted nor stored twice.
	Duplicates int
}

type recentKey struct {
	requestID, route string
	startUnixNs      int64
}

// Add derives a record into the batch, unless it was taken before.
func (in *Ingest) Add(b *IngestBatch, rec *llmtap.Record) {
	if !in.Recent.Add(rec.RequestID, rec.Route, rec.StartUnixNs) {
		b.Duplicates++
		return
	}
	b.facts = append(b.facts, in.Derive(rec))
	b.keys = append(b.keys, recentKey{rec.RequestID, rec.Route, rec.StartUnixNs})
}

// Commit queues the batch's facts, all or none, and returns how many it
// took. When the queue cannot take them (ErrQueueFull and others, wrapped
// as the queue returned them), they are forgotten as taken, so that the
// sender's retry is not taken for a duplicate; else they are counted and
// their reservations settled.
func (in *Ingest) Commit(ctx context.Context, b *IngestBatch) (int, error) {
	if len(b.facts) == 0 {
		return 0, nil
	}
	if err := in.Queue.Enqueue(ctx, b.facts...); err != nil {
		for _, k := range b.keys {
			in.Recent.Forget(k.requestID, k.route, k.startUnixNs)
		}
		return 0, err
	}
	in.Observer.Received(len(b.facts))
	var reserved []*Fact
	for _, f := range b.facts {
		in.Observer.Observe(f)
		if in.Export != nil {
			in.Export(f)
		}
		if f.HoldsReservation() {
			reserved = append(reserved, f)
		}
	}
	if len(reserved) > 0 && in.Settle != nil {
		in.Settle(ctx, reserved)
	}
	return len(b.facts), nil
}
