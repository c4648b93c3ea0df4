//! A canonical record as the sink sees it: where it came from in Kafka, whose it is, and the
//! decoded document.

use hub_schemas::{Codec, Entity};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::error::{RecordError, SinkError};

/// One record read from `hub.canonical.<entity>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub entity: Entity,
    pub tenant: String,
    /// The partition key without the tenant (VIN, customer key or id).
    pub key: String,
    /// The decoded record as JSON (unions unwrapped, timestamps as epoch milliseconds).
    pub doc: Json,
    /// The record's version: when the source system last changed it (ms since the epoch).
    pub source_updated_at: i64,
    /// When the hub's ingest accepted it (ms since the epoch).
    pub received_at: i64,
    pub ingest_id: String,
    /// A deletion: kept as a row with `deleted = true` in SQL, sent as such to API targets.
    pub deleted: bool,
    /// The record's id in each connected system (connector → id), from the
    /// `hub-external-ids` header: how a vendor sink updates the right record.
    pub external_ids: std::collections::BTreeMap<String, String>,
    /// The connector whose change made this version (`hub-connector` header), if known.
    pub origin: Option<String>,
}

/// The entity a canonical topic (`<namespace>.canonical.<entity>`) carries, if `topic` is one.
pub fn entity_of_topic(topic: &str) -> Option<Entity> {
    topic.split_once(".canonical.")?.1.parse().ok()
}

/// The tenant part of a record key `<tenant>/<key>`, if the key has one.
pub fn tenant_of_key(key: &[u8]) -> Option<&str> {
    let key = std::str::from_utf8(key).ok()?;
    key.split_once('/').map(|(tenant, _)| tenant)
}

impl CanonicalRecord {
    /// Reads the envelope fields out of a decoded document.
    pub fn from_json(
        topic: &str,
        partition: i32,
        offset: i64,
        doc: Json,
    ) -> Result<Self, RecordError> {
        let entity = entity_of_topic(topic)
            .ok_or_else(|| RecordError::NotCanonicalTopic(topic.to_string()))?;
        let obj = doc.as_object().ok_or(RecordError::NotAnObject)?;
        let text = |f: &'static str| {
            obj.get(f)
                .and_then(Json::as_str)
                .map(str::to_string)
                .ok_or(RecordError::MissingField(f))
        };
        let int = |f: &'static str| {
            obj.get(f)
                .and_then(Json::as_i64)
                .ok_or(RecordError::MissingField(f))
        };
        Ok(CanonicalRecord {
            topic: topic.to_string(),
            partition,
            offset,
            entity,
            tenant: text("tenant_id")?,
            key: text("key")?,
            source_updated_at: int("source_updated_at")?,
            received_at: int("received_at")?,
            ingest_id: text("ingest_id")?,
            deleted: obj.get("deleted").and_then(Json::as_bool).unwrap_or(false),
            external_ids: Default::default(),
            origin: None,
            doc,
        })
    }

    /// Decodes a message value (Confluent wire format) read at `topic`/`partition`/`offset`.
    pub async fn decode(
        codec: &Codec,
        topic: &str,
        partition: i32,
        offset: i64,
        value: &[u8],
    ) -> Result<Self, SinkError> {
        let doc = codec.decode_json(value).await?;
        Ok(Self::from_json(topic, partition, offset, doc)?)
    }

    /// Reads the `hub-external-ids` header's value (a JSON object of connector → id) and
    /// the `hub-connector` header (the version's origin).
    pub fn with_headers(mut self, external_ids: Option<&[u8]>, origin: Option<&[u8]>) -> Self {
        if let Some(ids) = external_ids.and_then(|h| serde_json::from_slice(h).ok()) {
            self.external_ids = ids;
        }
        self.origin = origin.map(|o| String::from_utf8_lossy(o).into_owned());
        self
    }

    /// SHA-256 (hex) of the record's canonical JSON without `received_at` and `ingest_id`: two
    /// deliveries of the same content hash the same, whenever and however often they came in.
    pub fn content_hash(&self) -> String {
        content_hash(&self.doc)
    }
}

/// See [`CanonicalRecord::content_hash`].
pub fn content_hash(doc: &Json) -> String {
    let mut text = String::with_capacity(512);
    match doc {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| k.as_str() != "received_at" && k.as_str() != "ingest_id")
                .collect();
            keys.sort();
            text.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                write_canonical(&Json::String(k.clone()), &mut text);
                text.push(':');
                write_canonical(&map[k], &mut text);
            }
            text.push('}');
        }
        other => write_canonical(other, &mut text),
    }
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// JSON with object keys sorted at every level, so the text does not depend on whether
/// serde_json's `preserve_order` feature is on somewhere in the build.
fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(&Json::String(k.clone()), out);
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Json {
        json!({
            "tenant_id": "t1", "key": "c-1", "source_vendor": "salesforce",
            "source_connector": "sf", "source_entity": "Contact", "external_id": "003",
            "source_updated_at": 1000, "received_at": 2000, "ingest_id": "i-1", "deleted": false,
            "email": "a@example.com", "address": {"city": "Austin", "state": "TX"}
        })
    }

    #[test]
    fn envelope_fields_are_read_from_the_document() {
        let r = CanonicalRecord::from_json("hub.canonical.customer", 2, 7, doc()).unwrap();
        assert_eq!(r.entity, Entity::Customer);
        assert_eq!((r.tenant.as_str(), r.key.as_str()), ("t1", "c-1"));
        assert_eq!(
            (r.source_updated_at, r.received_at, r.deleted),
            (1000, 2000, false)
        );
        assert_eq!(
            CanonicalRecord::from_json("hub.raw.cdk", 0, 0, doc()).unwrap_err(),
            RecordError::NotCanonicalTopic("hub.raw.cdk".into())
        );
        let mut d = doc();
        d.as_object_mut().unwrap().remove("key");
        assert_eq!(
            CanonicalRecord::from_json("hub.canonical.customer", 0, 0, d).unwrap_err(),
            RecordError::MissingField("key")
        );
    }

    #[test]
    fn content_hash_ignores_delivery_fields_and_key_order() {
        let a = doc();
        let mut b = doc();
        b["received_at"] = json!(9999);
        b["ingest_id"] = json!("i-2");
        b["address"] = json!({"state": "TX", "city": "Austin"});
        assert_eq!(content_hash(&a), content_hash(&b));
        b["email"] = json!("b@example.com");
        assert_ne!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn tenant_is_the_key_prefix() {
        assert_eq!(tenant_of_key(b"acme/1HGCM82633A004352"), Some("acme"));
        assert_eq!(tenant_of_key(b"no-slash"), None);
        assert_eq!(tenant_of_key(&[0xff, b'/']), None);
    }
}
