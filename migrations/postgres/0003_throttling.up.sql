-- Throttling state that every replica must see: consecutive failed second
-- factors per account, and failed logins per account and device.

-- Added without a table rewrite, like the columns of 0002. A NULL
-- otp_last_failure_at means no failure since the last success.
ALTER TABLE users
    ADD COLUMN otp_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN otp_last_failure_at timestamptz;

-- device_id is '' for every device the account has not signed in from
-- before, so strangers share one count and the owner's devices keep theirs.
CREATE TABLE login_failures (
    user_id         text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id       text NOT NULL,
    failures        integer NOT NULL,
    last_failure_at timestamptz,
    PRIMARY KEY (user_id, device_id)
);
