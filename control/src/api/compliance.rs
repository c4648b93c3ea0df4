//! `GET /api/v1/tenants/{tenant}/compliance-report`: the FTC Safeguards Rule report of a
//! tenant for a period (see [`crate::store::compliance`] for what it holds), as JSON.
//!
//! Admin or owner, as the audit log is: an admin already reads every part of it through other
//! endpoints (members, API tokens, the audit log and its export), so owner-only would protect
//! nothing and would keep the report from the people who run the tenant day to day.
//! Generating it is a sensitive read: it is audited (`compliance.report`, with the period)
//! before the data leaves, like the audit export, and later reports list it among the data
//! exports.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::auth::Authed;
use super::error::{ApiError, ErrorBody, bad_path, bad_query};
use super::handlers::{ApiResult, audit, tenant_id};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::Role;

/// The period a report covers when the request names none: the last 90 days.
pub const DEFAULT_PERIOD_MS: i64 = 90 * 24 * 3600 * 1000;

pub(super) fn register(r: Routes) -> Routes {
    r.add(
        Verb::Get,
        "/tenants/{tenant}/compliance-report",
        Need::Tenant(Role::Admin),
        compliance_report,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/compliance-report",
    tag = "compliance",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("from_ms" = Option<i64>, Query, description = "The period's start, included (ms since the epoch); default 90 days before `to_ms`"),
        ("to_ms" = Option<i64>, Query, description = "The period's end, excluded (ms since the epoch); default now"),
    ),
    responses(
        (status = 200, description = "The FTC Safeguards Rule report: access (members, platform admins, live API tokens with role, expiry and last use), credential age and rotations per connector, failed sign-ins, data exports and master-key rotations in the period; generating it is audited", body = Object),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn compliance_report(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> ApiResult {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = tenant_id(&tenant)?;
    let Query(q) = query.map_err(bad_query)?;
    // The end is excluded: one past now takes in what happened this millisecond.
    let to = q.to_ms.unwrap_or_else(|| state.store.now_ms() + 1);
    let from = q.from_ms.unwrap_or(to.saturating_sub(DEFAULT_PERIOD_MS));
    if from > to {
        return Err(ApiError::invalid("from_ms", "must not be after to_ms"));
    }
    // Audited before the data leaves: no report goes out unrecorded.
    audit(
        &state,
        &who,
        Some(&tenant),
        "compliance.report",
        format!("compliance-report/{tenant}"),
        None,
        Some(json!({ "format": "json", "from_ms": from, "to_ms": to })),
    )
    .await?;
    let report = state.store.compliance_report(&tenant, from, to).await?;
    Ok(Json(report).into_response())
}
