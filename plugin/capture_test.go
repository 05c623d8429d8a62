package llmtap

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCaptureWriter(t *testing.T) {
	tests := []struct {
		desc        string
		maxResponse int
		maxWrites   int
		kinds       []string
		header      map[string]string
		status      int // 0: no explicit WriteHeader
		writes      []string

		wantStatus    int
		wantFlushed   bool
		wantHead      string
		wantTail      string
		wantTailOff   int64
		wantTrunc     bool
		wantEnds      []int64
		wantDropped   int
		wantNotCapted string
	}{
		{
			desc:   "small json fits whole, not flushed",
			header: map[string]string{"Content-Type": "application/json", "Content-Length": "13"},
			status: 200, writes: []string{`{"a":1,`, `"b":2}`},
			maxResponse: 64, maxWrites: 10,
			wantStatus: 200, wantHead: `{"a":1,"b":2}`, wantEnds: []int64{7, 13},
		},
		{
			desc:        "sse is flushed after every write",
			header:      map[string]string{"Content-Type": "text/event-stream"},
			writes:      []string{"data: 1\n\n", "data: 2\n\n", "data: [DONE]\n\n"},
			maxResponse: 1024, maxWrites: 10,
			wantStatus: 200, wantFlushed: true, wantHead: "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n", wantEnds: []int64{9, 18, 32},
		},
		{
			desc:   "no content length is flushed",
			header: map[string]string{"Content-Type": "application/octet-stream"},
			status: 201, writes: []string{"ab", "cd"},
			maxResponse: 64, maxWrites: 10, kinds: []string{"other"},
			wantStatus: 201, wantFlushed: true, wantHead: "abcd", wantEnds: []int64{2, 4},
		},
		{
			desc:        "head and tail when the middle is cut",
			header:      map[string]string{"Content-Type": "text/event-stream"},
			writes:      []string{"0123", "4567", "89ab", "cdef", "ghij", "klmn", "op"},
			maxResponse: 8, maxWrites: 10,
			wantStatus: 200, wantFlushed: true, wantHead: "0123", wantTail: "mnop", wantTailOff: 22, wantTrunc: true,
			wantEnds: []int64{4, 8, 12, 16, 20, 24, 26},
		},
		{
			desc:        "exact fit: head and tail contiguous",
			header:      map[string]string{"Content-Type": "text/plain", "Content-Length": "8"},
			writes:      []string{"abcdefgh"},
			maxResponse: 8, maxWrites: 10,
			wantStatus: 200, wantHead: "abcd", wantTail: "efgh", wantTailOff: 4, wantEnds: []int64{8},
		},
		{
			desc:        "one large write keeps the last tail bytes",
			header:      map[string]string{"Content-Type": "text/plain", "Content-Length": "26"},
			writes:      []string{"abcdefghijklmnopqrstuvwxyz"},
			maxResponse: 6, maxWrites: 10,
			wantStatus: 200, wantHead: "abc", wantTail: "xyz", wantTailOff: 23, wantTrunc: true, wantEnds: []int64{26},
		},
		{
			desc:        "audio is counted, not captured",
			header:      map[string]string{"Content-Type": "audio/wav"},
			writes:      []string{"RIFF", "data"},
			maxResponse: 64, maxWrites: 10,
			wantStatus: 200, wantFlushed: true, wantEnds: []int64{4, 8}, wantNotCapted: "audio",
		},
		{
			desc:        "writes past the bound keep the final one",
			header:      map[string]string{"Content-Type": "text/event-stream"},
			writes:      []string{"a", "b", "c", "d", "e"},
			maxResponse: 64, maxWrites: 3,
			wantStatus: 200, wantFlushed: true, wantHead: "abcde", wantEnds: []int64{1, 2, 5}, wantDropped: 2,
		},
		{
			desc:   "error status",
			header: map[string]string{"Content-Type": "application/json", "Content-Length": "2"},
			status: 503, writes: []string{"{}"},
			maxResponse: 64, maxWrites: 10,
			wantStatus: 503, wantHead: "{}", wantEnds: []int64{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			kinds := tt.kinds
			if kinds == nil {
				kinds = []string{"json", "sse", "ndjson", "text"}
			}
			s := testSettings(t, "", func(c *Config) {
				c.MaxResponseBodyBytes = tt.maxResponse
				c.MaxWrites = tt.maxWrites
				c.CaptureBodies = kinds
			})
			fr := httptest.NewRecorder()
			cw := &captureWriter{rw: fr, h: fr.Header(), req: httptest.NewRequest(http.MethodGet, "/", nil), start: time.Now(), set: s, active: new(int64), rec: &Record{}}
			cw.rec.RequestID = "id-1"
			for k, v := range tt.header {
				cw.Header().Set(k, v)
			}
			if tt.status != 0 {
				cw.WriteHeader(tt.status)
			}
			var all bytes.Buffer
			for _, w := range tt.writes {
				n, err := cw.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
				all.WriteString(w)
			}
			cw.returned = true
			r := observed(t, cw)
			if n := atomic.LoadInt64(cw.active); n != 0 {
				t.Errorf("%d streams still counted active after finish", n)
			}

			if got := fr.Body.String(); got != all.String() {
				t.Errorf("client got %q, want %q", got, all.String())
			}
			if fr.Header().Get(HeaderRequestID) != "id-1" {
				t.Errorf("client got request id %q", fr.Header().Get(HeaderRequestID))
			}
			if r.Status != tt.wantStatus || fr.Code != tt.wantStatus {
				t.Errorf("status record %d client %d, want %d", r.Status, fr.Code, tt.wantStatus)
			}
			// Per-write flushing is proven on a real server by TestStreamingArrivesEventByEvent.
			if fr.Flushed != tt.wantFlushed || r.Streaming != tt.wantFlushed {
				t.Errorf("flushed %v streaming %v, want %v", fr.Flushed, r.Streaming, tt.wantFlushed)
			}
			if r.ResponseBytes != int64(all.Len()) {
				t.Errorf("bytes %d, want %d", r.ResponseBytes, all.Len())
			}
			if string(r.ResponseHead) != tt.wantHead || string(r.ResponseTail) != tt.wantTail || r.ResponseTailOffset != tt.wantTailOff {
				t.Errorf("head %q tail %q@%d, want %q %q@%d", r.ResponseHead, r.ResponseTail, r.ResponseTailOffset, tt.wantHead, tt.wantTail, tt.wantTailOff)
			}
			if r.ResponseTruncated != tt.wantTrunc {
				t.Errorf("truncated %v, want %v", r.ResponseTruncated, tt.wantTrunc)
			}
			if r.BodyNotCaptured != tt.wantNotCapted {
				t.Errorf("body not captured %q, want %q", r.BodyNotCaptured, tt.wantNotCapted)
			}
			if !equalInts(r.WriteEnds, tt.wantEnds) || r.WritesDropped != tt.wantDropped {
				t.Errorf("write ends %v dropped %d, want %v %d", r.WriteEnds, r.WritesDropped, tt.wantEnds, tt.wantDropped)
			}
			if len(r.WriteNs) != len(r.WriteEnds) {
				t.Fatalf("%d write times for %d writes", len(r.WriteNs), len(r.WriteEnds))
			}
			for i := 1; i < len(r.WriteNs); i++ {
				if r.WriteNs[i] < r.WriteNs[i-1] || r.WriteNs[i-1] < r.HeaderNs {
					t.Errorf("write times not ordered: header %d writes %v", r.HeaderNs, r.WriteNs)
				}
			}
		})
	}
}

// TestCaptureTimeOffsets checks write times against real elapsed time.
func TestCaptureTimeOffsets(t *testing.T) {
	s := testSettings(t, "", nil)
	fr := httptest.NewRecorder()
	start := time.Now()
	cw := &captureWriter{rw: fr, h: fr.Header(), req: httptest.NewRequest(http.MethodGet, "/", nil), start: start, set: s, active: new(int64), rec: &Record{}}
	cw.Header().Set("Content-Type", "text/event-stream")
	time.Sleep(30 * time.Millisecond)
	_, _ = cw.Write([]byte("data: a\n\n"))
	time.Sleep(30 * time.Millisecond)
	_, _ = cw.Write([]byte("data: b\n\n"))
	cw.returned = true
	r := observed(t, cw)
	ms30 := int64(30 * time.Millisecond)
	if r.WriteNs[0] < ms30 || r.WriteNs[1]-r.WriteNs[0] < ms30 {
		t.Errorf("write times %v ns, want the first at >= 30ms and 30ms apart", r.WriteNs)
	}
	if now := int64(time.Since(start)); r.WriteNs[1] > now {
		t.Errorf("write time %d after now %d", r.WriteNs[1], now)
	}
}

func TestCaptureInformationalStatus(t *testing.T) {
	s := testSettings(t, "", nil)
	fr := httptest.NewRecorder()
	cw := &captureWriter{rw: fr, h: fr.Header(), req: httptest.NewRequest(http.MethodGet, "/", nil), start: time.Now(), set: s, active: new(int64), rec: &Record{}}
	cw.WriteHeader(http.StatusEarlyHints)
	cw.WriteHeader(http.StatusOK)
	cw.returned = true
	r := observed(t, cw)
	if r.Status != http.StatusOK {
		t.Errorf("status %d, want the final 200", r.Status)
	}
}

func TestHijackUnsupported(t *testing.T) {
	cw := &captureWriter{rw: httptest.NewRecorder(), start: time.Now(), set: testSettings(t, "", nil), active: new(int64), rec: &Record{}}
	if _, _, err := cw.Hijack(); err == nil || !strings.Contains(err.Error(), "cannot hijack") {
		t.Errorf("Hijack error %v", err)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// observed finishes an observation as ServeHTTP does and returns its record.
func observed(t *testing.T, c *captureWriter) *Record {
	t.Helper()
	sd := newSender(testSettings(t, "http://127.0.0.1:1", nil), discardLogger())
	finish(sd, c)
	select {
	case got := <-sd.queue:
		return record(got)
	default:
		t.Fatal("finish queued nothing")
		return nil
	}
}

// TestConcurrentFinishQueuesEachRecordOnce: records finished by many
// goroutines at once are queued once each, and what does not fit is
// counted as dropped, never lost. Under Yaegi v0.16 a select with a
// default used to send another goroutine's record now and then.
func TestConcurrentFinishQueuesEachRecordOnce(t *testing.T) {
	const workers, each = 32, 500
	s := testSettings(t, "http://127.0.0.1:1", func(c *Config) { c.QueueSize = workers * each * 3 / 4 })
	sd := newSender(s, discardLogger())
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c := &captureWriter{req: req, set: s, active: sd.active, returned: true,
					rec: &Record{RequestID: strconv.Itoa(w*each + i), Status: http.StatusOK}}
				finish(sd, c)
			}
		}(w)
	}
	wg.Wait()
	seen := map[string]bool{}
	for len(sd.queue) > 0 {
		c := <-sd.queue
		if seen[c.rec.RequestID] {
			t.Fatalf("record %s queued twice", c.rec.RequestID)
		}
		seen[c.rec.RequestID] = true
	}
	if got := len(seen) + int(atomic.LoadInt64(&sd.dropped)); got != workers*each {
		t.Fatalf("%d queued + %d dropped = %d, want %d", len(seen), sd.dropped, got, workers*each)
	}
	if len(seen) != s.queueSize {
		t.Fatalf("%d queued, want the queue full (%d)", len(seen), s.queueSize)
	}
}
