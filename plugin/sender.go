package llmtap

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// senders is the plugin's one package-level registry. Traefik calls New for
// every router and again on every configuration reload, and never tells the
// old instance it is gone; so senders are shared by their settings, and a
// reload that keeps the collector settings keeps the same sender and
// goroutine instead of leaking one per New.
//
// A reload that changes a middleware's collector settings replaces its
// sender: New is called with the same middleware name and settings that map
// to another sender. When no middleware name maps to the old sender any
// more, it is retired: it leaves the registry, sends what it holds at once,
// keeps sending the records of the requests still running on the old
// middleware instances, and its goroutine ends once none is left (see
// runRetired). A middleware that disappears from the configuration is never
// named again, so its sender stays, parked.
//
// When Traefik is told to stop, every sender is retired too (watchStop).
//
// The registry holds the upstream pools of routes with upstreams the same
// way, so that their breakers and connections outlive reloads: shared by
// settings (poolKey), and a pool no middleware name maps to any more
// closes its idle connections and leaves.
var senders = struct {
	sync.Mutex
	m      map[string]*sender // the live senders, by settings (senderKey)
	byName map[string]*sender // each middleware's sender, by the name New got
	// watching says the goroutine of watchStop runs; the first sender
	// starts it.
	watching bool

	pools       map[string]*pool // by poolKey
	poolsByName map[string]*pool // each middleware's pool, by the name New got
}{m: map[string]*sender{}, byName: map[string]*sender{}, pools: map[string]*pool{}, poolsByName: map[string]*pool{}}

// poolFor returns the upstream pool for the settings of the middleware
// called name (nil when it has no upstreams), making one if needed, and
// lets go of the pool it replaces.
func poolFor(s *settings, name string) *pool {
	senders.Lock()
	defer senders.Unlock()
	old := senders.poolsByName[name]
	var p *pool
	if len(s.upstreams) > 0 {
		key := poolKey(s)
		if p = senders.pools[key]; p == nil {
			p = newPool(s)
			p.key = key
			senders.pools[key] = p
		}
		senders.poolsByName[name] = p
	} else {
		delete(senders.poolsByName, name)
	}
	if old == nil || old == p {
		return p
	}
	for _, other := range senders.poolsByName {
		if other == old {
			return p
		}
	}
	delete(senders.pools, old.key)
	old.transport.CloseIdleConnections()
	return p
}

func senderKey(s *settings) string {
	return fmt.Sprintf("%s|%s|%d|%d|%d|%s|%s|%s", s.recordsURL, s.token, s.queueSize, s.maxQueueBytes, s.batchSize, s.flushInterval, s.sendTimeout, s.collectorCA)
}

// senderFor returns the sender for the settings of the middleware called
// name, starting one if needed, and retires the sender it replaces.
func senderFor(s *settings, name string) *sender {
	key := senderKey(s)
	senders.Lock()
	defer senders.Unlock()
	sd, ok := senders.m[key]
	if !ok {
		sd = newSender(s, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		sd.key = key
		sd.start(context.Background())
		senders.m[key] = sd
		if !senders.watching {
			senders.watching = true
			// Listening before New returns: a signal from then on is seen.
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, stopSignals()...)
			go watchStop(ch)
		}
	}
	old := senders.byName[name]
	senders.byName[name] = sd
	if old == nil || old == sd {
		return sd
	}
	for _, other := range senders.byName {
		if other == old {
			return sd // another middleware still uses it
		}
	}
	delete(senders.m, old.key)
	old.retire()
	return sd
}

// stopSignals are the signals on which Traefik stops: SIGINT and SIGTERM.
// Traefik's interpreter offers no syscall package, so SIGTERM is made from
// the type of os.Interrupt (syscall.Signal): it is 15 on every Unix.
func stopSignals() []os.Signal {
	term := reflect.New(reflect.TypeOf(os.Interrupt)).Elem()
	term.SetInt(15)
	return []os.Signal{os.Interrupt, term.Interface().(os.Signal)}
}

// watchStop waits for Traefik to be told to stop (ch, notified of
// stopSignals), and then retires every sender: each sends what it holds
// at once, and each later record as soon as it comes, while Traefik lets
// the requests in flight end (its lifeCycle.graceTimeOut); a flush
// interval's worth of records is not lost with the process. Then it stops
// listening, which gives the signal back to the process's own handling
// (Traefik's, which is already stopping), and raises it again where it
// can: compiled, so that a process without a handler of its own ends as
// it would have; Yaegi's restricted os.FindProcess refuses, so there a
// host without a handler of its own needs a second signal. Its owner is
// the process: it runs until such a signal, and the next sender starts
// another. It logs nothing: Traefik shows all a plugin writes to stderr
// as errors.
func watchStop(ch chan os.Signal) {
	sig := <-ch
	retireAll()
	signal.Stop(ch)
	// Two statements: under Yaegi the if-init form of a call's tuple
	// misreads it.
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		_ = p.Signal(sig)
	}
	senders.Lock()
	senders.watching = false
	senders.Unlock()
}

// retireAll retires every sender and empties the registry.
func retireAll() {
	senders.Lock()
	defer senders.Unlock()
	for key, sd := range senders.m {
		delete(senders.m, key)
		sd.retire()
	}
	for name := range senders.byName {
		delete(senders.byName, name)
	}
}

// sendAttempts is how often one batch is tried before it counts as dropped.
const sendAttempts = 3

// stoppedMark is added to a sender's pending count when its goroutine ends:
// a request that then finds the count negative restarts it (revive).
const stoppedMark = -(1 << 62)

// retiredPoll is how often a retired sender checks whether it is idle
// without a record to wake it (records dropped on a full queue).
const retiredPoll = 250 * time.Millisecond

// sender ships records to the collector: a bounded queue that never blocks
// the request, drained by one goroutine into gzip NDJSON batches.
type sender struct {
	url   string
	token string
	queue chan *captureWriter
	// queued counts the records in the queue and the sends under way
	// (atomic): finish reserves a slot here before it sends, so that its
	// send never blocks; the goroutine gives slots back as it takes
	// records (taken). capacity is the queue's.
	queued   int64
	capacity int64
	// queuedBytes is what the queued records hold (observationBytes; atomic),
	// reserved by finish like a slot; maxBytes bounds it.
	queuedBytes int64
	maxBytes    int64
	batchSize   int
	interval    time.Duration
	client      *http.Client
	log         *slog.Logger
	backoff     time.Duration

	dropped int64 // records lost since the last acknowledged batch (atomic)
	// pending counts the requests begun with this sender whose record its
	// goroutine has not taken yet, nor finish dropped (atomic): ServeHTTP
	// adds one, the goroutine subtracts what it takes. A retired sender
	// stops at 0, leaving stoppedMark. A pointer the middlewares hold: one
	// dereference less per request under Yaegi.
	pending *int64
	// active counts streaming responses in flight (atomic). It is a
	// pointer the capture writers hold, not a field they reach through
	// the sender: see finish on recursive types.
	active *int64
	id     string // HeaderSender
	key    string // senderKey, in the registry

	// retired is closed when New replaced this sender's settings.
	retired    chan struct{}
	retireOnce sync.Once
	// mu guards running and done: whether a goroutine runs, and the
	// channel closed when it ends (a new one when revive restarts it).
	mu      sync.Mutex
	running bool
	done    chan struct{}

	// limits carries the limit checks of every router that shares this
	// sender, so their connections to the collector are kept and reused
	// across routers and configuration reloads. Each check is bounded by
	// its request's context, not by a client timeout.
	limits *http.Transport
	nils   []*captureWriter // batchSize nils, to clear a sent batch with

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
	var tc *tls.Config
	if s.rootCAs != nil {
		tc = &tls.Config{RootCAs: s.rootCAs, MinVersion: tls.VersionTLS12}
	}
	return &sender{
		nils:      make([]*captureWriter, s.batchSize),
		url:       s.recordsURL,
		token:     s.token,
		queue:     make(chan *captureWriter, s.queueSize),
		capacity:  int64(s.queueSize),
		maxBytes:  s.maxQueueBytes,
		keys:      newTenantKeys(),
		batchSize: s.batchSize,
		interval:  s.flushInterval,
		client: &http.Client{
			Timeout:   s.sendTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute, TLSClientConfig: tc},
		},
		limits: &http.Transport{
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     tc,
		},
		log:     log,
		active:  new(int64),
		pending: new(int64),
		id:      randomID(),
		backoff: 200 * time.Millisecond,
		retired: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// start runs the sender's goroutine until ctx ends or, once retired, until
// it is idle.
func (sd *sender) start(ctx context.Context) {
	sd.mu.Lock()
	sd.running = true
	sd.mu.Unlock()
	go sd.run(ctx)
}

// finished returns the channel closed when the goroutine ends.
func (sd *sender) finished() chan struct{} {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return sd.done
}

// retire tells the goroutine that New replaced the sender: it sends what
// it holds at once and ends once idle.
func (sd *sender) retire() {
	sd.retireOnce.Do(func() { close(sd.retired) })
}

func (sd *sender) isRetired() bool {
	select {
	case <-sd.retired:
		return true
	default:
		return false
	}
}

// run sends batches until ctx ends, then sends what is queued and returns;
// once the sender is retired it goes on in runRetired. A panic is logged
// and the loop restarted: a panic in a plugin goroutine would take all of
// Traefik down.
func (sd *sender) run(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			sd.log.Error("llmtap: sender panicked, restarting", "panic", fmt.Sprint(p))
			go sd.run(ctx)
		}
	}()
	if sd.isRetired() || sd.runLive(ctx) {
		sd.runRetired(ctx)
	}
}

// runLive is the sender's loop while New uses it: it reports true when the
// sender was retired, false when ctx ended (what was queued is sent).
func (sd *sender) runLive(ctx context.Context) bool {
	batch := make([]*captureWriter, 0, sd.batchSize)
	beat := time.NewTicker(sd.interval)
	defer beat.Stop()
	// No continue or break inside the select: Yaegi v0.16 mishandles them
	// there (a continue falls through to the code after the select).
	for {
		select {
		case r := <-sd.queue:
			batch = append(batch[:0], r)
			more := sd.fill(ctx, &batch)
			size := sd.taken(batch)
			if !more {
				sd.drain(batch, size)
				sd.stop()
				return false
			}
			sd.sendAndFree(ctx, batch, size)
		case <-beat.C:
			if atomic.LoadInt64(sd.active) > 0 {
				// No record, but streams are open: say so.
				sd.send(ctx, batch[:0])
			}
		case <-sd.retired:
			return true
		case <-ctx.Done():
			sd.drain(batch[:0], 0)
			sd.stop()
			return false
		}
	}
}

// runRetired serves a sender whose settings New replaced. Requests that
// began on the old middleware instances before Traefik switched to the new
// ones still finish there and hand their records to this sender: each is
// sent at once (no batch waits for the flush interval any more), and the
// goroutine ends when none is pending. Should a request of the old
// generation begin after that, ServeHTTP restarts it (revive).
func (sd *sender) runRetired(ctx context.Context) {
	batch := make([]*captureWriter, 0, sd.batchSize)
	beat := time.NewTicker(sd.interval)
	defer beat.Stop()
	poll := time.NewTicker(retiredPoll)
	defer poll.Stop()
	for !sd.stopIfIdle() {
		select {
		case r := <-sd.queue:
			batch = append(batch[:0], r)
			for len(batch) < sd.batchSize && len(sd.queue) > 0 {
				batch = append(batch, <-sd.queue)
			}
			sd.sendAndFree(ctx, batch, sd.taken(batch))
		case <-beat.C:
			if atomic.LoadInt64(sd.active) > 0 {
				sd.send(ctx, batch[:0])
			}
		case <-poll.C:
		case <-ctx.Done():
			sd.drain(batch[:0], 0)
			sd.stop()
			return
		}
	}
}

// taken notes records taken from the queue: their slots are free again and
// their requests no longer pending. It returns their bytes, which stay
// counted against the budget until their batch is sent (sendAndFree).
func (sd *sender) taken(recs []*captureWriter) int64 {
	var size int64
	for _, c := range recs {
		size += c.size
	}
	n := int64(len(recs))
	atomic.AddInt64(&sd.queued, -n)
	atomic.AddInt64(sd.pending, -n)
	return size
}

// sendAndFree sends a batch, then gives its bytes back to the budget.
func (sd *sender) sendAndFree(ctx context.Context, batch []*captureWriter, size int64) {
	sd.send(ctx, batch)
	atomic.AddInt64(&sd.queuedBytes, -size)
}

// stopIfIdle ends a retired sender's goroutine when no request is pending:
// the count becomes stoppedMark in the same step, so that a request
// beginning later sees it and revives the sender.
func (sd *sender) stopIfIdle() bool {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if !atomic.CompareAndSwapInt64(sd.pending, 0, stoppedMark) {
		return false
	}
	sd.running = false
	close(sd.done)
	sd.client.CloseIdleConnections()
	sd.limits.CloseIdleConnections()
	return true
}

// stop notes that the goroutine ends because its context did.
func (sd *sender) stop() {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	sd.running = false
	close(sd.done)
}

// revive restarts the goroutine of a retired sender that had stopped when
// a request begins on one of its middleware instances after all (Traefik
// switches to the new instances a moment after New returns). ServeHTTP
// calls it when the pending count it raised is negative.
func revive(sd *sender) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.running {
		return // another request revived it first
	}
	atomic.AddInt64(sd.pending, -stoppedMark)
	sd.running = true
	sd.done = make(chan struct{})
	go sd.run(context.Background())
}

// fill adds queued records to the batch until it is full, the flush
// interval has passed or the sender is retired (send now); it reports
// false when ctx ended meanwhile.
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
		case <-sd.retired:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// drain sends the batch (holding size bytes of the budget) and everything
// still queued, each batch with the client's own timeout: this is the
// shutdown path, ctx is already over.
func (sd *sender) drain(batch []*captureWriter, size int64) {
	for {
		n := len(batch)
		for len(batch) < sd.batchSize && len(sd.queue) > 0 {
			batch = append(batch, <-sd.queue)
		}
		size += sd.taken(batch[n:])
		if len(batch) == 0 {
			return
		}
		sd.sendAndFree(context.Background(), batch, size)
		batch = batch[:0]
		size = 0
	}
}

// send posts one batch, retrying with backoff when the collector could
// not take it (no answer, 5xx, 408, 429); a batch that cannot be delivered
// is counted as dropped and reported with the next one. A batch the
// collector answered is never sent again: on 2xx its good lines are
// stored, and lines it refused are named in its answer (logged here,
// counted by the collector); any other 4xx refuses the whole batch for
// good (a bad token, a batch too large), and a retry could not help.
func (sd *sender) send(ctx context.Context, batch []*captureWriter) {
	err := sd.encode(batch)
	// The records are in sd.buf now: let the observations go, and the
	// requests and bodies they hold, rather than keep them in the batch's
	// array until the next batch overwrites them. One copy from a slice of
	// nils: a loop would run interpreted, a step per record.
	n := len(batch)
	for cleared := 0; cleared < n; {
		cleared += copy(batch[cleared:], sd.nils)
	}
	if err != nil {
		atomic.AddInt64(&sd.dropped, int64(n))
		sd.logf("llmtap: cannot encode a batch", err, "records", n)
		return
	}
	wait := sd.backoff
	for attempt := 1; ; attempt++ {
		dropped := atomic.LoadInt64(&sd.dropped)
		var status int
		var answer []byte
		status, answer, err = sd.post(ctx, sd.buf.Bytes(), dropped)
		if err == nil {
			// A batch the collector answered, 2xx or for good 4xx, took the
			// report of the drops with it; after a 5xx, 408 or 429 (the
			// collector, or a proxy before it, did not read it) the
			// report goes again with the retry.
			switch {
			case status/100 == 2:
				atomic.AddInt64(&sd.dropped, -dropped)
				if bytes.Contains(answer, []byte(`"rejected"`)) {
					sd.logf("llmtap: the collector refused some records of a batch", fmt.Errorf("%s", answer), "records", n, "collector", sd.url)
				}
				return
			case status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
				atomic.AddInt64(&sd.dropped, -dropped)
				if status != http.StatusBadRequest {
					// A 400 names each refused line, and the collector
					// counts them; other refusals count nothing there.
					atomic.AddInt64(&sd.dropped, int64(n))
				}
				sd.logf("llmtap: the collector refused a batch; not sent again", fmt.Errorf("collector answered %d: %s", status, answer), "records", n, "collector", sd.url)
				return
			}
			err = fmt.Errorf("collector answered %d: %s", status, answer)
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
	atomic.AddInt64(&sd.dropped, int64(n))
	sd.logf("llmtap: batch not delivered to the collector", err, "records", n, "collector", sd.url)
}

// post sends one batch and returns the collector's status and the head of
// its answer; err only when there was no answer.
func (sd *sender) post(ctx context.Context, body []byte, dropped int64) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sd.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
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
		return 0, nil, err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, answer, nil
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
		if err := enc.Encode(record(c)); err != nil {
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
