// Command floor is the yardstick the benchmark holds authsvc's session
// check against: a bare net/http server that answers the same question,
// "is this token a live session, and whose?", with one primary-key SELECT
// through a pgx pool of the same size, and nothing else. No router, no
// logging, no metrics, no sliding expiry, no last-seen writes.
//
// It reads the token from Authorization: Bearer or from the session cookie,
// hashes it with SHA-256 as authsvc does, and answers 200 with the user id
// and session id headers, or 401.
//
// Usage:
//
//	floor -addr 127.0.0.1:8091 -db postgres://... [-max-conns 10]
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// cookieName is authsvc's session cookie when cookies are Secure.
const cookieName = "__Host-authsvc_session"

// lookupSQL is the single query per request: the session by its primary
// key, joined to its user by the user's primary key.
const lookupSQL = `
	SELECT s.id, s.expires_at, u.id, u.email
	FROM sessions s JOIN users u ON u.id = s.user_id
	WHERE s.token_hash = $1`

func main() {
	addr := flag.String("addr", "127.0.0.1:8091", "listen address")
	dbURL := flag.String("db", "", "PostgreSQL URL of a database with authsvc's schema")
	maxConns := flag.Int("max-conns", 10, "pool size (authsvc's default is 10)")
	flag.Parse()
	if err := run(*addr, *dbURL, *maxConns); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM.
func run(addr, dbURL string, maxConns int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = int32(maxConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: handler(pool), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("floor listening on %s", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// handler answers every request with the session check.
func handler(pool *pgxpool.Pool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := token(r)
		if tok == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		hash := sha256.Sum256([]byte(tok))
		var sessionID, userID, email string
		var expires time.Time
		err := pool.QueryRow(r.Context(), lookupSQL, hash[:]).
			Scan(&sessionID, &expires, &userID, &email)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			w.WriteHeader(http.StatusUnauthorized)
			return
		case err != nil:
			http.Error(w, "database error", http.StatusServiceUnavailable)
			return
		case !time.Now().Before(expires):
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h := w.Header()
		h.Set("X-Auth-User-Id", userID)
		h.Set("X-Auth-User-Email", email)
		h.Set("X-Auth-Session-Id", sessionID)
		w.WriteHeader(http.StatusOK)
	})
}

// token returns the bearer token of r, else its session cookie, else "".
func token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return c.Value
	}
	return ""
}
