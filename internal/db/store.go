// Package db keeps authsvc's records in PostgreSQL (through pgx) or in an
// embedded SQLite file (modernc.org/sqlite). Both implementations satisfy
// Store and pass one conformance suite, so the rest of the service cannot
// tell them apart.
//
// Every method takes the current time from its caller instead of reading a
// clock, so that tests decide what "now" is. Times are stored in UTC with
// microsecond precision.
package db

import (
	"context"
	"time"

	"github.com/authsvc/authsvc/internal/model"
)

// Store is everything authsvc asks of its database. Methods that change more
// than one row do so in one transaction; the conditions they document are
// checked inside it, so concurrent callers and other replicas cannot both
// pass the same condition.
//
// Unless stated otherwise, a method returns model.ErrUnavailable (wrapped)
// when the database cannot be reached or the context ends, and another
// wrapped error for anything unexpected.
type Store interface {
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the connections.
	Close()

	// CreateUser inserts u. It returns model.ErrEmailTaken when another user
	// has the same EmailCanonical.
	CreateUser(ctx context.Context, u *model.User) error
	// UserByID returns model.ErrNotFound for an unknown id.
	UserByID(ctx context.Context, id string) (*model.User, error)
	// UserByEmail looks a user up by canonical email; model.ErrNotFound if none.
	UserByEmail(ctx context.Context, canonical string) (*model.User, error)
	// UpdatePasswordHash replaces the hash of a user (used to re-hash with
	// new parameters after a login); model.ErrNotFound for an unknown id.
	UpdatePasswordHash(ctx context.Context, userID, hash string, now time.Time) error

	// CreateSession inserts s and then, if the user has more than limit
	// sessions that have not expired at now, deletes the oldest (by
	// CreatedAt) until limit remain. Expired sessions of the user may be
	// deleted as well.
	CreateSession(ctx context.Context, s *model.Session, limit int, now time.Time) error
	// SessionByTokenHash returns the session with that token hash and its
	// user, in one round trip. It does not look at expiry; model.ErrNotFound
	// if there is no such session.
	SessionByTokenHash(ctx context.Context, hash []byte) (*model.Session, *model.User, error)
	// TouchSession sets LastSeenAt and ExpiresAt of the session with that
	// token hash if its LastSeenAt is still prevSeen. If another call
	// touched it first, nothing is written and nil is returned, so that
	// concurrent checks of one session write it once; model.ErrNotFound if
	// there is no such session.
	TouchSession(ctx context.Context, hash []byte, prevSeen, lastSeen,
		expiresAt time.Time) error
	// RotateSession gives the session whose token hash is r.OldHash the hash
	// r.NewHash and the other values of r, if it still has r.OldHash;
	// model.ErrNotFound otherwise.
	RotateSession(ctx context.Context, r Rotation) error
	// ListSessions returns the user's sessions that expire after now, newest
	// (by CreatedAt) first.
	ListSessions(ctx context.Context, userID string, now time.Time) ([]*model.Session, error)
	// DeleteSession deletes the user's session with that public id;
	// model.ErrNotFound if the user has none with that id.
	DeleteSession(ctx context.Context, userID, id string) error
	// DeleteSessionByTokenHash deletes the session with that token hash;
	// no error if there is none.
	DeleteSessionByTokenHash(ctx context.Context, hash []byte) error
	// DeleteOtherSessions deletes every session of the user except keepID.
	DeleteOtherSessions(ctx context.Context, userID, keepID string) error
	// DeletePartialSessions deletes the user's sessions that have not passed
	// a second factor.
	DeletePartialSessions(ctx context.Context, userID string) error
	// DeleteExpiredSessions deletes sessions that expired before now and
	// enrolments that expired before now, and reports how many sessions went.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error)

	// PutPendingTOTP stores p as the user's pending enrolment, replacing any
	// earlier one.
	PutPendingTOTP(ctx context.Context, p *model.PendingTOTP) error
	// PendingTOTP returns the user's pending enrolment; model.ErrNotFound if
	// there is none (expired ones may still be returned; callers check).
	PendingTOTP(ctx context.Context, userID string) (*model.PendingTOTP, error)

	// EnableTOTP confirms a pending enrolment, in one transaction:
	//   - deletes the user's pending enrolment if its SessionID and Secret
	//     equal e.SessionID and e.Secret and it expires after e.Now, else
	//     model.ErrNoEnrollment;
	//   - sets the user's TwoFactorSecret to e.Secret and TOTPLastStep to
	//     e.Step, if TOTPLastStep < e.Step, else model.ErrStepUsed;
	//   - replaces all the user's recovery codes with e.RecoveryCodes;
	//   - rotates the session (as RotateSession, model.ErrNotFound), which
	//     also gets TwoFactorVerified true and ExpiresAt e.ExpiresAt;
	//   - makes every other session of the user partial: TwoFactorVerified
	//     false and ExpiresAt no later than e.PartialExpiresAt;
	//   - resets the second-factor failure count.
	// On any error nothing changes.
	EnableTOTP(ctx context.Context, e Enable) error

	// PassSecondFactor records a passed second factor, in one transaction:
	//   - with p.Step > 0: sets TOTPLastStep to p.Step if the user has a
	//     TwoFactorSecret (else model.ErrTwoFactorDisabled) and
	//     TOTPLastStep < p.Step (else model.ErrStepUsed);
	//   - with p.RecoveryCode != nil: marks the user's unused recovery code
	//     with that hash used at p.Now, else model.ErrBadRecoveryCode;
	//   - resets the second-factor failure count;
	//   - rotates the session as RotateSession does (model.ErrNotFound),
	//     setting TwoFactorVerified true and ExpiresAt p.ExpiresAt.
	// On any error nothing changes.
	PassSecondFactor(ctx context.Context, p SecondFactor) error

	// ClaimSecondFactorAttempt counts an attempt as a failure before its
	// code is checked, so that concurrent guesses cannot all slip in before
	// any of them is counted: if the user's failure count is still seen, it
	// becomes seen+1 with the time at, and the new count is returned; a
	// success later resets it. model.ErrStale if the count is no longer
	// seen (another attempt claimed it first) or the user does not exist.
	ClaimSecondFactorAttempt(ctx context.Context, userID string, seen int,
		at time.Time) (int, error)

	// DisableTOTP removes the second factor, in one transaction:
	//   - consumes the proof as PassSecondFactor does (Step or RecoveryCode),
	//     with the same errors;
	//   - sets TwoFactorSecret to NULL and deletes the pending enrolment and
	//     every recovery code of the user;
	//   - resets the failure count and deletes every other session of the
	//     user than d.KeepSessionID.
	DisableTOTP(ctx context.Context, d Disable) error

	// ReplaceRecoveryCodes replaces all the user's recovery codes with
	// hashes; model.ErrTwoFactorDisabled if the user has no TwoFactorSecret.
	ReplaceRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, now time.Time) error
	// RecoveryCodesRemaining counts the user's unused recovery codes.
	RecoveryCodesRemaining(ctx context.Context, userID string) (int, error)

	// ChangePassword sets a new password hash, in one transaction: rotates
	// the session (as RotateSession, model.ErrNotFound), deletes every other
	// session of the user and the pending enrolment.
	ChangePassword(ctx context.Context, c PasswordChange) error

	// TwoFactorSecrets lists up to limit users' sealed secrets, in user id
	// order after afterUserID ("" for the start).
	TwoFactorSecrets(ctx context.Context, afterUserID string, limit int) ([]model.UserSecret, error)
	// ReplaceTwoFactorSecret sets the user's secret to newSecret if it is
	// still oldSecret (re-encryption under a new key); model.ErrNotFound if
	// it is not.
	ReplaceTwoFactorSecret(ctx context.Context, userID string, oldSecret, newSecret []byte) error

	// LoginThrottle returns the failed-login state of the user on the device
	// (deviceID "" for strangers); a zero LoginThrottle if there is none.
	LoginThrottle(ctx context.Context, userID, deviceID string) (model.LoginThrottle, error)
	// ClaimLoginAttempt counts a login attempt as a failure before the
	// password is checked, as ClaimSecondFactorAttempt does: if the count of
	// the user on the device is still seen, it becomes seen+1 at time at and
	// the new count is returned (a count reset meanwhile starts again at 1);
	// model.ErrStale if another attempt counted first, model.ErrNotFound for
	// an unknown user. A success then calls ResetLoginFailures.
	ClaimLoginAttempt(ctx context.Context, userID, deviceID string, seen int,
		at time.Time) (int, error)
	// ResetLoginFailures forgets the failures of the user on the device.
	ResetLoginFailures(ctx context.Context, userID, deviceID string) error
}

// Rotation is a new token for an existing session. The values below
// NewHash replace the session's own.
type Rotation struct {
	UserID             string
	OldHash            []byte
	NewHash            []byte
	ExpiresAt          time.Time
	PasswordVerifiedAt time.Time
	TwoFactorVerified  bool
}

// Enable is the input of EnableTOTP.
type Enable struct {
	UserID           string
	SessionID        string
	Secret           []byte // sealed; must equal the pending enrolment's
	Step             int64  // time step of the confirming code
	RecoveryCodes    [][]byte
	OldHash          []byte
	NewHash          []byte
	ExpiresAt        time.Time // of the rotated session
	PartialExpiresAt time.Time // upper bound for the user's other sessions
	Now              time.Time
}

// SecondFactor is the input of PassSecondFactor. Exactly one of Step and
// RecoveryCode is set.
type SecondFactor struct {
	UserID       string
	Step         int64
	RecoveryCode []byte // HMAC of the normalised code
	OldHash      []byte
	NewHash      []byte
	ExpiresAt    time.Time
	Now          time.Time
}

// Disable is the input of DisableTOTP. Exactly one of Step and RecoveryCode
// is set.
type Disable struct {
	UserID        string
	KeepSessionID string
	Step          int64
	RecoveryCode  []byte
	Now           time.Time
}

// PasswordChange is the input of ChangePassword.
type PasswordChange struct {
	UserID       string
	PasswordHash string
	Rotation     Rotation // PasswordVerifiedAt is the time of the change
	Now          time.Time
}
