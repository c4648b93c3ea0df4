//! # hub-topology — the declarative description of what a hub node runs
//!
//! Owns the topology file: tenants, their connectors and the vendor entities each syncs, the
//! field mappings from vendor records to canonical entities (transformations with their
//! arguments, validation rules, expressions), the targets and the routes of canonical
//! entities to them, and the node's runtime settings. `Topology::parse` checks a file offline
//! (no network) with errors that name the line — including every transformation's
//! arguments, and compiles its expressions and regular expressions (`expr`) so a running
//! hub never compiles per record; the runtime pieces are built from it by the `hub` binary.
//!
//! Depends on: hub-schemas (entity names), rhai and regex (compiled once here), chrono-tz
//! and phonenumber (to check zone and region names). Must not know about: Kafka, HTTP, SQL.

pub mod conflict;
mod expr;
pub mod metrics;
mod model;
mod validate;

pub use expr::{
    Expression, ExpressionKind, MAX_COLLECTION_LEN, MAX_OPERATIONS, MAX_STRING_BYTES, Pattern,
    sandboxed_engine,
};
pub use model::*;
pub use validate::{TopologyError, parse, parse_with_env};

/// The topology `hub demo` runs when given none: two vendors, every entity routed to SQL.
pub const DEMO_TOPOLOGY: &str = include_str!("../examples/demo.yaml");
