//! Rust views of the envelope records (`RawChange`, `DeadLetter`) and the names of topics and
//! headers that every stage shares.

use serde::{Deserialize, Serialize};

/// Topic names. Tenant rides in keys and headers, never in a topic name: thousands of
/// dealerships share this fixed set of topics.
pub mod topics {
    /// `hub.raw.<vendor>`: changes exactly as the vendor sent them.
    pub const RAW_PREFIX: &str = "hub.raw.";
    /// `hub.canonical.<entity>`: mapped, validated canonical records.
    pub const CANONICAL_PREFIX: &str = "hub.canonical.";
    /// Records that failed mapping or validation, with every reason.
    pub const DLQ_TRANSFORM: &str = "hub.dlq.transform";
    /// Records a target permanently refused, with the target's reason.
    pub const DLQ_SINK: &str = "hub.dlq.sink";
    /// Where the hub's own schema registry keeps its schemas (compacted).
    pub const SCHEMAS: &str = "_schemas";

    /// The raw topic of one vendor.
    pub fn raw(vendor: &str) -> String {
        format!("{RAW_PREFIX}{vendor}")
    }

    /// The hub's topics under one namespace. The default namespace `hub` gives the names
    /// above; another (`staging`, or a test run's own) lets several hubs share one cluster
    /// without seeing each other's records.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Topics {
        namespace: String,
    }

    impl Default for Topics {
        fn default() -> Self {
            Topics::new("hub")
        }
    }

    impl Topics {
        pub fn new(namespace: &str) -> Self {
            Topics {
                namespace: namespace.to_string(),
            }
        }

        pub fn namespace(&self) -> &str {
            &self.namespace
        }

        /// `<ns>.raw.<vendor>`.
        pub fn raw(&self, vendor: &str) -> String {
            format!("{}.raw.{vendor}", self.namespace)
        }

        /// `<ns>.canonical.<entity>`.
        pub fn canonical(&self, entity: crate::Entity) -> String {
            format!("{}.canonical.{}", self.namespace, entity.name())
        }

        /// The entity whose canonical topic this is.
        pub fn entity_of(&self, topic: &str) -> Option<crate::Entity> {
            let rest = topic
                .strip_prefix(&self.namespace)?
                .strip_prefix(".canonical.")?;
            rest.parse().ok()
        }

        /// `<ns>.dlq.transform`.
        pub fn dlq_transform(&self) -> String {
            format!("{}.dlq.transform", self.namespace)
        }

        /// `<ns>.dlq.sink`.
        pub fn dlq_sink(&self) -> String {
            format!("{}.dlq.sink", self.namespace)
        }

        /// `<ns>.changes.<entity>`: mapped changes keyed by their canonical key, between the
        /// transform's map stage and its resolve stage (a repartition topic, internal).
        pub fn changes(&self, entity: crate::Entity) -> String {
            format!("{}.changes.{}", self.namespace, entity.name())
        }

        /// `<ns>.state.<entity>` (compacted): the last accepted version of each key, with
        /// per-field source and time, and the key's pending conflicts.
        pub fn state(&self, entity: crate::Entity) -> String {
            format!("{}.state.{}", self.namespace, entity.name())
        }

        /// `<ns>.xref` (compacted): a vendor record (the raw key) → the canonical keys it
        /// became. Keyed like the raw topics, so each map worker owns its share.
        pub fn xref(&self) -> String {
            format!("{}.xref", self.namespace)
        }

        /// `<ns>.links` (compacted): a person key derived from new contact details → the key
        /// the person already has. Every map worker reads all of it.
        pub fn links(&self) -> String {
            format!("{}.links", self.namespace)
        }

        /// `<ns>.cursors` (compacted): each poller's position per tenant, connector and
        /// vendor object, so a restarted node reads on from where it stopped.
        pub fn cursors(&self) -> String {
            format!("{}.cursors", self.namespace)
        }

        /// `<ns>.ledger`: what sinks wrote into the systems connectors read from, keyed like
        /// the canonical topics; the resolve stage recognises echoes by it.
        pub fn ledger(&self) -> String {
            format!("{}.ledger", self.namespace)
        }

        /// `<ns>.conflicts`: every conflict, with the strategy applied or `pending`, and
        /// every resolution.
        pub fn conflicts(&self) -> String {
            format!("{}.conflicts", self.namespace)
        }

        /// `<ns>.sync-events`: the live sync feed every node publishes its jobs' events to
        /// and relays to its WebSocket clients (`/api/v1/ws/sync-monitor`).
        pub fn sync_events(&self) -> String {
            format!("{}.sync-events", self.namespace)
        }

        /// A consumer group of this namespace, e.g. `<ns>-transform`.
        pub fn group(&self, role: &str) -> String {
            format!("{}-{role}", self.namespace)
        }
    }
}

/// Kafka header names the stages set and read.
pub mod headers {
    pub const TENANT: &str = "hub-tenant";
    pub const CONNECTOR: &str = "hub-connector";
    pub const INGEST_ID: &str = "hub-ingest-id";
    pub const ENTITY: &str = "hub-entity";
    /// On canonical records: JSON object connector id → that system's id for this record
    /// (from the transform's cross-reference), so a sink updates the right record in each
    /// system instead of creating another.
    pub const EXTERNAL_IDS: &str = "hub-external-ids";
    /// Milliseconds since the epoch when ingest accepted the record; for end-to-end latency.
    pub const RECEIVED_AT_MS: &str = "hub-received-at-ms";
}

/// A Kafka record key: `<tenant>/<partition key>`.
pub fn record_key(tenant: &str, key: &str) -> String {
    format!("{tenant}/{key}")
}

/// One change as a vendor reported it, before any mapping (`RawChange.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawChange {
    pub tenant: String,
    pub connector: String,
    pub vendor: String,
    pub vendor_entity: String,
    pub external_id: Option<String>,
    /// `upsert` or `delete`.
    pub operation: String,
    /// The source system's modification time, ms since the epoch.
    pub source_ts: i64,
    /// When the hub accepted it, ms since the epoch.
    pub received_at: i64,
    pub ingest_id: String,
    /// `application/json` or `application/xml`.
    pub content_type: String,
    /// The record's text as received.
    pub payload: String,
}

impl RawChange {
    pub const SCHEMA_TEXT: &'static str = include_str!("../avro/raw_change.avsc");
}

/// One failed rule or field, as listed in a dead letter or a 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: Option<String>,
    /// Stable, machine-readable code, e.g. `required`, `vin_check_digit`, `email_format`.
    pub code: String,
    /// A sentence an integration admin understands.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: Some(field.into()),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A record a stage could not handle, with every reason (`DeadLetter.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// `transform` or `sink`.
    pub stage: String,
    /// `validation`, `mapping`, `decode`, `permanent`, ...
    pub error_class: String,
    pub reason: String,
    pub errors: Vec<FieldError>,
    pub attempts: i32,
    pub tenant: Option<String>,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub original_key: Option<String>,
    pub original_value: Vec<u8>,
    pub failed_at: i64,
}

impl DeadLetter {
    pub const SCHEMA_TEXT: &'static str = include_str!("../avro/dead_letter.avsc");
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
