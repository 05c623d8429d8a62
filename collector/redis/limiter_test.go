package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector"
)

// fake is a Limiter on miniredis, with Redis's clock under the test's control.
type fake struct {
	mr  *miniredis.Miniredis
	lim *Limiter
	now time.Time
}

func newFake(t *testing.T) *fake {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := NewClient(Options{Addr: mr.Addr(), Timeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	f := &fake{mr: mr, lim: NewLimiter(rdb), now: time.Unix(1_800_000_000, 0)}
	mr.SetTime(f.now)
	return f
}

func (f *fake) advance(d time.Duration) {
	f.now = f.now.Add(d)
	f.mr.SetTime(f.now)
	f.mr.FastForward(d) // expire keys as real time would
}

func (f *fake) take(t *testing.T, tk collector.Take) collector.Taken {
	t.Helper()
	got, err := f.lim.Take(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

var perMinute = collector.Quota{Limit: 60, Period: time.Minute}

func TestRequestQuotaGCRA(t *testing.T) {
	tests := []struct {
		name     string
		quota    collector.Quota
		steps    []time.Duration // wait before each take
		allowed  []bool
		remain   []int64
		retryMax time.Duration // RetryAfter of the last take, when denied
	}{
		{
			name:    "burst defaults to the limit, then one per interval",
			quota:   collector.Quota{Limit: 3, Period: 3 * time.Second},
			steps:   []time.Duration{0, 0, 0, 0, time.Second, 0},
			allowed: []bool{true, true, true, false, true, false},
			remain:  []int64{2, 1, 0, 0, 0, 0},
		},
		{
			name:    "a burst of 2 on 60 per minute",
			quota:   collector.Quota{Limit: 60, Period: time.Minute, Burst: 2},
			steps:   []time.Duration{0, 0, 0, 500 * time.Millisecond, 500 * time.Millisecond},
			allowed: []bool{true, true, false, false, true},
			remain:  []int64{1, 0, 0, 0, 0},
		},
		{
			name:    "an idle quota is whole again, not more",
			quota:   collector.Quota{Limit: 2, Period: time.Second},
			steps:   []time.Duration{0, 0, time.Hour, 0, 0},
			allowed: []bool{true, true, true, true, false},
			remain:  []int64{1, 0, 1, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			for i, wait := range tt.steps {
				f.advance(wait)
				got := f.take(t, collector.Take{Bucket: "acme", Requests: tt.quota})
				if got.Allowed != tt.allowed[i] || got.Requests.Remaining != tt.remain[i] {
					t.Fatalf("take %d: allowed %v remaining %d, want %v and %d", i, got.Allowed, got.Requests.Remaining, tt.allowed[i], tt.remain[i])
				}
				if !got.Allowed && (got.Reason != collector.ReasonRequests || got.Requests.RetryAfter <= 0) {
					t.Fatalf("take %d: denied with reason %q, retry after %v", i, got.Reason, got.Requests.RetryAfter)
				}
			}
		})
	}
}

func TestDeniedRequestRetryAfterIsExact(t *testing.T) {
	f := newFake(t)
	q := collector.Quota{Limit: 10, Period: 10 * time.Second, Burst: 1}
	f.take(t, collector.Take{Bucket: "a", Requests: q})
	f.advance(300 * time.Millisecond)
	got := f.take(t, collector.Take{Bucket: "a", Requests: q})
	if got.Allowed || got.Requests.RetryAfter != 700*time.Millisecond {
		t.Fatalf("got allowed %v, retry after %v; want a denial for 700ms", got.Allowed, got.Requests.RetryAfter)
	}
	f.advance(700 * time.Millisecond)
	if got := f.take(t, collector.Take{Bucket: "a", Requests: q}); !got.Allowed {
		t.Fatalf("denied after the retry-after: %+v", got)
	}
}

var tokens1k = collector.Quota{Limit: 1000, Period: time.Minute}

func TestTokenReservationsAndSettlement(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	take := func(id string, reserve int64) collector.Taken {
		return f.take(t, collector.Take{Bucket: "acme", Tokens: tokens1k, Reserve: reserve, Reservation: id, ReservationTTL: time.Minute})
	}
	if got := take("r1", 400); !got.Allowed || got.Reserved != 400 || got.Tokens.Remaining != 600 {
		t.Fatalf("first take: %+v", got)
	}
	if got := take("r2", 400); !got.Allowed || got.Tokens.Remaining != 200 {
		t.Fatalf("second take: %+v", got)
	}
	got := take("r3", 400)
	if got.Allowed || got.Reason != collector.ReasonTokens || got.Tokens.Remaining != 200 {
		t.Fatalf("third take should be denied for tokens: %+v", got)
	}
	// 200 tokens short at 1000/min: 12 s.
	if got.Tokens.RetryAfter != 12*time.Second {
		t.Fatalf("retry after %v, want 12s", got.Tokens.RetryAfter)
	}
	// r1 used 100 of its 400: 300 come back. r2 used 500: 100 more are charged.
	if err := f.lim.Settle(ctx, []collector.Settlement{{Bucket: "acme", Reservation: "r1", Used: 100}, {Bucket: "acme", Reservation: "r2", Used: 500}}); err != nil {
		t.Fatal(err)
	}
	if got := f.take(t, collector.Take{Bucket: "acme", Tokens: tokens1k, Peek: true}); got.Tokens.Remaining != 400 {
		t.Fatalf("after settling: remaining %d, want 400", got.Tokens.Remaining)
	}
	// A record sent twice is settled once.
	if err := f.lim.Settle(ctx, []collector.Settlement{{Bucket: "acme", Reservation: "r1", Used: 100}}); err != nil {
		t.Fatal(err)
	}
	if got := f.take(t, collector.Take{Bucket: "acme", Tokens: tokens1k, Peek: true}); got.Tokens.Remaining != 400 {
		t.Fatalf("after a repeated settlement: remaining %d, want 400", got.Tokens.Remaining)
	}
}

func TestReservationWithoutRecordIsReleased(t *testing.T) {
	f := newFake(t)
	tk := collector.Take{Bucket: "acme", Tokens: collector.Quota{Limit: 1000, Period: time.Hour}, Reserve: 900, Reservation: "lost", ReservationTTL: 30 * time.Second}
	if got := f.take(t, tk); !got.Allowed || got.Tokens.Remaining != 100 {
		t.Fatalf("take: %+v", got)
	}
	f.advance(31 * time.Second) // refills 8.6 tokens, and the reservation expires
	tk.Peek = true
	if got := f.take(t, tk); got.Tokens.Remaining != 1000 {
		t.Fatalf("after the reservation TTL: remaining %d, want 1000", got.Tokens.Remaining)
	}
	// Its record, arriving late, is charged in full.
	if err := f.lim.Settle(context.Background(), []collector.Settlement{{Bucket: "acme", Reservation: "lost", Used: 250}}); err != nil {
		t.Fatal(err)
	}
	if got := f.take(t, tk); got.Tokens.Remaining != 750 {
		t.Fatalf("after the late record: remaining %d, want 750", got.Tokens.Remaining)
	}
}

func TestReserveIsBoundedByTheQuota(t *testing.T) {
	f := newFake(t)
	tk := collector.Take{Bucket: "acme", Tokens: tokens1k, Reserve: 50_000, Reservation: "big", ReservationTTL: time.Minute}
	if got := f.take(t, tk); !got.Allowed || got.Reserved != 1000 || got.Tokens.Remaining != 0 {
		t.Fatalf("a reservation over the quota should take the whole quota: %+v", got)
	}
	tk.Reservation, tk.Reserve = "zero", 0
	if got := f.take(t, tk); got.Allowed {
		t.Fatalf("an empty bucket admitted a request reserving nothing: %+v", got)
	}
}

func TestBothQuotasOrNeither(t *testing.T) {
	f := newFake(t)
	tk := collector.Take{Bucket: "acme", Requests: perMinute, Tokens: collector.Quota{Limit: 100, Period: time.Minute}, Reserve: 80, Reservation: "a", ReservationTTL: time.Minute}
	f.take(t, tk)
	tk.Reservation = "b"
	got := f.take(t, tk)
	if got.Allowed || got.Reason != collector.ReasonTokens {
		t.Fatalf("want a token denial: %+v", got)
	}
	// The denied take used no request.
	if got.Requests.Remaining != 59 {
		t.Fatalf("requests remaining %d after a token denial, want 59", got.Requests.Remaining)
	}
}

func TestBucketsAreIsolated(t *testing.T) {
	f := newFake(t)
	q := collector.Quota{Limit: 1, Period: time.Minute}
	if got := f.take(t, collector.Take{Bucket: "t=a", Requests: q}); !got.Allowed {
		t.Fatal("tenant a denied at first")
	}
	if got := f.take(t, collector.Take{Bucket: "t=a", Requests: q}); got.Allowed {
		t.Fatal("tenant a admitted past its limit")
	}
	if got := f.take(t, collector.Take{Bucket: "t=b", Requests: q}); !got.Allowed {
		t.Fatal("tenant b denied because tenant a is exhausted")
	}
}

func TestPolicies(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	p := NewPolicies(rdb)
	ctx := context.Background()
	if _, err := p.Get(ctx, "acme"); !errors.Is(err, collector.ErrNotFound) {
		t.Fatalf("get of no policy: %v, want ErrNotFound", err)
	}
	if err := p.Put(ctx, "acme", []byte(`{"requests":{"limit":5,"period":"1s"}}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := p.Get(ctx, "acme"); err != nil || string(b) != `{"requests":{"limit":5,"period":"1s"}}` {
		t.Fatalf("get: %q, %v", b, err)
	}
	if err := p.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, "acme"); !errors.Is(err, collector.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	f := newFake(t)
	f.mr.Close()
	_, err := f.lim.Take(context.Background(), collector.Take{Bucket: "a", Requests: perMinute})
	if err == nil {
		t.Fatal("take with Redis down: no error")
	}
	if err := f.lim.Settle(context.Background(), []collector.Settlement{{Bucket: "a", Reservation: "x", Used: 1}}); err == nil {
		t.Fatal("settle with Redis down: no error")
	}
}
