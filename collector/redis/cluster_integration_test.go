//go:build integration

package redis

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/internal/stack"
)

// These tests run the limits through the two other kinds of client
// NewClient builds, against real Redis processes started by
// internal/stack: a Redis Cluster of three masters and a Sentinel watching
// the test server.

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRealRedisCluster: a Redis Cluster refuses a script whose keys are on
// two slots (CROSSSLOT); the limits' keys share a hash tag per bucket, so
// takes and a settlement of buckets spread over every master work.
func TestRealRedisCluster(t *testing.T) {
	s := stack.New(t)
	var addrs []string
	for i := 0; i < 3; i++ {
		node := s.Redis(func(r *stack.Redis) {
			// The cluster bus on a free port of its own: by default it
			// is the node's port plus 10,000, which another process may
			// hold.
			r.Args = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
				"--cluster-port", strconv.Itoa(s.Port())}
		})
		addrs = append(addrs, node.Addr())
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	rdb := NewClient(Options{Addrs: addrs, Timeout: 2 * time.Second})
	defer rdb.Close()
	cluster, ok := rdb.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("client %T, want a Redis Cluster client", rdb)
	}
	ctx := context.Background()
	// Each node reaches cluster_state:ok on its own, once the others'
	// gossip reached it: wait for all three.
	for _, a := range addrs {
		node := goredis.NewClient(&goredis.Options{Addr: a})
		waitUntil(t, a+" to report cluster_state:ok", func() bool {
			info, err := node.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = node.Close()
	}

	// The check the hash tags pass: two keys of different slots in one
	// script call are refused.
	err := goredis.NewScript(`return 1`).Run(ctx, rdb, []string{"llmtap:limit:a", "llmtap:limit:b"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("a script over two slots: %v, want CROSSSLOT (is this a cluster?)", err)
	}

	lim := NewLimiter(rdb)
	tq := collector.Quota{Limit: 1000, Period: time.Hour}
	var settle []collector.Settlement
	masters := map[string]bool{}
	for i := 0; i < 30; i++ {
		b := fmt.Sprintf("t=tenant-%d", i)
		tk, err := lim.Take(ctx, collector.Take{Bucket: b, Requests: collector.Quota{Limit: 5, Period: time.Minute},
			Tokens: tq, Reserve: 100, Reservation: "req", ReservationTTL: time.Minute})
		if err != nil || !tk.Allowed || tk.Tokens.Remaining != 900 {
			t.Fatalf("take %s: %+v, %v", b, tk, err)
		}
		settle = append(settle, collector.Settlement{Bucket: b, Reservation: "req", Used: 30})
		slot, err := cluster.ClusterKeySlot(ctx, keys(b)[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		masters[fmt.Sprint(slot*3/16384)] = true
	}
	if len(masters) < 2 {
		t.Fatalf("buckets on %d masters only; the test wants several", len(masters))
	}
	if err := lim.Settle(ctx, settle); err != nil {
		t.Fatalf("settle across masters: %v", err)
	}
	for _, s := range settle {
		tk, err := lim.Take(ctx, collector.Take{Bucket: s.Bucket, Tokens: tq, Peek: true})
		if err != nil || tk.Tokens.Remaining < 970 {
			t.Fatalf("%s after settling 30 of 100: %+v, %v", s.Bucket, tk, err)
		}
	}
	p := NewPolicies(rdb)
	if err := p.Put(ctx, "acme", []byte(`{"requests":{"limit":5,"period":"1s"}}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := p.Get(ctx, "acme"); err != nil || !strings.Contains(string(b), `"limit":5`) {
		t.Fatalf("policy: %q, %v", b, err)
	}
}

// TestRealRedisSentinel: with a master name the client asks the Sentinel
// for the master (the test server) and the limits run there.
func TestRealRedisSentinel(t *testing.T) {
	host, masterPort, _ := strings.Cut(server.Addr(), ":")
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	// A Sentinel rewrites its configuration file, so it must be its own.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor llmtap %s %s 1\n", host, masterPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := stack.New(t).Redis(func(r *stack.Redis) { r.Args = []string{conf, "--sentinel"} })
	rdb := NewClient(Options{Addrs: []string{sentinel.Addr()}, MasterName: "llmtap", Timeout: 2 * time.Second})
	defer rdb.Close()
	ctx := context.Background()
	lim := NewLimiter(rdb)
	b := bucket(t)
	tk, err := lim.Take(ctx, collector.Take{Bucket: b, Requests: collector.Quota{Limit: 5, Period: time.Minute}})
	if err != nil || !tk.Allowed {
		t.Fatalf("take through the Sentinel: %+v, %v", tk, err)
	}
	// It ran on the master the Sentinel named: the test server.
	direct := goredis.NewClient(&goredis.Options{Addr: server.Addr()})
	defer direct.Close()
	if n, err := direct.Exists(ctx, keys(b)[0]).Result(); err != nil || n != 1 {
		t.Errorf("bucket on the master: exists %d, %v", n, err)
	}
}
