DROP TABLE recovery_codes;
DROP TABLE totp_enrollments;

ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN two_factor_secret;
