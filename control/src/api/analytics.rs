//! `GET /api/v1/tenants/{tenant}/analytics`: sync analytics per connector over a time range
//! (see [`crate::store::analytics`] for what each figure counts).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody, bad_path, bad_query};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::{Role, TenantId};
use crate::store::analytics::Analytics;

/// The range when the request names none: the last 7 days.
pub const DEFAULT_RANGE_MS: i64 = 7 * 24 * 3600 * 1000;

pub(super) fn register(r: Routes) -> Routes {
    r.add(
        Verb::Get,
        "/tenants/{tenant}/analytics",
        Need::Tenant(Role::Viewer),
        analytics,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnalyticsQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    connector: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/analytics",
    tag = "analytics",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("from_ms" = Option<i64>, Query, description = "Range start, ms since the epoch (default: 7 days before `to_ms`)"),
        ("to_ms" = Option<i64>, Query, description = "Range end, ms since the epoch, exclusive (default: now)"),
        ("connector" = Option<String>, Query, description = "Only this connector"),
    ),
    responses(
        (status = 200, description = "Per connector and in total: jobs, success rate, average sync time, records per hour, validation failures by field, conflicts and conflict rate", body = Analytics),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn analytics(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<AnalyticsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(tenant) = path.map_err(bad_path)?;
    let Query(q) = query.map_err(bad_query)?;
    let tenant = TenantId::new(tenant).map_err(|_| ApiError::not_found("the tenant"))?;
    let to_ms = q.to_ms.unwrap_or_else(|| state.store.now_ms());
    let from_ms = q.from_ms.unwrap_or(to_ms.saturating_sub(DEFAULT_RANGE_MS));
    let a = state
        .store
        .analytics(&tenant, from_ms, to_ms, q.connector.as_deref())
        .await?;
    Ok(Json(a).into_response())
}
