package limits

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/redis"
	"github.com/llmtap/llmtap/collector/tokens"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// observer counts what the service reports.
type observer struct {
	mu        sync.Mutex
	decisions map[string]int
	failures  map[string]int
}

func (o *observer) Checked(d *Decision, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := "allowed"
	switch {
	case d.FailedOpen:
		k = "failed_open"
	case !d.Allowed:
		k = "denied:" + string(d.Reason)
	}
	o.decisions[k]++
}

func (o *observer) StoreFailed(op string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures[op]++
}

type fixture struct {
	mr   *miniredis.Miniredis
	svc  *Service
	obs  *observer
	logs *bytes.Buffer
}

func newFixture(t *testing.T, opt Options) *fixture {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(redis.Options{Addr: mr.Addr(), Timeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	f := &fixture{mr: mr, obs: &observer{decisions: map[string]int{}, failures: map[string]int{}}, logs: &bytes.Buffer{}}
	opt.Store = redis.NewLimiter(rdb)
	opt.Policies = redis.NewPolicies(rdb)
	opt.Observer = f.obs
	opt.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: f.logs}, nil))
	if opt.DefaultReservation == 0 {
		opt.DefaultReservation = 100
	}
	if opt.ReservationTTL == 0 {
		opt.ReservationTTL = time.Minute
	}
	if opt.PolicyCacheTTL == 0 {
		opt.PolicyCacheTTL = time.Hour
	}
	f.svc = New(opt)
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (f *fixture) check(tenant, route string, reserve int64, id string) *Decision {
	return f.svc.Check(context.Background(), llmtap.LimitCheck{Tenant: tenant, Route: route, Reserve: reserve, RequestID: id})
}

func reqs(n int64, period time.Duration) *RequestLimit {
	return &RequestLimit{Limit: n, Period: Period(period)}
}

func toks(n int64, period time.Duration, count TokenCount) *TokenLimit {
	return &TokenLimit{Limit: n, Period: Period(period), Count: count}
}

func TestPolicyPrecedence(t *testing.T) {
	f := newFixture(t, Options{
		Default: &Policy{Requests: reqs(1, time.Hour)},
		Tenants: map[string]*Policy{
			"file": {
				Requests:    reqs(2, time.Hour),
				FailureMode: FailClosed,
				Routes:      map[string]*Policy{"tts": {Requests: reqs(3, time.Hour)}},
			},
		},
	})
	ctx := context.Background()
	if err := f.svc.Put(ctx, "api", &Policy{Requests: reqs(4, time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tenant, route string
		source        string
		limit         int64
		failClosed    bool
	}{
		{"nobody", "chat", SourceDefault, 1, false},
		{"file", "chat", SourceConfig, 2, true},
		{"file", "tts", SourceConfig, 3, true}, // the route inherits the failure mode
		{"api", "chat", SourceAPI, 4, false},
	}
	for _, tt := range tests {
		eff := f.svc.resolve(ctx, tt.tenant, tt.route)
		if eff.source != tt.source || eff.policy.Requests.Limit != tt.limit || eff.failClosed != tt.failClosed {
			t.Errorf("%s/%s: source %s limit %d fail closed %v; want %s %d %v", tt.tenant, tt.route,
				eff.source, eff.policy.Requests.Limit, eff.failClosed, tt.source, tt.limit, tt.failClosed)
		}
	}
	// Deleting the API's policy brings back the file's.
	if err := f.svc.Put(ctx, "file", &Policy{Requests: reqs(9, time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Delete(ctx, "file"); err != nil {
		t.Fatal(err)
	}
	if eff := f.svc.resolve(ctx, "file", "chat"); eff.source != SourceConfig {
		t.Fatalf("after delete: source %s, want config", eff.source)
	}
	if err := f.svc.Delete(ctx, "file"); !errors.Is(err, collector.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func TestRouteQuotasAreSeparate(t *testing.T) {
	f := newFixture(t, Options{Default: &Policy{
		Requests: reqs(1, time.Hour),
		Routes:   map[string]*Policy{"tts": {Requests: reqs(1, time.Hour)}},
	}})
	if !f.check("a", "chat", 0, "1").Allowed || !f.check("a", "tts", 0, "2").Allowed {
		t.Fatal("the first request of each route was denied")
	}
	if f.check("a", "chat", 0, "3").Allowed || f.check("a", "embeddings", 0, "4").Allowed {
		t.Fatal("routes without their own limits should share the tenant's exhausted quota")
	}
}

func TestTenantIsolation(t *testing.T) {
	f := newFixture(t, Options{Default: &Policy{Requests: &RequestLimit{Limit: 2, Period: Period(time.Minute)}}})
	for i := 0; i < 2; i++ {
		if d := f.check("a", "chat", 0, ""); !d.Allowed {
			t.Fatalf("tenant a request %d denied", i)
		}
	}
	d := f.check("a", "chat", 0, "")
	if d.Allowed || d.Reason != collector.ReasonRequests || d.RetryAfter <= 0 {
		t.Fatalf("tenant a past its limit: %+v", d)
	}
	if d := f.check("b", "chat", 0, ""); !d.Allowed || d.Requests.Remaining != 1 {
		t.Fatalf("tenant b was affected by tenant a: %+v", d)
	}
}

func TestNoLimitsNeedNoRedis(t *testing.T) {
	f := newFixture(t, Options{})
	f.mr.Close()
	// With nothing to limit, only the policy lookup fails (and is counted);
	// the check allows without a reservation.
	d := f.check("a", "chat", 10, "x")
	if !d.Allowed || d.FailedOpen || d.Requests != nil || d.Tokens != nil {
		t.Fatalf("unlimited tenant: %+v", d)
	}
}

func usage(in, out int64) collector.Usage { return collector.Usage{Input: &in, Output: &out} }

func TestSettlement(t *testing.T) {
	tests := []struct {
		name   string
		count  TokenCount
		fact   collector.Fact
		remain int64 // of 1000 after reserving 300 and settling
	}{
		{"total", CountTotal, collector.Fact{Status: 200, Usage: usage(50, 100)}, 850},
		{"output only", CountOutput, collector.Fact{Status: 200, Usage: usage(50, 100)}, 900},
		{"over the reservation", CountTotal, collector.Fact{Status: 200, Usage: usage(200, 300)}, 500},
		{"no usage on success keeps the reservation", CountTotal, collector.Fact{Status: 200}, 700},
		{"no usage on failure gives it back", CountTotal, collector.Fact{Status: 503}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{Default: &Policy{Tokens: toks(1000, time.Hour, tt.count)}})
			d := f.check("a", "chat", 300, "r1")
			if !d.Allowed || d.Reserved != 300 {
				t.Fatalf("check: %+v", d)
			}
			fact := tt.fact
			fact.RequestID, fact.Tenant, fact.Route = "r1", "a", "chat"
			fact.Limit, fact.LimitReserved = llmtap.LimitAllowed, 300
			f.svc.Settle(context.Background(), []*collector.Fact{&fact})
			st, err := f.svc.Status(context.Background(), "a", "chat")
			if err != nil {
				t.Fatal(err)
			}
			// An hour's period refills 0.28 tokens a second: allow a little.
			if st.Tokens.Remaining < tt.remain || st.Tokens.Remaining > tt.remain+1 {
				t.Fatalf("remaining %d, want %d", st.Tokens.Remaining, tt.remain)
			}
		})
	}
}

// TestConcurrentReservationsHoldTheLimit is the proof: 50
// concurrent streaming requests against 1,000 tokens a minute admit no
// more than the limit plus one reservation, however they interleave.
func TestConcurrentReservationsHoldTheLimit(t *testing.T) {
	f := newFixture(t, Options{Default: &Policy{Tokens: toks(1000, time.Minute, CountTotal)}})
	const reserve = 150
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			if d := f.check("a", "chat", reserve, "r"+string(rune('A'+i))); d.Allowed {
				admitted.Add(d.Reserved)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	if got := admitted.Load(); got > 1000+reserve || got < 1000-reserve {
		t.Fatalf("admitted %d tokens of reservations; want at most 1000 + %d and more than %d", got, reserve, 1000-reserve)
	}
	t.Logf("admitted %d reserved tokens of a 1000-token quota", admitted.Load())
}

func TestFailureModes(t *testing.T) {
	f := newFixture(t, Options{
		Default: &Policy{Requests: reqs(100, time.Minute)},
		Tenants: map[string]*Policy{"strict": {Requests: reqs(100, time.Minute), FailureMode: FailClosed}},
	})
	// Warm the policy cache, then lose Redis.
	f.check("open", "chat", 0, "")
	f.check("strict", "chat", 0, "")
	addr := f.mr.Addr()
	f.mr.Close()

	d := f.check("open", "chat", 0, "")
	if !d.Allowed || !d.FailedOpen || d.Err == nil {
		t.Fatalf("fail open: %+v", d)
	}
	d = f.check("strict", "chat", 0, "")
	if d.Allowed || d.Reason != collector.ReasonUnavailable || d.RetryAfter != time.Second {
		t.Fatalf("fail closed: %+v", d)
	}
	if f.obs.failures["take"] != 2 {
		t.Fatalf("store failures %v, want 2 takes", f.obs.failures)
	}
	if n := strings.Count(f.logs.String(), "limits cannot be checked"); n != 1 {
		t.Fatalf("%d log lines about Redis, want 1 (rate-limited):\n%s", n, f.logs)
	}

	// Redis comes back: checks recover by themselves.
	if err := f.mr.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	d = f.check("strict", "chat", 0, "")
	if !d.Allowed || d.FailedOpen {
		t.Fatalf("after Redis came back: %+v", d)
	}
}

func TestDenialIsLoggedOnceAMinute(t *testing.T) {
	f := newFixture(t, Options{Default: &Policy{Requests: reqs(1, time.Hour)}})
	for i := 0; i < 5; i++ {
		f.check("a", "chat", 0, "")
	}
	f.check("b", "chat", 0, "")
	f.check("b", "chat", 0, "")
	out := f.logs.String()
	if n := strings.Count(out, "limit reached"); n != 2 {
		t.Fatalf("%d limit lines, want one per tenant:\n%s", n, out)
	}
	for _, want := range []string{"tenant=a", "reason=requests", "limit=1", "period=1h0m0s"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	if f.obs.decisions["denied:requests"] != 5 {
		t.Fatalf("decisions %v, want 5 denials", f.obs.decisions)
	}
}

func TestThrottleCountsSuppressed(t *testing.T) {
	th := throttle{last: map[string]time.Time{}, suppressed: map[string]int{}}
	if ok, _ := th.allow("k", time.Millisecond); !ok {
		t.Fatal("first line held back")
	}
	th.allow("k", time.Hour)
	th.allow("k", time.Hour)
	time.Sleep(2 * time.Millisecond)
	if ok, n := th.allow("k", time.Millisecond); !ok || n != 2 {
		t.Fatalf("after the interval: %v, %d suppressed; want true, 2", ok, n)
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		body    string
		wantErr string
	}{
		{`{"requests":{"limit":10,"period":"1m","burst":5},"tokens":{"limit":1000,"period":"1h","count":"output"},"failure_mode":"closed","routes":{"tts":{"requests":{"limit":1,"period":"1s"}}}}`, ""},
		{`{}`, ""},
		{`{"requests":{"limit":10,"period":"1 minute"}}`, `period "1 minute": want a duration`},
		{`{"requests":{"limit":10,"period":"0s"}}`, `requests.period: "0s": want a duration from 1ms`},
		{`{"requests":{"limit":-1,"period":"1m"}}`, "requests.limit: -1: want at least 1"},
		{`{"tokens":{"limit":5,"period":"1m","count":"input"}}`, `tokens.count: "input": want total or output`},
		{`{"failure_mode":"sometimes"}`, `failure_mode: "sometimes": want open or closed`},
		{`{"request":{"limit":1}}`, `unknown field "request"`},
		{`{"routes":{"a":{"routes":{"b":{}}}}}`, "routes.a.routes: routes cannot be nested"},
		{`{"routes":{"a":null}}`, "routes.a: empty"},
		{`{} {}`, "one JSON object expected"},
		{`[1]`, "not valid JSON"},
	}
	for _, tt := range tests {
		_, err := ParsePolicy([]byte(tt.body))
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.body, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want it to contain %q", tt.body, err, tt.wantErr)
		}
	}
}

// fixedPrompts counts every prompt as n tokens, and records what it got.
type fixedPrompts struct {
	n     int64
	model string
	texts []string
}

func (p *fixedPrompts) Prompt(model string, pr tokens.Prompt) tokens.Count {
	p.model, p.texts = model, pr.Texts
	return tokens.Count{Tokens: p.n + int64(pr.Messages)}
}

// TestReservationCountsThePrompt: a check reserves its output bound (or
// the default) and, where the token limit counts the total, its prompt:
// counted from the body it carries, else estimated from the body's length.
func TestReservationCountsThePrompt(t *testing.T) {
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":17,` +
		`"tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"max_completion_tokens":1}}}}]}`
	for _, tt := range []struct {
		name  string
		check llmtap.LimitCheck
		count TokenCount
		want  int64
	}{
		// 80 + 1 message, and the request's own bound (not the one in a tool's schema).
		{"body: prompt and bound", llmtap.LimitCheck{Body: json.RawMessage(chat)}, CountTotal, 81 + 17},
		{"body: output only", llmtap.LimitCheck{Body: json.RawMessage(chat)}, CountOutput, 17},
		{"body without a bound", llmtap.LimitCheck{Body: json.RawMessage(`{"model":"gpt-4o","prompt":"hi"}`)}, CountTotal, 80 + 100},
		{"body not a request: its length", llmtap.LimitCheck{Body: json.RawMessage(`[1,2,3,4,5,6,7,8]`)}, CountTotal, 6 + 100},
		{"no body, its length", llmtap.LimitCheck{BodyBytes: 3000}, CountTotal, 1000 + 100},
		{"an older plugin: its reserve", llmtap.LimitCheck{Reserve: 256}, CountTotal, 256},
		{"nothing known: the default", llmtap.LimitCheck{}, CountTotal, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prompts := &fixedPrompts{n: 80}
			f := newFixture(t, Options{Prompts: prompts, Default: &Policy{Tokens: toks(100000, time.Hour, tt.count)}})
			c := tt.check
			c.Tenant, c.RequestID = "a", "r1"
			d := f.svc.Check(context.Background(), c)
			if !d.Allowed || d.Reserved != tt.want {
				t.Errorf("allowed %v, reserved %d, want %d", d.Allowed, d.Reserved, tt.want)
			}
		})
	}
}

// TestRequestTooLargeIsDeniedAtOnce: a request whose prompt alone is more
// than its token limit allows in a period is denied without taking
// anything; one whose output bound goes past the limit is only capped.
func TestRequestTooLargeIsDeniedAtOnce(t *testing.T) {
	policy := &Policy{Requests: reqs(10, time.Hour), Tokens: toks(1000, time.Hour, CountTotal)}
	body := json.RawMessage(`{"model":"gpt-4o","prompt":"long","max_tokens":200}`)
	f := newFixture(t, Options{Prompts: &fixedPrompts{n: 1200}, Default: policy})
	d := f.svc.Check(context.Background(), llmtap.LimitCheck{Tenant: "a", RequestID: "big", Body: body})
	if d.Allowed || !d.TooLarge || d.Reason != collector.ReasonTokens || d.Prompt != 1200 || d.Tokens == nil || d.Tokens.Limit != 1000 {
		t.Fatalf("decision %+v, want denied as too large", d)
	}
	// Nothing was taken; a prompt that fits with an output bound past the
	// limit reserves the whole quota.
	f.svc.opt.Prompts = &fixedPrompts{n: 900}
	d = f.svc.Check(context.Background(), llmtap.LimitCheck{Tenant: "a", RequestID: "fits", Body: body})
	if !d.Allowed || d.Reserved != 1000 || d.Tokens.Remaining != 0 || d.Requests.Remaining != 9 {
		t.Fatalf("the next request: %+v (tokens %+v, requests %+v)", d, d.Tokens, d.Requests)
	}
	// A limit on output tokens does not count the prompt.
	f = newFixture(t, Options{Prompts: &fixedPrompts{n: 5000}, Default: &Policy{Tokens: toks(1000, time.Hour, CountOutput)}})
	if d := f.svc.Check(context.Background(), llmtap.LimitCheck{Tenant: "a", RequestID: "out", Body: body}); !d.Allowed || d.Reserved != 200 {
		t.Fatalf("an output-only limit: %+v", d)
	}
}

// TestSharedRequestIDsKeepTheirReservations: two requests may share a
// request id (a client's own X-Request-Id): from check version 2 on each
// gets a reservation of its own, and settling one leaves the other.
// Checks from older plugins are named by their request id, as before.
func TestSharedRequestIDsKeepTheirReservations(t *testing.T) {
	f := newFixture(t, Options{Default: &Policy{Tokens: toks(1000, time.Hour, CountTotal)}})
	ctx := context.Background()
	check := func(v int) *Decision {
		d := f.svc.Check(ctx, llmtap.LimitCheck{V: v, Tenant: "a", RequestID: "same", Reserve: 300})
		if !d.Allowed || d.Reserved != 300 {
			t.Fatalf("check: %+v", d)
		}
		return d
	}
	first, second := check(llmtap.CheckVersion), check(llmtap.CheckVersion)
	if first.Reservation == "" || first.Reservation == second.Reservation || !llmtap.ValidID(first.Reservation) {
		t.Fatalf("reservations %q and %q, want two distinct valid ids", first.Reservation, second.Reservation)
	}
	out := usage(10, 40)
	settle := func(d *Decision) {
		f.svc.Settle(ctx, []*collector.Fact{{RequestID: "same", Tenant: "a", Status: 200, Usage: out,
			Limit: llmtap.LimitAllowed, LimitReserved: d.Reserved, LimitReservation: d.Reservation}})
	}
	settle(first)
	settle(second)
	// Each charged its 50 tokens: 1000 - 2*50 remain (and the refill).
	st, err := f.svc.Status(ctx, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Tokens.Remaining < 900 || st.Tokens.Remaining > 901 {
		t.Errorf("tokens remaining %d after both settled, want 900", st.Tokens.Remaining)
	}
	if old := check(0); old.Reservation != "" {
		t.Errorf("an older plugin's check got reservation %q, want none (its request id names it)", old.Reservation)
	}
}

// TestSnapshotKeepsAPIPoliciesWhileRedisIsDown: a fail-closed policy set
// through the admin API on one replica is honoured by another replica that
// never served the tenant, once Redis is down, because each replica keeps
// a snapshot of every stored policy. Without one, the other replica knew
// only its configuration file and let the tenant through.
func TestSnapshotKeepsAPIPoliciesWhileRedisIsDown(t *testing.T) {
	a := newFixture(t, Options{})
	strict := &Policy{Requests: reqs(100, time.Minute), FailureMode: FailClosed}
	if err := a.svc.Put(context.Background(), "strict", strict); err != nil {
		t.Fatal(err)
	}
	// Two more replicas on the same Redis: one takes a snapshot, one not.
	replica := func() *Service {
		return New(Options{Store: a.svc.opt.Store, Policies: a.svc.opt.Policies, Observer: a.obs, Logger: a.svc.opt.Logger,
			DefaultReservation: 100, ReservationTTL: time.Minute, PolicyCacheTTL: time.Hour})
	}
	withSnapshot, without := replica(), replica()
	if err := withSnapshot.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.mr.Close()

	d := withSnapshot.Check(context.Background(), llmtap.LimitCheck{Tenant: "strict", Route: "chat"})
	if d.Allowed || d.Reason != collector.ReasonUnavailable {
		t.Fatalf("replica with a snapshot, Redis down: %+v, want the policy's fail-closed 503", d)
	}
	if d := without.Check(context.Background(), llmtap.LimitCheck{Tenant: "strict", Route: "chat"}); !d.Allowed {
		t.Fatalf("replica without a snapshot: %+v (the case the snapshot is for)", d)
	}
	// A failed snapshot keeps the one before.
	if err := withSnapshot.Snapshot(context.Background()); err == nil {
		t.Fatal("a snapshot with Redis down succeeded")
	}
	if _, ok := withSnapshot.snapshotOf("strict"); !ok {
		t.Fatal("a failed snapshot dropped the one before")
	}
}

// TestRunSnapshotsUntilCancelled: Run takes a snapshot at once and returns
// when its context ends.
func TestRunSnapshotsUntilCancelled(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.svc.Put(context.Background(), "t1", &Policy{Requests: reqs(5, time.Minute)}); err != nil {
		t.Fatal(err)
	}
	fresh := New(Options{Store: f.svc.opt.Store, Policies: f.svc.opt.Policies, Observer: f.obs, Logger: f.svc.opt.Logger})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fresh.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := fresh.snapshotOf("t1"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
