//go:build integration

package redis

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/internal/stack"
)

var server *stack.Redis

func TestMain(m *testing.M) {
	tb := &stack.MainTB{}
	server = stack.New(tb).Redis()
	code := m.Run()
	tb.Close()
	os.Exit(code)
}

func realLimiter(t *testing.T) (*Limiter, goredis.UniversalClient) {
	t.Helper()
	rdb := NewClient(Options{Addr: server.Addr(), Timeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	return NewLimiter(rdb), rdb
}

// bucket gives each test its own keys on the shared server.
func bucket(t *testing.T) string { return "t=" + t.Name() }

func TestRealRedisBurstAndIsolation(t *testing.T) {
	lim, _ := realLimiter(t)
	ctx := context.Background()
	q := collector.Quota{Limit: 5, Period: time.Hour, Burst: 3}
	var got []bool
	for i := 0; i < 5; i++ {
		tk, err := lim.Take(ctx, collector.Take{Bucket: bucket(t) + "a", Requests: q})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tk.Allowed)
		if !tk.Allowed && (tk.Reason != collector.ReasonRequests || tk.Requests.RetryAfter < 11*time.Minute) {
			t.Fatalf("denial %+v: want a retry after about 12 minutes (one request in an hour of 5)", tk)
		}
	}
	if fmt.Sprint(got) != "[true true true false false]" {
		t.Fatalf("a burst of 3: %v", got)
	}
	if tk, err := lim.Take(ctx, collector.Take{Bucket: bucket(t) + "b", Requests: q}); err != nil || !tk.Allowed || tk.Requests.Remaining != 2 {
		t.Fatalf("tenant b after tenant a's burst: %+v, %v", tk, err)
	}
}

func TestRealRedisReservationsSettle(t *testing.T) {
	lim, _ := realLimiter(t)
	ctx := context.Background()
	tq := collector.Quota{Limit: 1000, Period: time.Hour}
	take := func(id string, n int64) collector.Taken {
		tk, err := lim.Take(ctx, collector.Take{Bucket: bucket(t), Tokens: tq, Reserve: n, Reservation: id, ReservationTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	if tk := take("a", 700); !tk.Allowed || tk.Tokens.Remaining != 300 {
		t.Fatalf("take a: %+v", tk)
	}
	if tk := take("b", 400); tk.Allowed || tk.Reason != collector.ReasonTokens {
		t.Fatalf("take b should be denied: %+v", tk)
	}
	if err := lim.Settle(ctx, []collector.Settlement{{Bucket: bucket(t), Reservation: "a", Used: 200}}); err != nil {
		t.Fatal(err)
	}
	if tk := take("b", 400); !tk.Allowed || tk.Tokens.Remaining < 400 || tk.Tokens.Remaining > 401 {
		t.Fatalf("take b after a settled 200 of 700: %+v", tk)
	}
}

// TestRealRedisConcurrentStreams is the proof on the real Redis:
// 50 concurrent streaming requests against 1,000 tokens a minute, each
// reserving its max_tokens at check time and settling its real usage when
// its stream ends, use no more than the limit plus one reservation.
func TestRealRedisConcurrentStreams(t *testing.T) {
	lim, _ := realLimiter(t)
	ctx := context.Background()
	const reserve, actual = 200, 180
	tq := collector.Quota{Limit: 1000, Period: time.Minute}
	var (
		mu       sync.Mutex
		admitted int
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			<-start
			tk, err := lim.Take(ctx, collector.Take{Bucket: bucket(t), Tokens: tq, Reserve: reserve, Reservation: id, ReservationTTL: time.Minute})
			if err != nil {
				t.Error(err)
				return
			}
			if !tk.Allowed {
				return
			}
			mu.Lock()
			admitted++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // the stream
			if err := lim.Settle(ctx, []collector.Settlement{{Bucket: bucket(t), Reservation: id, Used: actual}}); err != nil {
				t.Error(err)
			}
		}(fmt.Sprintf("r%02d", i))
	}
	close(start)
	wg.Wait()
	used := admitted * actual
	t.Logf("admitted %d of 50 streams, %d tokens used of a 1000-token quota (one reservation: %d)", admitted, used, reserve)
	if used > 1000+reserve {
		t.Fatalf("%d tokens used: over the limit plus one reservation", used)
	}
	if admitted < 1000/reserve {
		t.Fatalf("only %d admitted: the quota should admit %d reservations", admitted, 1000/reserve)
	}
}

func TestRealRedisKilledAndBack(t *testing.T) {
	lim, _ := realLimiter(t)
	ctx := context.Background()
	tk := collector.Take{Bucket: bucket(t), Requests: collector.Quota{Limit: 100, Period: time.Minute}, Tokens: collector.Quota{Limit: 1000, Period: time.Minute}, Reserve: 10, Reservation: "x", ReservationTTL: time.Minute}
	if _, err := lim.Take(ctx, tk); err != nil {
		t.Fatal(err)
	}
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := lim.Take(ctx, tk); err == nil {
		t.Fatal("take with Redis killed: no error")
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("a take with Redis down took %v; the client should fail fast", took)
	}
	if err := server.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A fresh Redis has no scripts cached: both scripts load themselves again.
	tk.Reservation = "y"
	if got, err := lim.Take(ctx, tk); err != nil || !got.Allowed {
		t.Fatalf("take after Redis came back: %+v, %v", got, err)
	}
	if err := lim.Settle(ctx, []collector.Settlement{{Bucket: bucket(t), Reservation: "y", Used: 5}}); err != nil {
		t.Fatalf("settle after Redis came back: %v", err)
	}
}

// TestRealRedisPoliciesAll: every stored policy comes back, by tenant.
func TestRealRedisPoliciesAll(t *testing.T) {
	_, rdb := realLimiter(t)
	ctx := context.Background()
	p := NewPolicies(rdb)
	want := map[string]string{"all-a": `{"requests":{"limit":1,"period":"1m"}}`, "all-b": `{"failure_mode":"closed"}`}
	for tenant, doc := range want {
		if err := p.Put(ctx, tenant, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Delete(context.Background(), tenant) })
	}
	all, err := p.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for tenant, doc := range want {
		if string(all[tenant]) != doc {
			t.Errorf("%s: %q, want %q", tenant, all[tenant], doc)
		}
	}
}
