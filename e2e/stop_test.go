//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/llmtap/llmtap/internal/stack"
)

// TestTraefikStopSendsWhatIsHeld: Traefik told to stop (SIGTERM) while a
// stream is still running. The records waiting for their batch (a flush
// interval of an hour) reach the collector while Traefik lets the stream
// end, and Traefik then ends as it always does.
func TestTraefikStopSendsWhatIsHeld(t *testing.T) {
	s := stack.New(t)
	col := newCollector()
	t.Cleanup(col.srv.Close)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/held" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: last\n\n")
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	tr := tapTraefik(s, "stop", col.srv.URL, up.URL, "flushInterval: 1h", "batchSize: 1000")
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path, id string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, tr.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "stop.test"
		req.Header.Set("X-Request-Id", id)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	const n = 50
	for i := 0; i < n; i++ {
		resp := get("/json", fmt.Sprintf("before-stop-%02d", i))
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	held := get("/held", "held-over-stop")
	defer held.Body.Close()
	body := bufio.NewReader(held.Body)
	first, err := body.ReadString('\n')
	if err != nil || first != "data: first\n" {
		t.Fatalf("the held stream began with %q, %v", first, err)
	}
	if early := col.sink.Len(); early != 0 {
		t.Fatalf("%d records reached the collector before the stop, want none (the flush interval is an hour)", early)
	}

	if err := tr.Process().Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		col.record(t, fmt.Sprintf("before-stop-%02d", i))
	}
	close(release)
	rest, err := io.ReadAll(body)
	if err != nil || string(rest) != "\ndata: last\n\n" {
		t.Errorf("the stream held over the stop ended with %q, %v", rest, err)
	}
	select {
	case <-tr.Process().Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("Traefik still runs 30 s after SIGTERM and the last stream's end")
	}
	if code := tr.Process().ExitCode(); code != 0 {
		t.Errorf("Traefik exited with %d, want 0", code)
	}
	logText, err := tr.Log()
	if err != nil {
		t.Fatal(err)
	}
	if bad := unexpectedErrors(logText); len(bad) > 0 {
		t.Errorf("Traefik logged errors while stopping:\n%s", bytes.Join(bad, []byte("\n")))
	}
}
