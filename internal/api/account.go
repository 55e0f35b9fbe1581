package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/identity"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/password"
	"github.com/authsvc/authsvc/internal/session"
)

// maxSessions is how many live sessions one user may have; a new one
// beyond that revokes the oldest.
const maxSessions = 100

// credentialsInput is the body of signup and login.
type credentialsInput struct {
	email, password, transport string
}

// decodeCredentials parses a signup or login body. It returns the
// transport asked for even when the rest is invalid, because the origin
// check, which comes before 400 in precedence, depends on it.
func decodeCredentials(body []byte) (credentialsInput, transport, error) {
	var in credentialsInput
	err := decodeObject(body,
		field{name: "email", dst: &in.email, required: true},
		field{name: "password", dst: &in.password, required: true},
		field{name: "session_transport", dst: &in.transport},
	)
	tr := viaCookie
	if err == nil {
		switch in.transport {
		case "", "cookie":
		case "bearer":
			tr = viaBearer
		default:
			err = invalidRequest(`session_transport must be "cookie" or "bearer".`)
		}
	}
	return in, tr, err
}

// checkBrowserCredentials applies the origin check to signup and login,
// which create cookie sessions or carry one.
func (s *Server) checkBrowserCredentials(r *http.Request, tr transport) error {
	_, presented, ok := s.presentedToken(r)
	cookie := ok && presented == viaCookie
	if (tr == viaCookie || cookie) && !s.originAllowed(r) {
		return errForbiddenOrigin
	}
	return nil
}

// signup handles POST /v1/signup: creates an account and a session.
func (s *Server) signup(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{body: true})
	if err != nil {
		return err
	}
	in, tr, perr := decodeCredentials(c.body)
	if err := s.checkBrowserCredentials(r, tr); err != nil {
		return err
	}
	if wait := s.signupIP.wait(clientKey(r)); wait > 0 {
		s.metrics.throttled.WithLabelValues("signup_ip").Inc()
		return rateLimited(retryAfter(wait))
	}
	if perr != nil {
		return perr
	}
	email, err := identity.ParseEmail(in.email)
	if err != nil {
		return invalidRequest("The email address is not valid.")
	}

	ctx := r.Context()
	s.signupIP.add(clientKey(r))
	if _, err := s.store.UserByEmail(ctx, email.Canonical); err == nil {
		return errEmailTaken
	} else if !errors.Is(err, model.ErrNotFound) {
		return err
	}
	pw, err := password.Normalize(in.password)
	if err == nil {
		err = password.Check(pw, email.Typed)
	}
	if err != nil {
		return weakPassword(passwordReason(err))
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return err
	}

	now := s.now()
	u := &model.User{ID: session.NewID(), Email: email.Typed, EmailCanonical: email.Canonical,
		PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateUser(ctx, u); errors.Is(err, model.ErrEmailTaken) {
		return errEmailTaken
	} else if err != nil {
		return err
	}
	setUser(r, u.ID)
	s.metrics.signups.Inc()
	s.log.LogAttrs(ctx, slog.LevelInfo, "account created",
		slog.String("request_id", requestID(r)), slog.String("user_id", u.ID))
	return s.startSession(w, r, u, tr, http.StatusCreated)
}

// login handles POST /v1/login.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{body: true})
	if err != nil {
		return err
	}
	in, tr, perr := decodeCredentials(c.body)
	if err := s.checkBrowserCredentials(r, tr); err != nil {
		return err
	}
	ipKey := clientKey(r)
	if wait := s.loginIP.wait(ipKey); wait > 0 {
		s.metrics.throttled.WithLabelValues("login_ip").Inc()
		return rateLimited(retryAfter(wait))
	}
	if perr != nil {
		return perr
	}

	ctx := r.Context()
	now := s.now()
	fail := func(reason string, userID string) error {
		s.loginIP.add(ipKey)
		s.metrics.logins.WithLabelValues("failure").Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "login failed",
			slog.String("request_id", requestID(r)), slog.String("reason", reason),
			slog.String("user_id", userID), slog.String("client_ip", info(r).clientIP.String()))
		return errInvalidCredentials
	}
	throttled := func(wait time.Duration) error {
		s.metrics.throttled.WithLabelValues("login_account").Inc()
		return rateLimited(retryAfter(wait))
	}
	pw, pwErr := password.Normalize(in.password)
	if pwErr != nil && utf8.RuneCountInString(in.password) > 256 {
		return fail("password too long", "")
	}
	email, err := identity.ParseEmail(in.email)
	if err != nil {
		if err := s.hasher.VerifyDummy(ctx, in.password); err != nil {
			return err
		}
		return fail("malformed email", "")
	}
	u, err := s.store.UserByEmail(ctx, email.Canonical)
	if errors.Is(err, model.ErrNotFound) {
		// Unknown addresses are throttled like accounts, so that neither
		// the answer nor its timing tells whether the account exists.
		if wait := s.unknown.wait(email.Canonical, now); wait > 0 {
			return throttled(wait)
		}
		if err := s.hasher.VerifyDummy(ctx, in.password); err != nil {
			return err
		}
		s.unknown.fail(email.Canonical, now)
		return fail("unknown email", "")
	}
	if err != nil {
		return err
	}
	device := s.knownDevice(r, u.ID)
	if wait, err := s.loginWait(r, u, device); err != nil {
		return err
	} else if wait > 0 {
		return throttled(wait)
	}
	if pwErr != nil {
		pw = in.password
	}
	ok, rehash, err := s.hasher.Verify(ctx, pw, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		if _, err := s.store.RecordLoginFailure(ctx, u.ID, device, now); err != nil {
			return err
		}
		return fail("wrong password", u.ID)
	}
	if err := s.store.ResetLoginFailures(ctx, u.ID, device); err != nil {
		return err
	}
	if tr == viaCookie {
		// Bearer answers set no cookie; native clients are not browsers.
		s.rememberDevice(w, u.ID, device)
	}
	if rehash {
		if h, err := s.hasher.Hash(ctx, pw); err == nil {
			if err := s.store.UpdatePasswordHash(ctx, u.ID, h, now); err != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "password re-hash not saved",
					slog.String("user_id", u.ID), slog.String("error", err.Error()))
			}
		}
	}
	setUser(r, u.ID)
	s.metrics.logins.WithLabelValues("success").Inc()
	return s.startSession(w, r, u, tr, http.StatusOK)
}

// startSession creates a session for u after a proven password, revokes a
// credential the request carried, and answers.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u *model.User,
	tr transport, status int) error {
	ctx := r.Context()
	now := s.now()
	token, hash := session.NewToken()
	ss := &model.Session{
		ID: session.NewID(), TokenHash: hash, UserID: u.ID,
		CreatedAt: now, LastSeenAt: now, PasswordVerifiedAt: now,
		ExpiresAt: s.sessions.FullExpiry(now, now),
		ClientIP:  info(r).clientIP.String(), UserAgent: cleanText(r.UserAgent(), 512),
	}
	partial := u.TwoFactorEnabled()
	if partial {
		ss.ExpiresAt = s.sessions.PartialExpiry(now, now)
	}
	if old, _, ok := s.presentedToken(r); ok && session.WellFormed(old) {
		if err := s.store.DeleteSessionByTokenHash(ctx, session.HashToken(old)); err != nil {
			return err
		}
	}
	if err := s.store.CreateSession(ctx, ss, maxSessions, now); err != nil {
		return err
	}

	body, err := s.userAndSession(ctx, u, ss)
	if err != nil {
		return err
	}
	if status == http.StatusOK {
		body["two_factor_required"] = partial
	}
	s.handOut(w, tr, token, ss.ExpiresAt, body)
	return writeJSON(w, status, body)
}

// logout handles POST /v1/logout: deletes the session, clears the cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{access: partial})
	if err != nil {
		return err
	}
	if err := s.store.DeleteSessionByTokenHash(r.Context(), c.session.TokenHash); err != nil {
		return err
	}
	s.clearCookie(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getSession handles GET /v1/session.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{access: partial})
	if err != nil {
		return err
	}
	body, err := s.userAndSession(r.Context(), c.user, c.session)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, body)
}

// reauthenticate handles POST /v1/reauthenticate: a fresh password proof.
func (s *Server) reauthenticate(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{body: true, access: full})
	if err != nil {
		return err
	}
	if err := s.checkPasswordThrottle(r); err != nil {
		return err
	}
	var pw string
	if err := decodeObject(c.body, field{name: "password", dst: &pw, required: true}); err != nil {
		return err
	}
	if err := s.checkPassword(r, c.user, pw); err != nil {
		return err
	}
	now := s.now()
	return s.rotate(w, r, c, func(rot *db.Rotation) error {
		rot.PasswordVerifiedAt = now
		return s.store.RotateSession(r.Context(), *rot)
	})
}

// changePassword handles POST /v1/password.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{body: true, access: full})
	if err != nil {
		return err
	}
	if err := s.checkPasswordThrottle(r); err != nil {
		return err
	}
	var current, next string
	if err := decodeObject(c.body,
		field{name: "current_password", dst: &current, required: true},
		field{name: "new_password", dst: &next, required: true},
	); err != nil {
		return err
	}
	if err := s.checkPassword(r, c.user, current); err != nil {
		return err
	}
	pw, err := password.Normalize(next)
	if err == nil {
		err = password.Check(pw, c.user.Email)
	}
	if err != nil {
		return weakPassword(passwordReason(err))
	}
	hash, err := s.hasher.Hash(r.Context(), pw)
	if err != nil {
		return err
	}
	now := s.now()
	err = s.rotate(w, r, c, func(rot *db.Rotation) error {
		rot.PasswordVerifiedAt = now
		return s.store.ChangePassword(r.Context(), db.PasswordChange{
			UserID: c.user.ID, PasswordHash: hash, Rotation: *rot, Now: now,
		})
	})
	if err == nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "password changed",
			slog.String("request_id", requestID(r)), slog.String("user_id", c.user.ID))
	}
	return err
}

// checkPasswordThrottle refuses password checks from a client address
// that has failed too often.
func (s *Server) checkPasswordThrottle(r *http.Request) error {
	if wait := s.loginIP.wait(clientKey(r)); wait > 0 {
		s.metrics.throttled.WithLabelValues("login_ip").Inc()
		return rateLimited(retryAfter(wait))
	}
	return nil
}

// checkPassword verifies the password of a signed-in user: 422
// invalid_credentials when it is wrong.
func (s *Server) checkPassword(r *http.Request, u *model.User, given string) error {
	pw, err := password.Normalize(given)
	if err != nil {
		pw = given
	}
	ok, _, err := s.hasher.Verify(r.Context(), pw, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		s.loginIP.add(clientKey(r))
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "password confirmation failed",
			slog.String("request_id", requestID(r)), slog.String("user_id", u.ID))
		return problem(http.StatusUnprocessableEntity, "invalid_credentials",
			"The password is not correct.")
	}
	return nil
}

// rotate gives the caller's session a new token: apply stores the rotation
// (possibly with more changes in the same transaction), then the token is
// handed out and {user, session} answered.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request, c *call,
	apply func(*db.Rotation) error) error {
	token, hash := session.NewToken()
	rot := db.Rotation{
		UserID: c.user.ID, OldHash: c.session.TokenHash, NewHash: hash,
		ExpiresAt: c.session.ExpiresAt, PasswordVerifiedAt: c.session.PasswordVerifiedAt,
		TwoFactorVerified: c.session.TwoFactorVerified,
	}
	if err := apply(&rot); errors.Is(err, model.ErrNotFound) {
		return errUnauthenticated // rotated or revoked by a concurrent request
	} else if err != nil {
		return err
	}
	c.session.TokenHash = hash
	c.session.ExpiresAt = rot.ExpiresAt
	c.session.PasswordVerifiedAt = rot.PasswordVerifiedAt
	c.session.TwoFactorVerified = rot.TwoFactorVerified

	u, err := s.store.UserByID(r.Context(), c.user.ID)
	if err != nil {
		return err
	}
	body, err := s.userAndSession(r.Context(), u, c.session)
	if err != nil {
		return err
	}
	s.handOut(w, c.transport, token, rot.ExpiresAt, body)
	return writeJSON(w, http.StatusOK, body)
}

// passwordReason turns a policy error into the detail of weak_password.
func passwordReason(err error) string {
	var weak *password.WeakError
	if errors.As(err, &weak) {
		return "The password is not acceptable: " + weak.Reason + "."
	}
	return "The password is not acceptable."
}

// cleanText makes header text fit for storage: valid UTF-8 without NUL
// bytes, at most n bytes long.
func cleanText(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	return truncate(s, n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
