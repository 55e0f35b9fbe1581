// Package session makes session tokens and decides whether a presented token
// is good: it looks the token's hash up, checks expiry, and slides the
// expiry of full sessions as they are used.
//
// Tokens are 256 bits from crypto/rand in unpadded base64url. Only their
// SHA-256 reaches the store, so a copy of the database yields no working
// token.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/authsvc/authsvc/internal/model"
)

const (
	tokenBytes = 32
	// TokenLength is the length of a token as text.
	TokenLength = 43

	// PartialTTL is how long a session lives before it has passed a second
	// factor that its user requires. Partial sessions do not slide.
	PartialTTL = 10 * time.Minute

	// TouchInterval is how stale LastSeenAt may get before a validation
	// writes it again.
	TouchInterval = time.Minute
)

// ErrInvalid means a token is malformed, unknown, expired or revoked. The
// caller answers every one of these the same way.
var ErrInvalid = errors.New("invalid session token")

// NewToken returns a new random token and its hash.
func NewToken() (token string, hash []byte) {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails; see crypto/rand.Read
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken returns the SHA-256 of token, the form the store keeps.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// WellFormed reports whether s has the shape of a token, so that garbage
// never costs a database round trip.
func WellFormed(s string) bool {
	if len(s) != TokenLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// NewID returns a random public session or user id: 128 bits in unpadded
// base64url.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Store is what a Manager needs from the database.
type Store interface {
	SessionByTokenHash(ctx context.Context, hash []byte) (*model.Session, *model.User, error)
	TouchSession(ctx context.Context, hash []byte, prevSeen, lastSeen,
		expiresAt time.Time) error
}

// Lifetimes are the two limits of a full session: TTL slides with use,
// MaxAge counts from creation and never moves.
type Lifetimes struct {
	TTL    time.Duration
	MaxAge time.Duration
}

// Manager validates tokens against a Store.
type Manager struct {
	store Store
	life  Lifetimes
	now   func() time.Time
}

// NewManager returns a Manager. now is the clock; nil means time.Now.
func NewManager(store Store, life Lifetimes, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{store: store, life: life, now: now}
}

// Now returns the manager's current time, in UTC and truncated to the
// microsecond the store keeps.
func (m *Manager) Now() time.Time {
	return m.now().UTC().Truncate(time.Microsecond)
}

// FullExpiry is when a full session created at createdAt expires if it is
// used at now: one TTL from now, but never past MaxAge from creation.
func (m *Manager) FullExpiry(createdAt, now time.Time) time.Time {
	exp := now.Add(m.life.TTL)
	if limit := createdAt.Add(m.life.MaxAge); limit.Before(exp) {
		exp = limit
	}
	return exp
}

// PartialExpiry is when a session that still owes a second factor expires.
func (m *Manager) PartialExpiry(createdAt, now time.Time) time.Time {
	exp := now.Add(PartialTTL)
	if limit := createdAt.Add(m.life.MaxAge); limit.Before(exp) {
		exp = limit
	}
	return exp
}

// Partial reports whether s still owes the second factor its user has.
func Partial(s *model.Session, u *model.User) bool {
	return u.TwoFactorEnabled() && !s.TwoFactorVerified
}

// Validation is the outcome of a good token.
type Validation struct {
	Session *model.Session
	User    *model.User
	// Slid reports whether the expiry moved, so a cookie should be sent
	// again with the new lifetime.
	Slid bool
}

// Validate looks token up and returns its session and user. It answers
// ErrInvalid for a token that is malformed, unknown or expired, and any
// store error otherwise. A full session with less than half its TTL left is
// slid forward; LastSeenAt is written at most once per TouchInterval.
func (m *Manager) Validate(ctx context.Context, token string) (*Validation, error) {
	if !WellFormed(token) {
		return nil, ErrInvalid
	}
	hash := HashToken(token)
	s, u, err := m.store.SessionByTokenHash(ctx, hash)
	if errors.Is(err, model.ErrNotFound) {
		return nil, ErrInvalid
	}
	if err != nil {
		return nil, fmt.Errorf("look up session: %w", err)
	}

	now := m.Now()
	if !now.Before(s.ExpiresAt) {
		return nil, ErrInvalid
	}

	v := &Validation{Session: s, User: u}
	expires := s.ExpiresAt
	if !Partial(s, u) && s.ExpiresAt.Sub(now) < m.life.TTL/2 {
		if next := m.FullExpiry(s.CreatedAt, now); next.After(expires) {
			expires = next
			v.Slid = true
		}
	}
	if v.Slid || now.Sub(s.LastSeenAt) >= TouchInterval {
		err := m.store.TouchSession(ctx, hash, s.LastSeenAt, now, expires)
		if errors.Is(err, model.ErrNotFound) {
			return nil, ErrInvalid // revoked or rotated meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("touch session: %w", err)
		}
		s.LastSeenAt = now
		s.ExpiresAt = expires
	}
	return v, nil
}
