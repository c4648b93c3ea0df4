//! The content hash of echo suppression, computed the same way on both sides.
//!
//! A sink that writes into a system a connector reads from records, before the write, the
//! hash of what it writes *as that connector will report it back*: the canonical document
//! projected onto the canonical fields the connector's inbound mapping fills, plus `deleted`
//! ([`project`]). The transform's resolve stage hashes each incoming change's mapped fields
//! the same way; equal hashes mean the change is the hub's own write coming back (an echo),
//! which must neither conflict nor propagate.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

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
