package collector

import "time"

// Quota allows Limit units (requests or tokens) per Period. A request quota
// admits up to Burst requests at once (Burst 0 means Limit); a token quota
// holds up to Limit tokens at once. A zero Limit means no quota.
type Quota struct {
	Limit  int64
	Period time.Duration
	Burst  int64
}

// On says whether the quota limits anything.
func (q Quota) On() bool { return q.Limit > 0 && q.Period > 0 }

// Take asks a limit store to admit one request to a bucket: one request
// from its request quota, Reserve tokens from its token quota and
// ReserveSpend from its spend quota, all or none, atomically.
type Take struct {
	// Bucket names the quotas' shared state: a tenant, or a tenant and a route.
	Bucket   string
	Requests Quota
	Tokens   Quota
	// Spend is a quota of money: its Limit in nano-dollars (Money).
	Spend Quota
	// ReserveSpend is the nano-dollars held for the request, its
	// worst-case cost, until its record settles them; at least 1 and at
	// most Spend.Limit are held.
	ReserveSpend int64
	// Reserve is the tokens held for the request until its record settles
	// them; at least 1 and at most Tokens.Limit are held. Reservation
	// names them (a request id, or a name of the check's own).
	Reserve     int64
	Reservation string
	// ReservationTTL releases a reservation whose record never arrives.
	ReservationTTL time.Duration
	// Peek reports the quotas as they stand without taking anything.
	Peek bool
}

// LimitReason says which quota denied a request.
type LimitReason string

// Reasons for a denial.
const (
	ReasonRequests LimitReason = "requests"
	ReasonTokens   LimitReason = "tokens"
	ReasonSpend    LimitReason = "spend"
	// ReasonUnavailable: the limits could not be checked and the limit
	// fails closed.
	ReasonUnavailable LimitReason = "unavailable"
)

// QuotaState is how one quota stands after a take.
type QuotaState struct {
	// Remaining is what could still be taken now (never below 0).
	Remaining int64
	// Reset is how long until the quota is whole again.
	Reset time.Duration
	// RetryAfter, when this quota denied the take, is how long until the
	// same take would succeed.
	RetryAfter time.Duration
}

// Taken is a limit store's answer to a Take.
type Taken struct {
	Allowed  bool
	Reason   LimitReason // the quota that denied, when not Allowed
	Requests QuotaState
	Tokens   QuotaState
	Spend    QuotaState
	Reserved int64 // tokens held for the request
	// ReservedSpend is the nano-dollars held for the request;
	// SpendReservations those held by every open reservation.
	ReservedSpend, SpendReservations int64
}

// Settlement settles a request's reservations with what it really used:
// the difference is charged or given back.
type Settlement struct {
	Bucket      string
	Reservation string // Take.Reservation
	Used        int64  // tokens
	// Spent is the request's cost in nano-dollars; SpendUnknown when it
	// could not be priced, which keeps what was reserved.
	Spent int64
}

// SpendUnknown is Settlement.Spent for a request whose cost is not known:
// its reservation is charged as it stands.
const SpendUnknown = -1
