package mock_test

import (
	"bufio"
	"context"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/llmtap/llmtap/mock"
)

func TestTruthByRequestID(t *testing.T) {
	s, url := start(t, fast)

	t.Run("the client's id", func(t *testing.T) {
		r := post(t, url+"/v1/chat/completions", `{"stream":true}`, mock.HeaderRequestID, "client-id-1")
		if r.id != "client-id-1" {
			t.Errorf("X-Request-Id %q, want the client's", r.id)
		}
		tr, ok := s.Truth("client-id-1")
		if !ok || tr.RequestID != "client-id-1" {
			t.Fatalf("truth %+v (found %v)", tr, ok)
		}
		checkReceived(t, tr, r.body)

		// The same truth over HTTP, in snake_case.
		g, err := send(context.Background(), http.MethodGet, url+"/mock/truth/client-id-1", "")
		if err != nil || g.resp.StatusCode != http.StatusOK {
			t.Fatalf("GET truth: %v %v", g.resp, err)
		}
		var fromHTTP mock.Truth
		decodeStrict(t, string(g.body), &fromHTTP)
		if fromHTTP != tr {
			t.Errorf("over HTTP %+v, in process %+v", fromHTTP, tr)
		}
		var fields map[string]any
		decodeStrict(t, string(g.body), &fields)
		var keys []string
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := "bytes cancelled done_unix_ns dropped endpoint first_byte_unix_ns first_token_unix_ns input_tokens " +
			"output_tokens received_unix_ns request_id sha256 status ttfa_us ttft_us"
		if got := strings.Join(keys, " "); got != want {
			t.Errorf("JSON fields\n%s, want\n%s", got, want)
		}
	})

	t.Run("a made id", func(t *testing.T) {
		r := post(t, url+"/v1/messages", `{}`)
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(r.id) {
			t.Fatalf("X-Request-Id %q, want 32 hex digits", r.id)
		}
		checkReceived(t, truth(t, s, r), r.body)
	})

	t.Run("unknown", func(t *testing.T) {
		if tr, ok := s.Truth("never-seen"); ok {
			t.Errorf("a truth for an unknown id: %+v", tr)
		}
	})
}

func TestMaxTruths(t *testing.T) {
	o := fast
	o.MaxTruths = 3
	s, url := start(t, o)
	for _, id := range []string{"a", "b", "a", "c", "d"} {
		post(t, url+"/v1/chat/completions", `{}`, mock.HeaderRequestID, id)
	}
	// c forgets the oldest slot, a's first truth, which a's second has
	// replaced: a stays. d forgets b.
	for id, kept := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok := s.Truth(id); ok != kept {
			t.Errorf("truth of %s kept %v, want %v", id, ok, kept)
		}
	}
}

func TestTruthCancelled(t *testing.T) {
	s, url := start(t, mock.Options{TTFT: -1, Gap: -1, Tokens: 50})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions?gap=20ms", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(mock.HeaderRequestID, "leaves-early")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for n := 0; n < 2 && sc.Scan(); {
		if strings.Contains(sc.Text(), `"content":"tok`) {
			n++
		}
	}
	cancel()

	tr, ok := s.Truth("leaves-early")
	if !ok || !tr.Cancelled || tr.Dropped || tr.OutputTokens < 2 || tr.OutputTokens >= 50 || tr.Status != http.StatusOK {
		t.Errorf("truth %+v (found %v): want cancelled after 2 to 49 tokens", tr, ok)
	}
}
