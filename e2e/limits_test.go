//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// checkTimeout is limits.timeout of every limits router in dynamicConfig.
const checkTimeout = 200 * time.Millisecond

const chatBody = `{"model":"gpt-e2e","messages":[{"role":"user","content":"hi"}],"max_tokens":42}`

// limitedRequest posts chatBody to /json through host as tenant, with the
// request id id, and returns the answer, its body and how long it took.
func limitedRequest(t *testing.T, host, tenant, id string) (*http.Response, string, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+env.entry+"/json", strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body), took
}

func upstreamSaw(id string) bool {
	env.upstream.mu.Lock()
	defer env.upstream.mu.Unlock()
	return env.upstream.seenIDs[id]
}

// TestLimitDeniedNeverReachesUpstream: a tenant over its limit gets the
// collector's 429, headers and body; the upstream never sees the request.
func TestLimitDeniedNeverReachesUpstream(t *testing.T) {
	resp, body, _ := limitedRequest(t, "limits.test", tenantOver, "e2e-limit-over")
	if resp.StatusCode != http.StatusTooManyRequests || body != denialBody {
		t.Errorf("answer %s %q, want 429 and the collector's body", resp.Status, body)
	}
	for k, want := range map[string]string{"Retry-After": "5", "RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "5", "Content-Type": "application/json", "X-Request-Id": "e2e-limit-over"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s %q, want %q", k, got, want)
		}
	}
	if upstreamSaw("e2e-limit-over") {
		t.Error("the upstream saw a denied request")
	}
	rec := env.collector.record(t, "e2e-limit-over")
	if rec.Outcome != llmtap.OutcomeLimited || rec.Limit != llmtap.LimitDenied || rec.Status != http.StatusTooManyRequests || rec.Route != "e2e-limits" {
		t.Errorf("record outcome %q limit %q status %d route %q", rec.Outcome, rec.Limit, rec.Status, rec.Route)
	}
	if string(rec.ResponseHead) != denialBody || rec.Tenant != tenantOver {
		t.Errorf("record head %q tenant %q", rec.ResponseHead, rec.Tenant)
	}
}

// TestLimitAllowedCarriesRateLimitHeaders: an allowed request reaches the
// upstream, the client sees the collector's RateLimit headers, and the
// check named the request's tenant and carried its body.
func TestLimitAllowedCarriesRateLimitHeaders(t *testing.T) {
	resp, body, _ := limitedRequest(t, "limits.test", "ok", "e2e-limit-ok")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "chatcmpl-1") {
		t.Fatalf("answer %s %q, want the upstream's", resp.Status, body)
	}
	for k, want := range map[string]string{"RateLimit-Limit": "100", "RateLimit-Remaining": "99", "RateLimit-Reset": "60", "X-Upstream": "mock"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s %q, want %q", k, got, want)
		}
	}
	if !upstreamSaw("e2e-limit-ok") {
		t.Error("the upstream never saw the allowed request")
	}
	chk, ok := env.collector.limitCheck("e2e-limit-ok")
	want := llmtap.LimitCheck{V: llmtap.CheckVersion, Tenant: "ok", Route: "e2e-limits", RequestID: "e2e-limit-ok", Body: json.RawMessage(chatBody), BodyBytes: int64(len(chatBody))}
	if !ok || !reflect.DeepEqual(chk, want) {
		t.Errorf("limit check %+v (made: %v), want %+v", chk, ok, want)
	}
	rec := env.collector.record(t, "e2e-limit-ok")
	if rec.Outcome != llmtap.OutcomeCompleted || rec.Limit != llmtap.LimitAllowed || rec.LimitReserved != int64(len(chatBody)) || rec.Status != 200 {
		t.Errorf("record outcome %q limit %q reserved %d status %d", rec.Outcome, rec.Limit, rec.LimitReserved, rec.Status)
	}
}

// TestLimitCheckTooSlow: the collector answers after the timeout; the
// fail-open router proxies, the fail-closed one answers 503, both within
// the timeout and a margin.
func TestLimitCheckTooSlow(t *testing.T) {
	tests := []struct {
		host        string
		wantStatus  int
		wantLimit   string
		wantOutcome string
		upstream    bool
	}{
		{host: "limits.test", wantStatus: http.StatusOK, wantLimit: llmtap.LimitFailedOpen, wantOutcome: llmtap.OutcomeCompleted, upstream: true},
		{host: "limits-closed.test", wantStatus: http.StatusServiceUnavailable, wantLimit: llmtap.LimitFailedClosed, wantOutcome: llmtap.OutcomeLimited},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			id := "e2e-slow-" + tt.host
			resp, body, took := limitedRequest(t, tt.host, tenantSlow, id)
			t.Logf("answered %s after %v (check timeout %v)", resp.Status, took.Round(time.Millisecond), checkTimeout)
			if took > checkTimeout+time.Second {
				t.Errorf("answered after %v, want within the %v timeout and a margin", took, checkTimeout)
			}
			if resp.StatusCode != tt.wantStatus || upstreamSaw(id) != tt.upstream {
				t.Errorf("answer %s %q, upstream saw it: %v", resp.Status, body, upstreamSaw(id))
			}
			if tt.wantStatus == http.StatusServiceUnavailable {
				if !strings.Contains(body, `"code":"limits_unavailable"`) || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("503 body %q Retry-After %q Content-Type %q", body, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
				}
			}
			rec := env.collector.record(t, id)
			if rec.Limit != tt.wantLimit || rec.Outcome != tt.wantOutcome || rec.Status != tt.wantStatus {
				t.Errorf("record limit %q outcome %q status %d", rec.Limit, rec.Outcome, rec.Status)
			}
		})
	}
}

// TestLimitCollectorDown: the router's collector is not there at all;
// failing open, every request is proxied, none waits past the timeout.
func TestLimitCollectorDown(t *testing.T) {
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("e2e-down-%d", i)
		resp, body, took := limitedRequest(t, "limits-down.test", "ok", id)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "chatcmpl-1") || !upstreamSaw(id) {
			t.Errorf("request %d: answer %s %q, upstream saw it: %v", i, resp.Status, body, upstreamSaw(id))
		}
		if took > checkTimeout+time.Second {
			t.Errorf("request %d answered after %v, want within the %v timeout and a margin", i, took, checkTimeout)
		}
		if resp.Header.Get("RateLimit-Limit") != "" {
			t.Errorf("request %d carries RateLimit headers without a check", i)
		}
	}
}

// TestUnexpectedErrors: the log check lets through only the plugin's
// expected complaints about a collector that is down or slow.
func TestUnexpectedErrors(t *testing.T) {
	log := []byte(`time=2026-11-25T19:19:04Z level=ERROR msg="llmtap: limits not checked; request proxied (limits.failureMode open)" err="connection refused"
2026-11-25T19:19:05Z ERR error="plugin: failed to build middleware" middlewareName=x
time=2026-11-25T19:19:06Z level=ERROR msg="llmtap: batch not delivered to the collector" records=3
panic: llmtap: limits not checked
2026-11-25T19:19:07Z DBG some debug line`)
	bad := unexpectedErrors(log)
	if len(bad) != 2 || !strings.Contains(string(bad[0]), "failed to build middleware") || !strings.HasPrefix(string(bad[1]), "panic") {
		t.Errorf("unexpected lines %q, want the ERR line and the panic", bad)
	}
}
