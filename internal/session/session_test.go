package session

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/model"
)

// fakeStore keeps one session and counts the writes made to it.
type fakeStore struct {
	s       *model.Session
	u       *model.User
	touches int
}

func (f *fakeStore) SessionByTokenHash(_ context.Context, h []byte) (
	*model.Session, *model.User, error) {
	if f.s == nil || !bytes.Equal(h, f.s.TokenHash) {
		return nil, nil, model.ErrNotFound
	}
	s, u := *f.s, *f.u
	return &s, &u, nil
}

func (f *fakeStore) TouchSession(_ context.Context, h []byte, prev, seen,
	exp time.Time) error {
	if f.s == nil || !bytes.Equal(h, f.s.TokenHash) {
		return model.ErrNotFound
	}
	if !f.s.LastSeenAt.Equal(prev) {
		return nil
	}
	f.touches++
	f.s.LastSeenAt, f.s.ExpiresAt = seen, exp
	return nil
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func setup(t *testing.T, twoFactor, verified bool) (*fakeStore, string, *time.Time) {
	t.Helper()
	tok, hash := NewToken()
	u := &model.User{ID: "u1"}
	if twoFactor {
		u.TwoFactorSecret = []byte("sealed")
	}
	st := &fakeStore{
		s: &model.Session{ID: "s1", TokenHash: hash, UserID: "u1", CreatedAt: t0,
			LastSeenAt: t0, ExpiresAt: t0.Add(10 * time.Hour), TwoFactorVerified: verified},
		u: u,
	}
	now := t0
	return st, tok, &now
}

func TestTokens(t *testing.T) {
	a, ha := NewToken()
	b, _ := NewToken()
	if a == b {
		t.Fatal("two tokens are equal")
	}
	if !WellFormed(a) || len(a) != TokenLength {
		t.Fatalf("token %q is not well formed", a)
	}
	if !bytes.Equal(HashToken(a), ha) || len(ha) != 32 {
		t.Fatal("hash does not match the token's SHA-256")
	}
	for _, bad := range []string{"", a[:42], a + "A", a[:42] + "=", a[:42] + "+", a[:42] + "é"} {
		if WellFormed(bad) {
			t.Errorf("WellFormed(%q) = true", bad)
		}
	}
	if NewID() == NewID() || len(NewID()) != 22 {
		t.Error("ids are not random 22-character strings")
	}
}

func TestValidate(t *testing.T) {
	life := Lifetimes{TTL: 10 * time.Hour, MaxAge: 48 * time.Hour}
	ctx := context.Background()

	t.Run("unknown and malformed", func(t *testing.T) {
		st, _, now := setup(t, false, false)
		m := NewManager(st, life, func() time.Time { return *now })
		other, _ := NewToken()
		for _, tok := range []string{other, "short", ""} {
			if _, err := m.Validate(ctx, tok); !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate(%q) = %v, want ErrInvalid", tok, err)
			}
		}
	})

	t.Run("expiry is exclusive", func(t *testing.T) {
		st, tok, now := setup(t, false, false)
		m := NewManager(st, life, func() time.Time { return *now })
		*now = t0.Add(10*time.Hour - time.Microsecond)
		if _, err := m.Validate(ctx, tok); err != nil {
			t.Fatalf("just before expiry: %v", err)
		}
		*now = st.s.ExpiresAt
		if _, err := m.Validate(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Fatalf("at expiry: %v, want ErrInvalid", err)
		}
	})

	t.Run("last seen written once a minute", func(t *testing.T) {
		st, tok, now := setup(t, false, false)
		m := NewManager(st, life, func() time.Time { return *now })
		for i := 0; i < 5; i++ {
			*now = t0.Add(time.Duration(i) * 10 * time.Second)
			if _, err := m.Validate(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if st.touches != 0 {
			t.Fatalf("%d writes within the first minute, want 0", st.touches)
		}
		*now = t0.Add(time.Minute)
		v, err := m.Validate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if st.touches != 1 || !v.Session.LastSeenAt.Equal(*now) || v.Slid {
			t.Fatalf("touches=%d last_seen=%v slid=%v", st.touches, v.Session.LastSeenAt, v.Slid)
		}
	})

	t.Run("slides when less than half is left", func(t *testing.T) {
		st, tok, now := setup(t, false, false)
		m := NewManager(st, life, func() time.Time { return *now })
		*now = t0.Add(5 * time.Hour) // exactly half left: no slide
		if v, err := m.Validate(ctx, tok); err != nil || v.Slid {
			t.Fatalf("half left: slid=%v err=%v", v != nil && v.Slid, err)
		}
		*now = t0.Add(5*time.Hour + time.Second)
		v, err := m.Validate(ctx, tok)
		if err != nil || !v.Slid {
			t.Fatalf("less than half left: %v, %v", v, err)
		}
		if want := now.Add(10 * time.Hour); !v.Session.ExpiresAt.Equal(want) {
			t.Fatalf("expires %v, want %v", v.Session.ExpiresAt, want)
		}
	})

	t.Run("never past max age", func(t *testing.T) {
		st, tok, now := setup(t, false, false)
		m := NewManager(st, life, func() time.Time { return *now })
		st.s.ExpiresAt = t0.Add(45 * time.Hour)
		*now = t0.Add(44 * time.Hour)
		v, err := m.Validate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if want := t0.Add(48 * time.Hour); !v.Session.ExpiresAt.Equal(want) || !v.Slid {
			t.Fatalf("expires %v slid %v, want %v", v.Session.ExpiresAt, v.Slid, want)
		}
		*now = t0.Add(48 * time.Hour)
		if _, err := m.Validate(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Fatalf("past max age: %v", err)
		}
	})

	t.Run("partial sessions do not slide", func(t *testing.T) {
		st, tok, now := setup(t, true, false)
		m := NewManager(st, life, func() time.Time { return *now })
		st.s.ExpiresAt = t0.Add(PartialTTL)
		*now = t0.Add(9 * time.Minute)
		v, err := m.Validate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if v.Slid || !v.Session.ExpiresAt.Equal(t0.Add(PartialTTL)) {
			t.Fatalf("partial session slid to %v", v.Session.ExpiresAt)
		}
		if !Partial(v.Session, v.User) {
			t.Fatal("session with 2FA owed is not partial")
		}
	})
}

func TestExpiries(t *testing.T) {
	m := NewManager(nil, Lifetimes{TTL: time.Hour, MaxAge: 90 * time.Minute}, nil)
	if got := m.FullExpiry(t0, t0); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("FullExpiry at creation = %v", got)
	}
	if got := m.FullExpiry(t0, t0.Add(time.Hour)); !got.Equal(t0.Add(90 * time.Minute)) {
		t.Errorf("FullExpiry capped = %v", got)
	}
	if got := m.PartialExpiry(t0, t0); !got.Equal(t0.Add(PartialTTL)) {
		t.Errorf("PartialExpiry = %v", got)
	}
}
