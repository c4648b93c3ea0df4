//! Contract tests of the HubSpot client (vendor-apis.md §3) against a target: always our
//! sandbox; also a real HubSpot account when `HUB_CONTRACT_HUBSPOT_URL` and
//! `HUB_CONTRACT_HUBSPOT_TOKEN` (a private-app token) are set — otherwise the real run reports
//! itself skipped. Cases that need a sandbox knob (clock, faults, seeded data, lowered limits)
//! run on the sandbox only and say so for a real target. Nothing sleeps to wait for an event:
//! deliveries are awaited on a channel, token expiry is the sandbox's clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_connectors::error::ErrorClass;
use hub_connectors::http::Secret;
use hub_connectors::http::{RecordingMeter, RetryPolicy, SharedLimiter};
use hub_connectors::hubspot::auth::{HubSpotAuth, OAuthApp};
use hub_connectors::hubspot::client::{HubSpotClient, HubSpotClientConfig};
use hub_connectors::hubspot::events::{self, RejectedDelivery, SignatureError};
use hub_connectors::hubspot::read::{Window, last_modified_property};
use hub_connectors::hubspot::write::{UpsertInput, UpsertOutcome};
use hub_sandbox::hubspot::limits::RateLimits;
use hub_sandbox::hubspot::seed::SeedSize;
use hub_sandbox::hubspot::store::ObjectType;
use hub_sandbox::{FaultSettings, HubSpotConfig, HubSpotSandbox};

/// Where a contract test runs.
enum Target {
    Sandbox(HubSpotSandbox),
    Real { base_url: String, token: String },
}

impl Target {
    fn base_url(&self) -> String {
        match self {
            Target::Sandbox(sb) => sb.base_url().to_owned(),
            Target::Real { base_url, .. } => base_url.clone(),
        }
    }
    fn token(&self) -> String {
        match self {
            Target::Sandbox(sb) => sb.private_app_token().to_owned(),
            Target::Real { token, .. } => token.clone(),
        }
    }
    /// The sandbox, or `None` after reporting the case skipped for a real target.
    fn sandbox(&self, case: &str) -> Option<&HubSpotSandbox> {
        match self {
            Target::Sandbox(sb) => Some(sb),
            Target::Real { .. } => {
                eprintln!("skipped on real HubSpot: {case} needs a sandbox knob");
                None
            }
        }
    }
}

fn relaxed() -> RateLimits {
    RateLimits {
        private_per_10s: 100_000,
        private_daily: 1_000_000,
        oauth_per_10s: 100_000,
        search_per_second: 100_000,
    }
}

fn sandbox_config(contacts: usize) -> HubSpotConfig {
    HubSpotConfig {
        seed_size: SeedSize {
            // Contacts first, so their ids start at 100001.
            contacts,
            companies: 0,
            deals: 0,
        },
        rate_limits: relaxed(),
        ..Default::default()
    }
}

/// The sandbox, plus the real account when credentials are in the environment.
async fn targets(sandbox: HubSpotConfig) -> Vec<Target> {
    let mut out = vec![Target::Sandbox(
        HubSpotSandbox::start(sandbox).await.unwrap(),
    )];
    match (
        std::env::var("HUB_CONTRACT_HUBSPOT_URL"),
        std::env::var("HUB_CONTRACT_HUBSPOT_TOKEN"),
    ) {
        (Ok(base_url), Ok(token)) if !token.is_empty() => {
            out.push(Target::Real { base_url, token })
        }
        _ => eprintln!(
            "real HubSpot target skipped: set HUB_CONTRACT_HUBSPOT_URL and HUB_CONTRACT_HUBSPOT_TOKEN"
        ),
    }
    out
}

struct Ctx {
    client: HubSpotClient,
    meter: Arc<RecordingMeter>,
}

fn client_for(
    target: &Target,
    config: HubSpotClientConfig,
    limiter: Option<Arc<SharedLimiter>>,
) -> Ctx {
    let config = HubSpotClientConfig {
        base_url: target.base_url(),
        ..config
    };
    config.validate().unwrap();
    let meter = Arc::new(RecordingMeter::default());
    let limiter = limiter.unwrap_or_else(|| config.limiter());
    let http = config
        .http("contract-hubspot", limiter, meter.clone(), fast_retries())
        .unwrap();
    let client = HubSpotClient::new(&config, http, HubSpotAuth::private_app(target.token()));
    Ctx { client, meter }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
        ..Default::default()
    }
}

fn generous() -> HubSpotClientConfig {
    HubSpotClientConfig {
        requests_per_10s: 100_000,
        search_per_second: 100_000,
        ..Default::default()
    }
}

fn contact(email: &str) -> UpsertInput {
    UpsertInput {
        id: email.into(),
        properties: [
            ("email", email),
            ("firstname", "Maria"),
            ("lastname", "Lopez"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    }
}

#[tokio::test]
async fn oauth_install_then_token_expiry_refreshes_once_and_the_call_succeeds() {
    for target in targets(sandbox_config(5)).await {
        let Some(sb) = target.sandbox("OAuth install and token expiry") else {
            continue;
        };
        let cfg = HubSpotClientConfig {
            base_url: sb.base_url().into(),
            ..generous()
        };
        let meter = Arc::new(RecordingMeter::default());
        let http = cfg
            .http(
                "contract-hubspot-oauth",
                cfg.limiter(),
                meter.clone(),
                fast_retries(),
            )
            .unwrap();
        let app = OAuthApp {
            authorize_url: format!("{}/oauth/authorize", sb.base_url()),
            token_url: format!("{}/oauth/v1/token", sb.base_url()),
            client_id: sb.config().client_id.clone(),
            client_secret: Secret::new(sb.config().client_secret.clone()),
            redirect_uri: sb.config().redirect_uri.clone(),
            scopes: vec!["crm.objects.contacts.read".into()],
        };
        let authorize = app.authorize();
        // The user approves: the sandbox redirects to the callback with code and state.
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}&approve=1", authorize.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let query = location.split_once('?').unwrap().1;
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            params["state"], authorize.state,
            "state comes back unchanged"
        );
        let auth = HubSpotAuth::from_code(app, http.clone(), &params["code"])
            .await
            .unwrap();
        let client = HubSpotClient::new(&cfg, http, auth);

        let ids = vec!["100001".to_owned()];
        assert_eq!(
            client
                .batch_read("contacts", &ids, &["email"], None)
                .await
                .unwrap()
                .len(),
            1
        );

        // §3.1: access tokens live 30 minutes; move the sandbox past that.
        sb.advance_clock(Duration::from_secs(1801));
        let got = client
            .batch_read("contacts", &ids, &["email"], None)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let calls = meter.calls();
        let token_calls = calls.iter().filter(|c| c.endpoint == "oauth_token").count();
        assert_eq!(
            token_calls, 2,
            "the code exchange and exactly one refresh: {calls:?}"
        );
        assert_eq!(
            meter.count_status(401),
            1,
            "one refused call, then the retry succeeded"
        );
        let debug = format!("{:?}", client.auth());
        assert!(
            !debug.contains(&sb.config().client_secret),
            "no secret in Debug output"
        );
    }
}

#[tokio::test]
async fn incremental_search_reads_across_pages_and_resumes_from_the_cursor() {
    for target in targets(sandbox_config(450)).await {
        let ctx = client_for(&target, generous(), None);
        let prop = last_modified_property("contacts");
        let horizon = match &target {
            Target::Sandbox(sb) => {
                sb.freeze_clock();
                sb.now_ms() + 1
            }
            Target::Real { .. } => chrono::Utc::now().timestamp_millis() - 5_000,
        };
        let start = horizon - 400 * 86_400_000;
        let window = Window {
            start_ms: start,
            end_ms: horizon,
        };
        let read = ctx
            .client
            .read_window("contacts", &["email"], window, 100)
            .await
            .unwrap();
        let stamps: Vec<i64> = read
            .records
            .iter()
            .map(|o| {
                o.properties[prop]
                    .as_deref()
                    .and_then(hub_connectors::timefmt::parse_timestamp_ms)
                    .unwrap()
            })
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]),
            "ascending on {prop}"
        );
        let ids: BTreeSet<&str> = read.records.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids.len(), read.records.len(), "no record twice");
        let Some(sb) = target.sandbox("resuming after a UI change") else {
            continue;
        };
        assert_eq!(read.records.len(), 450, "{} pages of 100", 5);
        assert_eq!(read.covered, window);
        assert!(
            ctx.meter
                .calls()
                .iter()
                .filter(|c| c.endpoint == "search")
                .count()
                >= 5
        );

        // A user edits one contact; the next window, from the cursor, holds just that one.
        sb.advance_clock(Duration::from_secs(1));
        sb.update_contact(100_007, &[("firstname", "Renamed")])
            .unwrap();
        sb.advance_clock(Duration::from_secs(1));
        let next = read.covered.following(86_400_000, sb.now_ms()).unwrap();
        let again = ctx
            .client
            .read_window("contacts", &["firstname"], next, 100)
            .await
            .unwrap();
        assert_eq!(again.records.len(), 1);
        assert_eq!(again.records[0].id, "100007");
        assert_eq!(
            again.records[0].properties["firstname"].as_deref(),
            Some("Renamed")
        );
    }
}

#[tokio::test]
async fn initial_load_of_more_than_ten_thousand_records_narrows_windows_and_misses_none() {
    for target in targets(sandbox_config(10_450)).await {
        let Some(sb) = target.sandbox("a seeded 10,450-contact load") else {
            continue;
        };
        let ctx = client_for(&target, generous(), None);
        sb.freeze_clock();
        let mut windows = Vec::new();
        let mut ids = BTreeSet::new();
        ctx.client
            .read_range(
                "contacts",
                &["email"],
                0,
                sb.now_ms() + 1,
                i64::MAX / 4,
                |w| {
                    assert!(!w.saturated);
                    ids.extend(w.records.iter().map(|o| o.id.clone()));
                    windows.push(w.covered);
                },
            )
            .await
            .unwrap();
        assert_eq!(ids.len(), 10_450, "every record once");
        assert!(
            windows.len() >= 2,
            "the first window was narrowed: {windows:?}"
        );
        assert!(
            windows.windows(2).all(|w| w[0].end_ms == w[1].start_ms),
            "contiguous"
        );
        assert_eq!(
            ctx.meter.count_status(400),
            0,
            "never paged past the 10,000 cap"
        );
    }
}

#[tokio::test]
async fn batch_upsert_with_partial_failures_lines_up_with_inputs() {
    for target in targets(sandbox_config(0)).await {
        let Some(sb) = target.sandbox("writing test contacts") else {
            continue;
        };
        let ctx = client_for(&target, generous(), None);
        let bad = [3usize, 120, 149];
        let inputs: Vec<UpsertInput> = (0..150)
            .map(|i| {
                if bad.contains(&i) {
                    contact(&format!("broken{i}@"))
                } else {
                    contact(&format!("buyer{i}@example.com"))
                }
            })
            .collect();
        let out = ctx
            .client
            .batch_upsert("contacts", "email", &inputs)
            .await
            .unwrap();
        assert_eq!(out.len(), 150);
        for (i, o) in out.iter().enumerate() {
            match o {
                UpsertOutcome::Failed(e) => {
                    assert!(bad.contains(&i), "input {i} failed: {e}");
                    assert_eq!(e.class, ErrorClass::Permanent);
                }
                UpsertOutcome::Written { created, .. } => {
                    assert!(!bad.contains(&i), "input {i} should have failed");
                    assert!(created);
                }
                UpsertOutcome::Unconfirmed => panic!("input {i} unconfirmed"),
            }
        }
        assert_eq!(sb.count(ObjectType::Contacts), 147);
        let calls: Vec<_> = ctx
            .meter
            .calls()
            .into_iter()
            .filter(|c| c.endpoint == "batch_upsert")
            .collect();
        assert_eq!(calls.len(), 2, "100 + 50");
        assert!(calls.iter().all(|c| c.status == 207));
    }
}

/// A webhook endpoint that accepts deliveries with `accept_delivery` and reports each
/// verdict on a channel.
async fn receiver(
    secret: String,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<Result<Vec<events::WebhookEvent>, RejectedDelivery>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/hubspot?tenant=t1",
        listener.local_addr().unwrap()
    );
    let target = url.clone();
    let app = axum::Router::new().route(
        "/webhooks/hubspot",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (tx, secret, target) = (tx.clone(), secret.clone(), target.clone());
                async move {
                    let now = chrono::Utc::now().timestamp_millis();
                    let verdict = events::accept_delivery(
                        secret.as_bytes(),
                        "POST",
                        &target,
                        &body,
                        |n| headers.get(n).and_then(|v| v.to_str().ok()),
                        now,
                    );
                    let status = match &verdict {
                        Ok(_) => axum::http::StatusCode::NO_CONTENT,
                        Err(RejectedDelivery::Signature(_)) => axum::http::StatusCode::UNAUTHORIZED,
                        Err(RejectedDelivery::Body(_)) => axum::http::StatusCode::BAD_REQUEST,
                    };
                    let _ = tx.send(verdict);
                    status
                }
            },
        ),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

async fn next_delivery(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<
        Result<Vec<events::WebhookEvent>, RejectedDelivery>,
    >,
) -> Result<Vec<events::WebhookEvent>, RejectedDelivery> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("receiver open")
}

#[tokio::test]
async fn verified_webhook_events_become_fetched_objects() {
    let mut cfg = sandbox_config(3);
    let (url, mut rx) = receiver(cfg.client_secret.clone()).await;
    cfg.webhook.target_url = Some(url);
    cfg.webhook.batch_window = Duration::from_millis(20);
    for target in targets(cfg.clone()).await {
        let Some(sb) = target.sandbox("webhook deliveries") else {
            continue;
        };
        let ctx = client_for(&target, generous(), None);
        sb.update_contact(100_002, &[("firstname", "Ines")])
            .unwrap();
        let events = next_delivery(&mut rx)
            .await
            .expect("a valid delivery is accepted");
        assert!(events.iter().all(|e| e.object_id == 100_002));
        let fetched = ctx
            .client
            .fetch_changed(&events, &["firstname"])
            .await
            .unwrap();
        assert_eq!(fetched.len(), 1, "one object however many events named it");
        assert_eq!(fetched[0].0, "contacts");
        assert_eq!(
            fetched[0].1.properties["firstname"].as_deref(),
            Some("Ines")
        );
    }
}

#[tokio::test]
async fn webhook_with_a_bad_signature_or_a_stale_timestamp_is_rejected() {
    let mut cfg = sandbox_config(3);
    let (url, mut rx) = receiver("not-the-app-secret".into()).await;
    cfg.webhook.target_url = Some(url);
    cfg.webhook.batch_window = Duration::from_millis(20);
    for target in targets(cfg).await {
        let Some(sb) = target.sandbox("webhook deliveries") else {
            continue;
        };
        sb.update_contact(100_001, &[("firstname", "Eve")]).unwrap();
        match next_delivery(&mut rx).await {
            Err(RejectedDelivery::Signature(SignatureError::Mismatch)) => {}
            other => panic!("expected a signature mismatch, got {other:?}"),
        }
    }
    // Late deliveries (older than 5 minutes, §3.8) fail even with the right secret.
    let mut cfg = sandbox_config(3);
    let (url, mut rx) = receiver(cfg.client_secret.clone()).await;
    cfg.webhook.target_url = Some(url);
    cfg.webhook.batch_window = Duration::from_millis(20);
    cfg.webhook.timestamp_offset_ms = -6 * 60 * 1000;
    let sb = HubSpotSandbox::start(cfg).await.unwrap();
    sb.update_contact(100_001, &[("firstname", "Late")])
        .unwrap();
    match next_delivery(&mut rx).await {
        Err(e @ RejectedDelivery::Signature(SignatureError::Stale)) => {
            assert_eq!(e.code(), "hubspot_signature_stale")
        }
        other => panic!("expected a stale delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_storm_through_the_shared_limiter_meets_no_429s() {
    let limits = RateLimits {
        private_per_10s: 300,
        private_daily: 1_000_000,
        oauth_per_10s: 300,
        search_per_second: 20,
    };
    for target in targets(HubSpotConfig {
        rate_limits: limits.clone(),
        ..sandbox_config(50)
    })
    .await
    {
        let Some(_sb) = target.sandbox("a storm at lowered limits") else {
            continue;
        };
        // The limiter is configured from the same published numbers the sandbox enforces.
        let cfg = HubSpotClientConfig {
            requests_per_10s: limits.private_per_10s,
            search_per_second: limits.search_per_second,
            ..Default::default()
        };
        let ctx = client_for(&target, cfg, None);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..110u64 {
            let c = ctx.client.clone();
            tasks.push(tokio::spawn(async move {
                if i % 4 == 0 {
                    let w = Window {
                        start_ms: 0,
                        end_ms: i64::MAX / 2,
                    };
                    c.read_window("contacts", &["email"], w, 100)
                        .await
                        .map(|_| ())
                } else {
                    let ids = vec![(100_001 + i % 50).to_string()];
                    c.batch_read("contacts", &ids, &["email"], None)
                        .await
                        .map(|_| ())
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let calls = ctx.meter.calls();
        assert_eq!(calls.len(), 110, "no retries were needed");
        assert_eq!(
            ctx.meter.count_status(429),
            0,
            "the limiter kept the client under the limits"
        );
        eprintln!("110 calls in {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn without_the_limiter_429s_are_retried_honouring_retry_after() {
    for target in targets(HubSpotConfig {
        rate_limits: RateLimits {
            private_per_10s: 5,
            ..relaxed()
        },
        ..sandbox_config(10)
    })
    .await
    {
        let Some(sb) = target.sandbox("429 faults") else {
            continue;
        };
        let ids = vec!["100001".to_owned()];
        // With no limiter and no retries, a burst over the sandbox's 5 per 10 s meets 429s
        // that are classified as rate limits with their policy.
        let cfg = HubSpotClientConfig {
            base_url: sb.base_url().into(),
            ..generous()
        };
        let meter = Arc::new(RecordingMeter::default());
        let http = cfg
            .http(
                "contract-hubspot-nolimit",
                SharedLimiter::unlimited(),
                meter.clone(),
                RetryPolicy {
                    max_retries: 0,
                    ..fast_retries()
                },
            )
            .unwrap();
        let bare = HubSpotClient::new(&cfg, http, HubSpotAuth::private_app(sb.private_app_token()));
        let mut refused = 0;
        for _ in 0..8 {
            if let Err(e) = bare.batch_read("contacts", &ids, &["email"], None).await {
                assert!(matches!(e.class, ErrorClass::RateLimited { .. }), "{e}");
                assert_eq!(e.code, "TEN_SECONDLY_ROLLING");
                refused += 1;
            }
        }
        assert_eq!(refused, 3);

        // A 429 that says Retry-After: 1 is waited out, then the call succeeds.
        sb.advance_clock(Duration::from_secs(11));
        sb.set_faults(FaultSettings {
            fail_next: 2,
            error_status: 429,
            retry_after: Some(Duration::from_secs(1)),
            ..Default::default()
        });
        let ctx = client_for(&target, generous(), Some(SharedLimiter::unlimited()));
        let started = Instant::now();
        let got = ctx
            .client
            .batch_read("contacts", &ids, &["email"], None)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "two waits of at least 1 s"
        );
        let statuses: Vec<u16> = ctx.meter.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, vec![429, 429, 200]);
    }
}

#[tokio::test]
async fn garbled_and_dropped_answers_are_classified_not_panics() {
    for target in targets(sandbox_config(5)).await {
        let Some(sb) = target.sandbox("fault injection") else {
            continue;
        };
        let ctx = client_for(&target, generous(), Some(SharedLimiter::unlimited()));
        let ids = vec!["100001".to_owned()];
        // Two dropped connections, then an answer: transport errors are transient and retried.
        sb.update_faults(|f| f.drop_next = 2);
        assert_eq!(
            ctx.client
                .batch_read("contacts", &ids, &["email"], None)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(ctx.meter.count_status(0), 2);
        // A permanent error comes back with HubSpot's category, unretried.
        let err = ctx
            .client
            .batch_read("no-such-object", &ids, &[], None)
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent, "{err}");
        // An object type that would change the path never leaves the process.
        assert!(
            ctx.client
                .batch_read("contacts/../x", &ids, &[], None)
                .await
                .is_err()
        );
    }
}
