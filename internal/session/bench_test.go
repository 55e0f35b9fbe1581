package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/model"
)

// memStore is an in-memory Store for benchmarks: a map from token hash to
// session, safe for concurrent use, so that a benchmark of Validate
// measures the manager and not a database.
type memStore struct {
	mu       sync.RWMutex
	sessions map[string]*model.Session
	users    map[string]*model.User
}

func (m *memStore) SessionByTokenHash(_ context.Context, h []byte) (*model.Session,
	*model.User, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[string(h)]
	if !ok {
		return nil, nil, model.ErrNotFound
	}
	sc, uc := *s, *m.users[s.UserID]
	return &sc, &uc, nil
}

func (m *memStore) TouchSession(_ context.Context, h []byte, _, seen, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(h)]
	if !ok {
		return model.ErrNotFound
	}
	s.LastSeenAt, s.ExpiresAt = seen, exp
	return nil
}

// newMemStore holds n full sessions of n/10 users, all last seen at now,
// and returns their tokens.
func newMemStore(n int, now time.Time) (*memStore, []string) {
	m := &memStore{sessions: map[string]*model.Session{}, users: map[string]*model.User{}}
	tokens := make([]string, n)
	for i := range n {
		uid := NewID()
		if i%10 != 0 {
			// Ten sessions to a user, like a user signed in on many devices.
			uid = m.sessions[string(HashToken(tokens[i-i%10]))].UserID
		} else {
			m.users[uid] = &model.User{ID: uid, Email: "bench@example.com",
				EmailCanonical: "bench@example.com", CreatedAt: now, UpdatedAt: now}
		}
		tok, hash := NewToken()
		tokens[i] = tok
		m.sessions[string(hash)] = &model.Session{ID: NewID(), TokenHash: hash, UserID: uid,
			CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(30 * 24 * time.Hour),
			LastSeenAt: now, TwoFactorVerified: false}
	}
	return m, tokens
}

// BenchmarkHashToken measures the SHA-256 every validation starts with.
func BenchmarkHashToken(b *testing.B) {
	tok, _ := NewToken()
	b.ReportAllocs()
	for b.Loop() {
		HashToken(tok)
	}
}

// BenchmarkWellFormed measures the shape check that spares the store
// malformed tokens.
func BenchmarkWellFormed(b *testing.B) {
	tok, _ := NewToken()
	b.ReportAllocs()
	for b.Loop() {
		if !WellFormed(tok) {
			b.Fatal("a new token is not well formed")
		}
	}
}

// BenchmarkValidate measures the lookup path of a good token against an
// in-memory store, with no write due: the cost authsvc adds to each
// authorize request's database round trip.
func BenchmarkValidate(b *testing.B) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	store, tokens := newMemStore(10_000, now)
	m := NewManager(store, Lifetimes{TTL: 720 * time.Hour, MaxAge: 2160 * time.Hour},
		func() time.Time { return now })
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v, err := m.Validate(ctx, tokens[i%len(tokens)])
		if err != nil || v.Slid {
			b.Fatalf("Validate: %v, slid %v", err, v != nil && v.Slid)
		}
		i++
	}
}

// BenchmarkValidateParallel is BenchmarkValidate from GOMAXPROCS
// goroutines at once.
func BenchmarkValidateParallel(b *testing.B) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	store, tokens := newMemStore(10_000, now)
	m := NewManager(store, Lifetimes{TTL: 720 * time.Hour, MaxAge: 2160 * time.Hour},
		func() time.Time { return now })
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Validate(ctx, tokens[i%len(tokens)]); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}

// BenchmarkValidateUnknown measures a well-formed token the store does not
// know: the answer to a forged or revoked credential.
func BenchmarkValidateUnknown(b *testing.B) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	store, _ := newMemStore(1000, now)
	m := NewManager(store, Lifetimes{TTL: 720 * time.Hour, MaxAge: 2160 * time.Hour},
		func() time.Time { return now })
	tok, _ := NewToken()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Validate(ctx, tok); !errors.Is(err, ErrInvalid) {
			b.Fatalf("Validate of an unknown token: %v", err)
		}
	}
}
