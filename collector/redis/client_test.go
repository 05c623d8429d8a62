package redis

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector"
)

// TestNewClientKinds: the addresses decide the client, and every kind
// keeps the fail-fast settings.
func TestNewClientKinds(t *testing.T) {
	const timeout = 50 * time.Millisecond
	tests := []struct {
		desc string
		o    Options
		// want is "client" (one server), "cluster" or "failover" (Sentinel).
		want      string
		wantAddrs []string
	}{
		{desc: "addr: one server", o: Options{Addr: "redis:6379", DB: 3}, want: "client", wantAddrs: []string{"redis:6379"}},
		{desc: "one entry in addrs: one server", o: Options{Addrs: []string{"redis:6379"}}, want: "client", wantAddrs: []string{"redis:6379"}},
		{desc: "several addrs: Redis Cluster", o: Options{Addrs: []string{"r0:6379", "r1:6379", "r2:6379"}},
			want: "cluster", wantAddrs: []string{"r0:6379", "r1:6379", "r2:6379"}},
		{desc: "master name and Sentinels", o: Options{Addrs: []string{"s0:26379", "s1:26379"}, MasterName: "mymaster", SentinelPassword: "sp", DB: 2},
			want: "failover", wantAddrs: []string{"s0:26379", "s1:26379"}},
		{desc: "master name and one Sentinel", o: Options{Addrs: []string{"s0:26379"}, MasterName: "mymaster"},
			want: "failover", wantAddrs: []string{"s0:26379"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tt.o.Password, tt.o.Timeout = "pw", timeout
			u := tt.o.universal()
			if !reflect.DeepEqual(u.Addrs, tt.wantAddrs) || u.MasterName != tt.o.MasterName || u.DB != tt.o.DB ||
				u.Password != "pw" || u.SentinelPassword != tt.o.SentinelPassword {
				t.Errorf("universal options %+v", u)
			}
			if u.DialTimeout != timeout || u.ReadTimeout != timeout || u.WriteTimeout != timeout ||
				!u.ContextTimeoutEnabled || u.MaxRetries != 1 || u.DialerRetries != 1 {
				t.Errorf("not fail-fast: %+v", u)
			}

			rdb := NewClient(tt.o)
			defer rdb.Close()
			switch c := rdb.(type) {
			case *goredis.ClusterClient:
				if tt.want != "cluster" {
					t.Fatalf("got a Redis Cluster client, want %s", tt.want)
				}
				o := c.Options()
				if !reflect.DeepEqual(o.Addrs, tt.wantAddrs) || o.ReadTimeout != timeout || o.MaxRetries != 1 || o.Password != "pw" {
					t.Errorf("cluster options %+v", o)
				}
			case *goredis.Client:
				o := c.Options()
				// go-redis names a Sentinel-backed client's address so.
				got := "client"
				if o.Addr == "FailoverClient" {
					got = "failover"
				}
				if got != tt.want {
					t.Fatalf("got a %s client (addr %q), want %s", got, o.Addr, tt.want)
				}
				if got == "client" && o.Addr != tt.wantAddrs[0] {
					t.Errorf("addr %q, want %q", o.Addr, tt.wantAddrs[0])
				}
				if o.DB != tt.o.DB || o.ReadTimeout != timeout || o.MaxRetries != 1 || o.DialerRetries != 1 || o.Password != "pw" {
					t.Errorf("client options %+v", o)
				}
			default:
				t.Fatalf("client %T", rdb)
			}
		})
	}
}

// TestClusterClientRunsTheLimits runs a limit check, a settlement and the
// policies through the Redis Cluster client, against miniredis posing as
// a cluster that holds every slot: the scripts and the pipeline go
// through the cluster client's routing by key.
func TestClusterClientRunsTheLimits(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := NewClient(Options{Addrs: []string{mr.Addr(), mr.Addr()}, Timeout: time.Second})
	defer rdb.Close()
	if _, ok := rdb.(*goredis.ClusterClient); !ok {
		t.Fatalf("client %T, want a Redis Cluster client", rdb)
	}
	ctx := context.Background()
	lim := NewLimiter(rdb)
	tk, err := lim.Take(ctx, collector.Take{
		Bucket:   "t=acme",
		Requests: collector.Quota{Limit: 10, Period: time.Minute},
		Tokens:   collector.Quota{Limit: 1000, Period: time.Minute},
		Reserve:  100, Reservation: "req-1", ReservationTTL: time.Minute,
	})
	if err != nil || !tk.Allowed || tk.Tokens.Remaining != 900 {
		t.Fatalf("take: %+v, %v", tk, err)
	}
	if err := lim.Settle(ctx, []collector.Settlement{{Bucket: "t=acme", Reservation: "req-1", Used: 40}}); err != nil {
		t.Fatal(err)
	}
	tk, err = lim.Take(ctx, collector.Take{Bucket: "t=acme", Tokens: collector.Quota{Limit: 1000, Period: time.Minute}, Peek: true})
	if err != nil || tk.Tokens.Remaining < 959 {
		t.Fatalf("after settling 40 of 100: %+v, %v", tk, err)
	}
	p := NewPolicies(rdb)
	if err := p.Put(ctx, "acme", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := p.Get(ctx, "acme"); err != nil || string(b) != `{}` {
		t.Fatalf("policy: %q, %v", b, err)
	}
	if all, err := p.All(ctx); err != nil || len(all) != 1 || string(all["acme"]) != `{}` {
		t.Fatalf("all policies: %q, %v", all, err)
	}
}
