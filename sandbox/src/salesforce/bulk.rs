//! Bulk API 2.0 query jobs (vendor-apis.md §2.6): `POST …/jobs/query` creates a job in state
//! `UploadComplete`, polling `GET …/jobs/query/{id}` walks it through `InProgress` to
//! `JobComplete`, and `GET …/jobs/query/{id}/results?locator&maxRecords` returns CSV pages with
//! `Sforce-Locator` (the literal `null` on the last page) and `Sforce-NumberOfRecords`. Results
//! asked for under another API version than the job's are a 409.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::api::check_version;
use super::errors::SfError;
use super::schema::FieldType;
use super::soql;
use super::store::{parse_datetime, sf_datetime};
use crate::common::{lock, parse_form};

/// A query job and its result rows (taken when the job was created).
#[derive(Debug)]
pub struct QueryJob {
    id: String,
    object: &'static str,
    operation: String,
    version: String,
    created_ms: i64,
    polls: u32,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl QueryJob {
    fn state(&self, polls_to_complete: u32) -> &'static str {
        if self.polls == 0 {
            "UploadComplete"
        } else if self.polls < polls_to_complete.max(1) {
            "InProgress"
        } else {
            "JobComplete"
        }
    }

    fn info(&self, sh: &Shared) -> Value {
        let state = self.state(sh.config.bulk_polls_to_complete);
        let mut v = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": sh.config.user_id,
            "createdDate": sf_datetime(self.created_ms),
            "systemModstamp": sf_datetime(self.created_ms),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.version.trim_start_matches('v').parse::<f64>().unwrap_or(0.0),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        });
        if state == "JobComplete" {
            v["numberRecordsProcessed"] = json!(self.rows.len());
            v["retries"] = json!(0);
            v["totalProcessingTime"] = json!(42);
        }
        v
    }
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A value as Bulk 2.0 writes it in CSV: datetimes as ISO-8601 with `Z`, nulls empty.
fn csv_value(ty: FieldType, v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if ty == FieldType::DateTime => parse_datetime(s)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| s.clone()),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `POST /services/data/vNN.N/jobs/query`.
pub(crate) async fn create(
    State(sh): State<Arc<Shared>>,
    Path(ver): Path<String>,
    body: Bytes,
) -> Response {
    let go = || -> Result<Value, SfError> {
        check_version(&sh, &ver)?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| SfError::new(400, "JSON_PARSER_ERROR", "The request body is not JSON"))?;
        let operation = match v.get("operation").and_then(Value::as_str) {
            Some(op @ ("query" | "queryAll")) => op.to_owned(),
            _ => {
                return Err(SfError::new(
                    400,
                    "INVALIDJOB",
                    "operation must be query or queryAll",
                ));
            }
        };
        let text = v
            .get("query")
            .and_then(Value::as_str)
            .ok_or_else(|| SfError::new(400, "INVALIDJOB", "query is required"))?;
        let q = soql::parse(text)?;
        let now = sh.clock.now_ms();
        let mut st = lock(&sh.state);
        let records = st
            .store
            .records
            .get(q.object.name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let types: Vec<FieldType> = q
            .fields
            .iter()
            .map(|f| q.object.field(f).map_or(FieldType::String, |d| d.ty))
            .collect();
        let rows: Vec<Vec<String>> = q
            .run(records, operation == "queryAll")
            .into_iter()
            .map(|r| {
                q.fields
                    .iter()
                    .zip(&types)
                    .map(|(f, ty)| csv_value(*ty, &r.get(f)))
                    .collect()
            })
            .collect();
        st.job_seq += 1;
        let id = super::schema::record_id("750", st.job_seq);
        let job = QueryJob {
            id: id.clone(),
            object: q.object.name,
            operation,
            version: ver.clone(),
            created_ms: now,
            polls: 0,
            header: q.fields.clone(),
            rows,
        };
        let info = job.info(&sh);
        st.jobs.insert(id, job);
        Ok(info)
    };
    match go() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn job_not_found() -> SfError {
    SfError::new(404, "NOT_FOUND", "The requested resource does not exist")
}

/// `GET /services/data/vNN.N/jobs/query/{jobId}`: each poll moves the job one state on.
pub(crate) async fn status(
    State(sh): State<Arc<Shared>>,
    Path((ver, id)): Path<(String, String)>,
) -> Response {
    if let Err(e) = check_version(&sh, &ver) {
        return e.into_response();
    }
    let mut st = lock(&sh.state);
    match st.jobs.get_mut(&id) {
        Some(job) => {
            job.polls = job.polls.saturating_add(1);
            Json(job.info(&sh)).into_response()
        }
        None => job_not_found().into_response(),
    }
}

/// `GET /services/data/vNN.N/jobs/query/{jobId}/results?locator&maxRecords`.
pub(crate) async fn results(
    State(sh): State<Arc<Shared>>,
    Path((ver, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(e) = check_version(&sh, &ver) {
        return e.into_response();
    }
    let params = parse_form(q.unwrap_or_default().as_bytes());
    let st = lock(&sh.state);
    let Some(job) = st.jobs.get(&id) else {
        return job_not_found().into_response();
    };
    if job.version != ver {
        // §2.6: results under another API version than the job's are a 409.
        return SfError::new(409, "INVALIDJOB", format!("The job was created with API version {}; request its results with the same version", job.version))
            .into_response();
    }
    if job.state(sh.config.bulk_polls_to_complete) != "JobComplete" {
        return SfError::new(
            400,
            "INVALIDJOB",
            "The job is not complete; poll its state until JobComplete",
        )
        .into_response();
    }
    let start: usize = match params.get("locator").map(|l| l.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= job.rows.len() => n,
        Some(_) => return SfError::new(400, "INVALIDLOCATOR", "invalid locator").into_response(),
    };
    let max = match params.get("maxRecords").map(|m| m.parse::<usize>()) {
        None => sh.config.bulk_max_records.max(1),
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            return SfError::new(400, "INVALIDJOB", "maxRecords must be a positive number")
                .into_response();
        }
    };
    let end = start.saturating_add(max).min(job.rows.len());
    let mut csv = job
        .header
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for row in &job.rows[start..end] {
        let line: Vec<String> = row
            .iter()
            .map(|v| {
                if v.is_empty() {
                    String::new()
                } else {
                    csv_field(v)
                }
            })
            .collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    let locator = if end < job.rows.len() {
        end.to_string()
    } else {
        "null".to_owned()
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv".to_owned()),
            (header::HeaderName::from_static("sforce-locator"), locator),
            (
                header::HeaderName::from_static("sforce-numberofrecords"),
                (end - start).to_string(),
            ),
        ],
        csv,
    )
        .into_response()
}
