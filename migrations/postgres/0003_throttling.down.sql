DROP TABLE login_failures;

ALTER TABLE users
    DROP COLUMN otp_last_failure_at,
    DROP COLUMN otp_failures;
