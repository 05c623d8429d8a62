// Package redis keeps the collector's shared limit state in Redis: the
// request and token quotas of every bucket, the token reservations, and
// the limit policies set through the admin API. Every collector replica
// sees the same state. Each check is one Lua script that reads Redis's own
// clock, so replicas with drifting clocks agree.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/llmtap/llmtap/collector"
)

// Limiter takes from and settles the quotas of buckets.
type Limiter struct {
	rdb goredis.UniversalClient
}

// NewLimiter uses rdb, which the caller owns and closes.
func NewLimiter(rdb goredis.UniversalClient) *Limiter { return &Limiter{rdb: rdb} }

// takeScript takes one request (GCRA, as in go-redis/redis_rate) and
// reserves tokens and money (two token buckets) for one bucket, all or
// none. Times are microseconds of Redis's clock, money nano-dollars. It
// makes few Redis calls, since they are most of its cost: all of a
// bucket's state is one hash.
//
// KEYS: 1 the bucket (hash: tat, the request quota's theoretical arrival
// time; level and ts, the token bucket; slevel and sts, the spend bucket,
// and sres, the money its open reservations hold; r:<id> and s:<id>, the
// tokens and money reserved for a request, or "s" once settled), 2
// reservations by expiry (sorted set of reservation ids).
// ARGV: 1 request limit, 2 request period, 3 request burst, 4 token limit,
// 5 token period, 6 tokens to reserve, 7 reservation id, 8 reservation
// TTL, 9 "1" to peek, 10 spend limit, 11 spend period, 12 money to
// reserve.
// Returns: allowed (0/1), reason, then per quota (requests, tokens)
// remaining, reset and retry-after (µs; remaining -1 when the quota is
// off), the reserved tokens, the same three for spend, the reserved
// money, and the money all open reservations hold.
var takeScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rlimit, rperiod, rburst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tlimit, tperiod = tonumber(ARGV[4]), tonumber(ARGV[5])
local slimit, speriod = tonumber(ARGV[10]), tonumber(ARGV[11])
local ttl = tonumber(ARGV[8])
local peek = ARGV[9] == '1'
local allowed, reason = 1, ''
local st = redis.call('HMGET', KEYS[1], 'tat', 'level', 'ts', 'slevel', 'sts', 'sres')
local set = {}

local r_rem, r_reset, r_retry, r_tat, r_new, interval = -1, 0, 0, 0, nil, 0
if rlimit > 0 then
  interval = rperiod / rlimit
  r_tat = tonumber(st[1]) or now
  if r_tat < now then r_tat = now end
  r_new = r_tat + interval
  local diff = now - (r_new - rburst * interval)
  if diff < 0 and not peek then
    allowed, reason, r_retry = 0, 'requests', -diff
  end
end

-- Release the reservations whose records never came.
local released_t, released_s = 0, 0
if tlimit > 0 or slimit > 0 then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
  if #expired > 0 then
    local fields = {}
    for i, id in ipairs(expired) do
      fields[2 * i - 1] = 'r:' .. id
      fields[2 * i] = 's:' .. id
    end
    local amounts = redis.call('HMGET', KEYS[1], unpack(fields))
    for i = 1, #expired do
      released_t = released_t + (tonumber(amounts[2 * i - 1]) or 0)
      released_s = released_s + (tonumber(amounts[2 * i]) or 0)
    end
    redis.call('HDEL', KEYS[1], unpack(fields))
    redis.call('ZREM', KEYS[2], unpack(expired))
  end
end

-- A token bucket refilled at limit per period, with what expired back.
local function fill(limit, period, lv, ts, released)
  local level, t0 = tonumber(lv), tonumber(ts)
  if level == nil or t0 == nil then level, t0 = limit, now end
  if now > t0 then level = level + (now - t0) * limit / period end
  level = level + released
  if level > limit then level = limit end
  return level
end

local t_rem, t_reset, t_retry, level, cost = -1, 0, 0, 0, 0
if tlimit > 0 then
  level = fill(tlimit, tperiod, st[2], st[3], released_t)
  cost = math.min(math.max(tonumber(ARGV[6]), 1), tlimit)
  if peek then cost = 0 end
  if level < cost then
    if allowed == 1 then reason = 'tokens' end
    allowed = 0
    t_retry = (cost - level) * tperiod / tlimit
  end
end

local s_rem, s_reset, s_retry, slevel, scost = -1, 0, 0, 0, 0
local sres = math.max((tonumber(st[6]) or 0) - released_s, 0)
if slimit > 0 then
  slevel = fill(slimit, speriod, st[4], st[5], released_s)
  scost = math.min(math.max(tonumber(ARGV[12]), 1), slimit)
  if peek then scost = 0 end
  if slevel < scost then
    if allowed == 1 then reason = 'spend' end
    allowed = 0
    s_retry = (scost - slevel) * speriod / slimit
  end
end

local take = allowed == 1 and not peek
if take then
  if r_new then
    r_tat = r_new
    set[#set + 1] = 'tat'
    set[#set + 1] = string.format('%.0f', r_new)
  end
  if tlimit > 0 then
    level = level - cost
    set[#set + 1] = 'r:' .. ARGV[7]
    set[#set + 1] = cost
  end
  if slimit > 0 then
    slevel = slevel - scost
    sres = sres + scost
    set[#set + 1] = 's:' .. ARGV[7]
    set[#set + 1] = string.format('%.0f', scost)
  end
  if tlimit > 0 or slimit > 0 then
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[7])
    redis.call('PEXPIRE', KEYS[2], math.ceil(ttl / 1000) * 2)
  end
end
if not (take and tlimit > 0) then cost = 0 end
if not (take and slimit > 0) then scost = 0 end

local expire = 0
if rlimit > 0 then
  -- As the quota stands now, after the take if there was one.
  r_rem = math.max(math.floor((now - (r_tat - rburst * interval)) / interval + 1e-9), 0)
  r_reset = r_tat - now
  expire = r_reset
end
if tlimit > 0 then
  t_reset = (tlimit - level) * tperiod / tlimit
  t_rem = math.max(math.floor(level + 1e-9), 0)
  set[#set + 1] = 'level'
  set[#set + 1] = string.format('%.6f', level)
  set[#set + 1] = 'ts'
  set[#set + 1] = string.format('%.0f', now)
  -- Outlive the reservations, so that their settlement finds the bucket.
  expire = math.max(expire, t_reset + 2 * ttl)
end
if slimit > 0 then
  s_reset = (slimit - slevel) * speriod / slimit
  s_rem = math.max(math.floor(slevel + 1e-9), 0)
  set[#set + 1] = 'slevel'
  set[#set + 1] = string.format('%.3f', slevel)
  set[#set + 1] = 'sts'
  set[#set + 1] = string.format('%.0f', now)
  set[#set + 1] = 'sres'
  set[#set + 1] = string.format('%.0f', sres)
  expire = math.max(expire, s_reset + 2 * ttl)
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], math.ceil(expire / 1000) + 1000)
end
return {allowed, reason, r_rem, math.ceil(r_reset), math.ceil(r_retry), t_rem, math.ceil(t_reset), math.ceil(t_retry), cost,
  s_rem, math.ceil(s_reset), math.ceil(s_retry), scost, math.floor(sres)}
`)

// settleScript settles one request's reservations: what was reserved
// minus what was used goes back to its bucket (a negative difference is
// charged), tokens and money alike. A reservation already released by its
// TTL is charged in full; one already settled (a record sent twice) is
// left alone; money of an unknown cost (-1) keeps its reservation. The
// mark of a settled reservation stays until its expiry cleans it.
//
// KEYS: 1 the bucket, 2 reservations by expiry.
// ARGV: 1 reservation id, 2 tokens used, 3 money spent.
var settleScript = goredis.NewScript(`
local function settle(field, lf, used)
  local v = redis.call('HGET', KEYS[1], field)
  if v == 's' then return 0 end
  local held = tonumber(v) or 0
  if v then redis.call('HSET', KEYS[1], field, 's') end
  if used < 0 then return held end
  local delta = held - used
  if delta ~= 0 and redis.call('HEXISTS', KEYS[1], lf) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[1], lf, delta)
  end
  return held
end
settle('r:' .. ARGV[1], 'level', tonumber(ARGV[2]))
local held = settle('s:' .. ARGV[1], 'slevel', tonumber(ARGV[3]))
if held > 0 and redis.call('HEXISTS', KEYS[1], 'sres') == 1 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'sres', -held)
end
return 1
`)

// keys are a bucket's keys. The bucket sits in a hash tag, so that both
// live on one Redis Cluster slot, as a script needs.
func keys(bucket string) []string {
	tag := "llmtap:limit:{" + url.QueryEscape(bucket) + "}"
	return []string{tag, tag + ":res"}
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// Take runs takeScript for t.
func (l *Limiter) Take(ctx context.Context, t collector.Take) (collector.Taken, error) {
	peek := "0"
	if t.Peek {
		peek = "1"
	}
	burst := t.Requests.Burst
	if burst <= 0 {
		burst = t.Requests.Limit
	}
	var rlimit, tlimit, slimit int64
	if t.Requests.On() {
		rlimit = t.Requests.Limit
	}
	if t.Tokens.On() {
		tlimit = t.Tokens.Limit
	}
	if t.Spend.On() {
		slimit = t.Spend.Limit
	}
	res, err := takeScript.Run(ctx, l.rdb, keys(t.Bucket),
		rlimit, micros(t.Requests.Period), burst,
		tlimit, micros(t.Tokens.Period),
		t.Reserve, t.Reservation, micros(t.ReservationTTL), peek,
		slimit, micros(t.Spend.Period), t.ReserveSpend).Slice()
	if err != nil {
		return collector.Taken{}, fmt.Errorf("redis limit take: %w", err)
	}
	return parseTaken(res)
}

func parseTaken(res []any) (collector.Taken, error) {
	if len(res) != 14 {
		return collector.Taken{}, fmt.Errorf("redis limit take: %d values returned, want 14", len(res))
	}
	n := make([]int64, 0, 13)
	for i, v := range res {
		if i == 1 {
			continue
		}
		x, ok := v.(int64)
		if !ok {
			return collector.Taken{}, fmt.Errorf("redis limit take: value %d is %T, want an integer", i, v)
		}
		n = append(n, x)
	}
	reason, _ := res[1].(string)
	us := func(x int64) time.Duration { return time.Duration(x) * time.Microsecond }
	return collector.Taken{
		Allowed:  n[0] == 1,
		Reason:   collector.LimitReason(reason),
		Requests: collector.QuotaState{Remaining: n[1], Reset: us(n[2]), RetryAfter: us(n[3])},
		Tokens:   collector.QuotaState{Remaining: n[4], Reset: us(n[5]), RetryAfter: us(n[6])},
		Reserved: n[7],
		Spend:    collector.QuotaState{Remaining: n[8], Reset: us(n[9]), RetryAfter: us(n[10])},
		// The money reserved for this request, and for all open ones.
		ReservedSpend: n[11], SpendReservations: n[12],
	}, nil
}

// Settle settles reservations in one round trip.
func (l *Limiter) Settle(ctx context.Context, ss []collector.Settlement) error {
	if len(ss) == 0 {
		return nil
	}
	run := func(cmd func(ctx context.Context, c goredis.Scripter, keys []string, args ...any) *goredis.Cmd) ([]goredis.Cmder, error) {
		pipe := l.rdb.Pipeline()
		for _, s := range ss {
			cmd(ctx, pipe, keys(s.Bucket), s.Reservation, s.Used, s.Spent)
		}
		return pipe.Exec(ctx)
	}
	_, err := run(settleScript.EvalSha)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted and lost its script cache: load and go again.
		_, err = run(settleScript.Eval)
	}
	if err != nil {
		return fmt.Errorf("redis limit settle (%d reservations): %w", len(ss), err)
	}
	return nil
}

// Ping checks that Redis answers.
func (l *Limiter) Ping(ctx context.Context) error {
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// policiesKey holds every stored policy, by tenant.
const policiesKey = "llmtap:limit:policies"

// Policies stores limit policies, as opaque documents by tenant.
type Policies struct {
	rdb goredis.UniversalClient
}

// NewPolicies uses rdb, which the caller owns and closes.
func NewPolicies(rdb goredis.UniversalClient) *Policies { return &Policies{rdb: rdb} }

// Get returns a tenant's policy document, or an error wrapping
// collector.ErrNotFound.
func (p *Policies) Get(ctx context.Context, tenant string) ([]byte, error) {
	b, err := p.rdb.HGet(ctx, policiesKey, tenant).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("limit policy of %q: %w", tenant, collector.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("redis get limit policy: %w", err)
	}
	return b, nil
}

// Put stores a tenant's policy document.
func (p *Policies) Put(ctx context.Context, tenant string, doc []byte) error {
	if err := p.rdb.HSet(ctx, policiesKey, tenant, doc).Err(); err != nil {
		return fmt.Errorf("redis put limit policy: %w", err)
	}
	return nil
}

// All returns every stored policy document, by tenant.
func (p *Policies) All(ctx context.Context) (map[string][]byte, error) {
	m, err := p.rdb.HGetAll(ctx, policiesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redis read limit policies: %w", err)
	}
	docs := make(map[string][]byte, len(m))
	for tenant, doc := range m {
		docs[tenant] = []byte(doc)
	}
	return docs, nil
}

// Delete removes a tenant's policy, or returns an error wrapping
// collector.ErrNotFound when it has none.
func (p *Policies) Delete(ctx context.Context, tenant string) error {
	n, err := p.rdb.HDel(ctx, policiesKey, tenant).Result()
	if err != nil {
		return fmt.Errorf("redis delete limit policy: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("limit policy of %q: %w", tenant, collector.ErrNotFound)
	}
	return nil
}
