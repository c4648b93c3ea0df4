-- The conflicts and dead-letters desk: what the hub's feeder reads off `<ns>.conflicts`,
-- `<ns>.dlq.transform` and `<ns>.dlq.sink`, materialized so that people can list, filter and
-- act on it. Kafka stays the record of what happened; these rows are a view of it plus the
-- state of the people's actions (submitted, replayed, discarded).
--
-- Idempotent by source offset: a conflict row remembers the (partition, offset) of the last
-- record applied to it and ignores any record at or before it, and a dead letter's id *is*
-- its DLQ offset (`<topic>:<partition>:<offset>`), inserted once. Re-reading a topic is
-- harmless.
--
-- Personal data never lies here in clear: both sides of a conflict (fields_ct) and a dead
-- letter's original record (value_ct) are AES-256-GCM sealed with the tenant's data key (see
-- src/crypto.rs; key_version names it), bound to tenant and row. Reasons and field errors are
-- stored masked. Field names, keys, topics and offsets are not personal data and stay
-- filterable. Keep this file and ../postgres/ in step.

CREATE TABLE conflicts (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conflict_id      TEXT NOT NULL,
    entity           TEXT NOT NULL,
    conflict_key     TEXT NOT NULL,
    -- The connector whose change raised it.
    connector        TEXT,
    status           TEXT NOT NULL CHECK (status IN
        ('pending', 'resolution_submitted', 'resolved', 'auto_resolved', 'superseded')),
    -- The fields held for a person, comma-separated (what a resolution must cover).
    held_fields      TEXT NOT NULL,
    fields_ct        BLOB NOT NULL,
    fields_nonce     BLOB NOT NULL,
    key_version      BIGINT NOT NULL,
    state_version    BIGINT NOT NULL,
    raised_at_ms     BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    -- Why the transform last refused a resolution (codes and field names only).
    last_reason      TEXT,
    submitted_by     TEXT,
    submitted_at_ms  BIGINT,
    resolved_by      TEXT,
    resolved_at_ms   BIGINT,
    resolved_version BIGINT,
    source_partition BIGINT NOT NULL,
    source_offset    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, conflict_id)
);
CREATE INDEX conflicts_list ON conflicts (tenant_id, status, raised_at_ms);

CREATE TABLE dead_letters (
    tenant_id          TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- `<dlq topic>:<partition>:<offset>`.
    id                 TEXT NOT NULL,
    stage              TEXT NOT NULL,
    error_class        TEXT NOT NULL,
    reason             TEXT NOT NULL,
    -- JSON array of {field, code, message}, messages masked.
    errors_json        TEXT NOT NULL,
    -- ",a,b," of the fields named by the errors, for the `field` filter.
    error_fields       TEXT NOT NULL,
    attempts           BIGINT NOT NULL,
    original_topic     TEXT NOT NULL,
    original_partition BIGINT NOT NULL,
    original_offset    BIGINT NOT NULL,
    original_key       TEXT,
    -- The hub headers to put back on a replay (tenant, connector, ingest id, ...): JSON.
    headers_json       TEXT NOT NULL,
    value_ct           BLOB NOT NULL,
    value_nonce        BLOB NOT NULL,
    key_version        BIGINT NOT NULL,
    failed_at_ms       BIGINT NOT NULL,
    seen_at_ms         BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'replaying', 'replayed', 'discarded')),
    discard_reason     TEXT,
    acted_by           TEXT,
    acted_at_ms        BIGINT,
    replays            BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX dead_letters_list ON dead_letters (tenant_id, status, failed_at_ms);
