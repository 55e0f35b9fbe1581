-- TOTP two-factor authentication, added to a users table that already holds
-- live accounts.
--
-- two_factor_secret is nullable with no default, and totp_last_step has a
-- constant default: PostgreSQL adds both without rewriting the table, so
-- the lock this takes on users lasts moments, not the length of a table
-- scan. NULL means the user has no second factor, which is true of every
-- existing account. A secret is sealed: key id, nonce and ciphertext in one
-- value, never the plain secret.
ALTER TABLE users
    ADD COLUMN two_factor_secret bytea,
    ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0;

-- An enrolment that setup started and enable has not yet confirmed: at most
-- one per user, bound to the session that started it, gone with it.
CREATE TABLE totp_enrollments (
    user_id    text COLLATE "C" PRIMARY KEY
               REFERENCES users (id) ON DELETE CASCADE,
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    secret     bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Deleting a session looks here for enrolments to cascade to.
CREATE INDEX totp_enrollments_session_id_idx ON totp_enrollments (session_id);

-- Single-use recovery codes, stored as keyed hashes; used_at is set when one
-- is spent.
CREATE TABLE recovery_codes (
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    created_at timestamptz NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
