//! Salesforce credentials (vendor-apis.md §2.1): the OAuth 2.0 web-server flow (authorize URL
//! with `state` and PKCE S256, code exchange, refresh — with or without rotation) and the JWT
//! bearer flow (server to server, no refresh token: a new assertion is minted instead).
//!
//! Token responses carry `instance_url` — the per-org host every API call goes to — and **no
//! `expires_in`**: a client learns that a session ended from 401 `INVALID_SESSION_ID`, then
//! refreshes (or re-mints) and retries once ([`crate::http::VendorHttp`] does the retry).
//!
//! **JWT signing.** The assertion is signed RS256 with the connected app's private key:
//! [`Rs256Signer`] (ring, PKCS#8 PEM from the topology's `jwt.private_key`). Signing sits
//! behind the [`JwtSigner`] seam, so a signer backed by a KMS/HSM can replace it; the header
//! and claims are built here. Without a key, [`UnverifiedSandboxSigner`] sends unsigned
//! assertions, which only the sandbox accepts (it checks claims, not signatures).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::errors::VENDOR;
use crate::error::{ErrorClass, VendorError};
use crate::http::{Bucket, Credentials, Request, Secret, VendorHttp, unexpected};
use crate::oauth::{AuthorizeRequest, Pkce, random_token, url_with_query};

/// §2.1: the JWT bearer grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A session: the access token and the org's API host.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: Secret,
    /// `https://<mydomain>.my.salesforce.com`: every API call goes here, never to the login
    /// host (§2.1).
    pub instance_url: String,
    pub refresh_token: Option<Secret>,
    /// `issued_at`, milliseconds since the epoch (a string in the response, §2.1).
    pub issued_at_ms: Option<i64>,
}

/// Parses a token response; anything without an access token and an http(s) `instance_url`
/// is an error, never a panic.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<Session, VendorError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| unexpected(VENDOR, status, "the token response is not JSON".into()))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let access = text("access_token").ok_or_else(|| {
        unexpected(
            VENDOR,
            status,
            "the token response has no access_token".into(),
        )
    })?;
    let instance_url = text("instance_url")
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| {
            unexpected(
                VENDOR,
                status,
                "the token response has no usable instance_url".into(),
            )
        })?;
    Ok(Session {
        access_token: Secret::new(access),
        instance_url: instance_url.trim_end_matches('/').to_owned(),
        refresh_token: text("refresh_token").map(Secret::new),
        issued_at_ms: text("issued_at").and_then(|s| s.parse().ok()),
    })
}

/// Classifies an OAuth error (`{"error", "error_description"}`, §2.1). `invalid_grant` means
/// the refresh token or assertion is no longer accepted: a person must re-consent (§1.2), so
/// it is permanent, like every other OAuth error; 5xx are transient.
pub fn classify_oauth_error(status: u16, body: &[u8]) -> Option<VendorError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("error")?.as_str()?.to_owned();
    let description = v
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let class = if status >= 500 {
        ErrorClass::Transient { retry_after: None }
    } else {
        ErrorClass::Permanent
    };
    let hint = if code == "invalid_grant" {
        " — reconnect the Salesforce org (the grant was revoked, expired or not approved)"
    } else {
        ""
    };
    Some(VendorError {
        vendor: VENDOR,
        status,
        message: format!("Salesforce refused the token request: {description}{hint}"),
        code,
        class,
    })
}

/// A connected app for the web-server flow (§2.1).
#[derive(Debug, Clone)]
pub struct WebServerApp {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or the org's My Domain.
    pub login_url: String,
    pub consumer_key: String,
    pub consumer_secret: Option<Secret>,
    pub redirect_uri: String,
    /// e.g. `api refresh_token`.
    pub scope: String,
}

impl WebServerApp {
    fn token_url(&self) -> String {
        format!(
            "{}/services/oauth2/token",
            self.login_url.trim_end_matches('/')
        )
    }

    /// The authorize URL with a fresh `state` and a PKCE S256 challenge (§2.1: "PKCE is
    /// supported and recommended"). Keep the returned value until the callback.
    pub fn authorize(&self) -> AuthorizeRequest {
        let state = random_token();
        let pkce = Pkce::new();
        let url = url_with_query(
            &format!(
                "{}/services/oauth2/authorize",
                self.login_url.trim_end_matches('/')
            ),
            &[
                ("response_type", "code"),
                ("client_id", &self.consumer_key),
                ("redirect_uri", &self.redirect_uri),
                ("scope", &self.scope),
                ("state", &state),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        AuthorizeRequest {
            url,
            state,
            pkce: Some(pkce),
        }
    }

    async fn token_call(
        &self,
        http: &VendorHttp,
        pairs: &[(&str, &str)],
    ) -> Result<Session, VendorError> {
        let req = Request::new(Method::POST, self.token_url(), "oauth_token")
            .form(pairs)
            .bucket(Bucket::None);
        let resp = http.send_anonymous(&req).await?;
        parse_token_response(resp.status, &resp.body)
    }

    /// `grant_type=authorization_code`, with the PKCE verifier of [`Self::authorize`].
    pub async fn exchange_code(
        &self,
        http: &VendorHttp,
        code: &str,
        pkce: Option<&Pkce>,
    ) -> Result<Session, VendorError> {
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("client_id", self.consumer_key.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code", code),
        ];
        if let Some(s) = &self.consumer_secret {
            pairs.push(("client_secret", s.expose()));
        }
        if let Some(p) = pkce {
            pairs.push(("code_verifier", p.verifier.expose()));
        }
        self.token_call(http, &pairs).await
    }

    /// `grant_type=refresh_token`. With rotation on (§2.1), the answer carries a new refresh
    /// token and the old one stops working; without, the old one is kept.
    pub async fn refresh(
        &self,
        http: &VendorHttp,
        refresh_token: &Secret,
    ) -> Result<Session, VendorError> {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.consumer_key.as_str()),
            ("refresh_token", refresh_token.expose()),
        ];
        if let Some(s) = &self.consumer_secret {
            pairs.push(("client_secret", s.expose()));
        }
        let mut s = self.token_call(http, &pairs).await?;
        s.refresh_token = s.refresh_token.or_else(|| Some(refresh_token.clone()));
        Ok(s)
    }
}

/// Signs a JWT's `header.claims` with RS256 (see the module docs for why this is a seam).
pub trait JwtSigner: Send + Sync {
    fn sign_rs256(&self, signing_input: &[u8]) -> Result<Vec<u8>, String>;
}

/// RS256 with the connected app's private key (PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`),
/// as Salesforce's JWT bearer flow requires (§2.1): RSASSA-PKCS1-v1_5 over SHA-256, by
/// `ring`.
pub struct Rs256Signer {
    key: ring::signature::RsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Rs256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.write_str("Rs256Signer(***)")
    }
}

impl Rs256Signer {
    /// From a PKCS#8 PEM private key; the error says what is wrong without echoing the key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            format!("the JWT signing key is not a PKCS#8 PEM private key ({e}); convert it with `openssl pkcs8 -topk8 -nocrypt`")
        })?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| format!("the JWT signing key is not a usable RSA key: {e}"))?;
        Ok(Rs256Signer {
            key,
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// The public key (DER `RSAPublicKey`), for checking a signature.
    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.key.public_key().as_ref().to_vec()
    }
}

impl JwtSigner for Rs256Signer {
    fn sign_rs256(&self, signing_input: &[u8]) -> Result<Vec<u8>, String> {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &self.rng,
                signing_input,
                &mut sig,
            )
            .map_err(|_| "RSA signing failed".to_string())?;
        Ok(sig)
    }
}

/// A signer that does not sign: only for the sandbox, which checks claims but not signatures.
/// Real Salesforce rejects its assertions.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnverifiedSandboxSigner;

impl JwtSigner for UnverifiedSandboxSigner {
    fn sign_rs256(&self, _signing_input: &[u8]) -> Result<Vec<u8>, String> {
        Ok(b"unsigned-sandbox-assertion".to_vec())
    }
}

/// The JWT bearer flow's settings (§2.1).
#[derive(Clone)]
pub struct JwtBearer {
    pub login_url: String,
    /// `iss`: the connected app's consumer key.
    pub consumer_key: String,
    /// `sub`: the integration user's username.
    pub username: String,
    /// `aud`: `https://login.salesforce.com`, `https://test.salesforce.com` or a community URL.
    pub audience: String,
    /// `exp` = now + this; Salesforce allows about 3 minutes (§2.1).
    pub assertion_lifetime: Duration,
    pub signer: Arc<dyn JwtSigner>,
}

impl std::fmt::Debug for JwtBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtBearer")
            .field("login_url", &self.login_url)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtBearer {
    /// The claims of an assertion made at `now_s` (seconds since the epoch).
    pub fn claims(&self, now_s: i64) -> Value {
        let lifetime = self
            .assertion_lifetime
            .min(Duration::from_secs(180))
            .as_secs() as i64;
        json!({
            "iss": self.consumer_key,
            "sub": self.username,
            "aud": self.audience,
            "exp": now_s + lifetime.max(1),
        })
    }

    /// `base64url(header).base64url(claims).base64url(signature)`.
    pub fn assertion(&self, now_s: i64) -> Result<Secret, VendorError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(self.claims(now_s).to_string());
        let input = format!("{header}.{claims}");
        let sig = self
            .signer
            .sign_rs256(input.as_bytes())
            .map_err(|e| VendorError {
                vendor: VENDOR,
                status: 0,
                code: "JWT_SIGNING_FAILED".into(),
                message: format!("could not sign the JWT assertion: {e}"),
                class: ErrorClass::Permanent,
            })?;
        Ok(Secret::new(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig)
        )))
    }

    /// Mints a session: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…`.
    pub async fn mint(&self, http: &VendorHttp) -> Result<Session, VendorError> {
        let assertion = self.assertion(chrono::Utc::now().timestamp())?;
        let req = Request::new(
            Method::POST,
            format!(
                "{}/services/oauth2/token",
                self.login_url.trim_end_matches('/')
            ),
            "oauth_token",
        )
        .form(&[
            ("grant_type", JWT_BEARER_GRANT),
            ("assertion", assertion.expose()),
        ])
        .bucket(Bucket::None);
        let resp = http.send_anonymous(&req).await?;
        parse_token_response(resp.status, &resp.body)
    }
}

/// How a Salesforce client authenticates; the session is held in memory behind a lock.
#[derive(Debug)]
// One per client, held behind an `Arc`: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum SalesforceAuth {
    /// Web-server flow: refreshed with the refresh token.
    WebServer {
        app: WebServerApp,
        http: VendorHttp,
        session: Mutex<Session>,
    },
    /// JWT bearer: minted on first use and again whenever the session ends.
    Jwt {
        jwt: JwtBearer,
        http: VendorHttp,
        session: Mutex<Option<Session>>,
    },
    /// A session obtained elsewhere (e.g. a contract test against a real org); it cannot be
    /// renewed.
    Static(Session),
}

impl SalesforceAuth {
    pub fn web_server(app: WebServerApp, http: VendorHttp, session: Session) -> Self {
        SalesforceAuth::WebServer {
            app,
            http,
            session: Mutex::new(session),
        }
    }

    pub fn jwt(jwt: JwtBearer, http: VendorHttp) -> Self {
        SalesforceAuth::Jwt {
            jwt,
            http,
            session: Mutex::new(None),
        }
    }

    /// The current session, minting one first for the JWT flow.
    pub async fn session(&self) -> Result<Session, VendorError> {
        match self {
            SalesforceAuth::WebServer { session, .. } => Ok(session.lock().await.clone()),
            SalesforceAuth::Jwt { jwt, http, session } => {
                let mut s = session.lock().await;
                if s.is_none() {
                    *s = Some(jwt.mint(http).await?);
                }
                s.clone()
                    .ok_or_else(|| unexpected(VENDOR, 0, "no session".into()))
            }
            SalesforceAuth::Static(s) => Ok(s.clone()),
        }
    }
}

impl Credentials for SalesforceAuth {
    async fn bearer(&self) -> Result<Secret, VendorError> {
        Ok(self.session().await?.access_token)
    }

    async fn refresh(&self, rejected: &Secret) -> Result<(), VendorError> {
        match self {
            SalesforceAuth::WebServer { app, http, session } => {
                let mut s = session.lock().await;
                if s.access_token != *rejected {
                    return Ok(());
                }
                let refresh = s.refresh_token.clone().ok_or_else(|| VendorError {
                    vendor: VENDOR,
                    status: 401,
                    code: "NO_REFRESH_TOKEN".into(),
                    message: "the session ended and there is no refresh token; reconnect the org"
                        .into(),
                    class: ErrorClass::Permanent,
                })?;
                *s = app.refresh(http, &refresh).await?;
                Ok(())
            }
            SalesforceAuth::Jwt { jwt, http, session } => {
                let mut s = session.lock().await;
                if s.as_ref().is_some_and(|s| s.access_token != *rejected) {
                    return Ok(());
                }
                *s = Some(jwt.mint(http).await?);
                Ok(())
            }
            SalesforceAuth::Static(_) => Err(VendorError {
                vendor: VENDOR,
                status: 401,
                code: "INVALID_SESSION_ID".into(),
                message: "the session ended and this connection cannot renew it".into(),
                class: ErrorClass::Permanent,
            }),
        }
    }
}

#[cfg(test)]
mod tests {

    /// A throwaway 2048-bit key made for this test with `openssl genpkey`; it signs nothing
    /// anywhere else.
    const TEST_KEY: &str = include_str!("test_jwt_key.pem");

    #[test]
    fn rs256_assertions_verify_with_the_public_key() {
        use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
        let signer = Rs256Signer::from_pem(TEST_KEY).unwrap();
        let public = signer.public_key();
        let jwt = JwtBearer {
            login_url: "https://login.salesforce.com".into(),
            consumer_key: "3MVG9key".into(),
            username: "integration@example.com".into(),
            audience: "https://login.salesforce.com".into(),
            assertion_lifetime: Duration::from_secs(180),
            signer: Arc::new(signer),
        };
        let assertion = jwt.assertion(1_800_000_000).unwrap();
        let text = assertion.expose().to_string();
        let (input, sig) = text.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(input.as_bytes(), &sig)
            .expect("the signature verifies");
        let tampered = input.replacen('e', "f", 1);
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(tampered.as_bytes(), &sig)
                .is_err()
        );
    }

    #[test]
    fn a_key_that_is_not_pkcs8_pem_is_refused_without_echoing_it() {
        let e = Rs256Signer::from_pem(
            "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(!e.contains("not a key"), "{e}");
        assert!(Rs256Signer::from_pem("hello").is_err());
    }

    use super::*;

    #[test]
    fn authorize_url_has_state_and_an_s256_challenge() {
        let app = WebServerApp {
            login_url: "https://login.salesforce.com/".into(),
            consumer_key: "3MVGkey".into(),
            consumer_secret: None,
            redirect_uri: "https://hub.example/cb".into(),
            scope: "api refresh_token".into(),
        };
        let a = app.authorize();
        let pkce = a.pkce.unwrap();
        assert!(a.url.starts_with("https://login.salesforce.com/services/oauth2/authorize?response_type=code&client_id=3MVGkey"));
        assert!(
            a.url
                .contains(&format!("code_challenge={}", pkce.challenge))
        );
        assert!(a.url.contains("code_challenge_method=S256"));
        assert!(a.url.contains(&format!("state={}", a.state)));
        assert!(
            !a.url.contains(pkce.verifier.expose()),
            "the verifier stays with us"
        );
    }

    #[test]
    fn jwt_claims_follow_section_2_1_and_exp_is_capped_at_three_minutes() {
        let jwt = JwtBearer {
            login_url: "https://login.salesforce.com".into(),
            consumer_key: "3MVGkey".into(),
            username: "integration@dealer.example".into(),
            audience: "https://login.salesforce.com".into(),
            assertion_lifetime: Duration::from_secs(3600),
            signer: Arc::new(UnverifiedSandboxSigner),
        };
        let c = jwt.claims(1_000);
        assert_eq!(c["iss"], "3MVGkey");
        assert_eq!(c["sub"], "integration@dealer.example");
        assert_eq!(c["aud"], "https://login.salesforce.com");
        assert_eq!(c["exp"], 1_180);
        let a = jwt.assertion(1_000).unwrap();
        let parts: Vec<&str> = a.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            br#"{"alg":"RS256"}"#
        );
    }

    #[test]
    fn token_responses_and_oauth_errors_never_panic() {
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"access_token\":\"x\"}",
            b"{\"access_token\":\"x\",\"instance_url\":\"ftp://x\"}",
        ] {
            assert!(parse_token_response(200, body).is_err());
        }
        let s = parse_token_response(
            200,
            br#"{"access_token":"00D!x","instance_url":"https://acme.my.salesforce.com/","issued_at":"1715000000000"}"#,
        )
        .unwrap();
        assert_eq!(s.instance_url, "https://acme.my.salesforce.com");
        assert_eq!(s.issued_at_ms, Some(1_715_000_000_000));
        let e = classify_oauth_error(
            400,
            br#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
        )
        .unwrap();
        assert_eq!(e.code, "invalid_grant");
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(classify_oauth_error(400, b"[{\"errorCode\":\"X\"}]").is_none());
    }
}
