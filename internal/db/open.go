package db

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultQueryTimeout bounds every store call when Options.QueryTimeout is
// zero.
const DefaultQueryTimeout = 5 * time.Second

// Options tune a store. The zero value is ready to use.
type Options struct {
	// MaxConns caps the connections the store keeps open: the PostgreSQL
	// pool size, or the number of SQLite reader connections (SQLite always
	// has a single writer). Zero picks a default from the number of CPUs.
	MaxConns int
	// QueryTimeout bounds each store call, including any wait for a
	// connection. A call whose context has an earlier deadline keeps it.
	// Zero means DefaultQueryTimeout.
	QueryTimeout time.Duration
}

// queryTimeout returns the effective per-call deadline of o.
func (o Options) queryTimeout() time.Duration {
	if o.QueryTimeout > 0 {
		return o.QueryTimeout
	}
	return DefaultQueryTimeout
}

// ErrUnsupportedURL means a database URL names neither PostgreSQL nor
// SQLite.
var ErrUnsupportedURL = errors.New("unsupported database URL")

// Open connects to the database that rawURL names and checks that it
// answers:
//
//   - postgres://... or postgresql://... opens a PostgreSQL connection pool;
//     every parameter pgx understands may be given in the URL;
//   - sqlite:PATH opens (and creates, with its directory) the SQLite file at
//     PATH; sqlite://PATH and sqlite:///ABSOLUTE/PATH are accepted too.
//
// Open does not migrate; see Migrator. It returns an error wrapping
// ErrUnsupportedURL for any other scheme, and model.ErrUnavailable when the
// database cannot be reached within opts.QueryTimeout.
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	kind, target, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch kind {
	case kindPostgres:
		return openPostgres(ctx, target, opts)
	default:
		return openSQLite(ctx, target, opts)
	}
}

// backend is the kind of database a URL names.
type backend int

const (
	kindPostgres backend = iota
	kindSQLite
)

// parseURL tells which backend rawURL names and returns what that backend
// connects with: the URL itself for PostgreSQL, the file path for SQLite.
func parseURL(rawURL string) (backend, string, error) {
	scheme, rest, ok := strings.Cut(rawURL, ":")
	if !ok {
		return 0, "", fmt.Errorf("db: %w: no scheme (want postgres://... or sqlite:PATH)",
			ErrUnsupportedURL)
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return kindPostgres, rawURL, nil
	case "sqlite":
		path, err := sqlitePath(rest)
		if err != nil {
			return 0, "", err
		}
		return kindSQLite, path, nil
	}
	// The scheme alone is safe to show; the rest may hold a password.
	return 0, "", fmt.Errorf("db: %w: scheme %q is not supported "+
		"(want postgres://... or sqlite:PATH)", ErrUnsupportedURL, scheme)
}

// sqlitePath turns what follows "sqlite:" into a file path. A leading "//"
// is dropped, so that sqlite://data/x.db and sqlite:///var/x.db mean the
// relative and the absolute path one would expect.
func sqlitePath(rest string) (string, error) {
	path := strings.TrimPrefix(rest, "//")
	switch {
	case path == "":
		return "", errors.New("db: sqlite URL has no file path (want sqlite:PATH)")
	case strings.ContainsAny(path, "?#"):
		// The SQLite driver would read a '?' as the start of its options.
		return "", errors.New("db: sqlite file path must not contain '?' or '#'")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return "", errors.New("db: sqlite URL must name a plain file path")
	}
	return filepath.Clean(path), nil
}

// prepareSQLiteFile makes sure the directory of path exists (created with
// mode 0700) and that the database file exists with mode 0600, before
// SQLite creates it with the process umask. SQLite gives its -wal and -shm
// files the mode of the database file.
func prepareSQLiteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("db: create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("db: create %s: %w", path, err)
	}
	return f.Close()
}

// Redact returns rawURL with any password replaced by "xxxxx", for logs and
// error messages. Passwords in the user-info part and in password or
// sslpassword query parameters are hidden; a string that does not parse as
// a URL is replaced whole, since it might hold a password anywhere.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable database URL)"
	}
	if u.Opaque != "" {
		// sqlite:PATH has no user info or query to hide.
		return rawURL
	}
	q := u.Query()
	changed := false
	for key := range q {
		switch strings.ToLower(key) {
		case "password", "sslpassword":
			q.Set(key, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
