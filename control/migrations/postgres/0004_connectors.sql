-- Connector configurations per tenant, and the pending OAuth2 authorization-code flows that
-- fill their credentials. A connector's id is the name its credentials (0001), schedule and
-- sync jobs (0003) already use. Mappings, filters and transformations are JSON text, checked
-- for shape by the control plane before they are stored. An OAuth state row is keyed by the
-- SHA-256 of the state (the state itself is a bearer secret until used); the PKCE verifier is
-- AES-256-GCM ciphertext under the tenant's data key, like credentials. A state is used at
-- most once (used_at_ms) and not after expires_at_ms. Times are Unix milliseconds.
-- Keep this file and ../sqlite/ in step.

CREATE TABLE connectors (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                TEXT NOT NULL,
    name              TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    auth_type         TEXT NOT NULL
        CHECK (auth_type IN ('oauth2', 'api_key', 'basic', 'jwt', 'custom')),
    frequency         TEXT NOT NULL
        CHECK (frequency IN ('hourly', 'daily', 'weekly', 'manual', 'real-time')),
    direction         TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'bidirectional')),
    batch_size        BIGINT NOT NULL,
    retry_attempts    BIGINT NOT NULL,
    conflict_strategy TEXT NOT NULL
        CHECK (conflict_strategy IN ('source_wins', 'target_wins', 'merge', 'manual', 'skip')),
    field_mappings    TEXT NOT NULL,
    filters           TEXT NOT NULL,
    transformations   TEXT NOT NULL,
    -- The OAuth2 app's public settings (client id, URLs, scope) as JSON; NULL when none.
    oauth             TEXT,
    enabled           BOOLEAN NOT NULL,
    -- Optimistic concurrency: 1 on creation, +1 on every change.
    version           BIGINT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE oauth_states (
    state_hash        TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connector         TEXT NOT NULL,
    verifier_sealed   BYTEA NOT NULL,
    verifier_nonce    BYTEA NOT NULL,
    key_version       BIGINT NOT NULL,
    redirect_uri      TEXT NOT NULL,
    -- The actor who started the flow (user:<id> or token:<id>), for the callback's audit entry.
    created_by        TEXT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    expires_at_ms     BIGINT NOT NULL,
    used_at_ms        BIGINT,
    FOREIGN KEY (tenant_id, connector) REFERENCES connectors (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at_ms);
