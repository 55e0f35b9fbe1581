package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/session"
)

// TestHandler checks that the floor gives authsvc's answers for the
// credentials the benchmark sends, on a database migrated by authsvc.
func TestHandler(t *testing.T) {
	url := dbtest.PostgresURL(t)
	store := dbtest.Open(t, url)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	u := &model.User{ID: "u1", Email: "Floor@example.com", EmailCanonical: "floor@example.com",
		PasswordHash: "x", CreatedAt: now, UpdatedAt: now}
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	live, liveHash := session.NewToken()
	expired, expiredHash := session.NewToken()
	// One live and one expired session of the same user, stored by
	// authsvc's own store so that the floor reads authsvc's rows.
	for _, s := range []*model.Session{
		{ID: "s1", TokenHash: liveHash, UserID: "u1", CreatedAt: now,
			ExpiresAt: now.Add(time.Hour), LastSeenAt: now},
		{ID: "s2", TokenHash: expiredHash, UserID: "u1", CreatedAt: now.Add(-2 * time.Hour),
			ExpiresAt: now.Add(-time.Hour), LastSeenAt: now},
	} {
		if err := store.CreateSession(ctx, s, 0, s.CreatedAt); err != nil {
			t.Fatal(err)
		}
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := handler(pool)

	// Each credential the benchmark sends, and each that must be refused:
	// only the bearer scheme counts, and an expired session is no session.
	unknown, _ := session.NewToken()
	tests := []struct {
		name   string
		header string
		value  string
		want   int
	}{
		{"bearer", "Authorization", "Bearer " + live, http.StatusOK},
		{"bearer, other case", "Authorization", "bearer " + live, http.StatusOK},
		{"cookie", "Cookie", cookieName + "=" + live, http.StatusOK},
		{"unknown", "Authorization", "Bearer " + unknown, http.StatusUnauthorized},
		{"expired", "Authorization", "Bearer " + expired, http.StatusUnauthorized},
		{"other scheme", "Authorization", "Basic " + live, http.StatusUnauthorized},
		{"nothing", "X-Nothing", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set(tt.header, tt.value)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want != http.StatusOK {
				return
			}
			got := w.Header()
			if got.Get("X-Auth-User-Id") != "u1" || got.Get("X-Auth-Session-Id") != "s1" ||
				got.Get("X-Auth-User-Email") != "Floor@example.com" {
				t.Errorf("identity headers: %v", got)
			}
		})
	}
}
