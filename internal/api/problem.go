package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Problem is an error answered as an RFC 9457 problem document. Code is the
// stable part clients switch on; Detail is written for people and never
// repeats the request or an internal error.
type Problem struct {
	Status     int
	Code       string
	Detail     string
	RetryAfter int // seconds; sent as Retry-After when positive
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail)
}

func problem(status int, code, detail string) *Problem {
	return &Problem{Status: status, Code: code, Detail: detail}
}

// Problems every handler may answer.
var (
	errUnauthenticated = problem(http.StatusUnauthorized, "unauthenticated",
		"A valid session is required.")
	errTwoFactorRequired = problem(http.StatusUnauthorized, "two_factor_required",
		"This session must pass the second factor first.")
	errForbiddenOrigin = problem(http.StatusForbidden, "forbidden_origin",
		"The request's origin is not allowed to use the session cookie.")
	errReauthRequired = problem(http.StatusForbidden, "reauthentication_required",
		"Confirm your password again to make this change.")
	errInvalidCredentials = problem(http.StatusUnauthorized, "invalid_credentials",
		"The email or password is not correct.")
	errNotFound = problem(http.StatusNotFound, "not_found",
		"There is nothing here.")
	errMethodNotAllowed = problem(http.StatusMethodNotAllowed, "method_not_allowed",
		"This method is not allowed here.")
	errInternal = problem(http.StatusInternalServerError, "internal_error",
		"Something went wrong on our side.")
	errPayloadTooLarge = problem(http.StatusRequestEntityTooLarge, "payload_too_large",
		"The request body is larger than 64 KiB.")
	errUnsupportedMedia = problem(http.StatusUnsupportedMediaType, "unsupported_media_type",
		"The request body must be sent as application/json.")
	errInvalidOTP = problem(http.StatusUnprocessableEntity, "invalid_otp",
		"The code is not valid.")
	errInvalidRecoveryCode = problem(http.StatusUnprocessableEntity, "invalid_recovery_code",
		"The recovery code is not valid.")
	errTwoFactorNotEnabled = problem(http.StatusConflict, "two_factor_not_enabled",
		"Two-factor authentication is not enabled for this account.")
	errAlreadyVerified = problem(http.StatusConflict, "already_verified",
		"This session has passed the second factor already.")
	errSetupRequired = problem(http.StatusConflict, "two_factor_setup_required",
		"Start the authenticator setup again: there is no pending setup for this session.")
	errEmailTaken = problem(http.StatusConflict, "email_taken",
		"An account with this email exists already.")
)

func invalidRequest(detail string) *Problem {
	return problem(http.StatusBadRequest, "invalid_request", detail)
}

func weakPassword(detail string) *Problem {
	return problem(http.StatusUnprocessableEntity, "weak_password", detail)
}

func rateLimited(seconds int) *Problem {
	if seconds < 1 {
		seconds = 1
	}
	return &Problem{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Detail: "Too many attempts. Try again later.", RetryAfter: seconds}
}

func unavailable(seconds int) *Problem {
	return &Problem{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Detail:     "The service is busy or cannot reach its database. Try again shortly.",
		RetryAfter: seconds}
}

// problemTitles are the short standard titles of the statuses answered.
func problemTitle(status int) string {
	return http.StatusText(status)
}

// writeProblem answers p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{
		Type:   "urn:authsvc:problem:" + p.Code,
		Title:  problemTitle(p.Status),
		Status: p.Status,
		Detail: p.Detail,
		Code:   p.Code,
	})
}

// asProblem returns the problem err carries, if any.
func asProblem(err error) (*Problem, bool) {
	var p *Problem
	ok := errors.As(err, &p)
	return p, ok
}
