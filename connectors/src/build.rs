//! Clients from plain settings: what a topology's `api:` section says, without this crate
//! knowing the topology. Ingest's pollers and webhook reads and the vendor sinks build their
//! clients here, and every client of one vendor account in the process waits on the same
//! limiter, since the vendor counts the account's calls together. Every client of one
//! tenant's connector also shares that connector's [`crate::usage::ApiUsage`], which counts
//! its calls against the vendor's published daily and per-window limits (or the `api:`
//! section's overrides).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::{ErrorClass, VendorError};
use crate::http::{MetricsMeter, RetryPolicy, Secret, SharedLimiter, VendorHttp};
use crate::hubspot::auth::HubSpotAuth;
use crate::hubspot::client::{HubSpotClient, HubSpotClientConfig};
use crate::salesforce::auth::{
    JwtBearer, JwtSigner, Rs256Signer, SalesforceAuth, Session, UnverifiedSandboxSigner,
};
use crate::salesforce::client::{SalesforceClient, SalesforceClientConfig};
use crate::usage::{self, UsageLimits};

/// One connection's API settings.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// The tenant the connector belongs to: the `tenant` label, and half the usage key.
    pub tenant_id: String,
    /// The connector's id: the `connector` label of the API-call metrics.
    pub connector_id: String,
    pub base_url: String,
    /// A bearer token (HubSpot private app; Salesforce session, `base_url` the instance).
    pub token: Option<String>,
    /// Salesforce JWT bearer flow: (consumer key, username).
    pub jwt: Option<(String, String)>,
    /// The JWT flow's signing key (PKCS#8 PEM); without it assertions go unsigned, which
    /// only the sandbox accepts.
    pub jwt_private_key: Option<String>,
    /// HubSpot: requests per rolling 10 s of the account's tier.
    pub requests_per_10s: Option<u32>,
    /// The share of the vendor's limits the hub may use (default 0.9: the rest is left to
    /// the dealer's other tools).
    pub headroom: Option<f64>,
    /// Requests per UTC day the account may make; default [`usage::published_limits`].
    pub daily_limit: Option<u64>,
    /// Warn below this percentage of the daily limit left; default 20.
    pub budget_warn_percent: Option<u8>,
}

impl ApiSettings {
    /// The limits this connector's calls are counted against: the vendor's published ones,
    /// overridden by the settings.
    pub fn usage_limits(&self, vendor: &str) -> UsageLimits {
        let mut l = usage::published_limits(vendor);
        if let Some(d) = self.daily_limit {
            l.daily_limit = d;
        }
        if let Some(n) = self.requests_per_10s {
            l.per_10s = Some(u64::from(n));
        }
        if let Some(p) = self.budget_warn_percent {
            l.warn_percent = p.clamp(1, 99);
        }
        l
    }

    fn attach_usage(&self, http: &VendorHttp) {
        let vendor = http.vendor();
        http.attach_usage(usage::connector_usage(
            &self.tenant_id,
            &self.connector_id,
            vendor,
            self.usage_limits(vendor),
        ));
    }
}

/// One limiter per vendor account in this process, whoever calls it (a poller, a webhook's
/// batch read, a sink): the vendor counts the account's calls together, so the hub must too.
/// Keyed by vendor, base URL and a hash of the credential (never the credential itself).
fn account_limiter(
    vendor: &str,
    base_url: &str,
    credential: &str,
    make: impl FnOnce() -> Arc<SharedLimiter>,
) -> Arc<SharedLimiter> {
    use sha2::{Digest, Sha256};
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<SharedLimiter>>>> = OnceLock::new();
    let key = format!(
        "{vendor} {base_url} {}",
        hex::encode(Sha256::digest(credential.as_bytes()))
    );
    let mut all = LIMITERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.entry(key).or_insert_with(make).clone()
}

fn config_error(message: String) -> VendorError {
    VendorError {
        vendor: "hub",
        status: 0,
        code: "CONFIGURATION".into(),
        message,
        class: ErrorClass::Permanent,
    }
}

/// A HubSpot client on a private-app token, limited to the account's tier.
pub fn hubspot(s: &ApiSettings) -> Result<HubSpotClient, VendorError> {
    let mut config = HubSpotClientConfig {
        base_url: s.base_url.trim_end_matches('/').to_string(),
        ..Default::default()
    };
    if let Some(n) = s.requests_per_10s {
        config.requests_per_10s = n;
    }
    if let Some(h) = s.headroom {
        config.headroom = h;
    }
    config.validate().map_err(config_error)?;
    let token = s
        .token
        .clone()
        .ok_or_else(|| config_error("a HubSpot connector's api needs a token".into()))?;
    let limiter = account_limiter("hubspot", &config.base_url, &token, || config.limiter());
    let http = config.http(
        &s.connector_id,
        limiter,
        Arc::new(MetricsMeter),
        RetryPolicy::default(),
    )?;
    s.attach_usage(&http);
    Ok(HubSpotClient::new(
        &config,
        http,
        HubSpotAuth::private_app(token),
    ))
}

/// A Salesforce client: on a session token (`base_url` the instance URL), or on the JWT
/// bearer flow (`base_url` the login URL).
///
/// The JWT flow signs RS256 with `jwt_private_key` ([`Rs256Signer`]); without a key it falls
/// back to [`UnverifiedSandboxSigner`], which the sandbox accepts and a real org answers with
/// `invalid_grant`.
pub fn salesforce(s: &ApiSettings) -> Result<SalesforceClient, VendorError> {
    let base = s.base_url.trim_end_matches('/').to_string();
    let config = SalesforceClientConfig {
        login_url: base.clone(),
        ..Default::default()
    };
    config.validate().map_err(config_error)?;
    let credential = s
        .token
        .clone()
        .or_else(|| s.jwt.as_ref().map(|(key, user)| format!("{key}/{user}")))
        .unwrap_or_default();
    let limiter = account_limiter("salesforce", &base, &credential, || config.limiter());
    let http = config.http(
        &s.connector_id,
        limiter,
        Arc::new(MetricsMeter),
        RetryPolicy::default(),
    )?;
    s.attach_usage(&http);
    let auth = match (&s.token, &s.jwt) {
        (Some(token), _) => SalesforceAuth::Static(Session {
            access_token: Secret::new(token.clone()),
            instance_url: base,
            refresh_token: None,
            issued_at_ms: None,
        }),
        (None, Some((consumer_key, username))) => {
            let signer: Arc<dyn JwtSigner> = match &s.jwt_private_key {
                Some(pem) => Arc::new(Rs256Signer::from_pem(pem).map_err(config_error)?),
                None => {
                    tracing::warn!(
                        connector = %s.connector_id,
                        "JWT bearer flow without a private key: assertions go unsigned, which only the sandbox accepts"
                    );
                    Arc::new(UnverifiedSandboxSigner)
                }
            };
            SalesforceAuth::jwt(
                JwtBearer {
                    login_url: base,
                    consumer_key: consumer_key.clone(),
                    username: username.clone(),
                    audience: "https://login.salesforce.com".into(),
                    assertion_lifetime: Duration::from_secs(180),
                    signer,
                },
                http.clone(),
            )
        }
        (None, None) => {
            return Err(config_error(
                "a Salesforce connector's api needs a token or jwt settings".into(),
            ));
        }
    };
    Ok(SalesforceClient::new(&config, http, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_limits_are_the_vendors_published_ones_unless_the_api_section_says_otherwise() {
        let plain = ApiSettings::default();
        assert_eq!(
            plain.usage_limits("salesforce"),
            usage::published_limits("salesforce")
        );
        let set = ApiSettings {
            daily_limit: Some(115_000),
            requests_per_10s: Some(190),
            budget_warn_percent: Some(10),
            ..Default::default()
        };
        assert_eq!(
            set.usage_limits("hubspot"),
            UsageLimits {
                daily_limit: 115_000,
                per_10s: Some(190),
                warn_percent: 10,
            }
        );
    }

    #[test]
    fn every_client_of_a_connector_shares_its_usage_and_counts_under_its_tenant() {
        let s = ApiSettings {
            tenant_id: "lakeside-auto".into(),
            connector_id: "hs-build-test".into(),
            base_url: "http://127.0.0.1:9".into(),
            token: Some("pat-test".into()),
            ..Default::default()
        };
        let a = hubspot(&s).expect("client");
        let b = hubspot(&s).expect("client");
        let (ua, ub) = (
            a.http().usage().expect("usage"),
            b.http().usage().expect("usage"),
        );
        assert!(Arc::ptr_eq(ua, ub));
        assert_eq!(ua.tenant, "lakeside-auto");
        assert_eq!(ua.limits().per_10s, Some(100));
    }
}
