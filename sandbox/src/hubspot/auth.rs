//! HubSpot authentication (vendor-apis.md §3.1): private-app bearer tokens (`pat-…`, never
//! expire) and OAuth 2.0 authorization code + refresh (`POST /oauth/v1/token`, access tokens
//! with `expires_in`, 1800 s by default; refresh tokens do not expire and are not rotated).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::Shared;
use super::errors::ApiError;
use super::limits::AppKind;
use crate::common::{lock, parse_form, token};

/// Authorization codes live 10 minutes and are single-use.
const CODE_LIFETIME_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Default)]
pub struct AuthState {
    /// code → (expires at ms, redirect_uri it was issued for)
    codes: HashMap<String, (i64, String)>,
    /// access token → expires at ms
    access: HashMap<String, i64>,
    refresh: HashSet<String>,
}

impl AuthState {
    /// Makes every OAuth access token issued so far expired (a fault knob).
    pub fn expire_all(&mut self, now_ms: i64) {
        for exp in self.access.values_mut() {
            *exp = (*exp).min(now_ms);
        }
    }
}

/// Checks `Authorization: Bearer …`; the 401 bodies carry §1.2's categories.
pub(crate) fn authenticate(sh: &Shared, headers: &HeaderMap) -> Result<AppKind, ApiError> {
    let missing = || {
        ApiError::new(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let (scheme, tok) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    let tok = tok.trim();
    if sh.config.private_app_tokens.iter().any(|t| t == tok) {
        return Ok(AppKind::PrivateApp);
    }
    let now = sh.clock.now_ms();
    match lock(&sh.state).auth.access.get(tok) {
        Some(&exp) if exp > now => Ok(AppKind::OAuth),
        Some(&exp) => Err(ApiError::new(
            401,
            "EXPIRED_AUTHENTICATION",
            format!(
                "The OAuth token used to make this call expired {} second(s) ago.",
                (now - exp) / 1000
            ),
        )),
        None => Err(ApiError::new(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found or invalid: the OAuth token is unknown.",
        )),
    }
}

/// `GET /oauth/authorize?client_id&redirect_uri&scope&state` (§3.1). Without `approve=1` it
/// shows a consent page whose link approves; with it, redirects to `redirect_uri` with a code.
pub(crate) async fn authorize(State(sh): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = parse_form(q.unwrap_or_default().as_bytes());
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != sh.config.client_id {
        return (StatusCode::BAD_REQUEST, Html("<h1>Unknown client_id</h1>")).into_response();
    }
    if get("redirect_uri") != sh.config.redirect_uri {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>redirect_uri does not match the app's</h1>"),
        )
            .into_response();
    }
    if get("approve") != "1" {
        let mut approve: Vec<(String, String)> = q.clone().into_iter().collect();
        approve.sort();
        approve.push(("approve".into(), "1".into()));
        let link: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(approve)
            .finish();
        return Html(format!(
            "<!doctype html><title>Connect app</title><h1>HubSpot sandbox</h1>\
             <p>Portal {} is asked to grant access.</p>\
             <p><a id=\"approve\" href=\"/oauth/authorize?{}\">Connect app</a></p>",
            sh.config.portal_id,
            html_escape(&link)
        ))
        .into_response();
    }
    let now = sh.clock.now_ms();
    let code = {
        let mut st = lock(&sh.state);
        let code = token(&mut st.rng, "code-");
        st.auth.codes.insert(
            code.clone(),
            (now + CODE_LIFETIME_MS, get("redirect_uri").to_owned()),
        );
        code
    };
    let mut target = form_urlencoded::Serializer::new(String::new());
    target.append_pair("code", &code);
    if let Some(state) = q.get("state") {
        target.append_pair("state", state);
    }
    let sep = if sh.config.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{sep}{}", sh.config.redirect_uri, target.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// `POST /oauth/v1/token` (form body), §3.1.
pub(crate) async fn token_endpoint(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = parse_form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != sh.config.client_id {
        return ApiError::oauth("BAD_CLIENT_ID", "missing or unknown client id").into_response();
    }
    if get("client_secret") != sh.config.client_secret {
        return ApiError::oauth(
            "BAD_CLIENT_ID",
            "client secret does not match the client id",
        )
        .into_response();
    }
    let now = sh.clock.now_ms();
    let mut st = lock(&sh.state);
    let refresh = match get("grant_type") {
        "authorization_code" => {
            let Some((exp, redirect)) = st.auth.codes.remove(get("code")) else {
                return ApiError::oauth("BAD_AUTH_CODE", "missing or unknown auth code")
                    .into_response();
            };
            if exp <= now {
                return ApiError::oauth("BAD_AUTH_CODE", "auth code is expired").into_response();
            }
            if redirect != get("redirect_uri") {
                return ApiError::oauth("BAD_REDIRECT_URI", "redirect_uri does not match")
                    .into_response();
            }
            let r = token(&mut st.rng, "na1-");
            st.auth.refresh.insert(r.clone());
            r
        }
        "refresh_token" => {
            let r = get("refresh_token").to_owned();
            if !st.auth.refresh.contains(&r) {
                return ApiError::oauth("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
                    .into_response();
            }
            r
        }
        _ => {
            return ApiError::oauth(
                "BAD_GRANT_TYPE",
                "grant_type must be authorization_code or refresh_token",
            )
            .into_response();
        }
    };
    let lifetime_s = sh.config.access_token_lifetime.as_secs() as i64;
    // §3.1: access tokens can be ~300 characters; a long token catches short columns early.
    let access = format!(
        "{}{}",
        token(&mut st.rng, "CJ"),
        "x".repeat(sh.config.access_token_padding)
    );
    st.auth
        .access
        .insert(access.clone(), now + lifetime_s * 1000);
    Json(json!({
        "token_type": "bearer",
        "refresh_token": refresh,
        "access_token": access,
        "expires_in": lifetime_s,
    }))
    .into_response()
}

/// `GET /oauth/v1/access-tokens/{token}`: the token's metadata (§3.1, [memory]).
pub(crate) async fn token_info(State(sh): State<Arc<Shared>>, Path(tok): Path<String>) -> Response {
    let now = sh.clock.now_ms();
    let exp = lock(&sh.state).auth.access.get(&tok).copied();
    match exp {
        Some(exp) if exp > now => Json(json!({
            "token": tok,
            "user": "sandbox-user@example.com",
            "hub_id": sh.config.portal_id,
            "app_id": sh.config.app_id,
            "expires_in": (exp - now) / 1000,
            "scopes": ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
                       "crm.objects.companies.read", "crm.objects.companies.write",
                       "crm.objects.deals.read", "crm.objects.deals.write"],
            "token_type": "access",
        }))
        .into_response(),
        _ => ApiError::new(
            404,
            "OBJECT_NOT_FOUND",
            "The access token is expired or invalid",
        )
        .into_response(),
    }
}
