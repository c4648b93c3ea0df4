//! `GET /api/v1/ws/sync-monitor`: the live sync feed, over a WebSocket.
//!
//! After the upgrade the server sends one JSON text message per [`SyncEvent`] (`sync_started`,
//! `sync_progress`, `sync_completed`, `sync_metrics`) of every tenant the caller may see — a
//! platform admin sees all, anyone else the tenants they are a member of (at least viewer);
//! `?tenant=` narrows the feed to one tenant (another tenant's answers 404, as everywhere).
//! Events come from the node's [`crate::events::EventBus`], which in a cluster carries every
//! node's events, so any node's feed shows every node's jobs.
//!
//! Authentication is the API's own, checked before the upgrade: a bearer token (machines), or
//! the session cookie (the console; a browser cannot set headers on a WebSocket). A browser
//! upgrade from another origin is refused (403 `cross_origin_websocket`): cookies would
//! otherwise let any page open the feed in the user's name. The caller's access is checked
//! again every [`RECHECK`]: a revoked token, an ended session or a removed membership ends
//! the feed (close code 1008, policy violation).
//!
//! A client that falls behind by more than the bus's buffer is sent `{"type": "lagged",
//! "missed": n}` and carries on with the newest events; the job rows (`GET …/jobs`) stay the
//! record.

use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::auth::Authed;
use super::error::{ApiError, ErrorBody, bad_query};
use super::{ApiState, Need, Routes, Verb};
use crate::auth::{Access, Caller, Role, TenantId};

/// How often a connected caller's access is checked again.
#[cfg(not(test))]
pub const RECHECK: Duration = Duration::from_secs(30);
/// How often a connected caller's access is checked again (short in tests).
#[cfg(test)]
pub const RECHECK: Duration = Duration::from_millis(200);

/// How often the server pings an idle client.
const PING_EVERY: Duration = Duration::from_secs(20);

pub(super) fn register(r: Routes) -> Routes {
    r.add(
        Verb::Get,
        "/ws/sync-monitor",
        Need::Authenticated,
        sync_monitor,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MonitorQuery {
    tenant: Option<String>,
}

/// The credential the caller came with, kept to check its access again later.
#[derive(Debug, Clone)]
enum Credential {
    Token(String),
    Session(String),
}

#[utoipa::path(
    get,
    path = "/api/v1/ws/sync-monitor",
    tag = "monitor",
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant's events"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket: then one JSON text message per \
            event, `{\"type\": \"sync_started\" | \"sync_progress\" | \"sync_completed\" | \
            \"sync_metrics\", \"tenant\", \"connector\", \"job_id\", ...}`"),
        (status = 401, description = "Not signed in, or no valid API token", body = ErrorBody),
        (status = 403, description = "An upgrade from another origin", body = ErrorBody),
        (status = 404, description = "`tenant` is absent, or another tenant's", body = ErrorBody),
        (status = 422, description = "A query parameter is wrong; `field` names it", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade request", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("sessionCookie" = [])),
)]
pub(super) async fn sync_monitor(
    State(state): State<ApiState>,
    Extension(who): Extension<Authed>,
    headers: HeaderMap,
    query: Result<Query<MonitorQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let only = match q.tenant {
        None => None,
        Some(raw) => {
            let tenant = TenantId::new(raw).map_err(|_| ApiError::not_found("the tenant"))?;
            if who.caller.can(&tenant, Role::Viewer) != Access::Allowed
                || state.store.get_tenant(&tenant).await?.is_none()
            {
                return Err(ApiError::not_found("the tenant"));
            }
            Some(tenant)
        }
    };
    let ws = ws.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_upgrade_required",
            "this endpoint is a WebSocket: connect with an upgrade request",
        )
    })?;
    let credential = if let Some(session) = who.session_token.as_ref() {
        // Cookies ride along on any page's WebSocket: only our own origin may use them.
        if !same_origin(&headers) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin_websocket",
                "a WebSocket from another origin may not use the session cookie",
            ));
        }
        Credential::Session(session.expose().clone())
    } else {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string())
            .ok_or_else(ApiError::unauthenticated)?;
        Credential::Token(token)
    };
    Ok(ws.on_upgrade(move |socket| feed(socket, state, who.caller, credential, only)))
}

/// True when the request has no `Origin` (not a browser) or its host is the `Host` asked for.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin)
        .trim_end_matches('/');
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

fn may_see(caller: &Caller, only: Option<&TenantId>, tenant: &str) -> bool {
    let Ok(tenant) = TenantId::new(tenant) else {
        return false;
    };
    if only.is_some_and(|o| *o != tenant) {
        return false;
    }
    caller.can(&tenant, Role::Viewer) == Access::Allowed
}

/// The caller as the store sees them now; `None` once the credential no longer works.
async fn recheck(state: &ApiState, credential: &Credential) -> Option<Caller> {
    match credential {
        Credential::Token(t) => state.store.caller_for_api_token(t).await.ok().flatten(),
        Credential::Session(s) => state
            .store
            .caller_for_session(s)
            .await
            .ok()
            .flatten()
            .map(|(c, _)| c),
    }
}

async fn feed(
    mut socket: WebSocket,
    state: ApiState,
    mut caller: Caller,
    credential: Credential,
    only: Option<TenantId>,
) {
    let mut events = state.events.subscribe();
    let mut recheck_at = tokio::time::interval(RECHECK);
    recheck_at.tick().await;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            event = events.recv() => {
                let text = match event {
                    Ok(e) if may_see(&caller, only.as_ref(), e.tenant()) => {
                        match serde_json::to_string(&e) {
                            Ok(t) => t,
                            Err(_) => continue,
                        }
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => json!({"type": "lagged", "missed": n}).to_string(),
                    Err(RecvError::Closed) => return,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            _ = recheck_at.tick() => {
                match recheck(&state, &credential).await {
                    Some(c) if only.as_ref().is_none_or(|t| c.can(t, Role::Viewer) == Access::Allowed) => caller = c,
                    _ => {
                        let _ = socket.send(Message::Close(Some(CloseFrame {
                            code: close_code::POLICY,
                            reason: "access revoked".into(),
                        }))).await;
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // The feed is one-way: client messages are ignored, pongs included.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests;
