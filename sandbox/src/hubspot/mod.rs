//! # HubSpot sandbox (vendor-apis.md §3)
//!
//! An axum server speaking HubSpot's CRM API as `connectors::hubspot` expects it:
//!
//! | Part | Endpoints / behaviour | § |
//! |---|---|---|
//! | [`auth`] | private-app `pat-…` tokens; `GET /oauth/authorize` (approve with `approve=1`), `POST /oauth/v1/token` (authorization_code, refresh_token, `expires_in`), `GET /oauth/v1/access-tokens/{token}`; 401 `INVALID_AUTHENTICATION` / `EXPIRED_AUTHENTICATION` | 3.1 |
//! | [`api`] | `contacts`, `companies`, `deals` under `/crm/v3/objects` and `/crm/objects/2026-03`: search (filters, one sort, `limit` ≤ 200, 10,000-result cap, optional visibility delay), list, get, create (409 on a taken unique value), update, archive, batch read, batch upsert (100 max, 207 multi-status) | 3.4, 3.5 |
//! | [`limits`] | 10-second burst and daily caps per app, search's own per-second cap, `X-HubSpot-RateLimit-*` headers, 429 with `policyName` | 3.7 |
//! | [`webhooks`] | batched, v1- and v3-signed deliveries of creation / propertyChange / deletion events with retries | 3.8 |
//! | [`seed`] | deterministic dealership contacts, companies and deals | — |
//!
//! Fault knobs ([`crate::common::faults`]) inject 5xx, latency and dropped connections; the
//! clock ([`crate::common::clock`]) moves to expire tokens and roll rate windows.

pub mod api;
pub mod auth;
pub mod errors;
pub mod limits;
pub mod seed;
pub mod store;
pub mod webhooks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::clock::Clock;
use crate::common::faults::{Fault, FaultSettings, Faults, dropped_connection};
use crate::common::lock;
use crate::common::rng::SplitMix64;
use crate::common::server::{ServerHandle, StartError};
use errors::ApiError;
use limits::{Limiter, RateLimits};
use seed::SeedSize;
use store::{Change, ObjectType, SearchLimits, Store};
use webhooks::{ChangeSource, Pending, WebhookAttempt, WebhookConfig};

/// Everything about the simulated portal and app. `Default` is a Free/Starter private app plus
/// an OAuth app, no seed data, listening on an ephemeral loopback port.
#[derive(Debug, Clone)]
pub struct HubSpotConfig {
    /// Address to listen on; `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// Seeds the data generator, tokens and fault dice.
    pub seed: u64,
    pub seed_size: SeedSize,
    /// Seeded records are stamped within the year before this instant (epoch ms).
    pub seed_base_ms: i64,
    /// The HubSpot account (hub id, `portalId` in webhooks).
    pub portal_id: u64,
    pub app_id: u64,
    /// Accepted private-app access tokens (§3.1: `pat-<region>-…`, never expire).
    pub private_app_tokens: Vec<String>,
    pub client_id: String,
    /// Also the key of webhook signatures (§3.8).
    pub client_secret: String,
    pub redirect_uri: String,
    /// §3.1: OAuth access tokens live 30 minutes.
    pub access_token_lifetime: Duration,
    /// Extra characters on access tokens (§3.1: up to ~300 long).
    pub access_token_padding: usize,
    pub rate_limits: RateLimits,
    pub search: SearchLimits,
    /// §3.4: search is eventually consistent; a record written less than this long ago is not
    /// yet visible to search (zero: immediately visible).
    pub search_visibility_delay: Duration,
    pub webhook: WebhookConfig,
}

impl Default for HubSpotConfig {
    fn default() -> Self {
        HubSpotConfig {
            listen: "127.0.0.1:0".into(),
            seed: 1,
            seed_size: SeedSize::default(),
            seed_base_ms: 1_793_491_200_000, // 2026-11-01T00:00:00Z
            portal_id: 62_515,
            app_id: 54_321,
            private_app_tokens: vec!["pat-na1-11111111-2222-3333-4444-555555555555".into()],
            client_id: "sandbox-client-id".into(),
            client_secret: "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy".into(),
            redirect_uri: "http://localhost:8080/oauth/hubspot/callback".into(),
            access_token_lifetime: Duration::from_secs(1800),
            access_token_padding: 200,
            rate_limits: RateLimits::default(),
            search: SearchLimits::default(),
            search_visibility_delay: Duration::ZERO,
            webhook: WebhookConfig::default(),
        }
    }
}

pub(crate) struct State_ {
    pub store: Store,
    pub auth: auth::AuthState,
    pub limiter: Limiter,
    pub rng: SplitMix64,
    pub next_event_id: u64,
}

/// What the handlers share.
pub(crate) struct Shared {
    pub config: HubSpotConfig,
    pub clock: Clock,
    pub faults: Faults,
    pub state: Mutex<State_>,
    pub events: mpsc::UnboundedSender<Pending>,
    pub webhook_target: Mutex<Option<String>>,
    pub webhook_log: Mutex<Vec<WebhookAttempt>>,
    base_url: OnceLock<String>,
}

impl Shared {
    pub fn base_url(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }

    /// Queues webhook events for changes (§3.8).
    pub fn publish(&self, changes: Vec<Change>, source: ChangeSource) {
        for change in changes {
            let _ = self.events.send(Pending {
                change,
                source: source.clone(),
            });
        }
    }
}

/// A running HubSpot simulator. Stops when dropped.
pub struct HubSpotSandbox {
    shared: Arc<Shared>,
    server: Option<ServerHandle>,
    sender: JoinHandle<()>,
}

impl std::fmt::Debug for HubSpotSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotSandbox")
            .field("base_url", &self.base_url())
            .finish()
    }
}

impl HubSpotSandbox {
    /// Seeds the portal and starts serving.
    pub async fn start(config: HubSpotConfig) -> Result<HubSpotSandbox, StartError> {
        if config
            .private_app_tokens
            .iter()
            .any(|t| t.trim().is_empty())
        {
            return Err(StartError::Config("a private-app token is empty".into()));
        }
        let mut store = Store::new();
        seed::seed(
            &mut store,
            config.seed,
            config.seed_size,
            config.seed_base_ms,
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let target = config.webhook.target_url.clone();
        let shared = Arc::new(Shared {
            clock: Clock::default(),
            faults: Faults::new(config.seed),
            state: Mutex::new(State_ {
                store,
                auth: auth::AuthState::default(),
                limiter: Limiter::default(),
                rng: SplitMix64::new(config.seed ^ 0x70CE),
                next_event_id: 0,
            }),
            events: tx,
            webhook_target: Mutex::new(target),
            webhook_log: Mutex::new(Vec::new()),
            base_url: OnceLock::new(),
            config,
        });
        let server = ServerHandle::spawn(&shared.config.listen, router(shared.clone())).await?;
        let _ = shared.base_url.set(format!("http://{}", server.addr));
        let sender = tokio::spawn(webhooks::run(shared.clone(), rx));
        Ok(HubSpotSandbox {
            shared,
            server: Some(server),
            sender,
        })
    }

    /// `http://127.0.0.1:<port>`, the stand-in for `https://api.hubapi.com`.
    pub fn base_url(&self) -> &str {
        self.shared.base_url()
    }

    pub fn config(&self) -> &HubSpotConfig {
        &self.shared.config
    }

    /// The first private-app token.
    pub fn private_app_token(&self) -> &str {
        self.shared
            .config
            .private_app_tokens
            .first()
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Fault knobs: error rate, latency, dropped connections.
    pub fn set_faults(&self, faults: FaultSettings) {
        self.shared.faults.set(faults);
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut FaultSettings)) {
        self.shared.faults.update(f);
    }

    /// Moves the sandbox's clock forward: tokens expire, rate windows roll over.
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

    /// Expires every OAuth access token issued so far (the token-expiry fault).
    pub fn expire_access_tokens(&self) {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.state).auth.expire_all(now);
    }

    /// Points webhooks somewhere else (or nowhere) at run time.
    pub fn set_webhook_target(&self, url: Option<String>) {
        *lock(&self.shared.webhook_target) = url;
    }

    /// Every webhook delivery attempt so far.
    pub fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        lock(&self.shared.webhook_log).clone()
    }

    /// Requests the rate limiter let through and refused with 429, since start.
    pub fn rate_limit_counts(&self) -> (u64, u64) {
        let st = lock(&self.shared.state);
        (st.limiter.admitted, st.limiter.refused)
    }

    /// Every live record of type `t` (for reconciling a sync against the portal).
    pub fn objects(&self, t: ObjectType) -> Vec<store::CrmObject> {
        lock(&self.shared.state)
            .store
            .objects
            .get(&t)
            .map(|m| m.values().filter(|o| !o.archived).cloned().collect())
            .unwrap_or_default()
    }

    pub fn count(&self, t: ObjectType) -> usize {
        lock(&self.shared.state).store.count(t)
    }

    /// A record as the store holds it (archived ones included).
    pub fn object(&self, t: ObjectType, id: u64) -> Option<store::CrmObject> {
        lock(&self.shared.state).store.get(t, id).cloned()
    }

    /// Finds a live record by a unique property, e.g. `("email", "a@example.com")`.
    pub fn find(&self, t: ObjectType, id_property: &str, value: &str) -> Option<store::CrmObject> {
        lock(&self.shared.state)
            .store
            .find(t, Some(id_property), value)
            .cloned()
    }

    /// Creates a record as a person in HubSpot's UI would (webhook `changeSource: CRM_UI`).
    pub fn create_object(
        &self,
        t: ObjectType,
        properties: &[(&str, &str)],
    ) -> Result<u64, store::InputError> {
        let now = self.shared.clock.now_ms();
        let props = to_map(properties);
        let (id, changes) = lock(&self.shared.state).store.create(t, props, now, now)?;
        self.shared.publish(changes, ChangeSource::CrmUi);
        Ok(id)
    }

    /// Changes a record as a person in HubSpot's UI would; fires propertyChange webhooks.
    pub fn update_object(
        &self,
        t: ObjectType,
        id: u64,
        properties: &[(&str, &str)],
    ) -> Result<(), store::InputError> {
        let now = self.shared.clock.now_ms();
        let changes = lock(&self.shared.state)
            .store
            .update(t, id, to_map(properties), now)?;
        self.shared.publish(changes, ChangeSource::CrmUi);
        Ok(())
    }

    pub fn update_contact(
        &self,
        id: u64,
        properties: &[(&str, &str)],
    ) -> Result<(), store::InputError> {
        self.update_object(ObjectType::Contacts, id, properties)
    }

    /// Archives a record; fires a deletion webhook.
    pub fn archive_object(&self, t: ObjectType, id: u64) -> bool {
        let now = self.shared.clock.now_ms();
        let change = lock(&self.shared.state).store.archive(t, id, now);
        let found = change.is_some();
        self.shared
            .publish(change.into_iter().collect(), ChangeSource::CrmUi);
        found
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        self.sender.abort();
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

impl Drop for HubSpotSandbox {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

fn to_map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn router(shared: Arc<Shared>) -> Router {
    let objects = Router::new()
        .route("/{object}", get(api::list).post(api::create_one))
        .route("/{object}/search", post(api::search))
        .route("/{object}/batch/read", post(api::batch_read))
        .route("/{object}/batch/upsert", post(api::batch_upsert))
        .route(
            "/{object}/{id}",
            get(api::get_one)
                .patch(api::update_one)
                .delete(api::archive_one),
        );
    Router::new()
        .route("/oauth/authorize", get(auth::authorize))
        .route("/oauth/v1/token", post(auth::token_endpoint))
        .route("/oauth/v1/access-tokens/{token}", get(auth::token_info))
        // §3.2: the numbered and the date-versioned prefixes behave the same.
        .nest("/crm/v3/objects", objects.clone())
        .nest("/crm/objects/2026-03", objects)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Faults first, then (for `/crm/…`) authentication and rate limits, then the handler; rate-limit
/// headers go on the answer.
async fn gate(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let latency = sh.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match sh.faults.roll() {
        Some(Fault::Drop) => return dropped_connection(),
        Some(Fault::Error(status)) => {
            // §3.6: 423 is "too many concurrent writes", 477 "migration in progress".
            let (category, message) = match status {
                423 => (
                    "LOCKED",
                    "Too many concurrent requests to the same records; wait at least 2 seconds.",
                ),
                477 => (
                    "MIGRATION_IN_PROGRESS",
                    "The account is being migrated between data centres.",
                ),
                _ => (
                    "INTERNAL_ERROR",
                    "The server encountered an error (sandbox fault injection).",
                ),
            };
            let mut resp = ApiError::new(status, category, message).into_response();
            if let Some(after) = sh.faults.get().retry_after
                && let Ok(v) = axum::http::HeaderValue::from_str(&after.as_secs().to_string())
            {
                resp.headers_mut().insert("retry-after", v);
            }
            return resp;
        }
        None => {}
    }
    if !req.uri().path().starts_with("/crm/") {
        return next.run(req).await;
    }
    let kind = match auth::authenticate(&sh, req.headers()) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let is_search = req.method() == Method::POST && req.uri().path().ends_with("/search");
    let now = sh.clock.now_ms();
    let (headers, verdict) =
        lock(&sh.state)
            .limiter
            .admit(&sh.config.rate_limits, kind, is_search, now);
    let mut resp = match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    resp.headers_mut().extend(headers);
    resp
}
