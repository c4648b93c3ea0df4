//! Salesforce OAuth (vendor-apis.md §2.1): `POST /services/oauth2/token` with the
//! `authorization_code`, `refresh_token`, JWT bearer and `client_credentials` grants, the
//! `GET /services/oauth2/authorize` approve page and `POST /services/oauth2/revoke`. Token
//! responses carry `instance_url`, `id`, `issued_at` (ms string) and `signature`, and **no
//! `expires_in`**; a session ends after the configured lifetime with 401 `INVALID_SESSION_ID`.
//!
//! JWT bearer: the assertion's claims are checked (`iss` = consumer key, `sub` = username, `aud`
//! = a login host, `exp` in the future, header `alg` RS256). Its RS256 signature is **not**
//! verified: the workspace has no JWT or RSA crate, and one is not worth adding for a simulator.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Shared;
use super::errors::{SfError, oauth_error};
use crate::common::{lock, parse_form, token};

const CODE_LIFETIME_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Default)]
pub struct AuthState {
    codes: HashMap<String, (i64, String)>,
    /// access token → expires at ms
    sessions: HashMap<String, i64>,
    refresh: HashSet<String>,
}

impl AuthState {
    /// Ends every session now (the token-expiry fault).
    pub fn expire_all(&mut self, now_ms: i64) {
        for exp in self.sessions.values_mut() {
            *exp = (*exp).min(now_ms);
        }
    }
}

/// `Authorization: Bearer <session>`; anything else is §2.9's 401 `INVALID_SESSION_ID`.
pub(crate) fn authenticate(sh: &Shared, headers: &HeaderMap) -> Result<(), SfError> {
    let tok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, t) = v.trim().split_once(' ')?;
            (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
                .then(|| t.trim().to_owned())
        })
        .ok_or_else(SfError::session)?;
    let now = sh.clock.now_ms();
    match lock(&sh.state).auth.sessions.get(&tok) {
        Some(&exp) if exp > now => Ok(()),
        _ => Err(SfError::session()),
    }
}

/// `GET /services/oauth2/authorize?response_type=code&client_id&redirect_uri&state[&approve=1]`.
pub(crate) async fn authorize(State(sh): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = parse_form(q.unwrap_or_default().as_bytes());
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != sh.config.consumer_key {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>error=invalid_client_id</h1>"),
        )
            .into_response();
    }
    if get("redirect_uri") != sh.config.redirect_uri {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>error=redirect_uri_mismatch</h1>"),
        )
            .into_response();
    }
    if get("response_type") != "code" {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>error=unsupported_response_type</h1>"),
        )
            .into_response();
    }
    if get("approve") != "1" {
        let mut pairs: Vec<(String, String)> = q.clone().into_iter().collect();
        pairs.sort();
        pairs.push(("approve".into(), "1".into()));
        let link = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        return Html(format!(
            "<!doctype html><title>Allow Access?</title><h1>Salesforce sandbox</h1>\
             <p>{} wants to access your data.</p><p><a id=\"allow\" href=\"/services/oauth2/authorize?{}\">Allow</a></p>",
            sh.config.username.replace('<', "&lt;"),
            link.replace('&', "&amp;").replace('"', "&quot;")
        ))
        .into_response();
    }
    let now = sh.clock.now_ms();
    let code = {
        let mut st = lock(&sh.state);
        let code = token(&mut st.rng, "aPrx");
        st.auth.codes.insert(
            code.clone(),
            (now + CODE_LIFETIME_MS, get("redirect_uri").to_owned()),
        );
        code
    };
    let mut target = form_urlencoded::Serializer::new(String::new());
    target.append_pair("code", &code);
    if let Some(s) = q.get("state") {
        target.append_pair("state", s);
    }
    let sep = if sh.config.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{sep}{}", sh.config.redirect_uri, target.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn decode_jwt(assertion: &str) -> Option<(Value, Value)> {
    let mut parts = assertion.split('.');
    let (h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h.trim_end_matches('=')).ok()?).ok()?;
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?).ok()?;
    Some((header, payload))
}

/// `POST /services/oauth2/token`.
pub(crate) async fn token_endpoint(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = parse_form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let cfg = &sh.config;
    let now = sh.clock.now_ms();
    let client_ok = || get("client_id") == cfg.consumer_key;
    let secret_ok = || get("client_secret") == cfg.consumer_secret;
    let mut refresh_out = None;
    match get("grant_type") {
        "authorization_code" => {
            if !client_ok() {
                return oauth_error(400, "invalid_client_id", "client identifier invalid");
            }
            if !secret_ok() {
                return oauth_error(400, "invalid_client", "invalid client credentials");
            }
            let mut st = lock(&sh.state);
            match st.auth.codes.remove(get("code")) {
                Some((exp, redirect)) if exp > now && redirect == get("redirect_uri") => {}
                Some((exp, _)) if exp <= now => {
                    return oauth_error(400, "invalid_grant", "expired authorization code");
                }
                Some(_) => {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "redirect_uri must match configuration",
                    );
                }
                None => return oauth_error(400, "invalid_grant", "invalid authorization code"),
            }
            let r = token(&mut st.rng, "5Aep861");
            st.auth.refresh.insert(r.clone());
            refresh_out = Some(r);
        }
        "refresh_token" => {
            if !client_ok() {
                return oauth_error(400, "invalid_client_id", "client identifier invalid");
            }
            let mut st = lock(&sh.state);
            let r = get("refresh_token");
            if !st.auth.refresh.contains(r) {
                return oauth_error(400, "invalid_grant", "expired access/refresh token");
            }
            // §2.1: with rotation on, every refresh returns a new refresh token and the old one
            // stops working.
            if cfg.rotate_refresh_tokens {
                st.auth.refresh.remove(r);
                let n = token(&mut st.rng, "5Aep861");
                st.auth.refresh.insert(n.clone());
                refresh_out = Some(n);
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let Some((header, claims)) = decode_jwt(get("assertion")) else {
                return oauth_error(400, "invalid_grant", "invalid assertion");
            };
            if header.get("alg").and_then(Value::as_str) != Some("RS256") {
                return oauth_error(400, "invalid_grant", "invalid assertion: alg must be RS256");
            }
            let claim = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
            if claim("iss") != cfg.consumer_key {
                return oauth_error(400, "invalid_client_id", "client identifier invalid");
            }
            if claim("sub") != cfg.username {
                return oauth_error(400, "invalid_grant", "user hasn't approved this consumer");
            }
            let aud_ok = match claims.get("aud") {
                Some(Value::String(a)) => cfg.jwt_audiences.contains(a),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|x| cfg.jwt_audiences.iter().any(|y| y == x)),
                _ => false,
            };
            if !aud_ok {
                return oauth_error(400, "invalid_grant", "audience is invalid");
            }
            match claims.get("exp").and_then(Value::as_i64) {
                Some(exp) if exp * 1000 > now => {}
                _ => return oauth_error(400, "invalid_grant", "expired assertion"),
            }
        }
        "client_credentials" => {
            if !client_ok() || !secret_ok() {
                return oauth_error(400, "invalid_client", "invalid client credentials");
            }
        }
        _ => return oauth_error(400, "unsupported_grant_type", "grant type not supported"),
    }
    let mut st = lock(&sh.state);
    let access = format!("{}!{}", cfg.org_id, token(&mut st.rng, "AR8AQ"));
    let lifetime_ms = cfg.session_lifetime.as_millis() as i64;
    st.auth.sessions.insert(access.clone(), now + lifetime_ms);
    drop(st);
    let id = format!(
        "https://login.salesforce.com/id/{}/{}",
        cfg.org_id, cfg.user_id
    );
    let issued_at = now.to_string();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(cfg.consumer_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let mut out = json!({
        "access_token": access,
        "instance_url": sh.base_url(),
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api refresh_token",
    });
    if let Some(r) = refresh_out {
        out["refresh_token"] = json!(r);
    }
    Json(out).into_response()
}

/// `POST /services/oauth2/revoke` with `token=…`.
pub(crate) async fn revoke(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = parse_form(&body);
    let t = f.get("token").cloned().unwrap_or_default();
    let mut st = lock(&sh.state);
    let found = st.auth.sessions.remove(&t).is_some() | st.auth.refresh.remove(&t);
    if found {
        StatusCode::OK.into_response()
    } else {
        oauth_error(
            400,
            "unsupported_token_type",
            "this token type is not supported",
        )
    }
}
