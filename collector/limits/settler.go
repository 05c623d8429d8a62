package limits

import (
	"context"
	"sync"
	"time"

	"github.com/llmtap/llmtap/collector"
)

// Bounds of a Settler: the settlements it holds, how many it settles in
// one store call, and how long one call may take.
const (
	settleQueue   = 8192
	settleBatch   = 512
	settleTimeout = 2 * time.Second
)

// Settler settles reservations off the ingest path: Settle queues what
// facts used (a few numbers each, not the facts and their bodies) and
// returns at once; Run settles them in batches, one store round trip a
// batch, until its context ends, then settles what is left. When the queue
// is full, Settle settles at once instead, so nothing is dropped and the
// queue stays bounded.
type Settler struct {
	svc   *Service
	queue chan *collector.Fact
	// wg counts settlements done inline by Settle, which Run's drain
	// waits for too.
	wg sync.WaitGroup
}

// NewSettler returns a Settler for svc's settlements.
func NewSettler(svc *Service) *Settler {
	return &Settler{svc: svc, queue: make(chan *collector.Fact, settleQueue)}
}

// Settle queues the settlement of facts' reservations.
func (s *Settler) Settle(ctx context.Context, facts []*collector.Fact) {
	var overflow []*collector.Fact
	for _, f := range facts {
		select {
		case s.queue <- settlementOf(f):
		default:
			overflow = append(overflow, f)
		}
	}
	if len(overflow) > 0 {
		s.wg.Add(1)
		defer s.wg.Done()
		s.svc.Settle(ctx, overflow)
	}
}

// settlementOf keeps what a settlement reads of a fact.
func settlementOf(f *collector.Fact) *collector.Fact {
	return &collector.Fact{
		RequestID: f.RequestID, Tenant: f.Tenant, Route: f.Route, Status: f.Status,
		Usage: f.Usage, Cost: f.Cost,
		Limit: f.Limit, LimitReserved: f.LimitReserved, LimitReservation: f.LimitReservation,
	}
}

// Run settles queued settlements until ctx ends, then those still queued.
func (s *Settler) Run(ctx context.Context) error {
	batch := make([]*collector.Fact, 0, settleBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		s.svc.Settle(sctx, batch)
		cancel()
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case f := <-s.queue:
					batch = append(batch, f)
					if len(batch) == settleBatch {
						flush()
					}
				default:
					flush()
					s.wg.Wait()
					return nil
				}
			}
		case f := <-s.queue:
			batch = append(batch, f)
			// Take what else is waiting, up to a batch, then settle.
			for len(batch) < settleBatch {
				select {
				case f := <-s.queue:
					batch = append(batch, f)
					continue
				default:
				}
				break
			}
			flush()
		}
	}
}
