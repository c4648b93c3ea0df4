//! The registry's state, rebuilt by replaying the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::Schema;

use super::CompatibilityLevel;
use super::log::LogRecord;

/// A parsed schema and its normalized text (what the registry stores, compares and returns).
#[derive(Debug)]
pub(crate) struct StoredSchema {
    pub text: String,
    pub parsed: Schema,
}

/// Parse a schema and give its normalized text: the parsed schema serialized back to compact
/// JSON (keeps docs, defaults, logical types and custom attributes such as `pii`; drops
/// whitespace and spelling variants such as `{"type":"string"}` vs `"string"`). Two schemas
/// are "the same" exactly when their normalized texts are equal.
pub(crate) fn normalize(text: &str) -> Result<StoredSchema, String> {
    let parsed = Schema::parse_str(text).map_err(|e| e.to_string())?;
    let normalized = serde_json::to_string(&parsed).map_err(|e| e.to_string())?;
    // The normalized text must itself parse (it is what clients will fetch).
    let parsed = Schema::parse_str(&normalized)
        .map_err(|e| format!("schema does not survive normalization: {e}"))?;
    Ok(StoredSchema {
        text: normalized,
        parsed,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubjectVersion {
    pub id: u32,
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Global schema id → schema.
    pub schemas: BTreeMap<u32, Arc<StoredSchema>>,
    /// Normalized text → the first id it got.
    pub ids_by_text: HashMap<String, u32>,
    /// Subject → version → id.
    pub subjects: BTreeMap<String, BTreeMap<u32, SubjectVersion>>,
    pub global_level: Option<CompatibilityLevel>,
    pub subject_levels: HashMap<String, CompatibilityLevel>,
    /// Where to continue reading the log.
    pub next_position: i64,
}

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    Yes,
    /// Ignored because it conflicts with an earlier record (first writer wins) or cannot be read.
    Ignored,
}

impl State {
    pub fn apply(&mut self, record: LogRecord) -> Applied {
        match record {
            LogRecord::Schema {
                subject,
                version,
                id,
                schema,
                schema_type,
                deleted,
            } => {
                if schema_type
                    .as_deref()
                    .is_some_and(|t| !t.eq_ignore_ascii_case("AVRO"))
                {
                    tracing::debug!(%subject, version, id, "schema log: ignoring a non-Avro schema");
                    return Applied::Ignored;
                }
                let stored = match self.schemas.get(&id) {
                    Some(existing) => {
                        // Fast path: our own normalized text. Otherwise compare normalized forms.
                        if existing.text != schema {
                            match normalize(&schema) {
                                Ok(s) if s.text == existing.text => {}
                                _ => {
                                    tracing::warn!(%subject, version, id, "schema log: id already taken by another schema; ignoring the later record");
                                    return Applied::Ignored;
                                }
                            }
                        }
                        None
                    }
                    None => match normalize(&schema) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(%subject, version, id, error = %e, "schema log: unreadable schema; ignoring");
                            return Applied::Ignored;
                        }
                    },
                };
                let versions = self.subjects.entry(subject.clone()).or_default();
                if let Some(existing) = versions.get(&version)
                    && existing.id != id
                {
                    tracing::warn!(%subject, version, id, taken_by = existing.id, "schema log: subject version already taken; ignoring the later record");
                    return Applied::Ignored;
                }
                versions.insert(version, SubjectVersion { id, deleted });
                if let Some(s) = stored {
                    self.ids_by_text.entry(s.text.clone()).or_insert(id);
                    self.schemas.insert(id, Arc::new(s));
                }
                Applied::Yes
            }
            LogRecord::SchemaTombstone { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(&subject) {
                    versions.remove(&version);
                    if versions.is_empty() {
                        self.subjects.remove(&subject);
                    }
                }
                Applied::Yes
            }
            LogRecord::Config {
                subject: None,
                level,
            } => {
                self.global_level = level;
                Applied::Yes
            }
            LogRecord::Config {
                subject: Some(subject),
                level,
            } => {
                match level {
                    Some(level) => self.subject_levels.insert(subject, level),
                    None => self.subject_levels.remove(&subject),
                };
                Applied::Yes
            }
            LogRecord::Ignored => Applied::Ignored,
        }
    }

    /// Live (not soft-deleted) versions of a subject, oldest first.
    pub fn live_versions(&self, subject: &str) -> Vec<(u32, u32)> {
        self.subjects
            .get(subject)
            .map(|v| {
                v.iter()
                    .filter(|(_, sv)| !sv.deleted)
                    .map(|(ver, sv)| (*ver, sv.id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Versions of a subject, oldest first, optionally with soft-deleted ones.
    pub fn versions(&self, subject: &str, include_deleted: bool) -> Vec<(u32, u32)> {
        self.subjects
            .get(subject)
            .map(|v| {
                v.iter()
                    .filter(|(_, sv)| include_deleted || !sv.deleted)
                    .map(|(ver, sv)| (*ver, sv.id))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn max_id(&self) -> u32 {
        self.schemas.keys().next_back().copied().unwrap_or(0)
    }

    /// The next version number of a subject: one past the highest ever used (soft-deleted
    /// versions included, as Confluent does).
    pub fn next_version(&self, subject: &str) -> u32 {
        self.subjects
            .get(subject)
            .and_then(|v| v.keys().next_back().copied())
            .unwrap_or(0)
            + 1
    }
}
