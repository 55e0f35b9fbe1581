-- TOTP two-factor authentication, added to a users table that already holds
-- live accounts.
--
-- NULL two_factor_secret means the user has no second factor, which is true
-- of every existing account. A secret is sealed: key id, nonce and
-- ciphertext in one value, never the plain secret.
ALTER TABLE users ADD COLUMN two_factor_secret BLOB;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;

-- An enrolment that setup started and enable has not yet confirmed: at most
-- one per user, bound to the session that started it, gone with it.
CREATE TABLE totp_enrollments (
    user_id    TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    secret     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- Deleting a session looks here for enrolments to cascade to.
CREATE INDEX totp_enrollments_session_id_idx ON totp_enrollments (session_id);

-- Single-use recovery codes, stored as keyed hashes; used_at is set when one
-- is spent.
CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
) STRICT;
