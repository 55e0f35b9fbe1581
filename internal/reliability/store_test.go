package reliability

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/model"
)

// The store reports every failure caused by the server going away as
// model.ErrUnavailable, which the service answers with 503, and never as an
// unexpected error, which it answers with 500.
//
// Known defect, in pgUnavailable (internal/db/postgres.go): when the server
// stops while pgx is preparing a statement on a connection (the first use
// of each SQL text on each connection), pgx reads the server's FATAL
// 57P01, closes the connection, and returns an error that wraps
// pgconn.ErrConnClosed ("conn closed") instead of the FATAL. pgUnavailable
// knows neither that error nor pgconn.SafeToRetry, so the caller gets a
// plain error: in authsvc, POST /v1/login, /v1/signup and
// /v1/2fa/totp/verify answered 500 internal_error, logged as "request
// failed" with "db: create session for ...: conn closed" and "db: pass
// second factor for ...: conn closed". Until pgUnavailable also matches
// errors.Is(err, pgconn.ErrConnClosed), this test fails; the race is
// narrow, so it stops the server up to five times to catch it.
func TestStoreUnavailableWhenServerStops(t *testing.T) {
	pg := newCluster(t)
	dbURL := pg.createDatabase(t, "authsvc")
	ctx := context.Background()
	m, err := db.NewMigrator(dbURL, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(ctx, dbURL, db.Options{MaxConns: 48})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	user := &model.User{ID: "u1", Email: "u1@example.com", EmailCanonical: "u1@example.com",
		PasswordHash: "unused", CreatedAt: now, UpdatedAt: now}
	if err := store.CreateUser(ctx, user); err != nil {
		t.Fatal(err)
	}

	for round := range 5 {
		var (
			mu  sync.Mutex
			bad []error
		)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				for j := 0; ; j++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("%d-%d-%d", round, i, j)
					err := store.CreateSession(ctx, &model.Session{ID: id, TokenHash: []byte(id),
						UserID: user.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
						LastSeenAt: now}, 0, now)
					if err != nil && !errors.Is(err, model.ErrUnavailable) {
						mu.Lock()
						bad = append(bad, err)
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		pg.stopImmediately(t)
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()
		if len(bad) > 0 {
			t.Fatalf("round %d: %d store errors while the server stopped are not "+
				"model.ErrUnavailable, e.g. %q (wraps pgconn.ErrConnClosed: %v)",
				round+1, len(bad), bad[0], errors.Is(bad[0], pgconn.ErrConnClosed))
		}
		pg.start(t)
	}
}
