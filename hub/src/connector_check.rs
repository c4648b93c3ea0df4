//! The control API's vendor-side calls ([`hub_control::api::ConnectorCheck`]), made with
//! `hub-connectors`: "test connection" and the OAuth2 code exchange.
//!
//! - **Salesforce**: the test reads `GET …/limits` (one cheap authenticated call, §2.8) with
//!   the stored session (`access_token`, `instance_url`; refreshed once with `refresh_token`
//!   when the org ended it) or the JWT bearer flow (`consumer_key`, `username`,
//!   `private_key`); the exchange is the web-server flow's code grant with the PKCE verifier
//!   (§2.1).
//! - **HubSpot**: the test reads one contact (`GET /crm/v3/objects/contacts?limit=1`) with
//!   the stored bearer (`access_token` of the OAuth install, or a private app's `token`); the
//!   exchange is the OAuth install's code grant (§3.1, which documents no PKCE: the verifier
//!   is not sent).
//! - **Every other vendor**: a plain reachability check of the endpoint (any HTTP answer is
//!   `reachable`; the credentials are not tried), and no code exchange.
//!
//! Each test builds its own client with a fresh limiter: one call does not need the account's
//! shared limiter, and a test must not wait behind a running sync. Retries are cut to one, so
//! an answer comes within the control API's 30 s bound. No message carries a secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_connectors::error::{ErrorClass, VendorError};
use hub_connectors::http::{MetricsMeter, Request, RetryPolicy, Secret as VendorSecret};
use hub_connectors::hubspot::auth::{HubSpotAuth, OAuthApp};
use hub_connectors::hubspot::client::{HubSpotClient, HubSpotClientConfig};
use hub_connectors::oauth::Pkce;
use hub_connectors::salesforce::auth::{
    JwtBearer, JwtSigner, Rs256Signer, SalesforceAuth, Session, UnverifiedSandboxSigner,
    WebServerApp,
};
use hub_connectors::salesforce::client::{
    SalesforceClient, SalesforceClientConfig, SalesforceError,
};
use hub_control::Secret;
use hub_control::api::connector_check::BoxFuture;
use hub_control::api::{CheckOutcome, CodeExchange, ConnectorCheck, ExchangeError};
use hub_control::store::connectors::ConnectorConfig;
use serde_json::{Value, json};

/// The connector label of the vendor API-call metrics for these calls.
const METRICS_ID: &str = "control-test";

/// How long a reachability check waits.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// The hub's [`ConnectorCheck`].
#[derive(Debug, Clone)]
pub struct HubConnectorCheck {
    /// For reachability checks (no credentials, no retries).
    plain: reqwest::Client,
}

impl HubConnectorCheck {
    pub fn new() -> Self {
        HubConnectorCheck {
            plain: reqwest::Client::builder()
                .timeout(REACH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Default for HubConnectorCheck {
    fn default() -> Self {
        Self::new()
    }
}

fn one_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        max_wait: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

/// A text field of the stored credentials.
fn text<'a>(credentials: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| credentials.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
}

/// A vendor error as a test outcome: the class decides the code.
fn outcome_of(e: &VendorError) -> CheckOutcome {
    let code = match e.class {
        ErrorClass::Auth => "auth_failed",
        ErrorClass::RateLimited { .. } => "rate_limited",
        ErrorClass::Transient { .. } if e.status == 0 => "unreachable",
        ErrorClass::Transient { .. } => "vendor_error",
        ErrorClass::Permanent if matches!(e.status, 401 | 403) => "auth_failed",
        ErrorClass::Permanent if e.code == "CONFIGURATION" => "bad_configuration",
        ErrorClass::Permanent => "vendor_error",
    };
    CheckOutcome::failed(code, e.to_string())
}

fn config_failure(message: String) -> CheckOutcome {
    CheckOutcome::failed("bad_configuration", message)
}

fn elapsed_ms(started: Instant) -> Option<u64> {
    Some(started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64)
}

fn sf_config(endpoint: &str) -> SalesforceClientConfig {
    SalesforceClientConfig {
        login_url: endpoint.trim_end_matches('/').to_string(),
        timeout_ms: 20_000,
        ..Default::default()
    }
}

/// The web-server app of a connector's `oauth` settings (the login URL is the endpoint, or
/// what precedes `/services/oauth2/token` in an explicit token URL).
fn sf_app(config: &ConnectorConfig, credentials: Option<&Value>) -> Option<WebServerApp> {
    let oauth = config.spec.oauth.as_ref()?;
    let login_url = oauth
        .token_url
        .as_deref()
        .and_then(|u| u.strip_suffix("/services/oauth2/token"))
        .unwrap_or(&config.spec.endpoint)
        .trim_end_matches('/')
        .to_string();
    Some(WebServerApp {
        login_url,
        consumer_key: oauth.client_id.clone(),
        consumer_secret: credentials
            .and_then(|c| text(c, &["client_secret", "consumer_secret"]))
            .map(VendorSecret::new),
        redirect_uri: oauth.redirect_uri.clone(),
        scope: oauth.scope.clone().unwrap_or_default(),
    })
}

async fn check_salesforce(config: &ConnectorConfig, credentials: &Value) -> CheckOutcome {
    let cfg = sf_config(&config.spec.endpoint);
    if let Err(e) = cfg.validate() {
        return config_failure(e);
    }
    let http = match cfg.http(
        METRICS_ID,
        cfg.limiter(),
        Arc::new(MetricsMeter),
        one_retry(),
    ) {
        Ok(h) => h,
        Err(e) => return outcome_of(&e),
    };
    let auth = if let Some(token) = text(credentials, &["access_token", "token"]) {
        let session = Session {
            access_token: VendorSecret::new(token),
            instance_url: text(credentials, &["instance_url"])
                .unwrap_or(&config.spec.endpoint)
                .trim_end_matches('/')
                .to_string(),
            refresh_token: text(credentials, &["refresh_token"]).map(VendorSecret::new),
            issued_at_ms: None,
        };
        match (
            session.refresh_token.is_some(),
            sf_app(config, Some(credentials)),
        ) {
            (true, Some(app)) => SalesforceAuth::web_server(app, http.clone(), session),
            _ => SalesforceAuth::Static(session),
        }
    } else if let (Some(key), Some(user)) = (
        text(credentials, &["consumer_key", "client_id"]),
        text(credentials, &["username"]),
    ) {
        let signer: Arc<dyn JwtSigner> = match text(credentials, &["private_key"]) {
            Some(pem) => match Rs256Signer::from_pem(pem) {
                Ok(s) => Arc::new(s),
                Err(e) => return config_failure(e),
            },
            None => Arc::new(UnverifiedSandboxSigner),
        };
        SalesforceAuth::jwt(
            JwtBearer {
                login_url: cfg.login_url.clone(),
                consumer_key: key.to_string(),
                username: user.to_string(),
                audience: "https://login.salesforce.com".into(),
                assertion_lifetime: Duration::from_secs(180),
                signer,
            },
            http.clone(),
        )
    } else {
        return CheckOutcome::failed(
            "no_credentials",
            "the credentials hold neither an access_token nor JWT settings (consumer_key, username); connect with OAuth or set them",
        );
    };
    let client = SalesforceClient::new(&cfg, http, auth);
    let started = Instant::now();
    match client.limits().await {
        Ok(budget) => CheckOutcome::ok(
            format!(
                "Salesforce answered: {} of {} daily API requests left",
                budget.remaining, budget.max
            ),
            elapsed_ms(started),
        ),
        Err(SalesforceError::Vendor(e)) => outcome_of(&e),
        Err(e) => CheckOutcome::failed("vendor_error", e.to_string()),
    }
}

async fn check_hubspot(config: &ConnectorConfig, credentials: &Value) -> CheckOutcome {
    let Some(token) = text(credentials, &["access_token", "token", "private_app_token"]) else {
        return CheckOutcome::failed(
            "no_credentials",
            "the credentials hold no access_token or private-app token; connect with OAuth or set one",
        );
    };
    let cfg = HubSpotClientConfig {
        base_url: config.spec.endpoint.trim_end_matches('/').to_string(),
        timeout_ms: 20_000,
        ..Default::default()
    };
    if let Err(e) = cfg.validate() {
        return config_failure(e);
    }
    let http = match cfg.http(
        METRICS_ID,
        cfg.limiter(),
        Arc::new(MetricsMeter),
        one_retry(),
    ) {
        Ok(h) => h,
        Err(e) => return outcome_of(&e),
    };
    let client = HubSpotClient::new(&cfg, http, HubSpotAuth::private_app(token));
    let url = format!("{}{}/contacts?limit=1", cfg.base_url, cfg.path_prefix);
    let started = Instant::now();
    match client
        .http()
        .send(
            &Request::new(reqwest::Method::GET, url, "test_connection"),
            client.auth(),
        )
        .await
    {
        Ok(_) => CheckOutcome::ok(
            "HubSpot answered an authenticated read",
            elapsed_ms(started),
        ),
        Err(e) => outcome_of(&e),
    }
}

impl HubConnectorCheck {
    async fn reachable(&self, config: &ConnectorConfig) -> CheckOutcome {
        let started = Instant::now();
        match self.plain.get(&config.spec.endpoint).send().await {
            Ok(resp) => CheckOutcome {
                code: "reachable".into(),
                ..CheckOutcome::ok(
                    format!(
                        "the endpoint answered HTTP {}; the hub cannot test {} credentials yet",
                        resp.status().as_u16(),
                        config.spec.vendor
                    ),
                    elapsed_ms(started),
                )
            },
            Err(e) => CheckOutcome::failed(
                "unreachable",
                format!(
                    "the endpoint could not be reached: {}",
                    if e.is_timeout() {
                        "no answer in time"
                    } else if e.is_connect() {
                        "the connection failed"
                    } else {
                        "the request failed"
                    }
                ),
            ),
        }
    }

    async fn run_check(
        &self,
        config: &ConnectorConfig,
        credentials: Option<&Secret<Value>>,
    ) -> CheckOutcome {
        match (config.spec.vendor.as_str(), credentials) {
            ("salesforce" | "hubspot", None) => CheckOutcome::failed(
                "no_credentials",
                "no credentials are stored for this connector",
            ),
            ("salesforce", Some(c)) => check_salesforce(config, c.expose()).await,
            ("hubspot", Some(c)) => check_hubspot(config, c.expose()).await,
            _ => self.reachable(config).await,
        }
    }
}

fn exchange_failed(e: &VendorError) -> ExchangeError {
    let code = match e.class {
        ErrorClass::Transient { .. } if e.status == 0 => "unreachable",
        ErrorClass::Permanent if e.code == "CONFIGURATION" => "bad_configuration",
        _ => "vendor_refused",
    };
    ExchangeError {
        code: code.into(),
        message: e.to_string(),
    }
}

fn bad_configuration(message: &str) -> ExchangeError {
    ExchangeError {
        code: "bad_configuration".into(),
        message: message.into(),
    }
}

/// The old credentials with the new tokens over them (the client secret stays, for refreshes).
fn merged(old: Option<&Secret<Value>>, tokens: Value) -> Secret<Value> {
    let mut out = old
        .map(|c| c.expose().clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let (Some(o), Value::Object(t)) = (out.as_object_mut(), tokens) {
        for (k, v) in t {
            if !v.is_null() {
                o.insert(k, v);
            }
        }
    }
    Secret::new(out)
}

async fn exchange_salesforce(x: &CodeExchange<'_>) -> Result<Secret<Value>, ExchangeError> {
    let mut app = sf_app(x.config, x.credentials.map(|c| c.expose()))
        .ok_or_else(|| bad_configuration("the connector has no oauth settings"))?;
    app.redirect_uri = x.redirect_uri.to_string();
    let cfg = sf_config(&app.login_url);
    let http = cfg
        .http(
            METRICS_ID,
            cfg.limiter(),
            Arc::new(MetricsMeter),
            one_retry(),
        )
        .map_err(|e| exchange_failed(&e))?;
    let pkce = Pkce::from_verifier(x.code_verifier.expose().clone());
    let session = app
        .exchange_code(&http, x.code, Some(&pkce))
        .await
        .map_err(|e| exchange_failed(&e))?;
    Ok(merged(
        x.credentials,
        json!({
            "access_token": session.access_token.expose(),
            "refresh_token": session.refresh_token.as_ref().map(|r| r.expose().to_string()),
            "instance_url": session.instance_url,
            "issued_at_ms": session.issued_at_ms,
        }),
    ))
}

async fn exchange_hubspot(x: &CodeExchange<'_>) -> Result<Secret<Value>, ExchangeError> {
    let oauth = x
        .config
        .spec
        .oauth
        .as_ref()
        .ok_or_else(|| bad_configuration("the connector has no oauth settings"))?;
    let secret = x
        .credentials
        .and_then(|c| text(c.expose(), &["client_secret"]))
        .ok_or_else(|| {
            bad_configuration(
                "HubSpot's code exchange needs the app's client_secret: put it in the connector's credentials first",
            )
        })?;
    let endpoint = x.config.spec.endpoint.trim_end_matches('/');
    let app = OAuthApp {
        authorize_url: oauth.authorize_url.clone(),
        token_url: oauth
            .token_url
            .clone()
            .unwrap_or_else(|| format!("{endpoint}/oauth/v1/token")),
        client_id: oauth.client_id.clone(),
        client_secret: VendorSecret::new(secret),
        redirect_uri: x.redirect_uri.to_string(),
        scopes: oauth
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    let cfg = HubSpotClientConfig {
        base_url: endpoint.to_string(),
        ..Default::default()
    };
    let http = cfg
        .http(
            METRICS_ID,
            cfg.limiter(),
            Arc::new(MetricsMeter),
            one_retry(),
        )
        .map_err(|e| exchange_failed(&e))?;
    let tokens = app
        .exchange_code(&http, x.code)
        .await
        .map_err(|e| exchange_failed(&e))?;
    Ok(merged(
        x.credentials,
        json!({
            "access_token": tokens.access_token.expose(),
            "refresh_token": tokens.refresh_token.as_ref().map(|r| r.expose().to_string()),
        }),
    ))
}

impl ConnectorCheck for HubConnectorCheck {
    fn check<'a>(
        &'a self,
        config: &'a ConnectorConfig,
        credentials: Option<&'a Secret<Value>>,
    ) -> BoxFuture<'a, CheckOutcome> {
        Box::pin(self.run_check(config, credentials))
    }

    fn exchange_code<'a>(
        &'a self,
        exchange: CodeExchange<'a>,
    ) -> BoxFuture<'a, Result<Secret<Value>, ExchangeError>> {
        Box::pin(async move {
            match exchange.config.spec.vendor.as_str() {
                "salesforce" => exchange_salesforce(&exchange).await,
                "hubspot" => exchange_hubspot(&exchange).await,
                other => Err(ExchangeError {
                    code: "unsupported_vendor".into(),
                    message: format!("the hub has no OAuth2 code exchange for {other}"),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control plane keeps its own copy of the vendor list (it must not depend on the
    /// topology): every name it accepts is one the topology knows.
    #[test]
    fn the_control_planes_vendor_and_entity_lists_match_the_hubs() {
        for v in hub_control::store::connectors::VENDORS {
            let parsed: Result<hub_topology::Vendor, _> = serde_json::from_value(json!(v));
            assert!(parsed.is_ok_and(|p| p.name() == *v), "{v}");
        }
        let entities: Vec<&str> = hub_schemas::Entity::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            hub_control::store::connectors::CANONICAL_ENTITIES,
            entities.as_slice()
        );
    }

    /// A vendor's OAuth app as its sandbox knows it.
    struct App<'a> {
        vendor: &'a str,
        base: &'a str,
        client_id: &'a str,
        client_secret: &'a str,
        authorize_url: String,
        scope: &'a str,
        redirect: &'a str,
    }

    /// The whole flow through the API against a vendor's sandbox: an admin starts it, the
    /// person approves at the vendor, the browser lands on the callback, the tokens become the
    /// connector's credentials (returned), the state cannot be used again, and "test
    /// connection" then passes with the stored tokens.
    async fn connect_through_the_api(app: App<'_>) -> Value {
        use std::net::SocketAddr;

        use hub_control::api::{ApiConfig, ApiState};
        use hub_control::store::connectors::ConnectorSpec;
        use hub_control::{ControlStore, MasterKey, Role, StoreSettings, TenantId};

        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("control.db").display());
        let store = ControlStore::connect(&url, MasterKey::generate(1), StoreSettings::default())
            .await
            .expect("store");
        let acme = TenantId::new("acme").expect("tenant id");
        store
            .create_tenant(&acme, "Acme Motors")
            .await
            .expect("tenant");
        let spec = ConnectorSpec::from_json(
            &json!({
                "name": "Dealer CRM",
                "vendor": app.vendor,
                "endpoint": app.base,
                "auth_type": "oauth2",
                "oauth": {
                    "client_id": app.client_id,
                    "authorize_url": app.authorize_url,
                    "scope": app.scope,
                    "redirect_uri": app.redirect,
                }
            }),
            &[],
        )
        .expect("spec");
        store
            .create_connector(&acme, "crm", &spec, false)
            .await
            .expect("connector");
        store
            .put_credentials(
                &acme,
                "crm",
                &Secret::new(json!({ "client_secret": app.client_secret })),
            )
            .await
            .expect("client secret");
        let token = store
            .create_api_token(&acme, Role::Admin, "it", 3_600_000, None)
            .await
            .expect("token");
        let api = ApiState::new(store.clone(), ApiConfig::default())
            .with_connector_check(Arc::new(HubConnectorCheck::new()))
            .into_api();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let hub = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(
                listener,
                api.router
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let bearer = token.token.expose().clone();

        let r = http
            .post(format!(
                "http://{hub}/api/v1/tenants/acme/connectors/crm/oauth/start"
            ))
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("start");
        assert_eq!(r.status(), 200);
        let started: Value = r.json().await.expect("json");
        let authorize = started["authorize_url"].as_str().expect("url");
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );

        // The person approves at the vendor, which sends the browser to the redirect URI.
        let r = http
            .get(format!("{authorize}&approve=1"))
            .send()
            .await
            .expect("authorize");
        assert_eq!(r.status(), 302, "{authorize}");
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let (target, query) = location.split_once('?').expect("query");
        assert_eq!(target, app.redirect);

        let callback = format!("http://{hub}/api/v1/oauth/callback?{query}");
        let r = http.get(&callback).send().await.expect("callback");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["connector"], "crm");
        let stored = store
            .get_credentials(&acme, "crm")
            .await
            .expect("read")
            .expect("stored")
            .expose()
            .clone();
        assert!(
            stored["access_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(
            stored["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert_eq!(
            stored["client_secret"], app.client_secret,
            "kept for refreshes"
        );

        // The state was single use.
        let r = http.get(&callback).send().await.expect("replay");
        assert_eq!(r.status(), 400);
        let replay: Value = r.json().await.expect("json");
        assert_eq!(replay["error"]["code"], "oauth_state_used");

        // The stored tokens work.
        let r = http
            .post(format!(
                "http://{hub}/api/v1/tenants/acme/connectors/crm/test"
            ))
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("test");
        assert_eq!(r.status(), 200);
        let outcome: Value = r.json().await.expect("json");
        assert_eq!(outcome["status"], "ok", "{outcome}");

        // A vendor with no authenticated check gets a reachability check.
        let generic = ConnectorSpec::from_json(
            &json!({ "name": "Webhooks", "vendor": "generic", "endpoint": app.base, "auth_type": "custom" }),
            &[],
        )
        .expect("spec");
        store
            .create_connector(&acme, "gen", &generic, false)
            .await
            .expect("connector");
        let r = http
            .post(format!(
                "http://{hub}/api/v1/tenants/acme/connectors/gen/test"
            ))
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("test");
        let outcome: Value = r.json().await.expect("json");
        assert_eq!(outcome["code"], "reachable", "{outcome}");
        store.close().await;
        stored
    }

    #[tokio::test]
    async fn salesforce_web_server_flow_with_pkce_through_the_api() {
        use hub_sandbox::{SalesforceConfig, SalesforceSandbox};
        let redirect = "http://hub.test/api/v1/oauth/callback";
        let sb = SalesforceSandbox::start(SalesforceConfig {
            redirect_uri: redirect.into(),
            ..Default::default()
        })
        .await
        .expect("sandbox");
        let base = sb.base_url().trim_end_matches('/').to_string();
        let stored = connect_through_the_api(App {
            vendor: "salesforce",
            base: &base,
            client_id: &sb.config().consumer_key,
            client_secret: &sb.config().consumer_secret,
            authorize_url: format!("{base}/services/oauth2/authorize"),
            scope: "api refresh_token",
            redirect,
        })
        .await;
        assert_eq!(
            stored["instance_url"],
            base.as_str(),
            "API calls go to instance_url"
        );
    }

    #[tokio::test]
    async fn hubspot_oauth_install_through_the_api() {
        use hub_sandbox::{HubSpotConfig, HubSpotSandbox};
        let redirect = "http://hub.test/api/v1/oauth/callback";
        let sb = HubSpotSandbox::start(HubSpotConfig {
            redirect_uri: redirect.into(),
            ..Default::default()
        })
        .await
        .expect("sandbox");
        let base = sb.base_url().trim_end_matches('/').to_string();
        connect_through_the_api(App {
            vendor: "hubspot",
            base: &base,
            client_id: &sb.config().client_id,
            client_secret: &sb.config().client_secret,
            authorize_url: format!("{base}/oauth/authorize"),
            scope: "crm.objects.contacts.read oauth",
            redirect,
        })
        .await;
    }

    #[test]
    fn new_tokens_are_merged_over_the_old_credentials() {
        let old = Secret::new(json!({ "client_secret": "cs", "access_token": "old" }));
        let m = merged(
            Some(&old),
            json!({ "access_token": "new", "refresh_token": null }),
        );
        assert_eq!(
            m.expose(),
            &json!({ "client_secret": "cs", "access_token": "new" })
        );
    }
}
