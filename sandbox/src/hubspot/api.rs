//! The CRM v3 object endpoints (vendor-apis.md §3.4, §3.5), served under `/crm/v3/objects` and
//! the date-versioned `/crm/objects/2026-03` alike (§3.2: same shapes).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::errors::ApiError;
use super::store::{self, ObjectType, iso};
use super::webhooks::ChangeSource;
use crate::common::{lock, parse_form};

/// §3.5: at most 100 inputs per batch call.
pub const MAX_BATCH_INPUTS: usize = 100;
/// §3.4: list pages hold at most 100.
pub const MAX_LIST_LIMIT: u64 = 100;

fn object_type(s: &str) -> Result<ObjectType, ApiError> {
    ObjectType::parse(s)
        .ok_or_else(|| ApiError::validation(format!("Unable to infer object type from: {s}")))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::validation(format!(
            "Invalid input JSON on line {}: {}",
            e.line(),
            e.classify_name()
        ))
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected value",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

fn property_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

fn now_iso(sh: &Shared) -> String {
    iso(sh.clock.now_ms())
}

/// `POST …/{objectType}/search` (§3.4).
pub(crate) async fn search(
    State(sh): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Value, ApiError> {
        let t = object_type(&object)?;
        let body = parse_json(&body)?;
        let st = lock(&sh.state);
        let visible_until =
            sh.clock.now_ms() - sh.config.search_visibility_delay.as_millis() as i64;
        let r = store::search(&st.store, t, &body, &sh.config.search, visible_until)?;
        let mut out = json!({"total": r.total, "results": r.results});
        if let Some(next) = r.next_after {
            out["paging"] = json!({"next": {"after": next.to_string()}});
        }
        Ok(out)
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET …/{objectType}?limit&after&properties` (§3.4): `after` is the next object id.
pub(crate) async fn list(
    State(sh): State<Arc<Shared>>,
    Path(object): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = || -> Result<Value, ApiError> {
        let t = object_type(&object)?;
        let q = parse_form(q.unwrap_or_default().as_bytes());
        let limit = match q.get("limit") {
            None => 10,
            Some(l) => l
                .parse::<u64>()
                .map_err(|_| ApiError::validation("limit must be a whole number"))?,
        };
        if limit > MAX_LIST_LIMIT {
            return Err(ApiError::validation(format!(
                "limit must be at most {MAX_LIST_LIMIT} (was {limit})"
            )));
        }
        let after = match q.get("after") {
            None => 0,
            Some(a) => a
                .parse::<u64>()
                .map_err(|_| ApiError::validation("after must be an object id"))?,
        };
        let props = property_list(
            q.get("properties")
                .map(|s| Value::String(s.clone()))
                .as_ref(),
        );
        let props = if props.is_empty() {
            t.default_properties()
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            props
        };
        let st = lock(&sh.state);
        let mut page: Vec<&store::CrmObject> = st
            .store
            .live(t)
            .filter(|o| o.id >= after)
            .take(limit as usize + 1)
            .collect();
        let next = (page.len() > limit as usize)
            .then(|| page.pop().map(|o| o.id))
            .flatten();
        let mut out =
            json!({"results": page.iter().map(|o| o.to_json(t, &props)).collect::<Vec<_>>()});
        if let Some(n) = next {
            out["paging"] = json!({"next": {
                "after": n.to_string(),
                "link": format!("{}/crm/v3/objects/{}?after={n}", sh.base_url(), t.name()),
            }});
        }
        Ok(out)
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET …/{objectType}/{id}?idProperty&properties` (§3.4).
pub(crate) async fn get_one(
    State(sh): State<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = || -> Result<Value, ApiError> {
        let t = object_type(&object)?;
        let q = parse_form(q.unwrap_or_default().as_bytes());
        let id_property = q.get("idProperty").map(String::as_str);
        if let Some(p) = id_property
            && p != "hs_object_id"
            && !t.unique_properties().contains(&p)
        {
            return Err(ApiError::validation(format!(
                "{p} is not a unique property and cannot be used as idProperty"
            )));
        }
        let props = property_list(
            q.get("properties")
                .map(|s| Value::String(s.clone()))
                .as_ref(),
        );
        let props = if props.is_empty() {
            t.default_properties()
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            props
        };
        let st = lock(&sh.state);
        let o = st.store.find(t, id_property, &id).ok_or_else(|| {
            ApiError::not_found("Object not found.  objectId are usually numeric.")
        })?;
        Ok(o.to_json(t, &props))
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn inputs(body: &Value) -> Result<&Vec<Value>, ApiError> {
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::validation("Invalid input JSON: inputs is required and must be an array")
        })?;
    if inputs.len() > MAX_BATCH_INPUTS {
        return Err(ApiError::validation(format!(
            "Too many inputs: {} provided, at most {MAX_BATCH_INPUTS} are allowed per batch",
            inputs.len()
        )));
    }
    Ok(inputs)
}

fn batch_response(
    sh: &Shared,
    started: String,
    results: Vec<Value>,
    errors: Vec<Value>,
) -> Response {
    let mut out = json!({
        "status": "COMPLETE",
        "results": results,
        "requestedAt": started,
        "startedAt": started,
        "completedAt": now_iso(sh),
        "links": {},
    });
    if errors.is_empty() {
        return Json(out).into_response();
    }
    // §3.5: partial failure is a 207 Multi-Status with errors[] and numErrors.
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    (StatusCode::MULTI_STATUS, Json(out)).into_response()
}

/// `POST …/{objectType}/batch/read` (§3.5).
pub(crate) async fn batch_read(
    State(sh): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let started = now_iso(&sh);
    let run = || -> Result<(Vec<Value>, Vec<Value>), ApiError> {
        let t = object_type(&object)?;
        let body = parse_json(&body)?;
        let inputs = inputs(&body)?;
        let id_property = body.get("idProperty").and_then(Value::as_str);
        if let Some(p) = id_property
            && p != "hs_object_id"
            && !t.unique_properties().contains(&p)
        {
            return Err(ApiError::validation(format!(
                "{p} is not a unique property and cannot be used as idProperty"
            )));
        }
        let props = property_list(body.get("properties"));
        let props = if props.is_empty() {
            t.default_properties()
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            props
        };
        let st = lock(&sh.state);
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in inputs {
            let id = input.get("id").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            match id
                .as_deref()
                .and_then(|id| st.store.find(t, id_property, id))
            {
                Some(o) => results.push(o.to_json(t, &props)),
                None => missing.push(Value::String(id.unwrap_or_default())),
            }
        }
        let errors = if missing.is_empty() {
            vec![]
        } else {
            vec![json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", t.singular().to_uppercase()),
                "context": {"ids": missing},
            })]
        };
        Ok((results, errors))
    };
    match run() {
        Ok((results, errors)) => batch_response(&sh, started, results, errors),
        Err(e) => e.into_response(),
    }
}

fn string_properties(v: Option<&Value>) -> Result<BTreeMap<String, String>, String> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let o = v.as_object().ok_or("properties must be an object")?;
    o.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                _ => return Err(format!("property {k} must be a string")),
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// `POST …/{objectType}/batch/upsert` (§3.5): by a unique `idProperty`, `new` on each result,
/// 207 with per-input errors (carrying `objectWriteTraceId` and `context.ids`).
pub(crate) async fn batch_upsert(
    State(sh): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let started = now_iso(&sh);
    let run = || -> Result<(Vec<Value>, Vec<Value>), ApiError> {
        let t = object_type(&object)?;
        let body = parse_json(&body)?;
        let inputs = inputs(&body)?;
        let default_id_property = body.get("idProperty").and_then(Value::as_str);
        // Validate the batch as a whole before writing anything.
        for input in inputs {
            let p = input
                .get("idProperty")
                .and_then(Value::as_str)
                .or(default_id_property)
                .ok_or_else(|| ApiError::validation("idProperty is required for upsert"))?;
            if !t.unique_properties().contains(&p) {
                return Err(ApiError::validation(format!(
                    "{p} is not a unique property and cannot be used as idProperty; unique properties of {}: {}",
                    t.name(),
                    t.unique_properties().join(", ")
                )));
            }
        }
        let now = sh.clock.now_ms();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let mut changes = Vec::new();
        let mut st = lock(&sh.state);
        for input in inputs {
            let id_property = input
                .get("idProperty")
                .and_then(Value::as_str)
                .or(default_id_property)
                .unwrap_or_default();
            let id = match input.get("id") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let trace = input.get("objectWriteTraceId").cloned();
            let fail = |category: &str, message: String, details: Vec<(&str, String)>| {
                let mut e = json!({
                    "status": "error",
                    "category": category,
                    "message": message,
                    "context": {"ids": [id.clone()]},
                    "errors": details.iter().map(|(code, prop)| json!({"message": format!("{code} on {prop}"), "code": code, "in": prop})).collect::<Vec<_>>(),
                });
                if let Some(t) = &trace {
                    e["objectWriteTraceId"] = t.clone();
                }
                e
            };
            if id.is_empty() {
                errors.push(fail(
                    "VALIDATION_ERROR",
                    format!("id is required (the {id_property} value)"),
                    vec![],
                ));
                continue;
            }
            let mut props = match string_properties(input.get("properties")) {
                Ok(p) => p,
                Err(m) => {
                    errors.push(fail("VALIDATION_ERROR", m, vec![]));
                    continue;
                }
            };
            props.insert(id_property.to_owned(), id.clone());
            let written: Vec<String> = props.keys().cloned().collect();
            let existing = st.store.find(t, Some(id_property), &id).map(|o| o.id);
            let outcome = match existing {
                Some(oid) => st.store.update(t, oid, props, now).map(|c| (oid, false, c)),
                None => st
                    .store
                    .create(t, props, now, now)
                    .map(|(oid, c)| (oid, true, c)),
            };
            match outcome {
                Ok((oid, new, c)) => {
                    changes.extend(c);
                    if let Some(o) = st.store.get(t, oid) {
                        let mut r = o.to_json(t, &written);
                        r["new"] = json!(new);
                        results.push(r);
                    }
                }
                Err(e) => errors.push(fail(e.category, e.message, e.details)),
            }
        }
        drop(st);
        sh.publish(changes, ChangeSource::Integration);
        Ok((results, errors))
    };
    match run() {
        Ok((results, errors)) => batch_response(&sh, started, results, errors),
        Err(e) => e.into_response(),
    }
}

fn input_error(e: store::InputError) -> ApiError {
    let status = match e.category {
        "CONFLICT" => 409,
        "OBJECT_NOT_FOUND" => 404,
        _ => 400,
    };
    let mut err = ApiError::new(status, e.category, e.message);
    err.body["errors"] = Value::Array(
        e.details
            .iter()
            .map(|(code, prop)| json!({"message": format!("{code} on {prop}"), "code": code, "in": prop}))
            .collect(),
    );
    err
}

/// `POST …/{objectType}` with `{"properties": {…}}`: 201 with the object; a taken unique value
/// is a 409 `CONFLICT` (§3.5).
pub(crate) async fn create_one(
    State(sh): State<Arc<Shared>>,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Value, ApiError> {
        let t = object_type(&object)?;
        let body = parse_json(&body)?;
        let props = string_properties(body.get("properties")).map_err(ApiError::validation)?;
        let written: Vec<String> = props.keys().cloned().collect();
        let now = sh.clock.now_ms();
        let mut st = lock(&sh.state);
        let (id, changes) = st.store.create(t, props, now, now).map_err(input_error)?;
        let out = st.store.get(t, id).map(|o| o.to_json(t, &written));
        drop(st);
        sh.publish(changes, ChangeSource::Integration);
        out.ok_or_else(|| ApiError::not_found("Object not found."))
    };
    match run() {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `PATCH …/{objectType}/{id}[?idProperty=]` (§3.5): 200 with the object.
pub(crate) async fn update_one(
    State(sh): State<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let run = || -> Result<Value, ApiError> {
        let t = object_type(&object)?;
        let q = parse_form(q.unwrap_or_default().as_bytes());
        let body = parse_json(&body)?;
        let props = string_properties(body.get("properties")).map_err(ApiError::validation)?;
        let written: Vec<String> = props.keys().cloned().collect();
        let now = sh.clock.now_ms();
        let mut st = lock(&sh.state);
        let oid = st
            .store
            .find(t, q.get("idProperty").map(String::as_str), &id)
            .map(|o| o.id)
            .ok_or_else(|| {
                ApiError::not_found("Object not found.  objectId are usually numeric.")
            })?;
        let changes = st.store.update(t, oid, props, now).map_err(input_error)?;
        let out = st.store.get(t, oid).map(|o| o.to_json(t, &written));
        drop(st);
        sh.publish(changes, ChangeSource::Integration);
        out.ok_or_else(|| ApiError::not_found("Object not found."))
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE …/{objectType}/{id}`: archives, 204 (§3.5).
pub(crate) async fn archive_one(
    State(sh): State<Arc<Shared>>,
    Path((object, id)): Path<(String, String)>,
) -> Response {
    let t = match object_type(&object) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let now = sh.clock.now_ms();
    let change = id
        .parse::<u64>()
        .ok()
        .and_then(|oid| lock(&sh.state).store.archive(t, oid, now));
    sh.publish(change.into_iter().collect(), ChangeSource::Integration);
    StatusCode::NO_CONTENT.into_response()
}

/// Anything else: HubSpot's 404 envelope.
pub(crate) async fn not_found() -> Response {
    ApiError::new(404, "OBJECT_NOT_FOUND", "Resource not found").into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(
        405,
        "VALIDATION_ERROR",
        "HTTP method not allowed for this resource",
    )
    .into_response()
}
