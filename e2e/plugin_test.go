//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// arrivals reads a line-delimited stream and returns when each non-empty
// line arrived, counted from start, and the lines, for a failure to show.
func arrivals(t *testing.T, body io.Reader, start time.Time) ([]time.Duration, []string) {
	t.Helper()
	var at []time.Duration
	var lines []string
	br := bufio.NewReader(body)
	for {
		line, err := br.ReadString('\n')
		if strings.TrimSpace(line) != "" {
			at = append(at, time.Since(start))
			lines = append(lines, line)
		}
		if err != nil {
			if err != io.EOF {
				t.Logf("the stream ended after %d lines, %v in: %v", len(at), time.Since(start), err)
			}
			return at, lines
		}
	}
}

// TestStreamsArriveEventByEvent: every event through the plugin arrives
// within 20 ms of the same event through the bare route.
func TestStreamsArriveEventByEvent(t *testing.T) {
	for _, path := range []string{"/sse", "/ndjson"} {
		t.Run(path, func(t *testing.T) {
			timing := map[string][]time.Duration{}
			ids := map[string]string{}
			for _, host := range []string{"bare.test", "tap.test"} {
				start := time.Now()
				resp := send(t, host, http.MethodPost, path, strings.NewReader(`{"model":"m","stream":true}`))
				if resp.StatusCode != http.StatusOK {
					body, _ := io.ReadAll(resp.Body)
					t.Fatalf("%s: %s %q", host, resp.Status, body)
				}
				var lines []string
				timing[host], lines = arrivals(t, resp.Body, start)
				resp.Body.Close()
				ids[host] = resp.Header.Get("X-Request-Id")
				if n := len(timing[host]); n != streamEvents {
					t.Fatalf("%s: %d events in %v, want %d; headers %v, lines %q", host, n, time.Since(start), streamEvents, resp.Header, lines)
				}
			}
			for i := 0; i < streamEvents; i++ {
				bare, tap := timing["bare.test"][i], timing["tap.test"][i]
				t.Logf("event %d: bare %v, plugin %v (diff %v)", i, bare.Round(time.Millisecond), tap.Round(time.Millisecond), (tap - bare).Round(100*time.Microsecond))
				if d := absDur(tap - bare); d > 20*time.Millisecond {
					t.Errorf("event %d arrived %v through the plugin vs %v bare: %v apart, want within 20ms", i, tap, bare, d)
				}
				if i > 0 && timing["tap.test"][i]-timing["tap.test"][i-1] < streamGap/2 {
					t.Errorf("event %d came with the previous one: the plugin held the stream back", i)
				}
			}

			rec := env.collector.record(t, ids["tap.test"])
			if rec.Status != 200 || rec.Outcome != llmtap.OutcomeCompleted || !rec.Streaming || rec.Route != "e2e" {
				t.Errorf("record status %d outcome %q streaming %v route %q", rec.Status, rec.Outcome, rec.Streaming, rec.Route)
			}
			if len(rec.WriteNs) != streamEvents || rec.WriteEnds[len(rec.WriteEnds)-1] != rec.ResponseBytes {
				t.Fatalf("record writes %v ends %v bytes %d, want %d writes", rec.WriteNs, rec.WriteEnds, rec.ResponseBytes, streamEvents)
			}
			if int64(len(rec.ResponseHead)) != rec.ResponseBytes || rec.ResponseTruncated {
				t.Errorf("captured %d of %d bytes", len(rec.ResponseHead), rec.ResponseBytes)
			}
			// Each write's end offset is where an event ends in the body.
			lines := strings.SplitAfter(string(rec.ResponseHead), "\n")
			var off int64
			j := 0
			for _, l := range lines {
				off += int64(len(l))
				if strings.TrimSpace(l) == "" && path == "/sse" || path == "/ndjson" && l != "" {
					if j < len(rec.WriteEnds) && off == rec.WriteEnds[j] {
						j++
					}
				}
			}
			if j != streamEvents {
				t.Errorf("write ends %v do not fall on the %d event boundaries of %q", rec.WriteEnds, streamEvents, rec.ResponseHead)
			}
			// The recorded time to first byte matches what the client saw.
			ttfb := time.Duration(rec.WriteNs[0])
			t.Logf("record: time to first byte %v, client saw %v", ttfb, timing["tap.test"][0])
			if d := absDur(ttfb - timing["tap.test"][0]); d > 20*time.Millisecond {
				t.Errorf("recorded first byte at %v, client saw it at %v", ttfb, timing["tap.test"][0])
			}
			gap := time.Duration(rec.WriteNs[streamEvents-1] - rec.WriteNs[0])
			if want := (streamEvents - 1) * streamGap; absDur(gap-want) > 20*time.Millisecond {
				t.Errorf("recorded first-to-last write %v, want about %v", gap, want)
			}
			if string(rec.RequestBody) != `{"model":"m","stream":true}` {
				t.Errorf("request body %q", rec.RequestBody)
			}
		})
	}
}

func TestBinaryBodyIsByteIdentical(t *testing.T) {
	resp := send(t, "tap.test", http.MethodGet, "/binary", nil)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(env.upstream.binary) {
		t.Fatalf("got %d bytes that differ from the upstream's %d", len(got), len(env.upstream.binary))
	}
	if resp.ContentLength != binarySize {
		t.Errorf("Content-Length %d, want %d", resp.ContentLength, binarySize)
	}
	rec := env.collector.record(t, resp.Header.Get("X-Request-Id"))
	if rec.ResponseBytes != binarySize || rec.BodyNotCaptured != "other" || rec.Streaming {
		t.Errorf("record bytes %d not captured %q streaming %v", rec.ResponseBytes, rec.BodyNotCaptured, rec.Streaming)
	}
}

func TestJSONKeepsHeadersAndLength(t *testing.T) {
	bare := send(t, "bare.test", http.MethodGet, "/json", nil)
	bareBody, _ := io.ReadAll(bare.Body)
	bare.Body.Close()
	tap := send(t, "tap.test", http.MethodGet, "/json", nil)
	tapBody, _ := io.ReadAll(tap.Body)
	tap.Body.Close()
	if !bytes.Equal(bareBody, tapBody) {
		t.Errorf("body %q, bare %q", tapBody, bareBody)
	}
	for _, h := range []string{"Content-Type", "Content-Length", "X-Upstream", "Cache-Control"} {
		if tap.Header.Get(h) == "" || tap.Header.Get(h) != bare.Header.Get(h) {
			t.Errorf("header %s: %q through the plugin, %q bare", h, tap.Header.Get(h), bare.Header.Get(h))
		}
	}
	if tap.ContentLength != int64(len(bareBody)) || len(tap.TransferEncoding) != 0 {
		t.Errorf("content length %d transfer encoding %v: the response was re-framed", tap.ContentLength, tap.TransferEncoding)
	}
	id := tap.Header.Get("X-Request-Id")
	if len(tap.Header.Values("X-Request-Id")) != 1 {
		t.Errorf("X-Request-Id values %v", tap.Header.Values("X-Request-Id"))
	}
	rec := env.collector.record(t, id)
	if rec.Status != 200 || rec.ResponseBytes != int64(len(tapBody)) || string(rec.ResponseHead) != string(tapBody) || rec.Streaming {
		t.Errorf("record status %d bytes %d head %q streaming %v", rec.Status, rec.ResponseBytes, rec.ResponseHead, rec.Streaming)
	}
	if len(rec.WriteNs) == 0 || rec.WriteNs[0] < rec.HeaderNs || rec.DurationNs < rec.WriteNs[len(rec.WriteNs)-1] {
		t.Errorf("times: header %d writes %v duration %d", rec.HeaderNs, rec.WriteNs, rec.DurationNs)
	}
}

func TestRequestIDReachesUpstreamAndClient(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+env.entry+"/json", nil)
	req.Host = "tap.test"
	req.Header.Set("X-Request-Id", "client-chosen-id-42")
	// The router has no tenantHeader: a client's tenant header is ignored,
	// and the tenant is its key's.
	req.Header.Set("X-Tenant-ID", "acme")
	req.Header.Set("Authorization", "Bearer sk-e2e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "client-chosen-id-42" {
		t.Errorf("client got id %q", got)
	}
	rec := env.collector.record(t, "client-chosen-id-42")
	if rec.Tenant != llmtap.KeyTenant("Bearer sk-e2e") || rec.TenantSource != llmtap.TenantFromAPIKey {
		t.Errorf("tenant %q from %q", rec.Tenant, rec.TenantSource)
	}
	env.upstream.mu.Lock()
	seen := env.upstream.seenIDs["client-chosen-id-42"]
	env.upstream.mu.Unlock()
	if !seen {
		t.Error("the upstream never saw the request id")
	}
}

func TestWebsocketUpgradeRoundTrips(t *testing.T) {
	conn, err := net.Dial("tcp", env.entry)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: tap.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("upgrade answered %s accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	if err := writeFrame(conn, []byte("hello through traefik"), []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	echo, err := readFrame(br)
	if err != nil || string(echo) != "hello through traefik" {
		t.Fatalf("echo %q, %v", echo, err)
	}
}

// TestClientDisconnectCancelsUpstream: the client leaves mid-stream; the
// upstream's request context ends within 50 ms and the record says so.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.entry+"/endless", nil)
	req.Host = "tap.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	br := bufio.NewReader(resp.Body)
	for events := 0; events < 3; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data:") {
			events++
		}
	}
	left := time.Now()
	cancel()
	resp.Body.Close()

	var at time.Time
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		if at, ok = env.upstream.cancelledAt(id); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upstream never saw the cancellation")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("upstream cancelled %v after the client left", at.Sub(left))
	if d := at.Sub(left); d > 50*time.Millisecond {
		t.Errorf("upstream cancelled %v after the client left, want within 50ms", d)
	}
	rec := env.collector.record(t, id)
	if rec.Outcome != llmtap.OutcomeClientCancelled || rec.ResponseBytes == 0 {
		t.Errorf("record outcome %q bytes %d, want %q", rec.Outcome, rec.ResponseBytes, llmtap.OutcomeClientCancelled)
	}
}

// TestUpstreamBreakingOffIsRecorded: the upstream drops the connection
// mid-stream; the client gets what was sent and the record says aborted.
func TestUpstreamBreakingOffIsRecorded(t *testing.T) {
	resp := send(t, "tap.test", http.MethodGet, "/broken", nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("the client read a complete body from a broken stream")
	}
	if string(got) != "data: one\n\n" {
		t.Errorf("client got %q before the break", got)
	}
	rec := env.collector.record(t, resp.Header.Get("X-Request-Id"))
	if rec.Outcome != llmtap.OutcomeAborted || rec.Status != 200 || rec.ResponseBytes != int64(len(got)) {
		t.Errorf("record outcome %q status %d bytes %d", rec.Outcome, rec.Status, rec.ResponseBytes)
	}
}
