package collector

import (
	"context"
	"errors"
	"testing"

	llmtap "github.com/llmtap/llmtap/plugin"
)

type testQueue struct {
	full  bool
	facts []*Fact
}

func (q *testQueue) Enqueue(_ context.Context, facts ...*Fact) error {
	if q.full {
		return ErrQueueFull
	}
	q.facts = append(q.facts, facts...)
	return nil
}

type testObserver struct{ observed, received int }

func (o *testObserver) Observe(*Fact)  { o.observed++ }
func (o *testObserver) Received(n int) { o.received += n }

// TestIngest: new records are derived and queued all at once, duplicates
// only counted; a batch the queue refuses is forgotten, so that its retry
// is taken; the reservations of what was taken are settled.
func TestIngest(t *testing.T) {
	q, obs := &testQueue{full: true}, &testObserver{}
	var settled []string
	in := &Ingest{
		Derive: func(r *llmtap.Record) *Fact {
			return &Fact{RequestID: r.RequestID, Route: r.Route, LimitReservation: r.LimitReservation}
		},
		Recent: NewRecent(16), Queue: q, Observer: obs,
		Settle: func(_ context.Context, facts []*Fact) {
			for _, f := range facts {
				settled = append(settled, f.RequestID)
			}
		},
	}
	records := []*llmtap.Record{
		{RequestID: "a", Route: "r", StartUnixNs: 1},
		{RequestID: "b", Route: "r", StartUnixNs: 2, LimitReservation: "res-b"},
		{RequestID: "a", Route: "r", StartUnixNs: 1}, // the same record twice in a batch
	}
	var b IngestBatch
	for _, r := range records {
		in.Add(&b, r)
	}
	if n, err := in.Commit(context.Background(), &b); n != 0 || !errors.Is(err, ErrQueueFull) || obs.received != 0 {
		t.Fatalf("a full queue: %d, %v, %d received", n, err, obs.received)
	}
	// The retry: nothing was kept as taken.
	q.full = false
	b = IngestBatch{}
	for _, r := range records {
		in.Add(&b, r)
	}
	n, err := in.Commit(context.Background(), &b)
	if err != nil || n != 2 || b.Duplicates != 1 || len(q.facts) != 2 || obs.received != 2 || obs.observed != 2 {
		t.Fatalf("the retry: %d, %v; %d duplicates, %d queued, %+v", n, err, b.Duplicates, len(q.facts), obs)
	}
	if len(settled) != 1 || settled[0] != "b" {
		t.Errorf("settled %q, want the one with a reservation", settled)
	}
	// Sent again once taken: acknowledged, not queued again.
	b = IngestBatch{}
	in.Add(&b, records[1])
	if n, err := in.Commit(context.Background(), &b); n != 0 || err != nil || b.Duplicates != 1 || len(q.facts) != 2 {
		t.Errorf("a batch sent again: %d, %v, %d duplicates", n, err, b.Duplicates)
	}
}
