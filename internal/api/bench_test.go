package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsvc/authsvc/internal/clientip"
	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/password"
	"github.com/authsvc/authsvc/internal/secretbox"
	"github.com/authsvc/authsvc/internal/session"
	"github.com/authsvc/authsvc/internal/twofactor"
)

// These benchmarks run the real router in-process, so that
// `go test -bench -cpuprofile -memprofile` shows where a request's time
// and allocations go without the network in between. The server logs at
// the default level, as JSON, to a file, as it does in production.

// benchServer is a Server on store, wired as cmd/authsvc wires it but with
// the real clock, and a full session with a recent password.
type benchServer struct {
	srv   *Server
	token string
	email string
}

func newBenchServer(b *testing.B, store db.Store) *benchServer {
	b.Helper()
	keys, err := secretbox.NewKeyring(bytes.Repeat([]byte{9}, secretbox.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(b.TempDir(), "authsvc.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	sessions := session.NewManager(store,
		session.Lifetimes{TTL: 720 * time.Hour, MaxAge: 2160 * time.Hour}, nil)
	srv := New(Deps{
		Store: store, Sessions: sessions,
		Hasher:   password.NewHasher(testParams, 0, 0),
		Keys:     keys,
		ClientIP: clientip.New(nil),
		Logger:   slog.New(slog.NewJSONHandler(logFile, nil)),
		Metrics:  NewMetrics(),
		OpenAPI:  []byte("openapi: 3.0.3\n"),
	}, Options{Issuer: "authsvc", CookieSecure: true, LoginFailuresPerIP: 30,
		SignupsPerIP: 30, ServeMetrics: true})

	ctx := context.Background()
	now := sessions.Now()
	email := "bench.user@example.com"
	u := &model.User{ID: session.NewID(), Email: email, EmailCanonical: email,
		PasswordHash: "unused", CreatedAt: now, UpdatedAt: now}
	if err := store.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	tok, hash := session.NewToken()
	err = store.CreateSession(ctx, &model.Session{
		ID: session.NewID(), TokenHash: hash, UserID: u.ID, CreatedAt: now,
		ExpiresAt: now.Add(720 * time.Hour), LastSeenAt: now, PasswordVerifiedAt: now,
	}, 100, now)
	if err != nil {
		b.Fatal(err)
	}
	return &benchServer{srv: srv, token: tok, email: email}
}

// serve answers one request and fails the benchmark on another status.
func (s *benchServer) serve(b *testing.B, r *http.Request, want int) {
	rec := httptest.NewRecorder()
	s.srv.ServeHTTP(rec, r)
	if rec.Code != want {
		b.Fatalf("%s %s: status %d, want %d: %s", r.Method, r.URL.Path, rec.Code, want,
			rec.Body.Bytes())
	}
}

// benchStores runs f on a fresh store of each kind.
func benchStores(b *testing.B, f func(b *testing.B, store db.Store)) {
	b.Run("sqlite", func(b *testing.B) { f(b, dbtest.Open(b, dbtest.SQLitePath(b))) })
	b.Run("postgres", func(b *testing.B) { f(b, dbtest.Open(b, dbtest.PostgresURL(b))) })
}

// BenchmarkAuthorize measures /v1/authorize with a bearer token, end to
// end through the router and the store, with no write due.
func BenchmarkAuthorize(b *testing.B) {
	benchStores(b, func(b *testing.B, store db.Store) {
		s := newBenchServer(b, store)
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodGet, "/v1/authorize", nil)
			r.Header.Set("Authorization", "Bearer "+s.token)
			s.serve(b, r, http.StatusOK)
		}
	})
}

// BenchmarkAuthorizeQuery measures the floor's work for the same answer:
// SHA-256 of the token and one primary-key join through a pgx pool, with
// nothing around it. The difference from BenchmarkAuthorize/postgres is
// what authsvc adds per request.
func BenchmarkAuthorizeQuery(b *testing.B) {
	url := dbtest.PostgresURL(b)
	s := newBenchServer(b, dbtest.Open(b, url))
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256([]byte(s.token))
		var sid, uid, email string
		var exp time.Time
		err := pool.QueryRow(ctx, `
			SELECT s.id, s.expires_at, u.id, u.email
			FROM sessions s JOIN users u ON u.id = s.user_id
			WHERE s.token_hash = $1`, h[:]).Scan(&sid, &exp, &uid, &email)
		if err != nil || email != s.email {
			b.Fatalf("query: %v", err)
		}
	}
}

// BenchmarkGetSession measures GET /v1/session with a bearer token.
func BenchmarkGetSession(b *testing.B) {
	benchStores(b, func(b *testing.B, store db.Store) {
		s := newBenchServer(b, store)
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodGet, "/v1/session", nil)
			r.Header.Set("Authorization", "Bearer "+s.token)
			s.serve(b, r, http.StatusOK)
		}
	})
}

// BenchmarkSetupPNG measures POST /v1/2fa/totp/setup answered with the QR
// code PNG; twofactor.BenchmarkQRCodePNG is the encoding alone.
func BenchmarkSetupPNG(b *testing.B) {
	benchStores(b, func(b *testing.B, store db.Store) {
		s := newBenchServer(b, store)
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "/v1/2fa/totp/setup", nil)
			r.Header.Set("Authorization", "Bearer "+s.token)
			r.Header.Set("Accept", "image/png")
			s.serve(b, r, http.StatusOK)
		}
	})
}

// BenchmarkSetupSteps measures what setup computes before it stores and
// answers: secret, sealing, key URI and PNG, for the same account.
func BenchmarkSetupSteps(b *testing.B) {
	keys, err := secretbox.NewKeyring(bytes.Repeat([]byte{9}, secretbox.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		secret, err := twofactor.NewSecret()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := keys.Seal(secret, []byte("0123456789abcdefghijkl")); err != nil {
			b.Fatal(err)
		}
		uri := twofactor.KeyURI("authsvc", "bench.user@example.com",
			twofactor.EncodeSecret(secret))
		if _, err := twofactor.QRCodePNG(uri); err != nil {
			b.Fatal(err)
		}
	}
}
