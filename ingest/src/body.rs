//! From a webhook body to `RawChange` envelopes: plain functions, no I/O, no panics on any
//! input.
//!
//! A JSON object is one record, a JSON array a batch of objects; an XML body is one record.
//! Each record's payload is its text exactly as received (a batch element is cut out of the
//! body rather than re-serialized, so numbers too large for an `f64` and key order survive).

use std::borrow::Cow;

use axum::http::HeaderValue;
use hub_schemas::RawChange;
use hub_topology::EntityMapping;
use serde_json::Value;
use uuid::Uuid;

use crate::error::IngestError;

/// The two media types ingest accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaType {
    Json,
    Xml,
}

impl MediaType {
    /// `application/json`; `application/xml` or `text/xml`; parameters such as `charset` are
    /// ignored (JSON is UTF-8 by definition and XML is checked to be UTF-8).
    pub(crate) fn from_header(value: Option<&HeaderValue>) -> Result<Self, IngestError> {
        let raw = value
            .and_then(|v| v.to_str().ok())
            .ok_or(IngestError::UnsupportedMediaType)?;
        let essence = raw.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Ok(MediaType::Json)
        } else if essence.eq_ignore_ascii_case("application/xml")
            || essence.eq_ignore_ascii_case("text/xml")
        {
            Ok(MediaType::Xml)
        } else {
            Err(IngestError::UnsupportedMediaType)
        }
    }

    /// The `content_type` recorded in the envelope.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MediaType::Json => "application/json",
            MediaType::Xml => "application/xml",
        }
    }
}

/// One record of a request: its text as received and, for JSON, its parsed document.
#[derive(Debug)]
pub(crate) struct IncomingRecord<'a> {
    pub text: Cow<'a, str>,
    pub doc: Option<Value>,
}

/// Splits a body into records, or says precisely what is wrong with it.
pub(crate) fn parse_body(
    media: MediaType,
    body: &[u8],
    max_batch_records: usize,
) -> Result<Vec<IncomingRecord<'_>>, IngestError> {
    match media {
        MediaType::Json => parse_json(body, max_batch_records),
        MediaType::Xml => parse_xml(body).map(|r| vec![r]),
    }
}

fn parse_json(
    body: &[u8],
    max_batch_records: usize,
) -> Result<Vec<IncomingRecord<'_>>, IngestError> {
    // serde_json limits nesting (128 levels), so a deeply nested body is an error, not a stack
    // overflow; its messages name the line and column.
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| IngestError::MalformedJson(e.to_string()))?;
    // serde_json accepted it, so it is UTF-8; the fallback only guards against surprises.
    let text = std::str::from_utf8(body).ok().map(str::trim);
    match doc {
        Value::Object(_) => Ok(vec![IncomingRecord {
            text: match text {
                Some(t) => Cow::Borrowed(t),
                None => Cow::Owned(doc.to_string()),
            },
            doc: Some(doc),
        }]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(IngestError::EmptyBatch);
            }
            if items.len() > max_batch_records {
                return Err(IngestError::BatchTooLarge {
                    count: items.len(),
                    limit: max_batch_records,
                });
            }
            if let Some(i) = items.iter().position(|v| !v.is_object()) {
                return Err(IngestError::InvalidRecord {
                    index: Some(i),
                    message: "every element of a batch must be a JSON object (one record)",
                });
            }
            let spans = text
                .map(array_element_spans)
                .filter(|s| s.len() == items.len());
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, doc)| IncomingRecord {
                    text: match spans.as_ref().and_then(|s| s.get(i)) {
                        Some(t) => Cow::Borrowed(*t),
                        None => Cow::Owned(doc.to_string()),
                    },
                    doc: Some(doc),
                })
                .collect())
        }
        _ => Err(IngestError::InvalidRecord {
            index: None,
            message: "the body must be a JSON object (one record) or an array of objects (a batch)",
        }),
    }
}

fn parse_xml(body: &[u8]) -> Result<IncomingRecord<'_>, IngestError> {
    let text = std::str::from_utf8(body).map_err(|e| IngestError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let start = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if start.is_empty() {
        return Err(IngestError::EmptyBody);
    }
    // Parsing XML is the transform's job (it knows STAR and ADF); this only catches a body sent
    // with the wrong content type.
    if !start.starts_with('<') {
        return Err(IngestError::MalformedXml);
    }
    Ok(IncomingRecord {
        text: Cow::Borrowed(text),
        doc: None,
    })
}

/// The exact text of each top-level element of a JSON array that serde_json already accepted.
/// Cuts only at ASCII structural characters, so every slice is on a char boundary; should it
/// ever disagree with serde_json on the count, the caller re-serializes instead.
fn array_element_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start: Option<usize> = None;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'[' | b'{' => {
                if depth == 1 && start.is_none() {
                    start = Some(i);
                }
                depth += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if let Some(s) = start.take() {
                        spans.extend(text.get(s..i).map(str::trim_end));
                    }
                    break;
                }
            }
            b',' if depth == 1 => {
                if let Some(s) = start.take() {
                    spans.extend(text.get(s..i).map(str::trim_end));
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => {
                if b == b'"' {
                    in_string = true;
                }
                if depth == 1 && start.is_none() {
                    start = Some(i);
                }
            }
        }
    }
    spans
}

/// Ingest ids for `count` records. With an idempotency key they are UUIDv5 of (tenant,
/// connector, index, key), so a retried request gets the same ids; otherwise UUIDv7 (random,
/// and sortable by acceptance time).
pub(crate) fn ingest_ids(
    tenant: &str,
    connector: &str,
    idempotency_key: Option<&str>,
    count: usize,
) -> Vec<String> {
    match idempotency_key {
        Some(key) => {
            let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:automatrix-hub:ingest-id");
            (0..count)
                // Tenant and connector ids cannot contain '/', and the key comes last.
                .map(|i| {
                    Uuid::new_v5(&ns, format!("{tenant}/{connector}/{i}/{key}").as_bytes())
                        .to_string()
                })
                .collect()
        }
        None => (0..count).map(|_| Uuid::now_v7().to_string()).collect(),
    }
}

/// Where a record came from: the same for every record of one request.
pub(crate) struct Origin<'a> {
    pub tenant: &'a str,
    pub connector: &'a str,
    pub vendor: &'a str,
    pub vendor_entity: &'a str,
    pub mapping: &'a EntityMapping,
    pub media: MediaType,
    pub received_at: i64,
}

/// The envelope of one record. Only the mapping's id, timestamp and deletion pointers are read.
pub(crate) fn raw_change(
    origin: &Origin<'_>,
    record: &IncomingRecord<'_>,
    ingest_id: String,
) -> RawChange {
    let at = |pointer: &Option<String>| -> Option<&Value> {
        let doc = record.doc.as_ref()?;
        doc.pointer(pointer.as_deref()?)
    };
    let external_id = at(&origin.mapping.external_id).and_then(|v| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let deleted = matches!(at(&origin.mapping.deleted), Some(Value::Bool(true)));
    let source_ts = at(&origin.mapping.updated_at)
        .and_then(hub_connectors::timefmt::json_timestamp_ms)
        .unwrap_or(origin.received_at);
    RawChange {
        tenant: origin.tenant.to_string(),
        connector: origin.connector.to_string(),
        vendor: origin.vendor.to_string(),
        vendor_entity: origin.vendor_entity.to_string(),
        external_id,
        operation: if deleted { "delete" } else { "upsert" }.to_string(),
        source_ts,
        received_at: origin.received_at,
        ingest_id,
        content_type: origin.media.as_str().to_string(),
        payload: record.text.clone().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Result<Vec<IncomingRecord<'_>>, IngestError> {
        parse_body(MediaType::Json, body.as_bytes(), 1000)
    }

    #[test]
    fn batch_elements_keep_their_exact_text() {
        let body = r#" [ {"Id": 12345678901234567890123, "b": "x,]}\"{"} ,{"a":[1,{"c":2}]},
            {} ] "#;
        let records = json(body).unwrap();
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_ref()).collect();
        assert_eq!(
            texts,
            [
                r#"{"Id": 12345678901234567890123, "b": "x,]}\"{"}"#,
                r#"{"a":[1,{"c":2}]}"#,
                "{}"
            ]
        );
    }

    #[test]
    fn a_single_object_keeps_its_text_without_surrounding_whitespace() {
        let records = json("\n {\"Id\": 1.50}\n").unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].text, "{\"Id\": 1.50}");
    }

    #[test]
    fn a_non_object_element_is_named_by_its_index() {
        let e = json(r#"[{}, {}, {}, 7]"#).unwrap_err();
        assert_eq!(
            (e.code(), e.field()),
            ("invalid_record", Some("[3]".to_string()))
        );
    }

    #[test]
    fn scalars_empty_batches_and_oversized_batches_are_refused() {
        assert_eq!(json("42").unwrap_err().code(), "invalid_record");
        assert_eq!(json("[]").unwrap_err().code(), "empty_batch");
        let big = format!("[{}]", vec!["{}"; 1001].join(","));
        assert_eq!(json(&big).unwrap_err().code(), "batch_too_large");
    }

    #[test]
    fn malformed_json_names_the_position() {
        let e = json("{\"a\": }").unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        assert!(e.to_string().contains("line 1 column 7"), "{e}");
    }

    #[test]
    fn xml_must_be_utf8_and_look_like_xml() {
        let ok = parse_body(MediaType::Xml, "<?xml version=\"1.0\"?><a/>".as_bytes(), 1).unwrap();
        assert_eq!(ok[0].text, "<?xml version=\"1.0\"?><a/>");
        assert!(ok[0].doc.is_none());
        let e = parse_body(MediaType::Xml, b"<a>\xff</a>", 1).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().contains("offset 3")),
            ("invalid_utf8", true)
        );
        assert_eq!(
            parse_body(MediaType::Xml, b"  \n", 1).unwrap_err().code(),
            "empty_body"
        );
        assert_eq!(
            parse_body(MediaType::Xml, b"{\"a\":1}", 1)
                .unwrap_err()
                .code(),
            "malformed_xml"
        );
    }

    #[test]
    fn media_types_are_matched_without_parameters_or_case() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            MediaType::from_header(Some(&h("Application/JSON; charset=utf-8"))).unwrap(),
            MediaType::Json
        );
        assert_eq!(
            MediaType::from_header(Some(&h("text/xml"))).unwrap(),
            MediaType::Xml
        );
        assert_eq!(
            MediaType::from_header(Some(&h("text/plain")))
                .unwrap_err()
                .code(),
            "unsupported_media_type"
        );
        assert_eq!(
            MediaType::from_header(None).unwrap_err().code(),
            "unsupported_media_type"
        );
    }

    #[test]
    fn idempotent_ids_are_deterministic_and_distinct_per_index_and_scope() {
        let a = ingest_ids("t", "c", Some("k"), 3);
        assert_eq!(a, ingest_ids("t", "c", Some("k"), 3));
        assert_eq!(a.iter().collect::<std::collections::HashSet<_>>().len(), 3);
        assert_ne!(a, ingest_ids("t2", "c", Some("k"), 3));
        assert_ne!(ingest_ids("t", "c", None, 1), ingest_ids("t", "c", None, 1));
    }

    fn mapping() -> EntityMapping {
        serde_json::from_value(serde_json::json!({
            "vendor_entity": "Contact", "canonical": "customer",
            "external_id": "/Id", "updated_at": "/LastModifiedDate", "deleted": "/IsDeleted",
            "fields": {}
        }))
        .unwrap()
    }

    fn envelope(body: &str) -> RawChange {
        let m = mapping();
        let origin = Origin {
            tenant: "t",
            connector: "c",
            vendor: "salesforce",
            vendor_entity: "Contact",
            mapping: &m,
            media: MediaType::Json,
            received_at: 99,
        };
        let records = json(body).unwrap();
        raw_change(&origin, &records[0], "id-1".into())
    }

    #[test]
    fn the_mapping_pointers_fill_id_operation_and_source_time() {
        let r = envelope(
            r#"{"Id": "003A", "LastModifiedDate": "2024-05-01T12:00:00.000+0000", "IsDeleted": true}"#,
        );
        assert_eq!(r.external_id.as_deref(), Some("003A"));
        assert_eq!(r.operation, "delete");
        assert_eq!(r.source_ts, 1_714_564_800_000);
        assert_eq!(r.received_at, 99);
        assert_eq!(r.content_type, "application/json");
    }

    #[test]
    fn numeric_ids_become_text_and_missing_fields_fall_back() {
        let r = envelope(r#"{"Id": 4711, "IsDeleted": "yes"}"#);
        assert_eq!(r.external_id.as_deref(), Some("4711"));
        assert_eq!(r.operation, "upsert");
        assert_eq!(r.source_ts, 99);
        let r = envelope(r#"{"Id": null, "LastModifiedDate": "not a date"}"#);
        assert_eq!((r.external_id, r.source_ts), (None, 99));
    }
}
