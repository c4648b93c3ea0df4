//! HubSpot credentials (vendor-apis.md §3.1): a private-app token (`pat-<region>-…`, never
//! expires), or OAuth 2.0 authorization code + refresh (`POST /oauth/v1/token`, access tokens
//! for `expires_in` = 1800 s, refresh tokens that do not expire and are not rotated).
//!
//! The access token is held in memory behind a lock; a refresh is made before the stated
//! expiry, and after a 401 (`EXPIRED_AUTHENTICATION`) by [`crate::http::VendorHttp`]'s
//! refresh-once rule. Concurrent 401s refresh once: a caller whose rejected token has already
//! been replaced just uses the new one.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{ErrorClass, VendorError};
use crate::http::{Bucket, Credentials, Request, Secret, VendorHttp, unexpected};
use crate::oauth::{AuthorizeRequest, TokenState, random_token, url_with_query};

use super::errors::VENDOR;

/// The OAuth app's settings (§3.1).
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// `https://app.hubspot.com/oauth/authorize`.
    pub authorize_url: String,
    /// `https://api.hubapi.com/oauth/v1/token`; configurable because v1 is announced as
    /// deprecated (end date 16 Feb 2027, §3.1).
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
}

impl OAuthApp {
    /// The URL to send the installing user to, with a fresh `state` to check on the callback.
    /// HubSpot documents no PKCE for this flow (§3.1), so none is sent.
    pub fn authorize(&self) -> AuthorizeRequest {
        let state = random_token();
        let scope = self.scopes.join(" ");
        let url = url_with_query(
            &self.authorize_url,
            &[
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", &scope),
                ("state", &state),
            ],
        );
        AuthorizeRequest {
            url,
            state,
            pkce: None,
        }
    }

    async fn token_call(
        &self,
        http: &VendorHttp,
        pairs: &[(&str, &str)],
    ) -> Result<TokenState, VendorError> {
        let req = Request::new(Method::POST, &self.token_url, "oauth_token")
            .form(pairs)
            .bucket(Bucket::None);
        let resp = http.send_anonymous(&req).await?;
        parse_token_response(resp.status, &resp.body)
    }

    /// `grant_type=authorization_code` (§3.1).
    pub async fn exchange_code(
        &self,
        http: &VendorHttp,
        code: &str,
    ) -> Result<TokenState, VendorError> {
        self.token_call(
            http,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose()),
                ("redirect_uri", &self.redirect_uri),
                ("code", code),
            ],
        )
        .await
    }

    /// `grant_type=refresh_token` (§3.1). HubSpot does not rotate refresh tokens; if a
    /// response carries one anyway, it replaces the old.
    pub async fn refresh(
        &self,
        http: &VendorHttp,
        refresh_token: &Secret,
    ) -> Result<TokenState, VendorError> {
        self.token_call(
            http,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose()),
                ("refresh_token", refresh_token.expose()),
            ],
        )
        .await
    }
}

/// `{"token_type":"bearer","refresh_token":"…","access_token":"…","expires_in":1800}`.
fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenState, VendorError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| unexpected(VENDOR, status, "the token response is not JSON".into()))?;
    let access = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            unexpected(
                VENDOR,
                status,
                "the token response has no access_token".into(),
            )
        })?;
    let refresh = v
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(Secret::new);
    let expires_in = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    Ok(TokenState::new(Secret::new(access), refresh, expires_in))
}

/// How a HubSpot client authenticates.
#[derive(Debug)]
// One per client, held behind an `Arc`: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum HubSpotAuth {
    /// A private app's static token (§3.1).
    PrivateApp(Secret),
    /// An installed OAuth app: the tokens, refreshed through `http`.
    OAuth {
        app: OAuthApp,
        http: VendorHttp,
        tokens: Mutex<TokenState>,
    },
}

impl HubSpotAuth {
    pub fn private_app(token: impl Into<String>) -> Self {
        HubSpotAuth::PrivateApp(Secret::new(token))
    }

    /// Credentials from tokens already obtained (e.g. stored after the install).
    pub fn oauth(app: OAuthApp, http: VendorHttp, tokens: TokenState) -> Self {
        HubSpotAuth::OAuth {
            app,
            http,
            tokens: Mutex::new(tokens),
        }
    }

    /// Finishes the install: exchanges the callback's `code`.
    pub async fn from_code(
        app: OAuthApp,
        http: VendorHttp,
        code: &str,
    ) -> Result<Self, VendorError> {
        let tokens = app.exchange_code(&http, code).await?;
        Ok(Self::oauth(app, http, tokens))
    }
}

fn no_refresh_token() -> VendorError {
    VendorError {
        vendor: VENDOR,
        status: 401,
        code: "NO_REFRESH_TOKEN".into(),
        message: "the OAuth access token expired and there is no refresh token; reinstall the app"
            .into(),
        class: ErrorClass::Permanent,
    }
}

impl Credentials for HubSpotAuth {
    async fn bearer(&self) -> Result<Secret, VendorError> {
        match self {
            HubSpotAuth::PrivateApp(t) => Ok(t.clone()),
            HubSpotAuth::OAuth { app, http, tokens } => {
                let mut t = tokens.lock().await;
                if !t.is_fresh() {
                    let refresh = t.refresh_token.clone().ok_or_else(no_refresh_token)?;
                    let mut new = app.refresh(http, &refresh).await?;
                    new.refresh_token = new.refresh_token.or(Some(refresh));
                    *t = new;
                }
                Ok(t.access_token.clone())
            }
        }
    }

    async fn refresh(&self, rejected: &Secret) -> Result<(), VendorError> {
        match self {
            // A static token cannot be refreshed: the 401 goes back to the caller as is.
            HubSpotAuth::PrivateApp(_) => Err(VendorError {
                vendor: VENDOR,
                status: 401,
                code: "INVALID_AUTHENTICATION".into(),
                message: "HubSpot refused the private-app token; check it in the app's settings"
                    .into(),
                class: ErrorClass::Permanent,
            }),
            HubSpotAuth::OAuth { app, http, tokens } => {
                let mut t = tokens.lock().await;
                if t.access_token != *rejected {
                    return Ok(()); // another call refreshed already
                }
                let refresh = t.refresh_token.clone().ok_or_else(no_refresh_token)?;
                let mut new = app.refresh(http, &refresh).await?;
                new.refresh_token = new.refresh_token.or(Some(refresh));
                *t = new;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_carries_client_scopes_and_state() {
        let app = OAuthApp {
            authorize_url: "https://app.hubspot.com/oauth/authorize".into(),
            token_url: "https://api.hubapi.com/oauth/v1/token".into(),
            client_id: "cid".into(),
            client_secret: Secret::new("s"),
            redirect_uri: "https://hub.example/cb".into(),
            scopes: vec!["crm.objects.contacts.read".into(), "oauth".into()],
        };
        let a = app.authorize();
        assert!(
            a.url
                .starts_with("https://app.hubspot.com/oauth/authorize?client_id=cid&")
        );
        assert!(a.url.contains("scope=crm.objects.contacts.read+oauth"));
        assert!(a.url.contains(&format!("state={}", a.state)));
    }

    #[test]
    fn garbled_token_responses_are_errors_not_panics() {
        for body in [&b"<html>"[..], b"{}", b"[]", b"{\"access_token\":7}"] {
            assert!(parse_token_response(200, body).is_err());
        }
        let ok = parse_token_response(
            200,
            br#"{"access_token":"a","refresh_token":"r","expires_in":1800}"#,
        )
        .unwrap();
        assert!(ok.is_fresh());
        assert_eq!(format!("{:?}", ok.access_token), "Secret(***)");
    }
}
