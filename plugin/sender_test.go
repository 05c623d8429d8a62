package llmtap

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// obs is a finished observation of request i.
func obs(i int) *captureWriter {
	c := &captureWriter{req: httptest.NewRequest(http.MethodGet, "/", nil), set: &settings{}, rec: &Record{V: RecordVersion}}
	c.rec.RequestID = fmt.Sprintf("r%d", i)
	return c
}

func TestSenderBatches(t *testing.T) {
	tests := []struct {
		desc      string
		batchSize int
		records   int
		want      []int // batch sizes, in order
	}{
		{desc: "by size then by interval", batchSize: 3, records: 7, want: []int{3, 3, 1}},
		{desc: "one partial batch by interval", batchSize: 100, records: 5, want: []int{5}},
		{desc: "exact batches", batchSize: 2, records: 4, want: []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			col := newCollectorStub(t)
			s := testSettings(t, col.srv.URL, func(c *Config) {
				c.BatchSize = tt.batchSize
				c.FlushInterval = "100ms"
				c.CollectorToken = "tok"
			})
			sd := newSender(s, discardLogger())
			// Queue everything before the sender starts, so batches fill by size.
			for i := 0; i < tt.records; i++ {
				hand(sd, obs(i))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer func() { cancel(); <-sd.done }()
			sd.start(ctx)

			all := col.records(t, tt.records)
			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.batches) != len(tt.want) {
				t.Fatalf("%d batches, want %d", len(col.batches), len(tt.want))
			}
			for i, b := range col.batches {
				if len(b) != tt.want[i] {
					t.Errorf("batch %d has %d records, want %d", i, len(b), tt.want[i])
				}
				if col.auth[i] != "Bearer tok" {
					t.Errorf("batch %d auth %q", i, col.auth[i])
				}
			}
			for i, r := range all {
				if r.RequestID != fmt.Sprintf("r%d", i) || r.V != RecordVersion {
					t.Errorf("record %d is %+v", i, r)
				}
			}
		})
	}
}

func TestSenderCountsDroppedRecords(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, func(c *Config) {
		c.QueueSize = 2
		c.BatchSize = 10
	})
	sd := newSender(s, discardLogger())
	for i := 0; i < 5; i++ {
		hand(sd, obs(i)) // the queue holds 2: 3 are dropped, at once
	}
	if got := atomic.LoadInt64(&sd.dropped); got != 3 {
		t.Fatalf("dropped %d, want 3", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-sd.done }()
	sd.start(ctx)
	col.records(t, 2)
	hand(sd, obs(5))
	col.records(t, 3)

	col.mu.Lock()
	defer col.mu.Unlock()
	if col.dropped[0] != "3" {
		t.Errorf("first batch reports %q dropped, want 3", col.dropped[0])
	}
	if col.dropped[1] != "" {
		t.Errorf("second batch reports %q dropped, want none: the count was acknowledged", col.dropped[1])
	}
}

func TestSenderFailedBatchIsCountedAndReported(t *testing.T) {
	col := newCollectorStub(t)
	col.setStatus(http.StatusServiceUnavailable)
	s := testSettings(t, col.srv.URL, func(c *Config) { c.BatchSize = 2 })
	sd := startSender(t, s)
	hand(sd, obs(0))
	hand(sd, obs(1))
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt64(&sd.dropped) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %d after a refused batch, want 2", atomic.LoadInt64(&sd.dropped))
		}
		time.Sleep(5 * time.Millisecond)
	}
	col.setStatus(0)
	hand(sd, obs(2))
	col.records(t, 1)
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.dropped[0] != "2" {
		t.Errorf("next batch reports %q dropped, want 2", col.dropped[0])
	}
}

func TestEnqueueNeverBlocks(t *testing.T) {
	col := newCollectorStub(t)
	col.hold = make(chan struct{}) // the collector hangs
	defer close(col.hold)
	s := testSettings(t, col.srv.URL, func(c *Config) {
		c.QueueSize = 4
		c.BatchSize = 1
		c.SendTimeout = "50ms"
	})
	sd := startSender(t, s)
	// An enqueue that waited for the hung collector would never return here;
	// one that does not wait drops all but the few the queue and batch hold.
	for i := 0; i < 1000; i++ {
		hand(sd, obs(i))
	}
	if got := atomic.LoadInt64(&sd.dropped); got < 990 {
		t.Errorf("dropped %d, want nearly all", got)
	}
}

func TestSenderDrainsOnStop(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, func(c *Config) {
		c.BatchSize = 1000
		c.FlushInterval = "1h"
	})
	sd := newSender(s, discardLogger())
	ctx, cancel := context.WithCancel(context.Background())
	sd.start(ctx)
	for i := 0; i < 5; i++ {
		hand(sd, obs(i))
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-sd.done
	if got := len(col.records(t, 5)); got != 5 {
		t.Errorf("%d records after stop, want 5", got)
	}
}

func TestSenderRegistrySharesByConfig(t *testing.T) {
	a := testSettings(t, "http://127.0.0.1:1/registry-test", nil)
	b := testSettings(t, "http://127.0.0.1:1/registry-test", nil)
	c := testSettings(t, "http://127.0.0.1:1/registry-test", func(c *Config) { c.BatchSize = 7 })
	if senderFor(a, "registry-a") != senderFor(b, "registry-b") {
		t.Error("same settings got two senders: a reload would leak a goroutine")
	}
	if senderFor(a, "registry-a") == senderFor(c, "registry-c") {
		t.Error("different settings share a sender")
	}
}

func TestSendersCountStreamsApart(t *testing.T) {
	a := newSender(testSettings(t, "http://127.0.0.1:1", nil), discardLogger())
	b := newSender(testSettings(t, "http://127.0.0.1:1", nil), discardLogger())
	atomic.AddInt64(a.active, 1)
	if a.active == b.active || atomic.LoadInt64(b.active) != 0 {
		t.Errorf("two senders share their stream count: a %d b %d", atomic.LoadInt64(a.active), atomic.LoadInt64(b.active))
	}
}

// TestIdleSenderPostsNothing: without records or open streams the sender
// stays quiet, heartbeat ticks included.
func TestIdleSenderPostsNothing(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil) // 20ms flush interval
	startSender(t, s)
	time.Sleep(150 * time.Millisecond)
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.active) != 0 {
		t.Errorf("an idle sender posted %d times", len(col.active))
	}
}

// TestSenderNeverResendsAnAnsweredBatch: a batch the collector answered
// is sent once, whatever it made of its lines; only a collector that
// could not take it (5xx, 408, 429) sees it again. Records lost with a
// batch are counted as dropped, except those a 400 names (the collector
// counts them as rejected).
func TestSenderNeverResendsAnAnsweredBatch(t *testing.T) {
	tests := []struct {
		status      int
		answer      string
		wantPosts   int64
		wantDropped int64
	}{
		{status: http.StatusAccepted, answer: `{"accepted":1,"rejected":[{"line":2,"error":"request_id: bad"}]}`, wantPosts: 1},
		{status: http.StatusBadRequest, answer: `{"accepted":0,"rejected":[{"line":1,"error":"bad"},{"line":2,"error":"bad"}]}`, wantPosts: 1},
		{status: http.StatusUnauthorized, answer: `{"error":"bearer token"}`, wantPosts: 1, wantDropped: 2},
		{status: http.StatusRequestEntityTooLarge, answer: `{"error":"body over"}`, wantPosts: 1, wantDropped: 2},
		{status: http.StatusServiceUnavailable, answer: `{"error":"write queue full"}`, wantPosts: sendAttempts, wantDropped: 2},
		{status: http.StatusTooManyRequests, wantPosts: sendAttempts, wantDropped: 2},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			var posts int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				atomic.AddInt64(&posts, 1)
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			var log bytes.Buffer
			sd := newSender(testSettings(t, srv.URL, nil), slog.New(slog.NewTextHandler(&log, nil)))
			sd.backoff = time.Millisecond
			sd.send(context.Background(), []*captureWriter{obs(0), obs(1)})
			if got := atomic.LoadInt64(&posts); got != tt.wantPosts {
				t.Errorf("posted %d times, want %d", got, tt.wantPosts)
			}
			if got := atomic.LoadInt64(&sd.dropped); got != tt.wantDropped {
				t.Errorf("dropped %d, want %d", got, tt.wantDropped)
			}
			// Every case here is worth a line in Traefik's log.
			if !strings.Contains(log.String(), strconv.Itoa(tt.status)) && !strings.Contains(log.String(), "rejected") {
				t.Errorf("log %q: want the collector's answer", log.String())
			}
		})
	}
}

// TestSenderTrustsCollectorCA: an https collector whose certificate a
// private CA signed is reached with collectorCA, and refused without it.
func TestSenderTrustsCollectorCA(t *testing.T) {
	col := &collectorStub{}
	col.srv = httptest.NewTLSServer(http.HandlerFunc(col.serve))
	defer col.srv.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: col.srv.Certificate().Raw}))

	sd := startSender(t, testSettings(t, col.srv.URL, func(c *Config) { c.CollectorCA = ca }))
	hand(sd, obs(0))
	if got := col.records(t, 1); got[0].RequestID != "r0" {
		t.Errorf("record %+v", got[0])
	}

	untrusting := startSender(t, testSettings(t, col.srv.URL, nil))
	hand(untrusting, obs(1))
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadInt64(&untrusting.dropped) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a collector with an unknown CA took the batch")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeliveredRecordsFreeTheirBytes: once the sender has taken the
// records, their bytes are no longer counted against the budget; a
// collector that hangs and then answers gets everything queued, and the
// budget is whole again.
func TestDeliveredRecordsFreeTheirBytes(t *testing.T) {
	col := newCollectorStub(t)
	col.hold = make(chan struct{})
	s := testSettings(t, col.srv.URL, nil)
	sd := startSender(t, s)
	for i := 0; i < 20; i++ {
		c := obs(i)
		c.set = s
		c.returned = true
		c.rec.Status = http.StatusOK
		c.head = make([]byte, 1000)
		c.capture = true
		hand(sd, c)
	}
	if q := atomic.LoadInt64(&sd.queuedBytes); q <= 0 {
		t.Fatalf("queued bytes %d with 20 records waiting on a hung collector", q)
	}
	close(col.hold)
	col.records(t, 20)
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadInt64(&sd.queuedBytes) != 0 || atomic.LoadInt64(&sd.queued) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after delivery: %d bytes, %d records still counted as queued", atomic.LoadInt64(&sd.queuedBytes), atomic.LoadInt64(&sd.queued))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDropReportSurvivesA503: the report of drops rides on a batch; when
// the collector answers 503 it has not taken it, so the retry carries it
// again, and it is cleared once a batch is accepted.
func TestDropReportSurvivesA503(t *testing.T) {
	var mu sync.Mutex
	var reports []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reports = append(reports, r.Header.Get(HeaderDropped))
		first := len(reports) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	sd := newSender(testSettings(t, srv.URL, nil), discardLogger())
	sd.backoff = time.Millisecond
	atomic.StoreInt64(&sd.dropped, 5)
	sd.send(context.Background(), []*captureWriter{obs(0)})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(reports, ",") != "5,5" {
		t.Errorf("drop reports per attempt %q, want 5 on the 503 and again on the retry", reports)
	}
	if n := atomic.LoadInt64(&sd.dropped); n != 0 {
		t.Errorf("%d drops still to report after the batch was accepted", n)
	}
}
