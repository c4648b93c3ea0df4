//! The Salesforce client: the I/O around [`super::read`], [`super::write`], [`super::bulk`] and
//! [`super::limits`], through the shared [`VendorHttp`] path. Every call goes to the session's
//! `instance_url` under the pinned API version (§2.1, §2.2) and carries
//! `Sforce-Call-Options: client=<id>`, which CDC echoes in `changeOrigin` so the hub can drop
//! echoes of its own writes (§2.7, §2.10).
//!
//! - **read** — [`SalesforceClient::incremental`]: the REST `query` resource following
//!   `nextRecordsUrl`, page by page, each with the advanced cursor (§2.4);
//!   [`SalesforceClient::bulk_query`] + [`SalesforceClient::bulk_results`]: a Bulk API 2.0
//!   query job for initial loads, polled with backoff, paged by `Sforce-Locator` (§2.6).
//! - **write** — [`SalesforceClient::upsert`]: sObject Collections upsert by external id,
//!   ≤ 200 per call, `allOrNone: false`, per-record results mapped to inputs (§2.5);
//!   [`SalesforceClient::update`]: sObject Collections update by record id, the same way.
//! - **limits** — the `Sforce-Limit-Info` budget of every response (§2.8), and `/limits`.
//!
//! Salesforce publishes no per-second limit, only the daily allocation (§2.8), so by default
//! the shared limiter only smooths bursts (`requests_per_second`); the budget guard in
//! [`VendorHttp`] stops calls when the allocation is used up, and 403 `REQUEST_LIMIT_EXCEEDED`
//! (no `Retry-After`) is returned at once rather than retried in a loop.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use super::auth::{SalesforceAuth, Session, classify_oauth_error};
use super::bulk::{self, JobInfo, JobState};
use super::errors::{self, DAILY_LIMIT_BACKOFF, VENDOR};
use super::limits::{ApiBudget, parse_limit_info, parse_limits_resource};
use super::read::{
    Cursor, QueryPage, batch_size_header, incremental_soql, next_page_url, parse_query_page,
    query_url,
};
use super::write::{
    Outcome, RecordResult, UpsertBatch, WriteError, parse_update_results, parse_upsert_results,
    update_batches, update_url, upsert_batches, upsert_url,
};
use super::{NameError, check_api_version, data_root};
use crate::error::{ErrorClass, VendorError};
use crate::http::{
    ApiMeter, Budget, RateLimit, Request, RetryPolicy, SharedLimiter, VendorHttp, VendorProfile,
    header_str, unexpected,
};

/// A Salesforce connection's settings.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceClientConfig {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or the org's My Domain.
    pub login_url: String,
    /// Pinned REST API version (§2.2), e.g. `66.0`.
    pub api_version: String,
    /// Records per query page asked for with `Sforce-Query-Options` (200–2,000, §2.4).
    pub query_batch_size: u32,
    /// The `client=` tag of `Sforce-Call-Options` (§2.10).
    pub call_options_client: String,
    /// Salesforce has no per-second limit (§2.8); this only smooths the hub's own bursts.
    pub requests_per_second: u32,
    /// Bulk job polling: first wait, longest wait, and how many polls before giving up.
    pub bulk_poll_min_ms: u64,
    pub bulk_poll_max_ms: u64,
    pub bulk_max_polls: usize,
    pub timeout_ms: u64,
}

impl Default for SalesforceClientConfig {
    fn default() -> Self {
        SalesforceClientConfig {
            login_url: "https://login.salesforce.com".into(),
            api_version: "66.0".into(),
            query_batch_size: 2000,
            call_options_client: "automatrix-hub".into(),
            requests_per_second: 25,
            bulk_poll_min_ms: 1_000,
            bulk_poll_max_ms: 30_000,
            bulk_max_polls: 200,
            timeout_ms: 120_000,
        }
    }
}

impl SalesforceClientConfig {
    /// Checks the settings without touching the network.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.login_url.starts_with("https://") || self.login_url.starts_with("http://")) {
            return Err(format!(
                "login_url '{}' must be an http(s) URL such as https://login.salesforce.com",
                self.login_url
            ));
        }
        check_api_version(&self.api_version).map_err(|e| e.to_string())?;
        if !self
            .call_options_client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("call_options_client may hold only letters, digits, '-' and '_'".into());
        }
        if self.requests_per_second == 0 || self.bulk_max_polls == 0 {
            return Err("requests_per_second and bulk_max_polls must be above 0".into());
        }
        Ok(())
    }

    pub fn limiter(&self) -> Arc<SharedLimiter> {
        SharedLimiter::new(
            Some(RateLimit {
                requests: self.requests_per_second,
                per: Duration::from_secs(1),
            }),
            None,
            1.0,
        )
    }

    pub fn http(
        &self,
        connector_id: &str,
        limiter: Arc<SharedLimiter>,
        meter: Arc<dyn ApiMeter>,
        retry: RetryPolicy,
    ) -> Result<VendorHttp, VendorError> {
        VendorHttp::new(
            profile(),
            connector_id,
            limiter,
            meter,
            retry,
            Duration::from_millis(self.timeout_ms),
        )
    }
}

/// Salesforce's classification (§2.9, OAuth errors §2.1) and budget header (§2.8).
pub fn profile() -> VendorProfile {
    VendorProfile {
        vendor: VENDOR,
        classify: |status, _headers, body| {
            classify_oauth_error(status, body).unwrap_or_else(|| errors::classify(status, body))
        },
        budget: budget_from_headers,
        budget_exhausted: || {
            VendorError {
            vendor: VENDOR,
            status: 403,
            code: "REQUEST_LIMIT_EXCEEDED".into(),
            message: "the org's daily API allocation is used up (Sforce-Limit-Info); not calling until it frees up".into(),
            class: ErrorClass::RateLimited {
                retry_after: Some(DAILY_LIMIT_BACKOFF),
            },
        }
        },
    }
}

fn budget_from_headers(h: &HeaderMap) -> Option<Budget> {
    let b = parse_limit_info(header_str(h, "sforce-limit-info")?)?;
    Some(Budget {
        remaining: b.remaining,
        max: b.max,
    })
}

/// What a Salesforce call can fail with: the vendor, or input that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SalesforceError {
    #[error(transparent)]
    Vendor(#[from] VendorError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Name(#[from] NameError),
}

impl SalesforceError {
    /// The retry class; bad input is permanent.
    pub fn class(&self) -> ErrorClass {
        match self {
            SalesforceError::Vendor(e) => e.class.clone(),
            _ => ErrorClass::Permanent,
        }
    }
}

/// One page of an incremental read: the new records and the cursor after them.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementalPage {
    /// Records strictly after the previous cursor (the `>=` overlap removed, §2.4).
    pub records: Vec<Map<String, Value>>,
    /// Commit this after the records are stored (CONVENTIONS.md).
    pub cursor: Option<Cursor>,
    pub total_size: u64,
}

/// An incremental read in progress: call [`IncrementalQuery::next_page`] until `None`.
/// Walk it to the end promptly: query locators expire after 15 minutes idle (§2.4).
#[derive(Debug, Clone)]
pub struct IncrementalQuery {
    next_url: Option<String>,
    first: bool,
    cursor: Option<Cursor>,
}

impl IncrementalQuery {
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    pub async fn next_page(
        &mut self,
        client: &SalesforceClient,
    ) -> Result<Option<IncrementalPage>, SalesforceError> {
        let Some(url) = self.next_url.take() else {
            return Ok(None);
        };
        let endpoint = if self.first { "query" } else { "query_more" };
        self.first = false;
        let page = client.query_page(&url, endpoint).await?;
        let records: Vec<Map<String, Value>> = page
            .records_after(self.cursor.as_ref())
            .into_iter()
            .cloned()
            .collect();
        self.cursor = page.next_cursor(self.cursor.as_ref());
        if let Some(next) = &page.next_records_url {
            let session = client.auth.session().await?;
            self.next_url = Some(
                next_page_url(&session.instance_url, next)
                    .map_err(|e| unexpected(VENDOR, 200, e.0))?,
            );
        }
        Ok(Some(IncrementalPage {
            records,
            cursor: self.cursor.clone(),
            total_size: page.total_size,
        }))
    }
}

/// One page of Bulk API 2.0 query results.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkPage {
    pub records: Vec<Map<String, Value>>,
    /// Pass back to [`SalesforceClient::bulk_results`]; `None` after the last page.
    pub next_locator: Option<String>,
}

/// Maps one Collections write response (status, body) back to its batch's inputs.
type ParseResults = fn(&UpsertBatch, u16, &[u8]) -> Result<Vec<RecordResult>, VendorError>;

/// A Salesforce client for one org.
#[derive(Debug, Clone)]
pub struct SalesforceClient {
    http: VendorHttp,
    auth: Arc<SalesforceAuth>,
    config: SalesforceClientConfig,
}

impl SalesforceClient {
    pub fn new(config: &SalesforceClientConfig, http: VendorHttp, auth: SalesforceAuth) -> Self {
        SalesforceClient {
            http,
            auth: Arc::new(auth),
            config: config.clone(),
        }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    pub fn auth(&self) -> &SalesforceAuth {
        &self.auth
    }

    async fn session(&self) -> Result<Session, VendorError> {
        self.auth.session().await
    }

    fn request(&self, method: Method, url: String, endpoint: &'static str) -> Request {
        Request::new(method, url, endpoint).header(
            "sforce-call-options",
            &format!("client={}", self.config.call_options_client),
        )
    }

    async fn query_page(
        &self,
        url: &str,
        endpoint: &'static str,
    ) -> Result<QueryPage, VendorError> {
        // `Sforce-Query-Options: batchSize=N` (§2.4, §2.10).
        let (_, value) = batch_size_header(self.config.query_batch_size);
        let req = self
            .request(Method::GET, url.to_owned(), endpoint)
            .header("sforce-query-options", &value);
        let resp = self.http.send(&req, &*self.auth).await?;
        parse_query_page(&resp.body).map_err(|e| unexpected(VENDOR, resp.status, e.0))
    }

    /// Starts an incremental read of `object` after `since` (§2.4); `include_deleted` uses
    /// `queryAll` to see soft-deleted rows.
    pub async fn incremental(
        &self,
        object: &str,
        fields: &[&str],
        since: Option<Cursor>,
        include_deleted: bool,
    ) -> Result<IncrementalQuery, SalesforceError> {
        let soql = incremental_soql(object, fields, since.as_ref())?;
        let session = self.session().await?;
        let url = query_url(
            &session.instance_url,
            &self.config.api_version,
            &soql,
            include_deleted,
        )?;
        Ok(IncrementalQuery {
            next_url: Some(url),
            first: true,
            cursor: since,
        })
    }

    /// Upserts `records` by `external_id_field`, 200 per call, `allOrNone: false` (§2.5). One
    /// result per input, in input order. A call that fails as a whole marks its records
    /// `Failed`; after a failure that is not permanent (daily allocation, outage) the remaining
    /// calls are not attempted and their records carry the same error.
    pub async fn upsert(
        &self,
        sobject: &str,
        external_id_field: &str,
        records: &[Map<String, Value>],
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        let batches = upsert_batches(sobject, external_id_field, records)?;
        let session = self.session().await?;
        let url = upsert_url(
            &session.instance_url,
            &self.config.api_version,
            sobject,
            external_id_field,
        )?;
        Ok(self
            .write_batches(url, "composite_upsert", &batches, parse_upsert_results)
            .await)
    }

    /// Updates `records` of `sobject` by record id through sObject Collections
    /// (`PATCH …/composite/sobjects`, §2.5): each record must carry its `Id`; 200 per call,
    /// `allOrNone: false`. One result per input, in input order: `Outcome::Updated` or
    /// `Outcome::Failed` (e.g. `ENTITY_IS_DELETED`, `INVALID_CROSS_REFERENCE_KEY`,
    /// `MALFORMED_ID`, a field's validation error). As with [`SalesforceClient::upsert`], a
    /// call that fails as a whole marks its records `Failed`, and after a failure that is not
    /// permanent the remaining calls are not attempted and their records carry the same error.
    pub async fn update(
        &self,
        sobject: &str,
        records: &[Map<String, Value>],
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        let batches = update_batches(sobject, records)?;
        let session = self.session().await?;
        let url = update_url(&session.instance_url, &self.config.api_version)?;
        Ok(self
            .write_batches(url, "composite_update", &batches, parse_update_results)
            .await)
    }

    /// Sends Collections write batches in order and maps every record to a result; stops
    /// sending after a whole-call failure that is not permanent.
    async fn write_batches(
        &self,
        url: String,
        endpoint: &'static str,
        batches: &[UpsertBatch],
        parse: ParseResults,
    ) -> Vec<RecordResult> {
        let mut out = Vec::with_capacity(batches.iter().map(|b| b.len).sum());
        let mut stop: Option<VendorError> = None;
        for batch in batches {
            let failed_all = |e: &VendorError| -> Vec<RecordResult> {
                (0..batch.len)
                    .map(|i| RecordResult {
                        index: batch.start + i,
                        outcome: Outcome::Failed(e.clone()),
                    })
                    .collect()
            };
            if let Some(e) = &stop {
                out.extend(failed_all(e));
                continue;
            }
            let req = self
                .request(Method::PATCH, url.clone(), endpoint)
                .json(&batch.body);
            let result = match self.http.send(&req, &*self.auth).await {
                Ok(resp) => parse(batch, resp.status, &resp.body),
                Err(e) => Err(e),
            };
            match result {
                Ok(rs) => out.extend(rs),
                Err(e) => {
                    out.extend(failed_all(&e));
                    if e.class != ErrorClass::Permanent {
                        stop = Some(e);
                    }
                }
            }
        }
        out
    }

    /// Creates a Bulk API 2.0 query job and polls it, with exponential backoff, until it is
    /// complete (§2.6). A failed or aborted job is a permanent error with Salesforce's
    /// `errorMessage`; a job still running after `bulk_max_polls` is a transient one.
    pub async fn bulk_query(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<JobInfo, SalesforceError> {
        let session = self.session().await?;
        let jobs = bulk::jobs_url(&session.instance_url, &self.config.api_version)?;
        let req = self
            .request(Method::POST, jobs.clone(), "bulk_query_create")
            .json(&bulk::create_body(soql, include_deleted));
        let resp = self.http.send(&req, &*self.auth).await?;
        let mut job =
            bulk::parse_job_info(&resp.body).map_err(|e| unexpected(VENDOR, resp.status, e))?;
        let mut waits = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.bulk_poll_min_ms))
            .with_max_delay(Duration::from_millis(self.config.bulk_poll_max_ms))
            .with_max_times(self.config.bulk_max_polls)
            .build();
        loop {
            match &job.state {
                JobState::JobComplete => return Ok(job),
                JobState::Failed(msg) => return Err(job_failed("Failed", msg).into()),
                JobState::Aborted => {
                    return Err(job_failed("Aborted", "the job was aborted").into());
                }
                _ => {}
            }
            let Some(wait) = waits.next() else {
                return Err(VendorError {
                    vendor: VENDOR,
                    status: 200,
                    code: "BULK_JOB_TIMEOUT".into(),
                    message: format!(
                        "bulk query job {} is still running; poll it again later",
                        job.id
                    ),
                    class: ErrorClass::Transient { retry_after: None },
                }
                .into());
            };
            tokio::time::sleep(wait).await;
            let req = self.request(
                Method::GET,
                format!("{jobs}/{}", job.id),
                "bulk_query_status",
            );
            let resp = self.http.send(&req, &*self.auth).await?;
            job =
                bulk::parse_job_info(&resp.body).map_err(|e| unexpected(VENDOR, resp.status, e))?;
        }
    }

    /// One page of a complete job's CSV results; `locator` `None` for the first (§2.6).
    pub async fn bulk_results(
        &self,
        job_id: &str,
        locator: Option<&str>,
        max_records: Option<u32>,
    ) -> Result<BulkPage, SalesforceError> {
        let session = self.session().await?;
        let url = bulk::results_url(
            &session.instance_url,
            &self.config.api_version,
            job_id,
            locator,
            max_records,
        )?;
        let req = self.request(Method::GET, url, "bulk_query_results");
        let resp = self.http.send(&req, &*self.auth).await?;
        let records =
            bulk::parse_results_csv(&resp.body).map_err(|e| unexpected(VENDOR, resp.status, e))?;
        Ok(BulkPage {
            records,
            next_locator: bulk::next_locator(resp.header("sforce-locator")),
        })
    }

    /// `{instance_url}/cometd/NN.N` (§2.7, CometD JSON form).
    pub(crate) async fn cometd_url(&self) -> Result<String, VendorError> {
        let session = self.session().await?;
        Ok(format!(
            "{}/cometd/{}",
            session.instance_url.trim_end_matches('/'),
            self.config.api_version
        ))
    }

    /// `GET …/limits` → the daily API allocation (§2.8).
    pub async fn limits(&self) -> Result<ApiBudget, SalesforceError> {
        let session = self.session().await?;
        let url = format!(
            "{}/limits",
            data_root(&session.instance_url, &self.config.api_version)
        );
        let req = self.request(Method::GET, url, "limits");
        let resp = self.http.send(&req, &*self.auth).await?;
        Ok(parse_limits_resource(&resp.body).ok_or_else(|| {
            unexpected(
                VENDOR,
                resp.status,
                "the limits resource has no DailyApiRequests".into(),
            )
        })?)
    }
}

fn job_failed(state: &str, message: &str) -> VendorError {
    VendorError {
        vendor: VENDOR,
        status: 200,
        code: format!("BULK_JOB_{}", state.to_ascii_uppercase()),
        message: message.to_owned(),
        class: ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_explains_what_is_wrong() {
        assert!(SalesforceClientConfig::default().validate().is_ok());
        let bad = SalesforceClientConfig {
            api_version: "v66".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("66.0"));
        let bad = SalesforceClientConfig {
            call_options_client: "a,b=c".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn the_budget_comes_from_sforce_limit_info() {
        let mut h = HeaderMap::new();
        h.insert(
            "sforce-limit-info",
            "api-usage=15000/15000".parse().unwrap(),
        );
        assert_eq!(
            budget_from_headers(&h),
            Some(Budget {
                remaining: 0,
                max: 15_000
            })
        );
    }
}
