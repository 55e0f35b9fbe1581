package db_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/model"
)

// t0 is "now" in the tests: not UTC and finer than a microsecond, so that
// every round trip shows the store's conversion to UTC microseconds.
var t0 = time.Date(2031, 5, 17, 9, 30, 15, 123456789, time.FixedZone("CEST", 2*3600))

// stored is t as a store returns it.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

// env is one test's store and the helpers that fill it.
type env struct {
	t   *testing.T
	s   db.Store
	ctx context.Context
}

func newEnv(t *testing.T, s db.Store) *env {
	return &env{t: t, s: s, ctx: t.Context()}
}

// random returns n random bytes.
func random(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// hash returns a random 32-byte value, as a token hash or code hash.
func hash(t testing.TB) []byte { return random(t, 32) }

// id returns a random id with a readable prefix.
func id(t testing.TB, prefix string) string {
	return prefix + "-" + hex.EncodeToString(random(t, 8))
}

// user creates a user without a second factor and returns it as stored.
func (e *env) user() *model.User {
	e.t.Helper()
	uid := id(e.t, "user")
	u := &model.User{
		ID:             uid,
		Email:          uid + "@Example.org",
		EmailCanonical: uid + "@example.org",
		PasswordHash:   "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		CreatedAt:      t0,
		UpdatedAt:      t0,
	}
	if err := e.s.CreateUser(e.ctx, u); err != nil {
		e.t.Fatalf("CreateUser: %v", err)
	}
	return e.mustUser(uid)
}

// mustUser reads a user that must exist.
func (e *env) mustUser(uid string) *model.User {
	e.t.Helper()
	u, err := e.s.UserByID(e.ctx, uid)
	if err != nil {
		e.t.Fatalf("UserByID(%s): %v", uid, err)
	}
	return u
}

// session creates a session of the user created at created, expiring a day
// later, and returns it with the times as stored.
func (e *env) session(userID string, created time.Time,
	edit ...func(*model.Session)) *model.Session {
	e.t.Helper()
	s := &model.Session{
		ID:                 id(e.t, "sess"),
		TokenHash:          hash(e.t),
		UserID:             userID,
		CreatedAt:          created,
		ExpiresAt:          created.Add(24 * time.Hour),
		LastSeenAt:         created,
		PasswordVerifiedAt: created,
		TwoFactorVerified:  false,
		ClientIP:           "192.0.2.7",
		UserAgent:          "test/1.0",
	}
	for _, f := range edit {
		f(s)
	}
	if err := e.s.CreateSession(e.ctx, s, 0, created); err != nil {
		e.t.Fatalf("CreateSession: %v", err)
	}
	return storedSession(s)
}

// storedSession is s as a store returns it.
func storedSession(s *model.Session) *model.Session {
	c := *s
	c.CreatedAt = stored(s.CreatedAt)
	c.ExpiresAt = stored(s.ExpiresAt)
	c.LastSeenAt = stored(s.LastSeenAt)
	c.PasswordVerifiedAt = stored(s.PasswordVerifiedAt)
	return &c
}

// pending starts an enrolment of a new secret from the session, expiring
// 15 minutes after t0, and returns the secret.
func (e *env) pending(userID, sessionID string) []byte {
	e.t.Helper()
	secret := random(e.t, 40)
	err := e.s.PutPendingTOTP(e.ctx, &model.PendingTOTP{
		UserID: userID, SessionID: sessionID, Secret: secret,
		CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute),
	})
	if err != nil {
		e.t.Fatalf("PutPendingTOTP: %v", err)
	}
	return secret
}

// twoFactor is what enabling a second factor left behind.
type twoFactor struct {
	secret []byte
	codes  [][]byte
	token  []byte // the session's token hash after the rotation
}

// enableInput is a valid EnableTOTP input for the session, with a pending
// enrolment put in place.
func (e *env) enableInput(userID string, sess *model.Session, step int64) db.Enable {
	e.t.Helper()
	secret := e.pending(userID, sess.ID)
	codes := make([][]byte, 10)
	for i := range codes {
		codes[i] = hash(e.t)
	}
	return db.Enable{
		UserID: userID, SessionID: sess.ID, Secret: secret, Step: step,
		RecoveryCodes: codes, OldHash: sess.TokenHash, NewHash: hash(e.t),
		ExpiresAt: t0.Add(30 * 24 * time.Hour), PartialExpiresAt: t0.Add(10 * time.Minute),
		Now: t0,
	}
}

// enable gives the user a second factor confirmed at step from sess.
func (e *env) enable(userID string, sess *model.Session, step int64) twoFactor {
	e.t.Helper()
	in := e.enableInput(userID, sess, step)
	if err := e.s.EnableTOTP(e.ctx, in); err != nil {
		e.t.Fatalf("EnableTOTP: %v", err)
	}
	return twoFactor{secret: in.Secret, codes: in.RecoveryCodes, token: in.NewHash}
}

// state is everything a store keeps about one user, to check that a failed
// call changed nothing.
type state struct {
	User     *model.User
	Sessions []*model.Session
	Pending  *model.PendingTOTP
	Codes    int
}

// snapshot reads the state of the user.
func (e *env) snapshot(userID string) state {
	e.t.Helper()
	var st state
	var err error
	st.User = e.mustUser(userID)
	if st.Sessions, err = e.s.ListSessions(e.ctx, userID, time.Time{}); err != nil {
		e.t.Fatalf("ListSessions: %v", err)
	}
	st.Pending, err = e.s.PendingTOTP(e.ctx, userID)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		e.t.Fatalf("PendingTOTP: %v", err)
	}
	if st.Codes, err = e.s.RecoveryCodesRemaining(e.ctx, userID); err != nil {
		e.t.Fatalf("RecoveryCodesRemaining: %v", err)
	}
	return st
}

// unchanged fails the test if the state of the user differs from before.
func (e *env) unchanged(userID string, before state) {
	e.t.Helper()
	if after := e.snapshot(userID); !reflect.DeepEqual(before, after) {
		e.t.Errorf("state changed by a failed call:\nbefore %s\nafter  %s",
			before, after)
	}
}

// String shows a state with its pointers followed.
func (st state) String() string {
	s := fmt.Sprintf("user %+v codes %d pending %+v sessions [", *st.User, st.Codes,
		st.Pending)
	for _, x := range st.Sessions {
		s += fmt.Sprintf("%+v ", *x)
	}
	return s + "]"
}

// wantErr fails the test unless err matches want (nil for success).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

// equal fails the test unless got and want are deeply equal.
func equal(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// fail counts one failed second-factor attempt for the user, as the
// service does before checking a code.
func (e *env) fail(userID string, at time.Time) (int, error) {
	e.t.Helper()
	return e.s.ClaimSecondFactorAttempt(e.ctx, userID, e.mustUser(userID).OTPFailures, at)
}
