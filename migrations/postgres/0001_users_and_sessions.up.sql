-- Accounts and the sessions signed in to them: the service as it first
-- shipped, with passwords only.
--
-- Ids are text, not uuid: an id taken from a URL is compared, never parsed,
-- so a malformed one is simply not found. User ids sort bytewise (COLLATE
-- "C") so that paging through users in id order means the same thing on
-- every server, whatever its locale.

CREATE TABLE users (
    id              text COLLATE "C" PRIMARY KEY,
    email           text NOT NULL,
    email_canonical text NOT NULL CONSTRAINT users_email_canonical_key UNIQUE,
    password_hash   text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- The token itself is never stored, only its SHA-256, which is the key the
-- service looks sessions up by. id is the public handle shown in listings.
CREATE TABLE sessions (
    token_hash           bytea PRIMARY KEY,
    id                   text NOT NULL CONSTRAINT sessions_id_key UNIQUE,
    user_id              text COLLATE "C" NOT NULL
                         REFERENCES users (id) ON DELETE CASCADE,
    created_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    last_seen_at         timestamptz NOT NULL,
    password_verified_at timestamptz,
    two_factor_verified  boolean NOT NULL DEFAULT false,
    client_ip            text NOT NULL DEFAULT '',
    user_agent           text NOT NULL DEFAULT ''
);

-- Listing a user's sessions newest first, and trimming the oldest.
CREATE INDEX sessions_user_id_created_at_idx ON sessions (user_id, created_at);
-- The periodic sweep of expired sessions.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
