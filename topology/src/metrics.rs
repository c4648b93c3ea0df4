//! The hub's metrics: one list, so dashboards and alerts have a contract to rely on.
//! Names follow `hub_<stage>_<what>_<unit>`; labels are `tenant`, `connector`, `entity`,
//! `target`, `outcome` — never a per-record or per-customer value.

/// Records accepted or refused at the edge. Labels: tenant, connector, entity, outcome
/// (`accepted`, `rejected`, `failed`).
pub const INGEST_RECORDS_TOTAL: &str = "hub_ingest_records_total";
/// HTTP requests to the ingest endpoint. Labels: status (the HTTP status code).
pub const INGEST_REQUESTS_TOTAL: &str = "hub_ingest_requests_total";
/// Ingest requests refused with `429` because the tenant passed its `limits.ingest_per_s`
/// (plus burst). Labels: tenant. Appears with the first refusal.
pub const INGEST_THROTTLED_TOTAL: &str = "hub_ingest_throttled_total";
/// Control API requests refused with `429` by the per-tenant (or per-caller) API limit.
/// Labels: tenant (`-` for tenant-less endpoints). Appears with the first refusal.
pub const API_THROTTLED_TOTAL: &str = "hub_api_throttled_total";
/// Time from request start to answer. Labels: status.
pub const INGEST_REQUEST_SECONDS: &str = "hub_ingest_request_duration_seconds";
/// Records through the transform. Labels: tenant, connector, entity, outcome
/// (`canonical`, `dead_lettered`).
pub const TRANSFORM_RECORDS_TOTAL: &str = "hub_transform_records_total";
/// Transactions committed or aborted. Labels: outcome (`committed`, `aborted`).
pub const TRANSFORM_TRANSACTIONS_TOTAL: &str = "hub_transform_transactions_total";
/// Records through a sink. Labels: tenant, entity, target, outcome (`written`, `stale`,
/// `skipped_replay`, `dead_lettered`).
pub const SINK_RECORDS_TOTAL: &str = "hub_sink_records_total";
/// Failed attempts to write to a target. Labels: target, outcome (`transient`, `permanent`).
pub const SINK_ERRORS_TOTAL: &str = "hub_sink_errors_total";
/// Source timestamp → target acknowledgement. Labels: entity, target.
pub const E2E_LATENCY_SECONDS: &str = "hub_e2e_latency_seconds";
/// Hub ingest acceptance → target acknowledgement. Labels: entity, target.
pub const PIPELINE_LATENCY_SECONDS: &str = "hub_pipeline_latency_seconds";
/// Messages behind the high watermark. Labels: stage, topic (and `consumer_group` from the
/// sinks, where several runners share a process).
pub const CONSUMER_LAG_MESSAGES: &str = "hub_consumer_lag_messages";
/// Errors talking to the broker. Labels: stage.
pub const BROKER_ERRORS_TOTAL: &str = "hub_broker_errors_total";
/// What the resolve stage did with each change. Labels: tenant, entity, outcome (`applied`,
/// `conflict`, `echo`, `skipped`).
pub const TRANSFORM_DECISIONS_TOTAL: &str = "hub_transform_decisions_total";
/// Conflicts recorded on `<ns>.conflicts`. Labels: tenant, entity, status (`pending`,
/// `auto_resolved`, `resolved`, `resolution_rejected`, `superseded`). Appears with the
/// first conflict.
pub const CONFLICTS_TOTAL: &str = "hub_conflicts_total";
/// Vendor records whose content would now derive another key than the one they were first
/// given (a changed email): the first key is kept. Labels: tenant, entity. Appears with the
/// first link.
pub const IDENTITY_LINKS_TOTAL: &str = "hub_identity_links_total";
/// Records a poller read from a vendor's API and published. Label: connector. Appears with
/// the first record of a connector that has an `api:` section.
pub const POLL_RECORDS_TOTAL: &str = "hub_poll_records_total";
/// Records a vendor sink handled. Labels: target, outcome (`written`: sent and acknowledged
/// by the vendor; `own_change`: the version came from the target's own system, not sent;
/// `deletion`: not propagated yet). Appears with a vendor target's first batch.
pub const VENDOR_RECORDS_TOTAL: &str = "hub_sink_vendor_records_total";
/// Poll rounds that failed (the next round tries again). Label: connector.
pub const POLL_ERRORS_TOTAL: &str = "hub_poll_errors_total";
/// Vendor API calls (every HTTP attempt that reached the vendor or failed on the way).
/// Labels: tenant, vendor, connector, endpoint, status. Emitted by `hub_connectors::http`.
pub const VENDOR_API_CALLS_TOTAL: &str = "hub_vendor_api_calls_total";
/// What is left of a connector's vendor budget. Labels: tenant, connector, window (`day`:
/// the UTC day's calls against `daily_limit`, or the vendor's own count where it reports one;
/// `10s`: the current 10-second window against the vendor's per-window limit). Emitted by
/// `hub_connectors::usage`.
pub const VENDOR_API_BUDGET_REMAINING: &str = "hub_vendor_api_budget_remaining";
/// 1 while a connector's remaining daily budget is under its `budget_warn_percent`, else 0.
/// Labels: tenant, connector.
pub const VENDOR_API_BUDGET_LOW: &str = "hub_vendor_api_budget_low";

/// Every metric above that is present from a node's first record, for the contract test.
pub const ALL: [&str; 12] = [
    INGEST_RECORDS_TOTAL,
    INGEST_REQUESTS_TOTAL,
    INGEST_REQUEST_SECONDS,
    TRANSFORM_RECORDS_TOTAL,
    TRANSFORM_TRANSACTIONS_TOTAL,
    SINK_RECORDS_TOTAL,
    SINK_ERRORS_TOTAL,
    E2E_LATENCY_SECONDS,
    PIPELINE_LATENCY_SECONDS,
    CONSUMER_LAG_MESSAGES,
    BROKER_ERRORS_TOTAL,
    TRANSFORM_DECISIONS_TOTAL,
];
