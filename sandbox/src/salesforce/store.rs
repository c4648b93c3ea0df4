//! The org's records in memory, and writes through sObject Collections upsert and update
//! (vendor-apis.md §2.5): per-record validation with Salesforce's status codes, `allOrNone`
//! rollback, and the system fields (`CreatedDate`, `LastModifiedDate`, `SystemModstamp`) kept
//! by the org.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::errors::RecordError;
use super::schema::{FieldType, SObject, record_id, to_18};
use crate::common::vin;

/// §2.3: datetimes in JSON look like `2024-05-01T12:34:56.000+0000`.
pub fn sf_datetime(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// Epoch ms of a Salesforce datetime (`+0000` or RFC 3339 forms).
pub fn parse_datetime(s: &str) -> Option<i64> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|d| d.timestamp_millis())
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// Writable fields by canonical API name.
    pub fields: Map<String, Value>,
    pub created_ms: i64,
    pub modstamp_ms: i64,
    pub deleted: bool,
}

impl Record {
    /// A field's value, system fields included (`Value::Null` when unset).
    pub fn get(&self, field: &str) -> Value {
        match field {
            "Id" => json!(self.id),
            "IsDeleted" => json!(self.deleted),
            "CreatedDate" => json!(sf_datetime(self.created_ms)),
            "LastModifiedDate" | "SystemModstamp" => json!(sf_datetime(self.modstamp_ms)),
            f => self.fields.get(f).cloned().unwrap_or(Value::Null),
        }
    }

    /// The record as the REST API returns it: `attributes {type, url}` then the fields (§2.4).
    pub fn to_json(&self, object: &SObject, version: &str, fields: &[&str]) -> Value {
        let mut m = Map::new();
        m.insert(
            "attributes".into(),
            json!({"type": object.name, "url": format!("/services/data/{version}/sobjects/{}/{}", object.name, self.id)}),
        );
        for f in fields {
            m.insert((*f).to_owned(), self.get(f));
        }
        Value::Object(m)
    }
}

/// A validated record ready to write (fields, external-id value), or why it cannot be.
type Plan = Result<(Map<String, Value>, String), Vec<RecordError>>;

/// One record's outcome in a Collections upsert.
#[derive(Debug, Clone, PartialEq)]
pub enum UpsertResult {
    Ok { id: String, created: bool },
    Failed(Vec<RecordError>),
}

impl UpsertResult {
    /// §2.5: `{"id","success","errors","created"}`.
    pub fn to_json(&self) -> Value {
        match self {
            UpsertResult::Ok { id, created } => {
                json!({"id": id, "success": true, "errors": [], "created": created})
            }
            UpsertResult::Failed(errs) => json!({
                "success": false,
                "errors": errs.iter().map(RecordError::to_json).collect::<Vec<_>>(),
            }),
        }
    }
}

/// One record's outcome in a Collections update (§2.5 "Update": a `SaveResult`, no `created`).
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateResult {
    Ok {
        id: String,
    },
    /// `id` is the record's id when the input named an existing record of its type.
    Failed {
        id: Option<String>,
        errors: Vec<RecordError>,
    },
}

impl UpdateResult {
    /// §2.5: `{"id","success","errors"}`; a failure carries `id` only when the record is known.
    pub fn to_json(&self) -> Value {
        match self {
            UpdateResult::Ok { id } => json!({"id": id, "success": true, "errors": []}),
            UpdateResult::Failed { id, errors } => {
                let mut v = json!({
                    "success": false,
                    "errors": errors.iter().map(RecordError::to_json).collect::<Vec<_>>(),
                });
                if let Some(id) = id {
                    v["id"] = json!(id);
                }
                v
            }
        }
    }
}

/// A change the org made, for the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub object: &'static str,
    pub record_id: String,
    pub change_type: &'static str,
    pub changed_fields: Vec<String>,
    /// The values sent in the event body: all set fields on create, the changed ones on update.
    pub values: Map<String, Value>,
    pub commit_ms: i64,
    /// §2.7 `changeOrigin`, e.g. `com/salesforce/api/rest/66.0;client=hub` (empty from the UI).
    pub origin: String,
}

#[derive(Debug, Default)]
pub struct Store {
    pub records: HashMap<&'static str, Vec<Record>>,
    /// id → (object, position)
    ids: HashMap<String, (&'static str, usize)>,
    /// (object, external-id field, lower-cased value) → position
    external: HashMap<(&'static str, &'static str, String), usize>,
    counter: u64,
    /// Fault knob: the next N records written fail with `UNABLE_TO_LOCK_ROW`.
    pub lock_row_next: u32,
}

fn normalise(object: &SObject, field: &str, v: &Value) -> Result<Value, RecordError> {
    let Some(def) = object.field(field) else {
        return Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "No such column '{field}' on sobject of type {}",
                object.name
            ),
            &[],
        ));
    };
    if SObject::is_system(def.name) {
        return Err(RecordError::new(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                def.name
            ),
            &[def.name],
        ));
    }
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = |what: &str| {
        RecordError::new(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            format!("{}: value not of required type: {what}", def.name),
            &[def.name],
        )
    };
    Ok(match def.ty {
        FieldType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) if s.eq_ignore_ascii_case("true") => json!(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => json!(false),
            _ => return Err(bad("boolean")),
        },
        FieldType::Number => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| bad("double"))?,
            _ => return Err(bad("double")),
        },
        FieldType::Date => match v.as_str().and_then(parse_date) {
            Some(d) => json!(d.format("%Y-%m-%d").to_string()),
            None => return Err(bad("date")),
        },
        FieldType::DateTime => match v.as_str().and_then(parse_datetime) {
            Some(ms) => json!(sf_datetime(ms)),
            None => return Err(bad("datetime")),
        },
        FieldType::Email => {
            let s = v.as_str().ok_or_else(|| bad("email"))?;
            if !s.is_empty() && !crate::hubspot::store::is_email(s) {
                // The message leaves the value out: sandbox answers may end up in logs.
                return Err(RecordError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address", def.name),
                    &[def.name],
                ));
            }
            v.clone()
        }
        FieldType::String | FieldType::Phone | FieldType::Id | FieldType::Reference => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(bad("string")),
            };
            if s.chars().count() > 255 {
                return Err(RecordError::new(
                    "STRING_TOO_LONG",
                    format!("{}: data value too large (max length=255)", def.name),
                    &[def.name],
                ));
            }
            json!(s)
        }
    })
}

/// §2.9: `REQUIRED_FIELD_MISSING` when a record would be created without its required fields.
fn missing_required(object: &SObject, fields: &Map<String, Value>) -> Result<(), Vec<RecordError>> {
    let missing: Vec<&str> = object
        .fields
        .iter()
        .filter(|f| f.required && fields.get(f.name).is_none_or(Value::is_null))
        .map(|f| f.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(vec![RecordError::new(
        "REQUIRED_FIELD_MISSING",
        format!("Required fields are missing: [{}]", missing.join(", ")),
        &missing,
    )])
}

impl Store {
    pub fn count(&self, object: &str) -> usize {
        self.records
            .get(object)
            .map_or(0, |r| r.iter().filter(|r| !r.deleted).count())
    }

    pub fn by_id(&self, id: &str) -> Option<(&'static str, &Record)> {
        let (o, pos) = self.ids.get(id)?;
        Some((o, self.records.get(o)?.get(*pos)?))
    }

    pub fn by_external(&self, object: &SObject, field: &str, value: &str) -> Option<&Record> {
        let f = object.field(field)?;
        let pos = self
            .external
            .get(&(object.name, f.name, value.to_lowercase()))?;
        self.records
            .get(object.name)?
            .get(*pos)
            .filter(|r| !r.deleted)
    }

    fn checked_fields(
        &self,
        object: &SObject,
        input: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<RecordError>> {
        let mut out = Map::new();
        let mut errs = Vec::new();
        for (k, v) in input {
            if k == "attributes" {
                continue;
            }
            match normalise(object, k, v) {
                Ok(v) => {
                    let name = object.field(k).map_or(k.as_str(), |f| f.name);
                    if let Some(f) = object.field(name)
                        && f.ty == FieldType::Reference
                        && let Some(id) = v.as_str()
                        && self.by_id(id).is_none()
                    {
                        errs.push(RecordError::new(
                            "INVALID_CROSS_REFERENCE_KEY",
                            format!("invalid cross reference id ({name})"),
                            &[f.name],
                        ));
                        continue;
                    }
                    out.insert(name.to_owned(), v);
                }
                Err(e) => errs.push(e),
            }
        }
        // A dealership org's validation rule: a vehicle's VIN must have a valid check digit.
        if object.name == "Vehicle__c"
            && let Some(v) = out.get("VIN__c").and_then(Value::as_str)
            && !vin::is_valid(v)
        {
            errs.push(RecordError::new(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "VIN__c must be 17 characters with a valid check digit",
                &["VIN__c"],
            ));
        }
        if errs.is_empty() { Ok(out) } else { Err(errs) }
    }

    /// Inserts a record without the API (seed data, test helpers). Fields must be valid.
    pub fn insert(
        &mut self,
        object: &'static SObject,
        fields: Map<String, Value>,
        created_ms: i64,
        modstamp_ms: i64,
    ) -> Result<String, Vec<RecordError>> {
        let fields = self.checked_fields(object, &fields)?;
        missing_required(object, &fields)?;
        self.counter += 1;
        let id = record_id(object.key_prefix, self.counter);
        let list = self.records.entry(object.name).or_default();
        let pos = list.len();
        for f in object.fields.iter().filter(|f| f.external_id) {
            if let Some(v) = fields.get(f.name).and_then(Value::as_str) {
                self.external
                    .insert((object.name, f.name, v.to_lowercase()), pos);
            }
        }
        list.push(Record {
            id: id.clone(),
            fields,
            created_ms,
            modstamp_ms,
            deleted: false,
        });
        self.ids.insert(id.clone(), (object.name, pos));
        Ok(id)
    }

    /// Updates fields of a record by id; returns the names that changed.
    pub fn update(
        &mut self,
        id: &str,
        fields: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<Vec<String>, Vec<RecordError>> {
        let Some(&(oname, pos)) = self.ids.get(id) else {
            return Err(vec![RecordError::new(
                "ENTITY_IS_DELETED",
                "entity is deleted",
                &[],
            )]);
        };
        let Some(object) = SObject::find(oname) else {
            return Err(vec![]);
        };
        if self.by_id(id).is_some_and(|(_, r)| r.deleted) {
            return Err(vec![RecordError::new(
                "ENTITY_IS_DELETED",
                "entity is deleted",
                &[],
            )]);
        }
        let fields = self.checked_fields(object, fields)?;
        let Some(rec) = self.records.get_mut(oname).and_then(|l| l.get_mut(pos)) else {
            return Err(vec![]);
        };
        let mut changed = Vec::new();
        for (k, v) in fields {
            if rec.fields.get(&k) != Some(&v) {
                if let Some(f) = object.field(&k).filter(|f| f.external_id) {
                    if let Some(old) = rec.fields.get(&k).and_then(Value::as_str) {
                        self.external.remove(&(oname, f.name, old.to_lowercase()));
                    }
                    if let Some(new) = v.as_str() {
                        self.external
                            .insert((oname, f.name, new.to_lowercase()), pos);
                    }
                }
                changed.push(k.clone());
                rec.fields.insert(k, v);
            }
        }
        // §2.7: an update always touches LastModifiedDate/SystemModstamp.
        rec.modstamp_ms = now_ms.max(rec.modstamp_ms + 1);
        changed.push("LastModifiedDate".into());
        Ok(changed)
    }

    /// Soft-deletes a record (it stays visible to `queryAll`, §2.4).
    pub fn delete(&mut self, id: &str, now_ms: i64) -> bool {
        let Some(&(oname, pos)) = self.ids.get(id) else {
            return false;
        };
        let Some(rec) = self.records.get_mut(oname).and_then(|l| l.get_mut(pos)) else {
            return false;
        };
        if rec.deleted {
            return false;
        }
        rec.deleted = true;
        rec.modstamp_ms = now_ms.max(rec.modstamp_ms + 1);
        true
    }

    /// sObject Collections upsert by `external_field` (§2.5). The caller has checked the
    /// object, the field and the record count.
    pub fn upsert_collection(
        &mut self,
        object: &'static SObject,
        external_field: &'static str,
        records: &[Value],
        all_or_none: bool,
        now_ms: i64,
    ) -> (Vec<UpsertResult>, Vec<ChangeEvent>) {
        // Validate everything first, so allOrNone can roll back by not writing at all.
        let mut plans: Vec<Plan> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let plan = (|| {
                let m = r.as_object().ok_or_else(|| {
                    vec![RecordError::new(
                        "INVALID_INPUT",
                        "a record must be a JSON object",
                        &[],
                    )]
                })?;
                let declared = m
                    .get("attributes")
                    .and_then(|a| a.get("type"))
                    .and_then(Value::as_str);
                if !declared.is_some_and(|t| t.eq_ignore_ascii_case(object.name)) {
                    return Err(vec![RecordError::new(
                        "INVALID_INPUT",
                        format!("attributes.type must be {} for this upsert", object.name),
                        &[],
                    )]);
                }
                let key = match m
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(external_field))
                    .map(|(_, v)| v)
                {
                    Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(vec![RecordError::new(
                            "REQUIRED_FIELD_MISSING",
                            format!("Required fields are missing: [{external_field}]"),
                            &[external_field],
                        )]);
                    }
                };
                if self.lock_row_next > 0 {
                    self.lock_row_next -= 1;
                    return Err(vec![RecordError::new(
                        "UNABLE_TO_LOCK_ROW",
                        "unable to obtain exclusive access to this record or 1 records",
                        &[],
                    )]);
                }
                let fields = self.checked_fields(object, m)?;
                if self.by_external(object, external_field, &key).is_none() {
                    missing_required(object, &fields)?;
                }
                Ok((fields, key))
            })();
            if let Ok((_, key)) = &plan
                && let Some(first) = seen.insert(key.to_lowercase(), i)
            {
                let dup = || {
                    vec![RecordError::new(
                        "DUPLICATE_EXTERNAL_ID",
                        format!("Duplicate external id specified: {external_field}"),
                        &[external_field],
                    )]
                };
                plans[first] = Err(dup());
                plans.push(Err(dup()));
                continue;
            }
            plans.push(plan);
        }
        let any_failed = plans.iter().any(Result::is_err);
        if all_or_none && any_failed {
            let results = plans
                .into_iter()
                .map(|p| match p {
                    Err(e) => UpsertResult::Failed(e),
                    Ok(_) => UpsertResult::Failed(vec![RecordError::new(
                        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "Record rolled back because not all records were valid and the request was using AllOrNone header",
                        &[],
                    )]),
                })
                .collect();
            return (results, Vec::new());
        }
        let mut results = Vec::new();
        let mut events = Vec::new();
        for plan in plans {
            let (fields, key) = match plan {
                Ok(p) => p,
                Err(e) => {
                    results.push(UpsertResult::Failed(e));
                    continue;
                }
            };
            let existing = self
                .by_external(object, external_field, &key)
                .map(|r| r.id.clone());
            let outcome = match existing {
                Some(id) => self.update(&id, &fields, now_ms).map(|changed| {
                    let values = fields
                        .iter()
                        .filter(|(k, _)| changed.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    events.push(ChangeEvent {
                        object: object.name,
                        record_id: id.clone(),
                        change_type: "UPDATE",
                        changed_fields: changed,
                        values,
                        commit_ms: now_ms,
                        origin: String::new(),
                    });
                    UpsertResult::Ok { id, created: false }
                }),
                None => self
                    .insert(object, fields.clone(), now_ms, now_ms)
                    .map(|id| {
                        events.push(ChangeEvent {
                            object: object.name,
                            record_id: id.clone(),
                            change_type: "CREATE",
                            changed_fields: fields.keys().cloned().collect(),
                            values: fields.clone(),
                            commit_ms: now_ms,
                            origin: String::new(),
                        });
                        UpsertResult::Ok { id, created: true }
                    }),
            };
            results.push(outcome.unwrap_or_else(UpsertResult::Failed));
        }
        (results, events)
    }

    /// sObject Collections update, `PATCH …/composite/sobjects` (vendor-apis.md §2.5: "Update
    /// … with the same shape [as create], each record carrying `Id`"; Salesforce's "Update
    /// Records Using sObject Collections": every record needs `attributes.type` and an `id`
    /// with a valid ID value, types may be mixed, results come back in request order). The
    /// caller has checked the record count.
    ///
    /// Per record, in this order: a JSON object; `attributes.type` naming a known object
    /// (`INVALID_INPUT` / `INVALID_TYPE`); an `Id` (any case) that is present
    /// (`MISSING_ARGUMENT`), well formed (`MALFORMED_ID "malformed id …"`), of the declared
    /// type (`MALFORMED_ID "… id value of incorrect type"`), known (`INVALID_CROSS_REFERENCE_KEY`)
    /// and not deleted (`ENTITY_IS_DELETED`); not the same id as another record of the call
    /// (both refused with `DUPLICATE_VALUE`, as upsert refuses duplicate external ids — the code
    /// is inferred, not documented); then the lock-row knob and the
    /// same field checks as upsert (unknown field `INVALID_FIELD`, system field
    /// `INVALID_FIELD_FOR_INSERT_UPDATE`, types, validation rule), a required field cleared
    /// (`REQUIRED_FIELD_MISSING`) and an external id taken by another record (`DUPLICATE_VALUE`).
    /// Writes go through [`Store::update`] and give the same `UPDATE` change events as an
    /// upsert that updates, so CDC and `SystemModstamp` behave the same.
    pub fn update_collection(
        &mut self,
        records: &[Value],
        all_or_none: bool,
        now_ms: i64,
    ) -> (Vec<UpdateResult>, Vec<ChangeEvent>) {
        type UpdatePlan = Result<(&'static SObject, String, Map<String, Value>), UpdateFailure>;
        type UpdateFailure = (Option<String>, Vec<RecordError>);
        let fail = |id: Option<&str>, e: RecordError| (id.map(str::to_owned), vec![e]);
        // Validate everything first, so allOrNone can roll back by not writing at all.
        let mut plans: Vec<UpdatePlan> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let plan = (|| {
                let m = r.as_object().ok_or_else(|| {
                    fail(
                        None,
                        RecordError::new("INVALID_INPUT", "a record must be a JSON object", &[]),
                    )
                })?;
                let declared = m
                    .get("attributes")
                    .and_then(|a| a.get("type"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        fail(
                            None,
                            RecordError::new(
                                "INVALID_INPUT",
                                "each record must have an attributes map with a type",
                                &[],
                            ),
                        )
                    })?;
                let object = SObject::find(declared).ok_or_else(|| {
                    fail(
                        None,
                        RecordError::new(
                            "INVALID_TYPE",
                            format!("sObject type '{declared}' is not supported."),
                            &[],
                        ),
                    )
                })?;
                let given = match m.iter().find(|(k, _)| k.eq_ignore_ascii_case("Id")) {
                    Some((_, Value::String(s))) if !s.trim().is_empty() => s.trim().to_owned(),
                    _ => {
                        return Err(fail(
                            None,
                            RecordError::new(
                                "MISSING_ARGUMENT",
                                "Id not specified in an update call",
                                &[],
                            ),
                        ));
                    }
                };
                let id = canonical_id(&given).ok_or_else(|| {
                    fail(
                        None,
                        RecordError::new("MALFORMED_ID", format!("malformed id {given}"), &[]),
                    )
                })?;
                if !id.starts_with(object.key_prefix) {
                    return Err(fail(
                        None,
                        RecordError::new(
                            "MALFORMED_ID",
                            format!("{} ID: id value of incorrect type: {given}", object.name),
                            &["Id"],
                        ),
                    ));
                }
                match self.by_id(&id) {
                    None => {
                        return Err(fail(
                            None,
                            RecordError::new(
                                "INVALID_CROSS_REFERENCE_KEY",
                                "invalid cross reference id",
                                &[],
                            ),
                        ));
                    }
                    Some((_, rec)) if rec.deleted => {
                        return Err(fail(
                            Some(&id),
                            RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[]),
                        ));
                    }
                    Some(_) => {}
                }
                if self.lock_row_next > 0 {
                    self.lock_row_next -= 1;
                    return Err(fail(
                        Some(&id),
                        RecordError::new(
                            "UNABLE_TO_LOCK_ROW",
                            "unable to obtain exclusive access to this record or 1 records",
                            &[],
                        ),
                    ));
                }
                let input: Map<String, Value> = m
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("Id"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let fields = self
                    .checked_fields(object, &input)
                    .map_err(|e| (Some(id.clone()), e))?;
                let cleared: Vec<&str> = object
                    .fields
                    .iter()
                    .filter(|f| f.required)
                    .filter(|f| {
                        fields
                            .get(f.name)
                            .is_some_and(|v| v.is_null() || v.as_str() == Some(""))
                    })
                    .map(|f| f.name)
                    .collect();
                if !cleared.is_empty() {
                    return Err(fail(
                        Some(&id),
                        RecordError::new(
                            "REQUIRED_FIELD_MISSING",
                            format!("Required fields are missing: [{}]", cleared.join(", ")),
                            &cleared,
                        ),
                    ));
                }
                for f in object.fields.iter().filter(|f| f.external_id) {
                    if let Some(v) = fields.get(f.name).and_then(Value::as_str)
                        && let Some(other) = self.by_external(object, f.name, v)
                        && other.id != id
                    {
                        return Err(fail(
                            Some(&id),
                            RecordError::new(
                                "DUPLICATE_VALUE",
                                format!(
                                    "duplicate value found: {} duplicates value on record with id: {}",
                                    f.name, other.id
                                ),
                                &[f.name],
                            ),
                        ));
                    }
                }
                Ok((object, id, fields))
            })();
            if let Ok((_, id, _)) = &plan
                && let Some(first) = seen.insert(id.clone(), i)
            {
                let dup = |id: &str| {
                    fail(
                        Some(id),
                        RecordError::new(
                            "DUPLICATE_VALUE",
                            format!("Duplicate id in list: {id}"),
                            &["Id"],
                        ),
                    )
                };
                plans[first] = Err(dup(id));
                plans.push(Err(dup(id)));
                continue;
            }
            plans.push(plan);
        }
        let any_failed = plans.iter().any(Result::is_err);
        if all_or_none && any_failed {
            let results = plans
                .into_iter()
                .map(|p| match p {
                    Err((id, errors)) => UpdateResult::Failed { id, errors },
                    Ok((_, id, _)) => UpdateResult::Failed {
                        id: Some(id),
                        errors: vec![RecordError::new(
                            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "Record rolled back because not all records were valid and the request was using AllOrNone header",
                            &[],
                        )],
                    },
                })
                .collect();
            return (results, Vec::new());
        }
        let mut results = Vec::new();
        let mut events = Vec::new();
        for plan in plans {
            let (object, id, fields) = match plan {
                Ok(p) => p,
                Err((id, errors)) => {
                    results.push(UpdateResult::Failed { id, errors });
                    continue;
                }
            };
            let outcome = match self.update(&id, &fields, now_ms) {
                Ok(changed) => {
                    let values = fields
                        .iter()
                        .filter(|(k, _)| changed.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    events.push(ChangeEvent {
                        object: object.name,
                        record_id: id.clone(),
                        change_type: "UPDATE",
                        changed_fields: changed,
                        values,
                        commit_ms: now_ms,
                        origin: String::new(),
                    });
                    UpdateResult::Ok { id }
                }
                Err(errors) => UpdateResult::Failed {
                    id: Some(id),
                    errors,
                },
            };
            results.push(outcome);
        }
        (results, events)
    }
}

/// The 18-character form of a 15- or 18-character record id, or `None` when it is not one
/// (§2.3: 15 case-sensitive characters plus a 3-character checksum of their upper-case letters).
fn canonical_id(s: &str) -> Option<String> {
    if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match s.len() {
        15 => Some(to_18(s)),
        18 if to_18(&s[..15]) == s => Some(s.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_read_in_15_and_18_character_forms() {
        let id = record_id("003", 7);
        assert_eq!(canonical_id(&id), Some(id.clone()));
        assert_eq!(canonical_id(&id[..15]), Some(id.clone()));
        let mut bad_checksum = id[..15].to_owned();
        bad_checksum.push_str("ZZZ");
        assert_eq!(canonical_id(&bad_checksum), None);
        for bad in [
            "",
            "003",
            "003RO0000000007AA",
            "003RO000000000-AAA",
            "003ééééééé0",
        ] {
            assert_eq!(canonical_id(bad), None, "{bad}");
        }
    }

    /// An update through Collections changes the record and publishes exactly what an upsert
    /// that updates the same record does.
    #[test]
    fn collection_update_gives_the_same_change_event_as_an_upsert_update() {
        let vehicle = SObject::find("Vehicle__c").unwrap();
        let create = json!({"attributes": {"type": "Vehicle__c"}, "VIN__c": "1HGCM82633A004352", "Odometer__c": 10});
        let mut by_upsert = Store::default();
        let mut by_update = Store::default();
        let (created, _) =
            by_upsert.upsert_collection(vehicle, "VIN__c", std::slice::from_ref(&create), false, 1);
        by_update.upsert_collection(vehicle, "VIN__c", &[create], false, 1);
        let UpsertResult::Ok { id, .. } = &created[0] else {
            panic!("{created:?}");
        };
        let (r, upsert_events) = by_upsert.upsert_collection(
            vehicle,
            "VIN__c",
            &[json!({"attributes": {"type": "Vehicle__c"}, "VIN__c": "1HGCM82633A004352", "Odometer__c": 99})],
            false,
            50,
        );
        assert!(matches!(r[0], UpsertResult::Ok { created: false, .. }));
        let (r, update_events) = by_update.update_collection(
            &[json!({"attributes": {"type": "Vehicle__c"}, "Id": id, "Odometer__c": 99})],
            false,
            50,
        );
        assert_eq!(r, vec![UpdateResult::Ok { id: id.clone() }]);
        assert_eq!(update_events, upsert_events);
        assert_eq!(
            update_events[0].changed_fields,
            ["Odometer__c", "LastModifiedDate"]
        );
        assert_eq!(
            by_update.by_id(id).unwrap().1,
            by_upsert.by_id(id).unwrap().1
        );
        assert_eq!(by_update.by_id(id).unwrap().1.modstamp_ms, 50);
    }

    #[test]
    fn all_or_none_update_writes_nothing_when_one_record_fails() {
        let contact = SObject::find("Contact").unwrap();
        let mut store = Store::default();
        let id = store
            .insert(
                contact,
                Map::from_iter([("LastName".into(), json!("Lee"))]),
                1,
                1,
            )
            .unwrap();
        let (r, events) = store.update_collection(
            &[
                json!({"attributes": {"type": "Contact"}, "Id": id, "FirstName": "Mei"}),
                json!({"attributes": {"type": "Contact"}, "Id": id.clone() + "x"}),
            ],
            true,
            5,
        );
        assert!(events.is_empty());
        let codes: Vec<_> = r
            .iter()
            .map(|x| match x {
                UpdateResult::Failed { errors, .. } => errors[0].status_code,
                UpdateResult::Ok { .. } => "ok",
            })
            .collect();
        assert_eq!(codes, ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "MALFORMED_ID"]);
        let rec = store.by_id(&id).unwrap().1;
        assert!(rec.fields.get("FirstName").is_none());
        assert_eq!(rec.modstamp_ms, 1);
    }
}
