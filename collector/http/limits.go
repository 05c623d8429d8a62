package http

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gorilla/mux"

	"github.com/llmtap/llmtap/collector"
	"github.com/llmtap/llmtap/collector/limits"
	llmtap "github.com/llmtap/llmtap/plugin"
)

// Limiter answers limit checks and manages policies.
type Limiter interface {
	Check(ctx context.Context, c llmtap.LimitCheck) *limits.Decision
	Status(ctx context.Context, tenant, route string) (*limits.Status, error)
	Put(ctx context.Context, tenant string, p *limits.Policy) error
	Delete(ctx context.Context, tenant string) error
}

// maxLimitBody bounds a policy body; maxCheckBody a check's, which may
// carry the request's body.
const (
	maxLimitBody = 64 << 10
	maxCheckBody = llmtap.MaxCheckBody + 64<<10
)

// maxName bounds tenant, route and request id values.
const maxName = 128

func (s *Server) limitRoutes() {
	s.router.HandleFunc(llmtap.LimitsCheckPath, s.check).Methods(http.MethodPost)
	s.router.HandleFunc("/v1/limits/{tenant}", s.limitStatus).Methods(http.MethodGet)
	s.router.HandleFunc("/v1/limits/{tenant}", s.putLimits).Methods(http.MethodPut)
	s.router.HandleFunc("/v1/limits/{tenant}", s.deleteLimits).Methods(http.MethodDelete)
}

// check answers the plugin: 200 to allow, 429 when a limit is reached, 503
// when the limits cannot be checked and fail closed; see llmtap.LimitCheck
// for the headers. A denial's body carries an OpenAI-shaped error the
// plugin forwards to the client as it is.
func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, errMissingToken)
		return
	}
	var c llmtap.LimitCheck
	if err := decodeJSON(w, r, &c); err != nil {
		kind := errInvalid
		if errors.Is(err, errBodyTooLarge) {
			kind = errBodyTooLarge
		}
		writeError(w, fail(kind, "check: %v", err))
		return
	}
	if err := validateCheck(&c); err != nil {
		writeError(w, fail(errInvalid, "check: %v", err))
		return
	}
	d := s.opt.Limits.Check(r.Context(), c)
	h := w.Header()
	if q := binding(d); q != nil {
		h.Set("RateLimit-Limit", strconv.FormatInt(q.Limit, 10))
		h.Set("RateLimit-Remaining", strconv.FormatInt(q.Remaining, 10))
		h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(q.Reset), 10))
	}
	body := decisionBody(d)
	if d.Allowed {
		h.Set(llmtap.HeaderDecision, llmtap.DecisionAllow)
		if d.Reserved > 0 {
			h.Set(llmtap.HeaderReserved, strconv.FormatInt(d.Reserved, 10))
		}
		if d.Reservation != "" && (d.Reserved > 0 || d.ReservedSpend > 0) {
			// Tokens or money held: the record names them to settle.
			h.Set(llmtap.HeaderReservation, d.Reservation)
		}
		writeJSON(w, http.StatusOK, body)
		return
	}
	h.Set(llmtap.HeaderDecision, llmtap.DecisionDeny)
	h.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10))
	status := http.StatusTooManyRequests
	if d.Reason == collector.ReasonUnavailable {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

// validateCheck accepts an empty tenant: requests that name none share
// one quota under the default policy.
func validateCheck(c *llmtap.LimitCheck) error {
	if err := checkID("tenant", c.Tenant, false); err != nil {
		return err
	}
	if err := checkName("route", c.Route, false); err != nil {
		return err
	}
	if err := checkID("request_id", c.RequestID, false); err != nil {
		return err
	}
	if c.Reserve < 0 {
		return fmt.Errorf("reserve %d: want 0 (the default reservation) or more", c.Reserve)
	}
	if len(c.Model) > 256 {
		c.Model = c.Model[:256]
	}
	return nil
}

// checkID accepts a tenant or request id as the plugin sends them
// (llmtap.ValidID); empty when optional.
func checkID(field, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s is missing", field)
		}
		return nil
	}
	if !llmtap.ValidID(v) {
		return fmt.Errorf("%s %q: want %s", field, truncate(v, 32), llmtap.IDRule)
	}
	return nil
}

// checkName accepts 1 to maxName printable characters (0 when optional).
func checkName(field, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s is missing", field)
		}
		return nil
	}
	if len(v) > maxName {
		return fmt.Errorf("%s %q: want at most %d bytes", field, truncate(v, 32), maxName)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return fmt.Errorf("%s %q: control characters are not allowed", field, truncate(v, 32))
	}
	return nil
}

// binding is the quota the RateLimit headers describe: the one that
// denied, else the one nearest to running out.
func binding(d *limits.Decision) *limits.QuotaStatus {
	switch {
	case d.TooLarge, d.Unpriced:
		return nil // nothing was taken: the quota's state is not known
	case d.Reason == collector.ReasonSpend:
		return nil // money is not a count the RateLimit headers carry
	case d.Reason == collector.ReasonRequests:
		return d.Requests
	case d.Reason == collector.ReasonTokens:
		return d.Tokens
	case d.Requests == nil:
		return d.Tokens
	case d.Tokens == nil:
		return d.Requests
	}
	if float64(d.Tokens.Remaining)/float64(d.Tokens.Limit) < float64(d.Requests.Remaining)/float64(d.Requests.Limit) {
		return d.Tokens
	}
	return d.Requests
}

func ceilSeconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }

type quotaJSON struct {
	Limit        int64   `json:"limit"`
	Period       string  `json:"period"`
	Remaining    int64   `json:"remaining"`
	ResetSeconds float64 `json:"reset_seconds"`
}

// openAIError is the error shape OpenAI-compatible clients parse.
type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// spendJSON is a spend limit as it stands, in US dollars.
type spendQuotaJSON struct {
	Limit        float64  `json:"limit"`
	Period       string   `json:"period"`
	Remaining    float64  `json:"remaining"`
	Reserved     *float64 `json:"reserved,omitempty"`
	Spent        *float64 `json:"spent,omitempty"`
	ResetSeconds float64  `json:"reset_seconds"`
}

func spendBodyOf(q *limits.QuotaStatus) *spendQuotaJSON {
	if q == nil {
		return nil
	}
	return &spendQuotaJSON{Limit: collector.Money(q.Limit).Dollars(), Period: q.Period.String(),
		Remaining: collector.Money(q.Remaining).Dollars(), ResetSeconds: roundMs(q.Reset)}
}

type decisionJSON struct {
	Allowed           bool            `json:"allowed"`
	Reason            string          `json:"reason,omitempty"`
	Tenant            string          `json:"tenant"`
	Route             string          `json:"route,omitempty"`
	Requests          *quotaJSON      `json:"requests,omitempty"`
	Tokens            *quotaJSON      `json:"tokens,omitempty"`
	Spend             *spendQuotaJSON `json:"spend,omitempty"`
	Reserved          int64           `json:"reserved,omitempty"`
	ReservedSpendUSD  float64         `json:"reserved_spend_usd,omitempty"`
	RetryAfterSeconds float64         `json:"retry_after_seconds,omitempty"`
	FailedOpen        bool            `json:"failed_open,omitempty"`
	Error             *openAIError    `json:"error,omitempty"`
}

func quotaBody(q *limits.QuotaStatus) *quotaJSON {
	if q == nil {
		return nil
	}
	return &quotaJSON{Limit: q.Limit, Period: q.Period.String(), Remaining: q.Remaining, ResetSeconds: roundMs(q.Reset)}
}

func roundMs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func decisionBody(d *limits.Decision) decisionJSON {
	b := decisionJSON{
		Allowed: d.Allowed, Reason: string(d.Reason), Tenant: d.Tenant, Route: d.Route,
		Requests: quotaBody(d.Requests), Tokens: quotaBody(d.Tokens), Spend: spendBodyOf(d.Spend),
		Reserved: d.Reserved, ReservedSpendUSD: collector.Money(d.ReservedSpend).Dollars(), FailedOpen: d.FailedOpen,
	}
	if d.Allowed {
		return b
	}
	b.RetryAfterSeconds = roundMs(d.RetryAfter)
	if d.Reason == collector.ReasonUnavailable {
		b.Error = &openAIError{Message: "llmtap: rate limits cannot be checked now; retry later", Type: "limits_unavailable", Code: "limits_unavailable"}
		return b
	}
	where := "tenant " + d.Tenant
	if d.Route != "" {
		where += " on route " + d.Route
	}
	if d.Reason == collector.ReasonSpend {
		b.Error = budgetError(d, where)
		return b
	}
	q := d.Requests
	if d.Reason == collector.ReasonTokens {
		q = d.Tokens
	}
	if d.TooLarge {
		msg := fmt.Sprintf("Request too large for %s: its prompt alone is about %d tokens, "+
			"more than the limit of %d tokens per %s allows. Shorten the prompt.", where, d.Prompt, q.Limit, q.Period)
		b.Error = &openAIError{Message: msg, Type: string(d.Reason), Code: "request_too_large"}
		return b
	}
	msg := fmt.Sprintf("Rate limit reached for %s: %s.", where, d.Reason)
	if q != nil {
		msg = fmt.Sprintf("Rate limit reached for %s: %d %s per %s.", where, q.Limit, d.Reason, q.Period)
	}
	msg += fmt.Sprintf(" Retry in %s.", d.RetryAfter.Round(time.Millisecond))
	b.Error = &openAIError{Message: msg, Type: string(d.Reason), Code: "rate_limit_exceeded"}
	return b
}

// budgetError says why a spend limit denied a request, and when it has
// room again.
func budgetError(d *limits.Decision, where string) *openAIError {
	q := d.Spend
	budget := fmt.Sprintf("$%s per %s", trimDollars(q.Limit), q.Period)
	switch {
	case d.Unpriced:
		return &openAIError{Type: "budget_exceeded", Code: "model_not_priced", Message: fmt.Sprintf(
			"The spend budget of %s (%s) cannot admit model %q: llmtap has no price for it, so its cost cannot be counted. "+
				"Price it in the collector's pricing configuration.", where, budget, truncate(d.Model, 64))}
	case d.TooLarge:
		return &openAIError{Type: "budget_exceeded", Code: "request_too_large", Message: fmt.Sprintf(
			"Request too large for the spend budget of %s (%s): its prompt alone would cost more. Shorten the prompt.", where, budget)}
	}
	return &openAIError{Type: "budget_exceeded", Code: "budget_exceeded", Message: fmt.Sprintf(
		"Budget exceeded for %s: %s. This request may cost up to $%s; the budget has room for it again in %s.",
		where, budget, trimDollars(d.SpendWanted), d.RetryAfter.Round(time.Second))}
}

// trimDollars writes nano-dollars as dollars, without trailing zeros.
func trimDollars(nanos int64) string {
	s := strings.TrimRight(dollars(nanos), "0")
	return strings.TrimSuffix(s, ".")
}

type statusJSON struct {
	Tenant   string          `json:"tenant"`
	Route    string          `json:"route,omitempty"`
	Source   string          `json:"source"`
	Policy   *limits.Policy  `json:"policy"`
	Requests *quotaJSON      `json:"requests,omitempty"`
	Tokens   *quotaJSON      `json:"tokens,omitempty"`
	Spend    *spendQuotaJSON `json:"spend,omitempty"`
}

// limitStatus reports a tenant's policy and remaining quotas; ?route=
// names a route. It takes the read or the admin token.
func (s *Server) limitStatus(w http.ResponseWriter, r *http.Request) {
	if !s.reader(r) {
		writeError(w, errMissingToken)
		return
	}
	tenant, route := mux.Vars(r)["tenant"], r.URL.Query().Get("route")
	if err := checkID("tenant", tenant, true); err != nil {
		writeError(w, fail(errInvalid, "%v", err))
		return
	}
	if err := checkName("route", route, false); err != nil {
		writeError(w, fail(errInvalid, "%v", err))
		return
	}
	st, err := s.opt.Limits.Status(r.Context(), tenant, route)
	if err != nil {
		s.opt.Logger.Warn("limit status", "tenant", tenant, "err", err)
		writeError(w, unavailable("limits store unavailable"))
		return
	}
	var spend *spendQuotaJSON
	if st.Spend != nil {
		spend = spendBodyOf(&st.Spend.QuotaStatus)
		reserved, spent := collector.Money(st.Spend.Reserved).Dollars(), collector.Money(st.Spend.Spent).Dollars()
		spend.Reserved, spend.Spent = &reserved, &spent
	}
	writeJSON(w, http.StatusOK, statusJSON{Tenant: st.Tenant, Route: st.Route, Source: st.Source, Policy: st.Policy,
		Requests: quotaBody(st.Requests), Tokens: quotaBody(st.Tokens), Spend: spend})
}

// putLimits stores a tenant's policy (admin).
func (s *Server) putLimits(w http.ResponseWriter, r *http.Request) {
	tenant, ok := s.adminTenant(w, r)
	if !ok {
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLimitBody))
	if err != nil {
		writeError(w, fail(errBodyTooLarge, "policy: body over %d bytes", maxLimitBody))
		return
	}
	p, err := limits.ParsePolicy(b)
	if err != nil {
		writeError(w, fail(errInvalid, "%v", err))
		return
	}
	if err := s.opt.Limits.Put(r.Context(), tenant, p); err != nil {
		s.opt.Logger.Warn("put limit policy", "tenant", tenant, "err", err)
		writeError(w, unavailable("limits store unavailable; the policy was not stored"))
		return
	}
	s.opt.Logger.Info("limit policy set", "tenant", tenant)
	writeJSON(w, http.StatusOK, statusJSON{Tenant: tenant, Source: limits.SourceAPI, Policy: p})
}

// deleteLimits removes a tenant's stored policy (admin).
func (s *Server) deleteLimits(w http.ResponseWriter, r *http.Request) {
	tenant, ok := s.adminTenant(w, r)
	if !ok {
		return
	}
	err := s.opt.Limits.Delete(r.Context(), tenant)
	switch {
	case errors.Is(err, collector.ErrNotFound):
		writeError(w, fail(collector.ErrNotFound, "tenant %q has no policy set through the API", tenant))
	case err != nil:
		s.opt.Logger.Warn("delete limit policy", "tenant", tenant, "err", err)
		writeError(w, unavailable("limits store unavailable; the policy was not deleted"))
	default:
		s.opt.Logger.Info("limit policy deleted", "tenant", tenant)
		w.WriteHeader(http.StatusNoContent)
	}
}

// adminTenant authorizes an admin request and returns its tenant, or
// answers the request itself.
func (s *Server) adminTenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	if err := s.adminOnly(r); err != nil {
		writeError(w, err)
		return "", false
	}
	tenant := mux.Vars(r)["tenant"]
	if err := checkID("tenant", tenant, true); err != nil {
		writeError(w, fail(errInvalid, "%v", err))
		return "", false
	}
	return tenant, true
}

// adminOnly authorizes an admin request.
func (s *Server) adminOnly(r *http.Request) error {
	switch {
	case s.opt.AdminToken == "":
		return errNoAdmin
	case !s.admin(r):
		return errMissingToken
	}
	return nil
}

func (s *Server) admin(r *http.Request) bool {
	return s.opt.AdminToken != "" && bearer(r, s.opt.AdminToken)
}

func bearer(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

type errorBody struct {
	Error string `json:"error"`
}

// decodeJSON reads one bounded JSON object into v.
// Unknown keys are ignored, so that newer plugins can send more; anything
// after the object is refused.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCheckBody))
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("one JSON object expected, more follows")
	}
	if err == nil {
		// Read to the end, so that a body over the limit is refused whole.
		_, err = io.Copy(io.Discard, dec.Buffered())
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: over %d bytes", errBodyTooLarge, maxCheckBody)
	case err != nil:
		return fmt.Errorf("not a JSON object: %w", err)
	}
	return nil
}

// errBodyTooLarge is wrapped by decodeJSON for a body over its limit.
var errBodyTooLarge = errors.New("body too large")
