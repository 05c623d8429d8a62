//go:build integration && !chdb

package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/internal/stack"
)

// The integration tests run against a real ClickHouse server (Debian's
// 18.16 here) that TestMain starts with internal/stack on free
// loopback ports in a temporary run folder, and stops at the end. A server
// that does not start fails the run: these tests never skip.
//
//	go test -tags integration -count=1 ./clickhouse/

// server is the test server, started by TestMain.
var server *stack.ClickHouse

func TestMain(m *testing.M) {
	tb := &stack.MainTB{}
	server = stack.New(tb).ClickHouse()
	code := m.Run()
	tb.Close()
	os.Exit(code)
}

// clickhouseCtl starts or stops the test server.
func clickhouseCtl(action string) error {
	if action == "stop" {
		return server.Stop(context.Background())
	}
	return server.Start(context.Background())
}

func openTest(t *testing.T) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Open(ctx, Options{Addr: server.Addr(), DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// migrated opens a connection and a fresh database for one test.
func migrated(t *testing.T, db string) driver.Conn {
	t.Helper()
	conn := openTest(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		t.Fatal(err)
	}
	if err := NewMigrator(conn, Schema{Database: db}, testLogger(t)).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return conn
}

// openLazy is Open without its ping: no connection until first use.
func openLazy(t *testing.T) driver.Conn {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{server.Addr()}, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestIntegrationServerIsLegacy(t *testing.T) {
	v, err := ServerVersion(context.Background(), openTest(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server %s, features %+v", v, FeaturesOf(v))
	if FeaturesOf(v).TTL {
		t.Errorf("these tests expect the legacy branch (18.16), got %s", v)
	}
}

func TestIntegrationMigrateIdempotent(t *testing.T) {
	const db = "it_migrate"
	conn := openTest(t)
	ctx := context.Background()
	// Retention is set but 18.16 has no TTL: migration 2 must be skipped
	// and left unrecorded.
	got := migrateFresh(t, conn, Schema{Database: db, Retention: 90 * day, BodyRetention: 7 * day}, 2)
	if want := []string{"1 create_requests", "3 chunk_spans", "4 cost", "5 upstreams", "6 bodies_omitted", "7 requests_by_id", "8 rollups", "9 rollups_at_scale"}; !reflect.DeepEqual(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
	var create string
	if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+db+".requests").Scan(&create); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ReplacingMergeTree(inserted_at)", "PARTITION BY toYYYYMM(start)", "ORDER BY (route, start, start_ms, request_id)", "chunk_offsets_us Array(Int64)", "SETTINGS index_granularity = 1024"} {
		if !strings.Contains(create, want) {
			t.Errorf("table lacks %q:\n%s", want, create)
		}
	}
	checkColumns(t, conn, db, "requests", 0)
}

// TestIntegrationMigrateUpgrade: checkUpgrade on 18.16.
func TestIntegrationMigrateUpgrade(t *testing.T) {
	checkUpgrade(t, openTest(t), "it_upgrade", func(*collector.Fact) bool { return true })
}

// TestIntegrationSpend: checkSpend on 18.16.
func TestIntegrationSpend(t *testing.T) {
	checkSpend(t, openTest(t), "it_spend")
}

// TestIntegrationDashboardQueries: checkDashboardQueries on 18.16.
func TestIntegrationDashboardQueries(t *testing.T) {
	checkDashboardQueries(t, openTest(t))
}

func TestIntegrationWrite10kAndGet(t *testing.T) {
	const db, n = "it_10k", 10000
	conn := migrated(t, db)
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 50 * time.Millisecond, QueueSize: n, SpoolDir: t.TempDir()})
	in := make([]*collector.Fact, n)
	for i := range in {
		in[i] = testFact(i)
	}
	var bodyBytes int
	start := time.Now()
	for _, f := range in {
		bodyBytes += len(f.RequestBody) + len(f.ResponseBody)
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "10k rows written", func() bool { return w.Stats().Written == n })
	took := time.Since(start)
	t.Logf("wrote %d rows (%.1f MB of bodies) in %s: %.0f rows/s", n, float64(bodyBytes)/1e6, took.Round(time.Millisecond), n/took.Seconds())
	stop()
	if st := w.Stats(); st.WriteErrors != 0 || st.SpooledBatches != 0 || st.Queued != 0 {
		t.Errorf("stats: %+v", st)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests"); got != n {
		t.Fatalf("%d rows in the table, want %d", got, n)
	}

	store := NewStore(conn, db)
	ctx := context.Background()
	for _, i := range []int{0, 1, 2, 3, 5, 6, 7, 11, 42, 999, 1234, 5000, 7777, 9998, 9999} {
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
	if err := store.Ping(ctx); err != nil {
		t.Error(err)
	}
}

func TestIntegrationGetTrickyIDs(t *testing.T) {
	const db = "it_ids"
	conn := migrated(t, db)
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	ids := []string{`it's`, `back\slash`, `"double"`, "tab\there", "ünïcødé", "?", "a' OR '1'='1"}
	for i, id := range ids {
		f := testFact(i)
		f.RequestID = id
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	store := NewStore(conn, db)
	for _, id := range ids {
		f, err := store.Get(context.Background(), id)
		if err != nil || f.RequestID != id {
			t.Errorf("Get(%q) = %v, %v", id, f, err)
		}
	}
}

func TestIntegrationReplayDedups(t *testing.T) {
	const db = "it_dedup"
	conn := migrated(t, db)
	ctx := context.Background()
	f := testFact(3)
	changed := *f
	changed.Model = "re-derived-model" // a replay derived by a newer collector
	for i, fact := range []*collector.Fact{f, f, &changed} {
		if i == 2 {
			time.Sleep(1100 * time.Millisecond) // a later inserted_at for the changed copy
		}
		w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
		if err := w.Enqueue(context.Background(), fact); err != nil {
			t.Fatal(err)
		}
		stop()
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests WHERE request_id = ?", f.RequestID); got != 3 {
		t.Fatalf("%d copies before merging, want 3 (the test needs the unmerged state)", got)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL WHERE request_id = ?", f.RequestID); got != 1 {
		t.Errorf("FINAL count %d, want 1", got)
	}
	got, err := NewStore(conn, db).Get(ctx, f.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != "re-derived-model" {
		t.Errorf("Get returned model %q, want the newest copy's", got.Model)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".requests FINAL"); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests WHERE request_id = ?", f.RequestID); got != 1 {
		t.Errorf("%d rows after a merge, want 1", got)
	}

	// The same client id on two different requests is not collapsed.
	other := testFact(4)
	other.RequestID = f.RequestID
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	if err := w.Enqueue(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	stop()
	if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL WHERE request_id = ?", f.RequestID); got != 2 {
		t.Errorf("two requests sharing an id: FINAL count %d, want 2", got)
	}
}

// TestIntegrationOutage stops ClickHouse while facts are being enqueued,
// then starts it again: every fact Enqueue acknowledged must be stored
// exactly once after the spool is replayed.
func TestIntegrationOutage(t *testing.T) {
	const db = "it_outage"
	// No idle connection, so the server stops at once (see
	// TestIntegrationDrainWhileDown): only the busy writer holds one.
	_ = migrated(t, db).Close()
	conn := openLazy(t)
	spoolDir := t.TempDir()
	w, stop := startWriter(t, conn, WriterOptions{
		Database: db, BatchSize: 200, FlushInterval: 50 * time.Millisecond, QueueSize: 5000,
		SpoolDir: spoolDir, Retries: 2, RetryBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		WriteTimeout: 3 * time.Second,
	})

	var (
		mu    sync.Mutex
		acked []string
		full  int
	)
	producing := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-producing:
				return
			default:
			}
			f := testFact(i)
			switch err := w.Enqueue(context.Background(), f); {
			case err == nil:
				mu.Lock()
				acked = append(acked, f.RequestID)
				mu.Unlock()
			case errors.Is(err, ErrQueueFull):
				full++
			default:
				t.Errorf("Enqueue: %v", err)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()

	time.Sleep(500 * time.Millisecond)
	stopAt := time.Now()
	if err := clickhouseCtl("stop"); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse stopped in %s", time.Since(stopAt).Round(time.Millisecond))
	waitForLong(t, "batches in the spool", 20*time.Second, func() bool { return w.Stats().SpooledBatches >= 3 })
	time.Sleep(time.Second) // stay down through a few probes
	t.Logf("while down: %+v", w.Stats())
	startAt := time.Now()
	if err := clickhouseCtl("start"); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse started again in %s", time.Since(startAt).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	close(producing)
	<-done
	waitForLong(t, "the spool to empty", 30*time.Second, func() bool {
		st := w.Stats()
		return st.SpooledBatches == 0 && st.Queued == 0
	})
	stop()
	st := w.Stats()
	t.Logf("after: %+v; %d acknowledged, %d answered ErrQueueFull", st, len(acked), full)
	if st.SpoolDropped != 0 || st.Replayed == 0 || st.WriteErrors == 0 {
		t.Errorf("stats: %+v: want no drops, some replayed rows and some write errors", st)
	}

	ctx := context.Background()
	if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL"); got != uint64(len(acked)) {
		t.Errorf("FINAL count %d, want %d acknowledged", got, len(acked))
	}
	rows, err := conn.Query(ctx, "SELECT request_id, count() AS c FROM "+db+".requests FINAL GROUP BY request_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := make(map[string]bool, len(acked))
	for rows.Next() {
		var (
			id string
			c  uint64
		)
		if err := rows.Scan(&id, &c); err != nil {
			t.Fatal(err)
		}
		if c != 1 {
			t.Errorf("%s stored %d times", id, c)
		}
		seen[id] = true
	}
	var missing []string
	for _, id := range acked {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 || len(seen) != len(acked) {
		t.Errorf("%d acknowledged facts missing (e.g. %.5q), %d stored ids for %d acknowledged", len(missing), missing, len(seen), len(acked))
	}
	raw := count(t, conn, "SELECT count() FROM "+db+".requests")
	t.Logf("rows before merging: %d for %d facts", raw, len(acked))
	if entries, _ := os.ReadDir(spoolDir); len(entries) != 0 {
		t.Errorf("spool files left: %v", entries)
	}
}

// TestIntegrationSpillWhileHung: ClickHouse hangs (SIGSTOP: it accepts
// and never answers) with an insert under way; the batches the queue has
// no room for in bytes go to the spool whole, every Enqueue is taken, and
// once ClickHouse answers again every fact is stored once.
func TestIntegrationSpillWhileHung(t *testing.T) {
	const db = "it_spill"
	_ = migrated(t, db).Close()
	conn := openLazy(t)
	const batches, per, inMemory = 10, 10, 2 // batches the queue's bytes hold
	var limit int64
	for i := 0; i < inMemory*per; i++ {
		limit += factSize(testFact(i))
	}
	w, stop := startWriter(t, conn, WriterOptions{
		Database: db, BatchSize: per, FlushInterval: 20 * time.Millisecond, QueueBytes: limit,
		SpoolDir: t.TempDir(), RetryBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		WriteTimeout: 30 * time.Second, // the hung insert outlasts the test's enqueues
	})
	proc := server.Process()
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Signal(syscall.SIGCONT) })
	for b := 0; b < batches; b++ {
		facts := make([]*collector.Fact, per)
		for i := range facts {
			facts[i] = testFact(b*per + i)
		}
		if err := w.Enqueue(context.Background(), facts...); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		if b == 0 {
			// Taken by Run (whose spool is open then) into a full batch,
			// whose insert hangs.
			waitForLong(t, "the first batch taken", 10*time.Second, func() bool { return len(w.queue) == 0 })
		}
	}
	if st := w.Stats(); st.Spilled != (batches-inMemory)*per || st.QueuedBytes != limit || st.Rejected != 0 {
		t.Fatalf("while hung: %+v, want %d facts spilled and the queue's bytes full", st, (batches-inMemory)*per)
	}
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitForLong(t, "every fact stored", 60*time.Second, func() bool {
		st := w.Stats()
		return st.Written+st.Replayed == batches*per && st.SpooledBatches == 0
	})
	stop()
	if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL"); got != batches*per {
		t.Errorf("%d rows stored, want %d", got, batches*per)
	}
	if got := count(t, conn, "SELECT uniqExact(request_id) FROM "+db+".requests"); got != batches*per {
		t.Errorf("%d request ids stored, want %d", got, batches*per)
	}
}

func TestIntegrationDrainOnCancel(t *testing.T) {
	const db = "it_drain"
	conn := migrated(t, db)
	w, stop := startWriter(t, conn, WriterOptions{Database: db, BatchSize: 1000, FlushInterval: time.Hour, SpoolDir: t.TempDir()})
	ids := enqueue(t, w, 0, 2500)
	time.Sleep(50 * time.Millisecond)
	stop()
	if st := w.Stats(); st.Written != 2500 || st.Queued != 0 || st.SpooledBatches != 0 {
		t.Errorf("after drain: %+v", st)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL"); got != uint64(len(ids)) {
		t.Errorf("%d rows, want %d", got, len(ids))
	}
}

// TestIntegrationDrainWhileDown shuts a writer down while ClickHouse is
// stopped, so the queue drains to the spool, then starts ClickHouse and a
// new writer on the same spool, which replays it: a collector restart
// during an outage loses nothing.
func TestIntegrationDrainWhileDown(t *testing.T) {
	const db = "it_drain_down"
	// 18.16 notices a shutdown on an idle connection only at its next
	// poll (10 s): stop the server with none open, so the migration's
	// connection is closed and the writers' one dials on first use.
	_ = migrated(t, db).Close()
	conn := openLazy(t)
	spoolDir := t.TempDir()
	if err := clickhouseCtl("stop"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = clickhouseCtl("start")
		}
	})
	opts := WriterOptions{Database: db, BatchSize: 100, FlushInterval: time.Hour, SpoolDir: spoolDir, RetryBackoff: 10 * time.Millisecond, WriteTimeout: 2 * time.Second}
	w, stop := startWriter(t, conn, opts)
	ids := enqueue(t, w, 0, 350)
	stop()
	if st := w.Stats(); st.SpooledBatches != 4 || st.Queued != 0 || st.SpoolDropped != 0 {
		t.Fatalf("after a drain while down: %+v, want 4 spooled batches", st)
	}
	if err := clickhouseCtl("start"); err != nil {
		t.Fatal(err)
	}
	restarted = true

	opts.FlushInterval = 20 * time.Millisecond
	w2, stop2 := startWriter(t, conn, opts)
	waitForLong(t, "the new writer to replay the spool", 20*time.Second, func() bool { return w2.Stats().Replayed == uint64(len(ids)) })
	stop2()
	if got := count(t, conn, "SELECT count() FROM "+db+".requests FINAL"); got != uint64(len(ids)) {
		t.Errorf("%d rows, want %d", got, len(ids))
	}
	if entries, _ := os.ReadDir(spoolDir); len(entries) != 0 {
		t.Errorf("spool files left: %v", entries)
	}
}

func waitForLong(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationDocumentedQueries runs every query of docs/queries.md on
// the real server, over a table holding a few facts, so that the queries
// users copy from the docs work. The queries' now() is a fixed instant just
// after the facts, so neither the date nor the time of day (a run across
// midnight, a server clock of its own) changes what they find.
// TestIntegrationDocumentedQueries: checkDocumentedQueries on 18.16.
func TestIntegrationDocumentedQueries(t *testing.T) {
	checkDocumentedQueries(t, openTest(t))
}

// TestIntegrationBackupRestore runs the export and import commands of
// docs/operations.md ("Portable export and import") with clickhouse-client
// against the real server: rows of several months, exported from one
// database and imported into a fresh one, come back the same, in both
// formats. The months are fixed, on both sides of a year's end, so that the
// test does not depend on today's date.
func TestIntegrationBackupRestore(t *testing.T) {
	const from, to = "llmtap_backup_from", "llmtap_backup_to"
	conn := migrated(t, from)
	migrated(t, to)
	ctx := context.Background()
	w := NewWriter(conn, WriterOptions{Database: from, BatchSize: 50, FlushInterval: 50 * time.Millisecond, QueueSize: 100, Logger: testLogger(t)})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	starts := []time.Time{
		time.Date(2025, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), // Europe's clocks go forward
	}
	for i := 0; i < 21; i++ {
		f := testFact(i)
		f.Start = starts[i%len(starts)]
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}

	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	if i := strings.Index(section, "**Portable export and import**"); i >= 0 {
		section = section[i:]
	}
	if i := strings.Index(section, "Restoring rows"); i >= 0 {
		section = section[:i]
	}
	blocks := fencedBlocks(section, "sh")
	if len(blocks) != 4 {
		t.Fatalf("docs/operations.md has %d sh blocks under Portable export and import, want an export and an import in two formats", len(blocks))
	}
	_, port, _ := strings.Cut(server.Addr(), ":")
	checksum := `SELECT count(), sum(cityHash64(request_id, status, ifNull(output_tokens, -1), response_body)) FROM %s.requests FINAL`
	want := queryString(t, conn, fmt.Sprintf(checksum, from))
	for i := 0; i < len(blocks); i += 2 {
		dir := t.TempDir()
		export := strings.NewReplacer("llmtap.requests", from+".requests", "database = 'llmtap'", "database = '"+from+"'").Replace(blocks[i])
		imp := strings.ReplaceAll(blocks[i+1], "llmtap.requests", to+".requests")
		for _, c := range []string{export, imp} {
			c = strings.ReplaceAll(c, "clickhouse-client", "clickhouse-client --host 127.0.0.1 --port "+port)
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", c)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", c, err, out)
			}
		}
		files, err := filepath.Glob(filepath.Join(dir, "requests-*"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range files {
			names = append(names, filepath.Base(f))
		}
		ext := ".native"
		if i > 0 {
			ext = ".tsv"
		}
		if got, want := strings.Join(names, " "), "requests-202512"+ext+" requests-202601"+ext+" requests-202603"+ext; got != want {
			t.Errorf("export wrote %s, want one file a month: %s", got, want)
		}
		if got := queryString(t, conn, fmt.Sprintf(checksum, to)); got != want {
			t.Fatalf("after %s:\nrestored %s, exported %s", imp, got, want)
		}
		if err := conn.Exec(ctx, "TRUNCATE TABLE "+to+".requests"); err != nil {
			t.Fatal(err)
		}
	}
}

// queryString runs a query with one row and renders its columns.
func queryString(t *testing.T, conn driver.Conn, q string) string {
	t.Helper()
	var n, sum uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n, &sum); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n == 0 {
		t.Fatalf("%s: no rows", q)
	}
	return fmt.Sprintf("%d rows, checksum %d", n, sum)
}

// TestIntegrationRetention: on 18.16, which has no TTL, the Retainer drops
// the monthly partitions wholly past the retention and empties the bodies
// past the body retention; rows within both keep everything, and a second
// round changes nothing.
func TestIntegrationRetention(t *testing.T) {
	const db = "it_retention"
	conn := openTest(t)
	schema := Schema{Database: db, Retention: 90 * day, BodyRetention: 7 * day}
	migrateFresh(t, conn, schema, 1)
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	starts := map[string]time.Time{
		"jan":    time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC), // its month is past the 90 days: dropped
		"march":  time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC), // past 90 days, but March is not wholly: kept, bodies emptied
		"may":    time.Date(2026, 5, 20, 9, 0, 0, 0, time.UTC), // within 90 days, past 7: bodies emptied
		"recent": time.Date(2026, 6, 14, 9, 0, 0, 0, time.UTC), // within both: untouched
	}
	w, stop := startWriter(t, conn, WriterOptions{Database: db, FlushInterval: 10 * time.Millisecond})
	for name, start := range starts {
		f := testFact(2) // texts for chunks, a body and a request body
		f.RequestID, f.Start = name, start
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	ctx := context.Background()
	roller := NewRoller(conn, schema, testLogger(t))
	for _, start := range starts {
		if err := roller.rollHour(ctx, start, now); err != nil {
			t.Fatal(err)
		}
		if err := roller.rollDay(ctx, start.Truncate(daily.length), now); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRetainer(conn, schema, testLogger(t))
	r.now = func() time.Time { return now }
	for round := 1; round <= 2; round++ {
		if err := r.Enforce(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	// The mutation runs in the background: wait for it.
	waitForLong(t, "the bodies past 7 days emptied", 30*time.Second, func() bool {
		return count(t, conn, "SELECT count() FROM "+db+".requests WHERE request_id IN ('march', 'may') AND "+holdsBodies) == 0
	})
	var ids []string
	rows, err := conn.Query(ctx, "SELECT request_id FROM "+db+".requests ORDER BY request_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if want := []string{"march", "may", "recent"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("rows left %v, want %v", ids, want)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests WHERE request_id = 'recent' AND request_body != '' AND notEmpty(response_chunks)"); got != 1 {
		t.Error("the recent row lost its bodies")
	}
	// The rollups' partitions go with the rows'.
	for _, r := range rollups {
		if got := count(t, conn, "SELECT count() FROM "+db+"."+r.name+" WHERE "+r.grain.column+" < toDateTime('2026-02-01 00:00:00', 'UTC')"); got != 0 {
			t.Errorf("%s: %d rows of January left, want none", r.name, got)
		}
		if got := count(t, conn, "SELECT count() FROM "+db+"."+r.name); r.rows == "" && got != 3 {
			t.Errorf("%s: %d rows left, want 3 (January's dropped)", r.name, got)
		}
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".requests_by_id"); got != 3 {
		t.Errorf("%d ids left in requests_by_id, want 3 (January's dropped)", got)
	}
}

// benchConn is the connection BenchmarkStorage fills and queries: the
// 18.16 test server, with room for statements that fill or roll up
// millions of rows.
func benchConn(b *testing.B) driver.Conn {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Open(ctx, Options{Addr: server.Addr(), DialTimeout: 2 * time.Second, ReadTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}
