package db_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/model"
)

// storeTests is the conformance suite: every test runs on a fresh database
// of each kind.
var storeTests = []struct {
	name string
	run  func(e *env)
}{
	{"Ping", testPing},
	{"CreateUser", testCreateUser},
	{"UserNotFound", testUserNotFound},
	{"EmailTaken", testEmailTaken},
	{"UpdatePasswordHash", testUpdatePasswordHash},
	{"SessionRoundTrip", testSessionRoundTrip},
	{"CreateSessionLimit", testCreateSessionLimit},
	{"CreateSessionUnknownUser", testCreateSessionUnknownUser},
	{"TouchSession", testTouchSession},
	{"RotateSession", testRotateSession},
	{"ListSessions", testListSessions},
	{"DeleteSession", testDeleteSession},
	{"DeleteSessionByTokenHash", testDeleteSessionByTokenHash},
	{"DeleteOtherSessions", testDeleteOtherSessions},
	{"DeletePartialSessions", testDeletePartialSessions},
	{"DeleteExpiredSessions", testDeleteExpiredSessions},
	{"PendingTOTP", testPendingTOTP},
	{"EnableTOTP", testEnableTOTP},
	{"EnableTOTPReenrol", testEnableTOTPReenrol},
	{"EnableTOTPRefused", testEnableTOTPRefused},
	{"PassSecondFactorStep", testPassSecondFactorStep},
	{"PassSecondFactorRecoveryCode", testPassSecondFactorRecoveryCode},
	{"PassSecondFactorRefused", testPassSecondFactorRefused},
	{"ClaimSecondFactorAttempt", testClaimSecondFactorAttempt},
	{"RaceClaimSecondFactorAttempt", testRaceClaim},
	{"DisableTOTP", testDisableTOTP},
	{"DisableTOTPRefused", testDisableTOTPRefused},
	{"RecoveryCodes", testRecoveryCodes},
	{"ChangePassword", testChangePassword},
	{"ChangePasswordRefused", testChangePasswordRefused},
	{"TwoFactorSecrets", testTwoFactorSecrets},
	{"ReplaceTwoFactorSecret", testReplaceTwoFactorSecret},
	{"LoginThrottle", testLoginThrottle},
	{"ContextEnded", testContextEnded},
	{"Closed", testClosed},
	{"RaceStep", testRaceStep},
	{"RaceRecoveryCode", testRaceRecoveryCode},
	{"RaceEnable", testRaceEnable},
}

// TestStore runs the conformance suite as TestStore/postgres/NAME and
// TestStore/sqlite/NAME, each on a database of its own.
func TestStore(t *testing.T) {
	for name, open := range dbtest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range storeTests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(newEnv(t, open(t)))
				})
			}
		})
	}
}

// testPing checks that a fresh store answers.
func testPing(e *env) {
	wantErr(e.t, "Ping", e.s.Ping(e.ctx), nil)
}

// testCreateUser checks that every field of a user round-trips, times in
// UTC at microsecond precision, a nil secret as nil and a zero time as zero.
func testCreateUser(e *env) {
	cases := []model.User{{
		ID: "u-plain", Email: "Zoë@Example.org", EmailCanonical: "zoë@example.org",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$YWJj$ZGVm",
		CreatedAt:    t0, UpdatedAt: t0.Add(time.Second),
	}, {
		ID: "u-full", Email: "full@example.org", EmailCanonical: "full@example.org",
		PasswordHash:    "h",
		TwoFactorSecret: []byte{1, 2, 3}, TOTPLastStep: 7, OTPFailures: 3,
		OTPLastFailureAt: t0.Add(-time.Minute), CreatedAt: t0, UpdatedAt: t0,
	}}
	for _, u := range cases {
		in := u
		wantErr(e.t, "CreateUser", e.s.CreateUser(e.ctx, &in), nil)

		want := u
		want.CreatedAt = stored(u.CreatedAt)
		want.UpdatedAt = stored(u.UpdatedAt)
		want.OTPLastFailureAt = stored(u.OTPLastFailureAt)

		got, err := e.s.UserByID(e.ctx, u.ID)
		wantErr(e.t, "UserByID", err, nil)
		equal(e.t, "UserByID", got, &want)
		if got.CreatedAt.Location() != time.UTC {
			e.t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
		}
		if got.TwoFactorEnabled() != (u.TwoFactorSecret != nil) {
			e.t.Errorf("TwoFactorEnabled() = %v for secret %v", got.TwoFactorEnabled(),
				u.TwoFactorSecret)
		}

		got, err = e.s.UserByEmail(e.ctx, u.EmailCanonical)
		wantErr(e.t, "UserByEmail", err, nil)
		equal(e.t, "UserByEmail", got, &want)
	}
}

// testUserNotFound looks up ids and emails no user has, including ones no
// database column could hold (NUL, invalid UTF-8): each is simply not found.
func testUserNotFound(e *env) {
	e.user()
	ids := []string{"missing", "", "0000-not-a-uuid", "'; DROP TABLE users; --",
		"\x00", "\xff\xfe", "ünïcödé"}
	for _, uid := range ids {
		_, err := e.s.UserByID(e.ctx, uid)
		wantErr(e.t, "UserByID("+uid+")", err, model.ErrNotFound)
		_, err = e.s.UserByEmail(e.ctx, uid)
		wantErr(e.t, "UserByEmail("+uid+")", err, model.ErrNotFound)
		_, err = e.s.PendingTOTP(e.ctx, uid)
		wantErr(e.t, "PendingTOTP("+uid+")", err, model.ErrNotFound)
		err = e.s.DeleteSession(e.ctx, uid, uid)
		wantErr(e.t, "DeleteSession("+uid+")", err, model.ErrNotFound)
		lt, err := e.s.LoginThrottle(e.ctx, uid, uid)
		wantErr(e.t, "LoginThrottle("+uid+")", err, nil)
		equal(e.t, "LoginThrottle", lt, model.LoginThrottle{})
		wantErr(e.t, "ResetLoginFailures", e.s.ResetLoginFailures(e.ctx, uid, uid), nil)
	}
}

// testEmailTaken checks that a second user with the same canonical email
// is refused and the first one stays as it was.
func testEmailTaken(e *env) {
	first := e.user()
	dup := &model.User{
		ID: id(e.t, "user"), Email: "OTHER spelling", EmailCanonical: first.EmailCanonical,
		PasswordHash: "other", CreatedAt: t0, UpdatedAt: t0,
	}
	wantErr(e.t, "CreateUser duplicate", e.s.CreateUser(e.ctx, dup), model.ErrEmailTaken)

	got, err := e.s.UserByEmail(e.ctx, first.EmailCanonical)
	wantErr(e.t, "UserByEmail", err, nil)
	equal(e.t, "first user", got, first)
	_, err = e.s.UserByID(e.ctx, dup.ID)
	wantErr(e.t, "UserByID of refused user", err, model.ErrNotFound)
}

// testUpdatePasswordHash checks the new hash and time, and an unknown user.
func testUpdatePasswordHash(e *env) {
	u := e.user()
	later := t0.Add(time.Hour)
	wantErr(e.t, "UpdatePasswordHash",
		e.s.UpdatePasswordHash(e.ctx, u.ID, "new-hash", later), nil)

	want := *u
	want.PasswordHash = "new-hash"
	want.UpdatedAt = stored(later)
	equal(e.t, "user", e.mustUser(u.ID), &want)

	wantErr(e.t, "UpdatePasswordHash unknown",
		e.s.UpdatePasswordHash(e.ctx, "missing", "x", later), model.ErrNotFound)
}

// testSessionRoundTrip checks that a session and its user come back by
// token hash, whether or not the session has expired.
func testSessionRoundTrip(e *env) {
	u := e.user()
	s := e.session(u.ID, t0, func(s *model.Session) {
		s.PasswordVerifiedAt = time.Time{}
		s.TwoFactorVerified = true
		s.ClientIP = "2001:db8::1"
		s.UserAgent = "Mozilla/5.0 (X11) ünï"
	})
	gotS, gotU, err := e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "SessionByTokenHash", err, nil)
	equal(e.t, "session", gotS, s)
	equal(e.t, "user", gotU, u)
	if !gotS.PasswordVerifiedAt.IsZero() {
		e.t.Errorf("zero PasswordVerifiedAt came back as %v", gotS.PasswordVerifiedAt)
	}

	_, _, err = e.s.SessionByTokenHash(e.ctx, hash(e.t))
	wantErr(e.t, "SessionByTokenHash unknown", err, model.ErrNotFound)

	// Expiry is the caller's business here.
	old := e.session(u.ID, t0.Add(-48*time.Hour))
	_, _, err = e.s.SessionByTokenHash(e.ctx, old.TokenHash)
	wantErr(e.t, "SessionByTokenHash expired", err, nil)
}

// ids returns the public ids of sessions in order.
func ids(sessions []*model.Session) []string {
	var out []string
	for _, s := range sessions {
		out = append(out, s.ID)
	}
	return out
}

// testCreateSessionLimit checks that CreateSession trims a user's live
// sessions, oldest first, never the new one, and ignores expired ones.
func testCreateSessionLimit(e *env) {
	u := e.user()
	create := func(created time.Time, limit int, expires time.Time) *model.Session {
		s := &model.Session{ID: id(e.t, "sess"), TokenHash: hash(e.t), UserID: u.ID,
			CreatedAt: created, ExpiresAt: expires, LastSeenAt: created,
			PasswordVerifiedAt: created}
		wantErr(e.t, "CreateSession", e.s.CreateSession(e.ctx, s, limit, t0), nil)
		return s
	}
	live := func() []string {
		got, err := e.s.ListSessions(e.ctx, u.ID, t0)
		wantErr(e.t, "ListSessions", err, nil)
		return ids(got)
	}
	day := t0.Add(24 * time.Hour)

	// No limit below 1.
	a := create(t0.Add(-5*time.Minute), 0, day)
	b := create(t0.Add(-4*time.Minute), 0, day)
	c := create(t0.Add(-3*time.Minute), 0, day)
	equal(e.t, "sessions without a limit", live(), []string{c.ID, b.ID, a.ID})

	// An expired session does not count towards the limit.
	create(t0.Add(-time.Minute), 0, t0)
	d := create(t0.Add(-2*time.Minute), 3, day)
	equal(e.t, "sessions at limit 3", live(), []string{d.ID, c.ID, b.ID})

	// The new session stays even when it is not the newest by CreatedAt.
	f := create(t0.Add(-time.Hour), 2, day)
	equal(e.t, "sessions at limit 2", live(), []string{d.ID, f.ID})

	_, _, err := e.s.SessionByTokenHash(e.ctx, a.TokenHash)
	wantErr(e.t, "trimmed session", err, model.ErrNotFound)
}

// testCreateSessionUnknownUser checks that a session needs a user.
func testCreateSessionUnknownUser(e *env) {
	s := &model.Session{ID: id(e.t, "sess"), TokenHash: hash(e.t), UserID: "missing",
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), LastSeenAt: t0}
	err := e.s.CreateSession(e.ctx, s, 10, t0)
	wantErr(e.t, "CreateSession for unknown user", err, model.ErrNotFound)
	_, _, err = e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "SessionByTokenHash", err, model.ErrNotFound)
}

// testTouchSession checks the new last-seen time and expiry.
func testTouchSession(e *env) {
	u := e.user()
	s := e.session(u.ID, t0)
	seen, exp := t0.Add(2*time.Minute), t0.Add(48*time.Hour+time.Nanosecond)
	wantErr(e.t, "TouchSession", e.s.TouchSession(e.ctx, s.TokenHash, s.LastSeenAt, seen,
		exp), nil)

	want := *s
	want.LastSeenAt, want.ExpiresAt = stored(seen), stored(exp)
	got, _, err := e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "SessionByTokenHash", err, nil)
	equal(e.t, "touched session", got, &want)

	// A second touch that read the old value writes nothing and is no error.
	wantErr(e.t, "TouchSession with a stale last-seen time",
		e.s.TouchSession(e.ctx, s.TokenHash, s.LastSeenAt, seen.Add(time.Minute),
			exp.Add(time.Hour)), nil)
	got, _, err = e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "SessionByTokenHash", err, nil)
	equal(e.t, "session after a stale touch", got, &want)

	wantErr(e.t, "TouchSession unknown",
		e.s.TouchSession(e.ctx, hash(e.t), seen, seen, exp), model.ErrNotFound)
}

// testRotateSession checks a rotation and that an unknown, stale or
// foreign token hash changes nothing.
func testRotateSession(e *env) {
	u := e.user()
	other := e.user()
	s := e.session(u.ID, t0)
	r := db.Rotation{UserID: u.ID, OldHash: s.TokenHash, NewHash: hash(e.t),
		ExpiresAt: t0.Add(72 * time.Hour), PasswordVerifiedAt: t0.Add(time.Minute),
		TwoFactorVerified: true}

	refused := []struct {
		name string
		edit func(r *db.Rotation)
	}{
		{"unknown hash", func(r *db.Rotation) { r.OldHash = hash(e.t) }},
		{"other user", func(r *db.Rotation) { r.UserID = other.ID }},
	}
	for _, tc := range refused {
		before := e.snapshot(u.ID)
		bad := r
		tc.edit(&bad)
		wantErr(e.t, "RotateSession "+tc.name, e.s.RotateSession(e.ctx, bad),
			model.ErrNotFound)
		e.unchanged(u.ID, before)
	}

	wantErr(e.t, "RotateSession", e.s.RotateSession(e.ctx, r), nil)
	want := *s
	want.TokenHash = r.NewHash
	want.ExpiresAt = stored(r.ExpiresAt)
	want.PasswordVerifiedAt = stored(r.PasswordVerifiedAt)
	want.TwoFactorVerified = true
	got, _, err := e.s.SessionByTokenHash(e.ctx, r.NewHash)
	wantErr(e.t, "SessionByTokenHash new", err, nil)
	equal(e.t, "rotated session", got, &want)

	_, _, err = e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "SessionByTokenHash old", err, model.ErrNotFound)

	// The old token is stale now.
	before := e.snapshot(u.ID)
	stale := r
	stale.NewHash = hash(e.t)
	wantErr(e.t, "RotateSession stale", e.s.RotateSession(e.ctx, stale), model.ErrNotFound)
	e.unchanged(u.ID, before)
}

// testListSessions checks that only the user's live sessions are listed,
// newest first; a session expiring exactly now is not live.
func testListSessions(e *env) {
	u := e.user()
	other := e.user()
	old := e.session(u.ID, t0.Add(-3*time.Hour))
	mid := e.session(u.ID, t0.Add(-2*time.Hour))
	e.session(u.ID, t0.Add(-time.Hour), func(s *model.Session) { s.ExpiresAt = t0 })
	e.session(u.ID, t0.Add(-time.Hour), func(s *model.Session) {
		s.ExpiresAt = t0.Add(-time.Second)
	})
	e.session(other.ID, t0)
	newest := e.session(u.ID, t0.Add(-time.Minute))

	got, err := e.s.ListSessions(e.ctx, u.ID, t0)
	wantErr(e.t, "ListSessions", err, nil)
	equal(e.t, "live sessions", got, []*model.Session{newest, mid, old})

	none, err := e.s.ListSessions(e.ctx, "missing", t0)
	wantErr(e.t, "ListSessions unknown user", err, nil)
	if len(none) != 0 {
		e.t.Errorf("ListSessions of an unknown user: %v", none)
	}
}

// testDeleteSession checks that a user can delete only a session of their
// own.
func testDeleteSession(e *env) {
	u := e.user()
	other := e.user()
	s := e.session(u.ID, t0)

	before := e.snapshot(u.ID)
	wantErr(e.t, "DeleteSession by another user",
		e.s.DeleteSession(e.ctx, other.ID, s.ID), model.ErrNotFound)
	wantErr(e.t, "DeleteSession unknown id",
		e.s.DeleteSession(e.ctx, u.ID, "no-such-id"), model.ErrNotFound)
	e.unchanged(u.ID, before)

	wantErr(e.t, "DeleteSession", e.s.DeleteSession(e.ctx, u.ID, s.ID), nil)
	_, _, err := e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "deleted session", err, model.ErrNotFound)
	wantErr(e.t, "DeleteSession twice",
		e.s.DeleteSession(e.ctx, u.ID, s.ID), model.ErrNotFound)
}

// testDeleteSessionByTokenHash checks that deleting is quiet about an
// unknown hash and removes exactly the session named.
func testDeleteSessionByTokenHash(e *env) {
	u := e.user()
	s := e.session(u.ID, t0)
	keep := e.session(u.ID, t0)
	wantErr(e.t, "DeleteSessionByTokenHash unknown",
		e.s.DeleteSessionByTokenHash(e.ctx, hash(e.t)), nil)
	wantErr(e.t, "DeleteSessionByTokenHash",
		e.s.DeleteSessionByTokenHash(e.ctx, s.TokenHash), nil)

	got, err := e.s.ListSessions(e.ctx, u.ID, t0)
	wantErr(e.t, "ListSessions", err, nil)
	equal(e.t, "remaining", ids(got), []string{keep.ID})
}

// testDeleteOtherSessions checks that only the kept session of the user
// remains, and other users keep theirs.
func testDeleteOtherSessions(e *env) {
	u := e.user()
	other := e.user()
	keep := e.session(u.ID, t0)
	e.session(u.ID, t0.Add(time.Second))
	e.session(u.ID, t0.Add(-time.Second))
	theirs := e.session(other.ID, t0)

	wantErr(e.t, "DeleteOtherSessions", e.s.DeleteOtherSessions(e.ctx, u.ID, keep.ID), nil)
	got, err := e.s.ListSessions(e.ctx, u.ID, t0)
	wantErr(e.t, "ListSessions", err, nil)
	equal(e.t, "remaining", ids(got), []string{keep.ID})
	got, err = e.s.ListSessions(e.ctx, other.ID, t0)
	wantErr(e.t, "ListSessions other", err, nil)
	equal(e.t, "other user's", ids(got), []string{theirs.ID})
}

// testDeletePartialSessions checks that only sessions without a second
// factor go.
func testDeletePartialSessions(e *env) {
	u := e.user()
	full := e.session(u.ID, t0, func(s *model.Session) { s.TwoFactorVerified = true })
	e.session(u.ID, t0.Add(time.Second))
	other := e.user()
	theirs := e.session(other.ID, t0)

	wantErr(e.t, "DeletePartialSessions", e.s.DeletePartialSessions(e.ctx, u.ID), nil)
	got, err := e.s.ListSessions(e.ctx, u.ID, t0)
	wantErr(e.t, "ListSessions", err, nil)
	equal(e.t, "remaining", ids(got), []string{full.ID})
	got, err = e.s.ListSessions(e.ctx, other.ID, t0)
	wantErr(e.t, "ListSessions other", err, nil)
	equal(e.t, "other user's", ids(got), []string{theirs.ID})
}

// testDeleteExpiredSessions checks the sweep of sessions and enrolments
// that expired strictly before now, and the count it reports.
func testDeleteExpiredSessions(e *env) {
	u := e.user()
	v := e.user()
	at := func(exp time.Time) func(*model.Session) {
		return func(s *model.Session) { s.ExpiresAt = exp }
	}
	gone1 := e.session(u.ID, t0.Add(-time.Hour), at(t0.Add(-time.Microsecond)))
	e.session(v.ID, t0.Add(-time.Hour), at(t0.Add(-time.Minute)))
	edge := e.session(u.ID, t0.Add(-time.Hour), at(t0))
	live := e.session(u.ID, t0.Add(-2*time.Hour), at(t0.Add(time.Hour)))
	vLive := e.session(v.ID, t0.Add(-time.Hour), at(t0.Add(time.Hour)))

	// An expired enrolment goes; a live one stays.
	e.pending(u.ID, live.ID)
	err := e.s.PutPendingTOTP(e.ctx, &model.PendingTOTP{UserID: v.ID, SessionID: vLive.ID,
		Secret: []byte("s"), CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(-time.Second)})
	wantErr(e.t, "PutPendingTOTP", err, nil)

	n, err := e.s.DeleteExpiredSessions(e.ctx, stored(t0))
	wantErr(e.t, "DeleteExpiredSessions", err, nil)
	if n != 2 {
		e.t.Errorf("DeleteExpiredSessions removed %d sessions, want 2", n)
	}
	got, err := e.s.ListSessions(e.ctx, u.ID, time.Time{})
	wantErr(e.t, "ListSessions", err, nil)
	equal(e.t, "remaining", ids(got), []string{edge.ID, live.ID})
	if slices.Contains(ids(got), gone1.ID) {
		e.t.Error("expired session kept")
	}

	_, err = e.s.PendingTOTP(e.ctx, u.ID)
	wantErr(e.t, "live enrolment", err, nil)
	_, err = e.s.PendingTOTP(e.ctx, v.ID)
	wantErr(e.t, "expired enrolment", err, model.ErrNotFound)

	n, err = e.s.DeleteExpiredSessions(e.ctx, t0)
	wantErr(e.t, "DeleteExpiredSessions again", err, nil)
	if n != 0 {
		e.t.Errorf("second sweep removed %d sessions, want 0", n)
	}
}

// testPendingTOTP checks that a pending enrolment is stored, replaced by
// the next one, bound to an existing session and gone with it.
func testPendingTOTP(e *env) {
	u := e.user()
	s1 := e.session(u.ID, t0)
	s2 := e.session(u.ID, t0)

	_, err := e.s.PendingTOTP(e.ctx, u.ID)
	wantErr(e.t, "PendingTOTP none", err, model.ErrNotFound)

	p := &model.PendingTOTP{UserID: u.ID, SessionID: s1.ID, Secret: []byte("first"),
		CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute)}
	wantErr(e.t, "PutPendingTOTP", e.s.PutPendingTOTP(e.ctx, p), nil)
	got, err := e.s.PendingTOTP(e.ctx, u.ID)
	wantErr(e.t, "PendingTOTP", err, nil)
	want := *p
	want.CreatedAt, want.ExpiresAt = stored(p.CreatedAt), stored(p.ExpiresAt)
	equal(e.t, "pending", got, &want)

	// A second setup replaces the first.
	p2 := &model.PendingTOTP{UserID: u.ID, SessionID: s2.ID, Secret: []byte("second"),
		CreatedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(16 * time.Minute)}
	wantErr(e.t, "PutPendingTOTP again", e.s.PutPendingTOTP(e.ctx, p2), nil)
	got, err = e.s.PendingTOTP(e.ctx, u.ID)
	wantErr(e.t, "PendingTOTP", err, nil)
	want = *p2
	want.CreatedAt, want.ExpiresAt = stored(p2.CreatedAt), stored(p2.ExpiresAt)
	equal(e.t, "replaced pending", got, &want)

	// An enrolment refers to a session that exists, and goes with it.
	bad := *p2
	bad.SessionID = "missing"
	wantErr(e.t, "PutPendingTOTP unknown session", e.s.PutPendingTOTP(e.ctx, &bad),
		model.ErrNotFound)
	wantErr(e.t, "DeleteSession", e.s.DeleteSession(e.ctx, u.ID, s2.ID), nil)
	_, err = e.s.PendingTOTP(e.ctx, u.ID)
	wantErr(e.t, "PendingTOTP after logout", err, model.ErrNotFound)
}

// testEnableTOTP checks every effect of confirming an enrolment.
func testEnableTOTP(e *env) {
	u := e.user()
	s := e.session(u.ID, t0.Add(-time.Hour))
	longer := e.session(u.ID, t0.Add(-2*time.Hour), func(s *model.Session) {
		s.TwoFactorVerified = true
		s.ExpiresAt = t0.Add(48 * time.Hour)
	})
	shorter := e.session(u.ID, t0.Add(-3*time.Hour), func(s *model.Session) {
		s.ExpiresAt = t0.Add(5 * time.Minute)
	})
	other := e.user()
	theirs := e.session(other.ID, t0)
	failures, err := e.fail(u.ID, t0)
	wantErr(e.t, "fail", err, nil)
	if failures != 1 {
		e.t.Fatalf("failures = %d, want 1", failures)
	}

	in := e.enableInput(u.ID, s, 1000)
	wantErr(e.t, "EnableTOTP", e.s.EnableTOTP(e.ctx, in), nil)

	got := e.mustUser(u.ID)
	want := *u
	want.TwoFactorSecret = in.Secret
	want.TOTPLastStep = 1000
	want.UpdatedAt = stored(in.Now)
	equal(e.t, "user", got, &want)

	_, err = e.s.PendingTOTP(e.ctx, u.ID)
	wantErr(e.t, "PendingTOTP after enable", err, model.ErrNotFound)
	n, err := e.s.RecoveryCodesRemaining(e.ctx, u.ID)
	wantErr(e.t, "RecoveryCodesRemaining", err, nil)
	if n != len(in.RecoveryCodes) {
		e.t.Errorf("recovery codes = %d, want %d", n, len(in.RecoveryCodes))
	}

	rotated := *s
	rotated.TokenHash = in.NewHash
	rotated.TwoFactorVerified = true
	rotated.ExpiresAt = stored(in.ExpiresAt)
	longerWant := *longer
	longerWant.TwoFactorVerified = false
	longerWant.ExpiresAt = stored(in.PartialExpiresAt)
	sessions, err := e.s.ListSessions(e.ctx, u.ID, t0)
	wantErr(e.t, "ListSessions", err, nil)
	equal(e.t, "sessions", sessions, []*model.Session{&rotated, &longerWant, shorter})

	_, _, err = e.s.SessionByTokenHash(e.ctx, s.TokenHash)
	wantErr(e.t, "old token", err, model.ErrNotFound)
	gotTheirs, _, err := e.s.SessionByTokenHash(e.ctx, theirs.TokenHash)
	wantErr(e.t, "other user's session", err, nil)
	equal(e.t, "other user's session", gotTheirs, theirs)

	// The confirming code's step is spent.
	p := db.SecondFactor{UserID: u.ID, Step: 1000, OldHash: shorter.TokenHash,
		NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0}
	wantErr(e.t, "PassSecondFactor with the enabling step",
		e.s.PassSecondFactor(e.ctx, p), model.ErrStepUsed)
}

// testEnableTOTPReenrol checks that enabling again, while a second factor
// is on, replaces the secret and the recovery codes.
func testEnableTOTPReenrol(e *env) {
	u := e.user()
	s := e.session(u.ID, t0)
	first := e.enable(u.ID, s, 100)
	s.TokenHash = first.token

	in := e.enableInput(u.ID, s, 101)
	wantErr(e.t, "EnableTOTP again", e.s.EnableTOTP(e.ctx, in), nil)
	got := e.mustUser(u.ID)
	if !bytes.Equal(got.TwoFactorSecret, in.Secret) || got.TOTPLastStep != 101 {
		e.t.Errorf("after re-enrolment: secret %x step %d, want %x 101",
			got.TwoFactorSecret, got.TOTPLastStep, in.Secret)
	}

	// The new codes replaced the old ones.
	s.TokenHash = in.NewHash
	old := db.SecondFactor{UserID: u.ID, RecoveryCode: first.codes[0],
		OldHash: s.TokenHash, NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0}
	wantErr(e.t, "old recovery code", e.s.PassSecondFactor(e.ctx, old),
		model.ErrBadRecoveryCode)
	fresh := old
	fresh.RecoveryCode = in.RecoveryCodes[9]
	wantErr(e.t, "new recovery code", e.s.PassSecondFactor(e.ctx, fresh), nil)
}

// testEnableTOTPRefused checks each condition of EnableTOTP and that a
// refused call changes nothing at all.
func testEnableTOTPRefused(e *env) {
	cases := []struct {
		name string
		// prepare returns the input to refuse, for a user with a second
		// factor confirmed at step 50 and a pending enrolment from s.
		edit func(e *env, in *db.Enable, userID string)
		want error
	}{
		{"no pending enrolment", func(e *env, in *db.Enable, userID string) {
			_, err := e.s.DeleteExpiredSessions(e.ctx, t0.Add(time.Hour))
			wantErr(e.t, "DeleteExpiredSessions", err, nil)
		}, model.ErrNoEnrollment},
		{"from another session", func(e *env, in *db.Enable, userID string) {
			other := e.session(userID, t0)
			in.SessionID, in.OldHash = other.ID, other.TokenHash
		}, model.ErrNoEnrollment},
		{"another secret", func(e *env, in *db.Enable, userID string) {
			in.Secret = append(slices.Clone(in.Secret), 0)
		}, model.ErrNoEnrollment},
		{"expired", func(e *env, in *db.Enable, userID string) {
			in.Now = t0.Add(15*time.Minute + time.Microsecond)
		}, model.ErrNoEnrollment},
		{"expiring now", func(e *env, in *db.Enable, userID string) {
			in.Now = t0.Add(15 * time.Minute)
		}, model.ErrNoEnrollment},
		{"step already used", func(e *env, in *db.Enable, userID string) {
			in.Step = 50
		}, model.ErrStepUsed},
		{"step earlier", func(e *env, in *db.Enable, userID string) {
			in.Step = 49
		}, model.ErrStepUsed},
		{"stale token", func(e *env, in *db.Enable, userID string) {
			in.OldHash = hash(e.t)
		}, model.ErrNotFound},
		{"token of another session", func(e *env, in *db.Enable, userID string) {
			in.OldHash = e.session(userID, t0).TokenHash
		}, model.ErrNotFound},
		{"another user's session", func(e *env, in *db.Enable, userID string) {
			other := e.user()
			in.OldHash = e.session(other.ID, t0).TokenHash
		}, model.ErrNotFound},
	}
	for _, tc := range cases {
		u := e.user()
		s := e.session(u.ID, t0)
		tf := e.enable(u.ID, s, 50)
		s.TokenHash = tf.token
		in := e.enableInput(u.ID, s, 60)
		tc.edit(e, &in, u.ID)

		before := e.snapshot(u.ID)
		wantErr(e.t, "EnableTOTP "+tc.name, e.s.EnableTOTP(e.ctx, in), tc.want)
		e.unchanged(u.ID, before)
	}
}

// partial returns a new session of the user that has not passed a second
// factor.
func (e *env) partial(userID string) *model.Session {
	return e.session(userID, t0, func(s *model.Session) {
		s.ExpiresAt = t0.Add(10 * time.Minute)
	})
}

// testPassSecondFactorStep checks that passing a TOTP step rotates and
// verifies the session, resets the failures, and spends that step and
// every earlier one.
func testPassSecondFactorStep(e *env) {
	u := e.user()
	tf := e.enable(u.ID, e.session(u.ID, t0), 100)
	for range 3 {
		_, err := e.fail(u.ID, t0)
		wantErr(e.t, "fail", err, nil)
	}

	s := e.partial(u.ID)
	before := e.mustUser(u.ID)
	if before.OTPFailures != 3 || !bytes.Equal(before.TwoFactorSecret, tf.secret) {
		e.t.Fatalf("user before: %+v", before)
	}
	p := db.SecondFactor{UserID: u.ID, Step: 101, OldHash: s.TokenHash,
		NewHash: hash(e.t), ExpiresAt: t0.Add(30 * 24 * time.Hour), Now: t0}
	wantErr(e.t, "PassSecondFactor", e.s.PassSecondFactor(e.ctx, p), nil)

	want := *before
	want.TOTPLastStep = 101
	want.OTPFailures = 0
	want.OTPLastFailureAt = time.Time{}
	equal(e.t, "user", e.mustUser(u.ID), &want)

	wantS := *s
	wantS.TokenHash = p.NewHash
	wantS.TwoFactorVerified = true
	wantS.ExpiresAt = stored(p.ExpiresAt)
	gotS, _, err := e.s.SessionByTokenHash(e.ctx, p.NewHash)
	wantErr(e.t, "SessionByTokenHash", err, nil)
	equal(e.t, "verified session", gotS, &wantS)

	// The step and every earlier one are spent, also on other sessions.
	last := int64(101)
	for _, step := range []int64{101, 100, 1} {
		s2 := e.partial(u.ID)
		p2 := db.SecondFactor{UserID: u.ID, Step: step, OldHash: s2.TokenHash,
			NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0}
		wantErr(e.t, "PassSecondFactor spent step", e.s.PassSecondFactor(e.ctx, p2),
			model.ErrStepUsed)
		last++
		p2.Step = last
		wantErr(e.t, "PassSecondFactor next step", e.s.PassSecondFactor(e.ctx, p2), nil)
	}
}

// testPassSecondFactorRecoveryCode checks that a recovery code is spent
// and verifies the session without touching the TOTP step.
func testPassSecondFactorRecoveryCode(e *env) {
	u := e.user()
	tf := e.enable(u.ID, e.session(u.ID, t0), 100)
	_, err := e.fail(u.ID, t0)
	wantErr(e.t, "fail", err, nil)

	s := e.partial(u.ID)
	p := db.SecondFactor{UserID: u.ID, RecoveryCode: tf.codes[3], OldHash: s.TokenHash,
		NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0}
	wantErr(e.t, "PassSecondFactor", e.s.PassSecondFactor(e.ctx, p), nil)

	got := e.mustUser(u.ID)
	if got.OTPFailures != 0 || got.TOTPLastStep != 100 {
		e.t.Errorf("after a recovery code: failures %d step %d, want 0 100",
			got.OTPFailures, got.TOTPLastStep)
	}
	n, err := e.s.RecoveryCodesRemaining(e.ctx, u.ID)
	wantErr(e.t, "RecoveryCodesRemaining", err, nil)
	if n != 9 {
		e.t.Errorf("remaining codes = %d, want 9", n)
	}
	gotS, _, err := e.s.SessionByTokenHash(e.ctx, p.NewHash)
	wantErr(e.t, "SessionByTokenHash", err, nil)
	if !gotS.TwoFactorVerified || gotS.ID != s.ID {
		e.t.Errorf("session after recovery code: %+v", gotS)
	}
}

// testPassSecondFactorRefused checks each condition of PassSecondFactor
// and that a refused call changes nothing, not even the failure count.
func testPassSecondFactorRefused(e *env) {
	cases := []struct {
		name string
		// edit turns a valid input for a user with a second factor at step
		// 100 into one to refuse; codes are the user's recovery codes, the
		// first of them already used.
		edit func(e *env, p *db.SecondFactor, codes [][]byte)
		want error
	}{
		{"step used", func(e *env, p *db.SecondFactor, _ [][]byte) { p.Step = 100 },
			model.ErrStepUsed},
		{"step earlier", func(e *env, p *db.SecondFactor, _ [][]byte) { p.Step = 99 },
			model.ErrStepUsed},
		{"stale token", func(e *env, p *db.SecondFactor, _ [][]byte) {
			p.OldHash = hash(e.t)
		}, model.ErrNotFound},
		{"another user's token", func(e *env, p *db.SecondFactor, _ [][]byte) {
			p.OldHash = e.session(e.user().ID, t0).TokenHash
		}, model.ErrNotFound},
		{"unknown user", func(e *env, p *db.SecondFactor, _ [][]byte) {
			p.UserID = "missing"
		}, model.ErrNotFound},
		{"no second factor", func(e *env, p *db.SecondFactor, _ [][]byte) {
			u := e.user()
			p.UserID, p.OldHash = u.ID, e.partial(u.ID).TokenHash
		}, model.ErrTwoFactorDisabled},
		{"unknown recovery code", func(e *env, p *db.SecondFactor, _ [][]byte) {
			p.Step, p.RecoveryCode = 0, hash(e.t)
		}, model.ErrBadRecoveryCode},
		{"used recovery code", func(e *env, p *db.SecondFactor, codes [][]byte) {
			p.Step, p.RecoveryCode = 0, codes[0]
		}, model.ErrBadRecoveryCode},
		{"another user's recovery code", func(e *env, p *db.SecondFactor, _ [][]byte) {
			other := e.user()
			tf := e.enable(other.ID, e.session(other.ID, t0), 1)
			p.Step, p.RecoveryCode = 0, tf.codes[0]
		}, model.ErrBadRecoveryCode},
		{"recovery code with a stale token", func(e *env, p *db.SecondFactor,
			codes [][]byte) {
			p.Step, p.RecoveryCode, p.OldHash = 0, codes[1], hash(e.t)
		}, model.ErrNotFound},
		{"both proofs", func(e *env, p *db.SecondFactor, codes [][]byte) {
			p.RecoveryCode = codes[1]
		}, nil},
		{"no proof", func(e *env, p *db.SecondFactor, _ [][]byte) { p.Step = 0 }, nil},
	}
	for _, tc := range cases {
		u := e.user()
		tf := e.enable(u.ID, e.session(u.ID, t0), 100)
		first := e.partial(u.ID)
		use := db.SecondFactor{UserID: u.ID, RecoveryCode: tf.codes[0],
			OldHash: first.TokenHash, NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour),
			Now: t0}
		wantErr(e.t, "PassSecondFactor", e.s.PassSecondFactor(e.ctx, use), nil)
		_, err := e.fail(u.ID, t0)
		wantErr(e.t, "fail", err, nil)

		s := e.partial(u.ID)
		p := db.SecondFactor{UserID: u.ID, Step: 101, OldHash: s.TokenHash,
			NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0}
		tc.edit(e, &p, tf.codes)
		before := e.snapshot(u.ID)
		err = e.s.PassSecondFactor(e.ctx, p)
		if tc.want == nil {
			if err == nil {
				e.t.Errorf("PassSecondFactor %s: no error", tc.name)
			}
		} else {
			wantErr(e.t, "PassSecondFactor "+tc.name, err, tc.want)
		}
		e.unchanged(u.ID, before)
	}

	// A refused call spent nothing: the step still passes.
	u := e.user()
	e.enable(u.ID, e.session(u.ID, t0), 100)
	s := e.partial(u.ID)
	p := db.SecondFactor{UserID: u.ID, Step: 101, OldHash: hash(e.t), NewHash: hash(e.t),
		ExpiresAt: t0.Add(time.Hour), Now: t0}
	wantErr(e.t, "stale token", e.s.PassSecondFactor(e.ctx, p), model.ErrNotFound)
	p.OldHash = s.TokenHash
	wantErr(e.t, "same step, right token", e.s.PassSecondFactor(e.ctx, p), nil)
}

// testClaimSecondFactorAttempt checks the compare-and-swap of the count.
func testClaimSecondFactorAttempt(e *env) {
	u := e.user()
	n, err := e.s.ClaimSecondFactorAttempt(e.ctx, u.ID, 0, t0)
	wantErr(e.t, "ClaimSecondFactorAttempt", err, nil)
	if n != 1 {
		e.t.Errorf("first claim counted as %d", n)
	}
	_, err = e.s.ClaimSecondFactorAttempt(e.ctx, u.ID, 0, t0.Add(time.Second))
	wantErr(e.t, "ClaimSecondFactorAttempt with a stale count", err, model.ErrStale)
	got := e.mustUser(u.ID)
	if got.OTPFailures != 1 || !got.OTPLastFailureAt.Equal(stored(t0)) {
		e.t.Errorf("a stale claim changed the user: %d at %v", got.OTPFailures,
			got.OTPLastFailureAt)
	}
	n, err = e.s.ClaimSecondFactorAttempt(e.ctx, u.ID, 1, t0.Add(2*time.Second))
	wantErr(e.t, "ClaimSecondFactorAttempt", err, nil)
	if got := e.mustUser(u.ID); n != 2 || got.OTPFailures != 2 ||
		!got.OTPLastFailureAt.Equal(stored(t0.Add(2*time.Second))) {
		e.t.Errorf("second claim: %d, user %d at %v", n, got.OTPFailures, got.OTPLastFailureAt)
	}
	_, err = e.s.ClaimSecondFactorAttempt(e.ctx, "missing", 0, t0)
	wantErr(e.t, "ClaimSecondFactorAttempt unknown", err, model.ErrStale)
}

// testRaceClaim releases many claims with the same observed count at once:
// exactly one is counted, so a burst of guesses cannot all be tried.
func testRaceClaim(e *env) {
	u := e.user()
	errs := race(racers, func(int) error {
		_, err := e.s.ClaimSecondFactorAttempt(e.ctx, u.ID, 0, t0)
		return err
	})
	oneWinner(e.t, errs, model.ErrStale)
	if got := e.mustUser(u.ID); got.OTPFailures != 1 {
		e.t.Errorf("%d failures counted after the race, want 1", got.OTPFailures)
	}
}

// testDisableTOTP checks every effect of disabling, with a TOTP step and
// with a recovery code as the proof.
func testDisableTOTP(e *env) {
	for _, byCode := range []bool{false, true} {
		u := e.user()
		keep := e.session(u.ID, t0)
		tf := e.enable(u.ID, keep, 100)
		keep.TokenHash = tf.token
		e.session(u.ID, t0)
		other := e.user()
		theirs := e.session(other.ID, t0)
		e.pending(u.ID, keep.ID)
		_, err := e.fail(u.ID, t0)
		wantErr(e.t, "fail", err, nil)

		d := db.Disable{UserID: u.ID, KeepSessionID: keep.ID, Step: 101,
			Now: t0.Add(time.Minute)}
		wantStep := int64(101)
		if byCode {
			d.Step, d.RecoveryCode, wantStep = 0, tf.codes[5], 100
		}
		wantErr(e.t, "DisableTOTP", e.s.DisableTOTP(e.ctx, d), nil)

		got := e.mustUser(u.ID)
		if got.TwoFactorEnabled() || got.TwoFactorSecret != nil {
			e.t.Errorf("secret kept: %x", got.TwoFactorSecret)
		}
		if got.TOTPLastStep != wantStep || got.OTPFailures != 0 ||
			!got.UpdatedAt.Equal(stored(d.Now)) {
			e.t.Errorf("user after disable: %+v", got)
		}
		st := e.snapshot(u.ID)
		if st.Pending != nil || st.Codes != 0 {
			e.t.Errorf("pending %+v and %d codes left", st.Pending, st.Codes)
		}
		equal(e.t, "sessions", ids(st.Sessions), []string{keep.ID})
		gotTheirs, _, err := e.s.SessionByTokenHash(e.ctx, theirs.TokenHash)
		wantErr(e.t, "other user's session", err, nil)
		equal(e.t, "other user's session", gotTheirs, theirs)
	}
}

// testDisableTOTPRefused checks each condition of DisableTOTP and that a
// refused call changes nothing.
func testDisableTOTPRefused(e *env) {
	cases := []struct {
		name string
		edit func(e *env, d *db.Disable, codes [][]byte)
		want error
	}{
		{"step used", func(e *env, d *db.Disable, _ [][]byte) { d.Step = 100 },
			model.ErrStepUsed},
		{"no second factor", func(e *env, d *db.Disable, _ [][]byte) {
			u := e.user()
			d.UserID, d.KeepSessionID = u.ID, e.session(u.ID, t0).ID
		}, model.ErrTwoFactorDisabled},
		{"unknown user", func(e *env, d *db.Disable, _ [][]byte) { d.UserID = "missing" },
			model.ErrNotFound},
		{"unknown recovery code", func(e *env, d *db.Disable, _ [][]byte) {
			d.Step, d.RecoveryCode = 0, hash(e.t)
		}, model.ErrBadRecoveryCode},
		{"used recovery code", func(e *env, d *db.Disable, codes [][]byte) {
			d.Step, d.RecoveryCode = 0, codes[0]
		}, model.ErrBadRecoveryCode},
		{"both proofs", func(e *env, d *db.Disable, codes [][]byte) {
			d.RecoveryCode = codes[1]
		}, nil},
	}
	for _, tc := range cases {
		u := e.user()
		keep := e.session(u.ID, t0)
		tf := e.enable(u.ID, keep, 100)
		e.session(u.ID, t0)
		e.pending(u.ID, keep.ID)
		spend := db.SecondFactor{UserID: u.ID, RecoveryCode: tf.codes[0],
			OldHash: tf.token, NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0}
		wantErr(e.t, "PassSecondFactor", e.s.PassSecondFactor(e.ctx, spend), nil)

		d := db.Disable{UserID: u.ID, KeepSessionID: keep.ID, Step: 101, Now: t0}
		tc.edit(e, &d, tf.codes)
		before := e.snapshot(u.ID)
		err := e.s.DisableTOTP(e.ctx, d)
		if tc.want == nil {
			if err == nil {
				e.t.Errorf("DisableTOTP %s: no error", tc.name)
			}
		} else {
			wantErr(e.t, "DisableTOTP "+tc.name, err, tc.want)
		}
		e.unchanged(u.ID, before)
	}
}

// testRecoveryCodes checks replacing and counting recovery codes: only
// with a second factor, old codes dead, each new code good once.
func testRecoveryCodes(e *env) {
	u := e.user()
	codes := [][]byte{hash(e.t), hash(e.t)}
	wantErr(e.t, "ReplaceRecoveryCodes without 2FA",
		e.s.ReplaceRecoveryCodes(e.ctx, u.ID, codes, t0), model.ErrTwoFactorDisabled)
	wantErr(e.t, "ReplaceRecoveryCodes unknown user",
		e.s.ReplaceRecoveryCodes(e.ctx, "missing", codes, t0), model.ErrNotFound)
	n, err := e.s.RecoveryCodesRemaining(e.ctx, u.ID)
	wantErr(e.t, "RecoveryCodesRemaining", err, nil)
	if n != 0 {
		e.t.Errorf("codes without 2FA = %d", n)
	}

	tf := e.enable(u.ID, e.session(u.ID, t0), 100)
	wantErr(e.t, "ReplaceRecoveryCodes",
		e.s.ReplaceRecoveryCodes(e.ctx, u.ID, codes, t0), nil)
	n, err = e.s.RecoveryCodesRemaining(e.ctx, u.ID)
	wantErr(e.t, "RecoveryCodesRemaining", err, nil)
	if n != 2 {
		e.t.Errorf("codes = %d, want 2", n)
	}

	pass := func(code []byte) error {
		s := e.partial(u.ID)
		return e.s.PassSecondFactor(e.ctx, db.SecondFactor{UserID: u.ID, RecoveryCode: code,
			OldHash: s.TokenHash, NewHash: hash(e.t), ExpiresAt: t0.Add(time.Hour), Now: t0})
	}
	wantErr(e.t, "old code", pass(tf.codes[0]), model.ErrBadRecoveryCode)
	wantErr(e.t, "new code", pass(codes[1]), nil)
	wantErr(e.t, "new code again", pass(codes[1]), model.ErrBadRecoveryCode)
	n, err = e.s.RecoveryCodesRemaining(e.ctx, u.ID)
	wantErr(e.t, "RecoveryCodesRemaining", err, nil)
	if n != 1 {
		e.t.Errorf("codes = %d, want 1", n)
	}
	n, err = e.s.RecoveryCodesRemaining(e.ctx, "missing")
	wantErr(e.t, "RecoveryCodesRemaining unknown user", err, nil)
	if n != 0 {
		e.t.Errorf("codes of unknown user = %d", n)
	}
}

// testChangePassword checks every effect of a password change.
func testChangePassword(e *env) {
	u := e.user()
	s := e.session(u.ID, t0)
	e.session(u.ID, t0)
	e.pending(u.ID, s.ID)
	other := e.user()
	theirs := e.session(other.ID, t0)

	c := db.PasswordChange{UserID: u.ID, PasswordHash: "changed",
		Rotation: db.Rotation{UserID: u.ID, OldHash: s.TokenHash, NewHash: hash(e.t),
			ExpiresAt: t0.Add(time.Hour), PasswordVerifiedAt: t0.Add(time.Minute)},
		Now: t0.Add(time.Minute)}
	wantErr(e.t, "ChangePassword", e.s.ChangePassword(e.ctx, c), nil)

	want := *u
	want.PasswordHash = "changed"
	want.UpdatedAt = stored(c.Now)
	wantS := *s
	wantS.TokenHash = c.Rotation.NewHash
	wantS.ExpiresAt = stored(c.Rotation.ExpiresAt)
	wantS.PasswordVerifiedAt = stored(c.Rotation.PasswordVerifiedAt)
	st := e.snapshot(u.ID)
	equal(e.t, "user", st.User, &want)
	equal(e.t, "sessions", st.Sessions, []*model.Session{&wantS})
	if st.Pending != nil {
		e.t.Errorf("pending enrolment kept: %+v", st.Pending)
	}
	gotTheirs, _, err := e.s.SessionByTokenHash(e.ctx, theirs.TokenHash)
	wantErr(e.t, "other user's session", err, nil)
	equal(e.t, "other user's session", gotTheirs, theirs)
}

// testChangePasswordRefused checks that a stale or foreign token, or an
// unknown user, changes nothing.
func testChangePasswordRefused(e *env) {
	u := e.user()
	s := e.session(u.ID, t0)
	e.session(u.ID, t0)
	e.pending(u.ID, s.ID)
	other := e.user()
	theirs := e.session(other.ID, t0)

	cases := []struct {
		name string
		c    db.PasswordChange
	}{
		{"stale token", db.PasswordChange{UserID: u.ID, PasswordHash: "x",
			Rotation: db.Rotation{OldHash: hash(e.t), NewHash: hash(e.t)}, Now: t0}},
		{"another user's token", db.PasswordChange{UserID: u.ID, PasswordHash: "x",
			Rotation: db.Rotation{OldHash: theirs.TokenHash, NewHash: hash(e.t)}, Now: t0}},
		{"unknown user", db.PasswordChange{UserID: "missing", PasswordHash: "x",
			Rotation: db.Rotation{OldHash: s.TokenHash, NewHash: hash(e.t)}, Now: t0}},
	}
	for _, tc := range cases {
		before := e.snapshot(u.ID)
		beforeOther := e.snapshot(other.ID)
		wantErr(e.t, "ChangePassword "+tc.name, e.s.ChangePassword(e.ctx, tc.c),
			model.ErrNotFound)
		e.unchanged(u.ID, before)
		e.unchanged(other.ID, beforeOther)
	}
}

// testTwoFactorSecrets pages through the sealed secrets in bytewise id
// order, skipping users without one.
func testTwoFactorSecrets(e *env) {
	// Ids sort bytewise: upper case before lower case.
	secrets := map[string][]byte{"B": {1}, "Z": {2}, "a": {3}, "b-2": {4}}
	for _, uid := range []string{"B", "Z", "a", "b-2", "c-none"} {
		u := &model.User{ID: uid, Email: uid, EmailCanonical: uid, PasswordHash: "h",
			TwoFactorSecret: secrets[uid], CreatedAt: t0, UpdatedAt: t0}
		wantErr(e.t, "CreateUser", e.s.CreateUser(e.ctx, u), nil)
	}

	var got []model.UserSecret
	after := ""
	for page := 0; page < 10; page++ {
		batch, err := e.s.TwoFactorSecrets(e.ctx, after, 3)
		wantErr(e.t, "TwoFactorSecrets", err, nil)
		if len(batch) > 3 {
			e.t.Fatalf("page of %d, limit 3", len(batch))
		}
		if len(batch) == 0 {
			break
		}
		got = append(got, batch...)
		after = batch[len(batch)-1].UserID
	}
	equal(e.t, "secrets", got, []model.UserSecret{
		{UserID: "B", Secret: []byte{1}}, {UserID: "Z", Secret: []byte{2}},
		{UserID: "a", Secret: []byte{3}}, {UserID: "b-2", Secret: []byte{4}},
	})

	none, err := e.s.TwoFactorSecrets(e.ctx, "", 0)
	wantErr(e.t, "TwoFactorSecrets limit 0", err, nil)
	if len(none) != 0 {
		e.t.Errorf("limit 0 gave %v", none)
	}
}

// testReplaceTwoFactorSecret checks the compare-and-swap of a secret.
func testReplaceTwoFactorSecret(e *env) {
	u := e.user()
	tf := e.enable(u.ID, e.session(u.ID, t0), 100)
	plain := e.user()

	wantErr(e.t, "ReplaceTwoFactorSecret stale",
		e.s.ReplaceTwoFactorSecret(e.ctx, u.ID, []byte("not it"), []byte("new")),
		model.ErrNotFound)
	wantErr(e.t, "ReplaceTwoFactorSecret without 2FA",
		e.s.ReplaceTwoFactorSecret(e.ctx, plain.ID, tf.secret, []byte("new")),
		model.ErrNotFound)
	wantErr(e.t, "ReplaceTwoFactorSecret unknown user",
		e.s.ReplaceTwoFactorSecret(e.ctx, "missing", tf.secret, []byte("new")),
		model.ErrNotFound)
	equal(e.t, "plain user", e.mustUser(plain.ID), plain)

	wantErr(e.t, "ReplaceTwoFactorSecret",
		e.s.ReplaceTwoFactorSecret(e.ctx, u.ID, tf.secret, []byte("resealed")), nil)
	got := e.mustUser(u.ID)
	if string(got.TwoFactorSecret) != "resealed" || got.TOTPLastStep != 100 {
		e.t.Errorf("after replace: %+v", got)
	}
	wantErr(e.t, "ReplaceTwoFactorSecret again",
		e.s.ReplaceTwoFactorSecret(e.ctx, u.ID, tf.secret, []byte("x")), model.ErrNotFound)
}

// testLoginThrottle checks that failed logins count per user and device.
func testLoginThrottle(e *env) {
	u := e.user()
	v := e.user()
	get := func(userID, device string) model.LoginThrottle {
		e.t.Helper()
		lt, err := e.s.LoginThrottle(e.ctx, userID, device)
		wantErr(e.t, "LoginThrottle", err, nil)
		return lt
	}
	record := func(userID, device string, at time.Time, want int) {
		e.t.Helper()
		n, err := e.s.ClaimLoginAttempt(e.ctx, userID, device, want-1, at)
		wantErr(e.t, "ClaimLoginAttempt", err, nil)
		if n != want {
			e.t.Errorf("ClaimLoginAttempt(%s, %q) = %d, want %d", userID, device, n, want)
		}
		_, err = e.s.ClaimLoginAttempt(e.ctx, userID, device, want-1, at)
		wantErr(e.t, "ClaimLoginAttempt with a stale count", err, model.ErrStale)
	}

	equal(e.t, "no failures", get(u.ID, ""), model.LoginThrottle{})
	record(u.ID, "", t0, 1)
	record(u.ID, "", t0.Add(time.Second), 2)
	record(u.ID, "device-1", t0.Add(2*time.Second), 1)
	record(v.ID, "", t0, 1)

	equal(e.t, "strangers", get(u.ID, ""), model.LoginThrottle{UserID: u.ID,
		Failures: 2, LastFailureAt: stored(t0.Add(time.Second))})
	equal(e.t, "device", get(u.ID, "device-1"), model.LoginThrottle{UserID: u.ID,
		DeviceID: "device-1", Failures: 1, LastFailureAt: stored(t0.Add(2 * time.Second))})

	wantErr(e.t, "ResetLoginFailures", e.s.ResetLoginFailures(e.ctx, u.ID, "device-1"), nil)
	equal(e.t, "device after reset", get(u.ID, "device-1"), model.LoginThrottle{})
	if lt := get(u.ID, ""); lt.Failures != 2 {
		e.t.Errorf("reset of a device touched strangers' count: %+v", lt)
	}
	if lt := get(v.ID, ""); lt.Failures != 1 {
		e.t.Errorf("other user's count: %+v", lt)
	}
	record(u.ID, "device-1", t0, 1)

	_, err := e.s.ClaimLoginAttempt(e.ctx, "missing", "", 0, t0)
	wantErr(e.t, "ClaimLoginAttempt unknown user", err, model.ErrNotFound)

	// Of many attempts that saw the same count, one is counted.
	w := e.user()
	errs := race(racers, func(int) error {
		_, err := e.s.ClaimLoginAttempt(e.ctx, w.ID, "", 0, t0)
		return err
	})
	oneWinner(e.t, errs, model.ErrStale)
}

// calls exercises a read and a write of s.
func calls(ctx context.Context, s db.Store, userID string) map[string]error {
	_, readErr := s.UserByID(ctx, userID)
	_, writeErr := s.ClaimSecondFactorAttempt(ctx, userID, 0, t0)
	return map[string]error{
		"Ping":                     s.Ping(ctx),
		"UserByID":                 readErr,
		"ClaimSecondFactorAttempt": writeErr,
		"EnableTOTP":               s.EnableTOTP(ctx, db.Enable{UserID: userID}),
	}
}

// testContextEnded checks that calls with a canceled context report
// model.ErrUnavailable and write nothing.
func testContextEnded(e *env) {
	u := e.user()
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	for name, err := range calls(ctx, e.s, u.ID) {
		wantErr(e.t, name+" with a canceled context", err, model.ErrUnavailable)
	}
	if got := e.mustUser(u.ID); got.OTPFailures != 0 {
		e.t.Errorf("a canceled call wrote: %+v", got)
	}
}

// testClosed checks that calls on a closed store report
// model.ErrUnavailable.
func testClosed(e *env) {
	u := e.user()
	e.s.Close()
	for name, err := range calls(e.ctx, e.s, u.ID) {
		wantErr(e.t, name+" on a closed store", err, model.ErrUnavailable)
	}
}

// race starts n goroutines that each wait for the same signal and then call
// fn with their index, and returns the errors.
func race(n int, fn func(i int) error) []error {
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner fails the test unless exactly one of errs is nil and every
// other one is loser.
func oneWinner(t *testing.T, errs []error, loser error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, loser):
			t.Errorf("loser's error %v, want %v", err, loser)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d racing calls succeeded, want exactly 1", wins, len(errs))
	}
}

// racers is how many calls the race tests release at once.
const racers = 20

// testRaceStep has many sessions of one user offer the same TOTP step at
// once: exactly one may pass.
func testRaceStep(e *env) {
	u := e.user()
	e.enable(u.ID, e.session(u.ID, t0), 100)
	var sessions []*model.Session
	for range racers {
		sessions = append(sessions, e.partial(u.ID))
	}
	errs := race(racers, func(i int) error {
		return e.s.PassSecondFactor(e.ctx, db.SecondFactor{UserID: u.ID, Step: 101,
			OldHash: sessions[i].TokenHash, NewHash: hash(e.t),
			ExpiresAt: t0.Add(time.Hour), Now: t0})
	})
	oneWinner(e.t, errs, model.ErrStepUsed)

	verified := 0
	all, err := e.s.ListSessions(e.ctx, u.ID, t0)
	wantErr(e.t, "ListSessions", err, nil)
	for _, s := range all {
		if s.TwoFactorVerified {
			verified++
		}
	}
	// The session that enabled 2FA and the winner.
	if verified != 2 {
		e.t.Errorf("%d verified sessions, want 2", verified)
	}
}

// testRaceRecoveryCode has many sessions offer the same recovery code at
// once: exactly one may pass.
func testRaceRecoveryCode(e *env) {
	u := e.user()
	tf := e.enable(u.ID, e.session(u.ID, t0), 100)
	var sessions []*model.Session
	for range racers {
		sessions = append(sessions, e.partial(u.ID))
	}
	errs := race(racers, func(i int) error {
		return e.s.PassSecondFactor(e.ctx, db.SecondFactor{UserID: u.ID,
			RecoveryCode: tf.codes[7], OldHash: sessions[i].TokenHash, NewHash: hash(e.t),
			ExpiresAt: t0.Add(time.Hour), Now: t0})
	})
	oneWinner(e.t, errs, model.ErrBadRecoveryCode)
	n, err := e.s.RecoveryCodesRemaining(e.ctx, u.ID)
	wantErr(e.t, "RecoveryCodesRemaining", err, nil)
	if n != len(tf.codes)-1 {
		e.t.Errorf("%d codes remain, want %d", n, len(tf.codes)-1)
	}
}

// testRaceEnable confirms one enrolment twice at once: exactly one wins.
func testRaceEnable(e *env) {
	u := e.user()
	s := e.session(u.ID, t0)
	in := e.enableInput(u.ID, s, 100)
	errs := race(2, func(i int) error {
		mine := in
		mine.NewHash = hash(e.t)
		mine.Step = int64(100 + i)
		return e.s.EnableTOTP(e.ctx, mine)
	})
	oneWinner(e.t, errs, model.ErrNoEnrollment)
	if !e.mustUser(u.ID).TwoFactorEnabled() {
		e.t.Error("no second factor after the race")
	}
}
