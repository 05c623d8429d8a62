package llmtap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRecordOfEachOutcome(t *testing.T) {
	tests := []struct {
		desc        string
		handler     http.HandlerFunc
		wantStatus  int
		wantOutcome string
		wantBytes   int64
	}{
		{
			desc: "json completed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"usage":{"total_tokens":3}}`)
			},
			wantStatus: 200, wantOutcome: OutcomeCompleted, wantBytes: 28,
		},
		{
			desc: "upstream 5xx",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
			},
			wantStatus: 503, wantOutcome: OutcomeUpstreamError, wantBytes: 11,
		},
		{
			desc: "upstream 4xx",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "bad", http.StatusBadRequest)
			},
			wantStatus: 400, wantOutcome: OutcomeUpstreamError, wantBytes: 4,
		},
		{
			desc:       "no body",
			handler:    func(w http.ResponseWriter, r *http.Request) {},
			wantStatus: 0, wantOutcome: OutcomeCompleted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			col := newCollectorStub(t)
			s := testSettings(t, col.srv.URL, func(c *Config) { c.Tenant = "team-a" })
			srv := tapped(t, s, startSender(t, s), tt.handler)
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models?api_key=x", nil)
			req.Header.Set("User-Agent", "tester/1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body) // errors for the broken body
			_ = resp.Body.Close()
			r := col.records(t, 1)[0]
			if r.Status != tt.wantStatus || r.Outcome != tt.wantOutcome || r.ResponseBytes != tt.wantBytes {
				t.Errorf("status %d outcome %q bytes %d, want %d %q %d", r.Status, r.Outcome, r.ResponseBytes, tt.wantStatus, tt.wantOutcome, tt.wantBytes)
			}
			if r.RequestID == "" || r.RequestID != resp.Header.Get(HeaderRequestID) {
				t.Errorf("record id %q, client got %q", r.RequestID, resp.Header.Get(HeaderRequestID))
			}
			if r.Route != "test-route" || r.Tenant != "team-a" || r.TenantSource != TenantFromStatic || r.UserAgent != "tester/1" {
				t.Errorf("route %q tenant %q/%q ua %q", r.Route, r.Tenant, r.TenantSource, r.UserAgent)
			}
			if r.Path != "/v1/models" {
				t.Errorf("path %q, want no query string", r.Path)
			}
			if r.StartUnixNs <= 0 || r.DurationNs < 0 {
				t.Errorf("start %d duration %d", r.StartUnixNs, r.DurationNs)
			}
		})
	}
}

func TestRequestIDPassedUpstreamAndBack(t *testing.T) {
	s := testSettings(t, "", nil) // recording off still sets ids
	var upstreamID string
	srv := tapped(t, s, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamID = r.Header.Get(HeaderRequestID)
	}))
	for _, incoming := range []string{"", "client-id-1"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if incoming != "" {
			req.Header.Set(HeaderRequestID, incoming)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		got := resp.Header.Get(HeaderRequestID)
		if incoming == "" && !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
			t.Errorf("made id %q, want 32 hex digits", got)
		}
		if got == "" || got != upstreamID || (incoming != "" && got != incoming) {
			t.Errorf("incoming %q: upstream saw %q, client got %q", incoming, upstreamID, got)
		}
	}
}

// TestStreamingArrivesEventByEvent runs a real server: each SSE event must
// reach the client when the upstream writes it, not at the end.
func TestStreamingArrivesEventByEvent(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	const gap = 60 * time.Millisecond
	srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 4; i++ {
			if i > 0 {
				time.Sleep(gap)
			}
			// No Flush here: like Traefik's proxy under Yaegi, the handler
			// cannot see ours, so the plugin must flush by itself.
			_, _ = fmt.Fprintf(w, "data: {\"n\":%d}\n\n", i)
		}
	}))
	start := time.Now()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var arrivals []time.Duration
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "data: ") {
			arrivals = append(arrivals, time.Since(start))
		}
	}
	if len(arrivals) != 4 {
		t.Fatalf("%d events, want 4", len(arrivals))
	}
	for i := 1; i < len(arrivals); i++ {
		if d := arrivals[i] - arrivals[i-1]; d < gap/2 {
			t.Errorf("event %d arrived %v after the previous one: the stream was held back (arrivals %v)", i, d, arrivals)
		}
	}
	r := col.records(t, 1)[0]
	if !r.Streaming || len(r.WriteNs) != 4 || r.WriteEnds[3] != r.ResponseBytes {
		t.Errorf("streaming %v writes %v ends %v bytes %d", r.Streaming, r.WriteNs, r.WriteEnds, r.ResponseBytes)
	}
	if r.WriteNs[3]-r.WriteNs[0] < int64(3*gap)*9/10 {
		t.Errorf("write times %v do not span the 3 gaps of %v", r.WriteNs, gap)
	}
}

func TestClientCancelIsRecorded(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	upstreamDone := make(chan error, 1)
	srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		<-r.Context().Done()
		upstreamDone <- r.Context().Err()
		// As Traefik's proxy does when its copy fails.
		panic(http.ErrAbortHandler)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 13)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = resp.Body.Close()
	select {
	case err := <-upstreamDone:
		if err == nil {
			t.Error("upstream context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream never saw the cancellation")
	}
	r := col.records(t, 1)[0]
	if r.Outcome != OutcomeClientCancelled || r.ResponseBytes != 13 {
		t.Errorf("outcome %q bytes %d, want %q 13", r.Outcome, r.ResponseBytes, OutcomeClientCancelled)
	}
}

// TestClientLeavingAfterTheEndIsCompleted: a client that closes the
// connection once it has read a stream's end (SDKs do), before the proxy
// returned, did not cancel the request: a handler that returns, rather
// than panicking as Traefik's proxy does on a failed copy, wrote it all.
func TestClientLeavingAfterTheEndIsCompleted(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		// The plugin flushes each write of an event stream itself.
		_, _ = io.WriteString(w, "data: last\n\ndata: [DONE]\n\n")
		<-r.Context().Done() // the client has gone: then the proxy returns
	}))
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("data: last\n\ndata: [DONE]\n\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	r := col.records(t, 1)[0]
	if r.Outcome != OutcomeCompleted || r.ResponseBytes != int64(len(buf)) {
		t.Errorf("outcome %q bytes %d, want %q %d", r.Outcome, r.ResponseBytes, OutcomeCompleted, len(buf))
	}
}

// TestActiveStreamsReported: while a stream is open and no record is due,
// the sender posts empty batches saying one stream is active; once it
// ends, its record comes with zero.
func TestActiveStreamsReported(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	release := make(chan struct{})
	srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		<-release
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(srv.URL)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			col.mu.Lock()
			n := len(col.active)
			last := ""
			if n > 0 {
				last = col.active[n-1]
			}
			col.mu.Unlock()
			if last == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("last active streams report %q, want %q", last, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("1")
	close(release)
	<-done
	col.records(t, 1)
	waitFor("0")
}
