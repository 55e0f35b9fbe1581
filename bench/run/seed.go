package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/secretbox"
	"github.com/authsvc/authsvc/internal/session"
)

// Every seeded session's token is a letter naming its set followed by its
// number in 42 digits: 43 characters, the shape session.WellFormed wants.
// The driver and SQL's generate_series make the same tokens, so a million
// rows need no round trips, and the database keeps only SHA-256 of them,
// as authsvc does (session.HashToken).
const (
	setAuthorize = 'a' // full sessions of users without 2FA, for authorize
	setVerify    = 'v' // partial sessions of users with TOTP, for verify
	setSetup     = 'p' // full sessions with a recent password, for setup
)

// token returns the token of session i of a set.
func token(set byte, i int) string {
	return fmt.Sprintf("%c%042d", set, i)
}

// sessionTTL is authsvc's default AUTHSVC_SESSION_TTL. Seeded full
// sessions expire one TTL after they were created an hour ago, so none of
// them has less than half its TTL left and none slides during a run.
const sessionTTL = 720 * time.Hour

// benchDomain is the domain of every seeded and signed-up email.
const benchDomain = "bench.example"

// pgBench is the throwaway PostgreSQL database of one run.
type pgBench struct {
	server string // URL of the maintenance database
	name   string
	url    string // URL of the throwaway database
	conn   *pgx.Conn
}

// createDatabase creates an empty database with a unique name on the
// server serverURL names.
func createDatabase(ctx context.Context, serverURL string) (*pgBench, error) {
	var b [4]byte
	rand.Read(b[:])
	name := "authsvc_bench_" + time.Now().UTC().Format("20060102_150405") + "_" +
		hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db.Redact(serverURL), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("parse server URL: %w", err)
	}
	u.Path = "/" + name
	return &pgBench{server: serverURL, name: name, url: u.String()}, nil
}

// connect opens the driver's own connection, once authsvc has migrated.
func (p *pgBench) connect(ctx context.Context) error {
	c, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", p.name, err)
	}
	p.conn = c
	return nil
}

// drop closes the driver's connection and drops the database, with any
// connection still open to it.
func (p *pgBench) drop(ctx context.Context) error {
	if p.conn != nil {
		p.conn.Close(ctx)
	}
	admin, err := pgx.Connect(ctx, p.server)
	if err != nil {
		return fmt.Errorf("connect to drop %s: %w", p.name, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+p.name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", p.name, err)
	}
	return nil
}

// exec runs statements on the driver's connection.
func (p *pgBench) exec(ctx context.Context, sql string, args ...any) error {
	if _, err := p.conn.Exec(ctx, sql, args...); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(sql), "\n")
		return fmt.Errorf("%s: %w", first, err)
	}
	return nil
}

// seedUsers inserts users prefix1..prefixN (ids "u"+prefix+i, emails
// prefix+i@bench.example) without a second factor, all with passwordHash.
func (p *pgBench) seedUsers(ctx context.Context, prefix string, n int,
	passwordHash string) error {
	return p.exec(ctx, `
		INSERT INTO users (id, email, email_canonical, password_hash, created_at, updated_at)
		SELECT 'u' || $1 || i, $1 || i || '@`+benchDomain+`', $1 || i || '@`+benchDomain+`',
			$3, now() - interval '1 day', now() - interval '1 day'
		FROM generate_series(1, $2) AS i`, prefix, n, passwordHash)
}

// seedSessions inserts the sessions from..to of a set, spread over users
// 1..users of the same prefix, in parts statements on as many connections
// at once. Their last-seen time is lastSeenAgo before the statement; the
// password was proven passwordAgo before it.
func (p *pgBench) seedSessions(ctx context.Context, set byte, from, to, users, parts int,
	lastSeenAgo, passwordAgo time.Duration) error {
	prefix := string(set)
	const sql = `
		INSERT INTO sessions (token_hash, id, user_id, created_at, expires_at,
			last_seen_at, password_verified_at, two_factor_verified, client_ip, user_agent)
		SELECT sha256(convert_to($1 || lpad(i::text, 42, '0'), 'UTF8')),
			's' || $1 || i, 'u' || $1 || ((i - 1) % $4 + 1),
			clock_timestamp() - interval '1 hour',
			clock_timestamp() - interval '1 hour' + $5::interval,
			clock_timestamp() - $6::interval, clock_timestamp() - $7::interval,
			false, '127.0.0.1', 'authsvc-bench'
		FROM generate_series($2::int, $3::int) AS i`
	if parts <= 1 || to-from < parts {
		return p.exec(ctx, sql, prefix, from, to, users, sessionTTL, lastSeenAgo, passwordAgo)
	}
	// Each part inserts its own range on its own connection; the parts
	// share nothing but the table.
	errs := make(chan error, parts)
	step := (to - from + parts) / parts
	for lo := from; lo <= to; lo += step {
		hi := min(lo+step-1, to)
		go func() {
			c, err := pgx.Connect(ctx, p.url)
			if err != nil {
				errs <- fmt.Errorf("connect to seed: %w", err)
				return
			}
			defer c.Close(ctx)
			_, err = c.Exec(ctx, sql, prefix, lo, hi, users, sessionTTL, lastSeenAgo,
				passwordAgo)
			if err != nil {
				err = fmt.Errorf("seed sessions %d to %d: %w", lo, hi, err)
			}
			errs <- err
		}()
	}
	var all []error
	for lo := from; lo <= to; lo += step {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// seedVerify inserts n users with a TOTP secret, sealed under keys as
// authsvc seals it (the user id is the associated data), each with one
// partial session of set setVerify. It returns the plain secrets, [i-1]
// for user i.
func (p *pgBench) seedVerify(ctx context.Context, keys *secretbox.Keyring, n int,
	passwordHash string) ([][]byte, error) {
	// Rows are built in memory and copied in: sealing needs Go, and COPY
	// is the fast way in for what SQL cannot make itself.
	secrets := make([][]byte, n)
	users := make([][]any, n)
	sessions := make([][]any, n)
	now := time.Now().UTC()
	for i := range n {
		id := fmt.Sprintf("u%c%d", setVerify, i+1)
		secret := make([]byte, 20)
		rand.Read(secret)
		sealed, err := keys.Seal(secret, []byte(id))
		if err != nil {
			return nil, fmt.Errorf("seal secret: %w", err)
		}
		secrets[i] = secret
		email := fmt.Sprintf("%c%d@%s", setVerify, i+1, benchDomain)
		users[i] = []any{id, email, email, passwordHash, sealed, int64(0),
			now.Add(-24 * time.Hour), now.Add(-24 * time.Hour)}
		sessions[i] = []any{session.HashToken(token(setVerify, i+1)),
			fmt.Sprintf("s%c%d", setVerify, i+1), id, now, now.Add(session.PartialTTL), now,
			now, false, "127.0.0.1", "authsvc-bench"}
	}
	_, err := p.conn.CopyFrom(ctx, pgx.Identifier{"users"},
		[]string{"id", "email", "email_canonical", "password_hash", "two_factor_secret",
			"totp_last_step", "created_at", "updated_at"}, pgx.CopyFromRows(users))
	if err != nil {
		return nil, fmt.Errorf("copy users with TOTP: %w", err)
	}
	_, err = p.conn.CopyFrom(ctx, pgx.Identifier{"sessions"},
		[]string{"token_hash", "id", "user_id", "created_at", "expires_at", "last_seen_at",
			"password_verified_at", "two_factor_verified", "client_ip", "user_agent"},
		pgx.CopyFromRows(sessions))
	if err != nil {
		return nil, fmt.Errorf("copy partial sessions: %w", err)
	}
	return secrets, nil
}

// vacuum makes the planner's statistics and the visibility map current,
// so that the first reads of fresh rows set no hint bits, and writes the
// dirty pages out so no checkpoint is due during the next run.
func (p *pgBench) vacuum(ctx context.Context) error {
	if err := p.exec(ctx, "VACUUM (ANALYZE) users, sessions"); err != nil {
		return err
	}
	return p.exec(ctx, "CHECKPOINT")
}

// tupleStats are the cumulative row counters of a table.
type tupleStats struct {
	inserted, updated, hotUpdated, deleted int64
}

// sub returns the change from before to s.
func (s tupleStats) sub(before tupleStats) tupleStats {
	return tupleStats{
		inserted:   s.inserted - before.inserted,
		updated:    s.updated - before.updated,
		hotUpdated: s.hotUpdated - before.hotUpdated,
		deleted:    s.deleted - before.deleted,
	}
}

// sessionStats reads the counters of the sessions table once every
// backend has reported its writes. Backends report at most once a second
// and when they go idle, so the counters are read until two readings a
// second apart agree.
func (p *pgBench) sessionStats(ctx context.Context) (tupleStats, error) {
	var last tupleStats
	for attempt := range 8 {
		time.Sleep(time.Second)
		var s tupleStats
		if err := p.exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			return s, err
		}
		err := p.conn.QueryRow(ctx, `
			SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
			FROM pg_stat_user_tables WHERE relname = 'sessions'`).
			Scan(&s.inserted, &s.updated, &s.hotUpdated, &s.deleted)
		if err != nil {
			return s, fmt.Errorf("read sessions statistics: %w", err)
		}
		if attempt > 0 && s == last {
			return s, nil
		}
		last = s
	}
	return last, nil
}

// backends lists the PostgreSQL server processes connected to any of the
// named databases.
func (p *pgBench) backends(ctx context.Context, names []string) ([]int, error) {
	rows, err := p.conn.Query(ctx,
		`SELECT pid FROM pg_stat_activity WHERE datname = ANY($1)`, names)
	if err != nil {
		return nil, fmt.Errorf("list backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("list backends: %w", err)
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out, nil
}

// liveSessions counts the sessions that have not expired.
func (p *pgBench) liveSessions(ctx context.Context) (int64, error) {
	var n int64
	err := p.conn.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE expires_at > now()`).
		Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count live sessions: %w", err)
	}
	return n, nil
}

// seedSQLite migrates the embedded database at path with authsvc's own
// migrations and fills it, through authsvc's own store, with users users
// holding n sessions between them, all last seen now.
func seedSQLite(ctx context.Context, path string, n, users int,
	passwordHash string) error {
	dbURL := "sqlite:" + path
	m, err := db.NewMigrator(dbURL, time.Minute)
	if err != nil {
		return fmt.Errorf("migrator for %s: %w", path, err)
	}
	if err := m.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	store, err := db.Open(ctx, dbURL, db.Options{})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer store.Close()

	now := time.Now().UTC().Truncate(time.Microsecond)
	created := now.Add(-time.Hour)
	for u := 1; u <= users; u++ {
		email := fmt.Sprintf("%c%d@%s", setAuthorize, u, benchDomain)
		err := store.CreateUser(ctx, &model.User{
			ID: fmt.Sprintf("u%c%d", setAuthorize, u), Email: email, EmailCanonical: email,
			PasswordHash: passwordHash, CreatedAt: now, UpdatedAt: now,
		})
		if err != nil {
			return fmt.Errorf("create user %d: %w", u, err)
		}
	}
	for i := 1; i <= n; i++ {
		err := store.CreateSession(ctx, &model.Session{
			ID:        fmt.Sprintf("s%c%d", setAuthorize, i),
			TokenHash: session.HashToken(token(setAuthorize, i)),
			UserID:    fmt.Sprintf("u%c%d", setAuthorize, (i-1)%users+1),
			CreatedAt: created, ExpiresAt: created.Add(sessionTTL),
			LastSeenAt:         now,
			PasswordVerifiedAt: created, ClientIP: "127.0.0.1", UserAgent: "authsvc-bench",
		}, 0, now)
		if err != nil {
			return fmt.Errorf("create session %d: %w", i, err)
		}
	}
	return nil
}
