//! `GET /api/v1/tenants/{tenant}/api-usage`: each connector's vendor API calls against the
//! vendor's limits — today's use, what remains, the low-budget warning — and the daily
//! history, from what every node stored (`store::usage`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, bad_path, bad_query};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::{Role, TenantId};
use crate::store::usage::{UsageDay, check_day};

/// Longest history one request may ask for, in days.
const MAX_DAYS: i64 = 366;
/// History returned when the request names no `from`: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

pub(super) fn register(r: Routes) -> Routes {
    r.add(
        Verb::Get,
        "/tenants/{tenant}/api-usage",
        Need::Tenant(Role::Viewer),
        api_usage,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    connector: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The tenant's vendor API usage.
#[derive(Serialize, ToSchema)]
pub(super) struct UsageReport {
    tenant: String,
    /// First day of the history (UTC, `YYYY-MM-DD`).
    from: String,
    /// Last day of the history.
    to: String,
    /// Today (UTC), the day `today` of each connector refers to.
    today: String,
    connectors: Vec<ConnectorUsage>,
}

/// One connector's usage.
#[derive(Serialize, ToSchema)]
pub(super) struct ConnectorUsage {
    connector: String,
    vendor: String,
    limits: UsageLimits,
    today: DayUsage,
    /// One entry per day with calls in `from..=to`, oldest first.
    history: Vec<DayUsage>,
}

/// The limits in force (the latest stored).
#[derive(Serialize, ToSchema)]
pub(super) struct UsageLimits {
    /// Requests per day: the vendor's reported allocation when it gives one, else the
    /// configured or published one.
    daily: i64,
    /// Requests per window, where the vendor publishes one.
    per_window: Option<i64>,
    window_seconds: i64,
    /// The warning is on below this percentage of the daily limit left.
    warn_percent: i64,
}

/// One day of one connector.
#[derive(Serialize, ToSchema)]
pub(super) struct DayUsage {
    day: String,
    /// Calls the hub's nodes made.
    calls: i64,
    /// Requests counted against the day: the vendor's own count when it reports one
    /// (Salesforce's `Sforce-Limit-Info`, which includes other tools' calls), else `calls`.
    used: i64,
    limit: i64,
    remaining: i64,
    percent_used: f64,
    /// Less than `warn_percent` of the limit is left.
    warning: bool,
    /// `used` and `limit` are the vendor's own numbers.
    vendor_reported: bool,
}

impl From<&UsageDay> for DayUsage {
    fn from(d: &UsageDay) -> Self {
        DayUsage {
            day: d.day.clone(),
            calls: d.calls,
            used: d.used(),
            limit: d.limit(),
            remaining: d.remaining(),
            percent_used: (d.percent_used() * 100.0).round() / 100.0,
            warning: d.warning(),
            vendor_reported: d.vendor_used.is_some() && d.vendor_limit.is_some_and(|l| l > 0),
        }
    }
}

fn day_of(unix_ms: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

fn parse_day(field: &'static str, raw: &str) -> Result<chrono::NaiveDate, ApiError> {
    check_day(field, raw)?;
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, "must be a date written YYYY-MM-DD (UTC)"))
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/api-usage",
    tag = "usage",
    params(
        ("tenant" = String, Path, description = "The tenant's id"),
        ("connector" = Option<String>, Query, description = "Only this connector"),
        ("from" = Option<String>, Query, description = "First day of the history, YYYY-MM-DD (UTC); default 29 days before `to`"),
        ("to" = Option<String>, Query, description = "Last day of the history, YYYY-MM-DD (UTC); default today"),
    ),
    responses(
        (status = 200, description = "Each connector's vendor API calls, limits, remaining budget, warning flag and daily history", body = UsageReport),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "The caller's role is too low", body = ErrorBody),
        (status = 404, description = "Absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; `field` names it", body = ErrorBody),
        (status = 429, description = "Too many requests for this tenant; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn api_usage(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(tenant) = path.map_err(bad_path)?;
    let tenant = TenantId::new(tenant).map_err(|_| ApiError::not_found("the tenant"))?;
    let Query(q) = query.map_err(bad_query)?;
    let today = day_of(state.store.now_ms());
    let to = match q.to.as_deref() {
        Some(t) => parse_day("to", t)?,
        None => today,
    };
    let from = match q.from.as_deref() {
        Some(f) => parse_day("from", f)?,
        None => to - chrono::Days::new((DEFAULT_DAYS - 1) as u64),
    };
    if from > to {
        return Err(ApiError::invalid("from", "must not be after 'to'"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::invalid(
            "from",
            format!("the range may span at most {MAX_DAYS} days"),
        ));
    }
    let connector = q.connector.as_deref().filter(|c| !c.is_empty());
    if connector.is_some_and(|c| c.len() > 64) {
        return Err(ApiError::invalid("connector", "at most 64 characters"));
    }
    let text = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    let (from, to, today) = (text(from), text(to), text(today));
    let history = state
        .store
        .api_usage(&tenant, connector, &from, &to)
        .await?;
    let current = state
        .store
        .api_usage(&tenant, connector, &today, &today)
        .await?;

    let mut names: Vec<&str> = history
        .iter()
        .chain(&current)
        .map(|d| d.connector.as_str())
        .collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    let connectors = names
        .into_iter()
        .map(|name| {
            let days: Vec<&UsageDay> = history.iter().filter(|d| d.connector == name).collect();
            let now = current.iter().find(|d| d.connector == name);
            // The latest row says which limits are in force.
            let latest = now
                .or(days.last().copied())
                .expect("a connector with a row");
            let today_usage = match now {
                Some(d) => DayUsage::from(d),
                None => DayUsage::from(&UsageDay {
                    day: today.clone(),
                    calls: 0,
                    vendor_used: None,
                    vendor_limit: None,
                    ..latest.clone()
                }),
            };
            ConnectorUsage {
                connector: name.to_owned(),
                vendor: latest.vendor.clone(),
                limits: UsageLimits {
                    daily: latest.limit(),
                    per_window: latest.window_limit,
                    window_seconds: latest.window_seconds,
                    warn_percent: latest.warn_percent,
                },
                today: today_usage,
                history: days.into_iter().map(DayUsage::from).collect(),
            }
        })
        .collect();
    Ok(Json(UsageReport {
        tenant: tenant.to_string(),
        from,
        to,
        today,
        connectors,
    })
    .into_response())
}
