//! # hub-sink — canonical records out to their targets
//!
//! Owns the last stage: it consumes `hub.canonical.<entity>` and writes each record to the
//! targets its tenant's topology routes that entity to. The SQL table sink is exactly-once (rows
//! and consumed offsets commit in one database transaction); API sinks (the webhook sink now,
//! vendor connectors later) are effectively-once (at-least-once delivery, idempotent upserts, a
//! write ledger, offsets committed after the target acknowledged). Permanent refusals go to
//! `hub.dlq.sink` with the target's reason.
//!
//! Depends on: hub-schemas (records, codec, topics), hub-topology (routes, targets, metric
//! names), hub-connectors (the webhook signature). Kafka stays in `runner`; the store, the
//! sinks and the offset logic are plain code, testable without a broker.
//! Must not know about: vendors' field mappings, ingest, the transform's conflict logic.
//!
//! Map: [`record`] (a canonical record as read from Kafka) → [`routes`] (which tenant's
//! records go where) → [`store`] (the SQL store: tables, offsets, write ledger) and [`api`]
//! (the `Sink` contract, the webhook sink, retries, one ledger-guarded delivery pass) →
//! [`runner`] (the Kafka loops, rebalances, dead letters, commits). [`offsets`] holds the pure
//! "applied already?" logic the SQL runner and its tests share.

pub mod api;
pub mod error;
pub mod offsets;
pub mod record;
pub mod routes;
pub mod runner;
pub mod shutdown;
pub mod store;

pub use api::vendor::VendorSink;
pub use api::{
    Delivery, DeliveryOutcome, RetryPolicy, Sink, WebhookSink, WriteResult, deliver,
    write_with_retry,
};
pub use error::{RecordError, SinkError};
pub use offsets::{Admission, OffsetCache, Position, already_applied};
pub use record::CanonicalRecord;
pub use routes::{ApiRoute, SqlRoutes, webhook_routes};
pub use runner::{
    ApiSinkRunner, RunnerOptions, SqlSinkRunner, VendorSinkRunner, WebhookSinkRunner,
};
pub use store::{Backend, BatchOutcome, LedgerEntry, ReconciliationRow, SqlStore, UpsertOutcome};
