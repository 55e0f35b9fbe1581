package api

import (
	"errors"
	"net/http"

	"github.com/authsvc/authsvc/internal/identity"
	"github.com/authsvc/authsvc/internal/session"
)

// authorize handles any method on /v1/authorize and below it: the
// subrequest a gateway makes for every protected request. A fully
// authenticated session answers 200 with the identity headers the gateway
// hands to its upstream. It costs one indexed read, and a write only when
// the session slides or its last-seen time is a minute old.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	token, tr, err := s.credential(r)
	if err != nil {
		return err
	}
	v, err := s.sessions.Validate(r.Context(), token)
	if errors.Is(err, session.ErrInvalid) {
		return errUnauthenticated
	}
	if err != nil {
		return err
	}
	setUser(r, v.User.ID)
	if v.Slid && tr == viaCookie {
		s.setCookie(w, token, v.Session.ExpiresAt)
	}
	if session.Partial(v.Session, v.User) {
		return errTwoFactorRequired
	}

	// Every requirement named, in the query or the header, must be one we
	// know; an empty or unknown one fails closed.
	required := append(r.URL.Query()["require"], r.Header.Values("X-Auth-Require")...)
	for _, req := range required {
		if req != "two_factor" {
			return invalidRequest(`require must be "two_factor".`)
		}
	}
	if len(required) > 0 && !v.User.TwoFactorEnabled() {
		return problem(http.StatusForbidden, "two_factor_enrollment_required",
			"This resource requires two-factor authentication to be set up.")
	}

	h := w.Header()
	h.Set("X-Auth-User-Id", v.User.ID)
	h.Set("X-Auth-User-Email", identity.HeaderValue(identity.Email{
		Typed: v.User.Email, Canonical: v.User.EmailCanonical}))
	h.Set("X-Auth-Session-Id", v.Session.ID)
	w.WriteHeader(http.StatusOK)
	return nil
}
