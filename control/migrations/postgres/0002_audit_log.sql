-- The audit log: append-only and hash-chained. Each entry's hash is SHA-256 over its own
-- fields and the previous entry's hash (see src/store/audit.rs for the exact encoding), so an
-- edited row no longer matches its hash and a deleted one leaves a gap in seq and in the
-- chain. audit_head keeps the last seq and hash: appends lock it (serialising writers across
-- control nodes), and it reveals rows cut from the end. seq is assigned from the head, not by
-- a sequence, so that a gap always means a deletion. Keep this file and ../sqlite/ in step.

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    -- No foreign key: the record of what happened to a tenant outlives the tenant.
    tenant_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT,
    client_addr TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at_ms);
CREATE INDEX audit_log_at ON audit_log (at_ms);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The store itself never updates or deletes an entry; these make an accidental UPDATE or
-- DELETE fail loudly. Someone with the rights to drop them is what the hash chain is for.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
