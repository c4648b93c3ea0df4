-- Tenants, who may do what in them, and the connector credentials they hold.
-- Times are Unix milliseconds (BIGINT) on both backends; secrets are never stored in clear:
-- password_hash is an argon2id PHC string, token_hash a SHA-256 hex digest, credentials and
-- data keys AES-256-GCM ciphertext. Keep this file and ../sqlite/ in step.

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    platform_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms  BIGINT NOT NULL,
    disabled_at_ms BIGINT
);

CREATE TABLE memberships (
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'operator', 'viewer')),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, tenant_id)
);
CREATE INDEX memberships_tenant ON memberships (tenant_id);

CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    client_addr   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'operator', 'viewer')),
    name          TEXT NOT NULL,
    created_by    TEXT,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE TABLE tenant_data_keys (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    key_version        BIGINT NOT NULL,
    wrapped_key        BYTEA NOT NULL,
    nonce              BYTEA NOT NULL,
    master_key_version BIGINT NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    rewrapped_at_ms    BIGINT
);

CREATE TABLE connector_credentials (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connector     TEXT NOT NULL,
    ciphertext    BYTEA NOT NULL,
    nonce         BYTEA NOT NULL,
    key_version   BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    rotated_at_ms BIGINT,
    rotations     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, connector)
);

CREATE TABLE login_attempts (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login          TEXT NOT NULL,
    client_addr    TEXT NOT NULL,
    attempted_at_ms BIGINT NOT NULL,
    succeeded      BOOLEAN NOT NULL
);
CREATE INDEX login_attempts_by_key ON login_attempts (login, client_addr, attempted_at_ms);
