//! Connector configurations, "test connection" and the OAuth2 authorization-code flow.
//!
//! Who may do what: reading configurations takes `viewer`; creating, changing, enabling,
//! disabling and deleting them, and starting an OAuth flow (which ends in new credentials),
//! take `admin`; "test connection" takes `operator` — it changes nothing, but it uses the
//! stored credentials against the vendor's API and spends its rate budget, so it is an
//! operator's action (and a sensitive read: it is audited). The OAuth callback is public: the
//! browser lands there from the vendor, and the single-use, expiring `state` is what ties the
//! request to the admin who started the flow (whom its audit entry names).
//!
//! Validation errors answer 422 naming the field by its path in the body
//! (`sync.batch_size`, `field_mappings[0].fields.email.from`) with a specific code
//! (`required`, `invalid_type`, `invalid_value`, `out_of_range`, `too_long`,
//! `unknown_field`, `invalid_url`).
//!
//! Audit snapshots carry the configuration with its name as `connector_name` and the
//! mappings, filters and transformations as JSON text: the audit log masks values under keys
//! such as `name` or `email`, which here are a label and canonical field names, not
//! personal data (free text is still scanned for e-mail addresses and phone numbers).

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::{Authed, ClientAddr};
use super::connector_check::{CheckOutcome, CodeExchange, ConnectorCheck};
use super::error::{ApiError, ErrorBody, JsonBody, bad_path, bad_query};
use super::handlers::{ApiResult, audit, credential_view, tenant_id};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::{Role, TenantId};
use crate::error::ControlError;
use crate::masking::mask_text;
use crate::store::audit::AuditEntry;
use crate::store::connectors::{
    ConfigIssue, ConnectorConfig, ConnectorSpec, DeleteOutcome, check_connector_id,
};
use crate::store::credentials::CredentialInfo;

/// Longest a vendor call of "test connection" or the code exchange may take.
const VENDOR_CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn register(r: Routes) -> Routes {
    use Need::{Public, Tenant as T};
    use Role::{Admin, Operator, Viewer};
    r.add(
        Verb::Get,
        "/tenants/{tenant}/connectors",
        T(Viewer),
        list_connectors,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/connectors",
        T(Admin),
        create_connector,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/connectors/{connector}",
        T(Viewer),
        get_connector,
    )
    .add(
        Verb::Patch,
        "/tenants/{tenant}/connectors/{connector}",
        T(Admin),
        patch_connector,
    )
    .add(
        Verb::Delete,
        "/tenants/{tenant}/connectors/{connector}",
        T(Admin),
        delete_connector,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/connectors/{connector}/enable",
        T(Admin),
        enable_connector,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/connectors/{connector}/disable",
        T(Admin),
        disable_connector,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/connectors/{connector}/test",
        T(Operator),
        test_connector,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/connectors/{connector}/oauth/start",
        T(Admin),
        oauth_start,
    )
    .add(Verb::Get, "/oauth/callback", Public, oauth_callback)
}

// ---- helpers -------------------------------------------------------------------------------

fn issue(i: ConfigIssue) -> ApiError {
    ApiError {
        field: Some(i.field),
        ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, i.code, i.message)
    }
}

fn no_connector() -> ApiError {
    ApiError::not_found("the connector")
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "connector_check_unavailable",
        "this node cannot call vendors: it was started without connector checks",
    )
}

/// The connector, or 404 (absent, or another tenant's: the store reads only `tenant`'s).
pub(super) async fn require_connector(
    state: &ApiState,
    tenant: &TenantId,
    id: &str,
) -> ApiResult<ConnectorConfig> {
    state
        .store
        .get_connector(tenant, id)
        .await?
        .ok_or_else(no_connector)
}

fn connector_view(c: &ConnectorConfig, credentials: Option<&CredentialInfo>) -> Value {
    let mut v = c.spec.to_json();
    if let Some(m) = v.as_object_mut() {
        m.insert("id".into(), json!(c.id));
        m.insert("tenant".into(), json!(c.tenant.as_str()));
        m.insert("enabled".into(), json!(c.enabled));
        m.insert("version".into(), json!(c.version));
        m.insert("created_at_ms".into(), json!(c.created_at_ms));
        m.insert("updated_at_ms".into(), json!(c.updated_at_ms));
        // Metadata only: whether credentials are set, since when; never the secret.
        m.insert(
            "credentials".into(),
            credentials.map(credential_view).unwrap_or(Value::Null),
        );
    }
    v
}

/// The audit log's snapshot of a configuration (see the module docs for its shape).
fn audit_view(c: &ConnectorConfig) -> Value {
    let mut v = c.spec.to_json();
    if let Some(m) = v.as_object_mut() {
        if let Some(name) = m.remove("name") {
            m.insert("connector_name".into(), name);
        }
        for key in ["field_mappings", "filters", "transformations"] {
            if let Some(section) = m.get_mut(key) {
                *section = Value::String(section.to_string());
            }
        }
        m.insert("enabled".into(), json!(c.enabled));
        m.insert("version".into(), json!(c.version));
    }
    v
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// `%`-encodes a query value (RFC 3986 unreserved characters stay).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", q.join("&"))
}

fn check_impl(state: &ApiState) -> ApiResult<&dyn ConnectorCheck> {
    state.connector_check.as_deref().ok_or_else(unavailable)
}

// ---- bodies, as documented (parsed by `ConnectorSpec::from_json` for field-level errors) ----

/// A connector configuration, as created. Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; `ConnectorSpec::from_json` reads it
struct ConnectorBody {
    /// 1 to 100 lowercase letters, digits, `-` or `_`; unique in the tenant.
    id: String,
    /// A label for people, 1 to 200 characters.
    name: String,
    /// `salesforce`, `hubspot`, `dealersocket`, `vinsolutions`, `elead`, `reynolds`, `cdk`,
    /// `dealertrack` or `generic`.
    vendor: String,
    /// The vendor API's base URL (http or https, no user info).
    endpoint: String,
    /// `oauth2`, `api_key`, `basic`, `jwt` or `custom`.
    auth_type: String,
    sync: Option<SyncBody>,
    /// Entity mappings in the topology's shape: `{vendor_entity, canonical, fields: {<field>:
    /// {from, transform, default, required, format, rules}}, external_id?, updated_at?,
    /// deleted?, rules?}`.
    #[schema(value_type = Option<Vec<Object>>)]
    field_mappings: Option<Value>,
    /// `{field, op, value}`, op one of `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`,
    /// `not_in`, `contains`, `exists`, `not_exists`.
    #[schema(value_type = Option<Vec<Object>>)]
    filters: Option<Value>,
    /// `{field, steps}`: steps are names (`trim`) or one-key objects (`{"format_phone":
    /// {"region": "US"}}`).
    #[schema(value_type = Option<Vec<Object>>)]
    transformations: Option<Value>,
    oauth: Option<OAuthBody>,
    /// Whether it syncs (and is scheduled); default `false`.
    enabled: Option<bool>,
}

/// How a connector syncs; every field has a default.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
struct SyncBody {
    /// `real-time`, `hourly`, `daily`, `weekly` or `manual` (the default).
    frequency: Option<String>,
    /// `inbound` (the default), `outbound` or `bidirectional`.
    direction: Option<String>,
    /// Records per batch, 1 to 10000; default 200.
    batch_size: Option<i64>,
    /// Retries of a transient failure, 0 to 10; default 3.
    retry_attempts: Option<i64>,
    /// `source_wins`, `target_wins`, `merge`, `manual` (the default) or `skip`.
    conflict_strategy: Option<String>,
}

/// The OAuth2 app's public settings (its client secret goes into the credentials).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
struct OAuthBody {
    client_id: String,
    authorize_url: String,
    token_url: Option<String>,
    /// Space-separated scopes.
    scope: Option<String>,
    /// The hub's `/api/v1/oauth/callback` URL, as registered with the vendor's app.
    redirect_uri: String,
}

/// A JSON merge patch (RFC 7396) of a configuration: any field of the create body but `id`
/// and `enabled`, plus an optional `version` that the stored one must equal.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
struct ConnectorPatch {
    /// Apply only if the stored version is this one (409 `version_mismatch` otherwise).
    version: Option<i64>,
    name: Option<String>,
    vendor: Option<String>,
    endpoint: Option<String>,
    auth_type: Option<String>,
    sync: Option<SyncBody>,
    #[schema(value_type = Option<Vec<Object>>)]
    field_mappings: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    filters: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    transformations: Option<Value>,
    oauth: Option<OAuthBody>,
}

// ---- configuration CRUD --------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/connectors",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The tenant's connectors, as `{\"connectors\": [...]}`, each with its credentials' metadata (never the secret)", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn list_connectors(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let credentials = state.store.list_credentials(&tenant).await?;
    let connectors: Vec<Value> = state
        .store
        .list_connectors(&tenant)
        .await?
        .iter()
        .map(|c| connector_view(c, credentials.iter().find(|i| i.connector == c.id)))
        .collect();
    Ok(Json(json!({ "connectors": connectors })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/connectors",
    tag = "connectors",
    request_body = ConnectorBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 201, description = "The connector, created (version 1)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "The tenant already has a connector with this id", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it by its path, e.g. `sync.batch_size`", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn create_connector(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let spec = ConnectorSpec::from_json(&body, &["id", "enabled"]).map_err(issue)?;
    let id = match body.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(ApiError::invalid("id", "must be a string").into_invalid_type()),
        None => {
            return Err(issue(ConfigIssue {
                field: "id".into(),
                code: "required",
                message: "is required".into(),
            }));
        }
    };
    check_connector_id(&id).map_err(issue)?;
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid("enabled", "must be true or false").into_invalid_type());
        }
    };
    let created = state
        .store
        .create_connector(&tenant, &id, &spec, enabled)
        .await
        .map_err(|e| match e {
            ControlError::Conflict { .. } => ApiError::conflict(
                "connector_exists",
                format!("the tenant already has a connector with id {id}"),
            ),
            e => e.into(),
        })?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "connector.create",
        format!("connector/{id}"),
        None,
        Some(audit_view(&created)),
    )
    .await?;
    let credentials = state.store.credential_info(&tenant, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(connector_view(&created, credentials.as_ref())),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
    ),
    responses(
        (status = 200, description = "The connector, with its credentials' metadata (never the secret)", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn get_connector(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let c = require_connector(&state, &tenant, &connector).await?;
    let credentials = state.store.credential_info(&tenant, &connector).await?;
    Ok(Json(connector_view(&c, credentials.as_ref())).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}",
    tag = "connectors",
    request_body(content = ConnectorPatch, content_type = "application/json"),
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The connector, changed (its version + 1)", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "`version` is not the stored one: someone changed it meanwhile", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it by its path, e.g. `sync.batch_size`", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn patch_connector(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Value::Object(mut patch) = body else {
        return Err(ApiError::invalid("body", "must be a JSON object").into_invalid_type());
    };
    let version = match patch.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::invalid("version", "must be a whole number").into_invalid_type()
        })?),
    };
    for fixed in ["id", "enabled"] {
        if patch.contains_key(fixed) {
            return Err(issue(ConfigIssue {
                field: fixed.into(),
                code: "unknown_field",
                message: if fixed == "id" {
                    "cannot be changed: create a new connector".into()
                } else {
                    "is changed with the enable and disable endpoints".into()
                },
            }));
        }
    }
    // Read, merge, write under the version read: a concurrent change makes the write miss,
    // and then — unless the caller named a version — the patch is merged again onto the
    // newer configuration, so concurrent patches never lose each other's fields. Every round
    // lets at least one writer through, so a few rounds suffice; 50 bound a pathological case.
    let patch = Value::Object(patch);
    let mut attempts = 0;
    let (before, after) = loop {
        attempts += 1;
        let before = require_connector(&state, &tenant, &connector).await?;
        let mut merged = before.spec.to_json();
        merge_patch(&mut merged, &patch);
        let spec = ConnectorSpec::from_json(&merged, &[]).map_err(issue)?;
        match state
            .store
            .update_connector(
                &tenant,
                &connector,
                &spec,
                Some(version.unwrap_or(before.version)),
            )
            .await
        {
            Ok(after) => break (before, after),
            Err(ControlError::Conflict { .. }) if version.is_none() && attempts < 50 => continue,
            Err(ControlError::Conflict { what }) => {
                return Err(ApiError::conflict(
                    "version_mismatch",
                    format!("{what} exists: read it again and reapply the change"),
                ));
            }
            Err(ControlError::NotFound { .. }) => return Err(no_connector()),
            Err(e) => return Err(e.into()),
        }
    };
    audit(
        &state,
        &who,
        Some(&tenant),
        "connector.update",
        format!("connector/{connector}"),
        Some(audit_view(&before)),
        Some(audit_view(&after)),
    )
    .await?;
    let credentials = state.store.credential_info(&tenant, &connector).await?;
    Ok(Json(connector_view(&after, credentials.as_ref())).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 204, description = "The connector, its credentials, schedule and pending OAuth flows, deleted (its finished jobs stay)"),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "A sync job of the connector is pending or running: cancel it first", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn delete_connector(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let before = require_connector(&state, &tenant, &connector).await?;
    let had_credentials = state
        .store
        .credential_info(&tenant, &connector)
        .await?
        .is_some();
    match state.store.delete_connector(&tenant, &connector).await? {
        DeleteOutcome::Deleted => {}
        DeleteOutcome::NotFound => return Err(no_connector()),
        DeleteOutcome::JobsActive(n) => {
            return Err(ApiError::conflict(
                "jobs_active",
                format!(
                    "{n} sync job(s) of this connector are pending or running: cancel them, then delete it"
                ),
            ));
        }
    }
    let mut before = audit_view(&before);
    before["had_credentials"] = json!(had_credentials);
    audit(
        &state,
        &who,
        Some(&tenant),
        "connector.delete",
        format!("connector/{connector}"),
        Some(before),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_enabled(
    state: ApiState,
    who: Authed,
    path: Result<Path<(String, String)>, PathRejection>,
    enabled: bool,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let before = require_connector(&state, &tenant, &connector).await?;
    let after = state
        .store
        .set_connector_enabled(&tenant, &connector, enabled)
        .await
        .map_err(|e| match e {
            ControlError::NotFound { .. } => no_connector(),
            e => e.into(),
        })?;
    audit(
        &state,
        &who,
        Some(&tenant),
        if enabled {
            "connector.enable"
        } else {
            "connector.disable"
        },
        format!("connector/{connector}"),
        Some(json!({ "enabled": before.enabled, "version": before.version })),
        Some(json!({ "enabled": after.enabled, "version": after.version })),
    )
    .await?;
    let credentials = state.store.credential_info(&tenant, &connector).await?;
    Ok(Json(connector_view(&after, credentials.as_ref())).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/enable",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The connector, enabled and scheduled by its frequency", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn enable_connector(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    set_enabled(state, who, path, true).await
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/disable",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The connector, disabled: its schedule is removed (jobs already made are left)", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn disable_connector(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    set_enabled(state, who, path, false).await
}

// ---- test connection -----------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/test",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The test ran: `status` is `ok`, `failed` or `unsupported`, with a `code` and a `message`", body = CheckOutcome),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 501, description = "This node cannot call vendors (`connector_check_unavailable`)", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn test_connector(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let config = require_connector(&state, &tenant, &connector).await?;
    let check = check_impl(&state)?;
    let credentials = state.store.get_credentials(&tenant, &connector).await?;
    let outcome = match tokio::time::timeout(
        VENDOR_CALL_TIMEOUT,
        check.check(&config, credentials.as_ref()),
    )
    .await
    {
        Ok(o) => o,
        Err(_) => CheckOutcome::failed(
            "timeout",
            format!(
                "the vendor did not answer within {} s",
                VENDOR_CALL_TIMEOUT.as_secs()
            ),
        ),
    };
    drop(credentials);
    // A sensitive read: the stored credentials were used against the vendor.
    audit(
        &state,
        &who,
        Some(&tenant),
        "connector.test",
        format!("connector/{connector}"),
        None,
        Some(json!({ "status": outcome.status, "code": outcome.code })),
    )
    .await?;
    let outcome = CheckOutcome {
        message: mask_text(&outcome.message),
        ..outcome
    };
    Ok(Json(outcome).into_response())
}

// ---- OAuth2 authorization code with state and PKCE ----------------------------------------

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/connectors/{connector}/oauth/start",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = String, Path, description = "The connector's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "`{\"authorize_url\", \"expires_at_ms\"}`: send the browser to `authorize_url` (it carries client_id, redirect_uri, scope, a single-use state and a PKCE S256 code_challenge); the flow must finish before `expires_at_ms`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "The connector is not set up for OAuth2 (`oauth_not_configured`)", body = ErrorBody),
        (status = 501, description = "This node cannot call vendors (`connector_check_unavailable`)", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn oauth_start(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, connector)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let config = require_connector(&state, &tenant, &connector).await?;
    let oauth = match (&config.spec.auth_type, &config.spec.oauth) {
        (crate::store::connectors::AuthType::OAuth2, Some(o)) => o.clone(),
        _ => {
            return Err(ApiError::conflict(
                "oauth_not_configured",
                "set auth_type to oauth2 and fill the connector's oauth settings first",
            ));
        }
    };
    // The flow could not be finished without the code exchange: refuse it up front.
    check_impl(&state)?;
    let started = state
        .store
        .start_oauth(&tenant, &connector, &oauth.redirect_uri, &who.actor())
        .await?;
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", oauth.client_id.as_str()),
        ("redirect_uri", oauth.redirect_uri.as_str()),
    ];
    if let Some(scope) = &oauth.scope {
        pairs.push(("scope", scope.as_str()));
    }
    pairs.push(("state", started.state.expose().as_str()));
    pairs.push(("code_challenge", started.code_challenge.as_str()));
    pairs.push(("code_challenge_method", "S256"));
    let authorize_url = with_query(&oauth.authorize_url, &pairs);
    audit(
        &state,
        &who,
        Some(&tenant),
        "connector.oauth_start",
        format!("connector/{connector}"),
        None,
        Some(json!({ "expires_at_ms": started.expires_at_ms })),
    )
    .await?;
    Ok(Json(json!({
        "authorize_url": authorize_url,
        "expires_at_ms": started.expires_at_ms,
    }))
    .into_response())
}

/// What the vendor appends to the redirect URI. Other parameters are ignored: vendors add
/// their own.
#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn bad_callback(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

#[utoipa::path(
    get,
    path = "/api/v1/oauth/callback",
    tag = "connectors",
    params(
        ("code" = Option<String>, Query, description = "The authorization code the vendor issued"),
        ("state" = Option<String>, Query, description = "The state of the flow, from `oauth/start`"),
        ("error" = Option<String>, Query, description = "The vendor's error, when the user declined or the request was refused"),
    ),
    responses(
        (status = 200, description = "`{\"tenant\", \"connector\", \"credentials\"}`: the tokens are stored as the connector's credentials (metadata shown, never the secret)", body = Object),
        (status = 400, description = "The state is missing, unknown, expired or already used (`oauth_state_missing`, `oauth_state_unknown`, `oauth_state_expired`, `oauth_state_used`), the vendor reported an error (`oauth_denied`), or the code is missing (`oauth_code_missing`)", body = ErrorBody),
        (status = 422, description = "A query parameter has the wrong type or value", body = ErrorBody),
        (status = 501, description = "This node cannot call vendors (`connector_check_unavailable`)", body = ErrorBody),
        (status = 502, description = "The vendor refused the code exchange, or could not be reached", body = ErrorBody),
    ),
)]
pub(super) async fn oauth_callback(
    State(state): State<ApiState>,
    ClientAddr(addr): ClientAddr,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(bad_query)?;
    let check = check_impl(&state)?;
    let Some(raw_state) = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return Err(ApiError {
            field: Some("state".into()),
            ..bad_callback(
                "oauth_state_missing",
                "the callback carries no usable state",
            )
        });
    };
    let grant = match state.store.take_oauth(raw_state).await? {
        Ok(g) => g,
        Err(rejection) => {
            let why = match rejection {
                crate::store::connectors::StateRejection::Unknown => {
                    "this sign-in link is not known: start connecting again"
                }
                crate::store::connectors::StateRejection::Expired => {
                    "this sign-in link expired: start connecting again"
                }
                crate::store::connectors::StateRejection::Used => {
                    "this sign-in link was already used: start connecting again"
                }
            };
            return Err(ApiError {
                field: Some("state".into()),
                ..bad_callback(rejection.code(), why)
            });
        }
    };
    let target = format!("connector/{}", grant.connector);
    let entry = |action: &str, before: Option<Value>, after: Value| AuditEntry {
        actor: grant.started_by.clone(),
        tenant: Some(grant.tenant.clone()),
        action: action.to_string(),
        target: target.clone(),
        before,
        after: Some(after),
        client_addr: Some(addr.clone()),
    };
    if let Some(error) = &q.error {
        // Only the OAuth error code (a token like `access_denied`), not free text.
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        state
            .store
            .append_audit(entry(
                "connector.oauth_denied",
                None,
                json!({ "error": error }),
            ))
            .await?;
        return Err(bad_callback(
            "oauth_denied",
            format!("the vendor did not grant access ({error}): start connecting again"),
        ));
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return Err(ApiError {
            field: Some("code".into()),
            ..bad_callback(
                "oauth_code_missing",
                "the callback carries no authorization code",
            )
        });
    };
    let config = state
        .store
        .get_connector(&grant.tenant, &grant.connector)
        .await?
        .ok_or_else(|| {
            bad_callback(
                "oauth_state_unknown",
                "the connector of this sign-in link no longer exists",
            )
        })?;
    let old = state
        .store
        .get_credentials(&grant.tenant, &grant.connector)
        .await?;
    let exchange = CodeExchange {
        config: &config,
        credentials: old.as_ref(),
        code,
        code_verifier: &grant.code_verifier,
        redirect_uri: &grant.redirect_uri,
    };
    let tokens =
        match tokio::time::timeout(VENDOR_CALL_TIMEOUT, check.exchange_code(exchange)).await {
            Ok(Ok(tokens)) => tokens,
            Ok(Err(e)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "token_exchange_failed",
                    format!("{} ({})", e.message, e.code),
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "token_exchange_failed",
                    "the vendor's token endpoint did not answer in time",
                ));
            }
        };
    drop(old);
    let before = state
        .store
        .credential_info(&grant.tenant, &grant.connector)
        .await?;
    let info = state
        .store
        .put_credentials(&grant.tenant, &grant.connector, &tokens)
        .await?;
    drop(tokens);
    let mut after = credential_view(&info);
    after["via"] = json!("oauth2");
    state
        .store
        .append_audit(entry(
            if before.is_some() {
                "credentials.rotate"
            } else {
                "credentials.set"
            },
            before.as_ref().map(credential_view),
            after,
        ))
        .await?;
    Ok(Json(json!({
        "tenant": grant.tenant.as_str(),
        "connector": grant.connector,
        "credentials": credential_view(&info),
    }))
    .into_response())
}

trait InvalidType {
    fn into_invalid_type(self) -> ApiError;
}

impl InvalidType for ApiError {
    /// The same 422, with the specific code `invalid_type`.
    fn into_invalid_type(self) -> ApiError {
        ApiError {
            code: "invalid_type",
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({ "a": "b", "c": { "d": "e", "f": "g" } });
        merge_patch(&mut t, &json!({ "a": "z", "c": { "f": null } }));
        assert_eq!(t, json!({ "a": "z", "c": { "d": "e" } }));
        let mut t = json!({ "l": [1, 2] });
        merge_patch(&mut t, &json!({ "l": [3] }));
        assert_eq!(t, json!({ "l": [3] }));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            with_query(
                "https://v.example/auth",
                &[("scope", "api refresh_token"), ("r", "https://h/cb?x=1")]
            ),
            "https://v.example/auth?scope=api%20refresh_token&r=https%3A%2F%2Fh%2Fcb%3Fx%3D1"
        );
        assert_eq!(
            with_query("https://v.example/a?x=1", &[("k", "v")]),
            "https://v.example/a?x=1&k=v"
        );
    }
}
