package limits

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// flatPrices prices every model but "unpriced" at 1 nano-dollar a token,
// input or output.
type flatPrices struct{}

func (flatPrices) Price(_, model string, u collector.Usage) (collector.Cost, bool) {
	if model == "unpriced" {
		return collector.Cost{}, false
	}
	var in, out int64
	if u.Input != nil {
		in = *u.Input
	}
	if u.Output != nil {
		out = *u.Output
	}
	return collector.Cost{Input: collector.Money(in), Output: collector.Money(out), Total: collector.Money(in + out)}, true
}

// spendOf is a spend limit of nanos nano-dollars per period.
func spendOf(nanos int64, period time.Duration) *SpendLimit {
	return &SpendLimit{Limit: float64(nanos) / 1e9, Period: Period(period)}
}

// body is a chat request with a prompt of about 12 tokens and a bound.
func body(model string, maxTokens int) []byte {
	return []byte(`{"model":"` + model + `","max_tokens":` + strconv.Itoa(maxTokens) + `,"messages":[{"role":"user","content":"hello there"}]}`)
}

func (f *fixture) checkBody(tenant string, b []byte) *Decision {
	return f.svc.Check(context.Background(), llmtap.LimitCheck{V: 2, Tenant: tenant, Route: "chat", Body: b, BodyBytes: int64(len(b))})
}

// TestSpendReservesTheWorstCase: a check reserves the request's prompt
// and output bound at their prices, and a budget admits requests until
// their reservations fill it.
func TestSpendReservesTheWorstCase(t *testing.T) {
	f := newFixture(t, Options{Prices: flatPrices{}, Default: &Policy{Spend: spendOf(1000, time.Hour)}})
	d := f.checkBody("a", body("gpt-4o", 200))
	if !d.Allowed || d.ReservedSpend != d.Prompt+200 || d.Spend == nil || d.Spend.Limit != 1000 {
		t.Fatalf("first: %+v", d)
	}
	admitted := 1
	for f.checkBody("a", body("gpt-4o", 200)).Allowed {
		admitted++
	}
	if want := int(1000 / (d.Prompt + 200)); admitted != want {
		t.Errorf("admitted %d requests of %d n$ each into 1000 n$, want %d", admitted, d.Prompt+200, want)
	}
	denied := f.checkBody("a", body("gpt-4o", 200))
	if denied.Allowed || denied.Reason != collector.ReasonSpend || denied.RetryAfter <= 0 || denied.SpendWanted != d.Prompt+200 {
		t.Errorf("denial: %+v", denied)
	}
}

// TestSpendDeniesWhatItCannotCount: a model without a price, and a prompt
// that alone costs more than the budget, are denied at once.
func TestSpendDeniesWhatItCannotCount(t *testing.T) {
	f := newFixture(t, Options{Prices: flatPrices{}, Default: &Policy{Spend: spendOf(50, time.Hour)}})
	if d := f.checkBody("a", body("unpriced", 10)); d.Allowed || !d.Unpriced || d.Reason != collector.ReasonSpend || d.Model != "unpriced" {
		t.Errorf("unpriced: %+v", d)
	}
	long := []byte(`{"model":"gpt-4o","max_tokens":1,"messages":[{"role":"user","content":"` +
		"a long prompt of many words that costs more than fifty tokens by itself once counted, surely more than fifty, " +
		"with more words and more again until the count is well past the budget of this tenant for the hour" + `"}]}`)
	if d := f.checkBody("a", long); d.Allowed || !d.TooLarge || d.Reason != collector.ReasonSpend {
		t.Errorf("too large: %+v", d)
	}
	if d := f.checkBody("a", body("gpt-4o", 10)); !d.Allowed {
		t.Errorf("a small request after the refusals: %+v", d)
	}
	// Without prices at all, a spend limit refuses rather than admits.
	g := newFixture(t, Options{Default: &Policy{Spend: spendOf(50, time.Hour)}})
	if d := g.checkBody("a", body("gpt-4o", 10)); d.Allowed || !d.Unpriced {
		t.Errorf("no pricer: %+v", d)
	}
}

// TestSpendSettles: what a request cost replaces its reservation; an
// unknown cost keeps it; a failure without a cost gives it back.
func TestSpendSettles(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fact   collector.Fact
		remain func(reserved int64) int64 // of 1000
	}{
		{"cost below the reservation", collector.Fact{Status: 200, Cost: &collector.Cost{Total: 30}}, func(int64) int64 { return 970 }},
		{"cost above it", collector.Fact{Status: 200, Cost: &collector.Cost{Total: 400}}, func(int64) int64 { return 600 }},
		{"unknown cost on success keeps it", collector.Fact{Status: 200}, func(r int64) int64 { return 1000 - r }},
		{"a failure without a cost gives it back", collector.Fact{Status: 502}, func(int64) int64 { return 1000 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{Prices: flatPrices{}, Default: &Policy{Spend: spendOf(1000, time.Hour)}})
			d := f.checkBody("a", body("gpt-4o", 200))
			if !d.Allowed || d.Reservation == "" {
				t.Fatalf("check: %+v", d)
			}
			st, err := f.svc.Status(context.Background(), "a", "chat")
			if err != nil {
				t.Fatal(err)
			}
			if st.Spend.Reserved != d.ReservedSpend || st.Spend.Spent != 0 {
				t.Errorf("before settling: %+v, want %d reserved", st.Spend, d.ReservedSpend)
			}
			fact := tt.fact
			fact.RequestID, fact.Tenant, fact.Route = "r1", "a", "chat"
			fact.Limit, fact.LimitReservation = llmtap.LimitAllowed, d.Reservation
			f.svc.Settle(context.Background(), []*collector.Fact{&fact, &fact}) // twice: settled once
			st, err = f.svc.Status(context.Background(), "a", "chat")
			if err != nil {
				t.Fatal(err)
			}
			want := tt.remain(d.ReservedSpend)
			// An hour's period refills 0.28 n$ a second: allow a little.
			if st.Spend.Remaining < want || st.Spend.Remaining > want+1 || st.Spend.Reserved != 0 {
				t.Errorf("after settling: %+v, want %d remaining, none reserved", st.Spend, want)
			}
			if st.Spend.Spent != st.Spend.Limit-st.Spend.Remaining {
				t.Errorf("spent %d, want the limit less what remains", st.Spend.Spent)
			}
		})
	}
}

// TestSpendUnderConcurrency: 50 concurrent requests against a budget
// reserve no more than it holds, however they interleave.
func TestSpendUnderConcurrency(t *testing.T) {
	f := newFixture(t, Options{Prices: flatPrices{}, Default: &Policy{Spend: spendOf(2000, time.Minute)}})
	var reserved atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if d := f.checkBody("a", body("gpt-4o", 150)); d.Allowed {
				reserved.Add(d.ReservedSpend)
			}
		}()
	}
	close(start)
	wg.Wait()
	// A minute's period refills 33 n$ a second while they run.
	if got := reserved.Load(); got > 2000+100 || got < 2000-2*170 {
		t.Fatalf("reserved %d n$ of a 2000 n$ budget", got)
	}
}

func TestSpendPolicyProblems(t *testing.T) {
	for _, tt := range []struct {
		doc, want string
	}{
		{`{"spend":{"limit":0,"period":"1h"}}`, "spend.limit: 0: want US dollars"},
		{`{"spend":{"limit":2000000,"period":"1h"}}`, "spend.limit: 2e+06"},
		{`{"spend":{"limit":10}}`, "spend.period"},
		{`{"spend":{"limit":"10","period":"1h"}}`, "policy is not valid JSON"},
	} {
		if _, err := ParsePolicy([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.doc, err, tt.want)
		}
	}
	if p, err := ParsePolicy([]byte(`{"spend":{"limit":12.5,"period":"24h"}}`)); err != nil || p.Spend.Nanos() != 12_500_000_000 {
		t.Errorf("a good budget: %+v %v", p, err)
	}
}
