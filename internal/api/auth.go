package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/session"
)

// recentPassword is how long a proven password counts as recent.
const recentPassword = 10 * time.Minute

// transport is how a session token travels.
type transport int

const (
	viaCookie transport = iota
	viaBearer
)

// access is how much authentication an endpoint needs.
type access int

const (
	anyone  access = iota // needs nothing; credentials are not looked at
	partial               // any live session, partial or full
	full                  // a fully authenticated session
)

// rules are what an endpoint needs before its own logic runs. They are
// checked in the contract's order of precedence.
type rules struct {
	body   bool // takes a JSON body (documentation; every body is checked)
	access access
	recent bool // needs a recent password
}

// call is a request that has passed its endpoint's rules.
type call struct {
	body      []byte
	session   *model.Session
	user      *model.User
	transport transport
	token     string
}

// begin checks the rules of an endpoint against r, in the contract's order:
// 413 and 415 on the body, 401 unauthenticated, 403 forbidden_origin,
// 401 two_factor_required, 403 reauthentication_required. Checks the
// handler makes itself (429, 400, 409, 422) come after.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, rl rules) (*call, error) {
	c := &call{}
	// Endpoints that take no body still refuse an oversized or non-JSON
	// one, so that every endpoint answers the same request the same way.
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	c.body = body
	if rl.access == anyone {
		return c, nil
	}

	token, tr, err := s.credential(r)
	if err != nil {
		return nil, err
	}
	v, err := s.sessions.Validate(r.Context(), token)
	if errors.Is(err, session.ErrInvalid) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	c.session, c.user, c.transport, c.token = v.Session, v.User, tr, token
	setUser(r, v.User.ID)
	if tr == viaCookie && unsafeMethod(r.Method) && !s.originAllowed(r) {
		return nil, errForbiddenOrigin
	}
	if v.Slid && tr == viaCookie {
		s.setCookie(w, token, v.Session.ExpiresAt)
	}
	if rl.access == full && session.Partial(v.Session, v.User) {
		return nil, errTwoFactorRequired
	}
	if rl.recent && s.now().Sub(v.Session.PasswordVerifiedAt) > recentPassword {
		return nil, errReauthRequired
	}
	return c, nil
}

// credential finds the session token of r: a Bearer token if there is one,
// else the session cookie. Missing, malformed or doubled credentials are
// errUnauthenticated.
func (s *Server) credential(r *http.Request) (string, transport, error) {
	if tok, ok := bearer(r); ok {
		return tok, viaBearer, nil
	}
	tok, n := s.sessionCookie(r)
	if n != 1 {
		return "", viaCookie, errUnauthenticated
	}
	return tok, viaCookie, nil
}

// bearer returns the token of an Authorization: Bearer header. Other
// schemes do not count.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", false
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// sessionCookie returns the value of the session cookie and how many
// cookies of that name the request carries.
func (s *Server) sessionCookie(r *http.Request) (string, int) {
	var val string
	n := 0
	for _, c := range r.CookiesNamed(s.cookieName) {
		val = c.Value
		n++
	}
	return val, n
}

// presentedToken is whatever credential r carries, valid or not, for
// revoking it on login and signup.
func (s *Server) presentedToken(r *http.Request) (string, transport, bool) {
	if tok, ok := bearer(r); ok {
		return tok, viaBearer, true
	}
	tok, n := s.sessionCookie(r)
	return tok, viaCookie, n == 1
}

func (s *Server) setCookie(w http.ResponseWriter, token string, expires time.Time) {
	maxAge := int(expires.Sub(s.now()) / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName, Value: token, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

// handOut delivers a new token the way the session travels: a cookie, or
// the session_token member of the answer.
func (s *Server) handOut(w http.ResponseWriter, tr transport, token string,
	expires time.Time, body map[string]any) {
	if tr == viaBearer {
		body["session_token"] = token
		return
	}
	s.setCookie(w, token, expires)
}

// userJSON is the User object of the contract.
type userJSON struct {
	ID                     string    `json:"id"`
	Email                  string    `json:"email"`
	TwoFactorEnabled       bool      `json:"two_factor_enabled"`
	RecoveryCodesRemaining int       `json:"recovery_codes_remaining"`
	CreatedAt              time.Time `json:"created_at"`
}

// sessionJSON is the Session object of the contract.
type sessionJSON struct {
	ID                string    `json:"id"`
	CreatedAt         time.Time `json:"created_at"`
	ExpiresAt         time.Time `json:"expires_at"`
	LastSeenAt        time.Time `json:"last_seen_at"`
	TwoFactorVerified bool      `json:"two_factor_verified"`
	ClientIP          string    `json:"client_ip"`
	UserAgent         string    `json:"user_agent"`
	Current           *bool     `json:"current,omitempty"`
}

func (s *Server) userObject(ctx context.Context, u *model.User) (userJSON, error) {
	out := userJSON{ID: u.ID, Email: u.Email, TwoFactorEnabled: u.TwoFactorEnabled(),
		CreatedAt: u.CreatedAt.UTC()}
	if u.TwoFactorEnabled() {
		n, err := s.store.RecoveryCodesRemaining(ctx, u.ID)
		if err != nil {
			return out, err
		}
		out.RecoveryCodesRemaining = n
	}
	return out, nil
}

func sessionObject(ss *model.Session) sessionJSON {
	return sessionJSON{
		ID: ss.ID, CreatedAt: ss.CreatedAt.UTC(), ExpiresAt: ss.ExpiresAt.UTC(),
		LastSeenAt: ss.LastSeenAt.UTC(), TwoFactorVerified: ss.TwoFactorVerified,
		ClientIP: ss.ClientIP, UserAgent: ss.UserAgent,
	}
}

// userAndSession answers the {user, session} pair most endpoints return.
func (s *Server) userAndSession(ctx context.Context, u *model.User,
	ss *model.Session) (map[string]any, error) {
	uj, err := s.userObject(ctx, u)
	if err != nil {
		return nil, err
	}
	return map[string]any{"user": uj, "session": sessionObject(ss)}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write means the client has gone; there is no one to tell.
	_ = json.NewEncoder(w).Encode(v)
	return nil
}
