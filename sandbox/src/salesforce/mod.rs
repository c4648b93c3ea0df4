//! # Salesforce sandbox (vendor-apis.md §2)
//!
//! An axum server speaking the Salesforce REST API as `connectors::salesforce` expects it:
//!
//! | Part | Endpoints / behaviour | § |
//! |---|---|---|
//! | [`auth`] | `POST /services/oauth2/token` (authorization_code, refresh_token, JWT bearer, client_credentials), `GET /services/oauth2/authorize` (approve with `approve=1`), `POST /services/oauth2/revoke`; 401 `INVALID_SESSION_ID` after the session lifetime | 2.1, 2.9 |
//! | [`api`] | `GET /services/data/`, `…/vNN.N/query` and `queryAll` (SOQL subset, `nextRecordsUrl` paging, batch size 2,000 or `Sforce-Query-Options`), `PATCH …/composite/sobjects/{SObject}/{ExternalIdField}` (upsert) and `PATCH …/composite/sobjects` (update by id, mixed types), both 200 max with per-record results and `allOrNone`, `GET …/sobjects/{SObject}/{Id}`, `GET …/limits` | 2.2–2.5, 2.8 |
//! | [`bulk`] | Bulk API 2.0 query jobs: create, poll (`UploadComplete` → `InProgress` → `JobComplete`), CSV results with `Sforce-Locator` paging, 409 on a version mismatch | 2.6 |
//! | [`cometd`] | CDC over CometD/Bayeux long polling: handshake, subscribe with replay (-1, -2, id), connect, disconnect; events for API and UI changes, with `changeOrigin` from `Sforce-Call-Options`, and injectable gap events | 2.7 |
//! | [`soql`] | the SOQL subset; `MALFORMED_QUERY`, `INVALID_TYPE`, `INVALID_FIELD` | 2.4 |
//! | [`store`], [`schema`] | Contact, Lead, Account, Opportunity, Vehicle__c (VIN__c external id), 18-character ids, validation codes | 2.3, 2.5 |
//! | [`seed`] | deterministic dealership records with valid VINs | — |
//!
//! Every `/services/data/vNN.N/…` answer carries `Sforce-Limit-Info: api-usage=n/max`; past the
//! daily allocation the answer is 403 `REQUEST_LIMIT_EXCEEDED` with no `Retry-After` (§2.8).

pub mod api;
pub mod auth;
pub mod bulk;
pub mod cometd;
pub mod errors;
pub mod schema;
pub mod seed;
pub mod soql;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value};

use crate::common::clock::Clock;
use crate::common::faults::{Fault, FaultSettings, Faults, dropped_connection};
use crate::common::lock;
use crate::common::rng::SplitMix64;
use crate::common::server::{ServerHandle, StartError};
use errors::SfError;
use schema::SObject;
use seed::SeedSize;
use store::{ChangeEvent, Record, Store};

/// The simulated org and its connected app. `Default` is a Developer Edition-sized org with no
/// seed data on an ephemeral loopback port.
#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    pub listen: String,
    pub seed: u64,
    pub seed_size: SeedSize,
    /// Seeded records are stamped within the year before this instant (epoch ms).
    pub seed_base_ms: i64,
    /// Versions served under `/services/data/vNN.N` (§2.2).
    pub api_versions: Vec<String>,
    pub org_id: String,
    pub user_id: String,
    pub username: String,
    /// The connected app's consumer key (`client_id`, the JWT's `iss`).
    pub consumer_key: String,
    pub consumer_secret: String,
    pub redirect_uri: String,
    /// Accepted JWT `aud` values (§2.1).
    pub jwt_audiences: Vec<String>,
    /// §2.1: set by the org's session policy (2 hours by default).
    pub session_lifetime: Duration,
    /// §2.1: refresh-token rotation, off by default.
    pub rotate_refresh_tokens: bool,
    /// §2.8: the daily API request allocation (Developer Edition: 15,000).
    pub daily_api_requests: u64,
    /// Largest query page; §2.4's 2,000 unless lowered.
    pub max_page_size: usize,
    /// §2.11: the error code for more than 200 Collections records is not confirmed.
    pub too_many_records_code: String,
    /// Status polls a Bulk 2.0 query job takes to reach `JobComplete` (§2.6).
    pub bulk_polls_to_complete: u32,
    /// Rows per Bulk 2.0 results page when `maxRecords` is not given.
    pub bulk_max_records: usize,
    /// How long `/meta/connect` is held open without events (§2.7; Salesforce advises 110 s).
    pub cometd_timeout: Duration,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        SalesforceConfig {
            listen: "127.0.0.1:0".into(),
            seed: 1,
            seed_size: SeedSize::default(),
            seed_base_ms: 1_793_491_200_000, // 2026-11-01T00:00:00Z
            api_versions: ["62.0", "63.0", "64.0", "65.0", "66.0"]
                .map(String::from)
                .to_vec(),
            org_id: "00DRO0000001gPLEAY".into(),
            user_id: "005RO000001SwiUAAS".into(),
            username: "integration@lakeside-motors.example.com".into(),
            consumer_key: "3MVG9sandboxConsumerKey".into(),
            consumer_secret: "sandbox-consumer-secret".into(),
            redirect_uri: "http://localhost:8080/oauth/salesforce/callback".into(),
            jwt_audiences: vec![
                "https://login.salesforce.com".into(),
                "https://test.salesforce.com".into(),
            ],
            session_lifetime: Duration::from_secs(2 * 3600),
            rotate_refresh_tokens: false,
            daily_api_requests: 15_000,
            max_page_size: 2000,
            too_many_records_code: "EXCEEDED_ID_LIMIT".into(),
            bulk_polls_to_complete: 2,
            bulk_max_records: 50_000,
            cometd_timeout: cometd::DEFAULT_TIMEOUT,
        }
    }
}

pub(crate) struct OrgState {
    pub store: Store,
    pub auth: auth::AuthState,
    pub rng: SplitMix64,
    pub locators: HashMap<String, api::Locator>,
    pub locator_seq: u64,
    /// Timestamps (ms) of counted API requests over the rolling 24 hours (§2.8).
    pub api_usage: VecDeque<i64>,
    pub jobs: HashMap<String, bulk::QueryJob>,
    pub job_seq: u64,
}

pub(crate) struct Shared {
    pub config: SalesforceConfig,
    pub clock: Clock,
    pub faults: Faults,
    pub state: Mutex<OrgState>,
    /// Changes written through the API, in commit order (the future CDC feed).
    pub changes: Mutex<Vec<ChangeEvent>>,
    pub change_notify: tokio::sync::Notify,
    pub cometd_clients: Mutex<HashMap<String, cometd::Client>>,
    base_url: OnceLock<String>,
}

impl Shared {
    /// Appends committed changes to the feed and wakes CometD long polls (§2.7).
    pub fn publish(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        lock(&self.changes).extend(events);
        self.change_notify.notify_waiters();
    }

    pub fn base_url(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }
}

/// A running Salesforce simulator. Stops when dropped.
pub struct SalesforceSandbox {
    shared: Arc<Shared>,
    server: Option<ServerHandle>,
}

impl std::fmt::Debug for SalesforceSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceSandbox")
            .field("base_url", &self.base_url())
            .finish()
    }
}

impl SalesforceSandbox {
    pub async fn start(config: SalesforceConfig) -> Result<SalesforceSandbox, StartError> {
        if config.api_versions.is_empty() {
            return Err(StartError::Config("api_versions is empty".into()));
        }
        let mut store = Store::default();
        seed::seed(
            &mut store,
            config.seed,
            config.seed_size,
            config.seed_base_ms,
        );
        let shared = Arc::new(Shared {
            clock: Clock::default(),
            faults: Faults::new(config.seed),
            state: Mutex::new(OrgState {
                store,
                auth: auth::AuthState::default(),
                rng: SplitMix64::new(config.seed ^ 0x5F0C),
                locators: HashMap::new(),
                locator_seq: 0,
                api_usage: VecDeque::new(),
                jobs: HashMap::new(),
                job_seq: 0,
            }),
            changes: Mutex::new(Vec::new()),
            change_notify: tokio::sync::Notify::new(),
            cometd_clients: Mutex::new(HashMap::new()),
            base_url: OnceLock::new(),
            config,
        });
        let server = ServerHandle::spawn(&shared.config.listen, router(shared.clone())).await?;
        let _ = shared.base_url.set(format!("http://{}", server.addr));
        Ok(SalesforceSandbox {
            shared,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>`: both the login host and the `instance_url`.
    pub fn base_url(&self) -> &str {
        self.shared.base_url()
    }

    pub fn config(&self) -> &SalesforceConfig {
        &self.shared.config
    }

    pub fn set_faults(&self, faults: FaultSettings) {
        self.shared.faults.set(faults);
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut FaultSettings)) {
        self.shared.faults.update(f);
    }

    /// The next `n` records written through Collections fail with `UNABLE_TO_LOCK_ROW`.
    pub fn lock_rows_next(&self, n: u32) {
        lock(&self.shared.state).store.lock_row_next = n;
    }

    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Stops the sandbox's time (see [`Clock::freeze`]); `advance_clock` still moves it.
    pub fn freeze_clock(&self) {
        self.shared.clock.freeze();
    }

    pub fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Ends every session now (the token-expiry fault).
    pub fn expire_sessions(&self) {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.state).auth.expire_all(now);
    }

    /// API requests counted in the rolling 24 hours.
    pub fn api_usage(&self) -> u64 {
        lock(&self.shared.state).api_usage.len() as u64
    }

    /// Sets the usage counter, e.g. to one below the allocation.
    pub fn set_api_usage(&self, used: u64) {
        let now = self.shared.clock.now_ms();
        let mut st = lock(&self.shared.state);
        st.api_usage.clear();
        st.api_usage.extend(std::iter::repeat_n(now, used as usize));
    }

    pub fn count(&self, object: &str) -> usize {
        lock(&self.shared.state).store.count(object)
    }

    /// Every live record of `object` (for reconciling a sync against the org).
    pub fn records(&self, object: &str) -> Vec<Record> {
        lock(&self.shared.state)
            .store
            .records
            .get(object)
            .map(|rs| rs.iter().filter(|r| !r.deleted).cloned().collect())
            .unwrap_or_default()
    }

    pub fn record(&self, id: &str) -> Option<Record> {
        lock(&self.shared.state)
            .store
            .by_id(id)
            .map(|(_, r)| r.clone())
    }

    /// Creates a record as a user in Salesforce would; `fields` by API name.
    pub fn insert(&self, object: &str, fields: Map<String, Value>) -> Result<String, String> {
        let obj = SObject::find(object).ok_or_else(|| format!("no object {object}"))?;
        let now = self.shared.clock.now_ms();
        let id = lock(&self.shared.state)
            .store
            .insert(obj, fields.clone(), now, now)
            .map_err(|e| format!("{e:?}"))?;
        self.shared.publish([ChangeEvent {
            object: obj.name,
            record_id: id.clone(),
            change_type: "CREATE",
            changed_fields: fields.keys().cloned().collect(),
            values: fields,
            commit_ms: now,
            origin: String::new(),
        }]);
        Ok(id)
    }

    /// Changes a record as a user would (moves its `SystemModstamp`).
    pub fn update(&self, id: &str, fields: Map<String, Value>) -> Result<(), String> {
        let now = self.shared.clock.now_ms();
        let (object, changed) = {
            let mut st = lock(&self.shared.state);
            let changed = st
                .store
                .update(id, &fields, now)
                .map_err(|e| format!("{e:?}"))?;
            (st.store.by_id(id).map_or("", |(o, _)| o), changed)
        };
        let values = fields
            .into_iter()
            .filter(|(k, _)| changed.contains(k))
            .collect();
        self.shared.publish([ChangeEvent {
            object,
            record_id: id.to_owned(),
            change_type: "UPDATE",
            changed_fields: changed,
            values,
            commit_ms: now,
            origin: String::new(),
        }]);
        Ok(())
    }

    /// Emits a gap event (§2.7: header only; the subscriber must re-read the record).
    pub fn inject_gap(&self, object: &str, record_id: &str, change_type: &'static str) {
        let Some(obj) = SObject::find(object) else {
            return;
        };
        self.shared.publish([ChangeEvent {
            object: obj.name,
            record_id: record_id.to_owned(),
            change_type,
            changed_fields: Vec::new(),
            values: Map::new(),
            commit_ms: self.shared.clock.now_ms(),
            origin: String::new(),
        }]);
    }

    /// Soft-deletes a record (visible to `queryAll` only).
    pub fn delete(&self, id: &str) -> bool {
        let now = self.shared.clock.now_ms();
        let object = {
            let mut st = lock(&self.shared.state);
            if !st.store.delete(id, now) {
                return false;
            }
            st.store.by_id(id).map_or("", |(o, _)| o)
        };
        self.shared.publish([ChangeEvent {
            object,
            record_id: id.to_owned(),
            change_type: "DELETE",
            changed_fields: Vec::new(),
            values: Map::new(),
            commit_ms: now,
            origin: String::new(),
        }]);
        true
    }

    /// Changes written through the API so far.
    pub fn changes(&self) -> Vec<ChangeEvent> {
        lock(&self.shared.changes).clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(auth::token_endpoint))
        .route("/services/oauth2/authorize", get(auth::authorize))
        .route("/services/oauth2/revoke", post(auth::revoke))
        .route("/services/data", get(api::versions))
        .route("/services/data/", get(api::versions))
        .route("/services/data/{ver}/query", get(api::query))
        .route("/services/data/{ver}/query/", get(api::query))
        .route("/services/data/{ver}/queryAll", get(api::query_all))
        .route("/services/data/{ver}/query/{locator}", get(api::query_more))
        .route(
            "/services/data/{ver}/queryAll/{locator}",
            get(api::query_more),
        )
        .route("/services/data/{ver}/limits", get(api::limits))
        .route("/services/data/{ver}/limits/", get(api::limits))
        .route(
            "/services/data/{ver}/composite/sobjects",
            patch(api::collection_update),
        )
        .route(
            "/services/data/{ver}/composite/sobjects/{object}/{field}",
            patch(api::collection_upsert),
        )
        .route(
            "/services/data/{ver}/sobjects/{object}/{id}",
            get(api::get_record),
        )
        .route(
            "/services/data/{ver}/sobjects/{object}/{field}/{value}",
            patch(api::upsert_one),
        )
        .route("/cometd/{ver}", post(cometd::bayeux))
        .route("/cometd/{ver}/{kind}", post(cometd::bayeux))
        .route("/cometd/{ver}/meta/{kind}", post(cometd::bayeux))
        .route("/services/data/{ver}/jobs/query", post(bulk::create))
        .route("/services/data/{ver}/jobs/query/{id}", get(bulk::status))
        .route(
            "/services/data/{ver}/jobs/query/{id}/results",
            get(bulk::results),
        )
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

const DAY_MS: i64 = 86_400_000;

/// Faults, then for `/services/data/vNN.N/…` the session check and the daily allocation; the
/// `Sforce-Limit-Info` header goes on every such answer (§2.8).
async fn gate(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let latency = sh.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match sh.faults.roll() {
        Some(Fault::Drop) => return dropped_connection(),
        Some(Fault::Error(status)) => {
            let code = if status == 503 {
                "SERVER_UNAVAILABLE"
            } else {
                "UNKNOWN_EXCEPTION"
            };
            return SfError::new(
                status,
                code,
                "sandbox fault injection: the server could not handle the request",
            )
            .into_response();
        }
        None => {}
    }
    let path = req.uri().path();
    let is_api = path
        .strip_prefix("/services/data/v")
        .is_some_and(|rest| !rest.is_empty());
    if !is_api {
        return next.run(req).await;
    }
    if let Err(e) = auth::authenticate(&sh, req.headers()) {
        return e.into_response();
    }
    let max = sh.config.daily_api_requests;
    let now = sh.clock.now_ms();
    let (admitted, used) = {
        let mut st = lock(&sh.state);
        while st.api_usage.front().is_some_and(|&t| t <= now - DAY_MS) {
            st.api_usage.pop_front();
        }
        let used = st.api_usage.len() as u64;
        if used >= max {
            (false, used)
        } else {
            st.api_usage.push_back(now);
            (true, used + 1)
        }
    };
    let mut resp = if admitted {
        next.run(req).await
    } else {
        // §2.8: a 403 with no Retry-After.
        SfError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
        .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{max}")) {
        resp.headers_mut().insert("sforce-limit-info", v);
    }
    resp
}
