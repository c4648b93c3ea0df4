//! Who is calling: a bearer API token (`Authorization: Bearer hubt_…`, looked up by its hash)
//! or the console's session cookie. A session request that changes anything (every method but
//! GET, HEAD and OPTIONS) must also carry the session's CSRF token in [`CSRF_HEADER`].
//!
//! An `Authorization` header, when present, decides alone: a bad token is 401 even if a valid
//! cookie rides along, so a machine never silently acts as the browser's user.

use std::net::SocketAddr;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};

use super::{ApiError, ApiState};
use crate::auth::cookie::session_cookie_name;
use crate::auth::{Caller, Principal};
use crate::secret::Secret;

/// The header the console echoes the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller, as the guard hands it to handlers.
#[derive(Debug, Clone)]
pub struct Authed {
    /// Who, with every role.
    pub caller: Caller,
    /// The session token, when the caller came with the session cookie (for sign-out).
    pub session_token: Option<Secret<String>>,
    /// The client's network address, for the audit log.
    pub client_addr: String,
}

impl Authed {
    /// The audit log's actor: `user:<id>` or `token:<id>`, never an e-mail address.
    pub fn actor(&self) -> String {
        match &self.caller.principal {
            Principal::User(u) => format!("user:{u}"),
            Principal::ApiToken(id) => format!("token:{id}"),
        }
    }
}

/// The client's address from the connection (`into_make_service_with_connect_info`), or
/// `unknown` when the server was not built with it.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

fn client_addr(ext: &axum::http::Extensions) -> String {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a)
        // What axum's own `ConnectInfo` extractor falls back to (tests, embedding servers).
        .or_else(|| ext.get::<MockConnectInfo<SocketAddr>>().map(|m| &m.0))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The session token in the request's `Cookie` headers, if any.
pub fn session_cookie(headers: &HeaderMap, tls: bool) -> Option<String> {
    let name = session_cookie_name(tls);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Authenticates a request (see the module docs).
pub async fn authenticate(state: &ApiState, parts: &Parts) -> Result<Authed, ApiError> {
    let headers = &parts.headers;
    let addr = client_addr(&parts.extensions);
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthenticated)?;
        let caller = state
            .store
            .caller_for_api_token(token)
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        return Ok(Authed {
            caller,
            session_token: None,
            client_addr: addr,
        });
    }
    let token = session_cookie(headers, state.config.tls).ok_or_else(ApiError::unauthenticated)?;
    let (caller, session) = state
        .store
        .caller_for_session(&token)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if presented.is_empty() || !session.csrf_matches(presented) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "send the session's CSRF token in the X-CSRF-Token header",
            ));
        }
    }
    Ok(Authed {
        caller,
        session_token: Some(Secret::new(token)),
        client_addr: addr,
    })
}
