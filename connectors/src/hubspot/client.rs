//! The HubSpot client: the I/O around [`super::read`], [`super::write`] and
//! [`super::events`], through the shared [`VendorHttp`] path (rate limiter, retries, refresh,
//! accounting). Every method is one of the connector's parts:
//!
//! - **read** — [`HubSpotClient::read_window`]: one window of the incremental search (§3.4),
//!   narrowed until its `total` fits the 10,000-result cap, paged with `after`;
//!   [`HubSpotClient::read_range`] walks windows for an initial load;
//!   [`HubSpotClient::batch_read`] fetches full objects (≤ 100 per call, §3.5) — what webhook
//!   events need, as they carry ids only (§3.8).
//! - **write** — [`HubSpotClient::batch_upsert`]: ≤ 100 per call, 207 → per-record outcomes.
//! - **events** — [`HubSpotClient::fetch_changed`]: verified events → the objects to emit.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::auth::HubSpotAuth;
use super::errors::{self, RateLimitStatus, VENDOR};
use super::events::{WebhookEvent, objects_to_fetch};
use super::read::{
    CrmObject, SearchPage, SearchRequest, Window, WindowPlan, parse_search_page, plan_window,
    search_path,
};
use super::write::{
    MAX_BATCH_INPUTS, UpsertInput, UpsertOutcome, WriteError, build_upsert_batches,
    parse_upsert_response, upsert_path,
};
use crate::error::{ErrorClass, VendorError};
use crate::http::{
    ApiMeter, Bucket, Budget, RateLimit, Request, RetryPolicy, SharedLimiter, VendorHttp,
    VendorProfile, header_str, unexpected,
};

/// A HubSpot connection's settings. Defaults are §3.7's Free/Starter private app.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSpotClientConfig {
    /// `https://api.hubapi.com` (§3.2; EU accounts use the same host).
    pub base_url: String,
    /// `/crm/v3/objects` or a date version such as `/crm/objects/2026-03` (§3.2).
    pub path_prefix: String,
    /// Requests per rolling 10 s for the app's tier (§3.7): 100 private Free/Starter, 190
    /// Professional/Enterprise, 250 with the add-on, 110 per account for a public OAuth app.
    pub requests_per_10s: u32,
    /// Search's own limit (§3.4: about 5 per second per token).
    pub search_per_second: u32,
    /// The share of those limits the hub uses, leaving the rest to the dealer's other tools.
    pub headroom: f64,
    /// Bound on one HTTP attempt.
    pub timeout_ms: u64,
}

impl Default for HubSpotClientConfig {
    fn default() -> Self {
        HubSpotClientConfig {
            base_url: "https://api.hubapi.com".into(),
            path_prefix: "/crm/v3/objects".into(),
            requests_per_10s: 100,
            search_per_second: 5,
            headroom: 0.9,
            timeout_ms: 30_000,
        }
    }
}

impl HubSpotClientConfig {
    /// Checks the settings without touching the network (`hub validate`).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(format!(
                "base_url '{}' must be an http(s) URL such as https://api.hubapi.com",
                self.base_url
            ));
        }
        if !self.path_prefix.starts_with('/') || self.path_prefix.contains("..") {
            return Err("path_prefix must be a path such as /crm/v3/objects".into());
        }
        if self.requests_per_10s == 0 || self.search_per_second == 0 {
            return Err("requests_per_10s and search_per_second must be above 0".into());
        }
        if !(self.headroom > 0.0 && self.headroom <= 1.0) {
            return Err("headroom must be in (0, 1], e.g. 0.9".into());
        }
        Ok(())
    }

    /// The limiter one HubSpot app/account shares across all its clients.
    pub fn limiter(&self) -> Arc<SharedLimiter> {
        SharedLimiter::new(
            Some(RateLimit {
                requests: self.requests_per_10s,
                per: Duration::from_secs(10),
            }),
            Some(RateLimit {
                requests: self.search_per_second,
                per: Duration::from_secs(1),
            }),
            self.headroom,
        )
    }

    /// The shared HTTP path for this account.
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

/// How long to stay away after a DAILY 429 when HubSpot gives no `Retry-After`: our choice,
/// as the reset is at the account's midnight, which the hub does not know here.
pub const DAILY_LIMIT_HINT: Duration = Duration::from_secs(3600);

/// HubSpot's classification (§3.6) and budget headers (§3.7) for the shared HTTP path.
pub fn profile() -> VendorProfile {
    VendorProfile {
        vendor: VENDOR,
        classify: |status, headers, body| {
            let mut e = errors::classify(status, header_str(headers, "retry-after"), body);
            // §3.6: a DAILY 429 lasts until midnight in the account's time zone; say so, so
            // the shared path returns it at once instead of retrying within the call.
            if e.code == "DAILY"
                && let ErrorClass::RateLimited { retry_after } = &mut e.class
            {
                *retry_after = Some(retry_after.unwrap_or(DAILY_LIMIT_HINT));
            }
            e
        },
        budget: budget_from_headers,
        budget_exhausted: || {
            VendorError {
            vendor: VENDOR,
            status: 429,
            code: "DAILY".into(),
            message: "the app's daily request allowance is used up (X-HubSpot-RateLimit-Daily-Remaining: 0); calls resume after midnight in the account's time zone".into(),
            class: ErrorClass::RateLimited { retry_after: None },
        }
        },
    }
}

/// Only the daily pair is a budget; the 10-second burst is the limiter's business (§3.7).
fn budget_from_headers(h: &HeaderMap) -> Option<Budget> {
    let s = RateLimitStatus::from_headers(|n| header_str(h, n));
    Some(Budget {
        remaining: s.daily_remaining?,
        max: s.daily?,
    })
}

/// One window's records, and the window they cover (the cursor moves to `covered.end_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRead {
    pub covered: Window,
    pub records: Vec<CrmObject>,
    /// More than 10,000 records share one millisecond: only the first 10,000 were read
    /// (§3.4); an operator should look (a bulk import is the usual cause).
    pub saturated: bool,
}

/// The object type in a path: `contacts`, `deals`, `2-1234`, `p62515_vehicle`.
fn check_object(object: &str) -> Result<(), VendorError> {
    let ok = !object.is_empty()
        && object.len() <= 100
        && object
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(VendorError {
            vendor: VENDOR,
            status: 0,
            code: "INVALID_OBJECT_TYPE".into(),
            message: format!("'{object}' is not a HubSpot object type"),
            class: ErrorClass::Permanent,
        })
    }
}

/// A HubSpot client for one account.
#[derive(Debug, Clone)]
pub struct HubSpotClient {
    http: VendorHttp,
    auth: Arc<HubSpotAuth>,
    base_url: String,
    prefix: String,
}

impl HubSpotClient {
    pub fn new(config: &HubSpotClientConfig, http: VendorHttp, auth: HubSpotAuth) -> Self {
        HubSpotClient {
            http,
            auth: Arc::new(auth),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            prefix: config.path_prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    pub fn auth(&self) -> &HubSpotAuth {
        &self.auth
    }

    /// One search call (§3.4). Search has its own per-second limit, so it waits on both
    /// limiters.
    pub async fn search_page(&self, req: &SearchRequest) -> Result<SearchPage, VendorError> {
        check_object(&req.object)?;
        let url = format!(
            "{}{}",
            self.base_url,
            search_path(&self.prefix, &req.object)
        );
        let r = Request::new(Method::POST, url, "search")
            .json(&req.body())
            .bucket(Bucket::Search);
        let resp = self.http.send(&r, &*self.auth).await?;
        parse_search_page(&resp.body).map_err(|e| unexpected(VENDOR, resp.status, e.0))
    }

    /// Reads `window` whole, or the narrower window starting at the same instant that
    /// [`plan_window`] chose because the first page's `total` passed 10,000 (§3.4).
    pub async fn read_window(
        &self,
        object: &str,
        properties: &[&str],
        window: Window,
        page_limit: u32,
    ) -> Result<WindowRead, VendorError> {
        let mut w = window;
        loop {
            let first = SearchRequest::first_page(object, properties, w, page_limit);
            let page = self.search_page(&first).await?;
            let saturated = match plan_window(w, page.total) {
                WindowPlan::Narrow(n) => {
                    w = n;
                    continue;
                }
                WindowPlan::Read => false,
                WindowPlan::Saturated => true,
            };
            let mut next = first.next(&page);
            let mut records = page.results;
            while let Some(req) = next {
                let page = self.search_page(&req).await?;
                next = req.next(&page);
                records.extend(page.results);
            }
            return Ok(WindowRead {
                covered: w,
                records,
                saturated,
            });
        }
    }

    /// Reads `[from_ms, to_ms)` window by window (an initial load): each window at most
    /// `max_window_ms` long, narrowed further when it holds more than 10,000 records.
    /// `on_window` sees each window in order, so the caller can emit and commit its cursor
    /// (`covered.end_ms`) as it goes.
    pub async fn read_range(
        &self,
        object: &str,
        properties: &[&str],
        from_ms: i64,
        to_ms: i64,
        max_window_ms: i64,
        mut on_window: impl FnMut(WindowRead),
    ) -> Result<(), VendorError> {
        let mut cursor = Window {
            start_ms: from_ms,
            end_ms: from_ms,
        };
        while let Some(w) = cursor.following(max_window_ms, to_ms) {
            let read = self
                .read_window(object, properties, w, super::read::MAX_SEARCH_LIMIT)
                .await?;
            cursor = read.covered;
            on_window(read);
        }
        Ok(())
    }

    /// Full objects by id, 100 per call (§3.5); ids HubSpot does not know are left out.
    /// `id_property` reads by a unique property instead of the record id.
    pub async fn batch_read(
        &self,
        object: &str,
        ids: &[String],
        properties: &[&str],
        id_property: Option<&str>,
    ) -> Result<Vec<CrmObject>, VendorError> {
        check_object(object)?;
        let url = format!("{}{}/{object}/batch/read", self.base_url, self.prefix);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH_INPUTS) {
            let inputs: Vec<Value> = chunk.iter().map(|id| json!({ "id": id })).collect();
            let mut body = json!({ "properties": properties, "inputs": inputs });
            if let Some(p) = id_property {
                body["idProperty"] = json!(p);
            }
            let r = Request::new(Method::POST, url.clone(), "batch_read").json(&body);
            let resp = self.http.send(&r, &*self.auth).await?;
            // 207: some ids were not found; their errors are not needed here.
            #[derive(serde::Deserialize)]
            struct Raw {
                #[serde(default)]
                results: Vec<CrmObject>,
            }
            let raw: Raw = serde_json::from_slice(&resp.body).map_err(|e| {
                unexpected(VENDOR, resp.status, format!("batch read response: {e}"))
            })?;
            out.extend(raw.results);
        }
        Ok(out)
    }

    /// Upserts by a unique property, 100 per call (§3.5). One outcome per input, in input
    /// order. A call that fails as a whole marks its inputs `Failed`; after a failure that is
    /// not permanent (rate limit, outage) the remaining calls are not attempted and their
    /// inputs are marked with the same error, so the caller retries them later.
    pub async fn batch_upsert(
        &self,
        object: &str,
        id_property: &str,
        inputs: &[UpsertInput],
    ) -> Result<Vec<UpsertOutcome>, WriteError> {
        check_object(object)?;
        let batches = build_upsert_batches(id_property, inputs)?;
        let url = format!("{}{}", self.base_url, upsert_path(&self.prefix, object));
        let mut out = Vec::with_capacity(inputs.len());
        let mut stop: Option<VendorError> = None;
        for batch in &batches {
            if let Some(e) = &stop {
                out.extend(std::iter::repeat_n(
                    UpsertOutcome::Failed(e.clone()),
                    batch.len,
                ));
                continue;
            }
            let r = Request::new(Method::POST, url.clone(), "batch_upsert").json(&batch.body);
            match self.http.send(&r, &*self.auth).await {
                Ok(resp) => {
                    out.extend(parse_upsert_response(batch, resp.status, None, &resp.body)?)
                }
                Err(e) => {
                    if e.class != ErrorClass::Permanent {
                        stop = Some(e.clone());
                    }
                    out.extend(std::iter::repeat_n(UpsertOutcome::Failed(e), batch.len));
                }
            }
        }
        Ok(out)
    }

    /// The current objects behind verified webhook events (§3.8: events carry ids only),
    /// as (object type, object) pairs; deletions have nothing to fetch and are left to the
    /// caller's tombstones.
    pub async fn fetch_changed(
        &self,
        events: &[WebhookEvent],
        properties: &[&str],
    ) -> Result<Vec<(String, CrmObject)>, VendorError> {
        let mut out = Vec::new();
        for (object, ids) in objects_to_fetch(events) {
            let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
            for o in self.batch_read(&object, &ids, properties, None).await? {
                out.push((object.clone(), o));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_explains_what_is_wrong() {
        assert!(HubSpotClientConfig::default().validate().is_ok());
        let bad = HubSpotClientConfig {
            headroom: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("headroom"));
        let bad = HubSpotClientConfig {
            base_url: "api.hubapi.com".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn object_types_cannot_change_the_path() {
        assert!(check_object("contacts").is_ok());
        assert!(check_object("p62515_vehicle").is_ok());
        assert!(check_object("2-1234").is_ok());
        for bad in ["", "contacts/../owners", "deals?x=1", "a b"] {
            assert!(check_object(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_daily_pair_is_a_budget() {
        let mut h = HeaderMap::new();
        h.insert("x-hubspot-ratelimit-remaining", "0".parse().unwrap());
        assert_eq!(budget_from_headers(&h), None);
        h.insert("x-hubspot-ratelimit-daily", "250000".parse().unwrap());
        h.insert("x-hubspot-ratelimit-daily-remaining", "12".parse().unwrap());
        assert_eq!(
            budget_from_headers(&h),
            Some(Budget {
                remaining: 12,
                max: 250_000
            })
        );
    }
}
