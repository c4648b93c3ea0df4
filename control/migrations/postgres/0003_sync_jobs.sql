-- Sync jobs and the schedules that make them. A schedule is due when next_due_ms has passed;
-- claiming it moves next_due_ms on by a compare-and-set (UPDATE ... WHERE next_due_ms = the
-- value read), so of several control nodes exactly one creates the slot's job, and
-- UNIQUE (tenant_id, connector, slot_ms) is the backstop. A running job holds a lease
-- (node, lease_expires_at_ms) that its heartbeats extend; once it lapses, another node may
-- take the job over. Times are Unix milliseconds. Keep this file and ../sqlite/ in step.

CREATE TABLE schedules (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connector     TEXT NOT NULL,
    frequency     TEXT NOT NULL
        CHECK (frequency IN ('hourly', 'daily', 'weekly', 'manual', 'real-time')),
    -- NULL for manual and real-time: such a connector is never due.
    interval_ms   BIGINT,
    next_due_ms   BIGINT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connector)
);
CREATE INDEX schedules_due ON schedules (next_due_ms);

CREATE TABLE sync_jobs (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connector             TEXT NOT NULL,
    trigger_kind          TEXT NOT NULL CHECK (trigger_kind IN ('schedule', 'manual')),
    -- The schedule slot a scheduled job fills; NULL for a manual one.
    slot_ms               BIGINT,
    status                TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    progress_pct          DOUBLE PRECISION NOT NULL DEFAULT 0,
    records_processed     BIGINT NOT NULL DEFAULT 0,
    records_failed        BIGINT NOT NULL DEFAULT 0,
    records_dead_lettered BIGINT NOT NULL DEFAULT 0,
    created_at_ms         BIGINT NOT NULL,
    started_at_ms         BIGINT,
    finished_at_ms        BIGINT,
    error                 TEXT,
    node                  TEXT,
    lease_expires_at_ms   BIGINT,
    attempts              BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, connector, slot_ms)
);
CREATE INDEX sync_jobs_tenant_created ON sync_jobs (tenant_id, created_at_ms);
CREATE INDEX sync_jobs_status ON sync_jobs (status, lease_expires_at_ms);
-- "Sync now" pressed twice before the first job starts makes one job, not two.
CREATE UNIQUE INDEX sync_jobs_one_pending_manual ON sync_jobs (tenant_id, connector)
    WHERE trigger_kind = 'manual' AND status = 'pending';
