package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratedb "github.com/golang-migrate/migrate/v4/database"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	sqlitemigrate "github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/authsvc/authsvc/migrations"
)

// DefaultLockTimeout is how long a Migrator waits for the migration lock
// when it is given no timeout.
const DefaultLockTimeout = time.Minute

// ErrMigrationLock means another process held the migration lock for longer
// than the Migrator was willing to wait.
var ErrMigrationLock = errors.New("migration lock could not be acquired in time")

// pgMigrationLockKey is the PostgreSQL advisory lock that Migrators hold
// while they work ("authsvc" in ASCII). Advisory locks are per database, so
// one key serves every database on a server.
const pgMigrationLockKey int64 = 0x61757468737663

// migrateConnectTimeout bounds connecting to PostgreSQL for a migration
// when the URL sets no connect_timeout.
const migrateConnectTimeout = 10 * time.Second

// Migrator applies the embedded migrations (package migrations) to one
// database with golang-migrate.
//
// Every action first takes a lock of its own, held until the action ends:
// a session-level advisory lock on PostgreSQL (so the connection must not go
// through a transaction-pooling proxy), and on SQLite a write transaction on
// a lock file beside the database, PATH.migrate-lock. Several processes
// starting at once therefore migrate one after the other, and those that
// wait find nothing left to do. A process that cannot get the lock within
// the lock timeout gives up with ErrMigrationLock.
type Migrator struct {
	kind        backend
	target      string // PostgreSQL URL or SQLite path
	lockTimeout time.Duration
}

// NewMigrator returns a Migrator for the database rawURL names (see Open).
// A lockTimeout of zero or less means DefaultLockTimeout.
func NewMigrator(rawURL string, lockTimeout time.Duration) (*Migrator, error) {
	kind, target, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	return &Migrator{kind: kind, target: target, lockTimeout: lockTimeout}, nil
}

// Up applies every migration not yet applied. A database that is already
// current is not an error.
func (m *Migrator) Up(ctx context.Context) error {
	return m.run(ctx, "migrate up", func(mg *migrate.Migrate) error {
		err := mg.Up()
		if errors.Is(err, migrate.ErrNoChange) {
			return nil
		}
		return err
	})
}

// Down rolls back the latest steps migrations, or all of them if fewer are
// applied; steps below 1 means one. A database with no migration applied
// is not an error.
func (m *Migrator) Down(ctx context.Context, steps int) error {
	steps = max(steps, 1)
	return m.run(ctx, "migrate down", func(mg *migrate.Migrate) error {
		if _, _, err := mg.Version(); errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		err := mg.Steps(-steps)
		var short migrate.ErrShortLimit
		if errors.Is(err, migrate.ErrNoChange) || errors.As(err, &short) {
			return nil
		}
		return err
	})
}

// Version returns the version of the latest migration applied (0 for
// none) and whether it failed halfway, leaving the database dirty.
func (m *Migrator) Version(ctx context.Context) (version uint, dirty bool, err error) {
	err = m.run(ctx, "migration version", func(mg *migrate.Migrate) error {
		var err error
		version, dirty, err = mg.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		return err
	})
	return version, dirty, err
}

// run takes the migration lock, opens golang-migrate on the database, runs
// fn and releases everything. A context that ends stops the work after the
// migration in progress.
func (m *Migrator) run(ctx context.Context, op string, fn func(*migrate.Migrate) error) error {
	var unlock func()
	var mg *migrate.Migrate
	var err error
	switch m.kind {
	case kindPostgres:
		unlock, err = lockPostgres(ctx, m.target, m.lockTimeout)
		if err == nil {
			mg, err = openPostgresMigrate(m.target)
		}
	default:
		unlock, err = lockSQLite(ctx, m.target, m.lockTimeout)
		if err == nil {
			mg, err = openSQLiteMigrate(m.target)
		}
	}
	if unlock != nil {
		defer unlock()
	}
	if err != nil {
		return m.error(op, err)
	}
	defer mg.Close()
	mg.LockTimeout = m.lockTimeout

	stop := context.AfterFunc(ctx, func() { mg.GracefulStop <- true })
	defer stop()
	if err := fn(mg); err != nil {
		return m.error(op, err)
	}
	if err := ctx.Err(); err != nil {
		return m.error(op, err)
	}
	return nil
}

// error explains err from a migration action op.
func (m *Migrator) error(op string, err error) error {
	var dirty migrate.ErrDirty
	switch {
	case errors.Is(err, ErrMigrationLock):
		return fmt.Errorf("db: %s: %w", op, err)
	case errors.Is(err, migrate.ErrLockTimeout):
		return fmt.Errorf("db: %s: %w (waited %s): %w", op, ErrMigrationLock,
			m.lockTimeout, err)
	case errors.As(err, &dirty):
		return fmt.Errorf("db: %s: the database is dirty at version %d: a migration "+
			"failed partway; repair the schema by hand, then set the version with "+
			"golang-migrate's force command: %w", op, dirty.Version, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("db: %s: the database is at a migration version this build "+
			"does not have (was it migrated by a newer release?): %w", op, err)
	case m.kind == kindPostgres:
		return pgError(op, err)
	}
	return sqliteError(op, err)
}

// lockPostgres takes the migration advisory lock on a connection of its own
// and returns the function that releases it.
func lockPostgres(ctx context.Context, rawURL string, timeout time.Duration) (func(), error) {
	cfg, err := migrateConnConfig(rawURL)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	closeConn := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	}

	// lock_timeout makes the server itself give up waiting, so no
	// abandoned request stays queued for the lock. The context deadline,
	// a little later, is the fallback should the server not answer.
	lctx, cancel := context.WithTimeout(ctx, timeout+2*time.Second)
	defer cancel()
	ms := strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	_, err = conn.Exec(lctx, `SELECT set_config('lock_timeout', $1, false)`, ms)
	if err == nil {
		_, err = conn.Exec(lctx, `SELECT pg_advisory_lock($1)`, pgMigrationLockKey)
	}
	if err != nil {
		closeConn()
		var pe *pgconn.PgError
		if (errors.As(err, &pe) && pe.Code == "55P03") ||
			(errors.Is(lctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil) {
			return nil, fmt.Errorf("%w (waited %s)", ErrMigrationLock, timeout)
		}
		return nil, fmt.Errorf("acquire migration lock: %w", err)
	}

	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, pgMigrationLockKey)
		closeConn()
	}, nil
}

// migrateConnConfig is the configuration of one connection to the
// PostgreSQL database at rawURL. The URL is parsed as the store's pool
// parses it, so that pool settings in it (pool_max_conns and the like) are
// understood rather than sent to the server.
func migrateConnConfig(rawURL string) (*pgx.ConnConfig, error) {
	poolCfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse PostgreSQL URL: %w", err)
	}
	cfg := poolCfg.ConnConfig
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = migrateConnectTimeout
	}
	return cfg, nil
}

// openPostgresMigrate opens golang-migrate on the PostgreSQL database at
// rawURL through pgx.
func openPostgresMigrate(rawURL string) (*migrate.Migrate, error) {
	cfg, err := migrateConnConfig(rawURL)
	if err != nil {
		return nil, err
	}
	sqlDB := stdlib.OpenDB(*cfg)
	driver, err := pgxmigrate.WithInstance(sqlDB, &pgxmigrate.Config{})
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	return newMigrate(migrations.Postgres, "pgx5", driver)
}

// sqliteLockPath is the file whose write lock Migrators of the SQLite
// database at path hold.
func sqliteLockPath(path string) string { return path + ".migrate-lock" }

// lockSQLite takes the migration lock of the SQLite database at path: a
// write transaction on the lock file, waited for up to timeout. It returns
// the function that releases it.
func lockSQLite(ctx context.Context, path string, timeout time.Duration) (func(), error) {
	lockPath := sqliteLockPath(path)
	if err := prepareSQLiteFile(lockPath); err != nil {
		return nil, err
	}
	ms := max(timeout.Milliseconds(), 1)
	lockDB, err := sql.Open("sqlite",
		lockPath+"?_busy_timeout="+strconv.FormatInt(ms, 10)+"&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	lockDB.SetMaxOpenConns(1)

	// database/sql rolls a transaction back when its context ends, and this
	// one must last as long as the migration: the wait is bounded by
	// busy_timeout instead.
	tx, err := lockDB.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		lockDB.Close()
		if sqliteBusy(err) {
			return nil, fmt.Errorf("%w (waited %s)", ErrMigrationLock, timeout)
		}
		return nil, fmt.Errorf("acquire migration lock: %w", err)
	}
	return func() {
		_ = tx.Rollback()
		_ = lockDB.Close()
	}, nil
}

// openSQLiteMigrate opens golang-migrate on the SQLite database at path.
func openSQLiteMigrate(path string) (*migrate.Migrate, error) {
	if err := prepareSQLiteFile(path); err != nil {
		return nil, err
	}
	sqlDB, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(1)
	driver, err := sqlitemigrate.WithInstance(sqlDB, &sqlitemigrate.Config{})
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	return newMigrate(migrations.SQLite, "sqlite", driver)
}

// newMigrate combines a migration set and a database driver.
func newMigrate(set fs.FS, name string, driver migratedb.Driver) (*migrate.Migrate, error) {
	src, err := iofs.New(set, ".")
	if err != nil {
		driver.Close()
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	mg, err := migrate.NewWithInstance("iofs", src, name, driver)
	if err != nil {
		src.Close()
		driver.Close()
		return nil, err
	}
	return mg, nil
}
