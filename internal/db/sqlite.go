package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/authsvc/authsvc/internal/model"
)

// sqliteStore is the embedded SQLite Store. It keeps two connection pools
// on one file: a single writer, through which every write transaction
// passes in turn, and several readers, which WAL mode lets run beside it.
// With one writer per process, writers of the same process queue in the
// pool instead of contending for SQLite's lock; contention with another
// process that opened the same file is left to busy_timeout and a bounded
// retry.
//
// Times are stored as INTEGER microseconds since the Unix epoch, so they
// round-trip exactly at the precision PostgreSQL keeps.
type sqliteStore struct {
	writer  *sql.DB
	reader  *sql.DB
	timeout time.Duration
}

// sqliteBusyAttempts bounds how often a statement that found the database
// locked by another process is tried, each after busy_timeout has passed.
const sqliteBusyAttempts = 5

// sqliteDSN is the driver's name for the file at path: WAL mode, foreign
// keys enforced, and a wait for locks held by other connections. Writers
// start transactions with BEGIN IMMEDIATE, so a transaction never has to
// upgrade a read lock to a write lock, which SQLite refuses without waiting
// when another writer came first. Readers are refused any write.
func sqliteDSN(path string, writer bool) string {
	dsn := path + "?_busy_timeout=1000&_foreign_keys=1&_journal_mode=WAL"
	if writer {
		return dsn + "&_txlock=immediate"
	}
	return dsn + "&_query_only=1"
}

// openSQLite opens the database file at path, creating it if need be.
func openSQLite(ctx context.Context, path string, opts Options) (*sqliteStore, error) {
	if err := prepareSQLiteFile(path); err != nil {
		return nil, err
	}
	writer, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)

	reader, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	readers := max(4, runtime.NumCPU())
	if opts.MaxConns > 0 {
		readers = opts.MaxConns
	}
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)

	s := &sqliteStore{writer: writer, reader: reader, timeout: opts.queryTimeout()}
	// The writer connects first: it is the one that switches a new file to
	// WAL mode.
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	return s, nil
}

// sqlQuerier is what a pool and a transaction have in common.
type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqliteTxFunc is the body of a transaction.
type sqliteTxFunc func(ctx context.Context, tx *sql.Tx) error

// inTx runs fn in a write transaction under the store's deadline and
// commits if fn returns nil. Errors are classified and wrapped with op.
func (s *sqliteStore) inTx(ctx context.Context, op string, fn sqliteTxFunc) error {
	return s.run(ctx, op, func(ctx context.Context) error {
		tx, err := s.writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(ctx, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// run runs fn under the store's deadline, again while it fails because
// another process holds the database locked, as long as the deadline and
// sqliteBusyAttempts allow.
func (s *sqliteStore) run(ctx context.Context, op string,
	fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if attempt < sqliteBusyAttempts && sqliteBusy(err) && ctx.Err() == nil {
			continue
		}
		return sqliteError(op, err)
	}
}

// sqliteCode returns the extended result code of a SQLite error, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// sqliteBusy reports whether err means the database was locked by another
// connection.
func sqliteBusy(err error) bool {
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// sqliteError wraps err with op, adding model.ErrUnavailable when the
// database stayed locked, the context ended or the store was closed, and
// model.ErrNotFound for a row that refers to a user or session that does not
// exist. Errors of package model pass through wrapped as they are.
func sqliteError(op string, err error) error {
	unavailable := sqliteBusy(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		sqliteCode(err)&0xff == sqlite3.SQLITE_INTERRUPT ||
		// database/sql has no exported error for a closed *sql.DB.
		strings.Contains(err.Error(), "sql: database is closed")
	switch {
	case unavailable:
		return fmt.Errorf("db: %s: %w: %w", op, model.ErrUnavailable, err)
	case sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("db: %s: %w: %w", op, model.ErrNotFound, err)
	}
	return fmt.Errorf("db: %s: %w", op, err)
}

// micros is t as stored: microseconds since the Unix epoch.
func micros(t time.Time) int64 { return t.UnixMicro() }

// nullMicros is micros, except that the zero time is NULL.
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// fromMicros is the UTC time of a stored value.
func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// fromNullMicros is fromMicros, except that NULL is the zero time.
func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// rowsAffected returns the rows res affected.
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Ping reports whether the database answers, on both pools.
func (s *sqliteStore) Ping(ctx context.Context) error {
	return s.run(ctx, "ping", func(ctx context.Context) error {
		if err := s.writer.PingContext(ctx); err != nil {
			return err
		}
		return s.reader.PingContext(ctx)
	})
}

// Close closes both pools.
func (s *sqliteStore) Close() {
	_ = s.reader.Close()
	_ = s.writer.Close()
}

// sqliteUserColumns are the columns scanned by sqliteUserRow, from alias u.
const sqliteUserColumns = pgUserColumns

// sqliteUserRow receives sqliteUserColumns.
type sqliteUserRow struct {
	u                    model.User
	lastFailure          sql.NullInt64
	createdAt, updatedAt int64
}

func (r *sqliteUserRow) dest() []any {
	u := &r.u
	return []any{&u.ID, &u.Email, &u.EmailCanonical, &u.PasswordHash,
		&u.TwoFactorSecret, &u.TOTPLastStep, &u.OTPFailures, &r.lastFailure,
		&r.createdAt, &r.updatedAt}
}

func (r *sqliteUserRow) user() *model.User {
	u := r.u
	u.OTPLastFailureAt = fromNullMicros(r.lastFailure)
	u.CreatedAt = fromMicros(r.createdAt)
	u.UpdatedAt = fromMicros(r.updatedAt)
	return &u
}

// sqliteSessionColumns are the columns scanned by sqliteSessionRow.
const sqliteSessionColumns = pgSessionColumns

// sqliteSessionRow receives sqliteSessionColumns.
type sqliteSessionRow struct {
	s                              model.Session
	createdAt, expiresAt, lastSeen int64
	passwordVerified               sql.NullInt64
}

func (r *sqliteSessionRow) dest() []any {
	s := &r.s
	return []any{&s.ID, &s.TokenHash, &s.UserID, &r.createdAt, &r.expiresAt,
		&r.lastSeen, &r.passwordVerified, &s.TwoFactorVerified, &s.ClientIP,
		&s.UserAgent}
}

func (r *sqliteSessionRow) session() *model.Session {
	s := r.s
	s.CreatedAt = fromMicros(r.createdAt)
	s.ExpiresAt = fromMicros(r.expiresAt)
	s.LastSeenAt = fromMicros(r.lastSeen)
	s.PasswordVerifiedAt = fromNullMicros(r.passwordVerified)
	return &s
}

// CreateUser inserts u; model.ErrEmailTaken if its canonical email is taken.
func (s *sqliteStore) CreateUser(ctx context.Context, u *model.User) error {
	return s.inTx(ctx, "create user "+u.ID, func(ctx context.Context, tx *sql.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx, `
			INSERT INTO users (id, email, email_canonical, password_hash,
				two_factor_secret, totp_last_step, otp_failures, otp_last_failure_at,
				created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (email_canonical) DO NOTHING`,
			u.ID, u.Email, u.EmailCanonical, u.PasswordHash,
			u.TwoFactorSecret, u.TOTPLastStep, u.OTPFailures,
			nullMicros(u.OTPLastFailureAt), micros(u.CreatedAt), micros(u.UpdatedAt)))
		if err == nil && n == 0 {
			err = model.ErrEmailTaken
		}
		return err
	})
}

// UserByID returns the user with that id; model.ErrNotFound if none.
func (s *sqliteStore) UserByID(ctx context.Context, id string) (*model.User, error) {
	return s.user(ctx, "user by id "+id, `u.id = $1`, id)
}

// UserByEmail returns the user with that canonical email; model.ErrNotFound
// if none.
func (s *sqliteStore) UserByEmail(ctx context.Context, canonical string) (*model.User,
	error) {
	return s.user(ctx, "user by email", `u.email_canonical = $1`, canonical)
}

// user returns the one user matching where.
func (s *sqliteStore) user(ctx context.Context, op, where string,
	arg any) (*model.User, error) {
	var r sqliteUserRow
	err := s.run(ctx, op, func(ctx context.Context) error {
		err := s.reader.QueryRowContext(ctx,
			`SELECT `+sqliteUserColumns+` FROM users u WHERE `+where, arg).
			Scan(r.dest()...)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return r.user(), nil
}

// UpdatePasswordHash replaces the user's password hash.
func (s *sqliteStore) UpdatePasswordHash(ctx context.Context, userID, hash string,
	now time.Time) error {
	op := "update password hash of " + userID
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx,
			`UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`,
			userID, hash, micros(now)))
		if err == nil && n == 0 {
			err = model.ErrNotFound
		}
		return err
	})
}

// CreateSession inserts sess and trims the user's live sessions to limit. A
// limit below 1 means no limit.
func (s *sqliteStore) CreateSession(ctx context.Context, sess *model.Session, limit int,
	now time.Time) error {
	op := "create session for " + sess.UserID
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO sessions (token_hash, id, user_id, created_at, expires_at,
				last_seen_at, password_verified_at, two_factor_verified, client_ip,
				user_agent)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			sess.TokenHash, sess.ID, sess.UserID, micros(sess.CreatedAt),
			micros(sess.ExpiresAt), micros(sess.LastSeenAt),
			nullMicros(sess.PasswordVerifiedAt), sess.TwoFactorVerified, sess.ClientIP,
			sess.UserAgent)
		if err != nil {
			return err
		}

		// Expired sessions of the user go now rather than at the next sweep.
		_, err = tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2`,
			sess.UserID, micros(now))
		if err != nil || limit < 1 {
			return err
		}

		// The new session sorts first, so it is never the one trimmed.
		_, err = tx.ExecContext(ctx, `
			DELETE FROM sessions WHERE token_hash IN (
				SELECT token_hash FROM sessions
				WHERE user_id = $1 AND expires_at > $2
				ORDER BY token_hash = $3 DESC, created_at DESC, id DESC
				LIMIT -1 OFFSET $4)`,
			sess.UserID, micros(now), sess.TokenHash, limit)
		return err
	})
}

// SessionByTokenHash returns the session with that token hash and its user.
func (s *sqliteStore) SessionByTokenHash(ctx context.Context, hash []byte) (*model.Session,
	*model.User, error) {
	var sr sqliteSessionRow
	var ur sqliteUserRow
	err := s.run(ctx, "session by token hash", func(ctx context.Context) error {
		err := s.reader.QueryRowContext(ctx, `
			SELECT `+sqliteSessionColumns+`, `+sqliteUserColumns+`
			FROM sessions s JOIN users u ON u.id = s.user_id
			WHERE s.token_hash = $1`, hash).Scan(append(sr.dest(), ur.dest()...)...)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return sr.session(), ur.user(), nil
}

// TouchSession sets the session's last-seen time and expiry.
func (s *sqliteStore) TouchSession(ctx context.Context, hash []byte, prevSeen, lastSeen,
	expiresAt time.Time) error {
	return s.inTx(ctx, "touch session", func(ctx context.Context, tx *sql.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx, `
			UPDATE sessions SET last_seen_at = $2, expires_at = $3
			WHERE token_hash = $1 AND last_seen_at = $4`,
			hash, micros(lastSeen), micros(expiresAt), micros(prevSeen)))
		if err != nil || n > 0 {
			return err
		}
		// Touched by someone else first, or gone: only the latter is an error.
		var one int
		err = tx.QueryRowContext(ctx,
			`SELECT 1 FROM sessions WHERE token_hash = $1`, hash).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	})
}

// RotateSession gives the session with r.OldHash a new hash and values.
func (s *sqliteStore) RotateSession(ctx context.Context, r Rotation) error {
	op := "rotate session of " + r.UserID
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		_, err := sqliteRotate(ctx, tx, r)
		return err
	})
}

// sqliteRotate is RotateSession inside a transaction. It returns the public
// id of the rotated session.
func sqliteRotate(ctx context.Context, q sqlQuerier, r Rotation) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `
		UPDATE sessions
		SET token_hash = $3, expires_at = $4, password_verified_at = $5,
			two_factor_verified = $6
		WHERE token_hash = $2 AND user_id = $1
		RETURNING id`,
		r.UserID, r.OldHash, r.NewHash, micros(r.ExpiresAt),
		nullMicros(r.PasswordVerifiedAt), r.TwoFactorVerified).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", model.ErrNotFound
	}
	return id, err
}

// sqliteVerifySession rotates the user's session with token hash old to
// new, marks it as having passed a second factor and sets its expiry. With
// a non-empty sessionID the session must also have that public id.
func sqliteVerifySession(ctx context.Context, q sqlQuerier, userID, sessionID string,
	oldHash, newHash []byte, expiresAt time.Time) error {
	n, err := rowsAffected(q.ExecContext(ctx, `
		UPDATE sessions
		SET token_hash = $3, two_factor_verified = 1, expires_at = $4
		WHERE token_hash = $2 AND user_id = $1 AND ($5 = '' OR id = $5)`,
		userID, oldHash, newHash, micros(expiresAt), sessionID))
	if err == nil && n == 0 {
		err = model.ErrNotFound
	}
	return err
}

// ListSessions returns the user's live sessions, newest first.
func (s *sqliteStore) ListSessions(ctx context.Context, userID string,
	now time.Time) ([]*model.Session, error) {
	var sessions []*model.Session
	err := s.run(ctx, "list sessions of "+userID, func(ctx context.Context) error {
		sessions = []*model.Session{}
		rows, err := s.reader.QueryContext(ctx, `
			SELECT `+sqliteSessionColumns+` FROM sessions s
			WHERE s.user_id = $1 AND s.expires_at > $2
			ORDER BY s.created_at DESC, s.id DESC`, userID, micros(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r sqliteSessionRow
			if err := rows.Scan(r.dest()...); err != nil {
				return err
			}
			sessions = append(sessions, r.session())
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return sessions, nil
}

// exec runs one write statement in its own transaction and returns the
// number of rows it affected.
func (s *sqliteStore) exec(ctx context.Context, op, query string,
	args ...any) (int64, error) {
	var n int64
	err := s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		n, err = rowsAffected(tx.ExecContext(ctx, query, args...))
		return err
	})
	return n, err
}

// DeleteSession deletes the user's session with that public id.
func (s *sqliteStore) DeleteSession(ctx context.Context, userID, id string) error {
	op := "delete session of " + userID
	n, err := s.exec(ctx, op,
		`DELETE FROM sessions WHERE user_id = $1 AND id = $2`, userID, id)
	if err == nil && n == 0 {
		err = fmt.Errorf("db: %s: %w", op, model.ErrNotFound)
	}
	return err
}

// DeleteSessionByTokenHash deletes the session with that token hash, if any.
func (s *sqliteStore) DeleteSessionByTokenHash(ctx context.Context, hash []byte) error {
	_, err := s.exec(ctx, "delete session by token hash",
		`DELETE FROM sessions WHERE token_hash = $1`, hash)
	return err
}

// DeleteOtherSessions deletes the user's sessions except keepID.
func (s *sqliteStore) DeleteOtherSessions(ctx context.Context, userID,
	keepID string) error {
	_, err := s.exec(ctx, "delete other sessions of "+userID,
		`DELETE FROM sessions WHERE user_id = $1 AND id <> $2`, userID, keepID)
	return err
}

// DeletePartialSessions deletes the user's sessions without a second factor.
func (s *sqliteStore) DeletePartialSessions(ctx context.Context, userID string) error {
	_, err := s.exec(ctx, "delete partial sessions of "+userID,
		`DELETE FROM sessions WHERE user_id = $1 AND two_factor_verified = 0`, userID)
	return err
}

// DeleteExpiredSessions deletes sessions and enrolments that expired before
// now and reports how many sessions went.
func (s *sqliteStore) DeleteExpiredSessions(ctx context.Context,
	now time.Time) (int64, error) {
	var n int64
	err := s.inTx(ctx, "delete expired sessions", func(ctx context.Context,
		tx *sql.Tx) error {
		var err error
		n, err = rowsAffected(tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE expires_at < $1`, micros(now)))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`DELETE FROM totp_enrollments WHERE expires_at < $1`, micros(now))
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PutPendingTOTP stores p as the user's pending enrolment. It returns
// model.ErrNotFound if the user or the session does not exist.
func (s *sqliteStore) PutPendingTOTP(ctx context.Context, p *model.PendingTOTP) error {
	_, err := s.exec(ctx, "put pending TOTP of "+p.UserID, `
		INSERT INTO totp_enrollments (user_id, session_id, secret, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE
		SET session_id = excluded.session_id, secret = excluded.secret,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		p.UserID, p.SessionID, p.Secret, micros(p.CreatedAt), micros(p.ExpiresAt))
	return err
}

// PendingTOTP returns the user's pending enrolment.
func (s *sqliteStore) PendingTOTP(ctx context.Context, userID string) (*model.PendingTOTP,
	error) {
	var p model.PendingTOTP
	var created, expires int64
	err := s.run(ctx, "pending TOTP of "+userID, func(ctx context.Context) error {
		err := s.reader.QueryRowContext(ctx, `
			SELECT user_id, session_id, secret, created_at, expires_at
			FROM totp_enrollments WHERE user_id = $1`, userID).
			Scan(&p.UserID, &p.SessionID, &p.Secret, &created, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	p.CreatedAt = fromMicros(created)
	p.ExpiresAt = fromMicros(expires)
	return &p, nil
}

// EnableTOTP confirms the pending enrolment as documented on Store.
func (s *sqliteStore) EnableTOTP(ctx context.Context, e Enable) error {
	op := "enable TOTP for " + e.UserID
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		// The enrolment must be the one this session started, with this
		// secret, and still be live.
		n, err := rowsAffected(tx.ExecContext(ctx, `
			DELETE FROM totp_enrollments
			WHERE user_id = $1 AND session_id = $2 AND secret = $3 AND expires_at > $4`,
			e.UserID, e.SessionID, e.Secret, micros(e.Now)))
		if err != nil {
			return err
		}
		if n == 0 {
			return model.ErrNoEnrollment
		}

		// The confirming code's step is spent like any other.
		n, err = rowsAffected(tx.ExecContext(ctx, `
			UPDATE users
			SET two_factor_secret = $2, totp_last_step = $3, otp_failures = 0,
				otp_last_failure_at = NULL, updated_at = $4
			WHERE id = $1 AND totp_last_step < $3`,
			e.UserID, e.Secret, e.Step, micros(e.Now)))
		if err != nil {
			return err
		}
		if n == 0 {
			return model.ErrStepUsed
		}

		err = sqlitePutRecoveryCodes(ctx, tx, e.UserID, e.RecoveryCodes, e.Now)
		if err != nil {
			return err
		}
		err = sqliteVerifySession(ctx, tx, e.UserID, e.SessionID, e.OldHash, e.NewHash,
			e.ExpiresAt)
		if err != nil {
			return err
		}
		// Every other session must now pass the new factor, soon.
		_, err = tx.ExecContext(ctx, `
			UPDATE sessions
			SET two_factor_verified = 0, expires_at = min(expires_at, $3)
			WHERE user_id = $1 AND id <> $2`,
			e.UserID, e.SessionID, micros(e.PartialExpiresAt))
		return err
	})
}

// sqlitePutRecoveryCodes replaces the user's recovery codes with hashes.
func sqlitePutRecoveryCodes(ctx context.Context, tx *sql.Tx, userID string,
	hashes [][]byte, now time.Time) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID)
	if err != nil || len(hashes) == 0 {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `
		INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, h := range hashes {
		if _, err := stmt.ExecContext(ctx, userID, h, micros(now)); err != nil {
			return err
		}
	}
	return nil
}

// sqliteConsumeProof records the user's second factor: the TOTP step, or the
// recovery code as used at now. It also resets the failure count and, with
// disable, removes the TOTP secret.
func sqliteConsumeProof(ctx context.Context, tx *sql.Tx, userID string, step int64,
	code []byte, now time.Time, disable bool) error {
	if step > 0 {
		n, err := rowsAffected(tx.ExecContext(ctx, `
			UPDATE users
			SET totp_last_step = $2, otp_failures = 0, otp_last_failure_at = NULL,
				two_factor_secret = CASE WHEN $3 THEN NULL ELSE two_factor_secret END
			WHERE id = $1 AND two_factor_secret IS NOT NULL AND totp_last_step < $2`,
			userID, step, disable))
		if err != nil {
			return err
		}
		if n == 0 {
			return sqliteProofError(ctx, tx, userID)
		}
		return nil
	}

	// A recovery code: the user must exist, and the code be theirs and
	// unused.
	n, err := rowsAffected(tx.ExecContext(ctx, `
		UPDATE users
		SET otp_failures = 0, otp_last_failure_at = NULL,
			two_factor_secret = CASE WHEN $2 THEN NULL ELSE two_factor_secret END
		WHERE id = $1`, userID, disable))
	if err != nil {
		return err
	}
	if n == 0 {
		return model.ErrNotFound
	}
	n, err = rowsAffected(tx.ExecContext(ctx, `
		UPDATE recovery_codes SET used_at = $3
		WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`,
		userID, code, micros(now)))
	if err == nil && n == 0 {
		err = model.ErrBadRecoveryCode
	}
	return err
}

// sqliteProofError tells why a step could not be consumed for the user:
// model.ErrNotFound for an unknown user, model.ErrTwoFactorDisabled without
// a secret, model.ErrStepUsed otherwise.
func sqliteProofError(ctx context.Context, tx *sql.Tx, userID string) error {
	if err := sqliteHasTwoFactor(ctx, tx, userID); err != nil {
		return err
	}
	return model.ErrStepUsed
}

// sqliteHasTwoFactor returns nil if the user has a second factor,
// model.ErrTwoFactorDisabled if not, model.ErrNotFound for an unknown user.
func sqliteHasTwoFactor(ctx context.Context, tx *sql.Tx, userID string) error {
	var enabled bool
	err := tx.QueryRowContext(ctx,
		`SELECT two_factor_secret IS NOT NULL FROM users WHERE id = $1`, userID).
		Scan(&enabled)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return model.ErrNotFound
	case err != nil:
		return err
	case !enabled:
		return model.ErrTwoFactorDisabled
	}
	return nil
}

// PassSecondFactor records a passed second factor as documented on Store.
func (s *sqliteStore) PassSecondFactor(ctx context.Context, p SecondFactor) error {
	op := "pass second factor for " + p.UserID
	if err := checkProof(p.Step, p.RecoveryCode); err != nil {
		return fmt.Errorf("db: %s: %w", op, err)
	}
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		err := sqliteConsumeProof(ctx, tx, p.UserID, p.Step, p.RecoveryCode, p.Now, false)
		if err != nil {
			return err
		}
		return sqliteVerifySession(ctx, tx, p.UserID, "", p.OldHash, p.NewHash,
			p.ExpiresAt)
	})
}

// ClaimSecondFactorAttempt counts an attempt if the count is still seen.
func (s *sqliteStore) ClaimSecondFactorAttempt(ctx context.Context, userID string,
	seen int, at time.Time) (int, error) {
	var n int
	op := "claim second-factor attempt of " + userID
	err := s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
			UPDATE users SET otp_failures = otp_failures + 1, otp_last_failure_at = $3
			WHERE id = $1 AND otp_failures = $2 RETURNING otp_failures`,
			userID, seen, micros(at)).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrStale
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DisableTOTP removes the second factor as documented on Store.
func (s *sqliteStore) DisableTOTP(ctx context.Context, d Disable) error {
	op := "disable TOTP for " + d.UserID
	if err := checkProof(d.Step, d.RecoveryCode); err != nil {
		return fmt.Errorf("db: %s: %w", op, err)
	}
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		err := sqliteConsumeProof(ctx, tx, d.UserID, d.Step, d.RecoveryCode, d.Now, true)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`DELETE FROM totp_enrollments WHERE user_id = $1`, d.UserID)
		if err != nil {
			return err
		}
		if err := sqlitePutRecoveryCodes(ctx, tx, d.UserID, nil, d.Now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET updated_at = $2 WHERE id = $1`,
			d.UserID, micros(d.Now))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE user_id = $1 AND id <> $2`,
			d.UserID, d.KeepSessionID)
		return err
	})
}

// ReplaceRecoveryCodes replaces the user's recovery codes.
func (s *sqliteStore) ReplaceRecoveryCodes(ctx context.Context, userID string,
	hashes [][]byte, now time.Time) error {
	op := "replace recovery codes of " + userID
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		if err := sqliteHasTwoFactor(ctx, tx, userID); err != nil {
			return err
		}
		return sqlitePutRecoveryCodes(ctx, tx, userID, hashes, now)
	})
}

// RecoveryCodesRemaining counts the user's unused recovery codes.
func (s *sqliteStore) RecoveryCodesRemaining(ctx context.Context, userID string) (int,
	error) {
	var n int
	err := s.run(ctx, "count recovery codes of "+userID, func(ctx context.Context) error {
		return s.reader.QueryRowContext(ctx, `
			SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`,
			userID).Scan(&n)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ChangePassword sets a new password hash as documented on Store.
func (s *sqliteStore) ChangePassword(ctx context.Context, c PasswordChange) error {
	op := "change password of " + c.UserID
	return s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx,
			`UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`,
			c.UserID, c.PasswordHash, micros(c.Now)))
		if err != nil {
			return err
		}
		if n == 0 {
			return model.ErrNotFound
		}

		r := c.Rotation
		r.UserID = c.UserID
		keep, err := sqliteRotate(ctx, tx, r)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`DELETE FROM totp_enrollments WHERE user_id = $1`, c.UserID)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE user_id = $1 AND id <> $2`, c.UserID, keep)
		return err
	})
}

// TwoFactorSecrets lists up to limit sealed secrets after afterUserID.
func (s *sqliteStore) TwoFactorSecrets(ctx context.Context, afterUserID string,
	limit int) ([]model.UserSecret, error) {
	var secrets []model.UserSecret
	err := s.run(ctx, "list two-factor secrets", func(ctx context.Context) error {
		secrets = []model.UserSecret{}
		if limit < 1 {
			return nil
		}
		rows, err := s.reader.QueryContext(ctx, `
			SELECT id, two_factor_secret FROM users
			WHERE two_factor_secret IS NOT NULL AND id > $1
			ORDER BY id LIMIT $2`, afterUserID, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var us model.UserSecret
			if err := rows.Scan(&us.UserID, &us.Secret); err != nil {
				return err
			}
			secrets = append(secrets, us)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return secrets, nil
}

// ReplaceTwoFactorSecret swaps the user's sealed secret if it is unchanged.
func (s *sqliteStore) ReplaceTwoFactorSecret(ctx context.Context, userID string, oldSecret,
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
func (s *sqliteStore) LoginThrottle(ctx context.Context, userID,
	deviceID string) (model.LoginThrottle, error) {
	lt := model.LoginThrottle{UserID: userID, DeviceID: deviceID}
	var last sql.NullInt64
	err := s.run(ctx, "login throttle of "+userID, func(ctx context.Context) error {
		return s.reader.QueryRowContext(ctx, `
			SELECT failures, last_failure_at FROM login_failures
			WHERE user_id = $1 AND device_id = $2`, userID, deviceID).
			Scan(&lt.Failures, &last)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return model.LoginThrottle{}, nil
	}
	if err != nil {
		return model.LoginThrottle{}, err
	}
	lt.LastFailureAt = fromNullMicros(last)
	return lt, nil
}

// ClaimLoginAttempt counts a login attempt if the count is still seen.
// It returns model.ErrNotFound for an unknown user.
func (s *sqliteStore) ClaimLoginAttempt(ctx context.Context, userID, deviceID string,
	seen int, at time.Time) (int, error) {
	var n int
	op := "claim login attempt of " + userID
	err := s.inTx(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
			INSERT INTO login_failures (user_id, device_id, failures, last_failure_at)
			VALUES ($1, $2, 1, $3)
			ON CONFLICT (user_id, device_id) DO UPDATE
			SET failures = login_failures.failures + 1,
				last_failure_at = excluded.last_failure_at
			WHERE login_failures.failures = $4
			RETURNING failures`, userID, deviceID, nullMicros(at), seen).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrStale
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ResetLoginFailures forgets the failures of the user on the device.
func (s *sqliteStore) ResetLoginFailures(ctx context.Context, userID,
	deviceID string) error {
	_, err := s.exec(ctx, "reset login failures of "+userID,
		`DELETE FROM login_failures WHERE user_id = $1 AND device_id = $2`,
		userID, deviceID)
	return err
}
