//! The registry's storage: an append-only log of registrations and config changes, laid out
//! like Confluent Schema Registry's `_schemas` topic so either can read the other's records.
//!
//! Every process rebuilds its state by replaying the log in order. Replay is deterministic and
//! "first writer wins": a record that claims an id already taken by a different schema, or a
//! subject version already taken by a different id, is ignored. That is what keeps several hub
//! processes that share one broker consistent without electing a leader.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{CompatibilityLevel, RegistryError};

/// A boxed, sendable future (the log is used as `Arc<dyn SchemaLog>`).
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// One record of the log, as bytes: key and value (`None` is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLogRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What [`SchemaLog::read_from`] returns: the records from a position up to the log's end at the
/// time of the call, each with its position, and the position to continue from.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub records: Vec<(i64, RawLogRecord)>,
    pub next_position: i64,
}

/// Durable, totally ordered storage of the registry's records.
pub trait SchemaLog: Send + Sync + 'static {
    /// Append one record; resolves once it is durable, with its position in the log.
    fn append(&self, record: RawLogRecord) -> LogFuture<'_, i64>;
    /// Every record at or after `position` up to the end of the log as of this call.
    fn read_from(&self, position: i64) -> LogFuture<'_, LogBatch>;
    /// A short description for logs and errors (e.g. `kafka:_schemas@127.0.0.1:9092`).
    fn describe(&self) -> String;
}

/// A log in memory: for unit tests and for a single process that needs no durability.
/// Cloning an `Arc<MemoryLog>` into two registries simulates two processes on one broker.
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Vec<RawLogRecord>>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the log holds.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every record, in order.
    pub fn records(&self) -> Vec<RawLogRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl SchemaLog for MemoryLog {
    fn append(&self, record: RawLogRecord) -> LogFuture<'_, i64> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.push(record);
        let position = records.len() as i64 - 1;
        Box::pin(async move { Ok(position) })
    }

    fn read_from(&self, position: i64) -> LogFuture<'_, LogBatch> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let start = position.max(0) as usize;
        let batch = LogBatch {
            records: records
                .iter()
                .enumerate()
                .skip(start)
                .map(|(i, r)| (i as i64, r.clone()))
                .collect(),
            next_position: (records.len() as i64).max(position),
        };
        Box::pin(async move { Ok(batch) })
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Record layout (Confluent's): keys and values are JSON.
// ---------------------------------------------------------------------------------------------

/// Key of a schema registration: `{"keytype":"SCHEMA","subject":..,"version":..,"magic":1}`.
/// Field order is fixed so that the same subject and version always give the same key bytes
/// (compaction keys on bytes).
#[derive(Debug, Serialize)]
struct SchemaKey<'a> {
    keytype: &'static str,
    subject: &'a str,
    version: u32,
    magic: u32,
}

/// Key of a config record: `{"keytype":"CONFIG","subject":null|"s","magic":0}`.
#[derive(Debug, Serialize)]
struct ConfigKey<'a> {
    keytype: &'static str,
    subject: Option<&'a str>,
    magic: u32,
}

/// Any key, as read back (other key types — NOOP, DELETE_SUBJECT, MODE, ... — are ignored).
#[derive(Debug, Deserialize)]
struct AnyKey {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaValue {
    subject: String,
    version: u32,
    id: u32,
    schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema_type: Option<String>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigValue {
    #[serde(default)]
    compatibility_level: Option<String>,
}

/// A decoded log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// A subject version registered (or soft-deleted, `deleted: true`).
    Schema {
        subject: String,
        version: u32,
        id: u32,
        schema: String,
        schema_type: Option<String>,
        deleted: bool,
    },
    /// A subject version hard-deleted.
    SchemaTombstone { subject: String, version: u32 },
    /// The compatibility level of a subject (`None`: global) set, or cleared (`level: None`).
    Config {
        subject: Option<String>,
        level: Option<CompatibilityLevel>,
    },
    /// A record this registry does not act on.
    Ignored,
}

impl LogRecord {
    /// The bytes to append for this record.
    pub fn encode(&self) -> RawLogRecord {
        match self {
            LogRecord::Schema {
                subject,
                version,
                id,
                schema,
                schema_type,
                deleted,
            } => RawLogRecord {
                key: json_bytes(&SchemaKey {
                    keytype: "SCHEMA",
                    subject,
                    version: *version,
                    magic: 1,
                }),
                value: Some(json_bytes(&SchemaValue {
                    subject: subject.clone(),
                    version: *version,
                    id: *id,
                    schema: schema.clone(),
                    schema_type: schema_type.clone(),
                    deleted: *deleted,
                })),
            },
            LogRecord::SchemaTombstone { subject, version } => RawLogRecord {
                key: json_bytes(&SchemaKey {
                    keytype: "SCHEMA",
                    subject,
                    version: *version,
                    magic: 1,
                }),
                value: None,
            },
            LogRecord::Config { subject, level } => RawLogRecord {
                key: json_bytes(&ConfigKey {
                    keytype: "CONFIG",
                    subject: subject.as_deref(),
                    magic: 0,
                }),
                value: level.map(|l| {
                    json_bytes(&ConfigValue {
                        compatibility_level: Some(l.as_str().to_owned()),
                    })
                }),
            },
            LogRecord::Ignored => RawLogRecord {
                key: br#"{"keytype":"NOOP","magic":0}"#.to_vec(),
                value: None,
            },
        }
    }

    /// Decode a record read from the log. Records this registry cannot make sense of (other
    /// key types, malformed JSON written by someone else) decode to [`LogRecord::Ignored`]: a
    /// foreign record must not stop the registry from starting.
    pub fn decode(raw: &RawLogRecord) -> LogRecord {
        let Ok(key) = serde_json::from_slice::<AnyKey>(&raw.key) else {
            return LogRecord::Ignored;
        };
        match key.keytype.as_str() {
            "SCHEMA" => match &raw.value {
                None => match (key.subject, key.version) {
                    (Some(subject), Some(version)) => {
                        LogRecord::SchemaTombstone { subject, version }
                    }
                    _ => LogRecord::Ignored,
                },
                Some(value) => match serde_json::from_slice::<SchemaValue>(value) {
                    Ok(v) => LogRecord::Schema {
                        subject: v.subject,
                        version: v.version,
                        id: v.id,
                        schema: v.schema,
                        schema_type: v.schema_type,
                        deleted: v.deleted,
                    },
                    Err(_) => LogRecord::Ignored,
                },
            },
            "CONFIG" => match &raw.value {
                None => LogRecord::Config {
                    subject: key.subject,
                    level: None,
                },
                Some(value) => match serde_json::from_slice::<ConfigValue>(value) {
                    Ok(ConfigValue {
                        compatibility_level: Some(level),
                    }) => match level.parse() {
                        Ok(level) => LogRecord::Config {
                            subject: key.subject,
                            level: Some(level),
                        },
                        Err(_) => LogRecord::Ignored,
                    },
                    _ => LogRecord::Ignored,
                },
            },
            _ => LogRecord::Ignored,
        }
    }
}

fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
