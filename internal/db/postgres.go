package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/authsvc/authsvc/internal/model"
)

// pgStore is the PostgreSQL Store. Every condition a method documents is
// part of the WHERE clause of the UPDATE or DELETE that acts on it, and the
// rows affected are checked, so READ COMMITTED is enough: a second writer
// waits for the first one's row lock and then re-checks the condition
// against the committed row.
//
// Transactions that touch several tables take their row locks in one
// order (enrolments, users, recovery codes, sessions), so that two of them
// working on the same user queue instead of deadlocking.
type pgStore struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

// pgTxAttempts is how often a transaction is tried when PostgreSQL aborts
// it as a deadlock victim or a serialization failure.
const pgTxAttempts = 3

// openPostgres connects a pool to the database at rawURL and pings it.
func openPostgres(ctx context.Context, rawURL string, opts Options) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		// pgconn hides the password in its parse errors.
		return nil, fmt.Errorf("db: parse PostgreSQL URL: %w", err)
	}
	// Without MaxConns, pool_max_conns in the URL or pgxpool's default
	// (the larger of 4 and the number of CPUs) holds.
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(opts.MaxConns)
	}
	timeout := opts.queryTimeout()
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > timeout {
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "authsvc"
	}

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, pgError("open PostgreSQL pool", err)
	}
	s := &pgStore{pool: pool, timeout: timeout}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// pgQuerier is what a pool and a transaction have in common.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgTxFunc is the body of a transaction.
type pgTxFunc func(ctx context.Context, tx pgx.Tx) error

// inTx runs fn in a transaction under the store's deadline and commits if
// fn returns nil. A transaction PostgreSQL aborted as a deadlock victim or
// serialization failure is run again. Errors are classified and wrapped
// with op.
func (s *pgStore) inTx(ctx context.Context, op string, fn pgTxFunc) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	for attempt := 1; ; attempt++ {
		err := runPgTx(ctx, s.pool, fn)
		if err == nil {
			return nil
		}
		if attempt < pgTxAttempts && ctx.Err() == nil && pgRetryable(err) {
			continue
		}
		return pgError(op, err)
	}
}

// runPgTx is one attempt of inTx. The error of fn wins over any error of the
// rollback that follows it.
func runPgTx(ctx context.Context, pool *pgxpool.Pool, fn pgTxFunc) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		// A failed rollback closes the connection, which ends the
		// transaction as surely.
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// pgRetryable reports whether err is PostgreSQL aborting a transaction that
// may well succeed when run again.
func pgRetryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "40001" || pe.Code == "40P01"
}

// pgError wraps err with op, adding model.ErrUnavailable when the database
// could not be reached or did not answer in time, and model.ErrNotFound for
// a row that refers to a user or session that does not exist. Errors of
// package model pass through wrapped as they are.
func pgError(op string, err error) error {
	if pgUnavailable(err) {
		return fmt.Errorf("db: %s: %w: %w", op, model.ErrUnavailable, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		return fmt.Errorf("db: %s: %w: %w", op, model.ErrNotFound, err)
	}
	return fmt.Errorf("db: %s: %w", op, err)
}

// pgUnavailable reports whether err means the database could not be
// reached, went away, or did not answer before the deadline. A server that
// answered with an error, even while connecting (a wrong password, an
// unknown database), is not unavailable unless the error says it is busy
// or shutting down: waiting would not help.
func pgUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, pgconn.ErrConnClosed) ||
		pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "53300", // too many connections
			"55000", // the database does not allow connections now
			"57014", // query canceled (statement timeout)
			"57P01", // admin shutdown
			"57P02", // crash shutdown
			"57P03": // cannot connect now
			return true
		}
		return strings.HasPrefix(pe.Code, "08") // connection exception
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// storable reports whether PostgreSQL can hold every one of texts: valid
// UTF-8 without NUL. No row can match a text it cannot hold, so a lookup by
// such a text (an id taken from a URL, say) finds nothing rather than
// failing.
func storable(texts ...string) bool {
	for _, t := range texts {
		if !utf8.ValidString(t) || strings.IndexByte(t, 0) >= 0 {
			return false
		}
	}
	return true
}

// nullTime maps the zero time to NULL and any other time to UTC.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// pgTime maps a NULL timestamp to the zero time and any other to UTC.
func pgTime(ts pgtype.Timestamptz) time.Time {
	if !ts.Valid {
		return time.Time{}
	}
	return ts.Time.UTC()
}

// Ping reports whether the database answers.
func (s *pgStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return pgError("ping", err)
	}
	return nil
}

// Close releases the connections, waiting for those in use.
func (s *pgStore) Close() { s.pool.Close() }

// pgUserColumns are the columns scanned by pgUserRow, from table alias u.
const pgUserColumns = `u.id, u.email, u.email_canonical, u.password_hash,
	u.two_factor_secret, u.totp_last_step, u.otp_failures, u.otp_last_failure_at,
	u.created_at, u.updated_at`

// pgUserRow receives pgUserColumns.
type pgUserRow struct {
	u           model.User
	lastFailure pgtype.Timestamptz
}

func (r *pgUserRow) dest() []any {
	u := &r.u
	return []any{&u.ID, &u.Email, &u.EmailCanonical, &u.PasswordHash,
		&u.TwoFactorSecret, &u.TOTPLastStep, &u.OTPFailures, &r.lastFailure,
		&u.CreatedAt, &u.UpdatedAt}
}

func (r *pgUserRow) user() *model.User {
	u := r.u
	u.OTPLastFailureAt = pgTime(r.lastFailure)
	u.CreatedAt = u.CreatedAt.UTC()
	u.UpdatedAt = u.UpdatedAt.UTC()
	return &u
}

// pgSessionColumns are the columns scanned by pgSessionRow, from alias s.
const pgSessionColumns = `s.id, s.token_hash, s.user_id, s.created_at, s.expires_at,
	s.last_seen_at, s.password_verified_at, s.two_factor_verified, s.client_ip,
	s.user_agent`

// pgSessionRow receives pgSessionColumns.
type pgSessionRow struct {
	s                model.Session
	passwordVerified pgtype.Timestamptz
}

func (r *pgSessionRow) dest() []any {
	s := &r.s
	return []any{&s.ID, &s.TokenHash, &s.UserID, &s.CreatedAt, &s.ExpiresAt,
		&s.LastSeenAt, &r.passwordVerified, &s.TwoFactorVerified, &s.ClientIP,
		&s.UserAgent}
}

func (r *pgSessionRow) session() *model.Session {
	s := r.s
	s.CreatedAt = s.CreatedAt.UTC()
	s.ExpiresAt = s.ExpiresAt.UTC()
	s.LastSeenAt = s.LastSeenAt.UTC()
	s.PasswordVerifiedAt = pgTime(r.passwordVerified)
	return &s
}

// CreateUser inserts u; model.ErrEmailTaken if its canonical email is taken.
func (s *pgStore) CreateUser(ctx context.Context, u *model.User) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	tag, err := s.pool.Exec(ctx, `
		INSERT INTO users (id, email, email_canonical, password_hash,
			two_factor_secret, totp_last_step, otp_failures, otp_last_failure_at,
			created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (email_canonical) DO NOTHING`,
		u.ID, u.Email, u.EmailCanonical, u.PasswordHash,
		u.TwoFactorSecret, u.TOTPLastStep, u.OTPFailures, nullTime(u.OTPLastFailureAt),
		u.CreatedAt.UTC(), u.UpdatedAt.UTC())
	if err != nil {
		return pgError("create user "+u.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: create user %s: %w", u.ID, model.ErrEmailTaken)
	}
	return nil
}

// UserByID returns the user with that id; model.ErrNotFound if none.
func (s *pgStore) UserByID(ctx context.Context, id string) (*model.User, error) {
	return s.user(ctx, "user by id "+id, `u.id = $1`, id)
}

// UserByEmail returns the user with that canonical email; model.ErrNotFound
// if none.
func (s *pgStore) UserByEmail(ctx context.Context, canonical string) (*model.User, error) {
	return s.user(ctx, "user by email", `u.email_canonical = $1`, canonical)
}

// user returns the one user matching where.
func (s *pgStore) user(ctx context.Context, op, where, arg string) (*model.User, error) {
	if !storable(arg) {
		return nil, fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	var r pgUserRow
	err := s.pool.QueryRow(ctx,
		`SELECT `+pgUserColumns+` FROM users u WHERE `+where, arg).Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	if err != nil {
		return nil, pgError(op, err)
	}
	return r.user(), nil
}

// UpdatePasswordHash replaces the user's password hash.
func (s *pgStore) UpdatePasswordHash(ctx context.Context, userID, hash string,
	now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	op := "update password hash of " + userID
	tag, err := s.pool.Exec(ctx,
		`UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`,
		userID, hash, now.UTC())
	if err != nil {
		return pgError(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	return nil
}

// CreateSession inserts sess and trims the user's live sessions to limit. A
// limit below 1 means no limit. The user's row is locked first, so that two
// logins of one user cannot both see room for one more session.
func (s *pgStore) CreateSession(ctx context.Context, sess *model.Session, limit int,
	now time.Time) error {
	op := "create session for " + sess.UserID
	return s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx,
			`SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, sess.UserID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}

		_, err = tx.Exec(ctx, `
			INSERT INTO sessions (token_hash, id, user_id, created_at, expires_at,
				last_seen_at, password_verified_at, two_factor_verified, client_ip,
				user_agent)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			sess.TokenHash, sess.ID, sess.UserID, sess.CreatedAt.UTC(),
			sess.ExpiresAt.UTC(), sess.LastSeenAt.UTC(), nullTime(sess.PasswordVerifiedAt),
			sess.TwoFactorVerified, sess.ClientIP, sess.UserAgent)
		if err != nil {
			return err
		}

		// Expired sessions of the user go now rather than at the next sweep.
		_, err = tx.Exec(ctx,
			`DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2`,
			sess.UserID, now.UTC())
		if err != nil || limit < 1 {
			return err
		}

		// The new session sorts first, so it is never the one trimmed.
		_, err = tx.Exec(ctx, `
			DELETE FROM sessions WHERE token_hash IN (
				SELECT token_hash FROM sessions
				WHERE user_id = $1 AND expires_at > $2
				ORDER BY token_hash = $3 DESC, created_at DESC, id DESC
				OFFSET $4)`,
			sess.UserID, now.UTC(), sess.TokenHash, limit)
		return err
	})
}

// SessionByTokenHash returns the session with that token hash and its user.
func (s *pgStore) SessionByTokenHash(ctx context.Context, hash []byte) (*model.Session,
	*model.User, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	var sr pgSessionRow
	var ur pgUserRow
	err := s.pool.QueryRow(ctx, `
		SELECT `+pgSessionColumns+`, `+pgUserColumns+`
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.token_hash = $1`, hash).Scan(append(sr.dest(), ur.dest()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("db: session by token hash: %w", model.ErrNotFound)
	}
	if err != nil {
		return nil, nil, pgError("session by token hash", err)
	}
	return sr.session(), ur.user(), nil
}

// TouchSession sets the session's last-seen time and expiry.
func (s *pgStore) TouchSession(ctx context.Context, hash []byte, prevSeen, lastSeen,
	expiresAt time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	tag, err := s.pool.Exec(ctx, `
		UPDATE sessions SET last_seen_at = $2, expires_at = $3
		WHERE token_hash = $1 AND last_seen_at = $4`,
		hash, lastSeen.UTC(), expiresAt.UTC(), prevSeen.UTC())
	if err != nil {
		return pgError("touch session", err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	// Touched by someone else first, or gone: only the latter is an error.
	var one int
	err = s.pool.QueryRow(ctx, `SELECT 1 FROM sessions WHERE token_hash = $1`, hash).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("db: touch session: %w", model.ErrNotFound)
	}
	if err != nil {
		return pgError("touch session", err)
	}
	return nil
}

// RotateSession gives the session with r.OldHash a new hash and values.
func (s *pgStore) RotateSession(ctx context.Context, r Rotation) error {
	return s.inTx(ctx, "rotate session of "+r.UserID, func(ctx context.Context, tx pgx.Tx) error {
		_, err := pgRotate(ctx, tx, r)
		return err
	})
}

// pgRotate is RotateSession inside a transaction. It returns the public id
// of the rotated session.
func pgRotate(ctx context.Context, q pgQuerier, r Rotation) (string, error) {
	var id string
	err := q.QueryRow(ctx, `
		UPDATE sessions
		SET token_hash = $3, expires_at = $4, password_verified_at = $5,
			two_factor_verified = $6
		WHERE token_hash = $2 AND user_id = $1
		RETURNING id`,
		r.UserID, r.OldHash, r.NewHash, r.ExpiresAt.UTC(), nullTime(r.PasswordVerifiedAt),
		r.TwoFactorVerified).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", model.ErrNotFound
	}
	return id, err
}

// pgVerifySession rotates the user's session with token hash old to new,
// marks it as having passed a second factor and sets its expiry. With a
// non-empty sessionID the session must also have that public id.
func pgVerifySession(ctx context.Context, q pgQuerier, userID, sessionID string,
	oldHash, newHash []byte, expiresAt time.Time) error {
	tag, err := q.Exec(ctx, `
		UPDATE sessions
		SET token_hash = $3, two_factor_verified = true, expires_at = $4
		WHERE token_hash = $2 AND user_id = $1 AND ($5 = '' OR id = $5)`,
		userID, oldHash, newHash, expiresAt.UTC(), sessionID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return model.ErrNotFound
	}
	return nil
}

// ListSessions returns the user's live sessions, newest first.
func (s *pgStore) ListSessions(ctx context.Context, userID string,
	now time.Time) ([]*model.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	op := "list sessions of " + userID
	rows, err := s.pool.Query(ctx, `
		SELECT `+pgSessionColumns+` FROM sessions s
		WHERE s.user_id = $1 AND s.expires_at > $2
		ORDER BY s.created_at DESC, s.id DESC`, userID, now.UTC())
	if err != nil {
		return nil, pgError(op, err)
	}
	defer rows.Close()

	sessions := []*model.Session{}
	for rows.Next() {
		var r pgSessionRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, pgError(op, err)
		}
		sessions = append(sessions, r.session())
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(op, err)
	}
	return sessions, nil
}

// exec runs one statement under the store's deadline and returns the
// number of rows it affected.
func (s *pgStore) exec(ctx context.Context, op, sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return 0, pgError(op, err)
	}
	return tag.RowsAffected(), nil
}

// DeleteSession deletes the user's session with that public id.
func (s *pgStore) DeleteSession(ctx context.Context, userID, id string) error {
	op := "delete session of " + userID
	if !storable(userID, id) {
		return fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	n, err := s.exec(ctx, op,
		`DELETE FROM sessions WHERE user_id = $1 AND id = $2`, userID, id)
	if err == nil && n == 0 {
		err = fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	return err
}

// DeleteSessionByTokenHash deletes the session with that token hash, if any.
func (s *pgStore) DeleteSessionByTokenHash(ctx context.Context, hash []byte) error {
	_, err := s.exec(ctx, "delete session by token hash",
		`DELETE FROM sessions WHERE token_hash = $1`, hash)
	return err
}

// DeleteOtherSessions deletes the user's sessions except keepID.
func (s *pgStore) DeleteOtherSessions(ctx context.Context, userID, keepID string) error {
	_, err := s.exec(ctx, "delete other sessions of "+userID,
		`DELETE FROM sessions WHERE user_id = $1 AND id <> $2`, userID, keepID)
	return err
}

// DeletePartialSessions deletes the user's sessions without a second factor.
func (s *pgStore) DeletePartialSessions(ctx context.Context, userID string) error {
	_, err := s.exec(ctx, "delete partial sessions of "+userID,
		`DELETE FROM sessions WHERE user_id = $1 AND NOT two_factor_verified`, userID)
	return err
}

// DeleteExpiredSessions deletes sessions and enrolments that expired before
// now and reports how many sessions went.
func (s *pgStore) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.inTx(ctx, "delete expired sessions", func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE expires_at < $1`, now.UTC())
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM totp_enrollments WHERE expires_at < $1`, now.UTC())
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PutPendingTOTP stores p as the user's pending enrolment. It returns
// model.ErrNotFound if the user or the session does not exist.
func (s *pgStore) PutPendingTOTP(ctx context.Context, p *model.PendingTOTP) error {
	_, err := s.exec(ctx, "put pending TOTP of "+p.UserID, `
		INSERT INTO totp_enrollments (user_id, session_id, secret, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE
		SET session_id = excluded.session_id, secret = excluded.secret,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		p.UserID, p.SessionID, p.Secret, p.CreatedAt.UTC(), p.ExpiresAt.UTC())
	return err
}

// PendingTOTP returns the user's pending enrolment.
func (s *pgStore) PendingTOTP(ctx context.Context, userID string) (*model.PendingTOTP,
	error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	op := "pending TOTP of " + userID
	if !storable(userID) {
		return nil, fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	var p model.PendingTOTP
	err := s.pool.QueryRow(ctx, `
		SELECT user_id, session_id, secret, created_at, expires_at
		FROM totp_enrollments WHERE user_id = $1`, userID).
		Scan(&p.UserID, &p.SessionID, &p.Secret, &p.CreatedAt, &p.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	if err != nil {
		return nil, pgError(op, err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	p.ExpiresAt = p.ExpiresAt.UTC()
	return &p, nil
}

// EnableTOTP confirms the pending enrolment as documented on Store.
func (s *pgStore) EnableTOTP(ctx context.Context, e Enable) error {
	return s.inTx(ctx, "enable TOTP for "+e.UserID, func(ctx context.Context, tx pgx.Tx) error {
		// The enrolment must be the one this session started, with this
		// secret, and still be live. Deleting it is what lets exactly one
		// of two racing confirmations through.
		tag, err := tx.Exec(ctx, `
			DELETE FROM totp_enrollments
			WHERE user_id = $1 AND session_id = $2 AND secret = $3 AND expires_at > $4`,
			e.UserID, e.SessionID, e.Secret, e.Now.UTC())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return model.ErrNoEnrollment
		}

		// The confirming code's step is spent like any other.
		tag, err = tx.Exec(ctx, `
			UPDATE users
			SET two_factor_secret = $2, totp_last_step = $3, otp_failures = 0,
				otp_last_failure_at = NULL, updated_at = $4
			WHERE id = $1 AND totp_last_step < $3`,
			e.UserID, e.Secret, e.Step, e.Now.UTC())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return model.ErrStepUsed
		}

		if err := pgPutRecoveryCodes(ctx, tx, e.UserID, e.RecoveryCodes, e.Now); err != nil {
			return err
		}
		err = pgVerifySession(ctx, tx, e.UserID, e.SessionID, e.OldHash, e.NewHash,
			e.ExpiresAt)
		if err != nil {
			return err
		}
		// Every other session must now pass the new factor, soon.
		_, err = tx.Exec(ctx, `
			UPDATE sessions
			SET two_factor_verified = false, expires_at = LEAST(expires_at, $3)
			WHERE user_id = $1 AND id <> $2`,
			e.UserID, e.SessionID, e.PartialExpiresAt.UTC())
		return err
	})
}

// pgPutRecoveryCodes replaces the user's recovery codes with hashes.
func pgPutRecoveryCodes(ctx context.Context, q pgQuerier, userID string,
	hashes [][]byte, now time.Time) error {
	if _, err := q.Exec(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`,
		userID); err != nil {
		return err
	}
	if len(hashes) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `
		INSERT INTO recovery_codes (user_id, code_hash, created_at)
		SELECT $1, h, $3 FROM unnest($2::bytea[]) AS h`,
		userID, hashes, now.UTC())
	return err
}

// proofError tells why a step could not be consumed for the user:
// model.ErrNotFound for an unknown user, model.ErrTwoFactorDisabled without
// a secret, model.ErrStepUsed otherwise.
func pgProofError(ctx context.Context, q pgQuerier, userID string) error {
	var enabled bool
	err := q.QueryRow(ctx,
		`SELECT two_factor_secret IS NOT NULL FROM users WHERE id = $1`, userID).
		Scan(&enabled)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return model.ErrNotFound
	case err != nil:
		return err
	case !enabled:
		return model.ErrTwoFactorDisabled
	}
	return model.ErrStepUsed
}

// errProof means a call named both a TOTP step and a recovery code, or
// neither.
var errProof = errors.New("exactly one of step and recovery code must be given")

// checkProof returns errProof unless exactly one of step and code is set.
func checkProof(step int64, code []byte) error {
	if (step > 0) == (code != nil) {
		return errProof
	}
	return nil
}

// pgConsumeProof records the user's second factor: the TOTP step, or the
// recovery code as used at now. It also resets the failure count and, with
// disable, removes the TOTP secret.
func pgConsumeProof(ctx context.Context, q pgQuerier, userID string, step int64,
	code []byte, now time.Time, disable bool) error {
	if step > 0 {
		// Every condition is in the WHERE clause: a racing transaction
		// that updated the row first makes this one match nothing.
		tag, err := q.Exec(ctx, `
			UPDATE users
			SET totp_last_step = $2, otp_failures = 0, otp_last_failure_at = NULL,
				two_factor_secret = CASE WHEN $3 THEN NULL ELSE two_factor_secret END
			WHERE id = $1 AND two_factor_secret IS NOT NULL AND totp_last_step < $2`,
			userID, step, disable)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgProofError(ctx, q, userID)
		}
		return nil
	}

	// The user's row is locked before the code's, as everywhere else.
	tag, err := q.Exec(ctx, `
		UPDATE users
		SET otp_failures = 0, otp_last_failure_at = NULL,
			two_factor_secret = CASE WHEN $2 THEN NULL ELSE two_factor_secret END
		WHERE id = $1`, userID, disable)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return model.ErrNotFound
	}
	tag, err = q.Exec(ctx, `
		UPDATE recovery_codes SET used_at = $3
		WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`,
		userID, code, now.UTC())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return model.ErrBadRecoveryCode
	}
	return nil
}

// PassSecondFactor records a passed second factor as documented on Store.
func (s *pgStore) PassSecondFactor(ctx context.Context, p SecondFactor) error {
	op := "pass second factor for " + p.UserID
	if err := checkProof(p.Step, p.RecoveryCode); err != nil {
		return fmt.Errorf("db: %s: %w", op, err)
	}
	return s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		err := pgConsumeProof(ctx, tx, p.UserID, p.Step, p.RecoveryCode, p.Now, false)
		if err != nil {
			return err
		}
		return pgVerifySession(ctx, tx, p.UserID, "", p.OldHash, p.NewHash, p.ExpiresAt)
	})
}

// ClaimSecondFactorAttempt counts an attempt if the count is still seen.
func (s *pgStore) ClaimSecondFactorAttempt(ctx context.Context, userID string, seen int,
	at time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	op := "claim second-factor attempt of " + userID
	var n int
	err := s.pool.QueryRow(ctx, `
		UPDATE users SET otp_failures = otp_failures + 1, otp_last_failure_at = $3
		WHERE id = $1 AND otp_failures = $2 RETURNING otp_failures`,
		userID, seen, at.UTC()).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("db: %s: %w", op, model.ErrStale)
	}
	if err != nil {
		return 0, pgError(op, err)
	}
	return n, nil
}

// DisableTOTP removes the second factor as documented on Store.
func (s *pgStore) DisableTOTP(ctx context.Context, d Disable) error {
	op := "disable TOTP for " + d.UserID
	if err := checkProof(d.Step, d.RecoveryCode); err != nil {
		return fmt.Errorf("db: %s: %w", op, err)
	}
	return s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		// The enrolment goes first to keep the store's lock order; should
		// the proof fail, the rollback brings it back.
		_, err := tx.Exec(ctx, `DELETE FROM totp_enrollments WHERE user_id = $1`, d.UserID)
		if err != nil {
			return err
		}
		err = pgConsumeProof(ctx, tx, d.UserID, d.Step, d.RecoveryCode, d.Now, true)
		if err != nil {
			return err
		}
		if err := pgPutRecoveryCodes(ctx, tx, d.UserID, nil, d.Now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE users SET updated_at = $2 WHERE id = $1`,
			d.UserID, d.Now.UTC())
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id <> $2`,
			d.UserID, d.KeepSessionID)
		return err
	})
}

// ReplaceRecoveryCodes replaces the user's recovery codes. The user's row is
// locked first, so that a concurrent DisableTOTP cannot be followed by new
// codes for a user without a second factor.
func (s *pgStore) ReplaceRecoveryCodes(ctx context.Context, userID string,
	hashes [][]byte, now time.Time) error {
	op := "replace recovery codes of " + userID
	return s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		var enabled bool
		err := tx.QueryRow(ctx, `
			SELECT two_factor_secret IS NOT NULL FROM users WHERE id = $1
			FOR NO KEY UPDATE`, userID).Scan(&enabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return model.ErrNotFound
		case err != nil:
			return err
		case !enabled:
			return model.ErrTwoFactorDisabled
		}
		return pgPutRecoveryCodes(ctx, tx, userID, hashes, now)
	})
}

// RecoveryCodesRemaining counts the user's unused recovery codes.
func (s *pgStore) RecoveryCodesRemaining(ctx context.Context, userID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	var n int
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`,
		userID).Scan(&n)
	if err != nil {
		return 0, pgError("count recovery codes of "+userID, err)
	}
	return n, nil
}

// ChangePassword sets a new password hash as documented on Store.
func (s *pgStore) ChangePassword(ctx context.Context, c PasswordChange) error {
	return s.inTx(ctx, "change password of "+c.UserID, func(ctx context.Context, tx pgx.Tx) error {
		// Enrolment first, as everywhere; the rollback restores it on error.
		_, err := tx.Exec(ctx, `DELETE FROM totp_enrollments WHERE user_id = $1`, c.UserID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`,
			c.UserID, c.PasswordHash, c.Now.UTC())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return model.ErrNotFound
		}

		r := c.Rotation
		r.UserID = c.UserID
		keep, err := pgRotate(ctx, tx, r)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id <> $2`,
			c.UserID, keep)
		return err
	})
}

// TwoFactorSecrets lists up to limit sealed secrets after afterUserID.
func (s *pgStore) TwoFactorSecrets(ctx context.Context, afterUserID string,
	limit int) ([]model.UserSecret, error) {
	secrets := []model.UserSecret{}
	if limit < 1 {
		return secrets, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	rows, err := s.pool.Query(ctx, `
		SELECT id, two_factor_secret FROM users
		WHERE two_factor_secret IS NOT NULL AND id > $1
		ORDER BY id LIMIT $2`, afterUserID, limit)
	if err != nil {
		return nil, pgError("list two-factor secrets", err)
	}
	defer rows.Close()
	for rows.Next() {
		var us model.UserSecret
		if err := rows.Scan(&us.UserID, &us.Secret); err != nil {
			return nil, pgError("list two-factor secrets", err)
		}
		secrets = append(secrets, us)
	}
	if err := rows.Err(); err != nil {
		return nil, pgError("list two-factor secrets", err)
	}
	return secrets, nil
}

// ReplaceTwoFactorSecret swaps the user's sealed secret if it is unchanged.
func (s *pgStore) ReplaceTwoFactorSecret(ctx context.Context, userID string, oldSecret,
	newSecret []byte) error {
	op := "replace two-factor secret of " + userID
	n, err := s.exec(ctx, op, `
		UPDATE users SET two_factor_secret = $3
		WHERE id = $1 AND two_factor_secret = $2`, userID, oldSecret, newSecret)
	if err == nil && n == 0 {
		err = fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	return err
}

// LoginThrottle returns the failed-login state of the user on the device.
func (s *pgStore) LoginThrottle(ctx context.Context, userID,
	deviceID string) (model.LoginThrottle, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	if !storable(userID, deviceID) {
		return model.LoginThrottle{}, nil
	}
	lt := model.LoginThrottle{UserID: userID, DeviceID: deviceID}
	var last pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `
		SELECT failures, last_failure_at FROM login_failures
		WHERE user_id = $1 AND device_id = $2`, userID, deviceID).
		Scan(&lt.Failures, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return model.LoginThrottle{}, nil
	}
	if err != nil {
		return model.LoginThrottle{}, pgError("login throttle of "+userID, err)
	}
	lt.LastFailureAt = pgTime(last)
	return lt, nil
}

// ClaimLoginAttempt counts a login attempt if the count is still seen.
// It returns model.ErrNotFound for an unknown user.
func (s *pgStore) ClaimLoginAttempt(ctx context.Context, userID, deviceID string,
	seen int, at time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	var n int
	err := s.pool.QueryRow(ctx, `
		INSERT INTO login_failures (user_id, device_id, failures, last_failure_at)
		VALUES ($1, $2, 1, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE
		SET failures = login_failures.failures + 1,
			last_failure_at = excluded.last_failure_at
		WHERE login_failures.failures = $4
		RETURNING failures`, userID, deviceID, nullTime(at), seen).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("db: claim login attempt of %s: %w", userID, model.ErrStale)
	}
	if err != nil {
		return 0, pgError("claim login attempt of "+userID, err)
	}
	return n, nil
}

// ResetLoginFailures forgets the failures of the user on the device.
func (s *pgStore) ResetLoginFailures(ctx context.Context, userID, deviceID string) error {
	if !storable(userID, deviceID) {
		return nil
	}
	_, err := s.exec(ctx, "reset login failures of "+userID,
		`DELETE FROM login_failures WHERE user_id = $1 AND device_id = $2`,
		userID, deviceID)
	return err
}
