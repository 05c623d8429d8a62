package llmtap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	limitsBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":256}`
	upstreamOK = `{"id":"chatcmpl-1","usage":{"total_tokens":3}}`
	denialBody = `{"error":{"message":"tenant acme is over its limit","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}`
)

// syncBuffer is a log destination the test reads while servers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// limitsRig is a middleware with limits on in front of an upstream that
// counts its requests; records go to col, limit checks to checkURL's base.
type limitsRig struct {
	srv  string // the middleware's URL
	col  *collectorStub
	hits *int64 // requests that reached the upstream
	log  *syncBuffer
}

func newLimitsRig(t *testing.T, col *collectorStub, checkBase, mode, timeout string) *limitsRig {
	t.Helper()
	s := testSettings(t, checkBase, func(c *Config) {
		c.CollectorToken = "secret-token"
		c.Limits = LimitsConfig{Enabled: true, Timeout: timeout, FailureMode: mode}
	})
	rig := &limitsRig{col: col, hits: new(int64), log: &syncBuffer{}}
	var w io.Writer = rig.log
	sd := startSenderLog(t, testSettings(t, col.srv.URL, nil), slog.New(slog.NewTextHandler(w, nil)))
	hits := rig.hits
	rig.srv = tapped(t, s, sd, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(hits, 1)
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, upstreamOK)
	})).URL
	return rig
}

// send posts limitsBody as request id with the given headers.
func (rig *limitsRig) send(t *testing.T, id string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	return rig.sendBody(t, id, headers, strings.NewReader(limitsBody))
}

// sendBody is send with another body.
func (rig *limitsRig) sendBody(t *testing.T, id string, headers map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rig.srv+"/v1/chat/completions", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderRequestID, id)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(answer)
}

// TestLimitCheckCarriesTheBody: the check carries a JSON body read whole,
// and otherwise the body's length when it is known (at least the capture
// limit for a longer body of unknown length).
func TestLimitCheckCarriesTheBody(t *testing.T) {
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 70<<10) + `"}]}`
	for _, tt := range []struct {
		name string
		body io.Reader
		want LimitCheck
	}{
		{"JSON", strings.NewReader(limitsBody), LimitCheck{Body: json.RawMessage(limitsBody), BodyBytes: int64(len(limitsBody))}},
		{"not JSON", strings.NewReader("model=gpt-4o"), LimitCheck{BodyBytes: 12}},
		{"over the capture bound", strings.NewReader(big), LimitCheck{BodyBytes: int64(len(big))}},
		// A chunked body is read up to the capture limit before the check,
		// so that streaming it does not keep its prompt from being counted.
		{"length unknown", io.MultiReader(strings.NewReader(limitsBody)), LimitCheck{Body: json.RawMessage(limitsBody), BodyBytes: int64(len(limitsBody))}},
		{"length unknown, over the capture bound", io.MultiReader(strings.NewReader(big)), LimitCheck{BodyBytes: 64<<10 + 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			col := newCollectorStub(t)
			col.onCheck(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(HeaderDecision, DecisionAllow)
				w.WriteHeader(http.StatusOK)
			})
			rig := newLimitsRig(t, col, col.srv.URL, "closed", "2s")
			if resp, body := rig.sendBody(t, "req-body", nil, tt.body); resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.checks) != 1 {
				t.Fatalf("%d checks", len(col.checks))
			}
			got := col.checks[0]
			if !bytes.Equal(got.Body, tt.want.Body) || got.BodyBytes != tt.want.BodyBytes || got.Model != "" || got.Reserve != 0 {
				t.Errorf("check body %.40q (%d bytes) body_bytes %d model %q reserve %d, want %.40q body_bytes %d",
					got.Body, len(got.Body), got.BodyBytes, got.Model, got.Reserve, tt.want.Body, tt.want.BodyBytes)
			}
		})
	}
}

// TestChunkedBodyReachesTheUpstreamWhole: a body of unknown length read
// ahead of the check on a router with limits reaches the upstream byte
// for byte, whether it fits the capture limit or not, and the record
// counts all of it.
func TestChunkedBodyReachesTheUpstreamWhole(t *testing.T) {
	for _, size := range []int{100, 64 << 10, 64<<10 + 1, 300 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			body := strings.Repeat("x", size)
			col := newCollectorStub(t)
			col.onCheck(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(HeaderDecision, DecisionAllow)
				w.WriteHeader(http.StatusOK)
			})
			s := testSettings(t, col.srv.URL, func(c *Config) {
				c.Limits = LimitsConfig{Enabled: true, Timeout: "2s", FailureMode: "closed"}
			})
			sd := startSender(t, testSettings(t, col.srv.URL, nil))
			got := make(chan []byte, 1)
			srv := tapped(t, s, sd, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Error(err)
				}
				got <- b
			}))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", io.MultiReader(strings.NewReader(body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if b := <-got; string(b) != body {
				t.Fatalf("the upstream got %d bytes, want %d", len(b), size)
			}
			if r := col.records(t, 1)[0]; r.RequestBytes != int64(size) {
				t.Errorf("record request_bytes %d, want %d", r.RequestBytes, size)
			}
		})
	}
}

func TestLimitAllowed(t *testing.T) {
	col := newCollectorStub(t)
	col.onCheck(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderDecision, DecisionAllow)
		w.Header().Set(HeaderReserved, "256")
		w.Header().Set(HeaderReservation, "res-0123")
		w.Header().Set("RateLimit-Limit", "1000")
		w.Header().Set("RateLimit-Remaining", "744")
		w.Header().Set("RateLimit-Reset", "30")
		w.WriteHeader(http.StatusOK)
	})
	rig := newLimitsRig(t, col, col.srv.URL, "closed", "2s")
	resp, body := rig.send(t, "req-allowed", map[string]string{"Authorization": "Bearer sk-tenant-key"})

	if resp.StatusCode != http.StatusOK || body != upstreamOK || atomic.LoadInt64(rig.hits) != 1 {
		t.Fatalf("status %d body %q upstream hits %d, want the upstream's answer", resp.StatusCode, body, atomic.LoadInt64(rig.hits))
	}
	for k, want := range map[string]string{"RateLimit-Limit": "1000", "RateLimit-Remaining": "744", "RateLimit-Reset": "30"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("response %s %q, want %q", k, got, want)
		}
	}
	r := col.records(t, 1)[0]
	if r.Limit != LimitAllowed || r.LimitReserved != 256 || r.LimitReservation != "res-0123" || r.Outcome != OutcomeCompleted || r.Status != 200 {
		t.Errorf("record limit %q reserved %d (%q) outcome %q status %d", r.Limit, r.LimitReserved, r.LimitReservation, r.Outcome, r.Status)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.checks) != 1 {
		t.Fatalf("%d limit checks, want 1", len(col.checks))
	}
	chk := col.checks[0]
	want := LimitCheck{V: CheckVersion, Tenant: KeyTenant("Bearer sk-tenant-key"), Route: "test-route", RequestID: "req-allowed",
		Body: json.RawMessage(limitsBody), BodyBytes: int64(len(limitsBody))}
	if !reflect.DeepEqual(chk, want) {
		t.Errorf("check %+v, want %+v", chk, want)
	}
	if r.Tenant != chk.Tenant || r.TenantSource != TenantFromAPIKey {
		t.Errorf("record tenant %q from %q, the check named %q", r.Tenant, r.TenantSource, chk.Tenant)
	}
	if col.checkAuth[0] != "Bearer secret-token" {
		t.Errorf("check authorization %q", col.checkAuth[0])
	}
}

func TestLimitDenied(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			col := newCollectorStub(t)
			col.onCheck(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set(HeaderDecision, DecisionDeny)
				h.Set("Content-Type", "application/json")
				h.Set("Retry-After", "7")
				h.Set("RateLimit-Limit", "100")
				h.Set("RateLimit-Remaining", "0")
				h.Set("RateLimit-Reset", "7")
				w.WriteHeader(status)
				_, _ = io.WriteString(w, denialBody)
			})
			rig := newLimitsRig(t, col, col.srv.URL, "open", "2s")
			resp, body := rig.send(t, "req-denied", map[string]string{"Authorization": "Bearer sk-acme"})

			if resp.StatusCode != status || body != denialBody {
				t.Errorf("status %d body %q, want %d and the collector's body", resp.StatusCode, body, status)
			}
			for k, want := range map[string]string{"Retry-After": "7", "RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "7", "Content-Type": "application/json", HeaderRequestID: "req-denied"} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("response %s %q, want %q", k, got, want)
				}
			}
			if n := atomic.LoadInt64(rig.hits); n != 0 {
				t.Errorf("the upstream saw %d requests, want none", n)
			}
			r := col.records(t, 1)[0]
			if r.Outcome != OutcomeLimited || r.Limit != LimitDenied || r.Status != status || string(r.ResponseHead) != denialBody {
				t.Errorf("record outcome %q limit %q status %d head %q", r.Outcome, r.Limit, r.Status, r.ResponseHead)
			}
			if r.Tenant != KeyTenant("Bearer sk-acme") || r.TenantSource != TenantFromAPIKey || r.RequestBody == nil {
				t.Errorf("record tenant %q from %q, request body %q", r.Tenant, r.TenantSource, r.RequestBody)
			}
		})
	}
}

// closedPortURL returns a URL on which nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

// TestLimitCheckFailure: without a usable answer, the router's failure mode
// decides, within the check's timeout.
func TestLimitCheckFailure(t *testing.T) {
	const timeout = 100 * time.Millisecond
	causes := []struct {
		desc   string
		decide http.HandlerFunc
		down   bool // the check goes to a closed port
	}{
		{desc: "slow", decide: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			w.Header().Set(HeaderDecision, DecisionAllow)
		}},
		{desc: "unreachable", down: true},
		{desc: "no decision", decide: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		}},
		{desc: "error without decision", decide: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "limits store down", http.StatusInternalServerError)
		}},
		{desc: "deny with a status outside the contract", decide: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderDecision, DecisionDeny)
			w.WriteHeader(http.StatusOK)
		}},
	}
	for _, cause := range causes {
		for _, mode := range []string{"open", "closed"} {
			t.Run(cause.desc+" "+mode, func(t *testing.T) {
				col := newCollectorStub(t)
				col.onCheck(cause.decide)
				base := col.srv.URL
				if cause.down {
					base = closedPortURL(t)
				}
				rig := newLimitsRig(t, col, base, mode, timeout.String())
				start := time.Now()
				resp, body := rig.send(t, "req-"+mode, nil)
				if d := time.Since(start); d > timeout+time.Second {
					t.Errorf("answered after %v, want within the %v timeout and a margin", d, timeout)
				}
				r := col.records(t, 1)[0]
				hits := atomic.LoadInt64(rig.hits)
				if mode == "open" {
					if resp.StatusCode != http.StatusOK || body != upstreamOK || hits != 1 {
						t.Errorf("status %d body %q upstream hits %d, want the upstream's answer", resp.StatusCode, body, hits)
					}
					if r.Limit != LimitFailedOpen || r.Outcome != OutcomeCompleted {
						t.Errorf("record limit %q outcome %q", r.Limit, r.Outcome)
					}
				} else {
					if resp.StatusCode != http.StatusServiceUnavailable || body != limitsUnavailable || hits != 0 {
						t.Errorf("status %d body %q upstream hits %d, want 503 and no upstream request", resp.StatusCode, body, hits)
					}
					if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Content-Type") != "application/json" {
						t.Errorf("Retry-After %q Content-Type %q", resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
					}
					if r.Limit != LimitFailedClosed || r.Outcome != OutcomeLimited || r.Status != http.StatusServiceUnavailable {
						t.Errorf("record limit %q outcome %q status %d", r.Limit, r.Outcome, r.Status)
					}
				}
				logged := rig.log.String()
				if !strings.Contains(logged, "limits not checked") || !strings.Contains(logged, base+LimitsCheckPath) || strings.Contains(logged, "secret-token") {
					t.Errorf("log %q: want the failure with the collector URL, and never the token", logged)
				}
			})
		}
	}
}

// TestLimitCheckRefused: a 4xx from the check other than a denial (a bad
// token, a check the collector cannot read) is no missing answer: the
// request is answered 500 and never proxied, in both failure modes, so
// that no client can turn its limits off with a request the check cannot
// carry.
func TestLimitCheckRefused(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge} {
		for _, mode := range []string{"open", "closed"} {
			t.Run(fmt.Sprintf("%d %s", status, mode), func(t *testing.T) {
				col := newCollectorStub(t)
				col.onCheck(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(status)
					_, _ = io.WriteString(w, `{"error":"request_id: bad"}`)
				})
				rig := newLimitsRig(t, col, col.srv.URL, mode, "2s")
				resp, body := rig.send(t, "req-refused", nil)
				if hits := atomic.LoadInt64(rig.hits); resp.StatusCode != http.StatusInternalServerError || body != limitsRefused || hits != 0 {
					t.Errorf("status %d body %q upstream hits %d, want 500 and no upstream request", resp.StatusCode, body, hits)
				}
				r := col.records(t, 1)[0]
				if r.Limit != LimitFailedClosed || r.Outcome != OutcomeLimited || r.Status != http.StatusInternalServerError {
					t.Errorf("record limit %q outcome %q status %d", r.Limit, r.Outcome, r.Status)
				}
				if logged := rig.log.String(); !strings.Contains(logged, "refused a limit check") || !strings.Contains(logged, "request_id: bad") {
					t.Errorf("log %q: want the refusal and the collector's reason", logged)
				}
			})
		}
	}
}

// TestLimitCheckClientGone: a client that leaves during the check is
// neither answered nor proxied.
func TestLimitCheckClientGone(t *testing.T) {
	col := newCollectorStub(t)
	checking := make(chan struct{}, 1)
	col.onCheck(func(w http.ResponseWriter, r *http.Request) {
		checking <- struct{}{}
		<-r.Context().Done()
	})
	rig := newLimitsRig(t, col, col.srv.URL, "open", "5s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-checking
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rig.srv, strings.NewReader(limitsBody))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("answered %s, want the request cancelled", resp.Status)
	}
	r := col.records(t, 1)[0]
	if r.Outcome != OutcomeClientCancelled || r.Status != 0 || atomic.LoadInt64(rig.hits) != 0 {
		t.Errorf("record outcome %q status %d, upstream hits %d", r.Outcome, r.Status, atomic.LoadInt64(rig.hits))
	}
	if strings.Contains(rig.log.String(), "limits not checked") {
		t.Errorf("a client that left was logged as a collector failure: %s", rig.log.String())
	}
}

// TestNoLimitsNoCheck: with limits off, no check is made and the record
// says nothing of limits.
func TestNoLimitsNoCheck(t *testing.T) {
	col := newCollectorStub(t)
	s := testSettings(t, col.srv.URL, nil)
	srv := tapped(t, s, startSender(t, s), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(limitsBody))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	r := col.records(t, 1)[0]
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.checks) != 0 || r.Limit != "" || r.LimitReserved != 0 {
		t.Errorf("%d checks, record limit %q reserved %d", len(col.checks), r.Limit, r.LimitReserved)
	}
}
