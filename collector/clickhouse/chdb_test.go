//go:build chdb

package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	chdb "github.com/chdb-io/chdb-go/chdb-purego"
	"github.com/llmtap/llmtap/collector"
)

// The chdb tests run the collector's ClickHouse code on the current
// engine, embedded as chDB (libchdb.so, from scripts/chdb-install.sh,
// named by CHDB_LIB_PATH): the migrations of the version gate's modern
// branch, the writer, the lookup and the spend report. Debian's server,
// which the integration tests use, is 18.16; users run current ones.
//
//	CHDB_LIB_PATH=$(scripts/chdb-install.sh) go test -tags chdb -count=1 ./clickhouse/

// engine is the chDB connection, opened by TestMain on a fresh folder.
var engine *chdbConn

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "llmtap-chdb-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		db, err := chdb.NewConnectionFromConnString(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chdb:", err)
			return 1
		}
		defer db.Close()
		engine = &chdbConn{db: db}
		return m.Run()
	}())
}

// utf8Only: chDB's JSON results cannot carry bytes that are not UTF-8, so
// the facts with a binary body are left to the 18.16 tests.
func utf8Only(f *collector.Fact) bool { return utf8.ValidString(f.ResponseBody) }

func TestChdbServerIsCurrent(t *testing.T) {
	v, err := ServerVersion(context.Background(), engine)
	if err != nil {
		t.Fatal(err)
	}
	f := FeaturesOf(v)
	t.Logf("chDB's engine: ClickHouse %s, features %+v", v, f)
	if !f.TTL || !f.LowCardinality || !f.Codecs || !f.IfNotExists {
		t.Errorf("these tests expect the modern branch, got %s with %+v", v, f)
	}
}

// TestChdbMigrate: every migration of the modern branch applies on the
// current engine, is recorded, and changes nothing when run again; the
// table has the modern types, codecs and TTLs.
func TestChdbMigrate(t *testing.T) {
	const db = "chdb_migrate"
	ctx := context.Background()
	got := migrateFresh(t, engine, Schema{Database: db, Retention: 90 * day, BodyRetention: 7 * day}, 2)
	want := []string{"1 create_requests", "2 retention rows=90d bodies=7d", "3 chunk_spans bodies=7d", "4 cost", "5 upstreams", "6 bodies_omitted", "7 requests_by_id rows=90d", "8 rollups rows=90d", "9 rollups_at_scale rows=90d"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
	var create string
	if err := engine.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = 'requests'", db).Scan(&create); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ReplacingMergeTree(inserted_at)", "PARTITION BY toYYYYMM(start)", "ORDER BY (route, start, start_ms, request_id)",
		"`tenant` LowCardinality(String)", "CODEC(DoubleDelta, ZSTD(1))", "TTL start + toIntervalDay(90)",
		"`response_body` String CODEC(ZSTD(3)) TTL start + toIntervalDay(7)", "`cost_nanos` Nullable(Int64)",
	} {
		if !strings.Contains(create, want) {
			t.Errorf("table lacks %q:\n%s", want, create)
		}
	}
	checkColumns(t, engine, db, "requests", 0)
}

func TestChdbMigrateUpgrade(t *testing.T) {
	checkUpgrade(t, engine, "chdb_upgrade", utf8Only)
}

// TestChdbWriteAndGet: the writer's batches land, and the lookup reads
// each fact back as stored.
func TestChdbWriteAndGet(t *testing.T) {
	const db, n = "chdb_write", 300
	ctx := context.Background()
	migrateFresh(t, engine, Schema{Database: db}, 1)
	var in []*collector.Fact
	for i := 0; i < n; i++ {
		if f := testFact(i); utf8Only(f) {
			in = append(in, f)
		}
	}
	w, stop := startWriter(t, engine, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond, SpoolDir: t.TempDir()})
	if err := w.Enqueue(ctx, in...); err != nil {
		t.Fatal(err)
	}
	stop()
	if st := w.Stats(); st.Written != uint64(len(in)) || st.WriteErrors != 0 || st.SpooledBatches != 0 {
		t.Fatalf("stats: %+v, want %d written", st, len(in))
	}
	store := NewStore(engine, db)
	for _, f := range in {
		got, err := store.Get(ctx, f.RequestID)
		if err != nil {
			t.Fatalf("Get %s: %v", f.RequestID, err)
		}
		if want := stored(f); !reflect.DeepEqual(got, want) {
			t.Errorf("Get %s:\n got %+v\nwant %+v", f.RequestID, got, want)
		}
	}
	if _, err := store.Get(ctx, "no-such-id"); !errors.Is(err, collector.ErrNotFound) {
		t.Errorf("Get of a missing id: %v, want ErrNotFound", err)
	}
}

func TestChdbSpend(t *testing.T) {
	checkSpend(t, engine, "chdb_spend")
}

func TestChdbDocumentedQueries(t *testing.T) {
	checkDocumentedQueries(t, engine)
}

func TestChdbDashboardQueries(t *testing.T) {
	checkDashboardQueries(t, engine)
}

// TestChdbRetentionIsTheServers: where the server has TTL, the Retainer
// leaves the table to its TTLs and touches nothing.
func TestChdbRetentionIsTheServers(t *testing.T) {
	const db = "chdb_retention"
	schema := Schema{Database: db, Retention: 90 * day, BodyRetention: 7 * day}
	migrateFresh(t, engine, schema, 1)
	f := testFact(2)
	f.Start = time.Date(2020, 1, 10, 9, 0, 0, 0, time.UTC)
	w, stop := startWriter(t, engine, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	if err := w.Enqueue(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	stop()
	log := &execLog{Conn: engine}
	r := NewRetainer(log, schema, testLogger(t))
	r.now = func() time.Time { return time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC) }
	if err := r.Enforce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(log.stmts) != 0 {
		t.Errorf("the Retainer ran %q on a server with TTL", log.stmts)
	}
	// The row may go by the table's own TTL, never by the Retainer: no
	// mutation of its bodies was asked for (the migrations' own, such as
	// MODIFY TTL, are the server's).
	if n := count(t, engine, "SELECT count() FROM system.mutations WHERE database = ? AND position(command, 'request_body') > 0 AND position(command, 'UPDATE') > 0", db); n != 0 {
		t.Errorf("%d body mutations on a server with TTL", n)
	}
}

// execLog is a connection that notes the statements run through it.
type execLog struct {
	driver.Conn
	stmts []string
}

func (l *execLog) Exec(ctx context.Context, query string, args ...any) error {
	l.stmts = append(l.stmts, query)
	return l.Conn.Exec(ctx, query, args...)
}

// benchConn is the connection BenchmarkStorage fills and queries: chDB.
func benchConn(*testing.B) driver.Conn { return engine }
