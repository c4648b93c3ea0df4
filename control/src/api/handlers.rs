//! The endpoints: each parses and validates its input, calls the store, appends the audit
//! entry for a change, and shapes the answer. Access was already decided by the guard.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::auth::{Authed, ClientAddr};
use super::error::{ApiError, ErrorBody, ErrorDetail, JsonBody, bad_path, bad_query};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::cookie::{cleared_session_cookie, session_cookie};
use crate::auth::{Principal, Role, TenantId, UserId};
use crate::error::ControlError;
use crate::masking::mask_text;
use crate::secret::Secret;
use crate::store::api_tokens::ApiTokenInfo;
use crate::store::audit::AuditEntry;
use crate::store::credentials::CredentialInfo;
use crate::store::identity::Tenant;
use crate::store::jobs::{Frequency, Schedule, SyncJob};

pub(super) type ApiResult<T = Response> = Result<T, ApiError>;

/// Default lifetime of an API token when the request names none: 90 days.
const DEFAULT_TOKEN_TTL_MS: i64 = 90 * 24 * 3600 * 1000;

pub(super) fn register(r: Routes) -> Routes {
    use Need::{Authenticated, Platform, Public, Tenant as T};
    use Role::{Admin, Operator, Viewer};
    let r = super::usage::register(super::compliance::register(super::analytics::register(
        super::monitor::register(r),
    )))
    .add(Verb::Post, "/auth/login", Public, login)
    .add(Verb::Post, "/auth/logout", Authenticated, logout)
    .add(Verb::Get, "/me", Authenticated, me)
    .add(Verb::Get, "/tenants", Platform, list_tenants)
    .add(Verb::Post, "/tenants", Platform, create_tenant)
    .add(Verb::Get, "/tenants/{tenant}", T(Viewer), get_tenant)
    .add(
        Verb::Get,
        "/tenants/{tenant}/members",
        T(Admin),
        list_members,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/members",
        T(Admin),
        add_member,
    )
    .add(
        Verb::Patch,
        "/tenants/{tenant}/members/{user}",
        T(Admin),
        change_member,
    )
    .add(
        Verb::Delete,
        "/tenants/{tenant}/members/{user}",
        T(Admin),
        remove_member,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/api-tokens",
        T(Admin),
        list_tokens,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/api-tokens",
        T(Admin),
        create_token,
    )
    .add(
        Verb::Delete,
        "/tenants/{tenant}/api-tokens/{token}",
        T(Admin),
        revoke_token,
    )
    .add(
        Verb::Put,
        "/tenants/{tenant}/connectors/{connector}/credentials",
        T(Admin),
        put_credentials,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/connectors/{connector}/credentials",
        T(Operator),
        get_credentials,
    )
    .add(Verb::Get, "/tenants/{tenant}/audit", T(Admin), list_audit)
    .add(
        Verb::Get,
        "/tenants/{tenant}/audit/export",
        T(Admin),
        export_audit,
    )
    .add(Verb::Get, "/tenants/{tenant}/jobs", T(Viewer), list_jobs)
    .add(
        Verb::Get,
        "/tenants/{tenant}/jobs/{job}",
        T(Viewer),
        get_job,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/jobs/{job}/cancel",
        T(Operator),
        cancel_job,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/connectors/{connector}/sync",
        T(Operator),
        sync_now,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/connectors/{connector}/schedule",
        T(Admin),
        get_schedule,
    )
    .add(
        Verb::Put,
        "/tenants/{tenant}/connectors/{connector}/schedule",
        T(Admin),
        put_schedule,
    )
    .add(Verb::Get, "/openapi.json", Public, openapi_json);
    super::connectors::register(super::desk::register(r))
}

// ---- the OpenAPI document ------------------------------------------------------------------

/// The API's OpenAPI 3.1 document: every handler's `#[utoipa::path]`, listed here. A route
/// registered without being listed fails `api::tests::openapi_documents_every_endpoint`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AutoMatrix Integration Hub control API",
        description = "The control plane's REST API. Errors answer one shape everywhere: \
            `{\"error\": {\"code\", \"message\", \"field\"?}}`. Authenticate with a bearer API \
            token, or with the session cookie from sign-in plus the `x-csrf-token` header on \
            every non-GET request."
    ),
    paths(
        login,
        logout,
        me,
        list_tenants,
        create_tenant,
        get_tenant,
        list_members,
        add_member,
        change_member,
        remove_member,
        list_tokens,
        create_token,
        revoke_token,
        put_credentials,
        get_credentials,
        list_audit,
        export_audit,
        list_jobs,
        get_job,
        cancel_job,
        sync_now,
        get_schedule,
        put_schedule,
        super::compliance::compliance_report,
        super::usage::api_usage,
        openapi_json,
        super::monitor::sync_monitor,
        super::analytics::analytics,
        super::desk::list_conflicts,
        super::desk::get_conflict,
        super::desk::resolve_conflict,
        super::desk::resolve_conflicts,
        super::desk::list_dead_letters,
        super::desk::get_dead_letter,
        super::desk::replay_dead_letter,
        super::desk::replay_dead_letters,
        super::desk::discard_dead_letter,
        super::connectors::list_connectors,
        super::connectors::create_connector,
        super::connectors::get_connector,
        super::connectors::patch_connector,
        super::connectors::delete_connector,
        super::connectors::enable_connector,
        super::connectors::disable_connector,
        super::connectors::test_connector,
        super::connectors::oauth_start,
        super::connectors::oauth_callback,
    ),
    components(schemas(ErrorBody, ErrorDetail, crate::events::SyncEvent)),
    modifiers(&SecuritySchemes, &RateLimited)
)]
pub(super) struct ApiDoc;

/// Adds the two ways to authenticate: `bearerAuth` (an API token) and `sessionCookie`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "sessionCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::cookie::session_cookie_name(false),
                "The session cookie set by sign-in (`__Host-hub_session` over TLS); \
                 non-GET requests also need the `x-csrf-token` header",
            ))),
        );
    }
}

/// Every authenticated operation may answer `429 rate_limited` (the guard's per-tenant and
/// per-caller limits): added here once rather than on each handler, so none can miss it.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.is_none() || op.responses.responses.contains_key("429") {
                    continue;
                }
                let response = ResponseBuilder::new()
                    .description(
                        "Too many requests for this tenant (or caller); retry after \
                         `Retry-After` seconds",
                    )
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build();
                op.responses.responses.insert("429".into(), response.into());
            }
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "openapi",
    responses(
        (status = 200, description = "This API's OpenAPI 3.1 document", body = Object),
    ),
)]
async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

// ---- helpers -------------------------------------------------------------------------------

pub(super) fn tenant_id(raw: &str) -> ApiResult<TenantId> {
    TenantId::new(raw).map_err(|_| ApiError::not_found("the tenant"))
}

pub(super) async fn audit(
    state: &ApiState,
    who: &Authed,
    tenant: Option<&TenantId>,
    action: &str,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
) -> ApiResult<()> {
    state
        .store
        .append_audit(AuditEntry {
            actor: who.actor(),
            tenant: tenant.cloned(),
            action: action.to_string(),
            target,
            before,
            after,
            client_addr: Some(who.client_addr.clone()),
        })
        .await?;
    Ok(())
}

/// The highest role the caller may hand out in `tenant`: its own (owner for a platform admin).
fn grantable(who: &Authed, tenant: &TenantId) -> Option<Role> {
    if who.caller.platform_admin {
        Some(Role::Owner)
    } else {
        who.caller.role_in(tenant)
    }
}

fn parse_role(raw: &str) -> ApiResult<Role> {
    raw.parse::<Role>().map_err(ApiError::from)
}

// ---- views (what responses show; never a secret) ------------------------------------------

#[derive(Serialize, ToSchema)]
struct TenantView {
    id: String,
    name: String,
    created_at_ms: i64,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id.to_string(),
            name: t.name,
            created_at_ms: t.created_at_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct TokenView {
    id: String,
    tenant: String,
    #[schema(value_type = String)]
    role: Role,
    name: String,
    created_by: Option<String>,
    created_at_ms: i64,
    expires_at_ms: i64,
    revoked_at_ms: Option<i64>,
    last_used_at_ms: Option<i64>,
}

impl From<ApiTokenInfo> for TokenView {
    fn from(t: ApiTokenInfo) -> Self {
        TokenView {
            id: t.id,
            tenant: t.tenant.to_string(),
            role: t.role,
            name: t.name,
            created_by: t.created_by.map(|u| u.0),
            created_at_ms: t.created_at_ms,
            expires_at_ms: t.expires_at_ms,
            revoked_at_ms: t.revoked_at_ms,
            last_used_at_ms: t.last_used_at_ms,
        }
    }
}

pub(super) fn credential_view(c: &CredentialInfo) -> Value {
    json!({
        "connector": c.connector,
        "key_version": c.key_version,
        "created_at_ms": c.created_at_ms,
        "rotated_at_ms": c.rotated_at_ms,
        "rotations": c.rotations,
    })
}

fn job_view(j: &SyncJob) -> Value {
    json!({
        "id": j.id,
        "tenant": j.tenant.as_str(),
        "connector": j.connector,
        "trigger": j.trigger.as_str(),
        "slot_ms": j.slot_ms,
        "status": j.status.as_str(),
        "progress_pct": j.progress_pct,
        "records_processed": j.records_processed,
        "records_failed": j.records_failed,
        "records_dead_lettered": j.records_dead_lettered,
        "created_at_ms": j.created_at_ms,
        "started_at_ms": j.started_at_ms,
        "finished_at_ms": j.finished_at_ms,
        "error": j.error.as_deref().map(mask_text),
        "node": j.node,
        "attempts": j.attempts,
    })
}

fn schedule_view(s: &Schedule) -> Value {
    json!({
        "connector": s.connector,
        "frequency": s.frequency.as_str(),
        "next_due_ms": s.next_due_ms,
    })
}

// ---- sign-in -------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in: the session cookie is set; the answer carries the CSRF token", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins; see `Retry-After`", body = ErrorBody),
    ),
)]
async fn login(
    State(state): State<ApiState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult {
    if body.email.trim().is_empty() {
        return Err(ApiError::invalid("email", "is required"));
    }
    if body.password.is_empty() {
        return Err(ApiError::invalid("password", "is required"));
    }
    let session = state
        .store
        .login(&body.email, &Secret::new(body.password), &addr)
        .await?;
    let who = Authed {
        caller: crate::auth::Caller {
            principal: Principal::User(session.user_id.clone()),
            platform_admin: false,
            roles: BTreeMap::new(),
        },
        session_token: None,
        client_addr: addr,
    };
    audit(
        &state,
        &who,
        None,
        "session.login",
        format!("user/{}", session.user_id),
        None,
        None,
    )
    .await?;
    let ttl = session.expires_at_ms - state.store.now_ms();
    let cookie = session_cookie(session.token.expose(), ttl, state.config.tls);
    let mut resp = Json(json!({
        "user_id": session.user_id.0,
        "csrf_token": session.csrf_token,
        "expires_at_ms": session.expires_at_ms,
    }))
    .into_response();
    let value = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::from(ControlError::Config("session cookie header".to_string())))?;
    resp.headers_mut().insert(header::SET_COOKIE, value);
    Ok(resp)
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    params(
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 204, description = "Signed out; the session cookie is cleared"),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn logout(State(state): State<ApiState>, Extension(who): Extension<Authed>) -> ApiResult {
    if let Some(token) = &who.session_token
        && state.store.logout(token.expose()).await?
    {
        audit(
            &state,
            &who,
            None,
            "session.logout",
            who.actor().replacen(':', "/", 1),
            None,
            None,
        )
        .await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cleared_session_cookie(state.config.tls)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "me",
    responses(
        (status = 200, description = "The caller: kind, id, e-mail, platform admin flag, roles by tenant", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn me(State(state): State<ApiState>, Extension(who): Extension<Authed>) -> ApiResult {
    let (kind, id, email) = match &who.caller.principal {
        Principal::User(u) => {
            let email = state.store.get_user(u).await?.map(|u| u.email);
            ("user", u.0.clone(), email)
        }
        Principal::ApiToken(id) => ("api_token", id.clone(), None),
    };
    let roles: BTreeMap<String, Role> = who
        .caller
        .roles
        .iter()
        .map(|(t, r)| (t.to_string(), *r))
        .collect();
    Ok(Json(json!({
        "kind": kind,
        "id": id,
        "email": email,
        "platform_admin": who.caller.platform_admin,
        "roles": roles,
    }))
    .into_response())
}

// ---- tenants -------------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    tag = "tenants",
    responses(
        (status = 200, description = "Every tenant, as `{\"tenants\": [...]}`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn list_tenants(State(state): State<ApiState>) -> ApiResult {
    let tenants: Vec<TenantView> = state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "tenants": tenants })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTenantBody {
    id: String,
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "tenants",
    request_body = NewTenantBody,
    params(
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 201, description = "The tenant, created", body = TenantView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn create_tenant(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    JsonBody(body): JsonBody<NewTenantBody>,
) -> ApiResult {
    let id = TenantId::new(body.id).map_err(|e| match e {
        ControlError::InvalidInput { message, .. } => ApiError::invalid("id", message),
        e => e.into(),
    })?;
    if body.name.len() > 200 {
        return Err(ApiError::invalid("name", "use at most 200 characters"));
    }
    let tenant = state.store.create_tenant(&id, &body.name).await?;
    let view = TenantView::from(tenant);
    audit(
        &state,
        &who,
        None,
        "tenant.create",
        format!("tenant/{id}"),
        None,
        Some(json!({ "id": view.id, "name": view.name })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn get_tenant(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let t = state
        .store
        .get_tenant(&tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("the tenant"))?;
    Ok(Json(TenantView::from(t)).into_response())
}

// ---- members -------------------------------------------------------------------------------

async fn members_of(state: &ApiState, tenant: &TenantId) -> ApiResult<Vec<(UserId, Role)>> {
    Ok(state
        .store
        .list_members(tenant)
        .await?
        .into_iter()
        .map(|(u, r)| (u.id, r))
        .collect())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/members",
    tag = "members",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The tenant's members, as `{\"members\": [...]}`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn list_members(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let members: Vec<Value> = state
        .store
        .list_members(&tenant)
        .await?
        .into_iter()
        .map(|(u, role)| {
            json!({
                "user_id": u.id.0,
                "email": u.email,
                "role": role,
                "disabled": u.disabled_at_ms.is_some(),
            })
        })
        .collect();
    Ok(Json(json!({ "members": members })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    email: String,
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/members",
    tag = "members",
    request_body = AddMemberBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 201, description = "The membership, created", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn add_member(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<AddMemberBody>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let role = parse_role(&body.role)?;
    if Some(role) > grantable(&who, &tenant) {
        return Err(ApiError::forbidden(
            "only an owner may grant the owner role",
        ));
    }
    let user = state
        .store
        .find_user_by_email(&body.email)
        .await?
        .ok_or_else(|| ApiError::not_found("a user with that e-mail address"))?;
    if members_of(&state, &tenant)
        .await?
        .iter()
        .any(|(u, _)| *u == user.id)
    {
        return Err(ApiError::conflict(
            "already_member",
            "that user is already a member; change their role instead",
        ));
    }
    state.store.set_membership(&user.id, &tenant, role).await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "member.add",
        format!("user/{}", user.id),
        None,
        Some(json!({ "role": role })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user_id": user.id.0, "role": role })),
    )
        .into_response())
}

/// The member's current role, checking the caller may touch it: an owner's membership, like
/// the owner role itself, is an owner's business. The last owner cannot be demoted or removed.
async fn touchable_member(
    state: &ApiState,
    who: &Authed,
    tenant: &TenantId,
    user: &UserId,
    new_role: Option<Role>,
) -> ApiResult<Role> {
    let members = members_of(state, tenant).await?;
    let current = members
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, r)| *r)
        .ok_or_else(|| ApiError::not_found("the member"))?;
    let grantable = grantable(who, tenant);
    if Some(current) > grantable || new_role.is_some_and(|r| Some(r) > grantable) {
        return Err(ApiError::forbidden(
            "only an owner may grant the owner role or change an owner's membership",
        ));
    }
    let owners = members.iter().filter(|(_, r)| *r == Role::Owner).count();
    if current == Role::Owner && new_role != Some(Role::Owner) && owners <= 1 {
        return Err(ApiError::conflict(
            "last_owner",
            "a tenant keeps at least one owner; make someone else owner first",
        ));
    }
    Ok(current)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

#[utoipa::path(
    patch,
    path = "/api/v1/tenants/{tenant}/members/{user}",
    tag = "members",
    request_body = RoleBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("user" = String, Path, description = "The member's user id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The membership, changed", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn change_member(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult {
    let Path((tenant, user)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let user = UserId(user);
    let role = parse_role(&body.role)?;
    let before = touchable_member(&state, &who, &tenant, &user, Some(role)).await?;
    state.store.set_membership(&user, &tenant, role).await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "member.change_role",
        format!("user/{user}"),
        Some(json!({ "role": before })),
        Some(json!({ "role": role })),
    )
    .await?;
    Ok(Json(json!({ "user_id": user.0, "role": role })).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/members/{user}",
    tag = "members",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("user" = String, Path, description = "The member's user id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 204, description = "The membership, removed"),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn remove_member(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, user)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let user = UserId(user);
    let before = touchable_member(&state, &who, &tenant, &user, None).await?;
    state.store.remove_membership(&user, &tenant).await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "member.remove",
        format!("user/{user}"),
        Some(json!({ "role": before })),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- API tokens ----------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/api-tokens",
    tag = "api-tokens",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The tenant's API tokens (never their secrets), as `{\"tokens\": [...]}`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn list_tokens(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let tokens: Vec<TokenView> = state
        .store
        .list_api_tokens(&tenant)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    role: String,
    expires_in_ms: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/api-tokens",
    tag = "api-tokens",
    request_body = NewTokenBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 201, description = "The token, created; `token` carries its secret this once", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn create_token(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<NewTokenBody>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let role = parse_role(&body.role)?;
    if Some(role) > grantable(&who, &tenant) {
        return Err(ApiError::forbidden(
            "a token's role may not exceed the role of whoever creates it",
        ));
    }
    let created_by = match &who.caller.principal {
        Principal::User(u) => Some(u.clone()),
        Principal::ApiToken(_) => None,
    };
    let ttl = body.expires_in_ms.unwrap_or(DEFAULT_TOKEN_TTL_MS);
    let new = state
        .store
        .create_api_token(&tenant, role, &body.name, ttl, created_by.as_ref())
        .await
        .map_err(|e| match e {
            ControlError::InvalidInput {
                field: "expires_in",
                message,
            } => ApiError::invalid("expires_in_ms", message),
            e => e.into(),
        })?;
    let view = TokenView::from(new.info);
    audit(
        &state,
        &who,
        Some(&tenant),
        "api_token.create",
        format!("api_token/{}", view.id),
        None,
        Some(json!({ "name": view.name, "role": role, "expires_at_ms": view.expires_at_ms })),
    )
    .await?;
    let mut body = serde_json::to_value(&view)
        .map_err(|_| ApiError::from(ControlError::Config("token view".to_string())))?;
    // The one time the secret leaves the store's hands.
    body["token"] = json!(new.token.expose());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/api-tokens/{token}",
    tag = "api-tokens",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("token" = String, Path, description = "The API token's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 204, description = "The token, revoked"),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn revoke_token(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, token)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    state
        .store
        .revoke_api_token(&tenant, &token)
        .await
        .map_err(|e| match e {
            ControlError::NotFound { .. } => ApiError::not_found("the API token"),
            e => e.into(),
        })?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "api_token.revoke",
        format!("api_token/{token}"),
        None,
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- credentials ---------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    /// The connector's credentials, any JSON object; stored encrypted, never shown again.
    #[schema(value_type = Object)]
    credentials: Value,
}

#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/credentials",
    tag = "connectors",
    request_body = CredentialsBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's name"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The credentials' metadata (never the secret)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn put_credentials(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<CredentialsBody>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    // Credentials belong to a configured connector: an unknown one is 404.
    super::connectors::require_connector(&state, &tenant, &connector).await?;
    let secret = Secret::new(body.credentials);
    let before = state.store.credential_info(&tenant, &connector).await?;
    let info = state
        .store
        .put_credentials(&tenant, &connector, &secret)
        .await?;
    drop(secret);
    // Only metadata reaches the log: when set and how often rotated.
    audit(
        &state,
        &who,
        Some(&tenant),
        if before.is_some() {
            "credentials.rotate"
        } else {
            "credentials.set"
        },
        format!("connector/{connector}"),
        before.as_ref().map(credential_view),
        Some(credential_view(&info)),
    )
    .await?;
    Ok(Json(credential_view(&info)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/credentials",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's name"),
    ),
    responses(
        (status = 200, description = "The credentials' metadata (never the secret)", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn get_credentials(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    super::connectors::require_connector(&state, &tenant, &connector).await?;
    let info = state
        .store
        .credential_info(&tenant, &connector)
        .await?
        .ok_or_else(|| ApiError::not_found("credentials for that connector"))?;
    Ok(Json(credential_view(&info)).into_response())
}

// ---- audit ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/audit",
    tag = "audit",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("from_ms" = Option<i64>, Query, description = "Entries at or after this time (ms since the epoch)"),
        ("to_ms" = Option<i64>, Query, description = "Entries at or before this time (ms since the epoch)"),
        ("limit" = Option<i64>, Query, description = "How many to return at most"),
    ),
    responses(
        (status = 200, description = "Audit entries, as `{\"entries\": [...]}`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn list_audit(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Query(q) = query.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=crate::store::audit::MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 10000"));
    }
    let entries = state
        .store
        .list_audit(
            Some(&tenant),
            q.from_ms.unwrap_or(0),
            q.to_ms.unwrap_or(i64::MAX),
            limit,
        )
        .await?;
    Ok(Json(json!({ "entries": entries })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/audit/export",
    tag = "audit",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("from_ms" = Option<i64>, Query, description = "Entries at or after this time (ms since the epoch)"),
        ("to_ms" = Option<i64>, Query, description = "Entries at or before this time (ms since the epoch)"),
        ("format" = Option<String>, Query, description = "`json` (the default) or `csv`"),
    ),
    responses(
        (status = 200, description = "The audit log as a JSON or CSV attachment; the export itself is audited"),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn export_audit(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Query(q) = query.map_err(bad_query)?;
    let format = q.format.as_deref().unwrap_or("json");
    if format != "json" && format != "csv" {
        return Err(ApiError::invalid("format", "must be csv or json"));
    }
    let (from, to) = (q.from_ms.unwrap_or(0), q.to_ms.unwrap_or(i64::MAX));
    if from > to {
        return Err(ApiError::invalid("from_ms", "must not be after to_ms"));
    }
    // Audited before the data leaves: no export goes out unrecorded.
    audit(
        &state,
        &who,
        Some(&tenant),
        "audit.export",
        format!("audit/{tenant}"),
        None,
        Some(json!({ "format": format, "from_ms": from, "to_ms": to })),
    )
    .await?;
    let (body, content_type) = if format == "csv" {
        (
            state
                .store
                .export_audit_csv(Some(&tenant), from, to)
                .await?,
            "text/csv; charset=utf-8",
        )
    } else {
        (
            state
                .store
                .export_audit_json(Some(&tenant), from, to)
                .await?,
            "application/json",
        )
    };
    let disposition = format!("attachment; filename=\"audit-{tenant}.{format}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

// ---- sync jobs and schedules ---------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsQuery {
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/jobs",
    tag = "jobs",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("limit" = Option<i64>, Query, description = "How many to return at most"),
    ),
    responses(
        (status = 200, description = "Recent sync jobs, as `{\"jobs\": [...]}`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn list_jobs(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Query(q) = query.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let jobs: Vec<Value> = state
        .store
        .list_jobs(&tenant, limit)
        .await?
        .iter()
        .map(job_view)
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/jobs/{job}",
    tag = "jobs",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("job" = String, Path, description = "The sync job's id"),
    ),
    responses(
        (status = 200, description = "The sync job", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn get_job(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, job)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let job = state
        .store
        .get_job(&tenant, &job)
        .await?
        .ok_or_else(|| ApiError::not_found("the sync job"))?;
    Ok(Json(job_view(&job)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/jobs/{job}/cancel",
    tag = "jobs",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("job" = String, Path, description = "The sync job's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The sync job, cancelled", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn cancel_job(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, job)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let before = state
        .store
        .get_job(&tenant, &job)
        .await?
        .ok_or_else(|| ApiError::not_found("the sync job"))?;
    let after = state
        .store
        .cancel_job(&tenant, &job)
        .await
        .map_err(|e| match e {
            ControlError::InvalidInput {
                field: "status",
                message,
            } => ApiError::conflict("job_finished", message),
            ControlError::NotFound { .. } => ApiError::not_found("the sync job"),
            e => e.into(),
        })?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "job.cancel",
        format!("job/{job}"),
        Some(json!({ "status": before.status.as_str() })),
        Some(json!({ "status": after.status.as_str() })),
    )
    .await?;
    Ok(Json(job_view(&after)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/sync",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's name"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 202, description = "A sync job, queued", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn sync_now(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let job = state.store.sync_now(&tenant, &connector).await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "job.sync_now",
        format!("connector/{connector}"),
        None,
        Some(json!({ "job": job.id })),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(job_view(&job))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/schedule",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's name"),
    ),
    responses(
        (status = 200, description = "The connector's schedule", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn get_schedule(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let s = state
        .store
        .get_schedule(&tenant, &connector)
        .await?
        .ok_or_else(|| ApiError::not_found("a schedule for that connector"))?;
    Ok(Json(schedule_view(&s)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    frequency: String,
    first_due_ms: Option<i64>,
}

#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/schedule",
    tag = "connectors",
    request_body = ScheduleBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's name"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The connector's schedule, set", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
async fn put_schedule(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<ScheduleBody>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let frequency: Frequency = body.frequency.parse()?;
    if body.first_due_ms.is_some_and(|t| t < 0) {
        return Err(ApiError::invalid("first_due_ms", "must not be negative"));
    }
    let before = state.store.get_schedule(&tenant, &connector).await?;
    let s = state
        .store
        .set_schedule(&tenant, &connector, frequency, body.first_due_ms)
        .await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "schedule.put",
        format!("connector/{connector}"),
        before.as_ref().map(schedule_view),
        Some(schedule_view(&s)),
    )
    .await?;
    Ok(Json(schedule_view(&s)).into_response())
}
