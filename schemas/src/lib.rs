//! # hub-schemas — the records that flow between the stages
//!
//! Owns the data contract: the Avro schemas in `schemas/avro/` (the `RawChange` envelope, the
//! eight canonical entities, the `DeadLetter`), the Rust views of the envelope records, the
//! schema-guided conversion between JSON documents and Avro values, the Confluent wire-format
//! codec (through `schema_registry_converter`), and the hub's own Confluent-compatible schema
//! registry server (backed by a compacted `_schemas` topic).
//!
//! Depends on: apache-avro, schema_registry_converter, rdkafka (only in the registry's log).
//! Must not know about: vendors, mappings, HTTP ingest, sinks, tenants' topologies.

pub mod codec;
pub mod convert;
pub mod echo;
pub mod entity;
pub mod records;
pub mod registry;

pub use codec::{Codec, CodecError};
pub use convert::{ConvertError, avro_to_json, json_to_avro};
pub use entity::{ENVELOPE_FIELDS, Entity};
pub use records::topics::Topics;
pub use records::{DeadLetter, FieldError, RawChange, headers, topics};
