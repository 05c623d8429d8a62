package llmtap

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// senders is the plugin's one package-level registry. Traefik calls New for
// every router and again on every configuration reload, and never tells the
// old instance it is gone; so senders are shared by their settings, and a
// reload that keeps the collector settings keeps the same sender and
// goroutine instead of leaking one per New. A sender whose settings are no
// longer used only holds a parked goroutine.
var senders = struct {
	sync.Mutex
	m map[string]*sender
}{m: map[string]*sender{}}

func senderFor(s *settings) *sender {
	key := fmt.Sprintf("%s|%s|%d|%d|%s|%s", s.recordsURL, s.token, s.queueSize, s.batchSize, s.flushInterval, s.sendTimeout)
	senders.Lock()
	defer senders.Unlock()
	if sd, ok := senders.m[key]; ok {
		return sd
	}
	sd := newSender(s, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	go sd.run(context.Background())
	senders.m[key] = sd
	return sd
}

// sendAttempts is how often one batch is tried before it counts as dropped.
const sendAttempts = 3

// sender ships records to the collector: a bounded queue that never blocks
// the request, drained by one goroutine into gzip NDJSON batches.
type sender struct {
	url       string
	token     string
	queue     chan *captureWriter
	batchSize int
	interval  time.Duration
	client    *http.Client
	log       *slog.Logger
	backoff   time.Duration

	dropped int64 // records lost since the last acknowledged batch (atomic)
	// active counts streaming responses in flight (atomic). It is a
	// pointer the capture writers hold, not a field they reach through
	// the sender: see finish on recursive types.
	active *int64
	id     string // HeaderSender
	done   chan struct{}

	// limits carries the limit checks of every router that shares this
	// sender, so their connections to the collector are kept and reused
	// across routers and configuration reloads. Each check is bounded by
	// its request's context, not by a client timeout.
	limits *http.Transport

	// keys caches tenants by credential, for record and the limit checks.
	keys *tenantKeys

	// Owned by the run goroutine:
	buf bytes.Buffer
	zw  *gzip.Writer

	// logf's state: the run goroutine and failed limit checks both log.
	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
}

func newSender(s *settings, log *slog.Logger) *sender {
	return &sender{
		url:       s.recordsURL,
		token:     s.token,
		queue:     make(chan *captureWriter, s.queueSize),
		keys:      newTenantKeys(),
		batchSize: s.batchSize,
		interval:  s.flushInterval,
		client: &http.Client{
			Timeout:   s.sendTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute},
		},
		limits: &http.Transport{
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		log:     log,
		active:  new(int64),
		id:      randomID(),
		backoff: 200 * time.Millisecond,
		done:    make(chan struct{}),
	}
}

// run sends batches until ctx ends, then sends what is queued and returns.
// A panic is logged and the loop restarted: a panic in a plugin goroutine
// would take all of Traefik down.
func (sd *sender) run(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			sd.log.Error("llmtap: sender panicked, restarting", "panic", fmt.Sprint(p))
			go sd.run(ctx)
			return
		}
		close(sd.done)
	}()
	batch := make([]*captureWriter, 0, sd.batchSize)
	beat := time.NewTicker(sd.interval)
	defer beat.Stop()
	// No continue or break inside the select: Yaegi v0.16 mishandles them
	// there (a continue falls through to the code after the select).
	for {
		select {
		case r := <-sd.queue:
			batch = append(batch[:0], r)
			if !sd.fill(ctx, &batch) {
				sd.drain(batch)
				return
			}
			sd.send(ctx, batch)
		case <-beat.C:
			if atomic.LoadInt64(sd.active) > 0 {
				// No record, but streams are open: say so.
				sd.send(ctx, batch[:0])
			}
		case <-ctx.Done():
			sd.drain(batch[:0])
			return
		}
	}
}

// fill adds queued records to the batch until it is full or the flush
// interval has passed; it reports false when ctx ended meanwhile.
func (sd *sender) fill(ctx context.Context, batch *[]*captureWriter) bool {
	timer := time.NewTimer(sd.interval)
	defer timer.Stop()
	for len(*batch) < sd.batchSize {
		if len(sd.queue) > 0 {
			// Busy: take what is there without a select, which costs far
			// more under Yaegi. This goroutine is the queue's only reader.
			*batch = append(*batch, <-sd.queue)
			continue
		}
		select {
		case r := <-sd.queue:
			*batch = append(*batch, r)
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// drain sends the batch and everything still queued, each batch with the
// client's own timeout: this is the shutdown path, ctx is already over.
func (sd *sender) drain(batch []*captureWriter) {
	for {
		for len(batch) < sd.batchSize && len(sd.queue) > 0 {
			batch = append(batch, <-sd.queue)
		}
		if len(batch) == 0 {
			return
		}
		sd.send(context.Background(), batch)
		batch = batch[:0]
	}
}

// send posts one batch, retrying with backoff; a batch that cannot be
// delivered is counted as dropped and reported with the next one.
func (sd *sender) send(ctx context.Context, batch []*captureWriter) {
	err := sd.encode(batch)
	if err != nil {
		atomic.AddInt64(&sd.dropped, int64(len(batch)))
		sd.logf("llmtap: cannot encode a batch", err, "records", len(batch))
		return
	}
	wait := sd.backoff
	for attempt := 1; ; attempt++ {
		dropped := atomic.LoadInt64(&sd.dropped)
		err = sd.post(ctx, sd.buf.Bytes(), dropped)
		if err == nil {
			atomic.AddInt64(&sd.dropped, -dropped)
			return
		}
		if attempt == sendAttempts || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait *= 2
	}
	atomic.AddInt64(&sd.dropped, int64(len(batch)))
	sd.logf("llmtap: batch not delivered to the collector", err, "records", len(batch), "collector", sd.url)
}

func (sd *sender) post(ctx context.Context, body []byte, dropped int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sd.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	if sd.token != "" {
		req.Header.Set("Authorization", "Bearer "+sd.token)
	}
	if dropped > 0 {
		req.Header.Set(HeaderDropped, strconv.FormatInt(dropped, 10))
	}
	req.Header.Set(HeaderSender, sd.id)
	req.Header.Set(HeaderActiveStreams, strconv.FormatInt(atomic.LoadInt64(sd.active), 10))
	resp, err := sd.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("collector answered %s", resp.Status)
	}
	return nil
}

// encode turns a batch of observations into gzip-compressed NDJSON
// records in sd.buf. The buffer and the gzip writer are reused from batch
// to batch: a new gzip writer allocates about 1 MB.
func (sd *sender) encode(batch []*captureWriter) error {
	sd.buf.Reset()
	if sd.zw == nil {
		zw, err := gzip.NewWriterLevel(&sd.buf, gzip.BestSpeed)
		if err != nil {
			return err
		}
		sd.zw = zw
	} else {
		sd.zw.Reset(&sd.buf)
	}
	enc := json.NewEncoder(sd.zw)
	for _, c := range batch {
		if err := enc.Encode(record(c, sd.keys)); err != nil {
			return fmt.Errorf("record %s: %w", c.rec.RequestID, err)
		}
	}
	return sd.zw.Close()
}

// logf logs to stderr (Traefik shows a plugin's stderr at ERROR level), at
// most once every 10 s, saying how many lines it held back.
func (sd *sender) logf(msg string, err error, attrs ...any) {
	now := time.Now()
	sd.logMu.Lock()
	defer sd.logMu.Unlock()
	if now.Sub(sd.lastLog) < 10*time.Second {
		sd.suppressed++
		return
	}
	sd.log.Error(msg, append(attrs, "err", err, "suppressed", sd.suppressed, "dropped_pending", atomic.LoadInt64(&sd.dropped))...)
	sd.lastLog = now
	sd.suppressed = 0
}
