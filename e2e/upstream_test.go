//go:build e2e

package e2e

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

const (
	streamEvents = 5
	streamGap    = 200 * time.Millisecond
	binarySize   = 10 << 20
)

// upstream plays the LLM provider behind Traefik.
type upstream struct {
	srv    *httptest.Server
	binary []byte

	mu        sync.Mutex
	cancelled map[string]time.Time // request id -> when its context ended
	seenIDs   map[string]bool      // request ids that reached the upstream
}

func newUpstream() *upstream {
	u := &upstream{cancelled: map[string]time.Time{}, seenIDs: map[string]bool{}}
	u.binary = make([]byte, binarySize)
	rand.New(rand.NewSource(1)).Read(u.binary)
	mux := http.NewServeMux()
	mux.HandleFunc("/sse", u.stream("text/event-stream", "data: {\"choices\":[{\"delta\":{\"content\":\"tok%d\"}}]}\n\n"))
	mux.HandleFunc("/ndjson", u.stream("application/x-ndjson", "{\"message\":{\"content\":\"tok%d\"},\"done\":false}\n"))
	mux.HandleFunc("/binary", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(u.binary)))
		_, _ = w.Write(u.binary)
	})
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		u.seen(r)
		body := `{"id":"chatcmpl-1","usage":{"prompt_tokens":3,"completion_tokens":5}}`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("X-Upstream", "mock")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, body)
	})
	mux.HandleFunc("/endless", u.endless)
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		panic(http.ErrAbortHandler) // drops the connection mid-body
	})
	mux.HandleFunc("/ws", wsEcho)
	u.srv = httptest.NewServer(mux)
	return u
}

func (u *upstream) seen(r *http.Request) {
	u.mu.Lock()
	u.seenIDs[r.Header.Get("X-Request-Id")] = true
	u.mu.Unlock()
}

// stream sends streamEvents lines streamGap apart, flushing each.
func (u *upstream) stream(contentType, format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u.seen(r)
		w.Header().Set("Content-Type", contentType)
		for i := 0; i < streamEvents; i++ {
			if i > 0 {
				time.Sleep(streamGap)
			}
			_, _ = fmt.Fprintf(w, format, i)
			w.(http.Flusher).Flush()
		}
	}
}

// endless streams an event every 20 ms until the request is cancelled, and
// notes when that happened.
func (u *upstream) endless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			u.mu.Lock()
			u.cancelled[r.Header.Get("X-Request-Id")] = time.Now()
			u.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

func (u *upstream) cancelledAt(id string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	at, ok := u.cancelled[id]
	return at, ok
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wsEcho completes a websocket handshake and echoes one text frame.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "want a websocket upgrade", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	if rw.Flush() != nil {
		return
	}
	payload, err := readFrame(rw.Reader)
	if err != nil {
		return
	}
	_ = writeFrame(rw.Writer, payload, nil)
	_ = rw.Flush()
}

// writeFrame writes one final text frame, masked when mask is set (clients must mask).
func writeFrame(w io.Writer, payload, mask []byte) error {
	if len(payload) > 125 {
		return errors.New("frame too long for this test")
	}
	hdr := []byte{0x81, byte(len(payload))}
	body := append([]byte(nil), payload...)
	if mask != nil {
		hdr[1] |= 0x80
		hdr = append(hdr, mask...)
		for i := range body {
			body[i] ^= mask[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(hdr[1] & 0x7f)
	if n > 125 {
		return nil, fmt.Errorf("frame length %d too long for this test", n)
	}
	var mask []byte
	if hdr[1]&0x80 != 0 {
		mask = make([]byte, 4)
		if _, err := io.ReadFull(r, mask); err != nil {
			return nil, err
		}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	for i := range payload {
		if mask != nil {
			payload[i] ^= mask[i%4]
		}
	}
	return payload, nil
}
