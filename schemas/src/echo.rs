//! The content hash of echo suppression, computed the same way on both sides.
//!
//! A sink that writes into a system a connector reads from records, before the write, the
//! hash of what it writes *as that connector will report it back*: the canonical document
//! projected onto the canonical fields the connector's inbound mapping fills, plus `deleted`
//! ([`project`]). The transform's resolve stage hashes each incoming change's mapped fields
//! the same way; equal hashes mean the change is the hub's own write coming back (an echo),
//! which must neither conflict nor propagate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// On `<ns>.ledger`, keyed `<tenant>/<canonical key>`: a sink is about to write this content
/// into the system `connector` reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub connector: String,
    pub entity: String,
    /// [`fields_hash`] of the written document projected onto the
    /// connector's mapped fields.
    pub content_hash: String,
    /// The written record's `source_updated_at`.
    pub version: u64,
    pub written_at: i64,
}

/// The fields named by `fields` (dot paths such as `address.city`, plus `deleted`) that have
/// a value in `doc`. Nulls are left out, as a mapping leaves out the fields it finds empty.
pub fn project<'a>(
    doc: &Value,
    fields: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for name in fields {
        let mut v = doc;
        for part in name.split('.') {
            v = v.get(part).unwrap_or(&Value::Null);
        }
        if !v.is_null() {
            out.insert(name.to_string(), v.clone());
        }
    }
    out
}

/// The canonical fields a connector reports back for `entity`, given the canonical fields its
/// inbound mapping fills: those, plus `deleted`, plus for leads the person's `customer_key`
/// (which the transform derives for every lead). A customer's own `customer_key` is its key,
/// set by the hub, never part of a change.
pub fn reported_fields<'a>(
    entity: crate::Entity,
    mapped: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut out: Vec<String> = mapped
        .into_iter()
        .filter(|f| *f != "customer_key" || entity != crate::Entity::Customer)
        .map(str::to_string)
        .collect();
    out.push("deleted".into());
    if entity == crate::Entity::Lead {
        out.push("customer_key".into());
    }
    out.sort();
    out.dedup();
    out
}

/// Hex SHA-256 of the fields' canonical JSON (keys sorted by the map, numbers as serde_json
/// writes them).
pub fn fields_hash(fields: &BTreeMap<String, Value>) -> String {
    let bytes = serde_json::to_vec(fields).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projection_takes_named_paths_and_skips_nulls() {
        let doc = json!({"email":"a@b.co","phone":null,"address":{"city":"Austin","state":null},"deleted":false,"ingest_id":"x"});
        let p = project(
            &doc,
            [
                "email",
                "phone",
                "address.city",
                "address.state",
                "deleted",
                "nope",
            ],
        );
        assert_eq!(
            p,
            BTreeMap::from([
                ("address.city".to_string(), json!("Austin")),
                ("deleted".to_string(), json!(false)),
                ("email".to_string(), json!("a@b.co")),
            ])
        );
    }

    #[test]
    fn the_hash_depends_on_content_not_insertion_order() {
        let a = BTreeMap::from([("a".to_string(), json!(1)), ("b".to_string(), json!("x"))]);
        let mut b = BTreeMap::new();
        b.insert("b".to_string(), json!("x"));
        b.insert("a".to_string(), json!(1));
        assert_eq!(fields_hash(&a), fields_hash(&b));
        b.insert("a".to_string(), json!(2));
        assert_ne!(fields_hash(&a), fields_hash(&b));
    }
}
