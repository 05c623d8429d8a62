package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/llmtap/llmtap/collector"
)

// fakeConn stands in for ClickHouse: it keeps the request ids of the rows
// it was sent, and can be down (network errors) or refuse batches holding
// a poison id (server exceptions).
type fakeConn struct {
	driver.Conn // only PrepareBatch and Ping are used

	mu     sync.Mutex
	down   bool
	hang   bool          // inserts wait until their context ends
	gate   chan struct{} // when set, inserts wait until it is closed
	hung   int           // inserts that waited so
	poison string
	rows   []string
	sends  int // INSERTs that succeeded
}

func (c *fakeConn) setDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
}

func (c *fakeConn) stored() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rows)
}

func (c *fakeConn) PrepareBatch(ctx context.Context, query string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	c.mu.Lock()
	hang, gate := c.hang, c.gate
	if hang || gate != nil {
		c.hung++
	}
	c.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, fmt.Errorf("read: %w", ctx.Err())
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, fmt.Errorf("read: %w", ctx.Err())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")
	}
	return &fakeBatch{conn: c}, nil
}

func (c *fakeConn) Ping(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")
	}
	return nil
}

type fakeBatch struct {
	driver.Batch
	conn *fakeConn
	ids  []string
}

func (b *fakeBatch) Append(v ...any) error {
	if len(v) != len(columns) {
		return fmt.Errorf("expected %d arguments, got %d", len(columns), len(v))
	}
	b.ids = append(b.ids, v[0].(string))
	return nil
}

func (b *fakeBatch) Send() error {
	c := b.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errors.New("write tcp: broken pipe")
	}
	if c.poison != "" && slices.Contains(b.ids, c.poison) {
		return &proto.Exception{Code: 53, Message: "Type mismatch"}
	}
	c.rows = append(c.rows, b.ids...)
	c.sends++
	return nil
}

func (b *fakeBatch) Close() error { return nil }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// startWriter runs a writer until the test ends (or stop is called).
func startWriter(t *testing.T, conn driver.Conn, o WriterOptions) (w *Writer, stop func()) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	w = NewWriter(conn, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second): // WriteTimeout (10s) and some
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func enqueue(t *testing.T, w *Writer, from, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := from; i < from+n; i++ {
		f := testFact(i)
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatalf("Enqueue %d: %v", i, err)
		}
		ids = append(ids, f.RequestID)
	}
	return ids
}

func TestWriterFlushesBySize(t *testing.T) {
	conn := &fakeConn{}
	w, stop := startWriter(t, conn, WriterOptions{BatchSize: 10, FlushInterval: time.Hour})
	ids := enqueue(t, w, 0, 25)
	waitFor(t, "two full batches", func() bool { return w.Stats().Written == 20 })
	time.Sleep(20 * time.Millisecond)
	if st := w.Stats(); st.Written != 20 || st.Queued != 5 {
		t.Fatalf("the partial batch was flushed early: %+v", st)
	}
	stop() // drains the rest
	if got := conn.stored(); !slices.Equal(got, ids) {
		t.Errorf("stored %v, want %v", got, ids)
	}
	if st := w.Stats(); st.Written != 25 || st.Queued != 0 || st.WriteErrors != 0 {
		t.Errorf("stats after drain: %+v", st)
	}
}

func TestWriterFlushesByBytes(t *testing.T) {
	conn := &fakeConn{}
	in := facts(0, 3)
	var size int64
	for _, f := range in {
		f.RequestBody = strings.Repeat("x", 1024)
		size += factSize(f)
	}
	w, _ := startWriter(t, conn, WriterOptions{BatchSize: 1000, BatchBytes: size, FlushInterval: time.Hour})
	for i, f := range in {
		if err := w.Enqueue(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			time.Sleep(10 * time.Millisecond)
			if n := len(conn.stored()); n != 0 {
				t.Fatalf("flushed after %d facts, under BatchBytes", i+1)
			}
		}
	}
	waitFor(t, "a flush by bytes", func() bool { return len(conn.stored()) == 3 })
}

func TestWriterFlushesByInterval(t *testing.T) {
	conn := &fakeConn{}
	w, _ := startWriter(t, conn, WriterOptions{BatchSize: 1000, FlushInterval: 20 * time.Millisecond})
	enqueue(t, w, 0, 3)
	waitFor(t, "the interval flush", func() bool { return len(conn.stored()) == 3 })
}

func TestEnqueueNeverBlocks(t *testing.T) {
	w := NewWriter(&fakeConn{}, WriterOptions{QueueSize: 5}) // not running
	enqueue(t, w, 0, 5)
	start := time.Now()
	if err := w.Enqueue(context.Background(), testFact(5)); !errors.Is(err, ErrQueueFull) || !errors.Is(err, collector.ErrQueueFull) {
		t.Fatalf("Enqueue on a full queue: %v, want ErrQueueFull", err)
	}
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Errorf("Enqueue on a full queue took %s", d)
	}
	if st := w.Stats(); st.Queued != 5 || st.Rejected != 1 {
		t.Errorf("stats: %+v", st)
	}
	if err := w.Enqueue(context.Background(), nil); err == nil {
		t.Error("Enqueue(nil) accepted")
	}
}

// TestEnqueueBoundedInBytes: the queue refuses a fact that would take it
// past QueueBytes, whatever its count, and takes again once what it held
// is written.
func TestEnqueueBoundedInBytes(t *testing.T) {
	big := func(i int) *collector.Fact {
		f := testFact(i)
		f.ResponseBody = strings.Repeat("x", 100<<10)
		return f
	}
	limit := factSize(big(0)) + factSize(big(1)) + factSize(big(2))
	conn := &fakeConn{}
	w := NewWriter(conn, WriterOptions{QueueSize: 100, QueueBytes: limit, BatchSize: 1, Logger: testLogger(t)})
	for i := 0; i < 3; i++ {
		if err := w.Enqueue(context.Background(), big(i)); err != nil {
			t.Fatalf("fact %d within the bytes: %v", i, err)
		}
	}
	if err := w.Enqueue(context.Background(), big(3)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("a fact past QueueBytes: %v, want ErrQueueFull", err)
	}
	if st := w.Stats(); st.Queued != 3 || st.QueuedBytes != limit || st.Rejected != 1 {
		t.Fatalf("stats: %+v, want 3 queued holding %d bytes, 1 rejected", st, limit)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the queue written", func() bool { st := w.Stats(); return st.Written == 3 && st.QueuedBytes == 0 })
	if err := w.Enqueue(context.Background(), big(4)); err != nil {
		t.Fatalf("after the queue was written: %v", err)
	}
}

// TestEnqueueSpillsPastTheBound: while ClickHouse is slow, a batch the
// queue has no room for goes to the spool whole, and is replayed once
// ClickHouse catches up; only when the spool cannot take it either is it
// refused (and then none of it is taken).
func TestEnqueueSpillsPastTheBound(t *testing.T) {
	batch := func(from, n, body int) ([]*collector.Fact, []string) {
		var facts []*collector.Fact
		var ids []string
		for i := from; i < from+n; i++ {
			f := testFact(i)
			f.ResponseBody = strings.Repeat("x", body)
			facts = append(facts, f)
			ids = append(ids, f.RequestID)
		}
		return facts, ids
	}
	inMemory, want := batch(0, 3, 0)
	var limit int64
	for _, f := range inMemory {
		limit += factSize(f)
	}
	conn := &fakeConn{gate: make(chan struct{})}
	w, _ := startWriter(t, conn, WriterOptions{
		QueueBytes: limit, BatchSize: 100, FlushInterval: 5 * time.Millisecond,
		SpoolDir: t.TempDir(), SpoolMaxBytes: 64 << 10, WriteTimeout: time.Minute,
	})
	if err := w.Enqueue(context.Background(), inMemory...); err != nil {
		t.Fatalf("a batch within the bound: %v", err)
	}
	waitFor(t, "the insert to hang", func() bool { conn.mu.Lock(); defer conn.mu.Unlock(); return conn.hung == 1 })

	spilled, ids := batch(3, 2, 0)
	want = append(want, ids...)
	if err := w.Enqueue(context.Background(), spilled...); err != nil {
		t.Fatalf("a batch past the bound, with room in the spool: %v", err)
	}
	if st := w.Stats(); st.Spilled != 2 || st.SpooledBatches != 1 || st.QueuedBytes != limit || st.Rejected != 0 {
		t.Fatalf("after the spill: %+v, want 2 spilled in 1 spool file, %d bytes queued", st, limit)
	}
	tooBig, _ := batch(5, 1, 100<<10)
	if err := w.Enqueue(context.Background(), tooBig...); !errors.Is(err, collector.ErrQueueFull) {
		t.Fatalf("a batch neither the queue nor the spool can take: %v, want ErrQueueFull", err)
	}
	if st := w.Stats(); st.Spilled != 2 || st.SpooledBatches != 1 || st.Rejected != 1 {
		t.Fatalf("after the refusal: %+v", st)
	}

	close(conn.gate) // ClickHouse catches up
	waitFor(t, "the queue written and the spool replayed", func() bool {
		st := w.Stats()
		return st.Written == 3 && st.Replayed == 2 && st.SpooledBatches == 0
	})
	if got := conn.stored(); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// TestEnqueueWaitsForRoom: a batch past the bound waits up to QueueWait
// for a written batch to make room, and goes to the spool only when the
// wait ends (or its context does) first.
func TestEnqueueWaitsForRoom(t *testing.T) {
	for _, tt := range []struct {
		name    string
		wait    time.Duration
		ctx     func() context.Context
		spilled uint64
	}{
		{"room made within the wait", time.Hour, context.Background, 0},
		{"the wait ends first", 10 * time.Millisecond, context.Background, 2},
		{"the request ends first", time.Hour, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := []*collector.Fact{testFact(0), testFact(1), testFact(2)}
			var limit int64
			for _, f := range first {
				limit += factSize(f)
			}
			conn := &fakeConn{gate: make(chan struct{})}
			w, _ := startWriter(t, conn, WriterOptions{
				QueueBytes: limit, QueueWait: tt.wait, BatchSize: 100, FlushInterval: 5 * time.Millisecond,
				SpoolDir: t.TempDir(), WriteTimeout: time.Minute,
			})
			if err := w.Enqueue(context.Background(), first...); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the insert to hang", func() bool { conn.mu.Lock(); defer conn.mu.Unlock(); return conn.hung == 1 })
			done := make(chan error, 1)
			go func() { done <- w.Enqueue(tt.ctx(), testFact(3), testFact(4)) }()
			if tt.spilled > 0 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			close(conn.gate) // ClickHouse catches up: room
			if tt.spilled == 0 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "every fact stored", func() bool { st := w.Stats(); return st.Written+st.Replayed == 5 })
			if st := w.Stats(); st.Spilled != tt.spilled || st.Rejected != 0 {
				t.Errorf("stats %+v, want %d spilled", st, tt.spilled)
			}
		})
	}
}

func TestWriterSpoolsWhileDownAndReplays(t *testing.T) {
	conn := &fakeConn{down: true}
	dir := t.TempDir()
	w, _ := startWriter(t, conn, WriterOptions{
		BatchSize: 10, FlushInterval: 10 * time.Millisecond, SpoolDir: dir,
		Retries: 2, RetryBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	})
	ids := enqueue(t, w, 0, 50)
	waitFor(t, "every batch spooled", func() bool { st := w.Stats(); return st.Queued == 0 && st.SpooledBatches > 0 })
	st := w.Stats()
	if st.WriteErrors < 3 || st.Written != 0 || st.SpooledBytes <= 0 || st.SpoolDropped != 0 {
		t.Fatalf("while down: %+v (want ≥3 write errors: one try and two retries)", st)
	}

	conn.setDown(false)
	waitFor(t, "the spool to empty", func() bool { return w.Stats().SpooledBatches == 0 })
	if got := conn.stored(); !slices.Equal(got, ids) {
		t.Errorf("replayed %v,\nwant oldest first %v", got, ids)
	}
	if st := w.Stats(); st.Replayed != 50 || st.SpooledBytes != 0 || st.Written != 0 {
		t.Errorf("after replay: %+v", st)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("spool files left: %v", entries)
	}
	// Back to normal writing.
	more := enqueue(t, w, 50, 10)
	waitFor(t, "a normal write", func() bool { return w.Stats().Written == 10 })
	if got := conn.stored(); !slices.Equal(got[50:], more) {
		t.Errorf("after recovery stored %v", got[50:])
	}
}

func TestWriterDrainsToSpoolWhenDown(t *testing.T) {
	conn := &fakeConn{down: true}
	dir := t.TempDir()
	w, stop := startWriter(t, conn, WriterOptions{BatchSize: 100, FlushInterval: time.Hour, SpoolDir: dir})
	ids := enqueue(t, w, 0, 30)
	stop()
	if err := w.Enqueue(context.Background(), testFact(99)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Run returned: %v, want ErrClosed", err)
	}
	st := w.Stats()
	if st.Queued != 0 || st.SpooledBatches != 1 || st.SpoolDropped != 0 {
		t.Fatalf("after drain: %+v", st)
	}
	s := mustOpenSpool(t, dir, 1<<30)
	got, err := s.read(first(s))
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, f := range got {
		gotIDs = append(gotIDs, f.RequestID)
	}
	if !slices.Equal(gotIDs, ids) {
		t.Errorf("spooled %v, want %v", gotIDs, ids)
	}
}

func TestWriterReplaysEarlierRunsSpool(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	var ids []string
	for b := range 3 {
		batch := facts(b*4, 4)
		if _, _, err := s.write(batch); err != nil {
			t.Fatal(err)
		}
		for _, f := range batch {
			ids = append(ids, f.RequestID)
		}
	}
	conn := &fakeConn{}
	w, _ := startWriter(t, conn, WriterOptions{FlushInterval: 10 * time.Millisecond, SpoolDir: dir})
	if st := w.Stats(); st.SpooledBatches != 0 && st.SpooledBatches != 3 {
		t.Errorf("spool gauge at start: %d", st.SpooledBatches)
	}
	waitFor(t, "the old spool to replay", func() bool { return w.Stats().Replayed == 12 })
	if got := conn.stored(); !slices.Equal(got, ids) {
		t.Errorf("replayed %v, want %v", got, ids)
	}
}

func TestWriterRefusedSpoolFileDoesNotBlockWrites(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	poisoned := facts(1000, 3)
	if _, _, err := s.write(poisoned); err != nil {
		t.Fatal(err)
	}
	conn := &fakeConn{poison: poisoned[1].RequestID}
	w, _ := startWriter(t, conn, WriterOptions{
		BatchSize: 5, FlushInterval: 10 * time.Millisecond, SpoolDir: dir,
		RetryBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	})
	waitFor(t, "a refused replay", func() bool { return w.Stats().WriteErrors > 0 })
	ids := enqueue(t, w, 0, 20)
	waitFor(t, "new batches written", func() bool { return w.Stats().Written == 20 })
	if got := conn.stored(); !slices.Equal(got, ids) {
		t.Errorf("stored %v", got)
	}
	// The refused file waits in the spool, or was set aside by now.
	if st := w.Stats(); st.SpooledBatches+int64(st.SetAside/3) != 1 || st.Replayed != 0 || st.SpoolDropped != 0 {
		t.Errorf("the refused file should wait in the spool or be set aside: %+v", st)
	}
}

func TestWriterReplayGroupsFiles(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	var ids []string
	for b := range 10 {
		batch := facts(b*3, 3)
		if _, _, err := s.write(batch); err != nil {
			t.Fatal(err)
		}
		for _, f := range batch {
			ids = append(ids, f.RequestID)
		}
	}
	conn := &fakeConn{}
	w, _ := startWriter(t, conn, WriterOptions{BatchSize: 12, FlushInterval: 10 * time.Millisecond, SpoolDir: dir})
	waitFor(t, "the spool to replay", func() bool { return w.Stats().Replayed == 30 })
	if got := conn.stored(); !slices.Equal(got, ids) {
		t.Errorf("replayed %v, want %v", got, ids)
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if conn.sends != 3 { // 4+4+2 files of 3 rows under BatchSize 12
		t.Errorf("%d INSERTs for 10 files, want 3", conn.sends)
	}
}

func TestWriterIsolatesRefusedFile(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	for b := range 3 {
		if _, _, err := s.write(facts(b*3, 3)); err != nil {
			t.Fatal(err)
		}
	}
	conn := &fakeConn{poison: testFact(4).RequestID} // in the second file
	w, _ := startWriter(t, conn, WriterOptions{FlushInterval: 10 * time.Millisecond, SpoolDir: dir, RetryBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	// The first file replays; the second is refused maxRefusals times in
	// a row, then set aside, and the third replays after it.
	waitFor(t, "the refused file set aside and the last replayed", func() bool {
		st := w.Stats()
		return st.Replayed == 6 && st.SetAside == 3 && st.SpooledBatches == 0
	})
	if st := w.Stats(); st.SpoolDropped != 0 || st.WriteErrors < maxRefusals {
		t.Errorf("%+v: want nothing dropped, %d refusals at least", st, maxRefusals)
	}
	refused, err := filepath.Glob(filepath.Join(dir, "*"+spoolRefusedExt))
	if err != nil || len(refused) != 1 {
		t.Fatalf("files set aside: %v, %v; want the refused one, kept for a person", refused, err)
	}
	// A restart does not take it up again.
	if again := mustOpenSpool(t, dir, 1<<30); !again.empty() {
		t.Errorf("a reopened spool replays the refused file: %v", again.names())
	}
}

func TestWriterCountsWhatItDrops(t *testing.T) {
	tests := []struct {
		desc string
		opts WriterOptions
	}{
		{desc: "spool full", opts: WriterOptions{SpoolMaxBytes: 10}},
		{desc: "no spool", opts: WriterOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			o := tt.opts
			o.BatchSize, o.FlushInterval, o.Retries = 10, time.Hour, -1
			if o.SpoolMaxBytes > 0 {
				o.SpoolDir = t.TempDir()
			}
			w, stop := startWriter(t, &fakeConn{down: true}, o)
			enqueue(t, w, 0, 25)
			stop()
			if st := w.Stats(); st.SpoolDropped != 25 || st.Queued != 0 || st.SpooledBatches != 0 {
				t.Errorf("%+v: want all 25 counted as dropped", st)
			}
		})
	}
}

func TestWriterRunTwice(t *testing.T) {
	w, _ := startWriter(t, &fakeConn{}, WriterOptions{})
	waitFor(t, "Run to start", func() bool { return w.running.Load() })
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run returned nil")
	}
}

func TestWriterBadSpoolDir(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(&fakeConn{}, WriterOptions{SpoolDir: file + "/spool"})
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("Run with an unusable spool folder returned nil")
	}
	if err := w.Enqueue(context.Background(), testFact(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after a failed Run: %v, want ErrClosed", err)
	}
}

// TestWriterReportsLostFacts: without a spool, a batch ClickHouse refuses
// is lost, counted, and each fact is reported to Lost.
func TestWriterReportsLostFacts(t *testing.T) {
	conn := &fakeConn{down: true}
	var mu sync.Mutex
	var lost []string
	w, stop := startWriter(t, conn, WriterOptions{
		BatchSize: 4, FlushInterval: time.Hour, Retries: -1,
		Lost: func(f *collector.Fact) {
			mu.Lock()
			lost = append(lost, f.RequestID)
			mu.Unlock()
		},
	})
	ids := enqueue(t, w, 0, 4)
	waitFor(t, "the batch dropped", func() bool { return w.Stats().SpoolDropped == 4 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(lost, ids) {
		t.Errorf("lost %v, want %v", lost, ids)
	}
}

// runWriter runs a writer whose only stop is the test's Shutdown.
func runWriter(t *testing.T, conn driver.Conn, o WriterOptions) (*Writer, chan error) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	w := NewWriter(conn, o)
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	waitFor(t, "Run to start", func() bool { return w.running.Load() })
	return w, done
}

// spooledIDs reads the request ids of every batch in a spool folder.
func spooledIDs(t *testing.T, dir string) []string {
	t.Helper()
	s := mustOpenSpool(t, dir, 1<<30)
	var ids []string
	for _, name := range s.names() {
		fs, err := s.read(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			ids = append(ids, f.RequestID)
		}
	}
	return ids
}

func TestWriterShutdown(t *testing.T) {
	tests := []struct {
		desc      string
		conn      *fakeConn
		timeout   time.Duration
		wantWrite bool          // else spooled
		within    time.Duration // Shutdown returns within
	}{
		{desc: "ClickHouse up: queue written", conn: &fakeConn{}, timeout: 5 * time.Second, wantWrite: true, within: time.Second},
		{desc: "ClickHouse down: queue spooled", conn: &fakeConn{down: true}, timeout: 5 * time.Second, within: time.Second},
		// Inserts give up at three quarters of the 400ms; the rest is
		// for the spool.
		{desc: "ClickHouse hangs: spooled before the deadline", conn: &fakeConn{hang: true}, timeout: 400 * time.Millisecond, within: 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			w, done := runWriter(t, tt.conn, WriterOptions{BatchSize: 10, FlushInterval: time.Hour, SpoolDir: dir})
			ids := enqueue(t, w, 0, 25) // two full batches in flight or written, five waiting
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			start := time.Now()
			if err := w.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if took := time.Since(start); took > tt.within {
				t.Errorf("Shutdown took %s, want at most %s", took, tt.within)
			}
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := w.Enqueue(context.Background(), testFact(99)); !errors.Is(err, ErrClosed) {
				t.Errorf("Enqueue after Shutdown: %v, want ErrClosed", err)
			}
			got := append(tt.conn.stored(), spooledIDs(t, dir)...)
			slices.Sort(got)
			if !slices.Equal(got, ids) {
				t.Errorf("written and spooled %v, want %v", got, ids)
			}
			st := w.Stats()
			if st.Queued != 0 || st.SpoolDropped != 0 {
				t.Errorf("after Shutdown: %+v", st)
			}
			if tt.wantWrite && st.SpooledBatches != 0 {
				t.Errorf("ClickHouse up, yet %d batches spooled", st.SpooledBatches)
			}
			if !tt.wantWrite && len(tt.conn.stored()) != 0 {
				t.Errorf("wrote %v to a ClickHouse that was down", tt.conn.stored())
			}
			if err := w.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}
		})
	}
}

// TestWriterShutdownCutsARunningInsert: an insert that hangs when
// Shutdown is called is cut off as the deadline nears, and its batch
// spooled with the rest.
func TestWriterShutdownCutsARunningInsert(t *testing.T) {
	conn := &fakeConn{hang: true}
	dir := t.TempDir()
	w, done := runWriter(t, conn, WriterOptions{BatchSize: 10, FlushInterval: time.Hour, SpoolDir: dir, WriteTimeout: time.Hour})
	ids := enqueue(t, w, 0, 10)
	waitFor(t, "the insert to hang", func() bool { conn.mu.Lock(); defer conn.mu.Unlock(); return conn.hung == 1 })
	ids = append(ids, enqueue(t, w, 10, 5)...)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := w.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 400*time.Millisecond {
		t.Errorf("Shutdown took %s, want about 300ms (three quarters of the deadline)", took)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := spooledIDs(t, dir); !slices.Equal(got, ids) {
		t.Errorf("spooled %v, want %v", got, ids)
	}
}

// TestWriterShutdownReportsLosses: a drain that had to drop facts (no
// spool, ClickHouse down) says so.
func TestWriterShutdownReportsLosses(t *testing.T) {
	w, _ := runWriter(t, &fakeConn{down: true}, WriterOptions{BatchSize: 10, FlushInterval: time.Hour})
	enqueue(t, w, 0, 5)
	err := w.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "writer drain lost 5 facts") {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestWriterShutdownCutShort: a drain that cannot finish in time is
// reported, with the facts left.
func TestWriterShutdownCutShort(t *testing.T) {
	conn := &fakeConn{hang: true}
	w, done := runWriter(t, conn, WriterOptions{BatchSize: 10, FlushInterval: time.Hour, WriteTimeout: 300 * time.Millisecond})
	enqueue(t, w, 0, 5)
	// No deadline, only a cancellation: the insert is not cut early.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := w.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "5 facts neither written nor spooled") {
		t.Errorf("Shutdown cut short: %v", err)
	}
	select {
	case err := <-done: // the insert timed out; without a spool the facts are dropped
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its insert timed out")
	}
	if st := w.Stats(); st.SpoolDropped != 5 {
		t.Errorf("after the cut drain: %+v", st)
	}
}
