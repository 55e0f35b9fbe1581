package db_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/model"
)

// TestRedact checks that no password survives redaction.
func TestRedact(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"postgres://authsvc:s3cret@db:5432/authsvc?sslmode=disable",
			"postgres://authsvc:xxxxx@db:5432/authsvc?sslmode=disable"},
		{"postgresql://db/authsvc?password=s3cret&sslmode=require",
			"postgresql://db/authsvc?password=xxxxx&sslmode=require"},
		{"postgres://authsvc@db/authsvc", "postgres://authsvc@db/authsvc"},
		{"sqlite:data/authsvc.db", "sqlite:data/authsvc.db"},
		{"postgres://u:s3cret%zz@db/x", "(unparsable database URL)"},
	}
	for _, tc := range tests {
		got := db.Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) shows the password: %q", tc.in, got)
		}
	}
}

// TestOpenUnsupported checks that URLs naming neither store are refused,
// without showing a password.
func TestOpenUnsupported(t *testing.T) {
	tests := []struct {
		url      string
		unsupURL bool // the error wraps db.ErrUnsupportedURL
	}{
		{"mysql://root:s3cret@localhost/authsvc", true},
		{"data/authsvc.db", true},
		{"", true},
		{"sqlite:", false},
		{"sqlite:data/what?.db", false},
		{"sqlite::memory:", false},
		{"sqlite:file:x.db", false},
	}
	for _, tc := range tests {
		s, err := db.Open(t.Context(), tc.url, db.Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if errors.Is(err, db.ErrUnsupportedURL) != tc.unsupURL {
			t.Errorf("Open(%q): %v; unsupported scheme: %v, want %v", tc.url, err,
				errors.Is(err, db.ErrUnsupportedURL), tc.unsupURL)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) error shows the password: %v", tc.url, err)
		}
		if _, err := db.NewMigrator(tc.url, time.Second); err == nil {
			t.Errorf("NewMigrator(%q) succeeded", tc.url)
		}
	}
}

// TestOpenUnreachable checks that a PostgreSQL server that refuses
// connections, or accepts and never answers, is model.ErrUnavailable for
// Open and for migrations alike.
func TestOpenUnreachable(t *testing.T) {
	// Nothing listens on port 1; a second listener accepts connections and
	// never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Go(func() {
		var conns []net.Conn
		for {
			c, err := silent.Accept()
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
	})
	t.Cleanup(func() {
		silent.Close()
		held.Wait()
	})

	for _, addr := range []string{"127.0.0.1:1", silent.Addr().String()} {
		rawURL := "postgres://authsvc:s3cret@" + addr + "/authsvc?sslmode=disable"
		s, err := db.Open(t.Context(), rawURL, db.Options{QueryTimeout: 300 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) succeeded", addr)
		}
		wantErr(t, "Open "+addr, err, model.ErrUnavailable)
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the password: %v", err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		m, err := db.NewMigrator(rawURL, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, "Migrate up "+addr, m.Up(ctx), model.ErrUnavailable)
		cancel()
	}
}

// TestOpenRefused checks that a server that answers with an error (here:
// no such database) is a plain error, not model.ErrUnavailable, which would
// invite waiting for something that will not change.
func TestOpenRefused(t *testing.T) {
	u, err := url.Parse(dbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path += "_missing"
	s, err := db.Open(t.Context(), u.String(), db.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a database that does not exist succeeded")
	}
	if errors.Is(err, model.ErrUnavailable) {
		t.Errorf("Open of a database that does not exist: %v, want no ErrUnavailable", err)
	}
}

// TestQueryTimeout checks that a call whose context has no deadline still
// ends after the store's query timeout when the database keeps it waiting.
func TestQueryTimeout(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		rawURL := dbtest.PostgresURL(t)
		dbtest.Open(t, rawURL)
		s, err := db.Open(t.Context(), rawURL,
			db.Options{MaxConns: 2, QueryTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		u := newEnv(t, s).user()

		// Another client holds the user's row locked.
		conn, err := pgx.Connect(t.Context(), rawURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		tx, err := conn.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(t.Context(),
			`SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, u.ID); err != nil {
			t.Fatal(err)
		}

		err = s.UpdatePasswordHash(context.Background(), u.ID, "x", t0)
		wantErr(t, "UpdatePasswordHash on a locked row", err, model.ErrUnavailable)
	})

	t.Run("sqlite", func(t *testing.T) {
		rawURL := dbtest.SQLitePath(t)
		dbtest.Open(t, rawURL)
		s, err := db.Open(t.Context(), rawURL, db.Options{QueryTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		u := newEnv(t, s).user()

		// Another process holds the write lock.
		other, err := sql.Open("sqlite", strings.TrimPrefix(rawURL, "sqlite:")+
			"?_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		tx, err := other.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()

		err = s.UpdatePasswordHash(context.Background(), u.ID, "x", t0)
		wantErr(t, "UpdatePasswordHash while locked", err, model.ErrUnavailable)
	})
}

// TestConcurrentStores has two stores on one database, as two processes or
// replicas would, write at once: every write must succeed and count.
func TestConcurrentStores(t *testing.T) {
	for name, newURL := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rawURL := newURL(t)
			first := dbtest.Open(t, rawURL)
			second, err := db.Open(t.Context(), rawURL, db.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(second.Close)
			u := newEnv(t, first).user()

			const writers = 40
			errs := race(writers, func(i int) error {
				s := first
				if i%2 == 1 {
					s = second
				}
				// Claim until counted: no claim may be lost between stores.
				for {
					lt, err := s.LoginThrottle(t.Context(), u.ID, "")
					if err != nil {
						return err
					}
					_, err = s.ClaimLoginAttempt(t.Context(), u.ID, "", lt.Failures, t0)
					if !errors.Is(err, model.ErrStale) {
						return err
					}
				}
			})
			for i, err := range errs {
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
				}
			}
			lt, err := second.LoginThrottle(t.Context(), u.ID, "")
			wantErr(t, "LoginThrottle", err, nil)
			if lt.Failures != writers {
				t.Errorf("%d login failures counted, want %d", lt.Failures, writers)
			}
		})
	}
}

// TestSQLiteFiles checks both spellings of an SQLite URL, and that the
// directory and the file Open creates are private to the service's user.
func TestSQLiteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	path := filepath.Join(dir, "authsvc.db")
	for _, rawURL := range []string{"sqlite:" + path, "sqlite://" + path} {
		s := dbtest.Open(t, rawURL)
		wantErr(t, "Ping", s.Ping(t.Context()), nil)
	}

	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", p, got, want)
		}
	}
}

// TestStats checks that the pool figures follow a held connection.
func TestStats(t *testing.T) {
	for name, open := range dbtest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			st, ok := db.Stats(s)
			if ok != (name == "postgres") {
				t.Fatalf("Stats ok = %v on %s", ok, name)
			}
			if !ok {
				return
			}
			if err := s.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
			st, _ = db.Stats(s)
			if st.Max < 1 || st.Total < 1 || st.AcquireCount < 1 {
				t.Fatalf("stats after a ping: %+v", st)
			}
		})
	}
}

// TestConnectionsRefused checks that a database that stops accepting
// connections, as during maintenance, makes calls unavailable, not failed.
func TestConnectionsRefused(t *testing.T) {
	rawURL := dbtest.PostgresURL(t)
	s := dbtest.Open(t, rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	adminURL := *u
	adminURL.Path = "/postgres"
	admin, err := pgx.Connect(t.Context(), adminURL.String())
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	defer admin.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER DATABASE "` + name + `" ALLOW_CONNECTIONS false`)
	t.Cleanup(func() {
		admin.Exec(context.Background(), `ALTER DATABASE "`+name+`" ALLOW_CONNECTIONS true`)
	})
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + name + `'`)
	_, err = s.UserByID(t.Context(), "someone")
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("UserByID while connections are refused: %v, want ErrUnavailable", err)
	}
	exec(`ALTER DATABASE "` + name + `" ALLOW_CONNECTIONS true`)
	if _, err := s.UserByID(t.Context(), "someone"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("UserByID after connections are allowed again: %v", err)
	}
}
