-- Accounts and the sessions signed in to them: the service as it first
-- shipped, with passwords only.
--
-- Tables are STRICT, so a value of the wrong type is an error rather than
-- silently stored. Times are INTEGER microseconds since the Unix epoch, UTC;
-- booleans are INTEGER 0 or 1. Ids are TEXT and compared bytewise.

CREATE TABLE users (
    id              TEXT NOT NULL PRIMARY KEY,
    email           TEXT NOT NULL,
    email_canonical TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

-- The token itself is never stored, only its SHA-256, which is the key the
-- service looks sessions up by. id is the public handle shown in listings.
CREATE TABLE sessions (
    token_hash           BLOB NOT NULL PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    last_seen_at         INTEGER NOT NULL,
    password_verified_at INTEGER,
    two_factor_verified  INTEGER NOT NULL DEFAULT 0,
    client_ip            TEXT NOT NULL DEFAULT '',
    user_agent           TEXT NOT NULL DEFAULT ''
) STRICT;

-- Listing a user's sessions newest first, and trimming the oldest.
CREATE INDEX sessions_user_id_created_at_idx ON sessions (user_id, created_at);
-- The periodic sweep of expired sessions.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
