-- What the compliance report (FTC Safeguards Rule) needs beyond what is already kept: when an
-- API token was last used (to the minute: authentication writes it at most once a minute per
-- token), and a record of every master-key rotation (the rotation's transaction writes it).
-- Numbered 0006 to leave 0004/0005 to work in flight elsewhere. Keep this file and
-- ../postgres/ in step.

ALTER TABLE api_tokens ADD COLUMN last_used_at_ms BIGINT;

CREATE TABLE master_key_rotations (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_version        BIGINT NOT NULL,
    to_version          BIGINT NOT NULL,
    rotated_at_ms       BIGINT NOT NULL,
    data_keys_rewrapped BIGINT NOT NULL
);
CREATE INDEX master_key_rotations_at ON master_key_rotations (rotated_at_ms);

-- Failed sign-ins of a period, whatever the client address.
CREATE INDEX login_attempts_by_login_at ON login_attempts (login, attempted_at_ms);
