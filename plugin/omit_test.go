package llmtap

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestOmitHeader: the omit header never reaches the upstream, and the
// record says whether the client asked for its bodies to stay out of the
// store; with no header configured it is an ordinary header.
func TestOmitHeader(t *testing.T) {
	for _, tt := range []struct {
		name, header, value string
		configured          string
		omitted, upstream   bool
	}{
		{"asked", "X-Llmtap-Omit-Bodies", "1", DefaultOmitHeader, true, false},
		{"asked, true", "x-llmtap-omit-bodies", "TRUE", DefaultOmitHeader, true, false},
		{"another value", "X-Llmtap-Omit-Bodies", "0", DefaultOmitHeader, false, false},
		{"not asked", "X-Other", "1", DefaultOmitHeader, false, false},
		{"feature off", "X-Llmtap-Omit-Bodies", "1", "", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			col := newCollectorStub(t)
			s := testSettings(t, col.srv.URL, func(c *Config) { c.OmitHeader = tt.configured })
			var mu sync.Mutex
			var seen http.Header
			srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = r.Header.Clone()
				mu.Unlock()
				_, _ = io.WriteString(w, "ok")
			}))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
			req.Header.Set(tt.header, tt.value)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			_, reached := seen[http.CanonicalHeaderKey(DefaultOmitHeader)]
			mu.Unlock()
			if reached != tt.upstream {
				t.Errorf("the header reached the upstream: %v, want %v", reached, tt.upstream)
			}
			if r := col.records(t, 1)[0]; r.BodiesOmitted != tt.omitted {
				t.Errorf("record bodies_omitted %v, want %v", r.BodiesOmitted, tt.omitted)
			}
		})
	}
}

// TestTraceparentRecorded: a traceparent of the right length is recorded
// (the collector joins its span to that trace); another is not; none is
// ever made.
func TestTraceparentRecorded(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tt := range []struct{ sent, want string }{
		{good, good},
		{good + "-extra", ""},
		{"", ""},
	} {
		col := newCollectorStub(t)
		s := testSettings(t, col.srv.URL, nil)
		srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}))
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
		if tt.sent != "" {
			req.Header.Set("Traceparent", tt.sent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if r := col.records(t, 1)[0]; r.TraceParent != tt.want {
			t.Errorf("sent %q: recorded %q, want %q", tt.sent, r.TraceParent, tt.want)
		}
	}
}
