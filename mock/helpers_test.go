package mock_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/mock"
)

// fast is a server that does not wait: no TTFT, no gap, 4 tokens.
var fast = mock.Options{TTFT: -1, Gap: -1, Tokens: 4}

// start serves a mock on a real connection (drop needs one).
func start(t *testing.T, o mock.Options) (*mock.Server, string) {
	t.Helper()
	s := mock.New(o)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// result is a response and its body as far as it could be read.
type result struct {
	resp    *http.Response
	body    []byte
	readErr error
	id      string // the X-Request-Id the mock answered with
}

// post sends body to url with headers given as name, value pairs, and
// reads the whole response. A failed request fails the test.
func post(t *testing.T, url, body string, header ...string) result {
	t.Helper()
	r, err := send(context.Background(), http.MethodPost, url, body, header...)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return r
}

func send(ctx context.Context, method, url, body string, header ...string) (result, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp: resp, body: b, readErr: err, id: resp.Header.Get(mock.HeaderRequestID)}, nil
}

// truth returns the truth of the request r, failing the test without one.
func truth(t *testing.T, s *mock.Server, r result) mock.Truth {
	t.Helper()
	tr, ok := s.Truth(r.id)
	if !ok {
		t.Fatalf("no truth for request %q", r.id)
	}
	return tr
}

// checkReceived checks that the truth's bytes and hash are those the
// client received.
func checkReceived(t *testing.T, tr mock.Truth, body []byte) {
	t.Helper()
	sum := sha256.Sum256(body)
	if tr.Bytes != int64(len(body)) || tr.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("truth bytes %d sha256 %s; the client received %d bytes, sha256 %x", tr.Bytes, tr.SHA256, len(body), sum)
	}
}

// event is one server-sent event.
type event struct {
	name string
	data string
}

// parseSSE splits an event stream into events; every line must be an
// event: or data: line, and every event end with a blank line.
func parseSSE(t *testing.T, body []byte) []event {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("event stream does not end with a blank line: %q", tail(s))
	}
	var events []event
	for _, block := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		var ev event
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event: ") && ev.name == "":
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && ev.data == "":
				ev.data = strings.TrimPrefix(line, "data: ")
			default:
				t.Fatalf("unexpected line %q in event %q", line, block)
			}
		}
		events = append(events, ev)
	}
	return events
}

// decodeStrict decodes one JSON document into v; any trailing data fails.
func decodeStrict(t *testing.T, data string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, data)
	}
	if dec.More() {
		t.Fatalf("trailing data after JSON: %s", data)
	}
}

// text is the generated text of n tokens.
func text(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("tok" + strconv.Itoa(i) + " ")
	}
	return b.String()
}

func tail(s string) string {
	if len(s) > 80 {
		return "…" + s[len(s)-80:]
	}
	return s
}

// flushRecorder is a ResponseWriter that keeps what each Flush pushed.
type flushRecorder struct {
	header  http.Header
	status  int
	pending bytes.Buffer
	flushes []string
}

func newFlushRecorder() *flushRecorder { return &flushRecorder{header: http.Header{}} }

func (f *flushRecorder) Header() http.Header { return f.header }

func (f *flushRecorder) WriteHeader(status int) {
	if f.status == 0 {
		f.status = status
	}
}

func (f *flushRecorder) Write(p []byte) (int, error) {
	f.WriteHeader(http.StatusOK)
	return f.pending.Write(p)
}

func (f *flushRecorder) Flush() {
	f.flushes = append(f.flushes, f.pending.String())
	f.pending.Reset()
}

// since is the duration from a wall-clock Unix ns time a to b.
func since(a, b int64) time.Duration { return time.Duration(b - a) }
