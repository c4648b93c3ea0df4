//! What the vendors' OAuth 2.0 flows share: `state` and PKCE (RFC 7636, S256) for the
//! authorization-code flow, and the in-memory token cell every client reads its bearer from.
//!
//! Why not the `oauth2` crate: 5.0 depends on reqwest 0.12 (a second HTTP stack next to our
//! 0.13, stack-notes.md), and the flows here are three form posts whose responses differ per
//! vendor anyway (Salesforce sends no `expires_in` but an `instance_url`, §2.1; HubSpot's
//! errors are not RFC 6749's, §3.1). Plain requests through [`crate::http::VendorHttp`] also get
//! the accounting and retries every other call gets.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::http::Secret;

/// 32 random bytes (two v4 UUIDs' worth of OS randomness), base64url: for `state` and PKCE
/// verifiers. `uuid` is already in the tree and draws from the OS generator.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A PKCE pair (RFC 7636): the verifier stays with the hub until the code exchange, the
/// challenge goes into the authorize URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret,
    /// `BASE64URL(SHA256(verifier))`, sent with `code_challenge_method=S256`.
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        Self::from_verifier(random_token())
    }

    pub fn from_verifier(verifier: String) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// What the hub must keep between sending the user to the vendor and the callback.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub url: String,
    /// Compare with the callback's `state` before exchanging the code (CSRF).
    pub state: String,
    pub pkce: Option<Pkce>,
}

/// `base?k=v&…`, form-encoded.
pub(crate) fn url_with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{q}")
}

/// The tokens a client holds in memory. Refresh tokens and access tokens are [`Secret`]s.
#[derive(Debug, Clone)]
pub struct TokenState {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// When the access token should be considered spent (a minute early); `None` when the
    /// vendor does not say (Salesforce, §2.1) — then only a 401 tells.
    pub expires_at: Option<Instant>,
}

impl TokenState {
    pub fn new(access: Secret, refresh: Option<Secret>, expires_in: Option<Duration>) -> Self {
        TokenState {
            access_token: access,
            refresh_token: refresh,
            expires_at: expires_in.map(|d| Instant::now() + d.saturating_sub(EARLY)),
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.expires_at.is_none_or(|at| Instant::now() < at)
    }
}

/// Refresh this long before the vendor's stated expiry.
const EARLY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn random_tokens_differ_and_are_url_safe() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
