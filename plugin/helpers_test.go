package llmtap

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collectorStub is an in-process collector: it decodes gzip NDJSON batches
// the way the real one does and keeps what it received.
type collectorStub struct {
	srv *httptest.Server

	mu        sync.Mutex
	batches   [][]Record
	dropped   []string // Llmtap-Dropped header of each batch
	active    []string // Llmtap-Active-Streams header of each POST, empty batches too
	auth      []string
	status    int // answer; 0 means 202
	hold      chan struct{}
	checks    []LimitCheck     // the limit checks received
	checkAuth []string         // their Authorization header
	decide    http.HandlerFunc // answers limit checks, after their body is read
}

func newCollectorStub(t *testing.T) *collectorStub {
	c := &collectorStub{}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(func() { c.srv.Close() })
	return c
}

func (c *collectorStub) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == LimitsCheckPath {
		c.check(w, r)
		return
	}
	if c.hold != nil {
		<-c.hold
	}
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	c.mu.Lock()
	c.active = append(c.active, r.Header.Get(HeaderActiveStreams))
	c.mu.Unlock()
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var batch []Record
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		batch = append(batch, rec)
	}
	c.mu.Lock()
	c.batches = append(c.batches, batch)
	c.dropped = append(c.dropped, r.Header.Get(HeaderDropped))
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	c.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// check keeps a limit check and has decide answer it.
func (c *collectorStub) check(w http.ResponseWriter, r *http.Request) {
	var chk LimitCheck
	if err := json.NewDecoder(r.Body).Decode(&chk); err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad limit check", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.checks = append(c.checks, chk)
	c.checkAuth = append(c.checkAuth, r.Header.Get("Authorization"))
	decide := c.decide
	c.mu.Unlock()
	if decide == nil {
		http.Error(w, "no decision set", http.StatusInternalServerError)
		return
	}
	decide(w, r)
}

// onCheck sets how limit checks are answered.
func (c *collectorStub) onCheck(decide http.HandlerFunc) {
	c.mu.Lock()
	c.decide = decide
	c.mu.Unlock()
}

func (c *collectorStub) setStatus(code int) {
	c.mu.Lock()
	c.status = code
	c.mu.Unlock()
}

// records waits until n records arrived and returns them all.
func (c *collectorStub) records(t *testing.T, n int) []Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		var all []Record
		for _, b := range c.batches {
			all = append(all, b...)
		}
		c.mu.Unlock()
		if len(all) >= n {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector got %d records, want %d", len(all), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testSettings returns validated defaults pointing at url, changed by change.
func testSettings(t *testing.T, url string, change func(c *Config)) *settings {
	t.Helper()
	c := CreateConfig()
	c.CollectorURL = url
	c.FlushInterval = "20ms"
	if change != nil {
		change(c)
	}
	s, err := c.validate("test-route")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startSender runs a sender owned by the test: it is stopped, and its queue
// drained, when the test ends.
func startSender(t *testing.T, s *settings) *sender {
	t.Helper()
	return startSenderLog(t, s, discardLogger())
}

// startSenderLog is startSender with the sender's logger.
func startSenderLog(t *testing.T, s *settings, log *slog.Logger) *sender {
	t.Helper()
	sd := newSender(s, log)
	sd.backoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	sd.start(ctx)
	t.Cleanup(func() {
		cancel()
		<-sd.done
	})
	return sd
}

// tapped serves handler behind the middleware on a real HTTP server.
func tapped(t *testing.T, s *settings, sd *sender, handler http.Handler) *httptest.Server {
	t.Helper()
	// Assigned to the interface first: Yaegi wraps an interpreted type for the
	// standard library only when it is converted to an interface it knows.
	var h http.Handler = &idOnly{next: handler}
	if sd != nil {
		h = &Middleware{next: handler, set: s, sender: sd, pending: sd.pending}
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// hand gives a sender a finished observation as a request does: counted as
// pending when it begins (ServeHTTP), then finished.
func hand(sd *sender, c *captureWriter) {
	atomic.AddInt64(sd.pending, 1)
	finish(sd, c)
}
