//! The records the transform's two stages exchange through Kafka, and the pure steps that
//! turn one into the next.
//!
//! ```text
//! <ns>.raw.<vendor> ─► map stage ─► <ns>.changes.<entity> ─► resolve stage ─► <ns>.canonical.<entity>
//!  key: raw key        │  (mapping,     key: tenant/canonical key    │  (conflicts,   <ns>.state.<entity>
//!                      │   identity)                                 │   echoes)      <ns>.conflicts
//!                      └─► <ns>.xref (raw key → canonical keys)       └─ reads <ns>.ledger
//! ```
//!
//! The map stage is keyed like the raw topics (one vendor record's changes stay in order);
//! the resolve stage like the canonical topics (one customer's or vehicle's changes from
//! every system meet on one partition, whatever system they came from). Each stage owns the
//! table partitions matching its input partitions and rebuilds them on assignment, so both
//! scale by partitions and keep no state of their own. The records here are JSON: they are
//! the hub's internal contract between its own stages, not a data product; the canonical
//! topics stay Avro.

use std::collections::BTreeMap;

use hub_schemas::Entity;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::conflict::{FieldOutcome, FieldState, KeyState, PendingConflict, Resolution};

/// Where a change came from: what the canonical record's envelope says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub vendor: String,
    pub connector: String,
    pub vendor_entity: String,
    #[serde(default)]
    pub external_id: Option<String>,
    /// The source system's modification time, epoch milliseconds.
    pub source_ts: i64,
    /// When ingest accepted the change, epoch milliseconds.
    pub received_at: i64,
    pub ingest_id: String,
}

/// On `<ns>.changes.<entity>`, keyed `<tenant>/<canonical key>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeMsg {
    /// A vendor's change, mapped and validated.
    Change(MappedChange),
    /// A person's decision on a pending conflict (from the control plane).
    Resolve(ResolveRequest),
}

impl ChangeMsg {
    pub fn tenant(&self) -> &str {
        match self {
            ChangeMsg::Change(c) => &c.tenant,
            ChangeMsg::Resolve(r) => &r.tenant,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            ChangeMsg::Change(c) => &c.key,
            ChangeMsg::Resolve(r) => &r.key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappedChange {
    pub tenant: String,
    pub entity: String,
    pub key: String,
    pub origin: Origin,
    /// Canonical fields by dot path (`address.city`), nulls left out, plus `deleted`.
    pub fields: BTreeMap<String, Value>,
    /// [`hub_schemas::echo::fields_hash`] of `fields`.
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub tenant: String,
    pub entity: String,
    pub key: String,
    pub conflict_id: String,
    pub resolution: Resolution,
}

impl ResolveRequest {
    /// The record that submits this resolution — (topic, key, value) on
    /// `<ns>.changes.<entity>` — so it travels the transform path like any change and meets
    /// the key's state in order. `None` for an unknown entity name.
    pub fn record(&self, names: &hub_schemas::Topics) -> Option<(String, String, Vec<u8>)> {
        let entity: Entity = self.entity.parse().ok()?;
        let value = serde_json::to_vec(&ChangeMsg::Resolve(self.clone())).ok()?;
        Some((
            names.changes(entity),
            hub_schemas::records::record_key(&self.tenant, &self.key),
            value,
        ))
    }
}

/// On `<ns>.state.<entity>` (compacted), keyed `<tenant>/<canonical key>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub state: KeyState,
    /// The change (or resolution) that made the current version.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// Conflicts held for a person, by conflict id.
    #[serde(default)]
    pub pending: BTreeMap<String, PendingConflict>,
    /// Per connector, the fields as it last reported them. Vendors send whole records, so a
    /// field a system reports with the value it reported before is not a change by that
    /// system and must not override what another system changed meanwhile.
    #[serde(default)]
    pub reported: BTreeMap<String, BTreeMap<String, Value>>,
    /// Per connector, that system's id of this record: the cross-reference sinks use to
    /// update the right record in each system (header `hub-external-ids` of every canonical
    /// version).
    #[serde(default)]
    pub external_ids: BTreeMap<String, String>,
}

/// On `<ns>.xref` (compacted), keyed like the raw record (`<tenant>/<connector>/<id>`): the
/// canonical key each canonical entity of this vendor record was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct XrefRecord {
    pub keys: BTreeMap<String, String>,
}

pub use hub_schemas::echo::LedgerRecord;

/// What a conflict record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStatus {
    /// Held for a person (strategy `manual`).
    Pending,
    /// Settled by the configured strategy (`source_wins`, `target_wins`, `merge`, `skip`).
    AutoResolved,
    /// A person's resolution was applied: one new canonical version.
    Resolved,
    /// The resolution was refused (see `reason`); the conflict stays pending.
    ResolutionRejected,
    /// The held fields changed since the conflict was raised; nothing to resolve any more.
    Superseded,
}

/// One field of a conflict: both sides and what was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictField {
    pub field: String,
    pub current: FieldState,
    pub incoming: FieldState,
    /// The strategy that applied, as the topology names it.
    pub strategy: String,
    pub outcome: FieldOutcome,
}

/// On `<ns>.conflicts`, keyed `<tenant>/<canonical key>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// `<entity>:<ingest id>`: stable, so a replayed change raises the same conflict.
    pub id: String,
    pub tenant: String,
    pub entity: String,
    pub key: String,
    pub status: ConflictStatus,
    pub origin: Option<Origin>,
    pub fields: Vec<ConflictField>,
    /// The key state's version after this record's decision.
    pub version: u64,
    pub at: i64,
    #[serde(default)]
    pub resolution: Option<Resolution>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A canonical document's fields (no envelope) by dot path, nulls left out; nested records
/// (`address`) are flattened so conflicts are judged per field.
pub fn flatten_fields(doc: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(m) = doc {
        for (k, v) in m {
            if k == "deleted" || !hub_schemas::ENVELOPE_FIELDS.contains(&k.as_str()) {
                walk(k, v, &mut out);
            }
        }
    }
    out
}

/// The canonical document of a key's state: the envelope of `origin` and the state's fields.
/// `source_updated_at` is the latest source time among the fields, so a sink that keeps the
/// newest version per key never mistakes a merged version for an older one.
pub fn canonical_doc(entity: Entity, tenant: &str, key: &str, record: &StateRecord) -> Value {
    let mut doc = Map::new();
    let latest = record
        .state
        .fields
        .values()
        .map(|f| f.source_ts)
        .max()
        .unwrap_or_default();
    let origin = record.origin.as_ref();
    doc.insert("tenant_id".into(), tenant.into());
    doc.insert("key".into(), key.into());
    doc.insert(
        "source_vendor".into(),
        origin.map_or("hub", |o| o.vendor.as_str()).into(),
    );
    doc.insert(
        "source_connector".into(),
        origin.map_or("hub", |o| o.connector.as_str()).into(),
    );
    doc.insert(
        "source_entity".into(),
        origin
            .map_or(entity.name(), |o| o.vendor_entity.as_str())
            .into(),
    );
    doc.insert(
        "external_id".into(),
        origin
            .and_then(|o| o.external_id.clone())
            .map_or(Value::Null, Value::String),
    );
    doc.insert("source_updated_at".into(), latest.into());
    doc.insert(
        "received_at".into(),
        origin.map_or(latest, |o| o.received_at).into(),
    );
    doc.insert(
        "ingest_id".into(),
        origin.map_or("", |o| o.ingest_id.as_str()).into(),
    );
    let mut deleted = false;
    for (path, f) in &record.state.fields {
        if path == "deleted" {
            deleted = f.value.as_bool().unwrap_or(false);
            continue;
        }
        set_path(&mut doc, path, f.value.clone());
    }
    doc.insert("deleted".into(), deleted.into());
    if entity == Entity::Customer {
        doc.insert("customer_key".into(), key.into());
    }
    Value::Object(doc)
}

fn set_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let child = obj
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(m) = child {
                set_path(m, rest, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_flatten_and_rebuild_into_the_same_document() {
        let doc = json!({"tenant_id":"t","key":"k","ingest_id":"i","first_name":"Pat","phone":null,
            "address":{"city":"Austin","state":"TX","line1":null},"deleted":false});
        let fields = flatten_fields(&doc);
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            ["address.city", "address.state", "deleted", "first_name"]
        );
        let state = KeyState {
            fields: fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        FieldState {
                            value: v,
                            source: "sf".into(),
                            source_ts: 5,
                        },
                    )
                })
                .collect(),
            version: 1,
        };
        let rec = StateRecord {
            state,
            ..StateRecord::default()
        };
        let back = canonical_doc(Entity::Vehicle, "t", "k", &rec);
        assert_eq!(back["address"]["city"], "Austin");
        assert_eq!(back["first_name"], "Pat");
        assert_eq!(back["deleted"], false);
        assert_eq!(back["source_updated_at"], 5);
        assert_eq!(back["source_vendor"], "hub");
    }

    #[test]
    fn change_messages_round_trip_as_tagged_json() {
        let msg = ChangeMsg::Resolve(ResolveRequest {
            tenant: "t".into(),
            entity: "customer".into(),
            key: "k".into(),
            conflict_id: "customer:i-1".into(),
            resolution: Resolution {
                resolved_by: "console:jo".into(),
                resolved_at_ms: 9,
                fields: BTreeMap::new(),
            },
        });
        let text = serde_json::to_string(&msg).unwrap();
        assert!(text.starts_with(r#"{"kind":"resolve""#), "{text}");
        assert_eq!(serde_json::from_str::<ChangeMsg>(&text).unwrap(), msg);
    }
}
