//! # hub-transform — raw vendor changes become canonical records
//!
//! Two consume-transform-produce stages in Kafka transactions (`runner`: read_committed input;
//! outputs and input offsets committed together), connected by a repartition topic
//! (`pipeline` describes the records between them):
//! - **map** (`stage_map`): a raw change → mapped, validated changes keyed by canonical key
//!   (`mapping` with `path`/`xml` payload reading, `expr` sandboxed rhai expressions,
//!   `formats`, `functions`; `dry_run` for previews), with identity settled against the cross-reference
//!   `<ns>.xref` and the links `<ns>.links` (`identity`);
//! - **resolve** (`stage_resolve`): each change against its key's last accepted state on the
//!   compacted `<ns>.state.<entity>` (`conflict`: strategies, echo suppression through the
//!   sinks' `<ns>.ledger`, manual resolution) → a canonical version, a conflict record, or
//!   nothing.
//!
//! `mapping_file` holds standalone mapping files with their own test cases (what `hub test`
//! runs).
//!
//! Workers keep no state of their own: each owns the table partitions matching its input
//! partitions and rebuilds them on assignment (`table`).
//!
//! Depends on: hub-schemas (records, codec), hub-topology (mappings, conflict policies),
//! hub-connectors (vendor time formats), rhai (expressions), quick-xml (XML payloads). Must
//! not know about: HTTP, SQL, targets. The mapping
//! functions know nothing of Kafka, so the console's preview and `hub mapping test` can call
//! them directly.

pub mod conflict;
pub mod expr;
pub mod formats;
pub mod functions;
pub mod identity;
pub mod mapping;
pub mod mapping_file;
pub mod path;
pub mod pipeline;
pub mod runner;
mod stage_map;
mod stage_resolve;
mod table;
pub mod xml;

pub use mapping::{Mapped, TransformFailure, dry_run, map_payload, transform_raw};
pub use runner::{TransformConfig, TransformRunner};
