//! Bulk API 2.0 query jobs for initial loads (vendor-apis.md §2.6): the request bodies and
//! the parsing of job states and CSV result pages, pure and offline.
//!
//! Lifecycle: `POST …/jobs/query` `{"operation": "query"|"queryAll", "query": …}` creates a
//! job in `UploadComplete`; polling `GET …/jobs/query/{id}` shows `InProgress` then
//! `JobComplete` (or `Failed` / `Aborted`); `GET …/jobs/query/{id}/results?locator=…&maxRecords=…`
//! returns CSV with the next page's `Sforce-Locator` — the **literal string `null`** on the
//! last page. Results must be asked for under the API version that created the job (else 409).

use serde_json::{Map, Value, json};

use super::{NameError, check_api_version, data_root};

/// `{data root}/jobs/query`.
pub fn jobs_url(instance_url: &str, api_version: &str) -> Result<String, NameError> {
    check_api_version(api_version)?;
    Ok(format!(
        "{}/jobs/query",
        data_root(instance_url, api_version)
    ))
}

/// The create-job body; `include_deleted` uses `queryAll` (§2.6).
pub fn create_body(soql: &str, include_deleted: bool) -> Value {
    json!({
        "operation": if include_deleted { "queryAll" } else { "query" },
        "query": soql,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    })
}

/// Where a job is (§2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    UploadComplete,
    InProgress,
    JobComplete,
    Failed(String),
    Aborted,
    /// A state this code does not know; treated as still running.
    Other(String),
}

/// A job as `create` and `status` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: String,
    pub state: JobState,
}

/// Parses a job description; a body without `id` and `state` is an error, not a panic.
pub fn parse_job_info(body: &[u8]) -> Result<JobInfo, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the job is not JSON".to_owned())?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or("the job has no usable id")?;
    let state = match v
        .get("state")
        .and_then(Value::as_str)
        .ok_or("the job has no state")?
    {
        "UploadComplete" | "Open" => JobState::UploadComplete,
        "InProgress" => JobState::InProgress,
        "JobComplete" => JobState::JobComplete,
        "Failed" => JobState::Failed(
            v.get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or("no errorMessage")
                .to_owned(),
        ),
        "Aborted" => JobState::Aborted,
        other => JobState::Other(other.to_owned()),
    };
    Ok(JobInfo {
        id: id.to_owned(),
        state,
    })
}

/// The results URL of a page: the first without `locator`.
pub fn results_url(
    instance_url: &str,
    api_version: &str,
    job_id: &str,
    locator: Option<&str>,
    max_records: Option<u32>,
) -> Result<String, NameError> {
    let mut url = format!("{}/{job_id}/results", jobs_url(instance_url, api_version)?);
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(l) = locator {
        q.append_pair("locator", l);
    }
    if let Some(m) = max_records {
        q.append_pair("maxRecords", &m.to_string());
    }
    let q = q.finish();
    if !q.is_empty() {
        url.push('?');
        url.push_str(&q);
    }
    Ok(url)
}

/// `Sforce-Locator`: `None` when absent, empty or the literal `null` (the last page, §2.6).
pub fn next_locator(header: Option<&str>) -> Option<String> {
    let l = header?.trim();
    (!l.is_empty() && l != "null").then(|| l.to_owned())
}

/// Parses a CSV results page into records keyed by the header row. Bulk CSV has no typed
/// nulls: an empty field becomes JSON `null`, everything else a string (as the REST API's
/// numbers and dates would be mapped anyway).
pub fn parse_results_csv(body: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| format!("the results have no CSV header: {e}"))?
        .clone();
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("results row {}: {e}", i + 1))?;
        let rec = headers
            .iter()
            .zip(row.iter())
            .map(|(h, v)| {
                let v = if v.is_empty() {
                    Value::Null
                } else {
                    Value::String(v.to_owned())
                };
                (h.to_owned(), v)
            })
            .collect();
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_commas_and_newlines_parses() {
        let body = b"\"Id\",\"LastName\",\"Description\"\n\"003A\",\"O'Brien, Jr\",\"two\nlines\"\n\"003B\",\"Lee\",\"\"\n";
        let rows = parse_results_csv(body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["LastName"], "O'Brien, Jr");
        assert_eq!(rows[0]["Description"], "two\nlines");
        assert_eq!(rows[1]["Description"], Value::Null);
    }

    #[test]
    fn ragged_or_garbled_csv_is_an_error_not_a_panic() {
        assert!(parse_results_csv(b"\"Id\",\"X\"\n\"1\"\n").is_err());
        assert!(parse_results_csv(b"").unwrap().is_empty());
    }

    #[test]
    fn the_literal_null_locator_ends_paging() {
        assert_eq!(next_locator(Some("null")), None);
        assert_eq!(next_locator(None), None);
        assert_eq!(next_locator(Some("MjAwMDAw")), Some("MjAwMDAw".into()));
    }

    #[test]
    fn job_states_parse_and_hostile_ids_are_refused() {
        let j = parse_job_info(
            br#"{"id":"750R0000000zlh9IAA","state":"Failed","errorMessage":"boom"}"#,
        )
        .unwrap();
        assert_eq!(j.state, JobState::Failed("boom".into()));
        assert!(parse_job_info(br#"{"id":"../../x","state":"JobComplete"}"#).is_err());
        assert!(parse_job_info(b"<html>").is_err());
    }
}
