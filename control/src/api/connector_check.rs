//! The seam between the control plane and the vendors: [`ConnectorCheck`], which "test
//! connection" and the OAuth2 callback's code exchange call. This crate knows no vendor; the
//! hub binary implements the trait with `hub-connectors` and hands it to the API
//! ([`super::ApiState::with_connector_check`]). Without one, both endpoints answer 501 with
//! the code `connector_check_unavailable`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::secret::Secret;
use crate::store::connectors::ConnectorConfig;

/// A boxed, sendable future: what the trait's methods return, so it can be used as
/// `dyn ConnectorCheck`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a connection test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The vendor answered an authenticated call.
    Ok,
    /// The vendor could not be reached, or refused the credentials.
    Failed,
    /// The hub cannot test this vendor (yet).
    Unsupported,
}

/// What a connection test found: the answer of `POST …/connectors/{connector}/test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckOutcome {
    /// How it ended.
    pub status: CheckStatus,
    /// A stable, machine-readable reason: `ok`, `no_credentials`, `auth_failed`,
    /// `unreachable`, `rate_limited`, `vendor_error`, `bad_configuration`,
    /// `unsupported_vendor`, …
    pub code: String,
    /// A sentence a dealership admin can act on; never a secret.
    pub message: String,
    /// How long the vendor took to answer, when it was called.
    pub latency_ms: Option<u64>,
}

impl CheckOutcome {
    /// A passed test.
    pub fn ok(message: impl Into<String>, latency_ms: Option<u64>) -> Self {
        CheckOutcome {
            status: CheckStatus::Ok,
            code: "ok".into(),
            message: message.into(),
            latency_ms,
        }
    }

    /// A failed test, with its reason.
    pub fn failed(code: impl Into<String>, message: impl Into<String>) -> Self {
        CheckOutcome {
            status: CheckStatus::Failed,
            code: code.into(),
            message: message.into(),
            latency_ms: None,
        }
    }

    /// A test the hub cannot make.
    pub fn unsupported(message: impl Into<String>) -> Self {
        CheckOutcome {
            status: CheckStatus::Unsupported,
            code: "unsupported_vendor".into(),
            message: message.into(),
            latency_ms: None,
        }
    }
}

/// What the OAuth2 callback hands the implementation to exchange an authorization code.
#[derive(Debug)]
pub struct CodeExchange<'a> {
    /// The connector (its `oauth` settings name the client id and token URL).
    pub config: &'a ConnectorConfig,
    /// Its credentials as stored before the flow (e.g. the app's `client_secret`), if any.
    pub credentials: Option<&'a Secret<Value>>,
    /// The callback's `code`.
    pub code: &'a str,
    /// The PKCE verifier of the flow's `code_challenge` (vendors without PKCE ignore it).
    pub code_verifier: &'a Secret<String>,
    /// The redirect URI of the authorize request, which the token request must repeat.
    pub redirect_uri: &'a str,
}

/// Why a code exchange failed: a stable code and a sentence, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeError {
    /// `vendor_refused` (the vendor said no: a bad or used code, a wrong client secret),
    /// `unreachable`, `bad_configuration`, `unsupported_vendor`, …
    pub code: String,
    /// What happened, for a dealership admin.
    pub message: String,
}

/// The vendor-side calls the control API needs. Implementations must keep secrets out of
/// every message and log line.
pub trait ConnectorCheck: Send + Sync + fmt::Debug {
    /// Tests a connector: a cheap authenticated call to its endpoint with `credentials`
    /// (`None` when it has none stored), or a plain reachability check where the hub knows
    /// no such call.
    fn check<'a>(
        &'a self,
        config: &'a ConnectorConfig,
        credentials: Option<&'a Secret<Value>>,
    ) -> BoxFuture<'a, CheckOutcome>;

    /// Exchanges an OAuth2 authorization code at the vendor's token endpoint and answers the
    /// connector's new credentials (the tokens, plus whatever of the old credentials is still
    /// needed, such as the client secret for refreshes). The API stores them as they are.
    fn exchange_code<'a>(
        &'a self,
        exchange: CodeExchange<'a>,
    ) -> BoxFuture<'a, Result<Secret<Value>, ExchangeError>>;
}
