//! The hub's own schema registry: a server for the part of the Confluent Schema Registry REST API
//! that clients use (register, look up by id, subject versions, compatibility, config), so the
//! hub needs nothing next to Kafka — like Redpanda's built-in registry. Stock Confluent clients
//! (Java, Python `confluent-kafka`, Rust `schema_registry_converter`) talk to it unchanged.
//!
//! Storage is a [`SchemaLog`]: in production a compacted Kafka topic (`_schemas`, Confluent's
//! own record layout, see [`KafkaLog`]), in unit tests memory ([`MemoryLog`]). Every process
//! rebuilds its state by replaying the log; before it assigns an id it catches up on the log, and
//! after it appends it reads its own record back: replay is "first writer wins", so when two hub
//! processes on one broker race, the loser notices and retries with the next id. Several
//! processes therefore agree on every id and version without electing a leader.
//!
//! Only Avro schemas are accepted (`schemaType` absent or `AVRO`), and without references.
//! Schemas are stored normalized (parsed and written back as compact JSON, docs and custom
//! attributes such as `pii` kept): the same schema with other whitespace gets the same id.

mod http;
mod kafka;
mod log;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Serialize};

pub use http::{CONTENT_TYPE_V1, router, routes};
pub use kafka::{KafkaLog, KafkaLogConfig};
pub use log::{LogBatch, LogFuture, LogRecord, MemoryLog, RawLogRecord, SchemaLog};

use state::{State, StoredSchema, SubjectVersion, normalize};

/// How many times a registration is retried after losing a race with another process.
const MAX_REGISTER_ATTEMPTS: usize = 8;

/// The compatibility rule enforced when a new version is registered under a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// No check.
    None,
    /// The new schema can read data written with the latest version.
    Backward,
    /// The new schema can read data written with every version.
    BackwardTransitive,
    /// Data written with the new schema can be read with the latest version.
    Forward,
    /// Data written with the new schema can be read with every version.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every version.
    FullTransitive,
}

impl CompatibilityLevel {
    /// The registry's default when neither the subject nor the global config sets one.
    pub const DEFAULT: CompatibilityLevel = CompatibilityLevel::Backward;

    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "NONE" => CompatibilityLevel::None,
            "BACKWARD" => CompatibilityLevel::Backward,
            "BACKWARD_TRANSITIVE" => CompatibilityLevel::BackwardTransitive,
            "FORWARD" => CompatibilityLevel::Forward,
            "FORWARD_TRANSITIVE" => CompatibilityLevel::ForwardTransitive,
            "FULL" => CompatibilityLevel::Full,
            "FULL_TRANSITIVE" => CompatibilityLevel::FullTransitive,
            _ => return Err(RegistryError::InvalidCompatibilityLevel(s.to_owned())),
        })
    }
}

/// A version of a subject: `latest` (also `-1`) or a number from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl FromStr for VersionSpec {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_owned())),
        }
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSpec::Latest => f.write_str("latest"),
            VersionSpec::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A schema registered under a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredSchema {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    /// The normalized schema text.
    pub schema: String,
}

/// The answer to a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatibilityReport {
    pub is_compatible: bool,
    /// Why not, one message per problem (empty when compatible).
    pub messages: Vec<String>,
}

/// What can go wrong; each maps to Confluent's error code ([`RegistryError::error_code`]) and
/// HTTP status ([`RegistryError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive: '{0}'"
    )]
    InvalidCompatibilityLevel(String),
    #[error("Invalid subject: {0}")]
    InvalidSubject(String),
    #[error("Malformed request: {0}")]
    BadRequest(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {}", messages.join("; "))]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    #[error("Error in the backend data store: {0}")]
    Storage(String),
    #[error("Operation timed out: {0}")]
    Timeout(String),
}

impl RegistryError {
    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaNotFound => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectLevelNotConfigured(_) => 40408,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel(_) => 42203,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::BadRequest(_) => 400,
            RegistryError::Storage(_) => 50001,
            RegistryError::Timeout(_) => 50002,
        }
    }

    /// The HTTP status that goes with [`RegistryError::error_code`].
    pub fn http_status(&self) -> u16 {
        match self.error_code() {
            c if (40400..40500).contains(&c) => 404,
            c if (42200..42300).contains(&c) => 422,
            c if c >= 50000 => 500,
            c => c as u16,
        }
    }

    fn is_not_found(&self) -> bool {
        (40400..40500).contains(&self.error_code())
    }
}

/// The registry: state rebuilt from a [`SchemaLog`], and the operations of the REST API.
pub struct SchemaRegistry {
    log: Arc<dyn SchemaLog>,
    state: RwLock<State>,
    /// One catch-up at a time.
    sync_lock: tokio::sync::Mutex<()>,
    /// One write (registration, config, delete) at a time within this process.
    write_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("log", &self.log.describe())
            .finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// A registry that keeps its schemas in memory only (unit tests, throwaway runs).
    pub fn in_memory() -> Self {
        Self::with_empty_log(Arc::new(MemoryLog::new()))
    }

    fn with_empty_log(log: Arc<dyn SchemaLog>) -> Self {
        SchemaRegistry {
            log,
            state: RwLock::new(State::default()),
            sync_lock: tokio::sync::Mutex::new(()),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A registry over any log; replays the log before returning.
    pub async fn open(log: Arc<dyn SchemaLog>) -> Result<Self, RegistryError> {
        let registry = Self::with_empty_log(log);
        registry.sync().await?;
        let st = registry.read_state();
        tracing::info!(
            log = %registry.log.describe(),
            schemas = st.schemas.len(),
            subjects = st.subjects.len(),
            "schema registry state rebuilt"
        );
        drop(st);
        Ok(registry)
    }

    /// A registry stored in the compacted topic `_schemas` on this Kafka cluster (created if
    /// missing: 1 partition, replication factor 1). See [`SchemaRegistry::open_kafka_with`].
    pub async fn open_kafka(bootstrap: &str) -> Result<Self, RegistryError> {
        Self::open_kafka_with(KafkaLogConfig::new(bootstrap)).await
    }

    /// A registry stored in a Kafka topic, configured (topic name, replication, client options).
    pub async fn open_kafka_with(config: KafkaLogConfig) -> Result<Self, RegistryError> {
        let log = KafkaLog::open(config).await?;
        Self::open(Arc::new(log)).await
    }

    /// The log this registry keeps its state in.
    pub fn log(&self) -> &Arc<dyn SchemaLog> {
        &self.log
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Catch up on the log: apply every record written since the last catch-up (by this
    /// process or any other).
    pub async fn sync(&self) -> Result<(), RegistryError> {
        let _guard = self.sync_lock.lock().await;
        let from = self.read_state().next_position;
        let batch = self.log.read_from(from).await?;
        let mut st = self.write_state();
        for (position, raw) in batch.records {
            if position < st.next_position {
                continue;
            }
            st.apply(LogRecord::decode(&raw));
            st.next_position = position + 1;
        }
        st.next_position = st.next_position.max(batch.next_position);
        Ok(())
    }

    /// Catch up at least past `position`.
    async fn sync_through(&self, position: i64) -> Result<(), RegistryError> {
        for _ in 0..50 {
            self.sync().await?;
            if self.read_state().next_position > position {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(RegistryError::Timeout(format!(
            "the schema log did not return position {position} ({})",
            self.log.describe()
        )))
    }

    /// Run a read; if it finds nothing, catch up on the log (another process may have just
    /// written it) and try once more.
    async fn read_fresh<T>(
        &self,
        f: impl Fn(&State) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        match f(&self.read_state()) {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        self.sync().await?;
        f(&self.read_state())
    }

    /// Catch up, but serve from memory if the log is unreachable.
    async fn sync_best_effort(&self) {
        if let Err(e) = self.sync().await {
            tracing::warn!(error = %e, "schema registry: could not catch up on the log; answering from memory");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Schemas and subjects
    // -----------------------------------------------------------------------------------------

    /// Register a schema under a subject (Confluent `POST /subjects/{subject}/versions`). The same
    /// schema under the same subject answers the existing version; the same schema under another
    /// subject reuses its global id. A new version must pass the subject's compatibility level.
    pub async fn register(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<RegisteredSchema, RegistryError> {
        validate_subject(subject)?;
        let stored = normalize(schema).map_err(RegistryError::InvalidSchema)?;
        let _write = self.write_lock.lock().await;
        for attempt in 1..=MAX_REGISTER_ATTEMPTS {
            self.sync().await?;
            let (id, version) = {
                let st = self.read_state();
                if let Some(found) = find_in_subject(&st, subject, &stored.text, false) {
                    return Ok(found);
                }
                let level = effective_level(&st, subject);
                let messages = compatibility_messages(&st, subject, &stored.parsed, level, None);
                if !messages.is_empty() {
                    return Err(RegistryError::Incompatible {
                        subject: subject.to_owned(),
                        messages,
                    });
                }
                let id = st
                    .ids_by_text
                    .get(&stored.text)
                    .copied()
                    .unwrap_or_else(|| st.max_id() + 1);
                (id, st.next_version(subject))
            };
            let record = LogRecord::Schema {
                subject: subject.to_owned(),
                version,
                id,
                schema: stored.text.clone(),
                schema_type: None,
                deleted: false,
            };
            let position = self.log.append(record.encode()).await?;
            self.sync_through(position).await?;

            let winner = {
                let st = self.read_state();
                match st.subjects.get(subject).and_then(|v| v.get(&version)) {
                    Some(sv)
                        if sv.id == id
                            && st.schemas.get(&id).is_some_and(|s| s.text == stored.text) =>
                    {
                        tracing::info!(subject, version, id, "schema registered");
                        return Ok(RegisteredSchema {
                            subject: subject.to_owned(),
                            version,
                            id,
                            schema: stored.text.clone(),
                        });
                    }
                    // Another process took this subject version first. Our record has the same
                    // key, so compaction would keep ours and lose theirs: write theirs again.
                    Some(sv) => st.schemas.get(&sv.id).map(|s| LogRecord::Schema {
                        subject: subject.to_owned(),
                        version,
                        id: sv.id,
                        schema: s.text.clone(),
                        schema_type: None,
                        deleted: sv.deleted,
                    }),
                    // Our id was taken by another schema first: our record is ignored on replay.
                    None => None,
                }
            };
            if let Some(winner) = winner {
                self.log.append(winner.encode()).await?;
            }
            tracing::warn!(
                subject,
                attempt,
                "schema registration lost a race with another registry process; retrying"
            );
        }
        Err(RegistryError::Storage(format!(
            "could not register under subject '{subject}' after {MAX_REGISTER_ATTEMPTS} attempts (concurrent registrations)"
        )))
    }

    /// Find a schema under a subject (Confluent `POST /subjects/{subject}`).
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
        include_deleted: bool,
    ) -> Result<RegisteredSchema, RegistryError> {
        let stored = normalize(schema).map_err(RegistryError::InvalidSchema)?;
        self.read_fresh(|st| {
            if st.versions(subject, include_deleted).is_empty() {
                return Err(RegistryError::SubjectNotFound(subject.to_owned()));
            }
            find_in_subject(st, subject, &stored.text, include_deleted)
                .ok_or(RegistryError::SchemaNotFound)
        })
        .await
    }

    /// The schema with this global id (Confluent `GET /schemas/ids/{id}`), soft-deleted or not.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        self.read_fresh(|st| {
            st.schemas
                .get(&id)
                .map(|s| s.text.clone())
                .ok_or(RegistryError::SchemaNotFound)
        })
        .await
    }

    /// The subject versions that use this global id (Confluent `GET /schemas/ids/{id}/versions`).
    pub async fn subject_versions_of_id(
        &self,
        id: u32,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        self.read_fresh(|st| {
            if !st.schemas.contains_key(&id) {
                return Err(RegistryError::SchemaNotFound);
            }
            Ok(st
                .subjects
                .iter()
                .flat_map(|(subject, versions)| {
                    versions
                        .iter()
                        .filter(|(_, sv)| sv.id == id && !sv.deleted)
                        .map(|(v, _)| (subject.clone(), *v))
                })
                .collect())
        })
        .await
    }

    /// Every subject with at least one version (soft-deleted ones too if asked).
    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>, RegistryError> {
        self.sync_best_effort().await;
        let st = self.read_state();
        Ok(st
            .subjects
            .iter()
            .filter(|(_, versions)| include_deleted || versions.values().any(|sv| !sv.deleted))
            .map(|(s, _)| s.clone())
            .collect())
    }

    /// The version numbers of a subject, oldest first.
    pub async fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        self.sync_best_effort().await;
        self.read_fresh(|st| {
            let versions: Vec<u32> = st
                .versions(subject, include_deleted)
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            if versions.is_empty() {
                return Err(RegistryError::SubjectNotFound(subject.to_owned()));
            }
            Ok(versions)
        })
        .await
    }

    /// One version of a subject (Confluent `GET /subjects/{subject}/versions/{version}`).
    pub async fn version(
        &self,
        subject: &str,
        version: VersionSpec,
        include_deleted: bool,
    ) -> Result<RegisteredSchema, RegistryError> {
        if version == VersionSpec::Latest {
            self.sync_best_effort().await;
        }
        self.read_fresh(|st| resolve_version(st, subject, version, include_deleted))
            .await
    }

    /// Is this schema compatible with a subject's versions (Confluent
    /// `POST /compatibility/subjects/{subject}/versions[/{version}]`)? Without a version: against
    /// the versions the subject's level checks (the latest, or all for `*_TRANSITIVE`); a subject
    /// with no versions accepts anything. With a version: against that one version.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        schema: &str,
    ) -> Result<CompatibilityReport, RegistryError> {
        let stored = normalize(schema).map_err(RegistryError::InvalidSchema)?;
        self.sync_best_effort().await;
        let st = self.read_state();
        let level = effective_level(&st, subject);
        let only = match version {
            None => None,
            Some(spec) => Some(resolve_version(&st, subject, spec, false)?),
        };
        let messages = compatibility_messages(
            &st,
            subject,
            &stored.parsed,
            level,
            only.as_ref().map(|r| r.id),
        );
        Ok(CompatibilityReport {
            is_compatible: messages.is_empty(),
            messages,
        })
    }

    /// Soft-delete every version of a subject, or (`permanent`, after a soft delete) erase them.
    /// Answers the versions deleted. Schema ids stay resolvable, as in Confluent.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let _write = self.write_lock.lock().await;
        self.sync().await?;
        let versions: Vec<(u32, SubjectVersion)> = {
            let st = self.read_state();
            let Some(versions) = st.subjects.get(subject) else {
                return Err(RegistryError::SubjectNotFound(subject.to_owned()));
            };
            versions.iter().map(|(v, sv)| (*v, *sv)).collect()
        };
        let any_live = versions.iter().any(|(_, sv)| !sv.deleted);
        let mut last = -1;
        if permanent {
            if any_live {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
            for (version, _) in &versions {
                let record = LogRecord::SchemaTombstone {
                    subject: subject.to_owned(),
                    version: *version,
                };
                last = self.log.append(record.encode()).await?;
            }
        } else {
            if !any_live {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
            }
            for (version, sv) in versions.iter().filter(|(_, sv)| !sv.deleted) {
                last = self
                    .log
                    .append(self.soft_delete_record(subject, *version, sv.id)?.encode())
                    .await?;
            }
        }
        if last >= 0 {
            self.sync_through(last).await?;
        }
        Ok(versions
            .iter()
            .filter(|(_, sv)| permanent || !sv.deleted)
            .map(|(v, _)| *v)
            .collect())
    }

    /// Soft-delete one version of a subject, or (`permanent`, after a soft delete) erase it.
    pub async fn delete_version(
        &self,
        subject: &str,
        version: VersionSpec,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let _write = self.write_lock.lock().await;
        self.sync().await?;
        let (number, sv) = {
            let st = self.read_state();
            // A number may name a soft-deleted version (to erase it, or to say it is deleted).
            let include_deleted = permanent || version != VersionSpec::Latest;
            let found = resolve_version(&st, subject, version, include_deleted)?;
            let sv = st.subjects[subject][&found.version];
            (found.version, sv)
        };
        let record = if permanent {
            if !sv.deleted {
                return Err(RegistryError::VersionNotSoftDeleted {
                    subject: subject.to_owned(),
                    version: number,
                });
            }
            LogRecord::SchemaTombstone {
                subject: subject.to_owned(),
                version: number,
            }
        } else {
            if sv.deleted {
                return Err(RegistryError::VersionSoftDeleted {
                    subject: subject.to_owned(),
                    version: number,
                });
            }
            self.soft_delete_record(subject, number, sv.id)?
        };
        let position = self.log.append(record.encode()).await?;
        self.sync_through(position).await?;
        Ok(number)
    }

    fn soft_delete_record(
        &self,
        subject: &str,
        version: u32,
        id: u32,
    ) -> Result<LogRecord, RegistryError> {
        let st = self.read_state();
        let schema = st.schemas.get(&id).ok_or(RegistryError::SchemaNotFound)?;
        Ok(LogRecord::Schema {
            subject: subject.to_owned(),
            version,
            id,
            schema: schema.text.clone(),
            schema_type: None,
            deleted: true,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Config
    // -----------------------------------------------------------------------------------------

    /// The global compatibility level (default BACKWARD).
    pub async fn global_compatibility(&self) -> CompatibilityLevel {
        self.sync_best_effort().await;
        self.read_state()
            .global_level
            .unwrap_or(CompatibilityLevel::DEFAULT)
    }

    /// Set the global compatibility level.
    pub async fn set_global_compatibility(
        &self,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        self.write_config(LogRecord::Config {
            subject: None,
            level: Some(level),
        })
        .await
    }

    /// The level configured on a subject, if any.
    pub async fn subject_compatibility(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.sync_best_effort().await;
        self.read_state().subject_levels.get(subject).copied()
    }

    /// The level that applies to a subject: its own, else the global one, else BACKWARD.
    pub async fn effective_compatibility(&self, subject: &str) -> CompatibilityLevel {
        self.sync_best_effort().await;
        effective_level(&self.read_state(), subject)
    }

    /// Set a subject's compatibility level.
    pub async fn set_subject_compatibility(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        validate_subject(subject)?;
        self.write_config(LogRecord::Config {
            subject: Some(subject.to_owned()),
            level: Some(level),
        })
        .await
    }

    /// Remove a subject's own level (the global one applies again); answers the removed level.
    pub async fn delete_subject_compatibility(
        &self,
        subject: &str,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let Some(level) = self.subject_compatibility(subject).await else {
            return Err(RegistryError::SubjectLevelNotConfigured(subject.to_owned()));
        };
        self.write_config(LogRecord::Config {
            subject: Some(subject.to_owned()),
            level: None,
        })
        .await?;
        Ok(level)
    }

    async fn write_config(&self, record: LogRecord) -> Result<(), RegistryError> {
        let _write = self.write_lock.lock().await;
        let position = self.log.append(record.encode()).await?;
        self.sync_through(position).await
    }
}

fn validate_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.len() > 1024 || subject.chars().any(char::is_control) {
        return Err(RegistryError::InvalidSubject(format!(
            "'{}' must be 1 to 1024 characters without control characters",
            subject.escape_debug()
        )));
    }
    Ok(())
}

fn effective_level(st: &State, subject: &str) -> CompatibilityLevel {
    st.subject_levels
        .get(subject)
        .copied()
        .or(st.global_level)
        .unwrap_or(CompatibilityLevel::DEFAULT)
}

/// The newest version of a subject holding exactly this schema.
fn find_in_subject(
    st: &State,
    subject: &str,
    text: &str,
    include_deleted: bool,
) -> Option<RegisteredSchema> {
    let id = *st.ids_by_text.get(text)?;
    // Also match ids that were given to the same text by a racing process.
    st.versions(subject, include_deleted)
        .into_iter()
        .rev()
        .find(|(_, vid)| *vid == id || st.schemas.get(vid).is_some_and(|s| s.text == text))
        .map(|(version, vid)| RegisteredSchema {
            subject: subject.to_owned(),
            version,
            id: vid,
            schema: text.to_owned(),
        })
}

fn resolve_version(
    st: &State,
    subject: &str,
    version: VersionSpec,
    include_deleted: bool,
) -> Result<RegisteredSchema, RegistryError> {
    let versions = st.versions(subject, include_deleted);
    if versions.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_owned()));
    }
    let found = match version {
        VersionSpec::Latest => versions.last().copied(),
        VersionSpec::Number(n) => versions.iter().find(|(v, _)| *v == n).copied(),
    };
    let (number, id) = found.ok_or_else(|| RegistryError::VersionNotFound {
        subject: subject.to_owned(),
        version: version.to_string(),
    })?;
    let schema = st.schemas.get(&id).ok_or(RegistryError::SchemaNotFound)?;
    Ok(RegisteredSchema {
        subject: subject.to_owned(),
        version: number,
        id,
        schema: schema.text.clone(),
    })
}

/// Why `new` may not join `subject` under `level` (empty: it may). `only`: check against that
/// schema id only, instead of the versions the level selects.
fn compatibility_messages(
    st: &State,
    subject: &str,
    new: &Schema,
    level: CompatibilityLevel,
    only: Option<u32>,
) -> Vec<String> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let live = st.live_versions(subject);
    let against: Vec<(u32, u32)> = match only {
        Some(id) => live
            .iter()
            .filter(|(_, vid)| *vid == id)
            .copied()
            .rev()
            .take(1)
            .collect(),
        None if level.transitive() => live,
        None => live.last().copied().into_iter().collect(),
    };
    let mut messages = Vec::new();
    for (version, id) in against {
        let Some(old) = st.schemas.get(&id) else {
            continue;
        };
        let old: &StoredSchema = old;
        if level.backward()
            && let Some(problem) = can_read(&old.parsed, new)
        {
            messages.push(format!(
                "BACKWARD: the new schema cannot read data written with version {version} (id {id}): {problem}"
            ));
        }
        if level.forward()
            && let Some(problem) = can_read(new, &old.parsed)
        {
            messages.push(format!(
                "FORWARD: version {version} (id {id}) cannot read data written with the new schema: {problem}"
            ));
        }
    }
    messages
}

/// `None` when `reader` can read everything `writer` wrote; otherwise why not.
fn can_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => Some(
            "only partially compatible: some values (enum symbols or union branches) the writer can produce cannot be read"
                .to_owned(),
        ),
        Err(e) => Some(e.to_string()),
    }
}
