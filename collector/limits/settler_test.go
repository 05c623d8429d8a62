package limits

import (
	"context"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// TestSettlerSettlesOffThePath: Settle returns without settling; Run
// settles in the background, and what is still queued when it stops; a
// full queue settles at once rather than drop anything.
func TestSettlerSettlesOffThePath(t *testing.T) {
	f := newFixture(t, Options{Default: &Policy{Tokens: toks(10000, time.Hour, CountTotal)}})
	s := &Settler{svc: f.svc, queue: make(chan *collector.Fact, 3)}
	var facts []*collector.Fact
	for i := 0; i < 5; i++ {
		id := "r" + string(rune('a'+i))
		d := f.check("a", "chat", 300, id)
		if !d.Allowed {
			t.Fatalf("check %d: %+v", i, d)
		}
		facts = append(facts, &collector.Fact{RequestID: id, Tenant: "a", Route: "chat", Status: 200, Usage: usage(50, 50),
			Limit: llmtap.LimitAllowed, LimitReserved: 300, RequestBody: "a body the queue must not keep"})
	}
	remaining := func() int64 {
		st, err := f.svc.Status(context.Background(), "a", "chat")
		if err != nil {
			t.Fatal(err)
		}
		return st.Tokens.Remaining
	}
	// 3 fit in the queue; the other 2 are settled at once.
	s.Settle(context.Background(), facts)
	if got := remaining(); got < 10000-5*300+2*200 || got > 10000-5*300+2*200+2 {
		t.Fatalf("after Settle: %d remaining, want 2 settled inline", got)
	}
	for range len(s.queue) {
		q := <-s.queue
		if q.RequestBody != "" {
			t.Fatalf("queued settlement of %s keeps the fact's body", q.RequestID)
		}
		s.queue <- q
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := remaining(); got < 10000-5*100 || got > 10000-5*100+2 {
		t.Fatalf("after Run: %d remaining, want all 5 settled at 100 tokens each", got)
	}
}
