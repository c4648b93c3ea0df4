//! A raw vendor change → canonical records, through the topology's field mappings.
//!
//! Pure: no I/O. Every problem found is reported, not just the first, so a dead letter tells
//! the admin everything to fix at once.
//!
//! A field is filled in four steps: read (`from`, a path into the JSON or XML payload; see
//! [`crate::path`]), `default` when that is missing, the `transform` chain, then checks —
//! `required`, `format`, and each of `rules`. One vendor record may feed several canonical
//! entities (the connector lists several mappings of its vendor entity); they succeed or
//! fail together. Regular expressions and rhai expressions were compiled when the topology
//! was parsed; per record there is one conversion of the payload for expressions, and only
//! when the mapping has any.

use apache_avro::types::Value as Avro;
use hub_connectors::timefmt::json_timestamp_ms;
use hub_schemas::{Entity, FieldError, RawChange, json_to_avro};
use hub_topology::{
    Bounds, DateInputShape, EntityMapping, FieldMapping, Format, Rule, TextCase, Topology,
    Transform,
};
use serde_json::{Map, Value};

use crate::expr::{ExprError, ExprScope};
use crate::formats;
use crate::functions::{self, FunctionError};
use crate::identity;
use crate::path::resolve;
use crate::xml;

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

/// Maps and validates one raw change against the topology: one canonical record per
/// mapping of its vendor entity, all or none. When several mappings apply, each error's
/// field is prefixed with its canonical entity (`vehicle.vin`), and a lead made alongside a
/// customer gets that customer's key as its `customer_key` (unless mapped explicitly).
pub fn transform_raw(
    topology: &Topology,
    raw: &RawChange,
) -> Result<Vec<Mapped>, TransformFailure> {
    let tenant = topology.tenant(&raw.tenant).ok_or_else(|| {
        TransformFailure::mapping(format!("tenant '{}' is not in the topology", raw.tenant))
    })?;
    let connector = tenant.connector(&raw.connector).ok_or_else(|| {
        TransformFailure::mapping(format!(
            "connector '{}' is not in tenant '{}'",
            raw.connector, raw.tenant
        ))
    })?;
    let mappings: Vec<&EntityMapping> = connector.mappings(&raw.vendor_entity).collect();
    if mappings.is_empty() {
        return Err(TransformFailure::mapping(format!(
            "connector '{}' has no mapping for vendor entity '{}'",
            raw.connector, raw.vendor_entity
        )));
    }
    let payload = decode(&raw.content_type, &raw.payload)?;
    let several = mappings.len() > 1;
    let mut out = Vec::with_capacity(mappings.len());
    let mut failure: Option<TransformFailure> = None;
    // The mappings share one conversion of the payload for their expressions.
    let mut scope = None;
    for m in &mappings {
        match map_with(m, raw, &payload, &mut scope) {
            Ok(mapped) => out.push(mapped),
            Err(mut f) => {
                if several {
                    for e in &mut f.errors {
                        e.field = Some(match e.field.take() {
                            Some(field) => format!("{}.{field}", m.canonical),
                            None => m.canonical.name().to_string(),
                        });
                    }
                }
                match &mut failure {
                    None => failure = Some(f),
                    Some(all) => all.errors.extend(f.errors),
                }
            }
        }
    }
    match failure {
        Some(f) if f.class == "validation" => Err(validation(f.errors)),
        Some(f) => Err(f),
        None => {
            link_leads_to_customer(&mappings, &mut out)?;
            Ok(out)
        }
    }
}

/// A lead mapped from the same record as a customer (an ADF prospect) belongs to that
/// customer, unless its mapping fills `customer_key` itself.
fn link_leads_to_customer(
    mappings: &[&EntityMapping],
    out: &mut [Mapped],
) -> Result<(), TransformFailure> {
    let Some(customer) = out.iter().find(|m| m.entity == Entity::Customer) else {
        return Ok(());
    };
    let customer_key = Value::String(customer.key.clone());
    for (m, mapping) in out.iter_mut().zip(mappings) {
        if m.entity != Entity::Lead || mapping.fields.contains_key("customer_key") {
            continue;
        }
        m.doc["customer_key"] = customer_key.clone();
        m.avro = json_to_avro(&m.doc, m.entity.schema()).map_err(|e| {
            validation(vec![FieldError::new(
                e.path(),
                "schema_mismatch",
                e.to_string(),
            )])
        })?;
    }
    Ok(())
}

/// Maps a payload given as text, as the console's preview and `hub mapping test` do: a
/// synthetic change (tenant, connector and vendor `preview`; external id, modification time
/// and deletion read through the mapping's own paths) goes through [`map_payload`].
pub fn dry_run(
    mapping: &EntityMapping,
    content_type: &str,
    payload: &str,
) -> Result<Mapped, TransformFailure> {
    let doc = decode(content_type, payload)?;
    let at = |p: &Option<String>| p.as_deref().and_then(|p| resolve(&doc, p));
    let source_ts = at(&mapping.updated_at)
        .and_then(json_timestamp_ms)
        .unwrap_or(0);
    let deleted = at(&mapping.deleted)
        .is_some_and(|v| matches!(v, Value::Bool(true)) || v.as_str().is_some_and(|s| s == "true"));
    let raw = RawChange {
        tenant: "preview".into(),
        connector: "preview".into(),
        vendor: "preview".into(),
        vendor_entity: mapping.vendor_entity.clone(),
        // map_payload reads it through the mapping's path.
        external_id: None,
        operation: if deleted { "delete" } else { "upsert" }.into(),
        source_ts,
        received_at: source_ts,
        ingest_id: "preview".into(),
        content_type: content_type.into(),
        payload: String::new(),
    };
    map_payload(mapping, &raw, &doc)
}

/// The text of a string or number at `path`, when there is one.
fn path_text(payload: &Value, path: &str) -> Option<String> {
    match resolve(payload, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A payload's text → the tree paths read, by its content type: JSON, or XML (any
/// `…xml` type: `application/xml`, `text/xml`, `application/vnd.adf+xml`).
fn decode(content_type: &str, payload: &str) -> Result<Value, TransformFailure> {
    let ct = content_type.to_ascii_lowercase();
    if ct.contains("json") {
        serde_json::from_str(payload).map_err(|e| TransformFailure {
            class: "decode",
            reason: format!("the payload is not valid JSON: {e}"),
            errors: vec![FieldError::new("payload", "malformed_json", e.to_string())],
        })
    } else if ct.contains("xml") {
        xml::parse(payload).map_err(|e| TransformFailure {
            class: "decode",
            reason: format!("the payload is not valid XML: {e}"),
            errors: vec![FieldError::new("payload", "malformed_xml", e.to_string())],
        })
    } else {
        Err(TransformFailure {
            class: "mapping",
            reason: format!("'{content_type}' payloads cannot be mapped; send JSON or XML"),
            errors: vec![FieldError::new(
                "payload",
                "unsupported_content_type",
                "only JSON and XML payloads are mapped",
            )],
        })
    }
}

/// What one record's fields share while they are mapped.
struct Ctx<'a> {
    payload: &'a Value,
    /// Built on the first expression, so mappings without any never convert the payload.
    scope: &'a mut Option<ExprScope>,
    /// Second outputs of transformations (`format_currency`'s `currency_field`).
    extra: Vec<(String, Value)>,
}

impl Ctx<'_> {
    fn scope(&mut self) -> &mut ExprScope {
        let payload = self.payload;
        self.scope.get_or_insert_with(|| ExprScope::new(payload))
    }
}

/// Applies one entity mapping to a parsed payload. When the change carries no external id
/// (ingest reads ids only from JSON), the mapping's `external_id` path supplies it.
pub fn map_payload(
    mapping: &EntityMapping,
    raw: &RawChange,
    payload: &Value,
) -> Result<Mapped, TransformFailure> {
    map_with(mapping, raw, payload, &mut None)
}

fn map_with(
    mapping: &EntityMapping,
    raw: &RawChange,
    payload: &Value,
    scope: &mut Option<ExprScope>,
) -> Result<Mapped, TransformFailure> {
    let entity = mapping.canonical;
    let mut errors = Vec::new();
    let mut fields = Map::new();
    let external_id = raw
        .external_id
        .clone()
        .or_else(|| path_text(payload, mapping.external_id.as_deref()?));
    // Ingest reads the modification time only from JSON; for other payloads the mapping's
    // `updated_at` path supplies it (falling back to what ingest recorded).
    let source_ts = if raw.content_type.to_ascii_lowercase().contains("json") {
        raw.source_ts
    } else {
        mapping
            .updated_at
            .as_deref()
            .and_then(|p| resolve(payload, p))
            .and_then(json_timestamp_ms)
            .unwrap_or(raw.source_ts)
    };
    let mut ctx = Ctx {
        payload,
        scope,
        extra: Vec::new(),
    };
    for (name, fm) in &mapping.fields {
        if let Some(v) = map_field(name, fm, &mut ctx, &mut errors) {
            set_path(&mut fields, name, v);
        }
    }
    for (name, v) in std::mem::take(&mut ctx.extra) {
        set_path(&mut fields, &name, v);
    }
    let deleted = raw.operation == "delete";
    if !deleted {
        entity_rules(entity, &fields, &mut errors);
        if !mapping.rules.is_empty() {
            let doc = Value::Object(fields.clone());
            for r in &mapping.rules {
                let field = r.field.as_deref().unwrap_or("record");
                match ctx.scope().check(&r.custom, &doc) {
                    Ok(true) => {}
                    Ok(false) => errors.push(FieldError::new(
                        field,
                        "rule_failed",
                        r.message.clone().unwrap_or_else(|| {
                            format!("the record must satisfy `{}`", r.custom.source())
                        }),
                    )),
                    Err(e) => errors.push(FieldError::new(field, e.code, e.message)),
                }
            }
        }
    }
    let key = identity::key_for(
        entity,
        &raw.tenant,
        &raw.connector,
        external_id.as_deref(),
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
        external_id.map_or(Value::Null, Value::String),
    );
    doc.insert("source_updated_at".into(), source_ts.into());
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

/// One field's value, or `None` (left out) — with its errors pushed to `errors`.
fn map_field(
    name: &str,
    fm: &FieldMapping,
    ctx: &mut Ctx<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let source = fm
        .from
        .as_deref()
        .and_then(|p| resolve(ctx.payload, p))
        .cloned()
        .unwrap_or(Value::Null);
    // CRMs send "" for a property nobody filled in (HubSpot for every cleared property): it is
    // absent, not a value for the transforms to refuse.
    let source = match source {
        Value::String(s) if s.trim().is_empty() => Value::Null,
        other => other,
    };
    let mut v = if source.is_null() {
        fm.default.clone().unwrap_or(Value::Null)
    } else {
        source
    };
    for t in &fm.transform {
        // Null passes through, except into steps that read the record rather than the value
        // (an expression only when it is the field's source).
        let runs_on_null = match t {
            Transform::Concatenate(_) => true,
            Transform::Calculate(_) | Transform::CustomFunction(_) => fm.from.is_none(),
            _ => false,
        };
        if v.is_null() && !runs_on_null {
            continue;
        }
        match apply(t, v, ctx) {
            Ok(next) => v = next,
            Err((code, msg)) => {
                errors.push(FieldError::new(name, code, msg));
                return None;
            }
        }
    }
    if let Value::String(s) = &v
        && s.is_empty()
    {
        v = Value::Null;
    }
    if v.is_null() {
        if fm.required {
            errors.push(FieldError::new(
                name,
                "required",
                format!("{name} is required"),
            ));
        }
        return None;
    }
    let before = errors.len();
    if let Some(f) = &fm.format
        && let Err(e) = check_format(name, f, &v)
    {
        errors.push(e);
    }
    for r in &fm.rules {
        if let Err(e) = check_rule(name, r, &v, ctx) {
            errors.push(e);
        }
    }
    (errors.len() == before).then_some(v)
}

fn check_format(name: &str, f: &Format, v: &Value) -> Result<(), FieldError> {
    let text = scalar_text(v);
    let s = text.as_deref().unwrap_or_default();
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
        Format::Regex(p) => {
            return if text.is_some() && p.regex().is_match(s) {
                Ok(())
            } else {
                Err(FieldError::new(
                    name,
                    "pattern_mismatch",
                    format!("{name} must match `{}`", p.source()),
                ))
            };
        }
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

/// One rule on a present value; `message` replaces the hub's sentence.
fn check_rule(name: &str, r: &Rule, v: &Value, ctx: &mut Ctx<'_>) -> Result<(), FieldError> {
    let fail = |code: &str, default: String| {
        FieldError::new(name, code, r.message.clone().unwrap_or(default))
    };
    if let Some(b) = &r.range {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        if !n.is_some_and(|n| within(b, n)) {
            return Err(fail(
                "out_of_range",
                format!("{name} must be a number {}", describe(b)),
            ));
        }
    }
    if let Some(b) = &r.length {
        let len = match v {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.len(),
            other => other.to_string().chars().count(),
        };
        if !within(b, len as f64) {
            return Err(fail(
                "length_out_of_range",
                format!("{name} must have a length {}", describe(b)),
            ));
        }
    }
    if let Some(p) = &r.regex
        && !scalar_text(v).is_some_and(|s| p.regex().is_match(&s))
    {
        return Err(fail(
            "pattern_mismatch",
            format!("{name} must match `{}`", p.source()),
        ));
    }
    if let Some(e) = &r.custom {
        match ctx.scope().check(e, v) {
            Ok(true) => {}
            Ok(false) => {
                return Err(fail(
                    "rule_failed",
                    format!("{name} must satisfy `{}`", e.source()),
                ));
            }
            Err(ExprError { code, message }) => return Err(FieldError::new(name, code, message)),
        }
    }
    Ok(())
}

fn within(b: &Bounds, n: f64) -> bool {
    b.min.is_none_or(|lo| n >= lo) && b.max.is_none_or(|hi| n <= hi)
}

fn describe(b: &Bounds) -> String {
    match (b.min, b.max) {
        (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
        (Some(lo), None) => format!("of at least {lo}"),
        (None, Some(hi)) => format!("of at most {hi}"),
        (None, None) => "of any size".into(),
    }
}

fn legacy_code(t: &Transform) -> &'static str {
    match t {
        Transform::PhoneE164 => "phone_invalid",
        Transform::TimestampMs => "timestamp_invalid",
        Transform::MoneyMinor => "money_invalid",
        Transform::Integer => "integer_invalid",
        Transform::Boolean => "boolean_invalid",
        _ => "transform_failed",
    }
}

type StepError = (&'static str, String);

fn function_error(e: FunctionError) -> StepError {
    (e.code(), e.to_string())
}

fn apply(t: &Transform, v: Value, ctx: &mut Ctx<'_>) -> Result<Value, StepError> {
    let legacy = |msg: &str| (legacy_code(t), msg.to_string());
    Ok(match t {
        Transform::Trim => map_str(v, |s| s.trim().to_string()),
        Transform::Lowercase => map_str(v, |s| s.to_lowercase()),
        Transform::Uppercase => map_str(v, |s| s.to_uppercase()),
        Transform::ToString => match v {
            Value::String(_) => v,
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(legacy("expected a scalar value")),
        },
        Transform::PhoneE164 => {
            let s = scalar_text(&v).ok_or_else(|| legacy("expected a phone number"))?;
            Value::String(
                formats::phone_to_e164(&s).ok_or_else(|| legacy("not a valid phone number"))?,
            )
        }
        Transform::TimestampMs => {
            Value::from(json_timestamp_ms(&v).ok_or_else(|| legacy("not a recognised date/time"))?)
        }
        Transform::MoneyMinor => {
            Value::from(money_minor(&v).ok_or_else(|| legacy("not an amount of money"))?)
        }
        Transform::Integer => Value::from(integer(&v).ok_or_else(|| legacy("not a whole number"))?),
        Transform::Boolean => Value::from(boolean(&v).ok_or_else(|| legacy("not true or false"))?),
        Transform::FormatDate(a) => {
            let opts = functions::DateOptions {
                input: match a.input {
                    DateInputShape::Auto => functions::DateInput::Auto,
                    DateInputShape::Iso8601 => functions::DateInput::Iso8601,
                    DateInputShape::EpochMs => functions::DateInput::EpochMillis,
                    DateInputShape::UsDate => functions::DateInput::UsDate,
                    DateInputShape::Star => functions::DateInput::StarDateTime,
                    DateInputShape::Salesforce => functions::DateInput::Salesforce,
                },
                source_tz: a.tz,
            };
            functions::format_date(&v, &opts).map_err(function_error)?
        }
        Transform::FormatCurrency(a) => {
            let opts = functions::CurrencyOptions {
                currency: a.currency.clone(),
                input_is_minor: a.input_is_minor,
            };
            match functions::format_currency(&v, &opts).map_err(function_error)? {
                Value::Object(mut m) => {
                    if let (Some(field), Some(code)) = (&a.currency_field, m.remove("currency")) {
                        ctx.extra.push((field.clone(), code));
                    }
                    m.remove("amount_minor").unwrap_or(Value::Null)
                }
                other => other,
            }
        }
        Transform::FormatPhone(a) => {
            functions::format_phone(&v, &a.region).map_err(function_error)?
        }
        Transform::NormalizeText(a) => {
            let opts = functions::TextOptions {
                trim: a.trim,
                collapse_spaces: a.collapse_spaces,
                case: match a.case {
                    TextCase::Keep => functions::Case::Keep,
                    TextCase::Lower => functions::Case::Lower,
                    TextCase::Upper => functions::Case::Upper,
                    TextCase::Title => functions::Case::Title,
                },
                nfc: a.nfc,
            };
            functions::normalize_text(&v, &opts).map_err(function_error)?
        }
        Transform::LookupValue(a) => {
            functions::lookup_value(&v, &a.table, a.default.clone(), a.case_insensitive)
                .map_err(function_error)?
        }
        Transform::Concatenate(a) => {
            let parts: Vec<Value> = a
                .from
                .iter()
                .map(|p| resolve(ctx.payload, p).cloned().unwrap_or(Value::Null))
                .collect();
            functions::concatenate(&parts, &a.separator, a.skip_empty).map_err(function_error)?
        }
        Transform::Split(a) => {
            functions::split(&v, &a.separator, a.index).map_err(function_error)?
        }
        Transform::Calculate(e) | Transform::CustomFunction(e) => ctx
            .scope()
            .evaluate(e, &v)
            .map_err(|e| (e.code, e.message))?,
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
        let m = transform_raw(&topology(), &r).unwrap().remove(0);
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
        let m = transform_raw(&topology(), &good).unwrap().remove(0);
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

    const ADF: &str = include_str!("../tests/fixtures/adf_lead_two_vehicles.xml");

    fn adf_topology() -> Topology {
        hub_topology::parse_with_env(include_str!("../tests/fixtures/adf_topology.yaml"), &|_| {
            None
        })
        .unwrap()
    }

    fn adf_raw(payload: &str) -> RawChange {
        RawChange {
            tenant: "demo-motors".into(),
            connector: "leads".into(),
            vendor: "generic".into(),
            vendor_entity: "prospect".into(),
            // As ingest sends XML: it reads ids from JSON only.
            external_id: None,
            operation: "upsert".into(),
            source_ts: 1_714_564_800_000,
            received_at: 1_714_564_801_000,
            ingest_id: "i-adf".into(),
            content_type: "application/xml".into(),
            payload: payload.into(),
        }
    }

    fn codes(f: &TransformFailure) -> Vec<(String, String)> {
        let mut c: Vec<(String, String)> = f
            .errors
            .iter()
            .map(|e| (e.field.clone().unwrap_or_default(), e.code.clone()))
            .collect();
        c.sort();
        c
    }

    #[test]
    fn an_adf_prospect_becomes_a_lead_a_customer_and_a_vehicle() {
        let all = transform_raw(&adf_topology(), &adf_raw(ADF)).unwrap();
        let entities: Vec<Entity> = all.iter().map(|m| m.entity).collect();
        assert_eq!(entities, [Entity::Lead, Entity::Customer, Entity::Vehicle]);
        let lead = &all[0].doc;
        assert_eq!(lead["lead_id"], "L-1001");
        assert_eq!(lead["external_id"], "L-1001");
        assert_eq!(lead["first_name"], "Pat");
        assert_eq!(lead["last_name"], "Lee");
        assert_eq!(lead["email"], "pat@example.com");
        assert_eq!(lead["phone"], "+15125550143");
        assert_eq!(lead["status"], "new");
        assert_eq!(lead["source"], "Example");
        assert_eq!(lead["vehicle_of_interest"], "2003 Honda Accord");
        assert_eq!(lead["vehicle_of_interest_vin"], "1HGCM82633A004352");
        assert_eq!(lead["trade_in_description"], "Ford Focus");
        assert_eq!(lead["comments"], "Is it still availabl");
        // 10:00 at -05:00; the offset wins over the configured zone.
        assert_eq!(lead["created_at"], 1_714_575_600_000i64);
        // Ingest cannot read an XML payload's time; the mapping's `updated_at` path does.
        assert_eq!(lead["source_updated_at"], 1_714_575_600_000i64);
        let customer = &all[1].doc;
        assert_eq!(lead["customer_key"], all[1].key.as_str());
        assert_eq!(
            all[1].key,
            identity::customer_key("demo-motors", "email", "pat@example.com")
        );
        assert_eq!(customer["mobile_phone"], "+15125550143");
        assert_eq!(customer["address"]["state"], "IL");
        assert_eq!(customer["address"]["country"], "US");
        let vehicle = &all[2];
        assert_eq!(vehicle.key, "1HGCM82633A004352");
        assert_eq!(vehicle.doc["year"], 2003);
        assert_eq!(vehicle.doc["mileage"], 98_000);
        assert_eq!(vehicle.doc["condition"], "used");
        assert_eq!(vehicle.doc["list_price_minor"], 699_500);
        assert_eq!(vehicle.doc["currency"], "USD");
    }

    #[test]
    fn one_failing_mapping_fails_the_record_with_every_error_prefixed() {
        let bad = ADF
            .replace("<year>2003</year>", "<year>1899</year>")
            .replace("1HGCM82633A004352", "1HGCM82643A004352")
            .replace("<regioncode>IL</regioncode>", "<regioncode>ZZ</regioncode>")
            .replace("<country>US</country>", "<country>USA</country>");
        let f = transform_raw(&adf_topology(), &adf_raw(&bad)).unwrap_err();
        assert_eq!(f.class, "validation");
        assert_eq!(
            codes(&f),
            [
                ("customer.address.country", "pattern_mismatch"),
                ("customer.address.state", "state_invalid"),
                ("lead.vehicle_of_interest_vin", "vin_invalid"),
                ("vehicle.vin", "vin_invalid"),
                ("vehicle.year", "out_of_range"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let year = f.errors.iter().find(|e| e.code == "out_of_range").unwrap();
        assert_eq!(year.message, "the model year must be between 1981 and 2100");
        let country = f
            .errors
            .iter()
            .find(|e| e.code == "pattern_mismatch")
            .unwrap();
        assert_eq!(country.message, "the country must be a two-letter code");
    }

    #[test]
    fn entity_rules_see_the_mapped_record() {
        let no_contact = ADF
            .replace("<email preferredcontact=\"1\">pat@example.com</email>", "")
            .replace(
                "<phone type=\"cellphone\" time=\"evening\">512-555-0143</phone>",
                "",
            );
        let f = transform_raw(&adf_topology(), &adf_raw(&no_contact)).unwrap_err();
        let e = f.errors.iter().find(|e| e.code == "rule_failed").unwrap();
        assert_eq!(e.field.as_deref(), Some("lead.email"));
        assert_eq!(e.message, "a lead needs an email or a phone number");
    }

    #[test]
    fn malformed_xml_is_a_decode_failure_and_other_types_are_refused() {
        let f = transform_raw(&adf_topology(), &adf_raw("<adf><prospect></adf>")).unwrap_err();
        assert_eq!(f.class, "decode");
        assert_eq!(f.errors[0].code, "malformed_xml");
        let mut r = adf_raw(ADF);
        r.content_type = "text/csv".into();
        let f = transform_raw(&adf_topology(), &r).unwrap_err();
        assert_eq!(f.errors[0].code, "unsupported_content_type");
    }

    #[test]
    fn dry_run_maps_one_mapping_from_text() {
        let t = adf_topology();
        let vehicle = &t.tenants[0].connectors[0].entities[2];
        let m = dry_run(vehicle, "text/xml; charset=utf-8", ADF).unwrap();
        assert_eq!(m.doc["external_id"], "L-1001");
        assert_eq!(m.doc["source_updated_at"], 0);
        assert_eq!(m.doc["vin"], "1HGCM82633A004352");
        let lead = &t.tenants[0].connectors[0].entities[0];
        let m = dry_run(lead, "application/xml", ADF).unwrap();
        assert_eq!(m.doc["source_updated_at"], 1_714_575_600_000i64);
        assert_eq!(
            dry_run(lead, "application/json", ADF).unwrap_err().class,
            "decode"
        );
    }

    fn one_field(field: &str) -> EntityMapping {
        let text = format!(
            "version: 1\ntenants:\n  - id: t\n    connectors:\n      - id: c\n        vendor: generic\n        webhook_secret: 0123456789abcdef0123\n        entities:\n          - vendor_entity: X\n            canonical: customer\n            external_id: /id\n            fields:\n{field}"
        );
        let t = hub_topology::parse_with_env(&text, &|_| None).unwrap();
        t.tenants[0].connectors[0].entities[0].clone()
    }

    #[test]
    fn every_transformation_with_arguments_runs_from_yaml() {
        let m = one_field(
            r#"              first_name: { from: /first, transform: [trim, { normalize_text: { case: title } }] }
              last_name: { from: /full, transform: [{ split: { separator: " ", index: 1 } }, { custom_function: "if value.len() > 3 { value.sub_string(0, 3) } else { value }" }] }
              company_name: { transform: [{ concatenate: { from: [/first, /missing, /full], separator: " / " } }] }
              customer_type: { from: /kind, transform: [{ lookup_value: { table: { 1: individual, 2: business }, default: other } }] }
              preferred_language: { transform: [{ calculate: 'if record.lang == () { "en" } else { record.lang }' }] }
              phone: { from: /phone, transform: [{ format_phone: { region: GB } }] }
              consent_updated_at: { from: /consent, transform: [{ format_date: { tz: America/Chicago, input: mm/dd/yyyy } }] }
              created_at: { from: /created, transform: [{ calculate: "value * 1000" }] }
              email_opt_in: { from: /optin, transform: [boolean] }
"#,
        );
        let payload = json!({"id": "1", "first": "  mary-ann  o'BRIEN ", "full": "Pat Leeson", "kind": 2,
            "phone": "020 7946 0018", "consent": "03/10/2024", "created": 1_714_564_800, "optin": "yes"});
        let doc = dry_run(&m, "application/json", &payload.to_string())
            .unwrap()
            .doc;
        assert_eq!(doc["first_name"], "Mary-Ann O'Brien");
        assert_eq!(doc["last_name"], "Lee");
        assert_eq!(doc["company_name"], "  mary-ann  o'BRIEN  / Pat Leeson");
        assert_eq!(doc["customer_type"], "business");
        assert_eq!(doc["preferred_language"], "en");
        assert_eq!(doc["phone"], "+442079460018");
        // Midnight in Chicago (CST, -06:00) on 10 March 2024.
        assert_eq!(doc["consent_updated_at"], 1_710_050_400_000i64);
        assert_eq!(doc["created_at"], 1_714_564_800_000i64);
        assert_eq!(doc["email_opt_in"], true);
    }

    #[test]
    fn expression_failures_and_limits_are_field_errors() {
        let m = one_field(
            r#"              first_name: { from: /a, transform: [{ calculate: "value * 2" }] }
              last_name: { from: /b, transform: [{ custom_function: "let x = 0; loop { x += 1; }" }] }
              company_name: { from: /c, rules: [{ custom: "value.len() > 100" }, { length: { min: 2, max: 3 } }, { regex: "^[0-9]+$" }] }
              email: { from: /d, transform: [{ calculate: "value.len()" }], rules: [{ custom: "value" }] }
"#,
        );
        let f = dry_run(
            &m,
            "application/json",
            r#"{"a":"x","b":"y","c":"abcd","d":"xyz"}"#,
        )
        .unwrap_err();
        assert_eq!(
            codes(&f),
            [
                ("company_name", "length_out_of_range"),
                ("company_name", "pattern_mismatch"),
                ("company_name", "rule_failed"),
                ("email", "expression_failed"),
                ("first_name", "expression_failed"),
                ("last_name", "expression_limit"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn format_currency_writes_amount_and_currency() {
        let m = one_field(
            r#"              last_name: { from: /n }
              company_name: { from: /price, transform: [{ format_currency: { currency: USD, currency_field: preferred_language } }, to_string] }
              preferred_language: { default: xx }
"#,
        );
        let doc = dry_run(
            &m,
            "application/json",
            r#"{"id":"1","n":"L","price":"1234.50 EUR"}"#,
        )
        .unwrap()
        .doc;
        assert_eq!(doc["company_name"], "123450");
        assert_eq!(doc["preferred_language"], "EUR");
        let doc = dry_run(&m, "application/json", r#"{"id":"1","n":"L"}"#)
            .unwrap()
            .doc;
        assert_eq!(doc["preferred_language"], "xx");
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

        #[test]
        fn arbitrary_xml_payloads_never_panic(s in "\\PC{0,200}", cut in 0usize..2000) {
            let t = adf_topology();
            let _ = transform_raw(&t, &adf_raw(&s));
            let cut = ADF.char_indices().map(|(i, _)| i).find(|i| *i >= cut).unwrap_or(0);
            let _ = transform_raw(&t, &adf_raw(&ADF[..cut]));
        }

        #[test]
        fn arbitrary_adf_values_never_panic(first in "\\PC{0,20}", year in "\\PC{0,8}", price in "\\PC{0,10}") {
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
            let doc = ADF
                .replace(">Pat<", &format!(">{}<", esc(&first)))
                .replace(">2003<", &format!(">{}<", esc(&year)))
                .replace(">6995<", &format!(">{}<", esc(&price)));
            let _ = transform_raw(&adf_topology(), &adf_raw(&doc));
        }
    }
}
