package api

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/session"
	"github.com/authsvc/authsvc/internal/twofactor"
)

const (
	// enrollmentTTL is how long a setup waits for its confirming code.
	enrollmentTTL = 15 * time.Minute
	// recoveryCodeCount is how many recovery codes a set has.
	recoveryCodeCount = 10
	// freeFailures is how many consecutive second-factor failures cost
	// nothing; from the next one on the wait doubles.
	freeFailures = 5
	// maxDelay caps the wait between second-factor attempts.
	maxDelay = 15 * time.Minute
	// lockoutFailures is the count after which only recovery codes pass.
	lockoutFailures = 100
)

// secondFactorWait is how long the user must still wait before the next
// second-factor attempt: from the 5th consecutive failure, 2^(n-5) seconds
// after the last one, at most maxDelay.
func secondFactorWait(u *model.User, now time.Time) time.Duration {
	return backoff(u.OTPFailures, u.OTPLastFailureAt, now)
}

func backoff(failures int, last, now time.Time) time.Duration {
	if failures < freeFailures {
		return 0
	}
	delay := maxDelay
	if n := failures - freeFailures; n < 10 {
		delay = min(time.Second<<n, maxDelay)
	}
	if wait := last.Add(delay).Sub(now); wait > 0 {
		return wait
	}
	return 0
}

// checkSecondFactorThrottle answers 429 while the user must wait.
func (s *Server) checkSecondFactorThrottle(u *model.User) error {
	if wait := secondFactorWait(u, s.now()); wait > 0 {
		s.metrics.throttled.WithLabelValues("second_factor").Inc()
		return rateLimited(retryAfter(wait))
	}
	return nil
}

// claimAttempt counts a second-factor attempt against the user before the
// code is looked at; a success resets the count. The count is compared and
// set in one statement, so of many concurrent attempts that read the same
// count, on any replica, one goes ahead and the rest answer 429.
func (s *Server) claimAttempt(r *http.Request, u *model.User) error {
	_, err := s.store.ClaimSecondFactorAttempt(r.Context(), u.ID, u.OTPFailures, s.now())
	if errors.Is(err, model.ErrStale) {
		s.metrics.throttled.WithLabelValues("second_factor").Inc()
		return rateLimited(1)
	}
	return err
}

// secondFactorFailed reports a failed code, already counted by
// claimAttempt, and returns the error to answer. The failure that reaches
// the lockout count revokes the user's partial sessions; later ones do not,
// so that the owner can log in again and use a recovery code.
func (s *Server) secondFactorFailed(r *http.Request, u *model.User, kind string,
	answer *Problem) error {
	ctx := r.Context()
	s.metrics.secondFactor.WithLabelValues(kind, "failure").Inc()
	n := u.OTPFailures + 1
	s.log.LogAttrs(ctx, slog.LevelWarn, "second factor failed",
		slog.String("request_id", requestID(r)), slog.String("user_id", u.ID),
		slog.String("kind", kind), slog.Int("consecutive_failures", n))
	if n == lockoutFailures {
		if err := s.store.DeletePartialSessions(ctx, u.ID); err != nil {
			return err
		}
	}
	return answer
}

// wantsPNG reports whether the Accept header prefers image/png to JSON.
// A wildcard alone never selects the image.
func wantsPNG(accept string) bool {
	var png, json float64
	var pngSpec, jsonSpec int
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		spec := 0
		switch mt {
		case "image/png":
			spec = 2
		case "image/*":
			spec = 1
		}
		if spec > pngSpec {
			png, pngSpec = q, spec
		}
		spec = 0
		switch mt {
		case "application/json":
			spec = 3
		case "application/*":
			spec = 2
		case "*/*":
			spec = 1
		}
		if spec > jsonSpec {
			json, jsonSpec = q, spec
		}
	}
	if pngSpec == 0 || png == 0 {
		return false
	}
	return png > json || (png == json && pngSpec+1 > jsonSpec)
}

// totpSetup handles POST /v1/2fa/totp/setup: a new pending secret, bound
// to this session, as JSON or as the QR code PNG.
func (s *Server) totpSetup(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{body: true, access: full, recent: true})
	if err != nil {
		return err
	}
	secret, err := twofactor.NewSecret()
	if err != nil {
		return err
	}
	sealed, err := s.keys.Seal(secret, []byte(c.user.ID))
	if err != nil {
		return err
	}
	encoded := twofactor.EncodeSecret(secret)
	uri := twofactor.KeyURI(s.issuer, c.user.Email, encoded)
	png, err := twofactor.QRCodePNG(uri)
	if err != nil {
		return err
	}
	now := s.now()
	err = s.store.PutPendingTOTP(r.Context(), &model.PendingTOTP{
		UserID: c.user.ID, SessionID: c.session.ID, Secret: sealed,
		CreatedAt: now, ExpiresAt: now.Add(enrollmentTTL),
	})
	if err != nil {
		return err
	}

	w.Header().Add("Vary", "Accept")
	if wantsPNG(r.Header.Get("Accept")) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", strconv.Itoa(len(png)))
		w.WriteHeader(http.StatusOK)
		w.Write(png)
		return nil
	}
	return writeJSON(w, http.StatusOK, map[string]string{
		"secret":      encoded,
		"otpauth_uri": uri,
		"qr_png":      base64.StdEncoding.EncodeToString(png),
	})
}

// decodeCode reads the {code} body of the second-factor endpoints.
func decodeCode(body []byte) (string, error) {
	var code string
	err := decodeObject(body, field{name: "code", dst: &code, required: true})
	return code, err
}

// openSecret decrypts a sealed secret of u, and re-seals it under the
// current key when an older key opened it.
func (s *Server) openSecret(r *http.Request, u *model.User, sealed []byte,
	stored bool) ([]byte, error) {
	secret, current, err := s.keys.Open(sealed, []byte(u.ID))
	if err != nil {
		return nil, err
	}
	if !current && stored {
		if resealed, err := s.keys.Seal(secret, []byte(u.ID)); err == nil {
			err := s.store.ReplaceTwoFactorSecret(r.Context(), u.ID, sealed, resealed)
			if err != nil && !errors.Is(err, model.ErrNotFound) {
				s.log.LogAttrs(r.Context(), slog.LevelWarn, "secret not re-encrypted",
					slog.String("user_id", u.ID), slog.String("error", err.Error()))
			}
		}
	}
	return secret, nil
}

// newRecoveryCodes makes a set of recovery codes and their stored hashes.
func (s *Server) newRecoveryCodes() ([]string, [][]byte, error) {
	codes, err := twofactor.NewRecoveryCodes(recoveryCodeCount)
	if err != nil {
		return nil, nil, err
	}
	hashes := make([][]byte, len(codes))
	for i, c := range codes {
		n, _ := twofactor.NormalizeRecoveryCode(c)
		hashes[i] = twofactor.HashRecoveryCode(s.recovery[0], n)
	}
	return codes, hashes, nil
}

// totpEnable handles POST /v1/2fa/totp/enable: the code from the pending
// secret confirms it as the user's factor and returns recovery codes.
func (s *Server) totpEnable(w http.ResponseWriter, r *http.Request) error {
	c, code, err := s.beginCode(w, r, rules{body: true, access: full, recent: true})
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := s.now()
	p, err := s.store.PendingTOTP(ctx, c.user.ID)
	if errors.Is(err, model.ErrNotFound) {
		return errSetupRequired
	}
	if err != nil {
		return err
	}
	if p.SessionID != c.session.ID || !now.Before(p.ExpiresAt) {
		return errSetupRequired
	}
	if err := s.claimAttempt(r, c.user); err != nil {
		return err
	}
	if c.user.OTPFailures >= lockoutFailures {
		return s.secondFactorFailed(r, c.user, "totp", errInvalidOTP)
	}
	secret, err := s.openSecret(r, c.user, p.Secret, false)
	if err != nil {
		return err
	}
	step, err := twofactor.Verify(secret, code, now, c.user.TOTPLastStep)
	if err != nil {
		return s.secondFactorFailed(r, c.user, "totp", errInvalidOTP)
	}
	codes, hashes, err := s.newRecoveryCodes()
	if err != nil {
		return err
	}

	token, hash := session.NewToken()
	expires := s.sessions.FullExpiry(c.session.CreatedAt, now)
	err = s.store.EnableTOTP(ctx, db.Enable{
		UserID: c.user.ID, SessionID: c.session.ID, Secret: p.Secret, Step: step,
		RecoveryCodes: hashes, OldHash: c.session.TokenHash, NewHash: hash,
		ExpiresAt: expires, PartialExpiresAt: now.Add(10 * time.Minute), Now: now,
	})
	switch {
	case errors.Is(err, model.ErrNoEnrollment):
		return errSetupRequired
	case errors.Is(err, model.ErrStepUsed):
		return s.secondFactorFailed(r, c.user, "totp", errInvalidOTP)
	case errors.Is(err, model.ErrNotFound):
		return errUnauthenticated
	case err != nil:
		return err
	}
	s.metrics.secondFactor.WithLabelValues("totp", "success").Inc()
	s.log.LogAttrs(ctx, slog.LevelWarn, "two-factor authentication enabled",
		slog.String("request_id", requestID(r)), slog.String("user_id", c.user.ID))
	body := map[string]any{"recovery_codes": codes}
	s.handOut(w, c.transport, token, expires, body)
	return writeJSON(w, http.StatusOK, body)
}

// checkPartial answers the 409s of verify and recovery for a session that
// has nothing left to prove.
func checkPartial(c *call) error {
	if !c.user.TwoFactorEnabled() {
		return errTwoFactorNotEnabled
	}
	if c.session.TwoFactorVerified {
		return errAlreadyVerified
	}
	return nil
}

// beginCode runs the checks every endpoint taking a {code} body starts
// with, in the contract's order: the endpoint's rules, the second-factor
// throttle (429), then the body (400). It returns the code sent.
func (s *Server) beginCode(w http.ResponseWriter, r *http.Request, rl rules) (*call, string,
	error) {
	c, err := s.begin(w, r, rl)
	if err != nil {
		return nil, "", err
	}
	if err := s.checkSecondFactorThrottle(c.user); err != nil {
		return nil, "", err
	}
	code, err := decodeCode(c.body)
	if err != nil {
		return nil, "", err
	}
	return c, code, nil
}

// beginPartial runs the checks verify and recovery share, in the
// contract's order, and counts the attempt; it returns the code sent.
func (s *Server) beginPartial(w http.ResponseWriter, r *http.Request) (*call, string, error) {
	c, code, err := s.beginCode(w, r, rules{body: true, access: partial})
	if err != nil {
		return nil, "", err
	}
	if err := checkPartial(c); err != nil {
		return nil, "", err
	}
	if err := s.claimAttempt(r, c.user); err != nil {
		return nil, "", err
	}
	return c, code, nil
}

// totpVerify handles POST /v1/2fa/totp/verify: a partial session passes
// its second factor with a TOTP code.
func (s *Server) totpVerify(w http.ResponseWriter, r *http.Request) error {
	c, code, err := s.beginPartial(w, r)
	if err != nil {
		return err
	}
	if c.user.OTPFailures >= lockoutFailures {
		return s.secondFactorFailed(r, c.user, "totp", errInvalidOTP)
	}
	secret, err := s.openSecret(r, c.user, c.user.TwoFactorSecret, true)
	if err != nil {
		return err
	}
	now := s.now()
	step, err := twofactor.Verify(secret, code, now, c.user.TOTPLastStep)
	if err != nil {
		return s.secondFactorFailed(r, c.user, "totp", errInvalidOTP)
	}
	return s.passSecondFactor(w, r, c, "totp", db.SecondFactor{Step: step}, errInvalidOTP)
}

// recoveryLogin handles POST /v1/2fa/recovery: a partial session passes
// its second factor with a recovery code, which is used up.
func (s *Server) recoveryLogin(w http.ResponseWriter, r *http.Request) error {
	c, code, err := s.beginPartial(w, r)
	if err != nil {
		return err
	}
	normalized, ok := twofactor.NormalizeRecoveryCode(code)
	if !ok {
		return s.secondFactorFailed(r, c.user, "recovery_code", errInvalidRecoveryCode)
	}
	var last error
	for _, key := range s.recovery {
		sf := db.SecondFactor{RecoveryCode: twofactor.HashRecoveryCode(key, normalized)}
		last = s.passSecondFactor(w, r, c, "recovery_code", sf, errInvalidRecoveryCode)
		if !errors.Is(last, model.ErrBadRecoveryCode) {
			break
		}
	}
	if errors.Is(last, model.ErrBadRecoveryCode) {
		return s.secondFactorFailed(r, c.user, "recovery_code", errInvalidRecoveryCode)
	}
	return last
}

// passSecondFactor records a passed second factor and rotates the token in
// one transaction. A bad recovery code is returned as
// model.ErrBadRecoveryCode for the caller to try older keys.
func (s *Server) passSecondFactor(w http.ResponseWriter, r *http.Request, c *call,
	kind string, sf db.SecondFactor, invalid *Problem) error {
	ctx := r.Context()
	now := s.now()
	token, hash := session.NewToken()
	sf.UserID = c.user.ID
	sf.OldHash, sf.NewHash = c.session.TokenHash, hash
	sf.ExpiresAt = s.sessions.FullExpiry(c.session.CreatedAt, now)
	sf.Now = now
	err := s.store.PassSecondFactor(ctx, sf)
	switch {
	case errors.Is(err, model.ErrBadRecoveryCode):
		return err
	case errors.Is(err, model.ErrStepUsed), errors.Is(err, model.ErrTwoFactorDisabled):
		return s.secondFactorFailed(r, c.user, kind, invalid)
	case errors.Is(err, model.ErrNotFound):
		return errUnauthenticated
	case err != nil:
		return err
	}
	s.metrics.secondFactor.WithLabelValues(kind, "success").Inc()
	level := slog.LevelInfo
	if kind == "recovery_code" {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(ctx, level, "second factor passed",
		slog.String("request_id", requestID(r)), slog.String("user_id", c.user.ID),
		slog.String("kind", kind))

	c.session.TokenHash = hash
	c.session.TwoFactorVerified = true
	c.session.ExpiresAt = sf.ExpiresAt
	u, err := s.store.UserByID(ctx, c.user.ID)
	if err != nil {
		return err
	}
	body, err := s.userAndSession(ctx, u, c.session)
	if err != nil {
		return err
	}
	s.handOut(w, c.transport, token, sf.ExpiresAt, body)
	return writeJSON(w, http.StatusOK, body)
}

// recoveryCodes handles POST /v1/2fa/recovery-codes: a new set replaces
// the old one.
func (s *Server) recoveryCodes(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{body: true, access: full, recent: true})
	if err != nil {
		return err
	}
	if !c.user.TwoFactorEnabled() {
		return errTwoFactorNotEnabled
	}
	codes, hashes, err := s.newRecoveryCodes()
	if err != nil {
		return err
	}
	err = s.store.ReplaceRecoveryCodes(r.Context(), c.user.ID, hashes, s.now())
	if errors.Is(err, model.ErrTwoFactorDisabled) {
		return errTwoFactorNotEnabled
	}
	if err != nil {
		return err
	}
	s.log.LogAttrs(r.Context(), slog.LevelWarn, "recovery codes replaced",
		slog.String("request_id", requestID(r)), slog.String("user_id", c.user.ID))
	return writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

// totpDisable handles POST /v1/2fa/totp/disable: with a TOTP or recovery
// code, the second factor, pending setup and recovery codes go, and every
// other session is revoked.
func (s *Server) totpDisable(w http.ResponseWriter, r *http.Request) error {
	c, code, err := s.beginCode(w, r, rules{body: true, access: full, recent: true})
	if err != nil {
		return err
	}
	if !c.user.TwoFactorEnabled() {
		return errTwoFactorNotEnabled
	}
	if err := s.claimAttempt(r, c.user); err != nil {
		return err
	}
	now := s.now()
	d := db.Disable{UserID: c.user.ID, KeepSessionID: c.session.ID, Now: now}
	kind := "totp"
	if _, ok := twofactor.NormalizeCode(code); ok {
		if c.user.OTPFailures >= lockoutFailures {
			return s.secondFactorFailed(r, c.user, kind, errInvalidOTP)
		}
		secret, err := s.openSecret(r, c.user, c.user.TwoFactorSecret, true)
		if err != nil {
			return err
		}
		step, err := twofactor.Verify(secret, code, now, c.user.TOTPLastStep)
		if err != nil {
			return s.secondFactorFailed(r, c.user, kind, errInvalidOTP)
		}
		d.Step = step
		err = s.store.DisableTOTP(r.Context(), d)
		if err != nil {
			return s.disableFailed(r, c, kind, err)
		}
	} else if normalized, ok := twofactor.NormalizeRecoveryCode(code); ok {
		kind = "recovery_code"
		err := model.ErrBadRecoveryCode
		for _, key := range s.recovery {
			d.RecoveryCode = twofactor.HashRecoveryCode(key, normalized)
			if err = s.store.DisableTOTP(r.Context(), d); !errors.Is(err, model.ErrBadRecoveryCode) {
				break
			}
		}
		if err != nil {
			return s.disableFailed(r, c, kind, err)
		}
	} else {
		return s.secondFactorFailed(r, c.user, kind, errInvalidOTP)
	}
	s.metrics.secondFactor.WithLabelValues(kind, "success").Inc()
	s.log.LogAttrs(r.Context(), slog.LevelWarn, "two-factor authentication disabled",
		slog.String("request_id", requestID(r)), slog.String("user_id", c.user.ID))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) disableFailed(r *http.Request, c *call, kind string, err error) error {
	switch {
	case errors.Is(err, model.ErrTwoFactorDisabled):
		return errTwoFactorNotEnabled
	case errors.Is(err, model.ErrStepUsed), errors.Is(err, model.ErrBadRecoveryCode):
		return s.secondFactorFailed(r, c.user, kind, errInvalidOTP)
	}
	return err
}
