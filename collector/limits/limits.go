// Package limits decides whether a tenant is within its limits: it finds
// the tenant's policy (set through the admin API, else in the
// configuration file, else the default), asks the shared limit store to
// take one request and reserve tokens and money (a request's worst-case
// cost), applies the policy's failure mode when the store cannot answer,
// and settles the reservations with the usage and cost of the records
// that arrive later.
package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/provider"
	"github.com/llmtap/llmtap/collector/tokens"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Store takes from and settles the quotas of buckets.
type Store interface {
	Take(ctx context.Context, t collector.Take) (collector.Taken, error)
	Settle(ctx context.Context, s []collector.Settlement) error
}

// PolicyStore keeps the policies set through the admin API, as JSON by
// tenant. Get and Delete return errors wrapping collector.ErrNotFound for
// a tenant without one.
type PolicyStore interface {
	Get(ctx context.Context, tenant string) ([]byte, error)
	Put(ctx context.Context, tenant string, doc []byte) error
	Delete(ctx context.Context, tenant string) error
	// All returns every stored policy document, by tenant.
	All(ctx context.Context) (map[string][]byte, error)
}

// SnapshotInterval is how often Run reads every stored policy, so that a
// replica knows each tenant's policy (its failure mode above all) when the
// store is down, also for tenants it has not served yet.
const SnapshotInterval = 30 * time.Second

// Observer is told of every check and store failure (the metrics).
type Observer interface {
	Checked(d *Decision, took time.Duration)
	StoreFailed(op string)
}

// Options configure a Service.
type Options struct {
	Store    Store
	Policies PolicyStore
	// Default applies to tenants with no policy of their own; nil: no limits.
	Default *Policy
	// Tenants are the policies of the configuration file, by tenant.
	Tenants map[string]*Policy
	// DefaultReservation is the tokens reserved for a request that gives
	// no bound of its own on output tokens.
	DefaultReservation int64
	// Prompts counts the tokens of a request's prompt, reserved with its
	// output where a token limit counts the total.
	Prompts PromptCounter
	// Prices prices a request's worst case for a spend limit; a model it
	// has no price for is refused where a spend limit applies.
	Prices Pricer
	// ReservationTTL releases a reservation whose record never arrives.
	ReservationTTL time.Duration
	// PolicyCacheTTL is how long a policy read from the store is used
	// before it is read again: how long other replicas take to see a
	// change made through one of them.
	PolicyCacheTTL time.Duration
	Observer       Observer
	Logger         *slog.Logger
}

// PromptCounter counts a prompt's tokens (tokens.Counter).
type PromptCounter interface {
	Prompt(model string, p tokens.Prompt) tokens.Count
}

// Pricer prices usage on a route (pricing.Pricer).
type Pricer interface {
	Price(route, model string, u collector.Usage) (collector.Cost, bool)
}

// bytesPerToken turns the length of a body the check does not carry (or
// cannot read) into tokens: English text and JSON run about 4 bytes a
// token; 3 leaves room for code and other languages.
const bytesPerToken = 3

// Service answers limit checks.
type Service struct {
	opt   Options
	cache policyCache
	logs  throttle

	// snapshot is every stored policy as Run last read them, for a store
	// that is down: tenant -> policy (nil for a stored policy that does
	// not parse, which the configuration's then replaces).
	snapMu   sync.RWMutex
	snapshot map[string]*Policy
}

// New makes a Service.
func New(opt Options) *Service {
	return &Service{
		opt:   opt,
		cache: policyCache{ttl: opt.PolicyCacheTTL, m: map[string]cached{}},
		logs:  throttle{last: map[string]time.Time{}, suppressed: map[string]int{}},
	}
}

// Policy sources, as GET /v1/limits/{tenant} reports them.
const (
	SourceAPI     = "api"     // set through the admin API
	SourceConfig  = "config"  // the configuration file's tenants
	SourceDefault = "default" // the configuration file's default
)

// QuotaStatus is one quota of a decision.
type QuotaStatus struct {
	Limit     int64
	Period    time.Duration
	Remaining int64
	Reset     time.Duration
}

// Decision is the answer to a check.
type Decision struct {
	Allowed bool
	// Reason names the quota that denied the request, or
	// ReasonUnavailable when the limits could not be checked and fail
	// closed.
	Reason        collector.LimitReason
	Tenant, Route string
	// Requests, Tokens and Spend are the quotas that apply, nil when
	// none does; Spend counts nano-dollars.
	Requests, Tokens, Spend *QuotaStatus
	Reserved                int64
	// SpendWanted is the request's worst-case cost in nano-dollars, what
	// a spend limit reserves; ReservedSpend what it held (0 on a denial).
	SpendWanted, ReservedSpend int64
	// Model is the request's model, as the check read it.
	Model string
	// Unpriced: denied because a spend limit applies and the model has
	// no price, so its cost cannot be counted.
	Unpriced bool
	// Reservation names the reservation for the plugin to send back with
	// the record (checks of version 2 on); empty for older plugins, whose
	// reservations the request id names.
	Reservation string
	// Prompt is the request's prompt tokens as the check counted them
	// (part of Reserved where the token limit counts the total).
	Prompt int64
	// TooLarge: denied because the request's prompt alone (Prompt) is
	// more tokens than its token limit allows in a period, or costs more
	// than its spend limit (Reason says which).
	TooLarge bool
	// RetryAfter is set on a denial.
	RetryAfter time.Duration
	// FailedOpen: allowed only because the limits could not be checked.
	FailedOpen bool
	// Err is why the limits could not be checked.
	Err error
}

// effective is the policy that applies to one tenant and route.
type effective struct {
	source     string
	tenant     *Policy // the tenant's whole policy
	policy     *Policy // what applies on the route
	bucket     string
	failClosed bool
}

// Check decides on one request, taking from its quotas when it is allowed.
func (s *Service) Check(ctx context.Context, c llmtap.LimitCheck) *Decision {
	start := time.Now()
	d := &Decision{Allowed: true, Tenant: c.Tenant, Route: c.Route}
	eff := s.resolve(ctx, c.Tenant, c.Route)
	if !eff.policy.limited() {
		s.opt.Observer.Checked(d, time.Since(start))
		return d
	}
	n := s.need(c)
	d.Prompt, d.Model = n.prompt, n.model
	reserve := n.bound
	if tk := eff.policy.Tokens; tk == nil || tk.Count != CountOutput {
		reserve += n.prompt
	}
	if tk := eff.policy.Tokens; tk != nil && tk.Count != CountOutput && n.prompt > tk.Limit {
		// Its prompt alone is more than a period holds: denied at once,
		// nothing taken. (An output bound past the limit is only capped
		// at it: the answer may well be shorter.)
		d.Allowed, d.Reason, d.TooLarge = false, collector.ReasonTokens, true
		d.Tokens = &QuotaStatus{Limit: tk.Limit, Period: time.Duration(tk.Period)}
		s.logDenial(d)
		s.opt.Observer.Checked(d, time.Since(start))
		return d
	}
	var spend int64
	if sp := eff.policy.Spend; sp != nil {
		var ok bool
		var promptCost int64
		spend, promptCost, ok = s.worstCost(c.Route, n)
		d.SpendWanted = spend
		if !ok || promptCost > sp.Nanos() {
			// A cost that cannot be counted, or a prompt that costs more
			// than a period holds: denied at once, nothing taken.
			d.Allowed, d.Reason, d.Unpriced, d.TooLarge = false, collector.ReasonSpend, !ok, ok
			d.Spend = &QuotaStatus{Limit: sp.Nanos(), Period: time.Duration(sp.Period)}
			d.RetryAfter = time.Duration(sp.Period)
			s.logDenial(d)
			s.opt.Observer.Checked(d, time.Since(start))
			return d
		}
	}
	id := c.RequestID
	switch {
	case c.V >= 2:
		// Its own name, returned to the plugin and settled by it: two
		// requests may share a request id (a client's own).
		id = "res-" + randomID()
		d.Reservation = id
	case id == "":
		// Nothing will settle this reservation: its TTL releases it.
		id = "unnamed-" + randomID()
	}
	take := s.take(eff, reserve, spend, id)
	taken, err := s.opt.Store.Take(ctx, take)
	if err != nil {
		s.unavailable(d, eff, err, "take")
		s.opt.Observer.Checked(d, time.Since(start))
		return d
	}
	s.decide(d, eff, take, taken)
	if !d.Allowed {
		s.logDenial(d)
	}
	s.opt.Observer.Checked(d, time.Since(start))
	return d
}

// need is what a check learns of its request: its model, its own bound
// on output tokens (or DefaultReservation), and its prompt's tokens:
// counted from the body when the check carries it, else estimated from
// the body's length. A token limit reserves the bound and, unless it
// counts output only, the prompt; the store caps a reservation at the
// limit. A check from a plugin that sends no body (one before it did)
// reserves its Reserve as before.
type need struct {
	model         string
	bound, prompt int64
}

func (s *Service) need(c llmtap.LimitCheck) need {
	n := need{model: c.Model, bound: c.Reserve}
	switch {
	case len(c.Body) > 0:
		r, err := provider.ParseRequest(c.Body)
		if err != nil {
			n.prompt = ceilDiv(int64(len(c.Body)), bytesPerToken)
			break
		}
		n.bound, n.model = r.OutputBound, r.Model
		if s.opt.Prompts != nil {
			n.prompt = s.opt.Prompts.Prompt(r.Model, r.Prompt).Tokens
		} else {
			n.prompt = ceilDiv(int64(len(c.Body)), bytesPerToken)
		}
	case c.BodyBytes > 0:
		n.prompt = ceilDiv(c.BodyBytes, bytesPerToken)
	}
	if n.bound <= 0 {
		n.bound = s.opt.DefaultReservation
	}
	return n
}

// worstCost is what a request may cost at most, in nano-dollars: its
// prompt at the input price and its output bound at the output price (no
// cache discount), and the prompt's part alone. ok is false when its
// model has no price.
func (s *Service) worstCost(route string, n need) (total, prompt int64, ok bool) {
	if s.opt.Prices == nil {
		return 0, 0, false
	}
	in, out := n.prompt, n.bound
	c, ok := s.opt.Prices.Price(route, n.model, collector.Usage{Input: &in, Output: &out})
	if !ok {
		return 0, 0, false
	}
	return int64(c.Total), int64(c.Input + c.CacheRead + c.CacheWrite), true
}

func ceilDiv(n, d int64) int64 { return (n + d - 1) / d }

func (s *Service) take(eff effective, reserve, spend int64, id string) collector.Take {
	t := collector.Take{Bucket: eff.bucket, Reserve: reserve, ReserveSpend: spend, Reservation: id, ReservationTTL: s.opt.ReservationTTL}
	if r := eff.policy.Requests; r != nil {
		t.Requests = collector.Quota{Limit: r.Limit, Period: time.Duration(r.Period), Burst: r.Burst}
	}
	if tk := eff.policy.Tokens; tk != nil {
		t.Tokens = collector.Quota{Limit: tk.Limit, Period: time.Duration(tk.Period)}
	}
	if sp := eff.policy.Spend; sp != nil {
		t.Spend = collector.Quota{Limit: sp.Nanos(), Period: time.Duration(sp.Period)}
	}
	return t
}

func (s *Service) decide(d *Decision, eff effective, t collector.Take, taken collector.Taken) {
	d.Allowed, d.Reason, d.Reserved, d.ReservedSpend = taken.Allowed, taken.Reason, taken.Reserved, taken.ReservedSpend
	if t.Requests.On() {
		d.Requests = &QuotaStatus{Limit: t.Requests.Limit, Period: t.Requests.Period, Remaining: taken.Requests.Remaining, Reset: taken.Requests.Reset}
	}
	if t.Tokens.On() {
		d.Tokens = &QuotaStatus{Limit: t.Tokens.Limit, Period: t.Tokens.Period, Remaining: taken.Tokens.Remaining, Reset: taken.Tokens.Reset}
	}
	if t.Spend.On() {
		d.Spend = &QuotaStatus{Limit: t.Spend.Limit, Period: t.Spend.Period, Remaining: taken.Spend.Remaining, Reset: taken.Spend.Reset}
	}
	if !d.Allowed {
		d.RetryAfter = max(taken.Requests.RetryAfter, taken.Tokens.RetryAfter, taken.Spend.RetryAfter)
	}
}

// unavailable applies the policy's failure mode.
func (s *Service) unavailable(d *Decision, eff effective, err error, op string) {
	s.opt.Observer.StoreFailed(op)
	d.Err = err
	if eff.failClosed {
		d.Allowed, d.Reason, d.RetryAfter = false, collector.ReasonUnavailable, time.Second
	} else {
		d.FailedOpen = true
	}
	if ok, n := s.logs.allow("store:"+op, 10*time.Second); ok {
		s.opt.Logger.Warn("limits cannot be checked; applying failure modes", "op", op, "err", err,
			"failure_mode", failureMode(eff.failClosed), "suppressed", n)
	}
}

func failureMode(closed bool) FailureMode {
	if closed {
		return FailClosed
	}
	return FailOpen
}

// logDenial logs a tenant reaching a limit, at most once a minute per
// tenant, route and reason, with the number of denials left unlogged.
func (s *Service) logDenial(d *Decision) {
	if ok, n := s.logs.allow("deny:"+string(d.Reason)+":"+d.Route+":"+d.Tenant, time.Minute); ok {
		q := d.quota()
		attrs := []any{"tenant", d.Tenant, "route", d.Route, "reason", d.Reason, "retry_after", d.RetryAfter.Round(time.Millisecond), "suppressed", n}
		if q != nil {
			attrs = append(attrs, "limit", q.Limit, "period", q.Period)
		}
		s.opt.Logger.Info("limit reached", attrs...)
	}
}

// quota is the quota a denial names.
func (d *Decision) quota() *QuotaStatus {
	switch d.Reason {
	case collector.ReasonTokens:
		return d.Tokens
	case collector.ReasonSpend:
		return d.Spend
	}
	return d.Requests
}

// Settle settles the reservations of facts with the tokens they used and
// what they cost. A failure is counted and logged, not returned: the
// facts are stored anyway, and unsettled reservations are released by
// their TTL.
func (s *Service) Settle(ctx context.Context, facts []*collector.Fact) {
	var ss []collector.Settlement
	for _, f := range facts {
		if f.Limit != llmtap.LimitAllowed || !f.HoldsReservation() {
			continue
		}
		eff := s.resolve(ctx, f.Tenant, f.Route)
		if eff.policy == nil || (eff.policy.Tokens == nil && eff.policy.Spend == nil) {
			continue
		}
		id := f.LimitReservation
		if id == "" {
			id = f.RequestID
		}
		st := collector.Settlement{Bucket: eff.bucket, Reservation: id, Used: collector.SpendUnknown, Spent: collector.SpendUnknown}
		if tk := eff.policy.Tokens; tk != nil {
			st.Used = used(f, tk.Count)
		}
		if eff.policy.Spend != nil {
			st.Spent = spent(f)
		}
		ss = append(ss, st)
	}
	if len(ss) == 0 {
		return
	}
	if err := s.opt.Store.Settle(ctx, ss); err != nil {
		s.opt.Observer.StoreFailed("settle")
		if ok, n := s.logs.allow("store:settle", 10*time.Second); ok {
			s.opt.Logger.Warn("token reservations not settled; their TTL releases them", "reservations", len(ss), "err", err, "suppressed", n)
		}
	}
}

// used is the tokens a request used, as its limit counts them. When the
// response did not say, a failed request used none, and a successful one
// is charged what was reserved for it.
func used(f *collector.Fact, count TokenCount) int64 {
	u := f.Usage
	if u.Output == nil || (count != CountOutput && u.Input == nil) {
		if f.Status >= 400 || f.Status == 0 {
			return 0
		}
		return f.LimitReserved
	}
	n := *u.Output
	if count != CountOutput {
		n += *u.Input
	}
	return n
}

// spent is what a request cost, as its spend limit counts it: its cost,
// nothing for a failed request without one, and what was reserved for a
// successful one that could not be priced.
func spent(f *collector.Fact) int64 {
	switch {
	case f.Cost != nil:
		return int64(f.Cost.Total)
	case f.Status >= 400 || f.Status == 0:
		return 0
	}
	return collector.SpendUnknown
}

// Status is a tenant's limits and remaining quotas now.
type Status struct {
	Tenant, Route string
	Source        string
	Policy        *Policy // the tenant's whole policy
	Requests      *QuotaStatus
	Tokens        *QuotaStatus
	Spend         *SpendStatus
}

// SpendStatus is a spend limit as it stands, in nano-dollars: of Limit,
// Remaining can be spent now, Reserved is held by requests in flight,
// and Spent is the rest, what settled requests used and the limit has
// not yet refilled.
type SpendStatus struct {
	QuotaStatus
	Reserved, Spent int64
}

// Status reports a tenant's policy and what remains of its quotas on a
// route ("" for the tenant's own quotas), without taking anything.
func (s *Service) Status(ctx context.Context, tenant, route string) (*Status, error) {
	eff := s.resolve(ctx, tenant, route)
	st := &Status{Tenant: tenant, Route: route, Source: eff.source, Policy: eff.tenant}
	if !eff.policy.limited() {
		return st, nil
	}
	t := s.take(eff, 0, 0, "")
	t.Peek = true
	taken, err := s.opt.Store.Take(ctx, t)
	if err != nil {
		s.opt.Observer.StoreFailed("status")
		return nil, fmt.Errorf("limits of %q: %w", tenant, err)
	}
	d := &Decision{}
	s.decide(d, eff, t, taken)
	st.Requests, st.Tokens = d.Requests, d.Tokens
	if d.Spend != nil {
		st.Spend = &SpendStatus{QuotaStatus: *d.Spend, Reserved: taken.SpendReservations,
			Spent: max(d.Spend.Limit-d.Spend.Remaining-taken.SpendReservations, 0)}
	}
	return st, nil
}

// Put stores a tenant's policy for every replica; this replica uses it at
// once, the others within PolicyCacheTTL.
func (s *Service) Put(ctx context.Context, tenant string, p *Policy) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode policy: %w", err)
	}
	if err := s.opt.Policies.Put(ctx, tenant, doc); err != nil {
		s.opt.Observer.StoreFailed("policy")
		return err
	}
	s.cache.put(tenant, cached{policy: p, source: SourceAPI})
	return nil
}

// Delete removes a tenant's stored policy: the configuration file's policy
// or the default applies again. It wraps collector.ErrNotFound when the
// tenant had none.
func (s *Service) Delete(ctx context.Context, tenant string) error {
	err := s.opt.Policies.Delete(ctx, tenant)
	if err != nil && !errors.Is(err, collector.ErrNotFound) {
		s.opt.Observer.StoreFailed("policy")
		return err
	}
	s.cache.drop(tenant)
	return err
}

// resolve finds the policy for a tenant and route. A store that cannot be
// read leaves the last policy read from it, else the configuration's.
func (s *Service) resolve(ctx context.Context, tenant, route string) effective {
	c, ok := s.cache.get(tenant)
	if !ok {
		c = s.lookup(ctx, tenant)
	}
	eff := effective{source: c.source, tenant: c.policy, policy: c.policy, bucket: "t=" + url.QueryEscape(tenant)}
	if c.policy == nil {
		return eff
	}
	if rp, ok := c.policy.Routes[route]; ok && rp != nil {
		eff.policy = rp
		eff.bucket += ",r=" + url.QueryEscape(route)
	}
	mode := eff.policy.FailureMode
	if mode == "" {
		mode = c.policy.FailureMode
	}
	eff.failClosed = mode == FailClosed
	return eff
}

func (s *Service) lookup(ctx context.Context, tenant string) cached {
	doc, err := s.opt.Policies.Get(ctx, tenant)
	switch {
	case err == nil:
		p, perr := ParsePolicy(doc)
		if perr == nil {
			c := cached{policy: p, source: SourceAPI}
			s.cache.put(tenant, c)
			return c
		}
		// Only a hand edit in Redis can get here: say so, and use the file's.
		if ok, _ := s.logs.allow("bad-policy:"+tenant, time.Minute); ok {
			s.opt.Logger.Error("stored limit policy is invalid; using the configuration's", "tenant", tenant, "err", perr)
		}
	case errors.Is(err, collector.ErrNotFound):
	default:
		// Keep using what we have for a while rather than asking a store
		// that is down on every check: the last copy read for this
		// tenant, else the last snapshot of them all, else the file's.
		s.opt.Observer.StoreFailed("policy")
		c, ok := s.cache.stale(tenant)
		if !ok {
			c, ok = s.snapshotOf(tenant)
		}
		if !ok {
			c = s.static(tenant)
		}
		s.cache.put(tenant, c)
		return c
	}
	c := s.static(tenant)
	s.cache.put(tenant, c)
	return c
}

// snapshotOf returns a tenant's policy from the last snapshot.
func (s *Service) snapshotOf(tenant string) (cached, bool) {
	s.snapMu.RLock()
	defer s.snapMu.RUnlock()
	p, ok := s.snapshot[tenant]
	if !ok || p == nil {
		return cached{}, false
	}
	return cached{policy: p, source: SourceAPI}, true
}

// Snapshot reads every stored policy, for lookups while the store is down.
// A failure keeps the snapshot before it.
func (s *Service) Snapshot(ctx context.Context) error {
	docs, err := s.opt.Policies.All(ctx)
	if err != nil {
		s.opt.Observer.StoreFailed("policy")
		return fmt.Errorf("limits: snapshot of the stored policies: %w", err)
	}
	snap := make(map[string]*Policy, len(docs))
	for tenant, doc := range docs {
		p, perr := ParsePolicy(doc)
		if perr != nil {
			p = nil // lookup says so when it meets it
		}
		snap[tenant] = p
	}
	s.snapMu.Lock()
	s.snapshot = snap
	s.snapMu.Unlock()
	return nil
}

// Run takes a snapshot of the stored policies now and every
// SnapshotInterval until ctx ends. Failures are logged, at most once a
// minute; the last snapshot stays.
func (s *Service) Run(ctx context.Context) error {
	tick := time.NewTicker(SnapshotInterval)
	defer tick.Stop()
	for {
		if err := s.Snapshot(ctx); err != nil && ctx.Err() == nil {
			if ok, n := s.logs.allow("snapshot", time.Minute); ok {
				s.opt.Logger.Warn("stored limit policies not read; the last snapshot stays", "err", err, "suppressed", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (s *Service) static(tenant string) cached {
	if p, ok := s.opt.Tenants[tenant]; ok {
		return cached{policy: p, source: SourceConfig}
	}
	return cached{policy: s.opt.Default, source: SourceDefault}
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// maxCached bounds the policy cache; past it the cache starts over.
const maxCached = 100_000

type cached struct {
	policy *Policy
	source string
	at     time.Time
}

// policyCache holds policies by tenant for ttl.
type policyCache struct {
	ttl time.Duration
	mu  sync.RWMutex
	m   map[string]cached
}

func (c *policyCache) get(tenant string) (cached, bool) {
	c.mu.RLock()
	e, ok := c.m[tenant]
	c.mu.RUnlock()
	return e, ok && time.Since(e.at) < c.ttl
}

// stale returns an entry however old, for when the store cannot be read.
func (c *policyCache) stale(tenant string) (cached, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[tenant]
	return e, ok
}

func (c *policyCache) put(tenant string, e cached) {
	e.at = time.Now()
	c.mu.Lock()
	if len(c.m) >= maxCached {
		c.m = map[string]cached{}
	}
	c.m[tenant] = e
	c.mu.Unlock()
}

func (c *policyCache) drop(tenant string) {
	c.mu.Lock()
	delete(c.m, tenant)
	c.mu.Unlock()
}

// maxThrottled bounds the keys a throttle remembers.
const maxThrottled = 10_000

// throttle lets a log line through at most once per interval per key, and
// counts the ones it held back.
type throttle struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// allow says whether to log now, and how many lines were held back since
// the last one.
func (t *throttle) allow(key string, every time.Duration) (bool, int) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.last[key]; ok && now.Sub(last) < every {
		t.suppressed[key]++
		return false, 0
	}
	if len(t.last) >= maxThrottled {
		t.last, t.suppressed = map[string]time.Time{}, map[string]int{}
	}
	n := t.suppressed[key]
	delete(t.suppressed, key)
	t.last[key] = now
	return true, n
}
