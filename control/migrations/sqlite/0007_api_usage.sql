-- Vendor API usage per tenant, connector and UTC day (YYYY-MM-DD). Every node adds its own
-- calls to `calls` (an upsert that sums), so the row is the whole hub's count and survives
-- restarts. The limits in force are stored with the row (the topology may change them), and
-- vendor_used / vendor_limit keep the vendor's own last report for the day (Salesforce's
-- Sforce-Limit-Info), which is authoritative when present. No foreign key to tenants: a
-- topology tenant may call vendors before the control plane knows it; an orphaned row only
-- costs its bytes. Times are Unix milliseconds. Keep this file and ../postgres/ in step.

CREATE TABLE api_usage (
    tenant_id      TEXT NOT NULL,
    connector      TEXT NOT NULL,
    day            TEXT NOT NULL,
    vendor         TEXT NOT NULL,
    calls          INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    daily_limit    INTEGER NOT NULL,
    window_limit   INTEGER,
    window_seconds INTEGER NOT NULL DEFAULT 10,
    warn_percent   INTEGER NOT NULL,
    vendor_used    INTEGER,
    vendor_limit   INTEGER,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, connector, day)
);
