// Package dbtest gives tests a fresh, migrated database of either kind:
// a PostgreSQL database of their own on a shared server, or an SQLite file
// in a temporary directory. Everything it creates is removed when the test
// ends.
//
// The PostgreSQL server is the one AUTHSVC_TEST_DATABASE_URL names (by
// default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable); the
// role must be allowed to create databases. When the server cannot be
// reached the test is skipped, loudly, unless AUTHSVC_TEST_REQUIRE_POSTGRES
// is 1, in which case it fails.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsvc/authsvc/internal/db"
)

// DefaultServerURL is the PostgreSQL server used when
// AUTHSVC_TEST_DATABASE_URL is not set.
const DefaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// setupTimeout bounds creating, migrating and dropping a test database.
const setupTimeout = 30 * time.Second

// serverURL returns the URL of the test PostgreSQL server.
func serverURL() string {
	if u := os.Getenv("AUTHSVC_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultServerURL
}

// PostgresURL creates an empty database with a unique name on the test
// server and returns its URL. The database is dropped, even with sessions
// still connected, when the test ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	server := serverURL()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	conn, err := connect(ctx, server)
	if err != nil {
		msg := "PostgreSQL tests need the server at %s: %v " +
			"(set AUTHSVC_TEST_DATABASE_URL to another server)"
		if os.Getenv("AUTHSVC_TEST_REQUIRE_POSTGRES") == "1" {
			t.Fatalf(msg, db.Redact(server), err)
		}
		t.Skipf("SKIPPING: "+msg+"; AUTHSVC_TEST_REQUIRE_POSTGRES=1 makes this a failure",
			db.Redact(server), err)
	}
	defer conn.Close(ctx)

	name := "authsvc_test_" + randomHex(t, 8)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		conn, err := connect(ctx, server)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})

	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("parse %s: %v", db.Redact(server), err)
	}
	u.Path = "/" + name
	return u.String()
}

// connect opens one connection to the server at rawURL.
func connect(ctx context.Context, rawURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// randomHex returns n random bytes in hex.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return hex.EncodeToString(b)
}

// SQLitePath returns the URL of a not yet existing SQLite file in a
// directory that is removed when the test ends.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "authsvc.db")
}

// Open migrates the database at rawURL up, opens a store on it and closes
// the store when the test ends.
func Open(t testing.TB, rawURL string) db.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	m, err := db.NewMigrator(rawURL, setupTimeout)
	if err != nil {
		t.Fatalf("migrator for %s: %v", db.Redact(rawURL), err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("migrate %s up: %v", db.Redact(rawURL), err)
	}
	s, err := db.Open(ctx, rawURL, db.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", db.Redact(rawURL), err)
	}
	t.Cleanup(s.Close)
	return s
}

// Stores returns, by name ("postgres" and "sqlite"), functions that each
// give a test a fresh, migrated store of that kind, so that one test body
// can run as a subtest against both:
//
//	for name, open := range dbtest.Stores(t) {
//		t.Run(name, func(t *testing.T) { s := open(t); ... })
//	}
func Stores(t *testing.T) map[string]func(t *testing.T) db.Store {
	t.Helper()
	return map[string]func(t *testing.T) db.Store{
		"postgres": func(t *testing.T) db.Store { return Open(t, PostgresURL(t)) },
		"sqlite":   func(t *testing.T) db.Store { return Open(t, SQLitePath(t)) },
	}
}
