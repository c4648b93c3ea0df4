//! # hub-transform — raw vendor changes become canonical records
//!
//! Owns the consume-transform-produce loop (`runner`, in Kafka transactions: read_committed
//! input, output and input offsets committed together) and the pure functions it drives:
//! `mapping` (a vendor record → a canonical document through the topology's field mappings),
//! `formats` (VIN, email, E.164, ZIP, state), `identity` (the partition key of each
//! canonical record: VIN, customer key, or the vendor's id), `functions` (the transformation
//! library: dates, currency, phones, text, lookups, concatenate/split — not yet reachable from
//! topology files), `mapping_file` (standalone mapping files with their own test cases, what
//! `hub test` runs) and `conflict` (per-key conflict detection, strategies, echo suppression
//! and manual resolution over a key's last accepted state — not yet driven by the loop).
//!
//! Depends on: hub-schemas (records, codec), hub-topology (mappings), hub-connectors (vendor
//! time formats). Must not know about: HTTP, SQL, targets. The mapping functions know nothing
//! of Kafka, so the console's preview and `hub mapping test` can call them directly.

pub mod conflict;
pub mod formats;
pub mod functions;
pub mod identity;
pub mod mapping;
pub mod mapping_file;
pub mod runner;

pub use mapping::{Mapped, TransformFailure, transform_raw};
pub use runner::{TransformConfig, TransformRunner};
