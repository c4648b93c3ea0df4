//! The API's tests, on SQLite and (with `HUB_TEST_PG_URL`) PostgreSQL.
//!
//! The authorization matrix is the control-plane issue's "done when": every registered
//! endpoint × every caller (owner, admin, operator, viewer — each by session cookie and by API
//! token — platform admin, and nobody) × own tenant / other tenant, each with the exact status
//! it must get. [`EXPECTED`] is the test's own table; an endpoint in the registry that the
//! table does not list (or lists with another need) fails the test.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use std::sync::Arc;

use super::connector_check::{
    BoxFuture, CheckOutcome, CodeExchange, ConnectorCheck, ExchangeError,
};
use crate::store::connectors::{ConnectorConfig, ConnectorSpec};

use super::{ApiConfig, ApiState, Endpoint, Need, Verb, api, openapi};
use crate::auth::{Role, TenantId, UserId};
use crate::secret::Secret;
use crate::store::ControlStore;
use crate::store::testing::{Harness, on_both_backends};

const PASSWORD: &str = "correct horse battery staple";

/// Every endpoint the API must have, with what it needs and the status an allowed caller gets
/// for the well-formed request the walk sends.
const EXPECTED: &[(Verb, &str, Need, u16)] = &[
    (Verb::Post, "/api/v1/auth/login", Need::Public, 200),
    (Verb::Get, "/api/v1/openapi.json", Need::Public, 200),
    (Verb::Get, "/api/v1/me", Need::Authenticated, 200),
    // A plain GET is not an upgrade: 426 (the feed itself is tested in `monitor`).
    (
        Verb::Get,
        "/api/v1/ws/sync-monitor",
        Need::Authenticated,
        426,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/analytics",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (Verb::Get, "/api/v1/tenants", Need::Platform, 200),
    (Verb::Post, "/api/v1/tenants", Need::Platform, 201),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/members",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/members",
        Need::Tenant(Role::Admin),
        201,
    ),
    (
        Verb::Patch,
        "/api/v1/tenants/{tenant}/members/{user}",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Delete,
        "/api/v1/tenants/{tenant}/members/{user}",
        Need::Tenant(Role::Admin),
        204,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/api-tokens",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/api-tokens",
        Need::Tenant(Role::Admin),
        201,
    ),
    (
        Verb::Delete,
        "/api/v1/tenants/{tenant}/api-tokens/{token}",
        Need::Tenant(Role::Admin),
        204,
    ),
    (
        Verb::Put,
        "/api/v1/tenants/{tenant}/connectors/{connector}/credentials",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/connectors/{connector}/credentials",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/audit",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/audit/export",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/jobs",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/jobs/{job}",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/jobs/{job}/cancel",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/connectors/{connector}/sync",
        Need::Tenant(Role::Operator),
        202,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/connectors/{connector}/schedule",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Put,
        "/api/v1/tenants/{tenant}/connectors/{connector}/schedule",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/conflicts",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/conflicts/{conflict}",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/conflicts/{conflict}/resolve",
        Need::Tenant(Role::Operator),
        202,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/conflicts/resolve",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/dead-letters",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/dead-letters/{dead_letter}",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/dead-letters/{dead_letter}/replay",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/dead-letters/replay",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/dead-letters/{dead_letter}/discard",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/connectors",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/connectors",
        Need::Tenant(Role::Admin),
        201,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/connectors/{connector}",
        Need::Tenant(Role::Viewer),
        200,
    ),
    (
        Verb::Patch,
        "/api/v1/tenants/{tenant}/connectors/{connector}",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Delete,
        "/api/v1/tenants/{tenant}/connectors/{connector}",
        Need::Tenant(Role::Admin),
        204,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/connectors/{connector}/disable",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/connectors/{connector}/enable",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/connectors/{connector}/test",
        Need::Tenant(Role::Operator),
        200,
    ),
    (
        Verb::Post,
        "/api/v1/tenants/{tenant}/connectors/{connector}/oauth/start",
        Need::Tenant(Role::Admin),
        200,
    ),
    (Verb::Get, "/api/v1/oauth/callback", Need::Public, 200),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/compliance-report",
        Need::Tenant(Role::Admin),
        200,
    ),
    (
        Verb::Get,
        "/api/v1/tenants/{tenant}/api-usage",
        Need::Tenant(Role::Viewer),
        200,
    ),
    // Last: it ends the caller's session.
    (Verb::Post, "/api/v1/auth/logout", Need::Authenticated, 204),
];

/// How a test caller authenticates.
#[derive(Debug, Clone)]
enum Cred {
    Nobody,
    Session { cookie: String, csrf: String },
    Bearer(String),
}

#[derive(Debug, Clone)]
struct Who {
    label: String,
    /// Role in the own tenant (`acme`); none in the other (`globex`).
    role: Option<Role>,
    platform: bool,
    cred: Cred,
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn call(router: &Router, method: Verb, path: &str, cred: &Cred, body: Option<Value>) -> Resp {
    let mut req = Request::builder().method(method.method()).uri(path);
    match cred {
        Cred::Nobody => {}
        Cred::Session { cookie, csrf } => {
            req = req
                .header(header::COOKIE, format!("hub_session={cookie}"))
                .header(super::auth::CSRF_HEADER, csrf);
        }
        Cred::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = router
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

fn t(s: &str) -> TenantId {
    TenantId::new(s).expect("tenant id")
}

/// Signs in through the API and returns the session cookie's value and the CSRF token.
async fn sign_in(router: &Router, email: &str) -> Cred {
    let r = call(
        router,
        Verb::Post,
        "/api/v1/auth/login",
        &Cred::Nobody,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "sign-in of {email}");
    let set_cookie = r
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("Set-Cookie")
        .to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("hub_session="))
        .expect("hub_session cookie")
        .to_string();
    let csrf = r.json()["csrf_token"].as_str().expect("csrf").to_string();
    Cred::Session { cookie, csrf }
}

/// The world the walk runs in: tenants `acme` (the callers' own) and `globex` (another),
/// a member of each to change and remove, a user to add, credentials and a schedule to read.
struct World {
    router: Router,
    endpoints: Vec<Endpoint>,
    callers: Vec<Who>,
    target: UserId,
    login_email: String,
}

async fn user(store: &ControlStore, email: &str, platform: bool) -> UserId {
    store
        .create_user(email, &Secret::new(PASSWORD.to_string()), platform)
        .await
        .expect("user")
}

/// The OAuth redirect URI the test connectors register.
const REDIRECT: &str = "https://hub.acme.example/api/v1/oauth/callback";

/// A configuration for `crm`-like test connectors (OAuth2, so every endpoint applies).
fn connector_body(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Dealer CRM",
        "vendor": "salesforce",
        "endpoint": "https://login.salesforce.example",
        "auth_type": "oauth2",
        "sync": { "frequency": "hourly", "batch_size": 200 },
        "field_mappings": [{
            "vendor_entity": "Contact",
            "canonical": "customer",
            "fields": { "email": { "from": "/Email", "transform": ["trim", "lowercase"] } }
        }],
        "oauth": {
            "client_id": "client-123",
            "authorize_url": "https://login.salesforce.example/services/oauth2/authorize",
            "scope": "api refresh_token",
            "redirect_uri": REDIRECT
        }
    })
}

async fn configure(store: &ControlStore, tenant: &TenantId, id: &str) {
    let spec = ConnectorSpec::from_json(&connector_body(id), &["id"]).expect("spec");
    store
        .create_connector(tenant, id, &spec, false)
        .await
        .expect("connector");
}

/// A stand-in for the hub's vendor calls: a connector whose credentials hold
/// `"fail": true` fails its test; a code `"refused"` is refused; anything else succeeds.
/// It records the last code exchange.
#[derive(Debug, Default)]
pub(super) struct FakeCheck {
    pub exchanges: std::sync::Mutex<Vec<(String, String, String, String)>>,
}

impl ConnectorCheck for FakeCheck {
    fn check<'a>(
        &'a self,
        config: &'a ConnectorConfig,
        credentials: Option<&'a Secret<Value>>,
    ) -> BoxFuture<'a, CheckOutcome> {
        Box::pin(async move {
            match credentials {
                None => CheckOutcome::failed("no_credentials", "no credentials are stored"),
                Some(c) if c.expose()["fail"] == true => CheckOutcome::failed(
                    "auth_failed",
                    format!("{} refused the credentials", config.spec.vendor),
                ),
                Some(_) => CheckOutcome::ok("the vendor answered", Some(3)),
            }
        })
    }

    fn exchange_code<'a>(
        &'a self,
        x: CodeExchange<'a>,
    ) -> BoxFuture<'a, Result<Secret<Value>, ExchangeError>> {
        Box::pin(async move {
            if x.code == "refused" {
                return Err(ExchangeError {
                    code: "vendor_refused".into(),
                    message: "the vendor refused the code".into(),
                });
            }
            self.exchanges.lock().expect("lock").push((
                x.config.id.clone(),
                x.code.to_string(),
                x.code_verifier.expose().clone(),
                x.redirect_uri.to_string(),
            ));
            let mut creds = x
                .credentials
                .map(|c| c.expose().clone())
                .unwrap_or(json!({}));
            creds["access_token"] = json!(format!("{ACCESS_TOKEN}-{}", x.code));
            creds["refresh_token"] = json!("refresh-secret-4d2b");
            Ok(Secret::new(creds))
        })
    }
}

/// The access token the fake exchange hands out (followed by `-<code>`).
const ACCESS_TOKEN: &str = "access-secret-91c0e";

fn api_with_fake(store: &ControlStore, fake: Arc<FakeCheck>) -> super::Api {
    ApiState::new(store.clone(), ApiConfig::default())
        .with_connector_check(fake)
        .into_api()
}

async fn world(store: &ControlStore) -> World {
    let gateway = std::sync::Arc::new(FakeGateway::default());
    let built = ApiState::new(store.clone(), ApiConfig::default())
        .with_gateway(gateway)
        .with_connector_check(Arc::new(FakeCheck::default()))
        .into_api();
    let router = built.router;
    let (acme, globex) = (t("acme"), t("globex"));
    store
        .create_tenant(&acme, "Acme Motors")
        .await
        .expect("acme");
    store
        .create_tenant(&globex, "Globex Auto")
        .await
        .expect("globex");
    let target = user(store, "target@example.com", false).await;
    user(store, "newcomer@example.com", false).await;
    let globex_owner = user(store, "owner@globex.example", false).await;
    store
        .set_membership(&globex_owner, &globex, Role::Owner)
        .await
        .expect("globex owner");
    for tenant in [&acme, &globex] {
        configure(store, tenant, "crm").await;
        store
            .put_credentials(tenant, "crm", &Secret::new(json!({ "api_key": "k" })))
            .await
            .expect("credentials");
        store
            .set_schedule(tenant, "crm", crate::store::jobs::Frequency::Hourly, None)
            .await
            .expect("schedule");
    }
    let mut callers = Vec::new();
    for role in Role::ALL.into_iter().rev() {
        let email = format!("{role}@acme.example");
        let id = user(store, &email, false).await;
        store
            .set_membership(&id, &acme, role)
            .await
            .expect("member");
        callers.push(Who {
            label: format!("{role} (session)"),
            role: Some(role),
            platform: false,
            cred: sign_in(&router, &email).await,
        });
        let token = store
            .create_api_token(&acme, role, "matrix", 3_600_000, None)
            .await
            .expect("token");
        callers.push(Who {
            label: format!("{role} (API token)"),
            role: Some(role),
            platform: false,
            cred: Cred::Bearer(token.token.expose().clone()),
        });
    }
    user(store, "platform@hub.example", true).await;
    callers.push(Who {
        label: "platform admin".into(),
        role: None,
        platform: true,
        cred: sign_in(&router, "platform@hub.example").await,
    });
    callers.push(Who {
        label: "nobody".into(),
        role: None,
        platform: false,
        cred: Cred::Nobody,
    });
    World {
        router,
        endpoints: built.endpoints,
        callers,
        target,
        login_email: "viewer@acme.example".into(),
    }
}

/// The status `who` must get from an endpoint needing `need`, in its own tenant or not.
fn expected(need: Need, ok: u16, who: &Who, own: bool) -> u16 {
    match (need, &who.cred) {
        (Need::Public, _) => ok,
        (_, Cred::Nobody) => 401,
        (Need::Authenticated, _) => ok,
        (Need::Platform, _) => {
            if who.platform {
                ok
            } else {
                403
            }
        }
        (Need::Tenant(needed), _) => {
            if who.platform {
                ok
            } else if !own {
                404
            } else if who.role >= Some(needed) {
                ok
            } else {
                403
            }
        }
    }
}

/// Makes `path` concrete for `tenant`, preparing what the request acts on so that an allowed
/// caller's request succeeds: a pending job to cancel, a token to revoke, a member to change
/// or remove, a user who is not yet a member to add.
async fn concrete(
    store: &ControlStore,
    w: &World,
    verb: Verb,
    path: &str,
    tenant: &TenantId,
) -> String {
    let mut p = path.replace("{tenant}", tenant.as_str());
    if verb == Verb::Delete && path.ends_with("/connectors/{connector}") {
        // A connector of its own to delete (`crm` has jobs, which would refuse it).
        let id = format!("gone-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        configure(store, tenant, &id).await;
        p = p.replace("{connector}", &id);
    }
    p = p.replace("{connector}", "crm");
    if p.ends_with("/oauth/callback") {
        let started = store
            .start_oauth(tenant, "crm", REDIRECT, "user:matrix")
            .await
            .expect("oauth flow");
        p = format!("{p}?code=matrix-code&state={}", started.state.expose());
    }
    if p.contains("{job}") {
        let job = store.sync_now(tenant, "crm").await.expect("job");
        p = p.replace("{job}", &job.id);
    }
    if p.contains("{token}") {
        let tok = store
            .create_api_token(tenant, Role::Viewer, "to revoke", 3_600_000, None)
            .await
            .expect("token");
        p = p.replace("{token}", &tok.info.id);
    }
    store
        .set_membership(&w.target, tenant, Role::Viewer)
        .await
        .expect("target member");
    if let Some(newcomer) = store
        .find_user_by_email("newcomer@example.com")
        .await
        .expect("newcomer")
    {
        store
            .remove_membership(&newcomer.id, tenant)
            .await
            .expect("not a member");
    }
    if p.contains("{conflict}") || p.ends_with("/conflicts/resolve") {
        let id = if p.contains("{conflict}") {
            format!("customer:m-{}", next_offset())
        } else {
            BULK_CONFLICT.to_string()
        };
        store
            .upsert_conflict(&desk_conflict(tenant, &id))
            .await
            .expect("conflict");
        p = p.replace("{conflict}", &id);
    }
    if p.contains("{dead_letter}") {
        let d = desk_dead_letter(tenant);
        store.upsert_dead_letter(&d).await.expect("dead letter");
        p = p.replace("{dead_letter}", &d.id);
    }
    p.replace("{user}", &w.target.0)
}

/// A gateway that takes everything (or, when `fail` is set, nothing) and remembers it.
#[derive(Debug, Default)]
pub(super) struct FakeGateway {
    pub resolutions: std::sync::Mutex<Vec<super::ResolutionSubmission>>,
    pub replays: std::sync::Mutex<Vec<crate::store::desk::DeadLetterReplay>>,
    pub fail: std::sync::atomic::AtomicBool,
}

impl super::PipelineGateway for FakeGateway {
    fn submit_resolution<'a>(
        &'a self,
        s: &'a super::ResolutionSubmission,
    ) -> super::GatewayFuture<'a> {
        Box::pin(async move {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(super::GatewayError::Unavailable("broker down".into()));
            }
            self.resolutions.lock().expect("lock").push(s.clone());
            Ok(())
        })
    }

    fn replay<'a>(
        &'a self,
        r: &'a crate::store::desk::DeadLetterReplay,
    ) -> super::GatewayFuture<'a> {
        Box::pin(async move {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(super::GatewayError::Unavailable("broker down".into()));
            }
            self.replays.lock().expect("lock").push(r.clone());
            Ok(())
        })
    }
}

/// The conflict the bulk-resolve walk resolves (made pending again before each request).
const BULK_CONFLICT: &str = "customer:bulk";

fn next_offset() -> i64 {
    static OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    OFFSET.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// A pending conflict on first name and phone, raised by HubSpot against Salesforce.
pub(super) fn desk_conflict(tenant: &TenantId, id: &str) -> crate::store::desk::ConflictUpsert {
    crate::store::desk::ConflictUpsert {
        tenant: tenant.clone(),
        conflict_id: id.to_string(),
        entity: "customer".into(),
        key: "ck-1".into(),
        connector: Some("hs-marketing".into()),
        event: crate::store::desk::ConflictEvent::Pending,
        held_fields: vec!["first_name".into(), "phone".into()],
        fields: json!([
            {"field": "first_name", "current": {"value": "Pat", "source": "sf-main", "source_ts": 1},
             "incoming": {"value": "Patricia", "source": "hs-marketing", "source_ts": 2},
             "strategy": "manual", "outcome": "held"},
            {"field": "phone", "current": {"value": "+15125550143", "source": "sf-main", "source_ts": 1},
             "incoming": {"value": "+15125550199", "source": "hs-marketing", "source_ts": 2},
             "strategy": "manual", "outcome": "held"},
            {"field": "city", "current": {"value": "Austin", "source": "sf-main", "source_ts": 1},
             "incoming": {"value": "Dallas", "source": "hs-marketing", "source_ts": 2},
             "strategy": "source_wins", "outcome": {"applied": {"won_conflict": true}}},
        ]),
        version: 2,
        at_ms: 1_000,
        reason: None,
        resolved_by: None,
        partition: 0,
        offset: next_offset(),
    }
}

/// A transform dead letter: a contact without a last name.
pub(super) fn desk_dead_letter(tenant: &TenantId) -> crate::store::desk::DeadLetterUpsert {
    let n = next_offset();
    crate::store::desk::DeadLetterUpsert {
        tenant: tenant.clone(),
        id: format!("hub.dlq.transform:0:{n}"),
        stage: "transform".into(),
        error_class: "mapping".into(),
        reason: "the record failed mapping".into(),
        errors: json!([{"field": "last_name", "code": "required", "message": "is required"}]),
        attempts: 1,
        original_topic: "hub.raw.salesforce".into(),
        original_partition: 0,
        original_offset: n,
        original_key: Some(format!("{tenant}/sf-main/003{n}")),
        original_value: b"{\"LastName\":null}".to_vec(),
        headers: vec![("hub-tenant".into(), tenant.to_string())],
        failed_at_ms: 1_000 + n,
    }
}

fn body_for(w: &World, verb: Verb, path: &str, n: usize) -> Option<Value> {
    let tail = path.rsplit('/').next().unwrap_or("");
    match (verb, tail) {
        (Verb::Post, "login") => Some(json!({ "email": w.login_email, "password": PASSWORD })),
        (Verb::Post, "tenants") => Some(json!({ "id": format!("new-{n}"), "name": "New Dealer" })),
        (Verb::Post, "members") => {
            Some(json!({ "email": "newcomer@example.com", "role": "viewer" }))
        }
        (Verb::Patch, "{user}") => Some(json!({ "role": "operator" })),
        (Verb::Post, "api-tokens") => Some(json!({ "name": "ci", "role": "viewer" })),
        (Verb::Put, "credentials") => Some(json!({ "credentials": { "api_key": "new-key" } })),
        (Verb::Put, "schedule") => Some(json!({ "frequency": "daily" })),
        (Verb::Post, "resolve") if path.ends_with("/conflicts/resolve") => {
            Some(json!({ "conflicts": [BULK_CONFLICT], "choice": "keep_current" }))
        }
        (Verb::Post, "resolve") => Some(json!({ "choice": "take_incoming" })),
        (Verb::Post, "replay") if path.ends_with("/dead-letters/replay") => {
            Some(json!({ "all": true }))
        }
        (Verb::Post, "discard") => Some(json!({ "reason": "a test record" })),
        (Verb::Post, "connectors") => Some(connector_body(&format!("new-{n}"))),
        (Verb::Patch, "{connector}") => Some(json!({ "name": "Dealer CRM (renamed)" })),
        _ => None,
    }
}

/// Walks every endpoint × caller × tenant; returns the number of requests checked.
async fn walk(store: &ControlStore) -> usize {
    let w = world(store).await;

    // The registry and the table must list the same endpoints with the same needs.
    let table: Vec<(Verb, String, Need)> = EXPECTED
        .iter()
        .map(|(v, p, n, _)| (*v, p.to_string(), *n))
        .collect();
    let registry: Vec<(Verb, String, Need)> = w
        .endpoints
        .iter()
        .map(|e| (e.method, e.path.clone(), e.need))
        .collect();
    let unlisted: Vec<_> = registry.iter().filter(|e| !table.contains(e)).collect();
    let unregistered: Vec<_> = table.iter().filter(|e| !registry.contains(e)).collect();
    assert!(
        unlisted.is_empty(),
        "endpoints registered but not in the matrix's EXPECTED table (add them, with their need): {unlisted:?}"
    );
    assert!(
        unregistered.is_empty(),
        "endpoints in EXPECTED but not registered: {unregistered:?}"
    );

    let (acme, globex) = (t("acme"), t("globex"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for (verb, path, need, ok) in EXPECTED {
        let tenant_scoped = path.contains("{tenant}");
        for who in &w.callers {
            let places: &[(&TenantId, bool)] = if tenant_scoped {
                &[(&acme, true), (&globex, false)]
            } else {
                &[(&acme, true)]
            };
            for (tenant, own) in places {
                let uri = concrete(store, &w, *verb, path, tenant).await;
                let body = body_for(&w, *verb, path, checked);
                let audited_before = audit_len(store).await;
                let r = call(&w.router, *verb, &uri, &who.cred, body).await;
                let audited = audit_len(store).await - audited_before;
                let want = expected(*need, *ok, who, *own);
                checked += 1;
                let want_audited = match (r.status.is_success(), *verb, &who.cred) {
                    (false, _, _) => 0,
                    // Sensitive reads are audited too; the OAuth callback stores credentials.
                    (true, Verb::Get, _) => usize::from(
                        path.ends_with("/export")
                            || path.ends_with("/compliance-report")
                            || path.ends_with("/oauth/callback"),
                    ),
                    (true, Verb::Post, Cred::Bearer(_)) if path.ends_with("/logout") => 0,
                    (true, _, _) => 1,
                };
                if audited != want_audited {
                    failures.push(format!(
                        "{verb:?} {path} as {}: {audited} audit entries appended, want {want_audited}",
                        who.label
                    ));
                }
                if r.status.as_u16() != want {
                    failures.push(format!(
                        "{verb:?} {path} as {} in {} tenant: got {}, want {want}: {}",
                        who.label,
                        if *own { "own" } else { "other" },
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                } else if !r.status.is_success() {
                    let code = &r.json()["error"]["code"];
                    if !code.is_string() {
                        failures.push(format!(
                            "{verb:?} {path} as {}: error without the API's shape",
                            who.label
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    checked
}

async fn audit_len(store: &ControlStore) -> usize {
    store
        .list_audit(None, 0, i64::MAX, crate::store::audit::MAX_AUDIT_PAGE)
        .await
        .expect("audit")
        .len()
}

/// A credential secret unlike anything else in the store.
const SECRET: &str = "plaintext-secret-7f3a9c1e";

async fn credentials_never_leave_encrypted(h: &Harness) {
    let store = &h.store;
    let w = world(store).await;
    let admin = &w
        .callers
        .iter()
        .find(|c| c.label == "admin (session)")
        .expect("admin")
        .cred;
    configure(store, &t("acme"), "dms").await;
    let base = "/api/v1/tenants/acme/connectors/dms/credentials";
    let put = call(
        &w.router,
        Verb::Put,
        base,
        admin,
        Some(json!({ "credentials": { "client_secret": SECRET, "user": "svc" } })),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK);
    let mut bodies = vec![put.body];
    for path in [
        base.to_string(),
        "/api/v1/tenants/acme/audit".to_string(),
        "/api/v1/tenants/acme/audit/export?format=csv".to_string(),
        "/api/v1/tenants/acme/audit/export?format=json".to_string(),
        "/api/v1/me".to_string(),
        "/api/v1/tenants/acme/connectors".to_string(),
        "/api/v1/tenants/acme/connectors/dms".to_string(),
    ] {
        let r = call(&w.router, Verb::Get, &path, admin, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        bodies.push(r.body);
    }
    let audit = String::from_utf8_lossy(&bodies[2]).to_string();
    assert!(audit.contains("credentials.set"), "{audit}");
    for b in &bodies {
        assert!(
            !String::from_utf8_lossy(b).contains(SECRET),
            "a response carries the secret"
        );
    }
    // The store really holds it (decryptable), yet no byte of the database shows it.
    let stored = store
        .get_credentials(&t("acme"), "dms")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(stored.expose()["client_secret"], SECRET);
    let dump = h.raw_dump().await;
    for needle in [SECRET.as_bytes().to_vec(), hex::encode(SECRET).into_bytes()] {
        assert!(
            !dump.windows(needle.len()).any(|w| w == needle.as_slice()),
            "the raw store holds the plaintext secret"
        );
    }
}

fn cred_of<'a>(w: &'a World, label: &str) -> &'a Cred {
    &w.callers
        .iter()
        .find(|c| c.label == label)
        .expect("caller")
        .cred
}

fn error_of(r: &Resp) -> (u16, String, Option<String>) {
    let e = &r.json()["error"];
    (
        r.status.as_u16(),
        e["code"].as_str().unwrap_or("").to_string(),
        e["field"].as_str().map(str::to_string),
    )
}

async fn sessions_need_the_csrf_header_and_bearer_tokens_decide_alone(store: &ControlStore) {
    let w = world(store).await;
    let Cred::Session { cookie, csrf } = cred_of(&w, "owner (session)").clone() else {
        panic!("owner signs in with a session")
    };
    let sync = "/api/v1/tenants/acme/connectors/crm/sync";
    for presented in ["", "not-the-token"] {
        let no_csrf = Cred::Session {
            cookie: cookie.clone(),
            csrf: presented.to_string(),
        };
        let r = call(&w.router, Verb::Post, sync, &no_csrf, None).await;
        assert_eq!(error_of(&r), (403, "csrf_failed".into(), None));
        // Reads need no CSRF token.
        let r = call(&w.router, Verb::Get, "/api/v1/me", &no_csrf, None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let ok = Cred::Session {
        cookie: cookie.clone(),
        csrf: csrf.clone(),
    };
    assert_eq!(
        call(&w.router, Verb::Post, sync, &ok, None).await.status,
        StatusCode::ACCEPTED
    );
    // A bad bearer token is 401 even with a valid session cookie beside it.
    let r = w
        .router
        .clone()
        .oneshot(
            Request::builder()
                .method("GET")
                .uri("/api/v1/me")
                .header(header::COOKIE, format!("hub_session={cookie}"))
                .header(header::AUTHORIZATION, "Bearer hubt_forged")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for bad in [
        Cred::Bearer("hubt_forged".into()),
        Cred::Session {
            cookie: "hubs_forged".into(),
            csrf: csrf.clone(),
        },
    ] {
        let r = call(&w.router, Verb::Get, "/api/v1/me", &bad, None).await;
        assert_eq!(error_of(&r), (401, "unauthenticated".into(), None));
    }
    // A revoked token stops working at once.
    let tok = store
        .create_api_token(&t("acme"), Role::Viewer, "short-lived", 3_600_000, None)
        .await
        .expect("token");
    let bearer = Cred::Bearer(tok.token.expose().clone());
    assert_eq!(
        call(&w.router, Verb::Get, "/api/v1/me", &bearer, None)
            .await
            .status,
        StatusCode::OK
    );
    let revoke = format!("/api/v1/tenants/acme/api-tokens/{}", tok.info.id);
    assert_eq!(
        call(&w.router, Verb::Delete, &revoke, &ok, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&w.router, Verb::Get, "/api/v1/me", &bearer, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Signing out ends the session.
    assert_eq!(
        call(&w.router, Verb::Post, "/api/v1/auth/logout", &ok, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&w.router, Verb::Get, "/api/v1/me", &ok, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn sign_in_is_throttled_and_names_wrong_fields(store: &ControlStore) {
    let w = world(store).await;
    let login = "/api/v1/auth/login";
    let r = call(
        &w.router,
        Verb::Post,
        login,
        &Cred::Nobody,
        Some(json!({ "email": "x@y.z" })),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("password".into()))
    );
    let r = w
        .router
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri(login)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let wrong = json!({ "email": "viewer@acme.example", "password": "not the password" });
    for _ in 0..store.settings().login_max_failures {
        let r = call(
            &w.router,
            Verb::Post,
            login,
            &Cred::Nobody,
            Some(wrong.clone()),
        )
        .await;
        assert_eq!(error_of(&r), (401, "invalid_credentials".into(), None));
    }
    // Locked now, even with the right password.
    let right = json!({ "email": "viewer@acme.example", "password": PASSWORD });
    let r = call(&w.router, Verb::Post, login, &Cred::Nobody, Some(right)).await;
    assert_eq!(error_of(&r), (429, "throttled".into(), None));
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    assert!(!String::from_utf8_lossy(&r.body).contains("viewer@acme.example"));
}

async fn roles_cannot_be_escalated_and_input_errors_name_the_field(store: &ControlStore) {
    let w = world(store).await;
    let admin = cred_of(&w, "admin (session)");
    let owner = cred_of(&w, "owner (session)");
    let members = "/api/v1/tenants/acme/members";
    let r = call(
        &w.router,
        Verb::Post,
        members,
        admin,
        Some(json!({ "email": "newcomer@example.com", "role": "owner" })),
    )
    .await;
    assert_eq!(error_of(&r).0, 403);
    let r = call(
        &w.router,
        Verb::Post,
        "/api/v1/tenants/acme/api-tokens",
        admin,
        Some(json!({ "name": "root", "role": "owner" })),
    )
    .await;
    assert_eq!(error_of(&r).0, 403);
    let owner_id = store
        .find_user_by_email("owner@acme.example")
        .await
        .expect("read")
        .expect("owner")
        .id;
    let owner_member = format!("{members}/{}", owner_id.0);
    let r = call(
        &w.router,
        Verb::Patch,
        &owner_member,
        admin,
        Some(json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(error_of(&r).0, 403, "an admin may not demote an owner");
    let r = call(&w.router, Verb::Delete, &owner_member, owner, None).await;
    assert_eq!(error_of(&r), (409, "last_owner".into(), None));
    let r = call(
        &w.router,
        Verb::Post,
        members,
        owner,
        Some(json!({ "email": "newcomer@example.com", "role": "root" })),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("role".into()))
    );
    let r = call(
        &w.router,
        Verb::Put,
        "/api/v1/tenants/acme/connectors/crm/schedule",
        admin,
        Some(json!({ "frequency": "sometimes" })),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("frequency".into()))
    );
    let r = call(
        &w.router,
        Verb::Put,
        "/api/v1/tenants/acme/connectors/crm/credentials",
        admin,
        Some(json!({ "credentials": "a string" })),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("credentials".into()))
    );
    let platform = cred_of(&w, "platform admin");
    let r = call(
        &w.router,
        Verb::Post,
        "/api/v1/tenants",
        platform,
        Some(json!({ "id": "Not Valid", "name": "x" })),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("id".into()))
    );
    let r = call(
        &w.router,
        Verb::Post,
        "/api/v1/tenants",
        platform,
        Some(json!({ "id": "acme", "name": "x" })),
    )
    .await;
    assert_eq!(error_of(&r).0, 409);
    let huge = "x".repeat(super::MAX_BODY_BYTES + 1);
    let r = call(
        &w.router,
        Verb::Put,
        "/api/v1/tenants/acme/connectors/crm/credentials",
        admin,
        Some(json!({ "credentials": { "blob": huge } })),
    )
    .await;
    assert_eq!(error_of(&r), (413, "body_too_large".into(), None));
    let r = call(&w.router, Verb::Get, "/api/v1/no-such-thing", admin, None).await;
    assert_eq!(error_of(&r).1, "not_found");
    let r = call(&w.router, Verb::Delete, "/api/v1/me", admin, None).await;
    assert_eq!(error_of(&r), (405, "method_not_allowed".into(), None));
}

async fn another_tenants_objects_answer_404_through_ones_own_tenant(store: &ControlStore) {
    let w = world(store).await;
    let owner = cred_of(&w, "owner (session)");
    let globex = t("globex");
    let job = store.sync_now(&globex, "crm").await.expect("job");
    let tok = store
        .create_api_token(&globex, Role::Viewer, "theirs", 3_600_000, None)
        .await
        .expect("token");
    let their_owner = store
        .find_user_by_email("owner@globex.example")
        .await
        .expect("read")
        .expect("user")
        .id;
    let cases = [
        (
            Verb::Get,
            format!("/api/v1/tenants/acme/jobs/{}", job.id),
            None,
        ),
        (
            Verb::Post,
            format!("/api/v1/tenants/acme/jobs/{}/cancel", job.id),
            None,
        ),
        (
            Verb::Delete,
            format!("/api/v1/tenants/acme/api-tokens/{}", tok.info.id),
            None,
        ),
        (
            Verb::Patch,
            format!("/api/v1/tenants/acme/members/{}", their_owner.0),
            Some(json!({ "role": "viewer" })),
        ),
        (
            Verb::Delete,
            format!("/api/v1/tenants/acme/members/{}", their_owner.0),
            None,
        ),
    ];
    for (verb, path, body) in cases {
        let r = call(&w.router, verb, &path, owner, body).await;
        assert_eq!(error_of(&r).0, 404, "{verb:?} {path}");
    }
    // Untouched.
    let job = store
        .get_job(&globex, &job.id)
        .await
        .expect("read")
        .expect("job");
    assert_eq!(job.status.as_str(), "pending");
    // A finished job cannot be cancelled again: 409.
    let cancel = format!("/api/v1/tenants/globex/jobs/{}/cancel", job.id);
    let platform = cred_of(&w, "platform admin");
    assert_eq!(
        call(&w.router, Verb::Post, &cancel, platform, None)
            .await
            .status,
        StatusCode::OK
    );
    let r = call(&w.router, Verb::Post, &cancel, platform, None).await;
    assert_eq!(error_of(&r), (409, "job_finished".into(), None));
    // A tenant that does not exist is 404 for the platform admin too.
    let r = call(
        &w.router,
        Verb::Get,
        "/api/v1/tenants/nowhere/jobs",
        platform,
        None,
    )
    .await;
    assert_eq!(error_of(&r).0, 404);
}

async fn changes_are_audited_with_actor_target_and_client_address(store: &ControlStore) {
    let w = world(store).await;
    let router = w
        .router
        .clone()
        .layer(axum::extract::connect_info::MockConnectInfo(
            std::net::SocketAddr::from(([192, 0, 2, 7], 40_000)),
        ));
    let Cred::Bearer(token) = cred_of(&w, "operator (API token)").clone() else {
        panic!("operator token")
    };
    let r = call(
        &router,
        Verb::Post,
        "/api/v1/tenants/acme/connectors/crm/sync",
        &Cred::Bearer(token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let entries = store
        .list_audit(Some(&t("acme")), 0, i64::MAX, 100)
        .await
        .expect("audit");
    let e = entries.last().expect("an entry");
    assert_eq!(e.action, "job.sync_now");
    assert_eq!(e.target, "connector/crm");
    assert!(e.actor.starts_with("token:"), "{}", e.actor);
    assert_eq!(e.client_addr.as_deref(), Some("192.0.2.7"));
    assert!(store.verify_audit().await.expect("verify").is_intact());
}

async fn over_tls_the_cookie_is_secure_and_host_prefixed(store: &ControlStore) {
    let router = api(
        store.clone(),
        ApiConfig {
            tls: true,
            ..Default::default()
        },
    )
    .router;
    user(store, "tls@acme.example", false).await;
    let r = call(
        &router,
        Verb::Post,
        "/api/v1/auth/login",
        &Cred::Nobody,
        Some(json!({ "email": "tls@acme.example", "password": PASSWORD })),
    )
    .await;
    let set_cookie = r
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        set_cookie.starts_with("__Host-hub_session=hubs_"),
        "{set_cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} missing");
    }
    let pair = set_cookie.split(';').next().unwrap_or("").to_string();
    let me = |cookie: String| {
        let router = router.clone();
        async move {
            router
                .oneshot(
                    Request::builder()
                        .uri("/api/v1/me")
                        .header(header::COOKIE, cookie)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("infallible")
                .status()
        }
    };
    assert_eq!(me(format!("theme=dark; {pair}")).await, StatusCode::OK);
    // The plain-HTTP cookie name is not accepted over TLS.
    let plain = pair.replacen("__Host-", "", 1);
    assert_eq!(me(plain).await, StatusCode::UNAUTHORIZED);
}

/// The compliance report over HTTP: who has access (the token asking is live and just used),
/// audited before it leaves, listed among the data exports of the next one; bad periods and
/// unknown parameters name the field.
async fn the_compliance_report_shows_access_and_is_audited(store: &ControlStore) {
    let w = world(store).await;
    let admin = cred_of(&w, "admin (API token)");
    let path = "/api/v1/tenants/acme/compliance-report";
    let r = call(&w.router, Verb::Get, path, admin, None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let report = r.json();
    assert_eq!(report["tenant"], "acme");
    let members: Vec<&str> = report["access"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["email"].as_str())
        .collect();
    for role in Role::ALL {
        assert!(
            members.contains(&format!("{role}@acme.example").as_str()),
            "{members:?}"
        );
    }
    assert!(!members.contains(&"owner@globex.example"));
    let tokens = report["access"]["api_tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 4, "one live token per role: {tokens:?}");
    let used: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["last_used_at_ms"].is_i64())
        .collect();
    assert_eq!(
        used.len(),
        1,
        "the admin token asking was just used: {tokens:?}"
    );
    assert_eq!(used[0]["role"], "admin");
    assert_eq!(report["credentials"][0]["connector"], "crm");
    assert!(
        report["access"]["platform_admins"]
            .as_array()
            .expect("admins")
            .len()
            == 1
    );
    assert!(report["master_key"]["data_key"]["master_key_version"].is_i64());
    // Nothing secret: no token, no credential.
    assert!(!String::from_utf8_lossy(&r.body).contains("hubt_"));

    let entries = store
        .list_audit(Some(&t("acme")), 0, i64::MAX, 1000)
        .await
        .expect("audit");
    let e = entries.last().expect("an entry");
    assert_eq!(
        (e.action.as_str(), e.target.as_str()),
        ("compliance.report", "compliance-report/acme")
    );
    assert!(e.actor.starts_with("token:"), "{}", e.actor);

    let again = call(&w.router, Verb::Get, path, admin, None).await.json();
    let exports = again["data_exports"].as_array().expect("exports");
    assert_eq!(exports.len(), 2, "{exports:?}");
    assert_eq!(exports[0]["action"], "compliance.report");

    let bad = format!("{path}?from_ms=10&to_ms=5");
    let r = call(&w.router, Verb::Get, &bad, admin, None).await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("from_ms".into()))
    );
    let unknown = format!("{path}?since=yesterday");
    assert_eq!(
        call(&w.router, Verb::Get, &unknown, admin, None)
            .await
            .status
            .as_u16(),
        422
    );
}

/// The OpenAPI document as served: public, JSON, OpenAPI 3.x; it lists exactly the registry's
/// endpoints (method + path template), every error response references the one error
/// schema, and every endpoint needing a caller names the two security schemes.
async fn openapi_documents_every_endpoint_and_one_error_shape(store: &ControlStore) {
    let built = api(store.clone(), ApiConfig::default());
    let r = call(
        &built.router,
        Verb::Get,
        "/api/v1/openapi.json",
        &Cred::Nobody,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let ctype = r.headers.get(header::CONTENT_TYPE).expect("content type");
    assert_eq!(ctype, "application/json");
    let doc: Value = serde_json::from_slice(&r.body).expect("the document is JSON");
    assert_eq!(
        doc,
        serde_json::to_value(openapi()).expect("serializable"),
        "the served document is api::openapi()"
    );
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "openapi {version}");

    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if ![
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                continue;
            }
            documented.push((method.to_uppercase(), path.clone()));
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                // 101: the WebSocket's success is the switch of protocols.
                responses.keys().any(|s| s.starts_with('2') || s == "101"),
                "{method} {path}: no success response"
            );
            for (status, resp) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &resp["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}: the error response must reference the one error schema"
                    );
                }
            }
            let secured = op["security"].as_array().is_some_and(|s| {
                s.iter().any(|x| x.get("bearerAuth").is_some())
                    && s.iter().any(|x| x.get("sessionCookie").is_some())
            });
            let csrf = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == super::auth::CSRF_HEADER && p["in"] == "header")
            });
            let endpoint = built
                .endpoints
                .iter()
                .find(|e| e.path == *path && e.method.method().as_str() == method.to_uppercase());
            if let Some(e) = endpoint {
                let public = e.need == Need::Public;
                assert_eq!(secured, !public, "{method} {path}: security schemes");
                assert_eq!(
                    csrf,
                    !public && e.method != Verb::Get,
                    "{method} {path}: the CSRF header parameter"
                );
            }
        }
    }
    let registered: Vec<(String, String)> = built
        .endpoints
        .iter()
        .map(|e| (e.method.method().as_str().to_string(), e.path.clone()))
        .collect();
    let undocumented: Vec<_> = registered
        .iter()
        .filter(|e| !documented.contains(e))
        .collect();
    let unregistered: Vec<_> = documented
        .iter()
        .filter(|e| !registered.contains(e))
        .collect();
    assert!(
        undocumented.is_empty(),
        "endpoints registered without a #[utoipa::path] listed in ApiDoc: {undocumented:?}"
    );
    assert!(
        unregistered.is_empty(),
        "endpoints in the OpenAPI document but not registered: {unregistered:?}"
    );
    assert_eq!(documented.len(), EXPECTED.len());

    let schemas = &doc["components"]["schemas"];
    let error = &schemas["ErrorBody"];
    assert_eq!(error["required"], json!(["error"]));
    let detail = &schemas["ErrorDetail"];
    assert_eq!(detail["required"], json!(["code", "message"]));
    assert!(detail["properties"]["field"].is_object());
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["type"], "http");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["sessionCookie"]["type"], "apiKey");
    assert_eq!(schemes["sessionCookie"]["in"], "cookie");

    // An actual error answers in the documented shape: exactly `error` with code and message.
    let r = call(&built.router, Verb::Get, "/api/v1/me", &Cred::Nobody, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let body = r.json();
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["error"]);
    let mut fields: Vec<&String> = body["error"].as_object().expect("object").keys().collect();
    fields.sort();
    assert_eq!(fields, ["code", "message"]);
}

mod connectors;

on_both_backends! {
    async fn openapi_documents_every_endpoint(h) {
        openapi_documents_every_endpoint_and_one_error_shape(&h.store).await;
    }

    async fn every_endpoint_answers_every_caller_exactly(h) {
        let checked = walk(&h.store).await;
        // Each endpoint once per caller, a tenant-scoped one twice (own and other tenant).
        let scoped = EXPECTED.iter().filter(|e| matches!(e.2, Need::Tenant(_))).count();
        assert_eq!(checked, (EXPECTED.len() + scoped) * 10);
    }

    async fn saved_credentials_appear_in_no_response_and_nowhere_in_the_raw_store(h) {
        credentials_never_leave_encrypted(h).await;
    }

    async fn csrf_and_bearer_rules(h) {
        sessions_need_the_csrf_header_and_bearer_tokens_decide_alone(&h.store).await;
    }

    async fn login_throttling_and_field_errors(h) {
        sign_in_is_throttled_and_names_wrong_fields(&h.store).await;
    }

    async fn no_escalation_and_named_fields(h) {
        roles_cannot_be_escalated_and_input_errors_name_the_field(&h.store).await;
    }

    async fn other_tenants_objects_are_404(h) {
        another_tenants_objects_answer_404_through_ones_own_tenant(&h.store).await;
    }

    async fn tls_session_cookie(h) {
        over_tls_the_cookie_is_secure_and_host_prefixed(&h.store).await;
    }

    async fn compliance_report_over_http(h) {
        the_compliance_report_shows_access_and_is_audited(&h.store).await;
    }

    async fn audit_entries_carry_who_what_and_where(h) {
        changes_are_audited_with_actor_target_and_client_address(&h.store).await;
    }

    async fn the_desk_shows_resolves_replays_and_discards(h) {
        super::desk_tests::the_desk_shows_resolves_replays_and_discards(&h.store).await;
    }

    async fn without_a_gateway_the_desk_reads_but_does_not_act(h) {
        super::desk_tests::without_a_gateway_the_desk_reads_but_does_not_act(&h.store).await;
    }
    async fn a_tenant_over_its_api_limit_gets_429_and_others_do_not(h) {
        api_requests_are_limited_per_tenant_after_the_access_check(&h.store).await;
    }

    async fn api_usage_reports_limits_remaining_warning_and_history(h) {
        api_usage_adds_up_nodes_and_prefers_the_vendors_count(&h.store).await;
    }
}

async fn api_requests_are_limited_per_tenant_after_the_access_check(store: &ControlStore) {
    let router = api(
        store.clone(),
        ApiConfig {
            tenant_requests_per_s: 1,
            tenant_burst: 3,
            caller_requests_per_s: 1,
            caller_burst: 2,
            ..Default::default()
        },
    )
    .router;
    let (acme, globex) = (t("acme"), t("globex"));
    store
        .create_tenant(&acme, "Acme Motors")
        .await
        .expect("acme");
    store
        .create_tenant(&globex, "Globex")
        .await
        .expect("globex");
    let ann = user(store, "ann@acme.example", false).await;
    store
        .set_membership(&ann, &acme, Role::Viewer)
        .await
        .expect("member");
    let ann = sign_in(&router, "ann@acme.example").await;
    let boss = user(store, "boss@hub.example", true).await;
    let _ = boss;
    let boss = sign_in(&router, "boss@hub.example").await;

    // Another tenant's path answers 404 however often: its allowance is not the caller's.
    for _ in 0..5 {
        let r = call(&router, Verb::Get, "/api/v1/tenants/globex", &ann, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    for _ in 0..3 {
        let r = call(&router, Verb::Get, "/api/v1/tenants/acme", &ann, None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // The tenant's allowance is shared by its callers.
    let r = call(&router, Verb::Get, "/api/v1/tenants/acme/jobs", &boss, None).await;
    assert_eq!(error_of(&r), (429, "rate_limited".into(), None));
    let wait: i64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=1).contains(&wait), "Retry-After {wait}");
    // Globex is untouched.
    let r = call(&router, Verb::Get, "/api/v1/tenants/globex", &boss, None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Tenant-less endpoints count per caller.
    for _ in 0..2 {
        assert_eq!(
            call(&router, Verb::Get, "/api/v1/me", &ann, None)
                .await
                .status,
            StatusCode::OK
        );
    }
    let r = call(&router, Verb::Get, "/api/v1/me", &ann, None).await;
    assert_eq!(error_of(&r), (429, "rate_limited".into(), None));
    assert_eq!(
        call(&router, Verb::Get, "/api/v1/me", &boss, None)
            .await
            .status,
        StatusCode::OK
    );
    // Unauthenticated requests are refused before any allowance is spent.
    let r = call(&router, Verb::Get, "/api/v1/me", &Cred::Nobody, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn api_usage_adds_up_nodes_and_prefers_the_vendors_count(store: &ControlStore) {
    use crate::store::usage::UsageAdd;
    let router = api(store.clone(), ApiConfig::default()).router;
    let acme = t("acme");
    store
        .create_tenant(&acme, "Acme Motors")
        .await
        .expect("acme");
    store
        .create_tenant(&t("globex"), "Globex")
        .await
        .expect("globex");
    let viewer = user(store, "viewer@acme.example", false).await;
    store
        .set_membership(&viewer, &acme, Role::Viewer)
        .await
        .expect("member");
    let viewer = sign_in(&router, "viewer@acme.example").await;
    // 2026-11-27T12:00Z.
    store.pin_clock_ms(1_795_780_800_000);
    let add = |connector: &str, vendor: &str, day: &str, calls: i64| UsageAdd {
        tenant: acme.clone(),
        connector: connector.into(),
        day: day.into(),
        vendor: vendor.into(),
        calls,
        daily_limit: 1000,
        window_limit: (vendor == "hubspot").then_some(100),
        window_seconds: 10,
        warn_percent: 20,
        vendor_used: None,
        vendor_limit: None,
    };
    // Two nodes' calls add up.
    assert_eq!(
        store
            .add_api_usage(&add("hs", "hubspot", "2026-11-27", 500))
            .await
            .unwrap(),
        500
    );
    assert_eq!(
        store
            .add_api_usage(&add("hs", "hubspot", "2026-11-27", 350))
            .await
            .unwrap(),
        850
    );
    store
        .add_api_usage(&add("hs", "hubspot", "2026-11-26", 120))
        .await
        .unwrap();
    // Salesforce reported its own count: it wins over the hub's.
    store
        .add_api_usage(&UsageAdd {
            vendor_used: Some(40_000),
            vendor_limit: Some(115_000),
            ..add("sf", "salesforce", "2026-11-27", 10)
        })
        .await
        .unwrap();
    // A zero delta without a report keeps the last report.
    store
        .add_api_usage(&add("sf", "salesforce", "2026-11-27", 0))
        .await
        .unwrap();
    // Another tenant's usage never shows.
    store
        .add_api_usage(&UsageAdd {
            tenant: t("globex"),
            ..add("hs", "hubspot", "2026-11-27", 7)
        })
        .await
        .unwrap();
    // Outside the default 30 days.
    store
        .add_api_usage(&add("hs", "hubspot", "2026-10-01", 5))
        .await
        .unwrap();

    let r = call(
        &router,
        Verb::Get,
        "/api/v1/tenants/acme/api-usage",
        &viewer,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let v = r.json();
    assert_eq!(v["today"], "2026-11-27");
    assert_eq!(v["from"], "2026-10-29");
    let cs = v["connectors"].as_array().expect("connectors");
    assert_eq!(cs.len(), 2);
    let hs = &cs[0];
    assert_eq!(hs["connector"], "hs");
    assert_eq!(hs["vendor"], "hubspot");
    assert_eq!(hs["limits"]["daily"], 1000);
    assert_eq!(hs["limits"]["per_window"], 100);
    assert_eq!(hs["today"]["used"], 850);
    assert_eq!(hs["today"]["remaining"], 150);
    assert_eq!(hs["today"]["percent_used"], 85.0);
    assert_eq!(
        hs["today"]["warning"], true,
        "150 of 1000 left is under 20 %"
    );
    let days: Vec<&str> = hs["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|d| d["day"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(days, ["2026-11-26", "2026-11-27"]);
    assert_eq!(hs["history"][0]["warning"], false);
    let sf = &cs[1];
    assert_eq!(sf["connector"], "sf");
    assert_eq!(sf["today"]["calls"], 10);
    assert_eq!(sf["today"]["used"], 40_000);
    assert_eq!(sf["today"]["vendor_reported"], true);
    assert_eq!(sf["limits"]["daily"], 115_000);
    assert_eq!(sf["limits"]["per_window"], Value::Null);
    assert_eq!(sf["today"]["warning"], false);

    // One connector, an explicit range.
    let r = call(
        &router,
        Verb::Get,
        "/api/v1/tenants/acme/api-usage?connector=hs&from=2026-10-01&to=2026-10-31",
        &viewer,
        None,
    )
    .await;
    let v = r.json();
    let cs = v["connectors"].as_array().expect("connectors");
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        cs[0]["today"]["used"], 850,
        "today is today whatever the range"
    );

    for (query, field) in [
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("from=2026-11-27&to=2026-11-01", "from"),
        ("from=2020-01-01&to=2026-11-01", "from"),
    ] {
        let r = call(
            &router,
            Verb::Get,
            &format!("/api/v1/tenants/acme/api-usage?{query}"),
            &viewer,
            None,
        )
        .await;
        assert_eq!(
            error_of(&r),
            (422, "invalid_input".into(), Some(field.into())),
            "{query}"
        );
    }
    let r = call(
        &router,
        Verb::Get,
        "/api/v1/tenants/globex/api-usage",
        &viewer,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

mod desk_tests;
