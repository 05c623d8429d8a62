//go:build !yaegi
// +build !yaegi

package llmtap

import (
	"io"
	"net/http"
	"testing"
)

// TestAbortIsRecorded: a handler that panics with http.ErrAbortHandler, as
// Go's reverse proxy does when a streamed body breaks off, still gets its
// record. Compiled only (scripts/yaegi-test.sh sets the yaegi tag, and
// Yaegi v0.16 reads only the old +build line): an
// interpreted handler's panic is not what Traefik's compiled proxy raises;
// the real one is covered in e2e by TestUpstreamBreakingOffIsRecorded.
func TestAbortIsRecorded(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		panic(http.ErrAbortHandler)
	}))
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // fails: the body was cut
	_ = resp.Body.Close()
	r := col.records(t, 1)[0]
	if r.Outcome != OutcomeAborted || r.Status != 200 || r.ResponseBytes != 9 {
		t.Errorf("outcome %q status %d bytes %d, want %q 200 9", r.Outcome, r.Status, r.ResponseBytes, OutcomeAborted)
	}
}
