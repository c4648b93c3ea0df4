//! A raw vendor change → a canonical record, through the topology's field mappings.
//!
//! Pure: no I/O. Every problem found is reported, not just the first, so a dead letter tells
//! the admin everything to fix at once.

use apache_avro::types::Value as Avro;
use hub_connectors::timefmt::json_timestamp_ms;
use hub_schemas::{Entity, FieldError, RawChange, json_to_avro};
use hub_topology::{EntityMapping, FieldMapping, Format, Topology, Transform};
use serde_json::{Map, Value};

use crate::formats;
use crate::identity;

/// A change that became a canonical record.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub entity: Entity,
    /// The partition key, without the tenant.
    pub key: String,
    /// The canonical document (common fields included) as JSON.
    pub doc: Value,
    /// The same, as the Avro value of the entity's schema.
    pub avro: Avro,
}

/// A change that could not become a canonical record, with every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformFailure {
    /// `mapping` (the topology does not describe this record), `decode` (the payload is not
    /// what its content type says) or `validation` (rules failed).
    pub class: &'static str,
    pub reason: String,
    pub errors: Vec<FieldError>,
}

impl TransformFailure {
    fn mapping(reason: String) -> Self {
        TransformFailure {
            class: "mapping",
            reason,
            errors: Vec::new(),
        }
    }
}

/// Maps and validates one raw change against the topology.
pub fn transform_raw(topology: &Topology, raw: &RawChange) -> Result<Mapped, TransformFailure> {
    let tenant = topology.tenant(&raw.tenant).ok_or_else(|| {
        TransformFailure::mapping(format!("tenant '{}' is not in the topology", raw.tenant))
    })?;
    let connector = tenant.connector(&raw.connector).ok_or_else(|| {
        TransformFailure::mapping(format!(
            "connector '{}' is not in tenant '{}'",
            raw.connector, raw.tenant
        ))
    })?;
    let mapping = connector.mapping(&raw.vendor_entity).ok_or_else(|| {
        TransformFailure::mapping(format!(
            "connector '{}' has no mapping for vendor entity '{}'",
            raw.connector, raw.vendor_entity
        ))
    })?;
    if !raw.content_type.contains("json") {
        return Err(TransformFailure {
            class: "mapping",
            reason: format!(
                "'{}' payloads need an XML mapping, which connector '{}' does not define",
                raw.content_type, raw.connector
            ),
            errors: vec![FieldError::new(
                "payload",
                "unsupported_content_type",
                "only JSON field mappings are defined",
            )],
        });
    }
    let payload: Value = serde_json::from_str(&raw.payload).map_err(|e| TransformFailure {
        class: "decode",
        reason: format!("the payload is not valid JSON: {e}"),
        errors: vec![FieldError::new("payload", "malformed_json", e.to_string())],
    })?;
    map_payload(mapping, raw, &payload)
}

/// Applies one entity mapping to a parsed payload (also what a mapping preview calls).
pub fn map_payload(
    mapping: &EntityMapping,
    raw: &RawChange,
    payload: &Value,
) -> Result<Mapped, TransformFailure> {
    let entity = mapping.canonical;
    let mut errors = Vec::new();
    let mut fields = Map::new();
    for (name, fm) in &mapping.fields {
        match map_field(name, fm, payload) {
            Ok(Some(v)) => set_path(&mut fields, name, v),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    let deleted = raw.operation == "delete";
    if !deleted {
        entity_rules(entity, &fields, &mut errors);
    }
    let key = identity::key_for(
        entity,
        &raw.tenant,
        &raw.connector,
        raw.external_id.as_deref(),
        &Value::Object(fields.clone()),
    );
    let Some(key) = key else {
        // A key that cannot be derived because its field already failed is not news.
        if !errors.is_empty() {
            return Err(validation(errors));
        }
        errors.push(FieldError::new(
            "key",
            "no_identity",
            match entity {
                Entity::Vehicle => "a vehicle needs a VIN to be keyed by".to_string(),
                Entity::Customer => {
                    "a customer needs an email, a phone or the vendor's id to be keyed by"
                        .to_string()
                }
                _ => "the record needs the vendor's id to be keyed by".to_string(),
            },
        ));
        return Err(validation(errors));
    };
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    if matches!(entity, Entity::Customer | Entity::Lead) && !fields.contains_key("customer_key") {
        fields.insert("customer_key".into(), Value::String(key.clone()));
    }
    let mut doc = Map::new();
    doc.insert("tenant_id".into(), raw.tenant.clone().into());
    doc.insert("key".into(), key.clone().into());
    doc.insert("source_vendor".into(), raw.vendor.clone().into());
    doc.insert("source_connector".into(), raw.connector.clone().into());
    doc.insert("source_entity".into(), raw.vendor_entity.clone().into());
    doc.insert(
        "external_id".into(),
        raw.external_id.clone().map_or(Value::Null, Value::String),
    );
    doc.insert("source_updated_at".into(), raw.source_ts.into());
    doc.insert("received_at".into(), raw.received_at.into());
    doc.insert("ingest_id".into(), raw.ingest_id.clone().into());
    doc.insert("deleted".into(), deleted.into());
    doc.extend(fields);
    let doc = Value::Object(doc);
    let avro = json_to_avro(&doc, entity.schema()).map_err(|e| {
        validation(vec![FieldError::new(
            e.path(),
            "schema_mismatch",
            e.to_string(),
        )])
    })?;
    Ok(Mapped {
        entity,
        key,
        doc,
        avro,
    })
}

fn validation(errors: Vec<FieldError>) -> TransformFailure {
    let fields: Vec<&str> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
    TransformFailure {
        class: "validation",
        reason: format!("{} rule(s) failed on: {}", errors.len(), fields.join(", ")),
        errors,
    }
}

/// Rules every record of an entity must meet, whatever the mapping says.
fn entity_rules(entity: Entity, fields: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    // A field the mapping already reported is not reported twice.
    if entity != Entity::Vehicle || errors.iter().any(|e| e.field.as_deref() == Some("vin")) {
        return;
    }
    match fields.get("vin").and_then(Value::as_str) {
        None => errors.push(FieldError::new(
            "vin",
            "required",
            "a vehicle must have a VIN",
        )),
        Some(v) if !formats::vin_is_valid(v) => errors.push(FieldError::new(
            "vin",
            "vin_invalid",
            "the VIN is not 17 valid characters with a correct check digit",
        )),
        _ => {}
    }
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
            if let Value::Object(m) = child {
                set_path(m, rest, v);
            }
        }
    }
}

fn map_field(name: &str, fm: &FieldMapping, payload: &Value) -> Result<Option<Value>, FieldError> {
    let source = fm
        .from
        .as_deref()
        .and_then(|p| payload.pointer(p))
        .cloned()
        .unwrap_or(Value::Null);
    let mut v = if source.is_null() {
        fm.default.clone().unwrap_or(Value::Null)
    } else {
        source
    };
    for t in &fm.transform {
        if v.is_null() {
            break;
        }
        v = apply(*t, v).map_err(|msg| FieldError::new(name, transform_code(*t), msg))?;
    }
    if let Value::String(s) = &v
        && s.is_empty()
    {
        v = Value::Null;
    }
    if v.is_null() {
        if fm.required {
            return Err(FieldError::new(
                name,
                "required",
                format!("{name} is required"),
            ));
        }
        return Ok(None);
    }
    if let Some(f) = fm.format {
        check_format(name, f, &v)?;
    }
    Ok(Some(v))
}

fn check_format(name: &str, f: Format, v: &Value) -> Result<(), FieldError> {
    let s = v.as_str().unwrap_or_default();
    let (ok, code, what) = match f {
        Format::Vin => (
            formats::vin_is_valid(s),
            "vin_invalid",
            "a 17-character VIN with a correct check digit",
        ),
        Format::Email => (
            formats::email_is_valid(s),
            "email_invalid",
            "an email address",
        ),
        Format::E164 => (
            formats::e164_is_valid(s),
            "phone_invalid",
            "a phone number in E.164 form",
        ),
        Format::UsZip => (
            formats::us_zip_is_valid(s),
            "zip_invalid",
            "a US ZIP code (12345 or 12345-6789)",
        ),
        Format::UsState => (
            formats::us_state_is_valid(s),
            "state_invalid",
            "a two-letter US state code",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            name,
            code,
            format!("{name} must be {what}"),
        ))
    }
}

fn transform_code(t: Transform) -> &'static str {
    match t {
        Transform::PhoneE164 => "phone_invalid",
        Transform::TimestampMs => "timestamp_invalid",
        Transform::MoneyMinor => "money_invalid",
        Transform::Integer => "integer_invalid",
        Transform::Boolean => "boolean_invalid",
        _ => "transform_failed",
    }
}

fn apply(t: Transform, v: Value) -> Result<Value, String> {
    Ok(match t {
        Transform::Trim => map_str(v, |s| s.trim().to_string()),
        Transform::Lowercase => map_str(v, |s| s.to_lowercase()),
        Transform::Uppercase => map_str(v, |s| s.to_uppercase()),
        Transform::ToString => match v {
            Value::String(_) => v,
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err("expected a scalar value".into()),
        },
        Transform::PhoneE164 => {
            let s = scalar_text(&v).ok_or("expected a phone number")?;
            Value::String(formats::phone_to_e164(&s).ok_or("not a valid phone number")?)
        }
        Transform::TimestampMs => {
            Value::from(json_timestamp_ms(&v).ok_or("not a recognised date/time")?)
        }
        Transform::MoneyMinor => Value::from(money_minor(&v).ok_or("not an amount of money")?),
        Transform::Integer => Value::from(integer(&v).ok_or("not a whole number")?),
        Transform::Boolean => Value::from(boolean(&v).ok_or("not true or false")?),
    })
}

fn map_str(v: Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(&s)),
        other => other,
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `"$1,234.50"` → 123450; `12.5` → 1250. At most two decimals; no floats in the string path.
pub fn money_minor(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return i.checked_mul(100);
            }
            let f = n.as_f64()?;
            let minor = (f * 100.0).round();
            (minor.is_finite() && minor.abs() < 9.0e15).then_some(minor as i64)
        }
        Value::String(s) => {
            let cleaned: String = s
                .trim()
                .chars()
                .filter(|c| !matches!(c, '$' | ',' | ' '))
                .collect();
            let (neg, body) = match cleaned.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, cleaned.as_str()),
            };
            let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
            if whole.is_empty() && frac.is_empty() {
                return None;
            }
            if !whole.bytes().all(|b| b.is_ascii_digit())
                || !frac.bytes().all(|b| b.is_ascii_digit())
                || frac.len() > 2
            {
                return None;
            }
            let whole: i64 = if whole.is_empty() {
                0
            } else {
                whole.parse().ok()?
            };
            let cents: i64 = format!("{frac:0<2}").parse().ok()?;
            let total = whole.checked_mul(100)?.checked_add(cents)?;
            Some(if neg { -total } else { total })
        }
        _ => None,
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().replace(',', "").parse().ok(),
        _ => None,
    }
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Some(true),
            "false" | "no" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topology() -> Topology {
        hub_topology::parse_with_env(hub_topology::DEMO_TOPOLOGY, &|_| None).unwrap()
    }

    fn raw(entity: &str, payload: Value) -> RawChange {
        RawChange {
            tenant: "demo-motors".into(),
            connector: "sf-main".into(),
            vendor: "salesforce".into(),
            vendor_entity: entity.into(),
            external_id: payload
                .get("Id")
                .and_then(Value::as_str)
                .map(str::to_string),
            operation: "upsert".into(),
            source_ts: 1_714_564_800_000,
            received_at: 1_714_564_801_000,
            ingest_id: "i-1".into(),
            content_type: "application/json".into(),
            payload: payload.to_string(),
        }
    }

    #[test]
    fn salesforce_contact_maps_to_a_customer_keyed_by_email() {
        let r = raw(
            "Contact",
            json!({"Id":"003A","FirstName":" Pat ","LastName":"Lee","Email":" Pat.Lee@Example.com","Phone":"(512) 555-0143","MailingCity":"Austin","MailingState":"tx","MailingPostalCode":"78701"}),
        );
        let m = transform_raw(&topology(), &r).unwrap();
        assert_eq!(m.entity, Entity::Customer);
        assert_eq!(m.doc["email"], "pat.lee@example.com");
        assert_eq!(m.doc["phone"], "+15125550143");
        assert_eq!(m.doc["first_name"], "Pat");
        assert_eq!(m.doc["address"]["state"], "TX");
        assert_eq!(m.doc["address"]["country"], "US");
        assert_eq!(
            m.key,
            identity::customer_key("demo-motors", "email", "pat.lee@example.com")
        );
        assert_eq!(m.doc["customer_key"], m.key.as_str());
        assert_eq!(m.doc["source_updated_at"], 1_714_564_800_000i64);
    }

    #[test]
    fn every_failed_rule_is_listed_not_just_the_first() {
        let r = raw(
            "Contact",
            json!({"Id":"003B","Email":"nope","Phone":"12","MailingState":"ZZ"}),
        );
        let f = transform_raw(&topology(), &r).unwrap_err();
        assert_eq!(f.class, "validation");
        let mut codes: Vec<(&str, &str)> = f
            .errors
            .iter()
            .map(|e| (e.field.as_deref().unwrap(), e.code.as_str()))
            .collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![
                ("address.state", "state_invalid"),
                ("email", "email_invalid"),
                ("last_name", "required"),
                ("phone", "phone_invalid")
            ]
        );
    }

    #[test]
    fn vehicle_with_a_bad_check_digit_is_refused_and_a_good_one_keyed_by_vin() {
        let bad = raw(
            "Vehicle__c",
            json!({"Id":"a01","VIN__c":"1HGCM82643A004352"}),
        );
        let f = transform_raw(&topology(), &bad).unwrap_err();
        assert_eq!(f.errors[0].code, "vin_invalid");
        let good = raw(
            "Vehicle__c",
            json!({"Id":"a01","VIN__c":"1hgcm82633a004352","Year__c":"2021","Price__c":"$24,995.50","Mileage__c":"31,200"}),
        );
        let m = transform_raw(&topology(), &good).unwrap();
        assert_eq!(m.key, "1HGCM82633A004352");
        assert_eq!(m.doc["list_price_minor"], 2_499_550);
        assert_eq!(m.doc["year"], 2021);
        assert_eq!(m.doc["mileage"], 31_200);
        assert_eq!(m.doc["currency"], "USD");
    }

    #[test]
    fn unknown_tenant_entity_and_bad_payload_are_mapping_or_decode_failures() {
        let mut r = raw("Contact", json!({}));
        r.tenant = "nobody".into();
        assert_eq!(transform_raw(&topology(), &r).unwrap_err().class, "mapping");
        let r = raw("Opportunity", json!({}));
        assert_eq!(transform_raw(&topology(), &r).unwrap_err().class, "mapping");
        let mut r = raw("Contact", json!({}));
        r.payload = "{not json".into();
        assert_eq!(transform_raw(&topology(), &r).unwrap_err().class, "decode");
    }

    #[test]
    fn money_parses_vendor_shapes_exactly() {
        assert_eq!(money_minor(&json!("$1,234.50")), Some(123_450));
        assert_eq!(money_minor(&json!("1234.5")), Some(123_450));
        assert_eq!(money_minor(&json!("-0.07")), Some(-7));
        assert_eq!(money_minor(&json!(19.99)), Some(1999));
        assert_eq!(money_minor(&json!(20)), Some(2000));
        assert_eq!(money_minor(&json!("12.345")), None);
        assert_eq!(money_minor(&json!("abc")), None);
        assert_eq!(money_minor(&json!("$")), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(s in "\\PC{0,200}") {
            let mut r = raw("Contact", json!({}));
            r.payload = s;
            let _ = transform_raw(&topology(), &r);
        }

        #[test]
        fn arbitrary_field_values_never_panic(first in proptest::option::of("\\PC{0,30}"), email in "\\PC{0,30}", price in "\\PC{0,12}") {
            let r = raw("Contact", json!({"Id":"x","FirstName":first,"LastName":"L","Email":email}));
            let _ = transform_raw(&topology(), &r);
            let r = raw("Vehicle__c", json!({"Id":"x","VIN__c":"1HGCM82633A004352","Price__c":price}));
            let _ = transform_raw(&topology(), &r);
        }
    }
}
