package llmtap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// limitsUnavailable is the answer of a router that fails closed when its
// limits cannot be checked, in the OpenAI error shape clients know.
const limitsUnavailable = `{"error":{"message":"llmtap: rate limits cannot be checked now; retry later","type":"limits_unavailable","param":null,"code":"limits_unavailable"}}`

// limitsRefused is the answer when the collector refused the check itself
// (a 4xx other than a denial: a bad token, a check it cannot read). That
// is no missing answer to fail open on, or a client could turn its limits
// off with a request the check cannot carry.
const limitsRefused = `{"error":{"message":"llmtap: the limit check was refused; the request was not proxied (see the proxy's log)","type":"limits_error","param":null,"code":"limits_error"}}`

// maxCheckAnswer bounds the bytes read from the answer to a limit check.
const maxCheckAnswer = 64 << 10

// rateHeaders are copied from the collector's answer to the client, in
// their canonical form (RateLimit-Limit and so on).
var rateHeaders = []string{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset"}

// checkLimits asks the collector whether the request may be proxied (the
// contract is at LimitsCheckPath), and reports whether it may. When it may
// not, the client has its answer, written through c so that the response
// is recorded like any other: the collector's denial, or a 503 when the
// limits cannot be checked and the router fails closed. The only wait is
// the check itself, bounded by limits.timeout.
//
// It runs interpreted on the request path of routers with limits. The
// common answer, allow, is handled inline; the others in their own
// functions, whose frames (Yaegi allocates every slot of a function on
// each call) only the requests that need them pay for.
func checkLimits(sd *sender, c *captureWriter, req *http.Request) bool {
	s := c.set
	r := c.rec
	resolveTenant(c, sd.keys)
	chk := &LimitCheck{V: CheckVersion, Tenant: r.Tenant, Route: s.route, RequestID: r.RequestID}
	switch {
	case c.reqBody != nil:
		chk.BodyBytes = int64(len(c.reqBody))
		if len(c.reqBody) <= MaxCheckBody {
			chk.Body = c.reqBody
		}
	case req.ContentLength > 0:
		chk.BodyBytes = req.ContentLength
	default:
		// Unknown length, past the capture limit: at least this long.
		chk.BodyBytes = c.headRead
	}
	ctx, cancel := context.WithTimeout(req.Context(), s.checkTimeout)
	defer cancel() // after the answer's body is read
	body, err := json.Marshal(chk)
	if err != nil && chk.Body != nil {
		// Not JSON: the collector reserves by its length.
		chk.Body = nil
		body, err = json.Marshal(chk)
	}
	var check *http.Request
	if err == nil {
		check, err = http.NewRequestWithContext(ctx, http.MethodPost, s.checkURL, bytes.NewReader(body))
	}
	var resp *http.Response
	if err == nil {
		check.Header["Content-Type"] = []string{"application/json"}
		if s.token != "" {
			check.Header["Authorization"] = []string{"Bearer " + s.token}
		}
		resp, err = sd.limits.RoundTrip(check) //nolint:bodyclose // closed by closeAnswer or notAllowed
	}
	if err != nil {
		return unchecked(sd, c, req, err)
	}
	if v := resp.Header[HeaderDecision]; len(v) == 0 || v[0] != DecisionAllow || resp.StatusCode/100 != 2 {
		return notAllowed(sd, c, req, resp)
	}
	for _, k := range rateHeaders {
		if v := resp.Header[k]; len(v) > 0 {
			c.h[k] = v
		}
	}
	r.Limit = LimitAllowed
	if v := resp.Header[HeaderReserved]; len(v) > 0 {
		if n, perr := strconv.ParseInt(v[0], 10, 64); perr == nil && n > 0 {
			r.LimitReserved = n
		}
	}
	if v := resp.Header[HeaderReservation]; len(v) > 0 {
		r.LimitReservation = v[0]
	}
	closeAnswer(resp.Body)
	return true
}

// notAllowed handles a check's answer other than allow: a denial, answered
// to the client as the collector wrote it; a refusal of the check (4xx),
// answered 500 whatever the failure mode; or an answer outside the
// contract (5xx and the like), which counts as no answer. It closes the
// answer's body.
func notAllowed(sd *sender, c *captureWriter, req *http.Request, resp *http.Response) bool {
	defer closeAnswer(resp.Body)
	deny := len(resp.Header[HeaderDecision]) > 0 && resp.Header[HeaderDecision][0] == DecisionDeny
	if !deny || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		if resp.StatusCode/100 == 4 {
			return refused(sd, c, resp)
		}
		return unchecked(sd, c, req, fmt.Errorf("collector answered %s without a decision", resp.Status))
	}
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckAnswer))
	if err != nil {
		return unchecked(sd, c, req, fmt.Errorf("read the collector's denial: %w", err))
	}
	c.rec.Limit = LimitDenied
	c.rec.Outcome = OutcomeLimited
	if v := resp.Header["Retry-After"]; len(v) > 0 {
		c.h["Retry-After"] = v
	}
	for _, k := range rateHeaders {
		if v := resp.Header[k]; len(v) > 0 {
			c.h[k] = v
		}
	}
	answer(c, resp.StatusCode, msg)
	return false
}

// unchecked applies the router's failure mode to a request whose limits
// could not be checked (err says why), and reports whether to proxy it.
func unchecked(sd *sender, c *captureWriter, req *http.Request, err error) bool {
	s := c.set
	if s.failClosed {
		c.rec.Limit = LimitFailedClosed
	} else {
		c.rec.Limit = LimitFailedOpen
	}
	if req.Context().Err() != nil {
		// The client went away during the check: nothing to answer, and
		// nothing to proxy. finish records it as client_cancelled.
		return false
	}
	if !s.failClosed {
		sd.logf("llmtap: limits not checked; request proxied (limits.failureMode open)", err, "collector", s.checkURL, "route", s.route)
		return true
	}
	sd.logf("llmtap: limits not checked; request answered 503 (limits.failureMode closed)", err, "collector", s.checkURL, "route", s.route)
	c.rec.Outcome = OutcomeLimited
	c.h["Retry-After"] = []string{"1"}
	answer(c, http.StatusServiceUnavailable, []byte(limitsUnavailable))
	return false
}

// refused answers a request whose check the collector refused (resp is
// its 4xx), and logs the collector's reason.
func refused(sd *sender, c *captureWriter, resp *http.Response) bool {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	sd.logf("llmtap: the collector refused a limit check; request answered 500", fmt.Errorf("collector answered %s: %s", resp.Status, msg),
		"collector", c.set.checkURL, "route", c.set.route)
	c.rec.Limit = LimitFailedClosed
	c.rec.Outcome = OutcomeLimited
	answer(c, http.StatusInternalServerError, []byte(limitsRefused))
	return false
}

// answer writes the plugin's own JSON answer through the capture writer.
// The length is set, so the answer is not taken for a stream.
func answer(c *captureWriter, status int, body []byte) {
	c.h["Content-Type"] = []string{"application/json"}
	c.h["Content-Length"] = []string{strconv.Itoa(len(body))}
	c.WriteHeader(status)
	if len(body) > 0 {
		_, _ = c.Write(body)
	}
}

// closeAnswer reads what is left of a check's answer, within bounds, and
// closes it, so that its connection goes back to the pool.
func closeAnswer(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxCheckAnswer))
	_ = body.Close()
}
