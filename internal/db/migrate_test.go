package db_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/model"
)

// latestVersion is the number of the newest migration.
const latestVersion = 3

// urls gives each test a fresh, empty database of each kind.
var urls = map[string]func(t testing.TB) string{
	"postgres": dbtest.PostgresURL,
	"sqlite":   dbtest.SQLitePath,
}

// column describes a column of a table, or its absence.
type column struct {
	exists, nullable bool
}

// inspect answers questions about the schema of the database at rawURL
// behind the store's back.
type inspect struct {
	t     *testing.T
	query func(q string, args ...any) *sql.Row
	pgRow func(q string, args ...any) pgx.Row
}

func newInspect(t *testing.T, rawURL string) *inspect {
	t.Helper()
	in := &inspect{t: t}
	if path, ok := strings.CutPrefix(rawURL, "sqlite:"); ok {
		conn, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		in.query = func(q string, args ...any) *sql.Row {
			return conn.QueryRowContext(t.Context(), q, args...)
		}
		return in
	}
	conn, err := pgx.Connect(t.Context(), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	in.pgRow = func(q string, args ...any) pgx.Row {
		return conn.QueryRow(t.Context(), q, args...)
	}
	return in
}

// column reports on table.name.
func (in *inspect) column(table, name string) column {
	in.t.Helper()
	var c column
	var notNull int
	var err error
	if in.query != nil {
		err = in.query(`SELECT "notnull" FROM pragma_table_info($1) WHERE name = $2`,
			table, name).Scan(&notNull)
	} else {
		var nullable string
		err = in.pgRow(`
			SELECT is_nullable FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2`,
			table, name).Scan(&nullable)
		if nullable == "NO" {
			notNull = 1
		}
	}
	switch {
	case errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows):
		return c
	case err != nil:
		in.t.Fatalf("inspect %s.%s: %v", table, name, err)
	}
	c.exists, c.nullable = true, notNull == 0
	return c
}

// isNull reports whether the column of the user's row is NULL.
func (in *inspect) isNull(userID, column string) bool {
	in.t.Helper()
	var isNull bool
	q := `SELECT ` + column + ` IS NULL FROM users WHERE id = $1`
	var err error
	if in.query != nil {
		err = in.query(q, userID).Scan(&isNull)
	} else {
		err = in.pgRow(q, userID).Scan(&isNull)
	}
	if err != nil {
		in.t.Fatalf("read users.%s: %v", column, err)
	}
	return isNull
}

// version fails the test unless the database is at want and clean.
func version(t *testing.T, m *db.Migrator, want uint) {
	t.Helper()
	v, dirty, err := m.Version(t.Context())
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v != want || dirty {
		t.Fatalf("version %d dirty %v, want %d clean", v, dirty, want)
	}
}

// TestMigrateUpDown migrates up, all the way down, up again and down step by
// step, checking the version and the schema the story of 0002 is about.
func TestMigrateUpDown(t *testing.T) {
	for name, newURL := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			rawURL := newURL(t)
			m, err := db.NewMigrator(rawURL, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			version(t, m, 0)

			wantErr(t, "Up", m.Up(ctx), nil)
			version(t, m, latestVersion)
			wantErr(t, "Up when current", m.Up(ctx), nil)
			version(t, m, latestVersion)

			in := newInspect(t, rawURL)
			if c := in.column("users", "two_factor_secret"); !c.exists || !c.nullable {
				t.Errorf("users.two_factor_secret after up: %+v, want nullable", c)
			}
			if c := in.column("users", "totp_last_step"); !c.exists || c.nullable {
				t.Errorf("users.totp_last_step after up: %+v, want NOT NULL", c)
			}
			s, err := db.Open(ctx, rawURL, db.Options{})
			if err != nil {
				t.Fatal(err)
			}
			u := &model.User{ID: "u1", Email: "a@b", EmailCanonical: "a@b",
				PasswordHash: "h", CreatedAt: t0, UpdatedAt: t0}
			wantErr(t, "CreateUser", s.CreateUser(ctx, u), nil)
			s.Close()
			for _, col := range []string{"two_factor_secret", "otp_last_failure_at"} {
				if !in.isNull("u1", col) {
					t.Errorf("a new user's %s is not NULL", col)
				}
			}

			wantErr(t, "Down all", m.Down(ctx, latestVersion), nil)
			version(t, m, 0)
			if c := in.column("users", "id"); c.exists {
				t.Error("users table left after migrating all the way down")
			}
			wantErr(t, "Down at version 0", m.Down(ctx, 1), nil)
			version(t, m, 0)

			wantErr(t, "Up again", m.Up(ctx), nil)
			version(t, m, latestVersion)

			wantErr(t, "Down 2", m.Down(ctx, 2), nil)
			version(t, m, 1)
			if c := in.column("users", "two_factor_secret"); c.exists {
				t.Error("users.two_factor_secret left at version 1")
			}
			if c := in.column("users", "email_canonical"); !c.exists {
				t.Error("users.email_canonical gone at version 1")
			}

			wantErr(t, "Down 0 (one step)", m.Down(ctx, 0), nil)
			version(t, m, 0)
			wantErr(t, "Up from nothing", m.Up(ctx), nil)
			wantErr(t, "Down more than applied", m.Down(ctx, 10), nil)
			version(t, m, 0)
		})
	}
}

// TestMigrateConcurrently starts several migrators on one empty database at
// once, as replicas starting together do: every one must succeed.
func TestMigrateConcurrently(t *testing.T) {
	for name, newURL := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rawURL := newURL(t)
			const replicas = 6
			errs := make([]error, replicas)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range replicas {
				wg.Go(func() {
					m, err := db.NewMigrator(rawURL, time.Minute)
					if err == nil {
						<-start
						err = m.Up(t.Context())
					}
					errs[i] = err
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
			}
			m, err := db.NewMigrator(rawURL, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			version(t, m, latestVersion)
		})
	}
}

// holdLock takes the migration lock of the database at rawURL, as another
// process migrating would, and returns the function that releases it.
func holdLock(t *testing.T, rawURL string) func() {
	t.Helper()
	if path, ok := strings.CutPrefix(rawURL, "sqlite:"); ok {
		lockDB, err := sql.Open("sqlite", db.SQLiteLockPath(path)+"?_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		tx, err := lockDB.Begin()
		if err != nil {
			t.Fatalf("take the lock: %v", err)
		}
		return func() {
			tx.Rollback()
			lockDB.Close()
		}
	}
	conn, err := pgx.Connect(t.Context(), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), `SELECT pg_advisory_lock($1)`,
		db.MigrationLockKey); err != nil {
		t.Fatalf("take the lock: %v", err)
	}
	return func() { conn.Close(context.Background()) }
}

// TestMigrateLockTimeout checks that a migrator gives up with
// db.ErrMigrationLock while another holds the lock, and succeeds once it is
// released.
func TestMigrateLockTimeout(t *testing.T) {
	for name, newURL := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rawURL := newURL(t)
			// The first migrator creates the database and the lock file.
			m, err := db.NewMigrator(rawURL, 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			version(t, m, 0)

			release := holdLock(t, rawURL)
			err = m.Up(t.Context())
			wantErr(t, "Up while the lock is held", err, db.ErrMigrationLock)
			if !strings.Contains(err.Error(), "migration lock could not be acquired in time") {
				t.Errorf("error %q does not say what went wrong", err)
			}
			_, _, err = m.Version(t.Context())
			wantErr(t, "Version while the lock is held", err, db.ErrMigrationLock)

			release()
			wantErr(t, "Up after release", m.Up(t.Context()), nil)
			version(t, m, latestVersion)
		})
	}
}

// TestPoolSettingsInURL checks that pgxpool's settings in a PostgreSQL URL
// serve migrations as well as the store, rather than reaching the server
// as unknown parameters.
func TestPoolSettingsInURL(t *testing.T) {
	rawURL := dbtest.PostgresURL(t)
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	rawURL += sep + "pool_max_conns=3"

	m, err := db.NewMigrator(rawURL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Up", m.Up(t.Context()), nil)
	version(t, m, latestVersion)
	s, err := db.Open(t.Context(), rawURL, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantErr(t, "Ping", s.Ping(t.Context()), nil)
}
