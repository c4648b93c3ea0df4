//! The partition key of each canonical record.
//!
//! A vehicle is keyed by its VIN. A person is keyed by a stable customer key derived from the
//! tenant and their normalised email, else their E.164 phone, else the vendor's id — hashed,
//! so keys (which appear in topics, logs and URLs) carry no personal data. Other entities are
//! keyed by the connector and the vendor's id.

use hub_schemas::Entity;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A customer key: `cust-` and 20 hex digits of SHA-256 over the tenant and one identifier.
pub fn customer_key(tenant: &str, kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update(b"\x1f");
    h.update(kind.as_bytes());
    h.update(b"\x1f");
    h.update(value.as_bytes());
    let digest = hex::encode(h.finalize());
    format!("cust-{}", &digest[..20])
}

fn field<'a>(doc: &'a Value, name: &str) -> Option<&'a str> {
    doc.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The key of a mapped canonical document, or `None` when it has nothing to be keyed by.
pub fn key_for(
    entity: Entity,
    tenant: &str,
    connector: &str,
    external_id: Option<&str>,
    doc: &Value,
) -> Option<String> {
    let vendor_key = external_id
        .filter(|s| !s.is_empty())
        .map(|id| format!("{connector}:{id}"));
    match entity {
        Entity::Vehicle => field(doc, "vin").map(str::to_string),
        Entity::Customer => field(doc, "email")
            .map(|e| customer_key(tenant, "email", &e.to_lowercase()))
            .or_else(|| field(doc, "phone").map(|p| customer_key(tenant, "phone", p)))
            .or_else(|| field(doc, "mobile_phone").map(|p| customer_key(tenant, "phone", p)))
            .or_else(|| vendor_key.map(|k| customer_key(tenant, "vendor", &k))),
        _ => vendor_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn people_are_keyed_by_email_then_phone_then_vendor_id() {
        let by_email = key_for(
            Entity::Customer,
            "t",
            "sf",
            Some("1"),
            &json!({"email":"a@b.co","phone":"+15125550143"}),
        );
        let same_person_other_vendor = key_for(
            Entity::Customer,
            "t",
            "hs",
            Some("99"),
            &json!({"email":"a@b.co"}),
        );
        assert_eq!(by_email, same_person_other_vendor);
        let other_tenant = key_for(
            Entity::Customer,
            "u",
            "sf",
            Some("1"),
            &json!({"email":"a@b.co"}),
        );
        assert_ne!(by_email, other_tenant);
        let by_phone = key_for(
            Entity::Customer,
            "t",
            "sf",
            Some("1"),
            &json!({"phone":"+15125550143"}),
        )
        .unwrap();
        assert!(by_phone.starts_with("cust-") && !by_phone.contains("555"));
        assert!(key_for(Entity::Customer, "t", "sf", None, &json!({})).is_none());
    }

    #[test]
    fn vehicles_are_keyed_by_vin_and_others_by_vendor_id() {
        assert_eq!(
            key_for(
                Entity::Vehicle,
                "t",
                "sf",
                Some("a"),
                &json!({"vin":"1HGCM82633A004352"})
            )
            .as_deref(),
            Some("1HGCM82633A004352")
        );
        assert_eq!(
            key_for(Entity::Deal, "t", "sf", Some("a1"), &json!({})).as_deref(),
            Some("sf:a1")
        );
        assert!(key_for(Entity::Vehicle, "t", "sf", Some("a"), &json!({})).is_none());
    }
}
