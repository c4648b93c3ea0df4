//! What the conflict core reads and writes: the last accepted state of one key, an incoming
//! change to it, and the sink's write-ledger entry used to recognise echoes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field's last accepted value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldState {
    pub value: Value,
    /// Connector id that supplied the value (or, after a manual resolution with an edited
    /// value, who resolved it — see [`super::Resolution::resolved_by`]).
    pub source: String,
    /// The source system's own modification time of the change, in epoch milliseconds.
    pub source_ts: i64,
}

/// The last accepted version of one key: the value of the compacted `hub.state.<entity>`
/// topic for that key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    pub fields: BTreeMap<String, FieldState>,
    /// Incremented by exactly one for every decision that changes `fields`.
    pub version: u64,
}

/// An incoming change to one key, already mapped to canonical field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Connector id the change came from.
    pub source: String,
    /// The source system's modification time, epoch milliseconds.
    pub source_ts: i64,
    pub fields: BTreeMap<String, Value>,
    /// Hash of the change's content, computed the same way as the sink's write ledger hashes
    /// what it wrote to this source. `None` disables echo detection for this change.
    #[serde(default)]
    pub content_hash: Option<String>,
}

impl Change {
    /// The [`FieldState`] this change would leave for `field`, if it carries that field.
    pub fn field_state(&self, field: &str) -> Option<FieldState> {
        self.fields.get(field).map(|value| FieldState {
            value: value.clone(),
            source: self.source.clone(),
            source_ts: self.source_ts,
        })
    }
}

/// What the hub itself last wrote for this key to the change's source (the sink's
/// `hub_write_ledger` row for that target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub content_hash: String,
    /// The canonical version the hub wrote; kept for the decision record.
    pub version: u64,
}
