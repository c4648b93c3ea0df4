//! The conflicts and dead-letters desk: list and filter pending conflicts, show both sides
//! field by field, resolve one or many (per field: take the incoming value, keep the current
//! one, or enter a value); list and inspect dead letters, replay them (one, the ones a filter
//! names, or all) or discard them with a reason.
//!
//! Reads come from the store ([`crate::store::desk`], fed from the hub's topics). Actions that
//! reach the pipeline go through a [`PipelineGateway`] the node hands in
//! ([`super::ApiState::with_gateway`]); this crate knows no Kafka. A resolution is a request,
//! not a result: the transform applies it to the key's state in order with every other change
//! (exactly one new canonical version, or a refusal), and the conflict's row follows the
//! transform's record. Without a gateway those actions answer 501 `pipeline_not_connected`.
//!
//! Every action is audited (one entry per request, bulk ones listing what they touched);
//! values a person entered reach the audit log masked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::Authed;
use super::error::{ApiError, ErrorBody, JsonBody, bad_path, bad_query};
use super::handlers::{ApiResult, audit, tenant_id};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::{Role, TenantId};
use crate::error::ControlError;
use crate::masking::mask_personal_data;
use crate::store::desk::{
    ConflictFilter, DeadLetterFilter, DeadLetterReplay, DeadLetterStatus, DeskConflict,
    DeskConflictStatus, DeskDeadLetter, MAX_DESK_PAGE,
};

/// Most conflicts one bulk resolution, and dead letters one bulk replay, may act on.
pub const MAX_BULK: usize = 500;

/// A conflict's resolution, on its way to the transform.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionSubmission {
    /// The conflict's tenant.
    pub tenant: TenantId,
    /// The canonical entity (`customer`, `vehicle`, ...).
    pub entity: String,
    /// The canonical key the conflict is about.
    pub key: String,
    /// The conflict's id, as the transform gave it.
    pub conflict_id: String,
    /// `{"resolved_by", "resolved_at_ms", "fields": {<field>: "take_incoming" |
    /// "keep_current" | {"value": ...}}}`: the transform's resolution, as JSON.
    pub resolution: Value,
}

/// Why the pipeline did not take an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The request cannot go in as it is (e.g. an entity the pipeline does not know).
    #[error("{0}")]
    Refused(String),
    /// The broker did not acknowledge it; nothing was sent, try again.
    #[error("{0}")]
    Unavailable(String),
}

/// What a gateway call returns.
pub type GatewayFuture<'a> = Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>>;

/// The desk's way into the pipeline, implemented by the node (Kafka producer) and by tests.
/// Each call returns once the broker acknowledged the record, or fails having sent nothing
/// the caller must count on.
pub trait PipelineGateway: Send + Sync + Debug {
    /// Submits a resolution as a change of the conflict's key, so that it meets the key's
    /// state in order.
    fn submit_resolution<'a>(&'a self, submission: &'a ResolutionSubmission) -> GatewayFuture<'a>;

    /// Produces a dead letter's original record to its original topic, with its original key
    /// and the hub headers.
    fn replay<'a>(&'a self, record: &'a DeadLetterReplay) -> GatewayFuture<'a>;
}

pub(super) fn register(r: Routes) -> Routes {
    use Need::Tenant as T;
    use Role::{Operator, Viewer};
    r.add(
        Verb::Get,
        "/tenants/{tenant}/conflicts",
        T(Viewer),
        list_conflicts,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/conflicts/resolve",
        T(Operator),
        resolve_conflicts,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/conflicts/{conflict}",
        T(Viewer),
        get_conflict,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/conflicts/{conflict}/resolve",
        T(Operator),
        resolve_conflict,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/dead-letters",
        T(Viewer),
        list_dead_letters,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/dead-letters/replay",
        T(Operator),
        replay_dead_letters,
    )
    .add(
        Verb::Get,
        "/tenants/{tenant}/dead-letters/{dead_letter}",
        T(Viewer),
        get_dead_letter,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/dead-letters/{dead_letter}/replay",
        T(Operator),
        replay_dead_letter,
    )
    .add(
        Verb::Post,
        "/tenants/{tenant}/dead-letters/{dead_letter}/discard",
        T(Operator),
        discard_dead_letter,
    )
}

fn gateway(state: &ApiState) -> ApiResult<&dyn PipelineGateway> {
    state.gateway.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "pipeline_not_connected",
            "this node's control API is not connected to the pipeline, so it cannot resolve \
             conflicts or replay dead letters; use a node that runs the control role with \
             Kafka configured",
        )
    })
}

fn gateway_error(e: GatewayError) -> ApiError {
    match e {
        GatewayError::Refused(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "pipeline_refused", m)
        }
        GatewayError::Unavailable(m) => {
            tracing::warn!(error = %m, "the pipeline did not take a desk action");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "pipeline_unavailable",
                "the pipeline did not acknowledge the request; nothing changed, try again shortly",
            )
        }
    }
}

fn not_pending(what: &str, status: &str) -> ApiError {
    ApiError::conflict(
        "not_pending",
        format!("the {what} is {status}; only a pending one can be acted on"),
    )
}

/// Who a resolution names as its author (the source of entered values): the caller's id,
/// never an e-mail address.
fn resolved_by(who: &Authed) -> String {
    format!("control:{}", who.actor())
}

// ---- conflicts -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConflictsQuery {
    status: Option<String>,
    entity: Option<String>,
    connector: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn limit_of(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_DESK_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_DESK_PAGE}"),
        ));
    }
    Ok(limit)
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/conflicts",
    tag = "conflicts",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("status" = Option<String>, Query, description = "pending, resolution_submitted, resolved, auto_resolved or superseded; all when absent"),
        ("entity" = Option<String>, Query, description = "Only this canonical entity (customer, vehicle, ...)"),
        ("connector" = Option<String>, Query, description = "Only conflicts raised by this connector's change"),
        ("limit" = Option<i64>, Query, description = "How many to return at most (1 to 500, default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Conflicts, newest first, as `{\"conflicts\": [...], \"next_cursor\"}` (without their values: see the conflict itself)", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn list_conflicts(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ConflictsQuery>, QueryRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Query(q) = query.map_err(bad_query)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeskConflictStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "must be pending, resolution_submitted, resolved, auto_resolved or superseded",
            )
        })?),
    };
    let filter = ConflictFilter {
        status,
        entity: q.entity.filter(|s| !s.is_empty()),
        connector: q.connector.filter(|s| !s.is_empty()),
        limit: limit_of(q.limit)?,
        cursor: q.cursor.filter(|s| !s.is_empty()),
    };
    let (conflicts, next) = state.store.list_conflicts(&tenant, &filter).await?;
    Ok(Json(json!({ "conflicts": conflicts, "next_cursor": next })).into_response())
}

async fn conflict_of(state: &ApiState, tenant: &TenantId, id: &str) -> ApiResult<DeskConflict> {
    state
        .store
        .get_conflict(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("the conflict"))
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/conflicts/{conflict}",
    tag = "conflicts",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("conflict" = String, Path, description = "The conflict's id"),
    ),
    responses(
        (status = 200, description = "The conflict and, in `fields`, both sides field by field: `current` and `incoming` (value, source, source time), the strategy and what it did; `held` marks the fields a resolution decides", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn get_conflict(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, id)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let conflict = conflict_of(&state, &tenant, &id).await?;
    let sides = state
        .store
        .conflict_sides(&tenant, &id)
        .await?
        .unwrap_or(Value::Array(Vec::new()));
    let fields: Vec<Value> = sides
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let mut f = f.clone();
            let held = f
                .get("field")
                .and_then(Value::as_str)
                .is_some_and(|name| conflict.held_fields.iter().any(|h| h == name));
            f["held"] = json!(held);
            f
        })
        .collect();
    let mut body = serde_json::to_value(&conflict)
        .map_err(|_| ApiError::from(ControlError::Config("conflict view".into())))?;
    body["fields"] = Value::Array(fields);
    Ok(Json(body).into_response())
}

/// How one held field is settled: `"take_incoming"`, `"keep_current"` or `{"value": ...}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum FieldChoice {
    TakeIncoming,
    KeepCurrent,
    #[schema(value_type = Object)]
    Value(Value),
}

impl FieldChoice {
    fn to_json(&self) -> Value {
        match self {
            FieldChoice::TakeIncoming => json!("take_incoming"),
            FieldChoice::KeepCurrent => json!("keep_current"),
            FieldChoice::Value(v) => json!({ "value": v }),
        }
    }
}

/// One choice for every held field.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum SideChoice {
    TakeIncoming,
    KeepCurrent,
}

/// A resolution: per held field a choice (`fields`), or one side for all of them (`choice`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveBody {
    /// Per held field: `"take_incoming"`, `"keep_current"` or `{"value": <the value>}`.
    #[serde(default)]
    fields: Option<BTreeMap<String, FieldChoice>>,
    /// One side for every held field.
    #[serde(default)]
    choice: Option<SideChoice>,
}

/// The choices for `conflict`'s held fields, checked: every held field decided, no other.
fn choices(
    conflict: &DeskConflict,
    fields: Option<&BTreeMap<String, FieldChoice>>,
    choice: Option<SideChoice>,
) -> ApiResult<BTreeMap<String, FieldChoice>> {
    let held: BTreeSet<&String> = conflict.held_fields.iter().collect();
    match (fields, choice) {
        (Some(_), Some(_)) | (None, None) => Err(ApiError::invalid(
            "fields",
            "give either `fields` (a choice per held field) or `choice` (one side for all)",
        )),
        (None, Some(c)) => Ok(held
            .into_iter()
            .map(|f| {
                let choice = match c {
                    SideChoice::TakeIncoming => FieldChoice::TakeIncoming,
                    SideChoice::KeepCurrent => FieldChoice::KeepCurrent,
                };
                (f.clone(), choice)
            })
            .collect()),
        (Some(fields), None) => {
            if let Some(unknown) = fields.keys().find(|f| !held.contains(f)) {
                return Err(ApiError::invalid(
                    format!("fields.{unknown}"),
                    "is not a field held by this conflict",
                ));
            }
            if let Some(missing) = held.iter().find(|f| !fields.contains_key(**f)) {
                return Err(ApiError::invalid(
                    format!("fields.{missing}"),
                    "needs a choice: take_incoming, keep_current or {\"value\": ...}",
                ));
            }
            Ok(fields.clone())
        }
    }
}

/// Submits one checked resolution: the store's compare-and-set, then the gateway (the
/// submission is undone when the pipeline did not take it).
async fn submit(
    state: &ApiState,
    gateway: &dyn PipelineGateway,
    who: &Authed,
    conflict: &DeskConflict,
    choices: &BTreeMap<String, FieldChoice>,
) -> ApiResult<DeskConflict> {
    let tenant = tenant_id(&conflict.tenant)?;
    let by = resolved_by(who);
    let submitted = state
        .store
        .submit_conflict_resolution(&tenant, &conflict.id, &by)
        .await
        .map_err(|e| match e {
            ControlError::Conflict { .. } => not_pending("conflict", "no longer pending"),
            e => e.into(),
        })?;
    let fields: serde_json::Map<String, Value> = choices
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let submission = ResolutionSubmission {
        tenant: tenant.clone(),
        entity: conflict.entity.clone(),
        key: conflict.key.clone(),
        conflict_id: conflict.id.clone(),
        resolution: json!({
            "resolved_by": by,
            "resolved_at_ms": submitted.submitted_at_ms.unwrap_or_default(),
            "fields": fields,
        }),
    };
    if let Err(e) = gateway.submit_resolution(&submission).await {
        state
            .store
            .revert_conflict_submission(&tenant, &conflict.id, &e.to_string())
            .await?;
        return Err(gateway_error(e));
    }
    Ok(submitted)
}

fn choices_for_audit(choices: &BTreeMap<String, FieldChoice>) -> Value {
    let fields: serde_json::Map<String, Value> = choices
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    mask_personal_data(&json!({ "fields": fields }))
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/conflicts/{conflict}/resolve",
    tag = "conflicts",
    request_body = ResolveBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("conflict" = String, Path, description = "The conflict's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 202, description = "The resolution is on its way to the transform; the conflict is `resolution_submitted` until the transform's answer makes it `resolved` (one new canonical version) or `pending` again with `last_reason`", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
        (status = 501, description = "This node is not connected to the pipeline", body = ErrorBody),
        (status = 503, description = "The pipeline did not acknowledge; nothing changed", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn resolve_conflict(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> ApiResult {
    let Path((tenant, id)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let conflict = conflict_of(&state, &tenant, &id).await?;
    if !matches!(
        conflict.status,
        DeskConflictStatus::Pending | DeskConflictStatus::ResolutionSubmitted
    ) {
        return Err(not_pending("conflict", conflict.status.as_str()));
    }
    let choices = choices(&conflict, body.fields.as_ref(), body.choice)?;
    let gateway = gateway(&state)?;
    let submitted = submit(&state, gateway, &who, &conflict, &choices).await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "conflict.resolve",
        format!("conflict/{id}"),
        Some(json!({ "status": conflict.status.as_str() })),
        Some(choices_for_audit(&choices)),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(submitted)).into_response())
}

/// One conflict's resolution in a bulk request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkResolution {
    conflict: String,
    #[serde(default)]
    fields: Option<BTreeMap<String, FieldChoice>>,
    #[serde(default)]
    choice: Option<SideChoice>,
}

/// Many resolutions: `conflicts` with one `choice` for all their held fields, or
/// `resolutions`, one per conflict.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkResolveBody {
    #[serde(default)]
    conflicts: Option<Vec<String>>,
    #[serde(default)]
    choice: Option<SideChoice>,
    #[serde(default)]
    resolutions: Option<Vec<BulkResolution>>,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/conflicts/resolve",
    tag = "conflicts",
    request_body = BulkResolveBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "Per conflict, `{\"conflict\", \"status\"}` when submitted or `{\"conflict\", \"error\": {code, message, field?}}`, as `{\"results\": [...]}`", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
        (status = 501, description = "This node is not connected to the pipeline", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn resolve_conflicts(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<BulkResolveBody>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let items: Vec<BulkResolution> = match (body.conflicts, body.choice, body.resolutions) {
        (Some(ids), Some(choice), None) => ids
            .into_iter()
            .map(|conflict| BulkResolution {
                conflict,
                fields: None,
                choice: Some(choice),
            })
            .collect(),
        (None, None, Some(r)) => r,
        _ => {
            return Err(ApiError::invalid(
                "conflicts",
                "give `conflicts` with one `choice`, or `resolutions` (one per conflict)",
            ));
        }
    };
    if items.is_empty() || items.len() > MAX_BULK {
        return Err(ApiError::invalid(
            "conflicts",
            format!("name 1 to {MAX_BULK} conflicts"),
        ));
    }
    let gateway = gateway(&state)?;
    let mut results = Vec::with_capacity(items.len());
    let mut audited = Vec::new();
    for item in items {
        let outcome = async {
            let conflict = conflict_of(&state, &tenant, &item.conflict).await?;
            if !matches!(
                conflict.status,
                DeskConflictStatus::Pending | DeskConflictStatus::ResolutionSubmitted
            ) {
                return Err(not_pending("conflict", conflict.status.as_str()));
            }
            let choices = choices(&conflict, item.fields.as_ref(), item.choice)?;
            let submitted = submit(&state, gateway, &who, &conflict, &choices).await?;
            Ok((submitted, choices))
        }
        .await;
        results.push(match outcome {
            Ok((c, choices)) => {
                audited
                    .push(json!({ "conflict": c.id, "resolution": choices_for_audit(&choices) }));
                json!({ "conflict": item.conflict, "status": c.status })
            }
            Err(e) => json!({
                "conflict": item.conflict,
                "error": { "code": e.code, "message": e.message, "field": e.field },
            }),
        });
    }
    if !audited.is_empty() {
        audit(
            &state,
            &who,
            Some(&tenant),
            "conflict.resolve_bulk",
            format!("conflicts/{tenant}"),
            None,
            Some(json!({ "resolved": audited })),
        )
        .await?;
    }
    Ok(Json(json!({ "results": results })).into_response())
}

// ---- dead letters --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadLettersQuery {
    stage: Option<String>,
    error_class: Option<String>,
    field: Option<String>,
    status: Option<String>,
    original_topic: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn dead_letter_status(s: Option<&str>) -> ApiResult<Option<DeadLetterStatus>> {
    match s {
        None | Some("") => Ok(None),
        Some(s) => DeadLetterStatus::parse(s).map(Some).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "must be pending, replaying, replayed or discarded",
            )
        }),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/dead-letters",
    tag = "dead-letters",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("stage" = Option<String>, Query, description = "transform or sink"),
        ("error_class" = Option<String>, Query, description = "validation, mapping, decode, permanent, ..."),
        ("field" = Option<String>, Query, description = "Only dead letters with an error about this field"),
        ("status" = Option<String>, Query, description = "pending, replaying, replayed or discarded; all when absent"),
        ("original_topic" = Option<String>, Query, description = "Only records from this topic"),
        ("limit" = Option<i64>, Query, description = "How many to return at most (1 to 500, default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Dead letters, newest first, as `{\"dead_letters\": [...], \"next_cursor\"}`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn list_dead_letters(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DeadLettersQuery>, QueryRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Query(q) = query.map_err(bad_query)?;
    let filter = DeadLetterFilter {
        stage: q.stage.filter(|s| !s.is_empty()),
        error_class: q.error_class.filter(|s| !s.is_empty()),
        field: q.field.filter(|s| !s.is_empty()),
        status: dead_letter_status(q.status.as_deref())?,
        original_topic: q.original_topic.filter(|s| !s.is_empty()),
        limit: limit_of(q.limit)?,
        cursor: q.cursor.filter(|s| !s.is_empty()),
    };
    let (dead_letters, next) = state.store.list_dead_letters(&tenant, &filter).await?;
    Ok(Json(json!({ "dead_letters": dead_letters, "next_cursor": next })).into_response())
}

async fn dead_letter_of(
    state: &ApiState,
    tenant: &TenantId,
    id: &str,
) -> ApiResult<DeskDeadLetter> {
    state
        .store
        .get_dead_letter(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("the dead letter"))
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/dead-letters/{dead_letter}",
    tag = "dead-letters",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("dead_letter" = String, Path, description = "The dead letter's id, `<dlq topic>:<partition>:<offset>`"),
    ),
    responses(
        (status = 200, description = "The dead letter: stage, error class, reason, field errors, where the original record came from, and what was done about it", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn get_dead_letter(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, id)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    Ok(Json(dead_letter_of(&state, &tenant, &id).await?).into_response())
}

/// Replays one dead letter: claim, produce, then mark (see [`crate::store::desk`]).
async fn replay_one(
    state: &ApiState,
    gateway: &dyn PipelineGateway,
    tenant: &TenantId,
    id: &str,
    by: &str,
) -> ApiResult<DeskDeadLetter> {
    let record = state
        .store
        .claim_dead_letter_replay(tenant, id, by)
        .await
        .map_err(|e| match e {
            ControlError::NotFound { .. } => ApiError::not_found("the dead letter"),
            ControlError::Conflict { .. } => not_pending("dead letter", "not pending"),
            e => e.into(),
        })?;
    let produced = gateway.replay(&record).await;
    let row = state
        .store
        .finish_dead_letter_replay(tenant, id, produced.is_ok())
        .await?;
    produced.map_err(gateway_error)?;
    Ok(row)
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/dead-letters/{dead_letter}/replay",
    tag = "dead-letters",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("dead_letter" = String, Path, description = "The dead letter's id, `<dlq topic>:<partition>:<offset>`"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The original record is back on its topic, acknowledged by the broker; the dead letter is `replayed`", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 409, description = "Conflicts with the object's current state", body = ErrorBody),
        (status = 422, description = "The pipeline refuses the record (e.g. its topic is not this hub's)", body = ErrorBody),
        (status = 501, description = "This node is not connected to the pipeline", body = ErrorBody),
        (status = 503, description = "The pipeline did not acknowledge; the dead letter stays pending", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn replay_dead_letter(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((tenant, id)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let gateway = gateway(&state)?;
    let before = dead_letter_of(&state, &tenant, &id).await?;
    let row = replay_one(&state, gateway, &tenant, &id, &who.actor()).await?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "dead_letter.replay",
        format!("dead_letter/{id}"),
        Some(json!({ "status": before.status })),
        Some(json!({ "status": row.status, "original_topic": row.original_topic })),
    )
    .await?;
    Ok(Json(row).into_response())
}

/// What a bulk replay picks: the pending dead letters matching a filter.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayFilter {
    stage: Option<String>,
    error_class: Option<String>,
    field: Option<String>,
    original_topic: Option<String>,
}

/// A bulk replay: these `ids`, or every pending dead letter matching `filter`, or every
/// pending one (`all: true`, e.g. after a mapping fix).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkReplayBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    filter: Option<ReplayFilter>,
    #[serde(default)]
    all: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/dead-letters/replay",
    tag = "dead-letters",
    request_body = BulkReplayBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "`{\"replayed\": [ids], \"failed\": [{id, error}], \"more\"}`: up to 500 per request; `more` says pending ones matching remain", body = Object),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
        (status = 501, description = "This node is not connected to the pipeline", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn replay_dead_letters(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<BulkReplayBody>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let filter = match (body.ids, body.filter, body.all) {
        (Some(ids), None, None | Some(false)) => {
            if ids.is_empty() || ids.len() > MAX_BULK {
                return Err(ApiError::invalid(
                    "ids",
                    format!("name 1 to {MAX_BULK} dead letters"),
                ));
            }
            Err(ids)
        }
        (None, Some(f), None | Some(false)) => Ok(f),
        (None, None, Some(true)) => Ok(ReplayFilter::default()),
        _ => {
            return Err(ApiError::invalid(
                "ids",
                "give `ids`, or a `filter`, or `all: true`",
            ));
        }
    };
    let gateway = gateway(&state)?;
    let (ids, more, picked) = match filter {
        Err(ids) => (ids, false, json!({ "ids": "listed" })),
        Ok(f) => {
            let picked = json!({
                "stage": f.stage, "error_class": f.error_class, "field": f.field,
                "original_topic": f.original_topic,
            });
            let (rows, next) = state
                .store
                .list_dead_letters(
                    &tenant,
                    &DeadLetterFilter {
                        stage: f.stage,
                        error_class: f.error_class,
                        field: f.field,
                        status: Some(DeadLetterStatus::Pending),
                        original_topic: f.original_topic,
                        limit: MAX_BULK as i64,
                        cursor: None,
                    },
                )
                .await?;
            // Oldest first: a key's records go back in the order they first came.
            (
                rows.into_iter().rev().map(|d| d.id).collect::<Vec<_>>(),
                next.is_some(),
                picked,
            )
        }
    };
    let mut replayed = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        match replay_one(&state, gateway, &tenant, &id, &who.actor()).await {
            Ok(_) => replayed.push(id),
            Err(e) => failed.push(json!({
                "id": id,
                "error": { "code": e.code, "message": e.message },
            })),
        }
    }
    audit(
        &state,
        &who,
        Some(&tenant),
        "dead_letter.replay_bulk",
        format!("dead_letters/{tenant}"),
        None,
        Some(json!({ "selection": picked, "replayed": replayed, "failed": failed.len() })),
    )
    .await?;
    Ok(Json(json!({ "replayed": replayed, "failed": failed, "more": more })).into_response())
}

/// Why a dead letter is given up on.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscardBody {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/dead-letters/{dead_letter}/discard",
    tag = "dead-letters",
    request_body = DiscardBody,
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("dead_letter" = String, Path, description = "The dead letter's id, `<dlq topic>:<partition>:<offset>`"),
        ("x-csrf-token" = Option<String>, Header, description = "The session's CSRF token: required with the session cookie, not with a bearer token"),
    ),
    responses(
        (status = 200, description = "The dead letter, discarded with the reason (stored masked)", body = Object),
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
pub(super) async fn discard_dead_letter(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<DiscardBody>,
) -> ApiResult {
    let Path((tenant, id)) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let before = dead_letter_of(&state, &tenant, &id).await?;
    if before.status != DeadLetterStatus::Pending {
        return Err(not_pending("dead letter", before.status.as_str()));
    }
    let row = state
        .store
        .discard_dead_letter(&tenant, &id, &who.actor(), &body.reason)
        .await
        .map_err(|e| match e {
            ControlError::Conflict { .. } => not_pending("dead letter", "no longer pending"),
            e => e.into(),
        })?;
    audit(
        &state,
        &who,
        Some(&tenant),
        "dead_letter.discard",
        format!("dead_letter/{id}"),
        Some(json!({ "status": before.status })),
        Some(json!({ "status": row.status, "reason": row.discard_reason })),
    )
    .await?;
    Ok(Json(row).into_response())
}
