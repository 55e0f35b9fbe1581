package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
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

// beginCredentials runs the checks signup and login share, in the
// contract's order: the body's size and type, the origin check, and the
// client address's budget in lim, which it reserves. A malformed body comes
// back as perr, to be answered after those (429 precedes 400).
func (s *Server) beginCredentials(w http.ResponseWriter, r *http.Request, lim *ipLimiter,
	kind string) (in credentialsInput, tr transport, ipKey string, perr, err error) {
	c, err := s.begin(w, r, rules{body: true})
	if err != nil {
		return in, tr, "", nil, err
	}
	in, tr, perr = decodeCredentials(c.body)
	if err := s.checkBrowserCredentials(r, tr); err != nil {
		return in, tr, "", nil, err
	}
	ipKey = clientKey(r)
	if wait := lim.reserve(ipKey); wait > 0 {
		s.metrics.throttled.WithLabelValues(kind).Inc()
		return in, tr, "", nil, rateLimited(retryAfter(wait))
	}
	return in, tr, ipKey, perr, nil
}

// signup handles POST /v1/signup: creates an account and a session.
func (s *Server) signup(w http.ResponseWriter, r *http.Request) error {
	// Every well-formed signup counts against the client address, a 409
	// included: it tells whether an address has an account.
	in, tr, ipKey, perr, err := s.beginCredentials(w, r, s.signupIP, "signup_ip")
	if err != nil {
		return err
	}
	if perr != nil {
		s.signupIP.refund(ipKey)
		return perr
	}
	email, err := identity.ParseEmail(in.email)
	if err != nil {
		s.signupIP.refund(ipKey)
		return invalidRequest("The email address is not valid.")
	}

	ctx := r.Context()
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
	// The attempt is counted against the client address before anything
	// is checked, and given back unless it ends as a failed login.
	in, tr, ipKey, perr, err := s.beginCredentials(w, r, s.loginIP, "login_ip")
	if err != nil {
		return err
	}
	failed := false
	defer func() {
		if !failed {
			s.loginIP.refund(ipKey)
		}
	}()
	if perr != nil {
		return perr
	}

	ctx := r.Context()
	now := s.now()
	fail := func(reason string, userID string) error {
		failed = true
		s.metrics.logins.WithLabelValues("failure").Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "login failed",
			slog.String("request_id", requestID(r)), slog.String("reason", reason),
			slog.String("user_id", userID), slog.String("client_ip", info(r).clientIP.String()))
		return errInvalidCredentials
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
		if wait := s.unknown.claim(email.Canonical, now); wait > 0 {
			s.metrics.throttled.WithLabelValues("login_account").Inc()
			return rateLimited(retryAfter(wait))
		}
		if err := s.hasher.VerifyDummy(ctx, in.password); err != nil {
			return err
		}
		return fail("unknown email", "")
	}
	if err != nil {
		return err
	}
	device := s.knownDevice(r, u.ID)
	lt, err := s.loginThrottle(r, u, device)
	if err != nil {
		return err
	}
	if err := s.claimLogin(r, u, device, lt); err != nil {
		return err
	}
	if pwErr != nil {
		pw = in.password
	}
	ok, rehash, err := s.hasher.Verify(ctx, pw, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
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
	pc, err := s.checkPasswordThrottle(r, c.user)
	if err != nil {
		return err
	}
	defer s.passwordCheckDone(pc)
	var pw string
	if err := decodeObject(c.body, field{name: "password", dst: &pw, required: true}); err != nil {
		return err
	}
	if err := s.checkPassword(r, c.user, pc, pw); err != nil {
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
	pc, err := s.checkPasswordThrottle(r, c.user)
	if err != nil {
		return err
	}
	defer s.passwordCheckDone(pc)
	var current, next string
	if err := decodeObject(c.body,
		field{name: "current_password", dst: &current, required: true},
		field{name: "new_password", dst: &next, required: true},
	); err != nil {
		return err
	}
	if err := s.checkPassword(r, c.user, pc, current); err != nil {
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

// passwordCheck is a password confirmation of a signed-in user that has
// passed its throttles: the attempt is counted against the client address
// and the account before the password is looked at.
type passwordCheck struct {
	device string
	lt     model.LoginThrottle
	ipKey  string
	failed bool
}

// checkPasswordThrottle answers 429 while the client address or the
// account must wait, and reserves the attempt against the address; done
// gives it back unless the password turned out wrong.
func (s *Server) checkPasswordThrottle(r *http.Request, u *model.User) (*passwordCheck, error) {
	pc := &passwordCheck{ipKey: clientKey(r), device: s.knownDevice(r, u.ID)}
	if wait := s.loginIP.reserve(pc.ipKey); wait > 0 {
		s.metrics.throttled.WithLabelValues("login_ip").Inc()
		return nil, rateLimited(retryAfter(wait))
	}
	lt, err := s.loginThrottle(r, u, pc.device)
	if err != nil {
		s.loginIP.refund(pc.ipKey)
		return nil, err
	}
	pc.lt = lt
	return pc, nil
}

func (s *Server) passwordCheckDone(pc *passwordCheck) {
	if !pc.failed {
		s.loginIP.refund(pc.ipKey)
	}
}

// checkPassword verifies the password of a signed-in user: 422
// invalid_credentials when it is wrong.
func (s *Server) checkPassword(r *http.Request, u *model.User, pc *passwordCheck,
	given string) error {
	if err := s.claimLogin(r, u, pc.device, pc.lt); err != nil {
		return err
	}
	pw, err := password.Normalize(given)
	if err != nil {
		pw = given
	}
	ok, _, err := s.hasher.Verify(r.Context(), pw, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		pc.failed = true
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "password confirmation failed",
			slog.String("request_id", requestID(r)), slog.String("user_id", u.ID))
		return problem(http.StatusUnprocessableEntity, "invalid_credentials",
			"The password is not correct.")
	}
	return s.store.ResetLoginFailures(r.Context(), u.ID, pc.device)
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
