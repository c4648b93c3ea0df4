//! # hub-transform — raw vendor changes become canonical records
//!
//! Owns the consume-transform-produce loop (`runner`, in Kafka transactions: read_committed
//! input, output and input offsets committed together) and the pure functions it drives:
//! `mapping` (a vendor record → canonical documents through the topology's field mappings,
//! transformations and validation rules; `dry_run` for previews), `path` (JSON-pointer paths
//! that also read XML), `xml` (XML payloads → the same tree as JSON), `expr` (sandboxed
//! evaluation of the topology's rhai expressions), `formats` (VIN, email, E.164, ZIP, state),
//! `identity` (the partition key of each canonical record: VIN, customer key, or the vendor's
//! id), `functions` (the transformation library the topology's `transform` steps call:
//! dates, currency, phones, text, lookups, concatenate/split) and `conflict` (per-key
//! conflict detection, strategies, echo suppression and manual resolution over a key's last
//! accepted state — not yet driven by the loop).
//!
//! Depends on: hub-schemas (records, codec), hub-topology (mappings, compiled expressions),
//! hub-connectors (vendor time formats), rhai (expressions), quick-xml (XML payloads). Must not know about: HTTP, SQL, targets. The mapping functions know nothing
//! of Kafka, so the console's preview and `hub mapping test` can call them directly.

pub mod conflict;
pub mod expr;
pub mod formats;
pub mod functions;
pub mod identity;
pub mod mapping;
pub mod path;
pub mod runner;
pub mod xml;

pub use mapping::{Mapped, TransformFailure, dry_run, map_payload, transform_raw};
pub use runner::{TransformConfig, TransformRunner};
