//! The REST API, under `/api/v1`: thin handlers over [`ControlStore`].
//!
//! Every route is registered through one helper, [`Routes::add`], which records the
//! endpoint — method, path template and what it needs ([`Need`]) — in the [`Endpoint`]
//! registry *and* puts the guard that enforces that need in front of the handler. The record
//! and the enforcement therefore cannot drift apart, and the authorization-matrix test walks
//! the registry (failing when an endpoint is missing from its own expected table).
//!
//! The guard authenticates ([`auth`]: a bearer API token, or the session cookie plus the CSRF
//! header on every non-GET request; 401 otherwise) and applies the one access rule of
//! [`crate::auth::Caller::can`] to the tenant named by the path: another tenant answers 404,
//! too low a role 403. Handlers then only check what depends on the request's content
//! (granting `owner` takes an owner; a token's role may not exceed its creator's).
//!
//! Every state-changing request appends an audit entry (actor, tenant, action, target,
//! before/after — masked by the store — and client address), as does the audit export, a
//! sensitive read. The entry is appended after the change: if the store fails in between,
//! the change stands unaudited and the caller gets an error (the store has no transaction
//! spanning both yet).
//!
//! The guard also applies the request limits ([`ApiConfig`]'s `tenant_*` keyed by the path's
//! tenant, `caller_*` keyed by the caller elsewhere), after the access check: `429
//! rate_limited` with `Retry-After`.
//!
//! Errors take one shape everywhere ([`error::ApiError`], whose body is [`error::ErrorBody`]).
//!
//! Calls to vendors ("test connection", the OAuth2 code exchange) go through
//! [`ConnectorCheck`], which the hub binary provides ([`ApiState::with_connector_check`]):
//! this crate knows no vendor. Without one, those endpoints answer 501.
//!
//! The OpenAPI 3.1 document ([`openapi`]) is generated from the code with `utoipa`: each
//! handler carries a `#[utoipa::path]` (method, path, request body, responses — every error
//! response referencing the one `ErrorBody` schema — security: `bearerAuth` or
//! `sessionCookie`, plus the `x-csrf-token` header parameter on non-GET requests), and the
//! document is served publicly at `GET /api/v1/openapi.json`, itself registered through
//! [`Routes::add`]. A test checks that the document and the [`Endpoint`] registry list exactly
//! the same method + path pairs, so an endpoint added without its annotation fails the tests.

mod analytics;
pub mod auth;
mod compliance;
pub mod connector_check;
mod connectors;
mod desk;
pub mod error;
mod handlers;
mod monitor;
mod throttle;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};

use crate::auth::{Access, Role, TenantId};
use crate::events::{EventBus, LocalBus};
use crate::store::ControlStore;

pub use auth::Authed;
pub use connector_check::{CheckOutcome, CheckStatus, CodeExchange, ConnectorCheck, ExchangeError};
pub use desk::{GatewayError, GatewayFuture, PipelineGateway, ResolutionSubmission};
pub use error::ApiError;

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";

/// Largest request body accepted: 64 KiB (credentials, schedules and members are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the API is served. Construct with `..Default::default()` for the fields you leave.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Served over TLS: the session cookie is then `Secure` and `__Host-` prefixed.
    pub tls: bool,
    /// Requests per second one tenant's endpoints accept, sustained, summed over its callers
    /// (per control node). Default 50: a console and a few scripts never meet it.
    pub tenant_requests_per_s: u32,
    /// Requests a tenant may send at once above the sustained rate. Default 1000.
    pub tenant_burst: u32,
    /// Requests per second one caller may make to endpoints without a tenant (`/me`,
    /// `/tenants`, sign-out). Default 50.
    pub caller_requests_per_s: u32,
    /// Requests a caller may send at once there. Default 1000.
    pub caller_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tls: false,
            tenant_requests_per_s: 50,
            tenant_burst: 1000,
            caller_requests_per_s: 50,
            caller_burst: 1000,
        }
    }
}

/// What an endpoint needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// Anyone, signed in or not (sign-in itself, the OpenAPI document).
    Public,
    /// Any authenticated caller.
    Authenticated,
    /// A platform admin.
    Platform,
    /// At least this role in the tenant named by the path's `{tenant}`.
    Tenant(Role),
}

/// One registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The HTTP method.
    pub method: Verb,
    /// The full path template, e.g. `/api/v1/tenants/{tenant}/jobs`.
    pub path: String,
    /// What the caller needs.
    pub need: Need,
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl Verb {
    /// As an [`axum::http::Method`].
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The control-plane store.
    pub store: ControlStore,
    /// How the API is served.
    pub config: ApiConfig,
    /// Where the live sync feed (`/ws/sync-monitor`) reads its events.
    pub events: Arc<dyn EventBus>,
    /// The way into the pipeline for the desk's actions (submitting a conflict's resolution,
    /// replaying a dead letter); without it those answer 501 `pipeline_not_connected`.
    pub gateway: Option<Arc<dyn PipelineGateway>>,
    /// The vendor-side calls ("test connection", the OAuth2 code exchange), which the hub
    /// binary provides; `None`: those endpoints answer 501.
    pub connector_check: Option<Arc<dyn ConnectorCheck>>,
    /// The per-tenant and per-caller request limits, built from `config`.
    throttle: Arc<throttle::ApiThrottle>,
}

impl ApiState {
    /// State over `store`, with an in-process event bus (see [`ApiState::with_events`]), no
    /// pipeline gateway ([`ApiState::with_gateway`]) and no vendor-side calls
    /// ([`ApiState::with_connector_check`]).
    pub fn new(store: ControlStore, config: ApiConfig) -> Self {
        ApiState {
            store,
            throttle: Arc::new(throttle::ApiThrottle::new(&config)),
            config,
            events: Arc::new(LocalBus::default()),
            gateway: None,
            connector_check: None,
        }
    }

    /// Uses `events` for the live sync feed: the node's bus, shared with its scheduler.
    pub fn with_events(mut self, events: Arc<dyn EventBus>) -> Self {
        self.events = events;
        self
    }

    /// The same, with the desk's actions going through `gateway`.
    pub fn with_gateway(mut self, gateway: Arc<dyn PipelineGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Adds the implementation of "test connection" and the OAuth2 code exchange.
    pub fn with_connector_check(mut self, check: Arc<dyn ConnectorCheck>) -> Self {
        self.connector_check = Some(check);
        self
    }

    /// Builds the API over this state.
    pub fn into_api(self) -> Api {
        let routes = handlers::register(Routes::new(self.clone()));
        let inner = routes
            .router
            .fallback(unknown_route)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self);
        Api {
            router: Router::new().nest(PREFIX, inner),
            endpoints: routes.endpoints,
        }
    }
}

/// The router-plus-registry builder: the only way a route gets into the API.
pub struct Routes {
    state: ApiState,
    router: Router<ApiState>,
    endpoints: Vec<Endpoint>,
}

impl Routes {
    fn new(state: ApiState) -> Self {
        Routes {
            state,
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }

    /// Registers `handler` for `verb path` (relative to [`PREFIX`]) behind the guard for
    /// `need`, and records the endpoint.
    pub fn add<H, T>(mut self, verb: Verb, path: &'static str, need: Need, handler: H) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let guarded = on(verb.filter(), handler)
            .route_layer(from_fn_with_state((self.state.clone(), need), guard));
        self.router = self.router.route(path, guarded);
        self.endpoints.push(Endpoint {
            method: verb,
            path: format!("{PREFIX}{path}"),
            need,
        });
        self
    }
}

/// The API's router and the registry of its endpoints.
pub struct Api {
    /// Routes under [`PREFIX`], ready to merge into a node's control router.
    pub router: Router,
    /// Every endpoint, with what it needs.
    pub endpoints: Vec<Endpoint>,
}

/// Builds the API over `store`, with an in-process event bus.
pub fn api(store: ControlStore, config: ApiConfig) -> Api {
    ApiState::new(store, config).into_api()
}

/// The API's OpenAPI 3.1 document, as served at `GET /api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    handlers::ApiDoc::openapi()
}

/// The API's routes under [`PREFIX`] (see [`api`] for the registry too).
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the client address
/// keys sign-in throttling and goes into audit entries, and without it every client shares
/// the address `unknown` (so one guesser would lock an account for everyone). Behind a
/// reverse proxy the address is the proxy's; forwarded headers are not trusted yet.
pub fn router(store: ControlStore, config: ApiConfig) -> Router {
    api(store, config).router
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("this API path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this API path does not take that method",
    )
}

/// The one guard: authenticates, then enforces `need`, then hands the handler an [`Authed`]
/// in the request's extensions.
async fn guard(
    State((state, need)): State<(ApiState, Need)>,
    req: Request,
    next: Next,
) -> Response {
    match admit(&state, need, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn admit(state: &ApiState, need: Need, req: Request) -> Result<Request, ApiError> {
    if need == Need::Public {
        return Ok(req);
    }
    // Work on the parts: the body is not `Sync`, so no reference to it may cross an await.
    let (mut parts, body) = req.into_parts();
    let authed = auth::authenticate(state, &parts).await?;
    match need {
        Need::Public | Need::Authenticated => {
            state
                .throttle
                .admit(throttle::Key::Caller(authed.actor()))?;
        }
        Need::Platform => {
            if !authed.caller.platform_admin {
                return Err(ApiError::forbidden("this needs a platform admin"));
            }
            state
                .throttle
                .admit(throttle::Key::Caller(authed.actor()))?;
        }
        Need::Tenant(role) => {
            let tenant = tenant_in_path(&mut parts).await?;
            match authed.caller.can(&tenant, role) {
                Access::Allowed => {}
                Access::Forbidden => {
                    return Err(ApiError::forbidden(format!(
                        "this needs the {role} role or higher in the tenant"
                    )));
                }
                Access::NotFound => return Err(ApiError::not_found("the tenant")),
            }
            // A platform admin is allowed everywhere, so the tenant's existence is checked
            // here once (members' tenants exist by the membership's foreign key).
            if authed.caller.platform_admin && state.store.get_tenant(&tenant).await?.is_none() {
                return Err(ApiError::not_found("the tenant"));
            }
            state
                .throttle
                .admit(throttle::Key::Tenant(tenant.as_str()))?;
        }
    }
    parts.extensions.insert(authed);
    Ok(Request::from_parts(parts, body))
}

async fn tenant_in_path(parts: &mut axum::http::request::Parts) -> Result<TenantId, ApiError> {
    use axum::extract::{FromRequestParts, RawPathParams};
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::not_found("the tenant"))?;
    let raw = params
        .iter()
        .find(|(k, _)| *k == "tenant")
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| ApiError::not_found("the tenant"))?;
    TenantId::new(raw).map_err(|_| ApiError::not_found("the tenant"))
}

#[cfg(test)]
mod tests;
