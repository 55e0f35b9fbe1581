-- Throttling state: consecutive failed second factors per account, and
-- failed logins per account and device. A NULL otp_last_failure_at means no
-- failure since the last success.
ALTER TABLE users ADD COLUMN otp_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN otp_last_failure_at INTEGER;

-- device_id is '' for every device the account has not signed in from
-- before, so strangers share one count and the owner's devices keep theirs.
CREATE TABLE login_failures (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id       TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER,
    PRIMARY KEY (user_id, device_id)
) STRICT;
