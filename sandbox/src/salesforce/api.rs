//! The REST resources (vendor-apis.md §2.2–§2.5, §2.8): versions, `query`/`queryAll` with
//! `nextRecordsUrl` paging, sObject Collections upsert and update, single-record read and
//! `limits`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::errors::SfError;
use super::schema::SObject;
use super::soql;
use crate::common::{lock, parse_form};

/// §2.4: query locators expire after 15 minutes without use.
const LOCATOR_IDLE_MS: i64 = 15 * 60 * 1000;
/// §2.5: at most 200 records per Collections call.
pub const MAX_COLLECTION_RECORDS: usize = 200;

/// A query's remaining rows, held for `nextRecordsUrl`.
#[derive(Debug)]
pub struct Locator {
    rows: Vec<Value>,
    page_size: usize,
    version: String,
    resource: &'static str,
    last_used_ms: i64,
}

/// `vNN.N` must name a version the org supports (§2.2: otherwise 404).
pub(crate) fn check_version(sh: &Shared, ver: &str) -> Result<(), SfError> {
    match ver.strip_prefix('v') {
        Some(v) if sh.config.api_versions.iter().any(|x| x == v) => Ok(()),
        _ => Err(SfError::not_found()),
    }
}

/// `GET /services/data/`: the versions the org supports (§2.2).
pub(crate) async fn versions(State(sh): State<Arc<Shared>>) -> Response {
    let list: Vec<Value> = sh
        .config
        .api_versions
        .iter()
        .map(|v| json!({"label": format!("Release {v}"), "url": format!("/services/data/v{v}"), "version": v}))
        .collect();
    Json(list).into_response()
}

fn page_size(sh: &Shared, headers: &HeaderMap) -> usize {
    // §2.4: `Sforce-Query-Options: batchSize=N`, 200 to 2,000, a request not a promise.
    let asked = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.trim().strip_prefix("batchSize="))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .map_or(2000, |n| n.clamp(200, 2000));
    asked.min(sh.config.max_page_size.max(1))
}

fn page(
    sh: &Shared,
    ver: &str,
    resource: &'static str,
    mut rows: Vec<Value>,
    total: usize,
    size: usize,
    offset: usize,
) -> Value {
    if rows.len() <= size {
        return json!({"totalSize": total, "done": true, "records": rows});
    }
    let rest = rows.split_off(size);
    let now = sh.clock.now_ms();
    let mut st = lock(&sh.state);
    st.locator_seq += 1;
    let id = format!("01gRO{:010}", st.locator_seq);
    st.locators.insert(
        id.clone(),
        Locator {
            rows: rest,
            page_size: size,
            version: ver.to_owned(),
            resource,
            last_used_ms: now,
        },
    );
    json!({
        "totalSize": total,
        "done": false,
        "nextRecordsUrl": format!("/services/data/{ver}/{resource}/{id}-{}", offset.saturating_add(size)),
        "records": rows,
    })
}

async fn run_query(
    sh: Arc<Shared>,
    ver: String,
    q: Option<String>,
    headers: HeaderMap,
    all: bool,
) -> Response {
    let resource = if all { "queryAll" } else { "query" };
    let go = || -> Result<Value, SfError> {
        check_version(&sh, &ver)?;
        let params = parse_form(q.unwrap_or_default().as_bytes());
        let soql_text = params
            .get("q")
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| SfError::malformed("A query string has to be specified"))?;
        let query = soql::parse(soql_text)?;
        let rows: Vec<Value> = {
            let st = lock(&sh.state);
            let records = st
                .store
                .records
                .get(query.object.name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            query
                .run(records, all)
                .into_iter()
                .map(|r| r.to_json(query.object, &ver, &query.fields))
                .collect()
        };
        let total = rows.len();
        Ok(page(
            &sh,
            &ver,
            resource,
            rows,
            total,
            page_size(&sh, &headers),
            0,
        ))
    };
    match go() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /services/data/vNN.N/query?q=` (§2.4).
pub(crate) async fn query(
    State(sh): State<Arc<Shared>>,
    Path(ver): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    run_query(sh, ver, q, headers, false).await
}

/// `GET /services/data/vNN.N/queryAll?q=`: soft-deleted rows too (§2.4).
pub(crate) async fn query_all(
    State(sh): State<Arc<Shared>>,
    Path(ver): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    run_query(sh, ver, q, headers, true).await
}

/// `GET /services/data/vNN.N/query/<locator>-<offset>` (§2.4).
pub(crate) async fn query_more(
    State(sh): State<Arc<Shared>>,
    Path((ver, locator)): Path<(String, String)>,
) -> Response {
    let go = || -> Result<Value, SfError> {
        check_version(&sh, &ver)?;
        let invalid = || SfError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
        let (id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
        let offset: usize = offset.parse().map_err(|_| invalid())?;
        let now = sh.clock.now_ms();
        let (rows, size, resource) = {
            let mut st = lock(&sh.state);
            let loc = st.locators.remove(id).ok_or_else(invalid)?;
            if now - loc.last_used_ms > LOCATOR_IDLE_MS || loc.version != ver {
                return Err(invalid());
            }
            (loc.rows, loc.page_size, loc.resource)
        };
        // The rows before `offset` were delivered already; the total is theirs plus the rest.
        let total = offset.saturating_add(rows.len());
        Ok(page(&sh, &ver, resource, rows, total, size, offset))
    };
    match go() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /services/data/vNN.N/limits` (§2.8).
pub(crate) async fn limits(State(sh): State<Arc<Shared>>, Path(ver): Path<String>) -> Response {
    if let Err(e) = check_version(&sh, &ver) {
        return e.into_response();
    }
    let max = sh.config.daily_api_requests;
    let used = lock(&sh.state).api_usage.len() as i64;
    Json(json!({
        "DailyApiRequests": {"Max": max, "Remaining": max as i64 - used},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        "DailyBulkV2QueryFileStorageMB": {"Max": 976_562, "Remaining": 976_562},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        "HourlyPublishedPlatformEvents": {"Max": 50000, "Remaining": 50000},
        "ConcurrentPerOrgLongTxn": {"Max": 25, "Remaining": 25},
    }))
    .into_response()
}

/// `GET /services/data/vNN.N/sobjects/{SObject}/{Id}?fields=` (§2.5).
pub(crate) async fn get_record(
    State(sh): State<Arc<Shared>>,
    Path((ver, object, id)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let go = || -> Result<Value, SfError> {
        check_version(&sh, &ver)?;
        let obj = SObject::find(&object).ok_or_else(SfError::not_found)?;
        let params = parse_form(q.unwrap_or_default().as_bytes());
        let fields: Vec<&'static str> = match params.get("fields") {
            Some(list) => list
                .split(',')
                .map(|f| {
                    obj.field(f.trim()).map(|f| f.name).ok_or_else(|| {
                        SfError::new(
                            400,
                            "INVALID_FIELD",
                            format!(
                                "No such column '{}' on sobject of type {}",
                                f.trim(),
                                obj.name
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            None => obj.all_fields().map(|f| f.name).collect(),
        };
        let st = lock(&sh.state);
        match st.store.by_id(&id) {
            Some((o, r)) if o == obj.name && !r.deleted => Ok(r.to_json(obj, &ver, &fields)),
            _ => Err(SfError::new(
                404,
                "NOT_FOUND",
                "The requested resource does not exist",
            )),
        }
    };
    match go() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `PATCH /services/data/vNN.N/composite/sobjects/{SObject}/{ExternalIdField}` (§2.5): at most
/// 200 records of one type, HTTP 200 with one result per record in order, even on failures.
pub(crate) async fn collection_upsert(
    State(sh): State<Arc<Shared>>,
    Path((ver, object, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let go = || -> Result<Value, SfError> {
        check_version(&sh, &ver)?;
        let obj = SObject::find(&object).ok_or_else(|| {
            SfError::new(
                400,
                "INVALID_TYPE",
                format!("sObject type '{object}' is not supported."),
            )
        })?;
        let ext = obj.field(&field).filter(|f| f.external_id).ok_or_else(|| {
            SfError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            )
        })?;
        let v = collection_body(&sh, &body)?;
        let records = v
            .get("records")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let all_or_none = v.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
        let now = sh.clock.now_ms();
        let (results, events) =
            lock(&sh.state)
                .store
                .upsert_collection(obj, ext.name, records, all_or_none, now);
        let origin = change_origin(&headers, &ver);
        sh.publish(events.into_iter().map(|mut e| {
            e.origin = origin.clone();
            e
        }));
        Ok(Value::Array(results.iter().map(|r| r.to_json()).collect()))
    };
    match go() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// §2.7: `changeOrigin` carries the `client=` tag of `Sforce-Call-Options`.
fn change_origin(headers: &HeaderMap, ver: &str) -> String {
    let client = headers
        .get("sforce-call-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.trim().strip_prefix("client="))
        })
        .map(|c| format!(";client={c}"))
        .unwrap_or_default();
    format!(
        "com/salesforce/api/rest/{}{client}",
        ver.trim_start_matches('v')
    )
}

/// `PATCH /services/data/vNN.N/composite/sobjects` (§2.5, "Update: `PATCH …/composite/sobjects`,
/// with the same shape, each record carrying `Id`"): at most 200 records, of mixed types, each
/// with `attributes.type` and its `id`; HTTP 200 with one `{"id","success","errors"}` per
/// record in order, even on failures. The request checks (version, JSON, `records`, the
/// 200-record limit and its error, `allOrNone`) are the upsert's; the per-record ones are in
/// [`super::store::Store::update_collection`].
pub(crate) async fn collection_update(
    State(sh): State<Arc<Shared>>,
    Path(ver): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let go = || -> Result<Value, SfError> {
        check_version(&sh, &ver)?;
        let v = collection_body(&sh, &body)?;
        let records = v
            .get("records")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let all_or_none = v.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
        let now = sh.clock.now_ms();
        let (results, events) = lock(&sh.state)
            .store
            .update_collection(records, all_or_none, now);
        let origin = change_origin(&headers, &ver);
        sh.publish(events.into_iter().map(|mut e| {
            e.origin = origin.clone();
            e
        }));
        Ok(Value::Array(results.iter().map(|r| r.to_json()).collect()))
    };
    match go() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A Collections write body (§2.5): JSON, with a `records` array of at most
/// [`MAX_COLLECTION_RECORDS`]; the errors are the same for upsert and update.
fn collection_body(sh: &Shared, body: &[u8]) -> Result<Value, SfError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        SfError::new(
            400,
            "JSON_PARSER_ERROR",
            format!(
                "Unexpected character at [line:{}, column:{}]",
                e.line(),
                e.column()
            ),
        )
    })?;
    let records = v.get("records").and_then(Value::as_array).ok_or_else(|| {
        SfError::new(
            400,
            "INVALID_FIELD",
            "records is required and must be an array",
        )
    })?;
    if records.len() > MAX_COLLECTION_RECORDS {
        // §2.11: the code is not confirmed, so it is a setting.
        return Err(SfError::new(
            400,
            &sh.config.too_many_records_code,
            format!(
                "Record limit reached. Cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
            ),
        ));
    }
    Ok(v)
}

/// `PATCH …/sobjects/{SObject}/{ExternalIdField}/{value}[?updateOnly=true]` (§2.5): 201
/// `created: true`, 200 `created: false`, 404 with `updateOnly` when nothing matches.
pub(crate) async fn upsert_one(
    State(sh): State<Arc<Shared>>,
    Path((ver, object, field, value)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let go = || -> Result<(u16, Value), SfError> {
        check_version(&sh, &ver)?;
        let obj = SObject::find(&object).ok_or_else(SfError::not_found)?;
        let ext = obj.field(&field).filter(|f| f.external_id).ok_or_else(|| {
            SfError::new(
                404,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            )
        })?;
        let fields = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(SfError::new(
                    400,
                    "JSON_PARSER_ERROR",
                    "The request body must be a JSON object",
                ));
            }
        };
        // §2.5: neither Id nor the external-id field goes in the body.
        if let Some(k) = fields
            .keys()
            .find(|k| k.eq_ignore_ascii_case("Id") || k.eq_ignore_ascii_case(ext.name))
        {
            return Err(SfError::new(
                400,
                "INVALID_FIELD",
                format!("{k} is not allowed in the body of an upsert by external id"),
            ));
        }
        let update_only = parse_form(q.unwrap_or_default().as_bytes())
            .get("updateOnly")
            .is_some_and(|v| v == "true");
        let mut st = lock(&sh.state);
        if update_only && st.store.by_external(obj, ext.name, &value).is_none() {
            return Err(SfError::new(
                404,
                "NOT_FOUND",
                "The requested resource does not exist",
            ));
        }
        let mut record = fields;
        record.insert("attributes".into(), json!({"type": obj.name}));
        record.insert(ext.name.to_owned(), json!(value));
        let now = sh.clock.now_ms();
        let (results, events) =
            st.store
                .upsert_collection(obj, ext.name, &[Value::Object(record)], false, now);
        drop(st);
        let origin = change_origin(&headers, &ver);
        sh.publish(events.into_iter().map(|mut e| {
            e.origin = origin.clone();
            e
        }));
        match results.into_iter().next() {
            Some(super::store::UpsertResult::Ok { id, created }) => Ok((
                if created { 201 } else { 200 },
                json!({"id": id, "success": true, "errors": [], "created": created}),
            )),
            Some(super::store::UpsertResult::Failed(errs)) => {
                let arr: Vec<Value> = errs
                    .iter()
                    .map(|e| json!({"message": e.message, "errorCode": e.status_code, "fields": e.fields}))
                    .collect();
                Ok((400, Value::Array(arr)))
            }
            None => Err(SfError::new(500, "UNKNOWN_EXCEPTION", "no result")),
        }
    };
    match go() {
        Ok((status, v)) => (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
            Json(v),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn not_found() -> Response {
    SfError::not_found().into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    SfError::new(
        405,
        "METHOD_NOT_ALLOWED",
        "HTTP Method not allowed for this resource",
    )
    .into_response()
}
