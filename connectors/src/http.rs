//! The one HTTP path every vendor client takes: a shared `reqwest::Client`, a shared rate
//! limiter that keeps the hub *under* the vendor's published limits, retries with backoff that
//! honour `Retry-After`, "auth expired → refresh once and retry", and accounting of every call.
//!
//! A vendor client builds [`Request`]s and hands them to [`VendorHttp::send`] with its
//! [`Credentials`]; the vendor's own knowledge comes in through [`VendorProfile`] (how to
//! classify a failed response, how to read the budget headers). The retry-or-give-up decision
//! is made here, once, from the [`ErrorClass`] the connector's `errors` module assigned
//! (vendor-apis.md §1.2):
//!
//! | Class | What `send` does |
//! |---|---|
//! | `Auth` | asks the credentials to refresh (once per call), then retries |
//! | `Transient` | retries with exponential backoff and jitter, waiting at least `Retry-After` |
//! | `RateLimited` | the same, unless the wait exceeds [`RetryPolicy::max_wait`] (Salesforce's daily allocation: §2.8, no `Retry-After`, our hint is 15 min) — then it returns at once, so a scheduler backs off instead of a hot loop |
//! | `Permanent` | returns the vendor's code and message |
//!
//! Every attempt is reported to an [`ApiMeter`] (tenant, vendor, connector, endpoint class,
//! status, latency) and counted in
//! `hub_vendor_api_calls_total{tenant,vendor,connector,endpoint,status}`; a client with an
//! attached [`crate::usage::ApiUsage`] also counts each call that reached the vendor against
//! the connector's daily and per-window limits, so the control plane can track cost and
//! budgets. The budget a vendor reports in its headers (`Sforce-Limit-Info`,
//! `X-HubSpot-RateLimit-*`) is kept as the last [`Budget`] seen (and handed to the usage as
//! the authoritative daily count); when it says nothing is left, calls are refused locally
//! (without spending a request) until the observation is older than
//! [`RetryPolicy::budget_fresh_for`].
//!
//! No URL query, body or token is logged: URLs can hold SOQL with names in it, bodies hold
//! personal data, and tokens are secrets ([`Secret`] never prints its value).

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder as _;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{ErrorClass, VendorError};

/// A credential or other secret: its value never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Vendor HTTP requests. Labels: tenant (`unknown` for a client built without one), vendor,
/// connector, endpoint (a fixed class per call kind), status (HTTP status, or
/// `transport_error`). Listed with the hub's other metrics in `topology::metrics`.
pub const VENDOR_API_CALLS_TOTAL: &str = "hub_vendor_api_calls_total";
/// Latency of one vendor request. Labels: vendor, connector, endpoint.
pub const VENDOR_API_CALL_SECONDS: &str = "hub_vendor_api_call_duration_seconds";
/// What is left of a connector's budget. Labels: tenant, connector, window (`day`, `10s`);
/// see [`crate::usage`].
pub const VENDOR_API_BUDGET_REMAINING: &str = "hub_vendor_api_budget_remaining";

/// What a client reports about one vendor call (one HTTP attempt, retries included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The tenant whose connector made the call (`unknown` when the client has none).
    pub tenant: String,
    pub vendor: &'static str,
    pub connector: String,
    /// A small fixed set per vendor (`query`, `search`, `batch_upsert`, `oauth_token`, …);
    /// never a URL, so the label's cardinality stays bounded.
    pub endpoint: &'static str,
    /// HTTP status; 0 when no response came back (connection refused, reset, timeout).
    pub status: u16,
    pub latency: Duration,
}

/// Told about every vendor call; the control plane uses it for cost and budget tracking.
pub trait ApiMeter: Send + Sync {
    fn record(&self, call: &ApiCall);
}

/// The default meter: Prometheus-style counters and a latency histogram through `metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MetricsMeter;

impl ApiMeter for MetricsMeter {
    fn record(&self, call: &ApiCall) {
        let status = if call.status == 0 {
            "transport_error".to_owned()
        } else {
            call.status.to_string()
        };
        metrics::counter!(
            VENDOR_API_CALLS_TOTAL,
            "tenant" => call.tenant.clone(),
            "vendor" => call.vendor,
            "connector" => call.connector.clone(),
            "endpoint" => call.endpoint,
            "status" => status,
        )
        .increment(1);
        metrics::histogram!(
            VENDOR_API_CALL_SECONDS,
            "vendor" => call.vendor,
            "connector" => call.connector.clone(),
            "endpoint" => call.endpoint,
        )
        .record(call.latency.as_secs_f64());
    }
}

/// A meter that keeps every call in memory (tests, and the console's "last calls" view).
#[derive(Debug, Default)]
pub struct RecordingMeter {
    calls: Mutex<Vec<ApiCall>>,
}

impl RecordingMeter {
    pub fn calls(&self) -> Vec<ApiCall> {
        lock(&self.calls).clone()
    }

    pub fn count_status(&self, status: u16) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.status == status)
            .count()
    }
}

impl ApiMeter for RecordingMeter {
    fn record(&self, call: &ApiCall) {
        lock(&self.calls).push(call.clone());
        MetricsMeter.record(call);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A vendor's published request limit: `requests` per `per` (e.g. HubSpot's 100 per 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    /// The GCRA limiter that keeps any window of length `per` at or under `requests` times
    /// `headroom`: a burst of a twentieth of that, the rest spread evenly, so a long sync runs
    /// at 95 % of the allowance and a quiet client still starts at once. (A burst equal to the
    /// limit followed by the steady rate would put up to twice the limit into one rolling
    /// window, which is exactly what HubSpot's `TEN_SECONDLY_ROLLING` policy refuses.)
    pub fn limiter(&self, headroom: f64) -> Option<DefaultDirectRateLimiter> {
        let allowed =
            ((f64::from(self.requests) * headroom.clamp(0.05, 1.0)).floor() as u32).max(1);
        let burst = (allowed / 20).max(1);
        let steady = allowed.saturating_sub(burst).max(1);
        let period = self.per.checked_div(steady)?;
        let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst)?);
        Some(RateLimiter::direct(quota))
    }
}

/// Which of the shared limiters a request waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The vendor's general per-app limit.
    General,
    /// HubSpot search's own per-second limit (§3.4) — and the general one.
    Search,
    /// Not rate limited by us (OAuth token endpoints).
    None,
}

/// The limiters of one vendor account, shared by every client of it (clone the `Arc`).
#[derive(Debug, Default)]
pub struct SharedLimiter {
    general: Option<DefaultDirectRateLimiter>,
    search: Option<DefaultDirectRateLimiter>,
}

impl SharedLimiter {
    /// No limiting at all (tests of the vendor's own 429 handling).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(SharedLimiter::default())
    }

    /// `general` and, for vendors that have one, a separate `search` limit, each kept to
    /// `headroom` (e.g. 0.9) of the published number.
    pub fn new(general: Option<RateLimit>, search: Option<RateLimit>, headroom: f64) -> Arc<Self> {
        Arc::new(SharedLimiter {
            general: general.and_then(|l| l.limiter(headroom)),
            search: search.and_then(|l| l.limiter(headroom)),
        })
    }

    async fn acquire(&self, bucket: Bucket) {
        if bucket == Bucket::Search
            && let Some(s) = &self.search
        {
            s.until_ready().await;
        }
        if bucket != Bucket::None
            && let Some(g) = &self.general
        {
            g.until_ready().await;
        }
    }
}

/// Retries: how many, how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt for transient and rate-limited failures.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// A failure that asks for a longer wait than this is returned instead of waited out.
    pub max_wait: Duration,
    /// How long a "budget exhausted" observation refuses calls locally.
    pub budget_fresh_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            budget_fresh_for: Duration::from_secs(60),
        }
    }
}

/// What a vendor said about its remaining allowance in the last response that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub remaining: u64,
    pub max: u64,
}

/// The vendor-specific part of the HTTP path: naming, classification and budget headers.
#[derive(Clone, Copy)]
pub struct VendorProfile {
    pub vendor: &'static str,
    /// Classifies a non-2xx response: (status, headers, body) → the vendor's error.
    pub classify: fn(u16, &HeaderMap, &[u8]) -> VendorError,
    /// Reads the remaining allowance from a response's headers, if it carries one.
    pub budget: fn(&HeaderMap) -> Option<Budget>,
    /// The error to report when the last seen budget is exhausted (no call is made).
    pub budget_exhausted: fn() -> VendorError,
}

impl fmt::Debug for VendorProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorProfile")
            .field("vendor", &self.vendor)
            .finish()
    }
}

/// Something that can put a bearer token on a request and refresh it.
pub trait Credentials: Send + Sync {
    /// The current access token (fetching one first if there is none).
    fn bearer(&self) -> impl Future<Output = Result<Secret, VendorError>> + Send;
    /// The vendor refused `rejected`: get a new token unless another call already did.
    fn refresh(&self, rejected: &Secret) -> impl Future<Output = Result<(), VendorError>> + Send;
}

/// One request, built by a vendor client. `Debug` leaves out the body, which may hold
/// credentials (token requests) or personal data.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    /// Label for accounting: a fixed name per kind of call.
    pub endpoint: &'static str,
    pub bucket: Bucket,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("body_bytes", &self.body.as_ref().map_or(0, Bytes::len))
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>, endpoint: &'static str) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            endpoint,
            bucket: Bucket::General,
        }
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(Bytes::from(body.to_string()));
        self.header("content-type", "application/json")
    }

    /// An `application/x-www-form-urlencoded` body (reqwest 0.13 puts `.form()` behind a
    /// feature; the encoding is one line here).
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.body = Some(Bytes::from(body));
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    /// Adds a header; a value that is not a valid header value is dropped (callers pass
    /// constants and numbers).
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn bucket(mut self, bucket: Bucket) -> Self {
        self.bucket = bucket;
        self
    }
}

/// A 2xx response (or any status the caller asked to see).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The shared client of one vendor account. Cheap to clone; clones share the connection pool,
/// the limiter, the meter and the budget.
#[derive(Clone)]
pub struct VendorHttp {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    profile: VendorProfile,
    connector: String,
    limiter: Arc<SharedLimiter>,
    meter: Arc<dyn ApiMeter>,
    retry: RetryPolicy,
    budget: Mutex<Option<(Budget, Instant)>>,
    /// The connector's usage counter, attached once by `build`.
    usage: std::sync::OnceLock<Arc<crate::usage::ApiUsage>>,
}

impl fmt::Debug for VendorHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorHttp")
            .field("vendor", &self.inner.profile.vendor)
            .field("connector", &self.inner.connector)
            .finish()
    }
}

/// A response that arrived but could not be read, or a request that could not be sent.
pub(crate) fn transport_error(vendor: &'static str, what: &str) -> VendorError {
    VendorError {
        vendor,
        status: 0,
        code: "TRANSPORT".into(),
        message: what.to_owned(),
        class: ErrorClass::Transient { retry_after: None },
    }
}

/// A 2xx whose body does not have the documented shape. Not retried automatically, but
/// transient: the calls this hub makes are reads or idempotent upserts.
pub(crate) fn unexpected(vendor: &'static str, status: u16, what: String) -> VendorError {
    VendorError {
        vendor,
        status,
        code: "UNEXPECTED_RESPONSE".into(),
        message: what,
        class: ErrorClass::Transient { retry_after: None },
    }
}

/// A header as text, if present and readable.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl VendorHttp {
    /// `timeout` bounds one attempt. Redirects are not followed: a vendor that redirects an
    /// API call is misconfigured, and following would carry the bearer token elsewhere.
    pub fn new(
        profile: VendorProfile,
        connector: impl Into<String>,
        limiter: Arc<SharedLimiter>,
        meter: Arc<dyn ApiMeter>,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Self, VendorError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| transport_error(profile.vendor, &format!("cannot build client: {e}")))?;
        Ok(VendorHttp {
            inner: Arc::new(Inner {
                client,
                profile,
                connector: connector.into(),
                limiter,
                meter,
                retry,
                budget: Mutex::new(None),
                usage: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn vendor(&self) -> &'static str {
        self.inner.profile.vendor
    }

    /// Counts this client's calls in `usage` from now on (its first attachment stays).
    pub fn attach_usage(&self, usage: Arc<crate::usage::ApiUsage>) {
        let _ = self.inner.usage.set(usage);
    }

    /// The connector's usage counter, if one is attached.
    pub fn usage(&self) -> Option<&Arc<crate::usage::ApiUsage>> {
        self.inner.usage.get()
    }

    /// The allowance the vendor last reported, if any.
    pub fn last_budget(&self) -> Option<Budget> {
        lock(&self.inner.budget).map(|(b, _)| b)
    }

    /// Sends with `credentials` as bearer; see the module docs for retries.
    pub async fn send<C: Credentials>(
        &self,
        request: &Request,
        credentials: &C,
    ) -> Result<Response, VendorError> {
        self.send_inner(request, Some(credentials)).await
    }

    /// Sends without an `Authorization` header (OAuth token endpoints).
    pub async fn send_anonymous(&self, request: &Request) -> Result<Response, VendorError> {
        self.send_inner::<NoCredentials>(request, None).await
    }

    async fn send_inner<C: Credentials>(
        &self,
        request: &Request,
        credentials: Option<&C>,
    ) -> Result<Response, VendorError> {
        let inner = &*self.inner;
        let vendor = inner.profile.vendor;
        let retry = inner.retry;
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(retry.min_delay)
            .with_max_delay(retry.max_delay)
            .with_max_times(retry.max_retries)
            .with_jitter()
            .build();
        let mut refreshed = false;
        loop {
            if request.bucket != Bucket::None && self.budget_exhausted() {
                return Err((inner.profile.budget_exhausted)());
            }
            inner.limiter.acquire(request.bucket).await;
            let token = match credentials {
                Some(c) => Some(c.bearer().await?),
                None => None,
            };
            let mut rb = inner.client.request(request.method.clone(), &request.url);
            for (k, v) in &request.headers {
                rb = rb.header(k, v);
            }
            if let Some(t) = &token {
                rb = rb.bearer_auth(t.expose());
            }
            if let Some(b) = &request.body {
                rb = rb.body(b.clone());
            }
            let started = Instant::now();
            let outcome = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok(Response {
                            status,
                            headers,
                            body,
                        }),
                        Err(e) => Err((status, transport_error(vendor, &describe(&e)))),
                    }
                }
                Err(e) => Err((0, transport_error(vendor, &describe(&e)))),
            };
            let status = match &outcome {
                Ok(r) => r.status,
                Err((s, _)) => *s,
            };
            let usage = inner.usage.get();
            // A call that reached the vendor counts against the allocation whatever its
            // status; OAuth token requests (no bucket) do not (§2.8).
            if status != 0
                && request.bucket != Bucket::None
                && let Some(u) = usage
            {
                u.record_call();
            }
            inner.meter.record(&ApiCall {
                tenant: usage.map_or_else(|| "unknown".to_owned(), |u| u.tenant.clone()),
                vendor,
                connector: inner.connector.clone(),
                endpoint: request.endpoint,
                status,
                latency: started.elapsed(),
            });
            let error = match outcome {
                Ok(resp) => {
                    if let Some(b) = (inner.profile.budget)(&resp.headers) {
                        self.observe_budget(b);
                    }
                    if (200..300).contains(&resp.status) {
                        return Ok(resp);
                    }
                    (inner.profile.classify)(resp.status, &resp.headers, &resp.body)
                }
                Err((_, e)) => e,
            };
            match &error.class {
                ErrorClass::Auth => {
                    let (Some(c), Some(t), false) = (credentials, &token, refreshed) else {
                        return Err(error);
                    };
                    tracing::info!(vendor, connector = %inner.connector, endpoint = request.endpoint,
                        "access token refused; refreshing once");
                    c.refresh(t).await?;
                    refreshed = true;
                }
                ErrorClass::Transient { retry_after } | ErrorClass::RateLimited { retry_after } => {
                    let Some(step) = backoff.next() else {
                        return Err(error);
                    };
                    let wait = retry_after.map_or(step, |r| r.max(step));
                    if retry_after.is_some_and(|r| r > retry.max_wait) {
                        // Salesforce's daily allocation (§2.8) or HubSpot's DAILY policy
                        // (§3.6): not something to sleep through inside one call.
                        return Err(error);
                    }
                    tracing::debug!(vendor, connector = %inner.connector, endpoint = request.endpoint,
                        status = error.status, code = %error.code, wait_ms = wait.as_millis() as u64,
                        "retrying vendor call");
                    tokio::time::sleep(wait.min(retry.max_wait)).await;
                }
                ErrorClass::Permanent => return Err(error),
            }
        }
    }

    fn observe_budget(&self, b: Budget) {
        *lock(&self.inner.budget) = Some((b, Instant::now()));
        match self.inner.usage.get() {
            Some(u) => u.observe_vendor(b.max.saturating_sub(b.remaining), b.max),
            None => metrics::gauge!(
                VENDOR_API_BUDGET_REMAINING,
                "tenant" => "unknown",
                "connector" => self.inner.connector.clone(),
                "window" => "day",
            )
            .set(b.remaining as f64),
        }
    }

    fn budget_exhausted(&self) -> bool {
        matches!(*lock(&self.inner.budget),
            Some((b, at)) if b.remaining == 0 && at.elapsed() < self.inner.retry.budget_fresh_for)
    }
}

/// A transport error's kind without its URL (which may carry a SOQL query).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body broke off"
    } else if e.is_request() {
        "the request failed"
    } else {
        "transport error"
    };
    // `Display` of a reqwest error includes the URL; print only the source chain.
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

struct NoCredentials;

impl Credentials for NoCredentials {
    async fn bearer(&self) -> Result<Secret, VendorError> {
        Ok(Secret::new(""))
    }
    async fn refresh(&self, _rejected: &Secret) -> Result<(), VendorError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_is_counted_with_its_labels() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let call = ApiCall {
                tenant: "lakeside-auto".into(),
                vendor: "hubspot",
                connector: "dealer-1-hubspot".into(),
                endpoint: "search",
                status: 429,
                latency: Duration::from_millis(12),
            };
            MetricsMeter.record(&call);
            MetricsMeter.record(&ApiCall { status: 0, ..call });
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let counted: Vec<(String, u64)> = snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == VENDOR_API_CALLS_TOTAL)
            .map(|(k, _, _, v)| {
                let status = k
                    .key()
                    .labels()
                    .find(|l| l.key() == "status")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                let n = match v {
                    DebugValue::Counter(n) => *n,
                    _ => 0,
                };
                (status, n)
            })
            .collect();
        assert_eq!(counted.len(), 2, "{counted:?}");
        assert!(counted.contains(&("429".into(), 1)));
        assert!(counted.contains(&("transport_error".into(), 1)));
        let labels: Vec<String> = snapshot
            .iter()
            .find(|(k, ..)| k.key().name() == VENDOR_API_CALLS_TOTAL)
            .map(|(k, ..)| k.key().labels().map(|l| l.key().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(
            labels,
            ["tenant", "vendor", "connector", "endpoint", "status"]
        );
        assert!(
            snapshot
                .iter()
                .any(|(k, ..)| k.key().name() == VENDOR_API_CALL_SECONDS)
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("pat-na1-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn limiter_keeps_a_rolling_window_under_the_limit() {
        // 100 per 10 s with 10 % headroom: 90 allowed per window, a burst of 4.
        let l = RateLimit {
            requests: 100,
            per: Duration::from_secs(10),
        }
        .limiter(0.9)
        .unwrap();
        let mut immediate = 0;
        while l.check().is_ok() {
            immediate += 1;
        }
        assert_eq!(immediate, 4);
    }

    #[test]
    fn zero_limits_build_no_limiter_rather_than_panicking() {
        assert!(
            RateLimit {
                requests: 0,
                per: Duration::ZERO
            }
            .limiter(0.9)
            .is_none()
        );
    }
}
