package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/llmtap/llmtap/collector"
)

// Errors of Enqueue.
var (
	// ErrQueueFull: neither the write queue nor the spool can take the
	// facts; none was taken. It wraps collector.ErrQueueFull, which the
	// HTTP layer answers with 503 so that the sender retries later.
	ErrQueueFull = fmt.Errorf("clickhouse: %w", collector.ErrQueueFull)
	// ErrClosed: the writer has shut down; the fact was not taken.
	ErrClosed = errors.New("clickhouse: writer closed")
)

// WriterOptions configure a Writer; zero values take the defaults named.
type WriterOptions struct {
	Database string // DefaultDatabase when empty
	// Cluster is Schema.Cluster. With a cluster, rows go through the
	// Distributed table requests, which routes each to its shard (by
	// request id), rather than straight into requests_local: the writer
	// needs to know neither the shards nor their health. Each insert
	// carries insert_distributed_sync=1: it returns once every shard it
	// touched has stored its rows (one replica each; replication does the
	// rest), so an error means a retry or the spool, as on a single
	// server. Without it, the server the collector talks to would answer
	// as soon as it queued the rows on its own disk for background
	// sending: faster, but a row acknowledged that way is lost with that
	// disk, and a shard that stays down piles up rows there unseen by the
	// writer's retries, spool and metrics.
	Cluster string
	// A batch is flushed at BatchSize rows (default 5000) or BatchBytes
	// of captured bodies (default 32 MiB), whichever comes first. Each
	// INSERT writes a part, which cost 18.16 a fixed ~0.1 s for this table
	// on the test machine: rows per INSERT set the throughput, bodies the
	// memory.
	BatchSize     int
	BatchBytes    int64
	FlushInterval time.Duration // longest a fact waits for its batch (default 1s)
	QueueSize     int           // facts accepted but not yet written (default 10000)
	// QueueBytes bounds what those facts hold (bodies and chunks, as
	// factSize counts them; default 256 MiB), so that an acknowledged
	// backlog cannot outgrow the memory the collector is given. Past it,
	// or past QueueSize, Enqueue spills the batch to the spool, and
	// answers ErrQueueFull only when the spool cannot take it either.
	QueueBytes int64
	// QueueWait is how long Enqueue waits for room in the queue before it
	// spills a batch (default 0: at once). While ClickHouse keeps up, a
	// short wait slows the senders down instead of writing their batches
	// to disk and reading them back, which costs more than storing them.
	QueueWait time.Duration
	// SpoolDir keeps batches ClickHouse did not take, to replay later.
	// Empty disables the spool: such batches are dropped and counted in
	// SpoolDropped, so set it in production.
	SpoolDir      string
	SpoolMaxBytes int64 // default 1 GiB
	Logger        *slog.Logger
	// Prepare, when set, must succeed once before the first insert or
	// replay (the migrations, when the collector started while ClickHouse
	// was down). Until it does, the writer is down: batches go to the
	// spool and Prepare is tried again with each probe.
	Prepare func(ctx context.Context) error
	// Lost, when set, is told of every acknowledged fact that could be
	// neither written nor spooled (the storage_error class).
	Lost func(f *collector.Fact)

	// Retries is how often a failed insert is tried again before its
	// batch goes to the spool (default 2; negative for none).
	// RetryBackoff is the first pause, doubled after each try (default
	// 200ms). MaxBackoff caps the pause between probes of a ClickHouse
	// that is down and between replays of a spool file it refuses
	// (default 30s). WriteTimeout bounds one insert attempt (default 10s);
	// no retry starts after it, so a batch is written or spooled within
	// about twice that.
	Retries      int
	RetryBackoff time.Duration
	MaxBackoff   time.Duration
	WriteTimeout time.Duration
}

func (o WriterOptions) withDefaults() WriterOptions {
	o.Database = databaseOr(o.Database)
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 32 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 256 << 20
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = 1 << 30
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 2
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return o
}

// Stats are the writer's counters (since start) and gauges (now).
type Stats struct {
	Queued         int64  // gauge: facts acknowledged, not yet written, spooled or dropped
	QueuedBytes    int64  // gauge: what they hold, as QueueBytes counts it
	Written        uint64 // rows inserted from the queue
	WriteErrors    uint64 // failed insert attempts (queue and replay)
	Rejected       uint64 // facts Enqueue refused with ErrQueueFull
	Spilled        uint64 // facts Enqueue wrote to the spool: the queue was full
	SpooledBatches int64  // gauge: batch files waiting in the spool
	SpooledBytes   int64  // gauge: their bytes
	SpoolDropped   uint64 // acknowledged facts lost: spool full, disabled or unwritable
	SpoolErrors    uint64 // spool files that could not be written, read or removed
	Replayed       uint64 // rows inserted from the spool
	SetAside       uint64 // rows of spool files ClickHouse kept refusing, set aside as .refused
}

// Writer batches facts into ClickHouse. Enqueue never blocks; Run owns the
// only goroutine that inserts, spools and replays. A fact Enqueue took is
// written, or spooled and replayed later, or, only when the spool is full
// or fails, dropped and counted in SpoolDropped.
type Writer struct {
	conn      driver.Conn
	opts      WriterOptions
	log       *slog.Logger
	insertSQL string
	queue     chan *collector.Fact

	mu     sync.RWMutex // guards closed against Enqueue's send
	closed bool
	// room is closed (and replaced) each time a batch leaves the queue,
	// waking the Enqueue calls waiting for room.
	roomMu  sync.Mutex
	room    chan struct{}
	running atomic.Bool

	// Shutdown closes stopping once; Run closes done when it returns.
	// insertsOver ends when the shutdown deadline nears: inserts still
	// running are cut and no new one starts.
	stopOnce    sync.Once
	stopping    chan struct{}
	done        chan struct{}
	insertsOver context.Context
	endInserts  context.CancelFunc
	drainLost   uint64 // facts the drain could neither write nor spool; read after done

	spool *spool // nil when disabled; set by Run

	// Run's goroutine only.
	down       bool      // the last attempt failed: spool without trying
	nextProbe  time.Time // when a down ClickHouse is tried again
	probeWait  time.Duration
	replayAt   time.Time // when a refused spool file is tried again
	replayWait time.Duration
	replayOne  bool // replay file by file: the server refused a group
	prepared   bool // Prepare succeeded (or there is none)
	// The file the server refused last, and how often in a row: past
	// maxRefusals it is set aside and the replay goes on.
	refusedName  string
	refusedTries int

	queued       atomic.Int64
	queuedBytes  atomic.Int64 // factSize of the queued facts and the batch being written
	written      atomic.Uint64
	writeErrors  atomic.Uint64
	rejected     atomic.Uint64
	spilled      atomic.Uint64
	spoolDropped atomic.Uint64
	spoolErrors  atomic.Uint64
	replayed     atomic.Uint64
	setAside     atomic.Uint64
}

// maxRefusals is how often in a row ClickHouse may refuse one spool file
// (a data exception, not an outage) before it is set aside as .refused:
// a file it will never take must not hold back every file after it.
const maxRefusals = 5

// NewWriter returns a Writer on conn; call Run to start it.
func NewWriter(conn driver.Conn, opts WriterOptions) *Writer {
	o := opts.withDefaults()
	insertsOver, endInserts := context.WithCancel(context.Background())
	return &Writer{
		conn:        conn,
		opts:        o,
		log:         o.Logger.With("component", "clickhouse.writer", "database", o.Database),
		insertSQL:   "INSERT INTO " + o.Database + "." + requestsTable + " (" + columnList() + ")",
		queue:       make(chan *collector.Fact, o.QueueSize),
		room:        make(chan struct{}),
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
		insertsOver: insertsOver,
		endInserts:  endInserts,
	}
}

// Enqueue takes the facts of one ingest batch, all or none, without
// waiting on ClickHouse longer than QueueWait: into the in-memory queue
// when they fit in QueueSize and QueueBytes (waiting up to QueueWait, or
// until ctx ends, for a written batch to make room), else straight to the
// spool as one file, written and fsync'd before it returns (counted in
// Spilled), so that an acknowledged backlog never outgrows the memory the
// collector is given. It returns ErrQueueFull when neither can take them
// (the spool full, failing or disabled) and ErrClosed after Run returned;
// then no fact was taken. The writer owns the facts afterwards: do not
// change them.
func (w *Writer) Enqueue(ctx context.Context, facts ...*collector.Fact) error {
	var size int64
	for _, f := range facts {
		if f == nil {
			return errors.New("clickhouse: nil fact")
		}
		size += factSize(f)
	}
	var timeout <-chan time.Time
	for {
		// Taken before the try: room made between the try and the wait
		// closes this channel, so it is not missed.
		room := w.roomSignal()
		if queued, err := w.tryQueue(facts, size); queued || err != nil {
			return err
		}
		if timeout == nil {
			if w.opts.QueueWait <= 0 {
				break
			}
			t := time.NewTimer(w.opts.QueueWait)
			defer t.Stop()
			timeout = t.C
		}
		stop := false
		select {
		case <-room:
		case <-timeout:
			stop = true
		case <-ctx.Done():
			stop = true
		case <-w.stopping:
			stop = true
		}
		if stop {
			break
		}
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	return w.spill(facts)
}

// tryQueue puts the facts in the queue if they all fit, reporting whether
// they did.
func (w *Writer) tryQueue(facts []*collector.Fact, size int64) (bool, error) {
	n := int64(len(facts))
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false, ErrClosed
	}
	// Room is reserved before the sends, so they never block: queued
	// counts what the channel holds and more (the batch being written).
	if w.queuedBytes.Add(size) <= w.opts.QueueBytes {
		if w.queued.Add(n) <= int64(w.opts.QueueSize) {
			for _, f := range facts {
				w.queue <- f
			}
			return true, nil
		}
		w.queued.Add(-n)
	}
	w.queuedBytes.Add(-size)
	return false, nil
}

// roomSignal returns the channel closed when the queue next has room.
func (w *Writer) roomSignal() <-chan struct{} {
	w.roomMu.Lock()
	defer w.roomMu.Unlock()
	return w.room
}

// release gives back the room of a batch that left the queue (written or
// spooled) and wakes the batches waiting for it.
func (w *Writer) release(n int, size int64) {
	w.queuedBytes.Add(-size)
	w.queued.Add(-int64(n))
	w.roomMu.Lock()
	close(w.room)
	w.room = make(chan struct{})
	w.roomMu.Unlock()
}

// spill writes a batch the queue has no room for to the spool. The caller
// holds w.mu (read): w.spool is set.
func (w *Writer) spill(facts []*collector.Fact) error {
	if w.spool == nil {
		w.rejected.Add(uint64(len(facts)))
		return fmt.Errorf("%w (and there is no spool to spill to)", ErrQueueFull)
	}
	name, size, err := w.spool.write(facts)
	if err != nil {
		w.rejected.Add(uint64(len(facts)))
		if !errors.Is(err, errSpoolFull) {
			w.spoolErrors.Add(1)
			w.log.Error("cannot spill a batch to the spool; answering 503", "rows", len(facts), "err", err)
		}
		return fmt.Errorf("%w: %w", ErrQueueFull, err)
	}
	w.spilled.Add(uint64(len(facts)))
	w.log.Debug("queue full; batch spilled to the spool", "rows", len(facts), "file", name, "bytes", size)
	return nil
}

// Stats reads the counters; safe from any goroutine.
func (w *Writer) Stats() Stats {
	st := Stats{
		Queued:       w.queued.Load(),
		QueuedBytes:  w.queuedBytes.Load(),
		Written:      w.written.Load(),
		WriteErrors:  w.writeErrors.Load(),
		Rejected:     w.rejected.Load(),
		Spilled:      w.spilled.Load(),
		SpoolDropped: w.spoolDropped.Load(),
		SpoolErrors:  w.spoolErrors.Load(),
		Replayed:     w.replayed.Load(),
		SetAside:     w.setAside.Load(),
	}
	if sp := w.loadSpool(); sp != nil {
		st.SpooledBatches = sp.count.Load()
		st.SpooledBytes = sp.bytes.Load()
	}
	return st
}

func (w *Writer) loadSpool() *spool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.spool
}

// Run writes batches until Shutdown is called or ctx is done, then stops
// taking facts, writes what is queued (to the spool if ClickHouse is down)
// and returns nil.
// A batch is flushed when it reaches BatchSize facts or BatchBytes, or
// when FlushInterval passed. An insert that fails is tried Retries more
// times with backoff, then its batch goes to the spool; while ClickHouse
// stays down batches go straight to the spool and the server is probed
// with growing pauses. Spooled batches are replayed, oldest first and
// several files per INSERT, once it answers. Run returns an error only if
// it cannot start (bad database or cluster name, unusable spool folder):
// start it before taking traffic.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("clickhouse: Writer.Run called twice")
	}
	defer close(w.done)
	for _, err := range []error{validDatabase(w.opts.Database), validCluster(w.opts.Cluster)} {
		if err != nil {
			w.close()
			return err
		}
	}
	if w.opts.SpoolDir == "" {
		w.log.Warn("no spool folder: batches ClickHouse refuses will be dropped")
	} else {
		sp, err := openSpool(w.opts.SpoolDir, w.opts.SpoolMaxBytes)
		if err != nil {
			w.close()
			return fmt.Errorf("clickhouse: writer: %w", err)
		}
		w.mu.Lock()
		w.spool = sp
		w.mu.Unlock()
		if !sp.empty() {
			w.log.Info("spool has batches from an earlier run; replaying when ClickHouse answers",
				"batches", sp.count.Load(), "bytes", sp.bytes.Load(), "dir", sp.dir)
		}
	}

	ticker := time.NewTicker(w.opts.FlushInterval)
	defer ticker.Stop()
	var (
		batch []*collector.Fact
		size  int64
	)
	for {
		select {
		case <-ctx.Done():
			w.drain(ctx, batch)
			return nil
		case <-w.stopping:
			w.drain(ctx, batch)
			return nil
		case f := <-w.queue:
			batch = append(batch, f)
			if size += factSize(f); len(batch) >= w.opts.BatchSize || size >= w.opts.BatchBytes {
				w.flush(ctx, batch, w.opts.Retries)
				batch, size = nil, 0
			}
		case <-ticker.C:
			if len(batch) > 0 {
				w.flush(ctx, batch, w.opts.Retries)
				batch, size = nil, 0
			}
			w.replay(ctx)
		}
	}
}

// factSize approximates a fact's bytes: its bodies and chunks plus the
// fixed part.
func factSize(f *collector.Fact) int64 {
	n := 512 + len(f.RequestBody) + len(f.ResponseBody) + 8*len(f.ChunkOffsetUs)
	for _, c := range f.Chunks {
		n += len(c)
	}
	return int64(n)
}

func (w *Writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// Shutdown stops the writer, as http.Server.Shutdown stops a server:
// Enqueue refuses facts from now on (ErrClosed), what is queued or waiting
// in the batch being filled is written to ClickHouse, one try per batch,
// or spooled, and Shutdown returns once Run has returned. When ctx has a
// deadline, inserts end when a quarter of the time left remains (one
// already running is cut off, and spooled), and the batches left then go
// straight to the spool: a ClickHouse that hangs cannot make the drain
// lose facts it could have spooled. When ctx ends before Run returned,
// Shutdown returns an error that counts the facts neither written nor
// spooled yet. Call it after Run has started.
func (w *Writer) Shutdown(ctx context.Context) error {
	w.stopOnce.Do(func() {
		if d, ok := ctx.Deadline(); ok {
			time.AfterFunc(time.Until(d)*3/4, w.endInserts)
		}
		close(w.stopping)
	})
	select {
	case <-w.done:
		if w.drainLost > 0 {
			return fmt.Errorf("clickhouse: writer drain lost %d facts that could be neither written nor spooled (see the errors logged)", w.drainLost)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("clickhouse: writer drain cut short with %d facts neither written nor spooled: %w", w.queued.Load(), ctx.Err())
	}
}

// errDrainDeadline is why a batch is spooled without trying ClickHouse
// when the shutdown deadline is near.
var errDrainDeadline = errors.New("shutdown deadline near: no time left to insert")

// drain runs once Run is told to stop: no fact is taken any more, and each
// queued one is written with one try each batch, or spooled.
func (w *Writer) drain(ctx context.Context, batch []*collector.Fact) {
	w.close()
	start, n := time.Now(), len(batch)
	dropped := w.spoolDropped.Load()
	defer func() { w.drainLost = w.spoolDropped.Load() - dropped }()
	var size int64
	for _, f := range batch {
		size += factSize(f)
	}
	// Enqueue cannot send any more: empty the queue.
	for more := true; more; {
		select {
		case f := <-w.queue:
			n++
			batch = append(batch, f)
			if size += factSize(f); len(batch) >= w.opts.BatchSize || size >= w.opts.BatchBytes {
				w.flush(ctx, batch, 0)
				batch, size = nil, 0
			}
		default:
			more = false
		}
	}
	if len(batch) > 0 {
		w.flush(ctx, batch, 0)
	}
	w.log.Info("writer stopped", "drained", n, "took", time.Since(start), "spooled_batches", w.Stats().SpooledBatches)
}

// flush writes a batch to ClickHouse or, failing that, to the spool.
func (w *Writer) flush(ctx context.Context, batch []*collector.Fact, retries int) {
	n := len(batch)
	var size int64
	for _, f := range batch {
		size += factSize(f)
	}
	defer w.release(n, size)
	if w.insertsOver.Err() != nil {
		w.toSpool(batch, errDrainDeadline)
		return
	}
	if w.down && time.Now().Before(w.nextProbe) {
		w.toSpool(batch, errors.New("ClickHouse is down"))
		return
	}
	if w.down {
		retries = 0 // a probe: one try
	}
	if err := w.prepare(ctx); err != nil {
		w.markDown(err)
		w.toSpool(batch, err)
		return
	}
	start := time.Now()
	err := w.insert(ctx, batch)
	for try := 1; err != nil && try <= retries; try++ {
		if time.Since(start) >= w.opts.WriteTimeout {
			break // a server that hangs gets no more tries: spool
		}
		w.log.Warn("insert failed; retrying", "rows", n, "try", try, "of", retries+1, "err", err)
		if !w.pause(ctx, w.opts.RetryBackoff<<(try-1)) {
			break // shutting down: spool rather than wait
		}
		err = w.insert(ctx, batch)
	}
	if err != nil {
		if w.insertsOver.Err() != nil {
			// Cut by the drain's own deadline: ClickHouse may be fine.
			w.toSpool(batch, fmt.Errorf("%w: %w", errDrainDeadline, err))
			return
		}
		w.markDown(err)
		w.toSpool(batch, err)
		return
	}
	w.written.Add(uint64(n))
	w.markUp()
}

// insert sends one batch as one INSERT. Its context is not ctx's
// cancellation: an insert cut off half-way leaves its outcome unknown. It
// ends at WriteTimeout, or when the shutdown deadline nears (the batch is
// then spooled: stored twice at worst, which the sort key undoes).
func (w *Writer) insert(ctx context.Context, facts []*collector.Fact) error {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.WriteTimeout)
	defer context.AfterFunc(w.insertsOver, cancel)()
	defer cancel()
	err := w.send(ictx, facts)
	if err != nil {
		w.writeErrors.Add(1)
	}
	return err
}

func (w *Writer) send(ctx context.Context, facts []*collector.Fact) error {
	if w.opts.Cluster != "" {
		// Known to every server from 18.16 on (in current releases an
		// alias of distributed_foreground_insert); see
		// WriterOptions.Cluster.
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"insert_distributed_sync": 1}))
	}
	b, err := w.conn.PrepareBatch(ctx, w.insertSQL)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer func() { _ = b.Close() }()
	now := time.Now()
	for _, f := range facts {
		r := toRow(f, now)
		if err := b.Append(r.values()...); err != nil {
			return fmt.Errorf("append request %q: %w", f.RequestID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d rows: %w", len(facts), err)
	}
	return nil
}

// toSpool stores a batch ClickHouse did not take, or counts it lost.
func (w *Writer) toSpool(batch []*collector.Fact, cause error) {
	n := len(batch)
	lost := true
	defer func() {
		if lost && w.opts.Lost != nil {
			for _, f := range batch {
				w.opts.Lost(f)
			}
		}
	}()
	if w.spool == nil {
		w.spoolDropped.Add(uint64(n))
		w.log.Error("batch dropped: ClickHouse refused it and there is no spool (set a spool folder)", "rows", n, "cause", cause)
		return
	}
	name, size, err := w.spool.write(batch)
	switch {
	case errors.Is(err, errSpoolFull):
		w.spoolDropped.Add(uint64(n))
		w.log.Error("batch dropped: spool full (raise the spool limit or bring ClickHouse back)",
			"rows", n, "batch_bytes", size, "spool_bytes", w.spool.bytes.Load(), "limit", w.spool.max, "cause", cause)
	case err != nil:
		w.spoolDropped.Add(uint64(n))
		w.spoolErrors.Add(1)
		w.log.Error("batch dropped: cannot write to the spool", "rows", n, "err", err, "cause", cause)
	default:
		lost = false
		w.log.Warn("batch spooled", "rows", n, "file", name, "bytes", size,
			"spooled_batches", w.spool.count.Load(), "cause", cause)
	}
}

// replay inserts spooled batches, oldest first, while ClickHouse takes
// them, the queue is not backing up and FlushInterval is not used up.
func (w *Writer) replay(ctx context.Context) {
	if w.spool == nil || w.spool.empty() {
		return
	}
	now := time.Now()
	if w.down {
		if now.Before(w.nextProbe) {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
		err := w.conn.Ping(pctx)
		cancel()
		if err != nil {
			w.markDown(err)
			return
		}
	}
	if err := w.prepare(ctx); err != nil {
		w.markDown(err)
		return
	}
	w.markUp()
	if now.Before(w.replayAt) {
		return
	}
	deadline := now.Add(w.opts.FlushInterval)
	for ctx.Err() == nil && !w.stopRequested() && len(w.queue) < w.opts.BatchSize && time.Now().Before(deadline) {
		names, facts := w.gather()
		if len(names) == 0 {
			return
		}
		if err := w.insert(ctx, facts); err != nil {
			var ex *proto.Exception
			switch {
			case !errors.As(err, &ex):
				w.markDown(err)
			case len(names) > 1:
				// The server refused something in these files: send
				// them one by one to find which.
				w.replayOne = true
				w.log.Warn("replay refused by ClickHouse; retrying file by file", "files", len(names), "rows", len(facts), "err", err)
			default:
				w.refused(names[0], len(facts), err)
			}
			return
		}
		w.replayed.Add(uint64(len(facts)))
		w.replayWait, w.replayOne = 0, false
		w.refusedName, w.refusedTries = "", 0
		for _, name := range names {
			if err := w.spool.remove(name); err != nil {
				// Replaying it again later is harmless: the rows replace
				// themselves (ReplacingMergeTree by request).
				w.spoolErrors.Add(1)
				w.log.Error("replayed spool file not removed", "file", name, "err", err)
			}
		}
		w.log.Info("replayed spool files", "files", len(names), "first", names[0], "rows", len(facts), "spooled_batches", w.spool.count.Load())
	}
}

// refused handles the server refusing one spool file: it is tried again
// later, new batches being written meanwhile, and set aside once it was
// refused maxRefusals times in a row.
func (w *Writer) refused(name string, rows int, err error) {
	if name != w.refusedName {
		w.refusedName, w.refusedTries = name, 0
	}
	w.refusedTries++
	if w.refusedTries < maxRefusals {
		w.replayWait = nextBackoff(w.replayWait, w.opts.RetryBackoff, w.opts.MaxBackoff)
		w.replayAt = time.Now().Add(w.replayWait)
		w.log.Error("replay refused by ClickHouse; will retry", "file", name, "rows", rows, "try", w.refusedTries, "of", maxRefusals, "retry_in", w.replayWait, "err", err)
		return
	}
	w.setAside.Add(uint64(rows))
	if serr := w.spool.setAside(name, spoolRefusedExt); serr != nil {
		w.spoolErrors.Add(1)
		w.log.Error("spool file not set aside", "file", name, "err", serr)
	}
	w.log.Error("replay refused by ClickHouse again and again; spool file set aside as .refused, the replay goes on",
		"file", name, "rows", rows, "tries", w.refusedTries, "err", err)
	w.refusedName, w.refusedTries = "", 0
	w.replayWait, w.replayOne = 0, false
	w.replayAt = time.Time{}
}

// gather reads spool files, oldest first, into one batch of up to
// BatchSize rows and BatchBytes (always at least one file): many small
// batches spooled during an outage go back in few INSERTs. Unreadable
// files are set aside.
func (w *Writer) gather() (names []string, facts []*collector.Fact) {
	var size int64
	for _, name := range w.spool.names() {
		if len(names) > 0 && (w.replayOne || len(facts) >= w.opts.BatchSize || size >= w.opts.BatchBytes) {
			break
		}
		fs, err := w.spool.read(name)
		if err != nil {
			w.spoolErrors.Add(1)
			qerr := w.spool.setAside(name, spoolBadExt)
			w.log.Error("spool file unreadable; set aside as .corrupt", "file", name, "err", err, "quarantine_err", qerr)
			continue
		}
		if len(names) > 0 && len(facts)+len(fs) > w.opts.BatchSize {
			break
		}
		names = append(names, name)
		facts = append(facts, fs...)
		for _, f := range fs {
			size += factSize(f)
		}
	}
	return names, facts
}

// stopRequested says Shutdown was called.
func (w *Writer) stopRequested() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// prepare runs Prepare until it has succeeded once.
func (w *Writer) prepare(ctx context.Context) error {
	if w.prepared || w.opts.Prepare == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.WriteTimeout)
	defer cancel()
	defer context.AfterFunc(w.insertsOver, cancel)()
	if err := w.opts.Prepare(pctx); err != nil {
		return fmt.Errorf("clickhouse: prepare: %w", err)
	}
	w.prepared = true
	w.log.Info("ClickHouse prepared (migrations applied); writing and replaying")
	return nil
}

func (w *Writer) markDown(err error) {
	w.probeWait = nextBackoff(w.probeWait, w.opts.RetryBackoff, w.opts.MaxBackoff)
	w.nextProbe = time.Now().Add(w.probeWait)
	if !w.down {
		w.log.Error("ClickHouse unavailable; spooling batches until it answers", "err", err, "probe_in", w.probeWait)
	}
	w.down = true
}

func (w *Writer) markUp() {
	if w.down {
		w.log.Info("ClickHouse answers again")
	}
	w.down = false
	w.probeWait = 0
}

func nextBackoff(cur, first, limit time.Duration) time.Duration {
	if cur <= 0 {
		return first
	}
	if cur *= 2; cur > limit {
		return limit
	}
	return cur
}

// pause waits d, or less when ctx is done or Shutdown is called; false
// if they cut it.
func (w *Writer) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.stopping:
		return false
	}
}
