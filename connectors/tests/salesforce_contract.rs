//! Contract tests of the Salesforce client (vendor-apis.md §2) against a target: always our
//! sandbox; also a real org when `HUB_CONTRACT_SALESFORCE_URL` (the instance URL) and
//! `HUB_CONTRACT_SALESFORCE_TOKEN` (a session id) are set — otherwise the real run reports
//! itself skipped. Cases that need a sandbox knob (clock, faults, usage counter, seeded data)
//! run on the sandbox only and say so for a real target. Nothing sleeps: session expiry and
//! the daily allocation are the sandbox's knobs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hub_connectors::error::ErrorClass;
use hub_connectors::http::{RecordingMeter, RetryPolicy, Secret};
use hub_connectors::salesforce::auth::{
    JwtBearer, SalesforceAuth, Session, UnverifiedSandboxSigner, WebServerApp,
};
use hub_connectors::salesforce::client::{SalesforceClient, SalesforceClientConfig};
use hub_connectors::salesforce::write::Outcome;
use hub_sandbox::salesforce::seed::SeedSize;
use hub_sandbox::{SalesforceConfig, SalesforceSandbox};
use serde_json::{Map, Value, json};

enum Target {
    Sandbox(SalesforceSandbox),
    Real { instance_url: String, token: String },
}

impl Target {
    fn sandbox(&self, case: &str) -> Option<&SalesforceSandbox> {
        match self {
            Target::Sandbox(sb) => Some(sb),
            Target::Real { .. } => {
                eprintln!("skipped on a real org: {case} needs a sandbox knob");
                None
            }
        }
    }
}

fn sandbox_config(size: SeedSize) -> SalesforceConfig {
    SalesforceConfig {
        seed_size: size,
        daily_api_requests: 1_000_000,
        ..Default::default()
    }
}

async fn targets(config: SalesforceConfig) -> Vec<Target> {
    let mut out = vec![Target::Sandbox(
        SalesforceSandbox::start(config).await.unwrap(),
    )];
    match (
        std::env::var("HUB_CONTRACT_SALESFORCE_URL"),
        std::env::var("HUB_CONTRACT_SALESFORCE_TOKEN"),
    ) {
        (Ok(instance_url), Ok(token)) if !token.is_empty() => out.push(Target::Real {
            instance_url,
            token,
        }),
        _ => eprintln!(
            "real Salesforce target skipped: set HUB_CONTRACT_SALESFORCE_URL and HUB_CONTRACT_SALESFORCE_TOKEN"
        ),
    }
    out
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(1),
        ..Default::default()
    }
}

fn config(login_url: &str) -> SalesforceClientConfig {
    SalesforceClientConfig {
        login_url: login_url.into(),
        requests_per_second: 10_000,
        bulk_poll_min_ms: 10,
        bulk_poll_max_ms: 100,
        ..Default::default()
    }
}

struct Ctx {
    client: SalesforceClient,
    meter: Arc<RecordingMeter>,
}

/// A client on the JWT bearer flow for the sandbox, or on the given session for a real org.
fn client_for(target: &Target) -> Ctx {
    let meter = Arc::new(RecordingMeter::default());
    let (cfg, auth_of): (SalesforceClientConfig, Box<dyn FnOnce(_) -> SalesforceAuth>) =
        match target {
            Target::Sandbox(sb) => {
                let cfg = config(sb.base_url());
                let jwt = JwtBearer {
                    login_url: sb.base_url().into(),
                    consumer_key: sb.config().consumer_key.clone(),
                    username: sb.config().username.clone(),
                    audience: "https://login.salesforce.com".into(),
                    assertion_lifetime: Duration::from_secs(180),
                    signer: Arc::new(UnverifiedSandboxSigner),
                };
                (cfg, Box::new(move |http| SalesforceAuth::jwt(jwt, http)))
            }
            Target::Real {
                instance_url,
                token,
            } => {
                let session = Session {
                    access_token: Secret::new(token.clone()),
                    instance_url: instance_url.trim_end_matches('/').to_owned(),
                    refresh_token: None,
                    issued_at_ms: None,
                };
                (
                    config("https://login.salesforce.com"),
                    Box::new(move |_| SalesforceAuth::Static(session)),
                )
            }
        };
    cfg.validate().unwrap();
    let http = cfg
        .http(
            "contract-salesforce",
            cfg.limiter(),
            meter.clone(),
            fast_retries(),
        )
        .unwrap();
    let client = SalesforceClient::new(&cfg, http.clone(), auth_of(http));
    Ctx { client, meter }
}

fn vehicle(vin: &str) -> Map<String, Value> {
    Map::from_iter([
        ("VIN__c".to_owned(), json!(vin)),
        ("Make__c".to_owned(), json!("Honda")),
        ("Model__c".to_owned(), json!("Accord")),
        ("Odometer__c".to_owned(), json!(1200)),
    ])
}

/// VINs with a correct check digit (the sandbox's validation rule, §11.3): the digit at
/// position 9 is computed here.
fn valid_vin(serial: u32) -> String {
    let base = format!("1HGCM8263{}A{:06}", 0, serial);
    let translit = |c: char| -> u32 {
        match c {
            '0'..='9' => c.to_digit(10).unwrap(),
            'A' | 'J' => 1,
            'B' | 'K' | 'S' => 2,
            'C' | 'L' | 'T' => 3,
            'D' | 'M' | 'U' => 4,
            'E' | 'N' | 'V' => 5,
            'F' | 'W' => 6,
            'G' | 'P' | 'X' => 7,
            'H' | 'Y' => 8,
            'R' | 'Z' => 9,
            _ => 0,
        }
    };
    const W: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let sum: u32 = base.chars().zip(W).map(|(c, w)| translit(c) * w).sum();
    let check = match sum % 11 {
        10 => 'X',
        d => char::from_digit(d, 10).unwrap(),
    };
    let mut v: Vec<char> = base.chars().collect();
    v[8] = check;
    v.into_iter().collect()
}

#[tokio::test]
async fn web_server_flow_with_pkce_then_session_expiry_refreshes_once() {
    for target in targets(sandbox_config(SeedSize {
        contacts: 3,
        ..Default::default()
    }))
    .await
    {
        let Some(sb) = target.sandbox("the web-server flow and session expiry") else {
            continue;
        };
        let cfg = config(sb.base_url());
        let meter = Arc::new(RecordingMeter::default());
        let http = cfg
            .http(
                "contract-salesforce-web",
                cfg.limiter(),
                meter.clone(),
                fast_retries(),
            )
            .unwrap();
        let app = WebServerApp {
            login_url: sb.base_url().into(),
            consumer_key: sb.config().consumer_key.clone(),
            consumer_secret: Some(Secret::new(sb.config().consumer_secret.clone())),
            redirect_uri: sb.config().redirect_uri.clone(),
            scope: "api refresh_token".into(),
        };
        let authorize = app.authorize();
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
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(params["state"], authorize.state);
        let session = app
            .exchange_code(&http, &params["code"], authorize.pkce.as_ref())
            .await
            .unwrap();
        assert_eq!(
            session.instance_url,
            sb.base_url(),
            "calls go to instance_url"
        );
        assert!(session.refresh_token.is_some());
        let client = SalesforceClient::new(
            &cfg,
            http.clone(),
            SalesforceAuth::web_server(app, http, session),
        );

        assert!(client.limits().await.unwrap().max > 0);
        // §2.1: no expires_in; the session ends, the next call gets 401 INVALID_SESSION_ID.
        sb.expire_sessions();
        assert!(client.limits().await.unwrap().max > 0);
        let calls = meter.calls();
        assert_eq!(
            calls.iter().filter(|c| c.endpoint == "oauth_token").count(),
            2,
            "the code exchange and exactly one refresh: {calls:?}"
        );
        assert_eq!(meter.count_status(401), 1);
        assert!(!format!("{:?}", client.auth()).contains(&sb.config().consumer_secret));
    }
}

#[tokio::test]
async fn jwt_bearer_session_is_reminted_after_expiry() {
    for target in targets(sandbox_config(SeedSize::default())).await {
        let Some(sb) = target.sandbox("session expiry") else {
            continue;
        };
        let ctx = client_for(&target);
        ctx.client.limits().await.unwrap();
        // The session ends (not the clock: the assertion's `exp` is stamped from the hub's
        // clock, and a sandbox clock hours ahead would rightly call it expired).
        sb.expire_sessions();
        ctx.client.limits().await.unwrap();
        let tokens = ctx
            .meter
            .calls()
            .iter()
            .filter(|c| c.endpoint == "oauth_token")
            .count();
        assert_eq!(tokens, 2, "minted, then re-minted once");
        assert_eq!(ctx.meter.count_status(401), 1);
    }
}

#[tokio::test]
async fn incremental_query_reads_across_pages_and_resumes_from_the_cursor() {
    let mut cfg = sandbox_config(SeedSize {
        contacts: 450,
        ..Default::default()
    });
    cfg.max_page_size = 200;
    for target in targets(cfg).await {
        let ctx = client_for(&target);
        let mut q = ctx
            .client
            .incremental("Contact", &["LastName", "Email"], None, false)
            .await
            .unwrap();
        let mut ids = BTreeSet::new();
        let mut pages = 0;
        let mut last = None;
        while let Some(page) = q.next_page(&ctx.client).await.unwrap() {
            pages += 1;
            for r in &page.records {
                assert!(
                    ids.insert(r["Id"].as_str().unwrap().to_owned()),
                    "no record twice"
                );
            }
            assert!(page.cursor >= last, "the cursor only moves forward");
            last = page.cursor.clone();
            if matches!(target, Target::Real { .. }) && pages >= 3 {
                break;
            }
        }
        let Some(sb) = target.sandbox("resuming after a change") else {
            continue;
        };
        assert_eq!(ids.len(), 450);
        assert_eq!(pages, 3, "pages of 200, 200, 50");
        assert_eq!(
            ctx.meter
                .calls()
                .iter()
                .filter(|c| c.endpoint == "query_more")
                .count(),
            2
        );

        // Resume from the committed cursor: nothing new, then exactly the changed record.
        let cursor = last.clone();
        let mut again = ctx
            .client
            .incremental("Contact", &["LastName"], cursor.clone(), false)
            .await
            .unwrap();
        let mut seen = 0;
        while let Some(p) = again.next_page(&ctx.client).await.unwrap() {
            seen += p.records.len();
        }
        assert_eq!(seen, 0, "the >= overlap is dropped");
        let some_id = ids.iter().nth(17).unwrap().clone();
        sb.advance_clock(Duration::from_secs(2));
        sb.update(
            &some_id,
            Map::from_iter([("LastName".into(), json!("Okafor"))]),
        )
        .unwrap();
        let mut again = ctx
            .client
            .incremental("Contact", &["LastName"], cursor, false)
            .await
            .unwrap();
        let mut changed = Vec::new();
        while let Some(p) = again.next_page(&ctx.client).await.unwrap() {
            changed.extend(p.records);
        }
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["Id"], json!(some_id));
        assert_eq!(changed[0]["LastName"], "Okafor");
    }
}

#[tokio::test]
async fn bulk_query_initial_load_polls_and_pages_csv_by_locator() {
    let mut cfg = sandbox_config(SeedSize {
        contacts: 1_234,
        ..Default::default()
    });
    cfg.bulk_polls_to_complete = 3;
    for target in targets(cfg).await {
        let ctx = client_for(&target);
        let job = ctx
            .client
            .bulk_query(
                "SELECT Id, LastName, Email, SystemModstamp FROM Contact",
                false,
            )
            .await
            .unwrap();
        let mut locator = None;
        let mut ids = BTreeSet::new();
        let mut pages = 0;
        loop {
            let page = ctx
                .client
                .bulk_results(&job.id, locator.as_deref(), Some(500))
                .await
                .unwrap();
            pages += 1;
            for r in &page.records {
                assert!(r.contains_key("LastName"));
                ids.insert(r["Id"].as_str().unwrap().to_owned());
            }
            match page.next_locator {
                Some(l) => locator = Some(l),
                None => break,
            }
        }
        if target.sandbox("exact counts of seeded data").is_none() {
            continue;
        }
        assert_eq!(ids.len(), 1_234);
        assert_eq!(pages, 3, "500 + 500 + 234");
        let polls = ctx
            .meter
            .calls()
            .iter()
            .filter(|c| c.endpoint == "bulk_query_status")
            .count();
        assert_eq!(polls, 3, "polled until JobComplete");
    }
}

#[tokio::test]
async fn collections_upsert_with_partial_failures_lines_up_with_inputs() {
    for target in targets(sandbox_config(SeedSize::default())).await {
        let Some(sb) = target.sandbox("writing test vehicles") else {
            continue;
        };
        let ctx = client_for(&target);
        let bad = [5usize, 200, 249];
        let records: Vec<Map<String, Value>> = (0..250u32)
            .map(|i| {
                if bad.contains(&(i as usize)) {
                    vehicle("1HGCM82643A004352") // wrong check digit
                } else {
                    vehicle(&valid_vin(i))
                }
            })
            .collect();
        let out = ctx
            .client
            .upsert("Vehicle__c", "VIN__c", &records)
            .await
            .unwrap();
        assert_eq!(out.len(), 250);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.index, i, "results in input order");
            match &r.outcome {
                Outcome::Failed(e) => {
                    assert!(bad.contains(&i), "record {i} failed: {e}");
                    assert_eq!(e.code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
                    assert_eq!(e.class, ErrorClass::Permanent);
                }
                Outcome::Created { .. } => assert!(!bad.contains(&i), "record {i} should fail"),
                Outcome::Updated { .. } => panic!("record {i}: nothing existed to update"),
            }
        }
        assert_eq!(sb.count("Vehicle__c"), 247);
        let calls: Vec<_> = ctx
            .meter
            .calls()
            .into_iter()
            .filter(|c| c.endpoint == "composite_upsert")
            .collect();
        assert_eq!(calls.len(), 2, "200 + 50");

        // Locked rows are per-record transient failures, reported as such.
        sb.lock_rows_next(1);
        let again = ctx
            .client
            .upsert("Vehicle__c", "VIN__c", &records[..2])
            .await
            .unwrap();
        match &again[0].outcome {
            Outcome::Failed(e) => {
                assert_eq!(e.code, "UNABLE_TO_LOCK_ROW");
                assert!(matches!(e.class, ErrorClass::Transient { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(again[1].outcome, Outcome::Updated { .. }));
        // Bad input never leaves the process.
        let err = ctx
            .client
            .upsert("Vehicle__c", "VIN__c); DROP", &records[..1])
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
}

#[tokio::test]
async fn collections_update_by_id_reports_each_record_and_writes_only_the_good_ones() {
    for target in targets(sandbox_config(SeedSize::default())).await {
        let Some(sb) = target.sandbox("updating test vehicles") else {
            continue;
        };
        let ctx = client_for(&target);
        // 210 vehicles to update (two calls: 200 + 10), one already deleted.
        let ids: Vec<String> = (0..210u32)
            .map(|i| sb.insert("Vehicle__c", vehicle(&valid_vin(i))).unwrap())
            .collect();
        assert!(sb.delete(&ids[7]));
        let before = sb.record(&ids[0]).unwrap().modstamp_ms;
        sb.advance_clock(Duration::from_secs(1));
        let unknown = hub_sandbox::salesforce::schema::record_id("a0X", 999_999);
        let mut records: Vec<Map<String, Value>> = ids
            .iter()
            .map(|id| {
                Map::from_iter([
                    ("Id".to_owned(), json!(id)),
                    ("Odometer__c".to_owned(), json!(4200)),
                ])
            })
            .collect();
        records[3].insert("Id".into(), json!(unknown)); // no such record
        records[5].insert("Odometer__c".into(), json!("a lot")); // not a number
        records[201].insert("Colour__c".into(), json!("red")); // no such field
        records[205].insert("VIN__c".into(), json!("1HGCM82643A004352")); // bad check digit
        let expected: [(usize, &str); 5] = [
            (3, "INVALID_CROSS_REFERENCE_KEY"),
            (5, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
            (7, "ENTITY_IS_DELETED"),
            (201, "INVALID_FIELD"),
            (205, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        ];
        let out = ctx.client.update("Vehicle__c", &records).await.unwrap();
        assert_eq!(out.len(), 210);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.index, i, "results in input order");
            match (&r.outcome, expected.iter().find(|(j, _)| *j == i)) {
                (Outcome::Updated { id }, None) => assert_eq!(id, &ids[i]),
                (Outcome::Failed(e), Some((_, code))) => {
                    assert_eq!(e.code, *code, "record {i}");
                    assert_eq!(e.class, ErrorClass::Permanent, "record {i}");
                }
                (other, want) => panic!("record {i}: {other:?}, expected {want:?}"),
            }
        }
        // The store has the successful updates, and only those.
        for (i, id) in ids.iter().enumerate() {
            let rec = sb.record(id).unwrap();
            let odometer = rec.fields["Odometer__c"].as_f64().unwrap();
            if expected.iter().any(|(j, _)| *j == i) {
                assert_eq!(odometer, 1200.0, "record {i} is unchanged");
            } else {
                assert_eq!(odometer, 4200.0, "record {i} is updated");
            }
        }
        assert!(sb.record(&ids[0]).unwrap().modstamp_ms > before);
        assert_eq!(sb.count("Vehicle__c"), 209, "an update never creates");
        assert!(sb.record(&unknown).is_none());
        let changes = sb.changes();
        assert!(changes.iter().any(|ch| ch.change_type == "UPDATE"
            && ch.record_id == ids[0]
            && ch.origin.ends_with(";client=automatrix-hub")));
        let calls: Vec<_> = ctx
            .meter
            .calls()
            .into_iter()
            .filter(|c| c.endpoint == "composite_update")
            .collect();
        assert_eq!(calls.len(), 2, "200 + 10");

        // A locked row is a per-record transient failure.
        sb.lock_rows_next(1);
        let again = ctx
            .client
            .update("Vehicle__c", &records[..2])
            .await
            .unwrap();
        match &again[0].outcome {
            Outcome::Failed(e) => {
                assert_eq!(e.code, "UNABLE_TO_LOCK_ROW");
                assert!(matches!(e.class, ErrorClass::Transient { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(again[1].outcome, Outcome::Updated { id: ids[1].clone() });

        // A whole-call failure that is not permanent stops the remaining calls.
        let calls_before = ctx.meter.calls().len();
        sb.update_faults(|f| {
            f.fail_next = 10;
            f.error_status = 503;
        });
        let down = ctx.client.update("Vehicle__c", &records).await.unwrap();
        sb.update_faults(|f| f.fail_next = 0);
        assert_eq!(down.len(), 210);
        assert!(down.iter().all(|r| matches!(&r.outcome,
            Outcome::Failed(e) if matches!(e.class, ErrorClass::Transient { .. }))));
        let sent = ctx.meter.calls()[calls_before..]
            .iter()
            .filter(|c| c.endpoint == "composite_update")
            .count();
        assert_eq!(
            sent,
            1 + fast_retries().max_retries,
            "the first call only, with its retries"
        );

        // Bad input never leaves the process.
        let mut no_id = records[0].clone();
        no_id.remove("Id");
        let calls_before = ctx.meter.calls().len();
        let err = ctx
            .client
            .update("Vehicle__c", &[records[1].clone(), no_id])
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("record 1"), "{err}");
        let err = ctx
            .client
            .update("Vehicle__c); DROP", &records[..1])
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(ctx.meter.calls().len(), calls_before);
    }
}

#[tokio::test]
async fn exhausted_daily_allocation_is_rate_limited_without_a_hot_loop() {
    for target in targets(SalesforceConfig {
        daily_api_requests: 50,
        ..sandbox_config(SeedSize::default())
    })
    .await
    {
        let Some(sb) = target.sandbox("the usage counter") else {
            continue;
        };
        let ctx = client_for(&target);
        ctx.client.limits().await.unwrap();
        sb.set_api_usage(50);
        let before = ctx.meter.calls().len();
        let err = ctx.client.limits().await.unwrap_err();
        let e = match err {
            hub_connectors::salesforce::client::SalesforceError::Vendor(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(e.status, 403);
        assert_eq!(e.code, "REQUEST_LIMIT_EXCEEDED");
        assert!(
            matches!(e.class, ErrorClass::RateLimited { retry_after: Some(d) } if d >= Duration::from_secs(60))
        );
        assert_eq!(ctx.meter.calls().len(), before + 1, "one call, not retried");
        // The 403 carried `api-usage=50/50`: further calls are refused without a request.
        assert_eq!(ctx.client.http().last_budget().unwrap().remaining, 0);
        for _ in 0..5 {
            assert!(ctx.client.limits().await.is_err());
        }
        assert_eq!(
            ctx.meter.calls().len(),
            before + 1,
            "no request spent on a known-empty budget"
        );
    }
}

#[tokio::test]
async fn transient_faults_are_retried_and_garbage_is_classified() {
    for target in targets(sandbox_config(SeedSize {
        contacts: 5,
        ..Default::default()
    }))
    .await
    {
        let Some(sb) = target.sandbox("fault injection") else {
            continue;
        };
        let ctx = client_for(&target);
        ctx.client.limits().await.unwrap();
        sb.update_faults(|f| {
            f.fail_next = 2;
            f.error_status = 503;
        });
        ctx.client.limits().await.unwrap();
        assert_eq!(ctx.meter.count_status(503), 2);
        sb.update_faults(|f| f.drop_next = 1);
        ctx.client.limits().await.unwrap();
        assert_eq!(ctx.meter.count_status(0), 1);
        // A malformed SOQL name never reaches Salesforce; bad SOQL that does is permanent.
        assert!(
            ctx.client
                .incremental("Contact; DELETE", &[], None, false)
                .await
                .is_err()
        );
        let err = ctx
            .client
            .bulk_query("SELECT Nope FROM Contact", false)
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    }
}

#[tokio::test]
async fn cdc_stream_delivers_changes_tells_own_writes_apart_and_resumes_from_replay_id() {
    use hub_connectors::salesforce::events::{CdcStream, ReplayFrom, channel_for};
    let cfg = SalesforceConfig {
        cometd_timeout: Duration::from_secs(10),
        ..sandbox_config(SeedSize::default())
    };
    for target in targets(cfg).await {
        let Some(sb) = target.sandbox("writes and gap events") else {
            continue;
        };
        let ctx = client_for(&target);
        let channel = channel_for("Vehicle__c").unwrap();
        let mut stream = CdcStream::new(ctx.client.clone(), channel.clone(), ReplayFrom::New);
        stream.open().await.unwrap();
        // The long poll is open before the write; it returns when the change is committed.
        let poll = tokio::spawn(async move {
            let batch = stream.next_batch().await;
            (stream, batch)
        });
        let written = ctx
            .client
            .upsert("Vehicle__c", "VIN__c", &[vehicle(&valid_vin(1))])
            .await
            .unwrap();
        let id = match &written[0].outcome {
            Outcome::Created { id } => id.clone(),
            other => panic!("{other:?}"),
        };
        let (mut stream, batch) = tokio::time::timeout(Duration::from_secs(10), poll)
            .await
            .unwrap()
            .unwrap();
        let events = batch.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].change_type, "CREATE");
        assert_eq!(events[0].record_ids, vec![id.clone()]);
        assert!(
            events[0].is_own_write("automatrix-hub"),
            "our Sforce-Call-Options tag"
        );
        let after_create = stream.replay_id();
        assert_eq!(after_create, events[0].replay_id);

        // A person's change and a gap event; the session also ends in between.
        sb.update(&id, Map::from_iter([("Odometer__c".into(), json!(2500))]))
            .unwrap();
        sb.inject_gap("Vehicle__c", &id, "GAP_UPDATE");
        sb.expire_sessions();
        let events = stream.next_batch().await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.change_type.as_str()).collect();
        assert_eq!(kinds, ["UPDATE", "GAP_UPDATE"]);
        assert!(!events[0].is_own_write("automatrix-hub"));
        assert_eq!(events[0].fields["Odometer__c"], json!(2500));
        assert!(events[1].needs_reread() && events[1].fields.is_empty());
        assert_eq!(
            ctx.meter.count_status(401),
            1,
            "the ended session was re-minted once"
        );

        // A new stream from the replay id stored after the create sees only what followed.
        let mut resumed =
            CdcStream::new(ctx.client.clone(), channel, ReplayFrom::After(after_create));
        let again = resumed.next_batch().await.unwrap();
        let kinds: Vec<&str> = again.iter().map(|e| e.change_type.as_str()).collect();
        assert_eq!(kinds, ["UPDATE", "GAP_UPDATE"]);
    }
}
