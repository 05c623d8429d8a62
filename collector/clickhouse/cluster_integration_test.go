//go:build integration && !chdb

package clickhouse

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/internal/stack"
)

// TestIntegrationCluster runs the cluster variant of the schema on a real
// ClickHouse 18.16 that uses a real ZooKeeper and is the one shard and
// replica of its cluster: ON CLUSTER statements, replicated tables, the
// Distributed table, the writer and Store.Get through it, and
// deduplication on the shard.
func TestIntegrationCluster(t *testing.T) {
	start := time.Now()
	s := stack.New(t)
	zk := s.ZooKeeper()
	srv := s.ClickHouse(func(c *stack.ClickHouse) {
		c.Cluster = &stack.Cluster{Name: "llmtap_it", ZooKeeperPort: zk.Port, InterserverPort: s.Port()}
	})
	t.Logf("ZooKeeper and ClickHouse started in %s", time.Since(start).Round(time.Millisecond))
	conn := openAt(t, srv.Addr())
	ctx := context.Background()
	const db = "it_cluster"
	schema := Schema{Database: db, Cluster: srv.Cluster.Name, Retention: 90 * day, BodyRetention: 7 * day}

	t.Run("migrate twice at once, then again", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			c := openAt(t, srv.Addr())
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = NewMigrator(c, schema, testLogger(t)).Migrate(ctx)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if err := NewMigrator(conn, schema, testLogger(t)).Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		// 18.16 has no TTL: migration 2 is not recorded.
		latest, err := NewMigrator(conn, schema, nil).applied(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[uint32]string{1: "create_requests", 3: "chunk_spans", 4: "cost", 5: "upstreams", 6: "bodies_omitted", 7: "requests_by_id", 8: "rollups", 9: "rollups_at_scale"}; !reflect.DeepEqual(latest, want) {
			t.Errorf("recorded %v, want %v", latest, want)
		}
		engines := map[string]string{}
		rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", db)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var name, engine string
			if err := rows.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			engines[name] = engine
		}
		want := map[string]string{
			"llmtap_migrations":     "ReplicatedMergeTree",
			"requests_local":        "ReplicatedReplacingMergeTree",
			"requests":              "Distributed",
			"requests_by_id_local":  "ReplicatedReplacingMergeTree",
			"requests_by_id":        "Distributed",
			"requests_by_id_mv":     "MaterializedView",
			"requests_hourly_local": "ReplicatedReplacingMergeTree",
			"requests_hourly":       "Distributed",
			"routes_hourly_local":   "ReplicatedReplacingMergeTree",
			"routes_hourly":         "Distributed",
			"requests_daily_local":  "ReplicatedReplacingMergeTree",
			"requests_daily":        "Distributed",
			"latency_hourly_local":  "ReplicatedReplacingMergeTree",
			"latency_hourly":        "Distributed",
			"errors_hourly_local":   "ReplicatedReplacingMergeTree",
			"errors_hourly":         "Distributed",
		}
		if !reflect.DeepEqual(engines, want) {
			t.Errorf("tables %v, want %v", engines, want)
		}
		replicas := map[string]string{}
		rrows, err := conn.Query(ctx, "SELECT table, zookeeper_path, replica_name FROM system.replicas WHERE database = ?", db)
		if err != nil {
			t.Fatal(err)
		}
		defer rrows.Close()
		for rrows.Next() {
			var table, path, replica string
			if err := rrows.Scan(&table, &path, &replica); err != nil {
				t.Fatal(err)
			}
			replicas[table] = path + " " + replica
		}
		wantReplicas := map[string]string{
			"llmtap_migrations":     "/clickhouse/tables/it_cluster/llmtap_migrations " + srv.Cluster.Shard + "-" + srv.Cluster.Replica,
			"requests_local":        "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/requests_local " + srv.Cluster.Replica,
			"requests_by_id_local":  "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/requests_by_id_local " + srv.Cluster.Replica,
			"requests_hourly_local": "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/requests_hourly_local " + srv.Cluster.Replica,
			"routes_hourly_local":   "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/routes_hourly_local " + srv.Cluster.Replica,
			"requests_daily_local":  "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/requests_daily_local " + srv.Cluster.Replica,
			"latency_hourly_local":  "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/latency_hourly_local " + srv.Cluster.Replica,
			"errors_hourly_local":   "/clickhouse/tables/" + srv.Cluster.Shard + "/it_cluster/errors_hourly_local " + srv.Cluster.Replica,
		}
		if !reflect.DeepEqual(replicas, wantReplicas) {
			t.Errorf("replicas %v, want %v", replicas, wantReplicas)
		}
		for _, table := range []string{"requests", "requests_local"} {
			checkColumns(t, conn, db, table, 0)
		}
	})

	in := make([]*collector.Fact, 500)
	t.Run("write through the Distributed table and get", func(t *testing.T) {
		w, stop := startWriter(t, conn, WriterOptions{Database: db, Cluster: srv.Cluster.Name, FlushInterval: 20 * time.Millisecond, SpoolDir: t.TempDir()})
		for i := range in {
			in[i] = testFact(i)
			if err := w.Enqueue(context.Background(), in[i]); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "rows written", func() bool { return w.Stats().Written == uint64(len(in)) })
		stop()
		if st := w.Stats(); st.WriteErrors != 0 || st.SpooledBatches != 0 {
			t.Errorf("stats: %+v", st)
		}
		// insert_distributed_sync: the rows are on the shard when the
		// insert returns, not queued for background sending.
		for _, table := range []string{"requests", "requests_local"} {
			if got := count(t, conn, "SELECT count() FROM "+db+"."+table); got != uint64(len(in)) {
				t.Errorf("%s: %d rows, want %d", table, got, len(in))
			}
		}
		store := NewStore(conn, db)
		for _, i := range []int{0, 1, 2, 3, 7, 11, 250, 499} {
			got, err := store.Get(ctx, in[i].RequestID)
			if err != nil {
				t.Fatalf("Get %s: %v", in[i].RequestID, err)
			}
			if want := stored(in[i]); !reflect.DeepEqual(got, want) {
				t.Errorf("Get %s:\n got %+v\nwant %+v", in[i].RequestID, got, want)
			}
		}
		if _, err := store.Get(ctx, "no-such-id"); !errors.Is(err, collector.ErrNotFound) {
			t.Errorf("Get of a missing id: %v, want ErrNotFound", err)
		}
		// The alias through the Distributed table, for chunks stored as
		// spans (4) and as texts (2).
		for _, i := range []int{2, 4} {
			var chunks []string
			if err := conn.QueryRow(ctx, "SELECT chunks FROM "+db+".requests WHERE request_id = ?", in[i].RequestID).Scan(&chunks); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(chunks, in[i].Chunks) {
				t.Errorf("%s: chunks %q, want %q", in[i].RequestID, chunks, in[i].Chunks)
			}
		}
		// The rollup through the Distributed tables: each request once.
		if err := NewRoller(conn, schema, testLogger(t)).Roll(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range rollups {
			want := uint64(len(in))
			if r.rows != "" {
				want = count(t, conn, "SELECT count() FROM "+db+".requests FINAL WHERE "+r.rows)
			}
			if got := count(t, conn, "SELECT "+requestsOf(r)+" FROM "+db+"."+r.name+" WHERE "+
				r.latest(db, "toDateTime(0)", "toDateTime(4000000000)")); got != want {
				t.Errorf("%s counts %d requests, want %d", r.name, got, want)
			}
		}
	})

	t.Run("a record sent again is one row after a merge", func(t *testing.T) {
		f := in[3]
		again := *f
		again.Model = "re-derived-model"    // a later copy, from a newer collector
		time.Sleep(1100 * time.Millisecond) // a later inserted_at
		w, stop := startWriter(t, conn, WriterOptions{Database: db, Cluster: srv.Cluster.Name, FlushInterval: 10 * time.Millisecond})
		if err := w.Enqueue(context.Background(), &again); err != nil {
			t.Fatal(err)
		}
		stop()
		const where = " WHERE request_id = ?"
		if got := count(t, conn, "SELECT count() FROM "+db+".requests_local"+where, f.RequestID); got != 2 {
			t.Fatalf("%d copies on the shard before merging, want 2 (the test needs the unmerged state)", got)
		}
		if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL"+where, f.RequestID); got != 1 {
			t.Errorf("FINAL through the Distributed table: %d rows, want 1", got)
		}
		got, err := NewStore(conn, db).Get(ctx, f.RequestID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Model != again.Model {
			t.Errorf("Get returned model %q, want the newest copy's %q", got.Model, again.Model)
		}
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".requests_local ON CLUSTER "+srv.Cluster.Name+" FINAL"); err != nil {
			t.Fatal(err)
		}
		if got := count(t, conn, "SELECT count() FROM "+db+".requests_local"+where, f.RequestID); got != 1 {
			t.Errorf("%d rows after OPTIMIZE FINAL, want 1", got)
		}
		if got := count(t, conn, "SELECT count() FROM "+db+".requests"); got != uint64(len(in)) {
			t.Errorf("%d rows in all, want %d", got, len(in))
		}
	})

	t.Run("a cluster database refused without a cluster", func(t *testing.T) {
		err := NewMigrator(conn, Schema{Database: db}, nil).Migrate(ctx)
		if err == nil || !strings.Contains(err.Error(), "it_cluster.requests is a Distributed table, made for a cluster, but no cluster is configured") {
			t.Errorf("Migrate without the cluster: %v", err)
		}
	})
}

// TestIntegrationSingleDatabaseRefusedOnCluster: a database made for a
// single server is not silently kept when a cluster is configured.
func TestIntegrationSingleDatabaseRefusedOnCluster(t *testing.T) {
	const db = "it_single_layout"
	conn := migrated(t, db)
	err := NewMigrator(conn, Schema{Database: db, Cluster: "somewhere"}, nil).Migrate(context.Background())
	if err == nil || !strings.Contains(err.Error(), `it_single_layout.requests is a ReplacingMergeTree table, made for a single server, but cluster "somewhere" is configured`) {
		t.Errorf("Migrate with a cluster: %v", err)
	}
}

func openAt(t *testing.T, addr string) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Open(ctx, Options{Addr: addr, DialTimeout: 2 * time.Second, ReadTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
