//! # hub-ingest — the edge where vendors push changes
//!
//! Owns `POST /ingest/v1/{tenant}/{connector}/{entity}`: it checks a webhook (size, tenant and
//! connector, signature, entity, media type, shape), wraps every record of the body in a
//! `RawChange` envelope, publishes it to `hub.raw.<vendor>` and answers `202` only once the
//! broker has acknowledged every record of the request. It also owns the `Idempotency-Key`
//! replay cache, the per-tenant rate limit of the endpoint (`429` with `Retry-After`, from the
//! tenant's `limits:`) and the ingest metrics.
//!
//! Depends on: hub-schemas (the envelope, topics, headers, the Confluent codec), hub-topology
//! (tenants, connectors, entity mappings, limits, metric names), hub-connectors (the webhook
//! signature scheme, vendor time formats), rdkafka (only in [`KafkaPublisher`]).
//!
//! Must not know about: canonical entities' fields, mapping and validation rules, conflicts,
//! sinks, the control plane's store. Ingest keeps the vendor's record as it came; reading
//! meaning into it is the transform's job.

mod body;
mod error;
mod http;
mod hubspot;
mod idempotency;
mod kafka;
mod poll;
mod publisher;
mod state;
mod throttle;

#[cfg(test)]
mod tests;

pub use error::IngestError;
pub use http::{IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, router};
pub use kafka::{KafkaPublisher, KafkaPublisherConfig};
pub use poll::{SyncPass, SyncPassError, spawn_pollers, sync_pass};
pub use publisher::{MemoryPublisher, OutboundRecord, PublishError, Publisher};
pub use state::{IngestLimits, IngestState};
