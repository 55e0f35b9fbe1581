// Package model holds the records authsvc keeps and the errors its store
// reports. It has no behaviour of its own and imports only the standard
// library, so every other package may depend on it.
package model

import (
	"errors"
	"time"
)

// Errors a store returns. Callers match them with errors.Is; a store wraps
// them with context but never replaces them.
var (
	// ErrNotFound means the record asked for does not exist, or no longer
	// matches the condition the call named (for example a session token that
	// was rotated in the meantime).
	ErrNotFound = errors.New("not found")

	// ErrEmailTaken means another user already has the same canonical email.
	ErrEmailTaken = errors.New("email taken")

	// ErrStepUsed means the TOTP time step offered is not later than the last
	// step accepted for the user: the code was used already, or is older than
	// one that was.
	ErrStepUsed = errors.New("time step already used")

	// ErrNoEnrollment means there is no pending TOTP enrolment matching the
	// session and secret the call named.
	ErrNoEnrollment = errors.New("no pending enrolment")

	// ErrBadRecoveryCode means the user has no unused recovery code with the
	// hash offered.
	ErrBadRecoveryCode = errors.New("no such unused recovery code")

	// ErrTwoFactorDisabled means the user has no confirmed second factor.
	ErrTwoFactorDisabled = errors.New("two-factor authentication not enabled")

	// ErrStale means the record changed since the caller read it, so a
	// conditional write that expected the old state did nothing.
	ErrStale = errors.New("record changed concurrently")

	// ErrUnavailable means the database could not be reached or did not
	// answer in time. It is worth retrying later.
	ErrUnavailable = errors.New("database unavailable")
)

// User is an account.
type User struct {
	ID             string
	Email          string // as typed, NFC
	EmailCanonical string // the form two spellings of one address share
	PasswordHash   string // PHC string

	// TwoFactorSecret is the sealed TOTP secret (see package secretbox), nil
	// while the user has no confirmed authenticator.
	TwoFactorSecret []byte
	// TOTPLastStep is the last TOTP time step accepted for the user, 0 if none.
	TOTPLastStep int64

	// OTPFailures counts consecutive failed second-factor attempts and
	// OTPLastFailureAt is the time of the latest; a success resets both.
	OTPFailures      int
	OTPLastFailureAt time.Time

	CreatedAt time.Time
	UpdatedAt time.Time
}

// TwoFactorEnabled reports whether the user has a confirmed second factor.
func (u *User) TwoFactorEnabled() bool { return u.TwoFactorSecret != nil }

// Session is a signed-in device. The token itself is never stored; TokenHash
// is its SHA-256.
type Session struct {
	ID                 string // public handle, never the token
	TokenHash          []byte
	UserID             string
	CreatedAt          time.Time
	ExpiresAt          time.Time
	LastSeenAt         time.Time
	PasswordVerifiedAt time.Time
	TwoFactorVerified  bool
	ClientIP           string
	UserAgent          string
}

// PendingTOTP is an authenticator enrolment that has been started by setup
// and not yet confirmed. A user has at most one.
type PendingTOTP struct {
	UserID    string
	SessionID string
	Secret    []byte // sealed
	CreatedAt time.Time
	ExpiresAt time.Time
}

// UserSecret is a user's sealed TOTP secret, as listed for key checks and
// re-encryption.
type UserSecret struct {
	UserID string
	Secret []byte
}

// LoginThrottle is the failed-login count of one account as seen from one
// device. DeviceID is empty for every device the account has not signed in
// from before.
type LoginThrottle struct {
	UserID        string
	DeviceID      string
	Failures      int
	LastFailureAt time.Time
}
