//! Contract tests of the HubSpot sandbox (vendor-apis.md §3), driven with a plain reqwest
//! client and checked with the connector's own parsers and verifier.

use std::time::Duration;

use hub_connectors::error::ErrorClass;
use hub_connectors::hubspot::{errors, events, read, write};
use hub_sandbox::hubspot::limits::RateLimits;
use hub_sandbox::hubspot::seed::SeedSize;
use hub_sandbox::hubspot::store::ObjectType;
use hub_sandbox::hubspot::webhooks::AttemptOutcome;
use hub_sandbox::{FaultSettings, HubSpotConfig, HubSpotSandbox};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn relaxed_limits() -> RateLimits {
    RateLimits {
        private_per_10s: 100_000,
        private_daily: 1_000_000,
        oauth_per_10s: 100_000,
        search_per_second: 100_000,
    }
}

async fn start(contacts: usize) -> HubSpotSandbox {
    HubSpotSandbox::start(HubSpotConfig {
        seed_size: SeedSize {
            contacts,
            companies: 5,
            deals: 20,
        },
        rate_limits: relaxed_limits(),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn post_json(
    c: &reqwest::Client,
    sb: &HubSpotSandbox,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c
        .post(format!("{}{path}", sb.base_url()))
        .bearer_auth(sb.private_app_token())
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn oauth_code_is_exchanged_refreshed_and_expires() {
    let sb = start(3).await;
    let c = client();
    let cfg = sb.config().clone();
    let authorize = format!(
        "{}/oauth/authorize?{}",
        sb.base_url(),
        form(&[
            ("client_id", &cfg.client_id),
            ("redirect_uri", &cfg.redirect_uri),
            ("scope", "crm.objects.contacts.read"),
            ("state", "xyz"),
        ])
    );
    let page = c.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("approve=1"));
    let approved = c
        .get(format!("{authorize}&approve=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 302);
    let location = approved.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&cfg.redirect_uri));
    assert!(location.contains("state=xyz"));
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned();

    let token_url = format!("{}/oauth/v1/token", sb.base_url());
    let exchange = |body: String| {
        c.post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let tok: Value = exchange(form(&[
        ("grant_type", "authorization_code"),
        ("client_id", &cfg.client_id),
        ("client_secret", &cfg.client_secret),
        ("redirect_uri", &cfg.redirect_uri),
        ("code", &code),
    ]))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["expires_in"], 1800);
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let refresh = tok["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.len() > 200, "§3.1: long access tokens");

    // A code is single-use.
    let again = exchange(form(&[
        ("grant_type", "authorization_code"),
        ("client_id", &cfg.client_id),
        ("client_secret", &cfg.client_secret),
        ("redirect_uri", &cfg.redirect_uri),
        ("code", &code),
    ]))
    .await
    .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["status"],
        "BAD_AUTH_CODE"
    );

    let contacts = format!("{}/crm/v3/objects/contacts?limit=2", sb.base_url());
    let ok = c.get(&contacts).bearer_auth(&access).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // §3.7: OAuth calls carry no daily headers.
    assert!(ok.headers().get("x-hubspot-ratelimit-daily").is_none());
    assert!(ok.headers().get("x-hubspot-ratelimit-max").is_some());

    sb.advance_clock(Duration::from_secs(1801));
    let expired = c.get(&contacts).bearer_auth(&access).send().await.unwrap();
    assert_eq!(expired.status(), 401);
    let body = expired.bytes().await.unwrap();
    let classified = errors::classify(401, None, &body);
    assert_eq!(classified.code, "EXPIRED_AUTHENTICATION");
    assert_eq!(classified.class, ErrorClass::Auth);

    let refreshed: Value = exchange(form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &cfg.client_id),
        ("client_secret", &cfg.client_secret),
        ("refresh_token", &refresh),
    ]))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let fresh = refreshed["access_token"].as_str().unwrap();
    assert_ne!(fresh, access);
    let ok = c.get(&contacts).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    sb.expire_access_tokens();
    let killed = c.get(&contacts).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(killed.status(), 401);

    let bad = exchange(form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &cfg.client_id),
        ("client_secret", &cfg.client_secret),
        ("refresh_token", "nope"),
    ]))
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["status"],
        "BAD_REFRESH_TOKEN"
    );

    let anonymous = c.get(&contacts).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.json::<Value>().await.unwrap()["category"],
        "INVALID_AUTHENTICATION"
    );
    // Private-app tokens never expire.
    let pat = c
        .get(&contacts)
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(pat.status(), 200);
    assert!(
        pat.headers()
            .get("x-hubspot-ratelimit-daily-remaining")
            .is_some()
    );
}

#[tokio::test]
async fn windowed_search_pages_through_every_contact_in_modified_order() {
    let sb = start(450).await;
    let c = client();
    let window = read::Window {
        start_ms: 0,
        end_ms: sb.now_ms() + 1,
    };
    let mut req = read::SearchRequest::first_page("contacts", &["email", "firstname"], window, 200);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, headers, body) = post_json(
            &c,
            &sb,
            &read::search_path("/crm/v3/objects", "contacts"),
            &req.body(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // §3.4: search responses carry no rate-limit headers.
        assert!(headers.get("x-hubspot-ratelimit-remaining").is_none());
        let page = read::parse_search_page(body.to_string().as_bytes()).unwrap();
        assert_eq!(page.total, 450);
        pages += 1;
        seen.extend(page.results.iter().map(|o| {
            (
                o.properties["lastmodifieddate"].clone().unwrap(),
                o.id.clone(),
            )
        }));
        match req.next(&page) {
            Some(n) => req = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 450);
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "ascending by lastmodifieddate"
    );
    let mut ids: Vec<_> = seen.iter().map(|s| s.1.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 450);

    // A narrower window (GT/LTE, EQ) selects a subset.
    let mid = &seen[225].0;
    let body = json!({
        "filterGroups": [{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GT", "value": mid},
            {"propertyName": "lastmodifieddate", "operator": "LTE", "value": (sb.now_ms()).to_string()}]}],
        "limit": 1
    });
    let (status, _, body) = post_json(&c, &sb, "/crm/v3/objects/contacts/search", &body).await;
    assert_eq!(status, 200);
    assert!(body["total"].as_u64().unwrap() <= 224);
    let deals = json!({"filterGroups": [{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}], "limit": 200});
    let (status, _, body) = post_json(&c, &sb, "/crm/objects/2026-03/deals/search", &deals).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 20);
}

#[tokio::test]
async fn search_stops_at_ten_thousand_results_with_a_400() {
    let sb = start(10_050).await;
    let c = client();
    let path = "/crm/v3/objects/contacts/search";
    let (status, _, body) = post_json(&c, &sb, path, &json!({"limit": 200, "after": "9900"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 10_050);
    assert_eq!(body["results"].as_array().unwrap().len(), 100);
    assert!(body.get("paging").is_none());
    let (status, _, body) =
        post_json(&c, &sb, path, &json!({"limit": 200, "after": "10000"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert!(
        body["correlationId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let (status, _, _) = post_json(&c, &sb, path, &json!({"limit": 201})).await;
    assert_eq!(status, 400);
    let two_sorts = json!({"sorts": ["email", "firstname"]});
    let (status, _, _) = post_json(&c, &sb, path, &two_sorts).await;
    assert_eq!(status, 400);
}

fn contact(email: &str) -> write::UpsertInput {
    write::UpsertInput {
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
async fn batches_over_one_hundred_inputs_are_refused() {
    let sb = start(0).await;
    let c = client();
    let inputs: Vec<Value> = (0..101)
        .map(
            |i| json!({"id": format!("b{i}@example.com"), "idProperty": "email", "properties": {}}),
        )
        .collect();
    let (status, _, body) = post_json(
        &c,
        &sb,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert_eq!(sb.count(ObjectType::Contacts), 0, "nothing written");
    let reads: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    let (status, _, _) = post_json(
        &c,
        &sb,
        "/crm/v3/objects/contacts/batch/read",
        &json!({"inputs": reads}),
    )
    .await;
    assert_eq!(status, 400);
    // idProperty must be unique (§3.3).
    let (status, _, body) = post_json(
        &c,
        &sb,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": [{"id": "x", "idProperty": "firstname", "properties": {}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn upsert_with_one_bad_email_is_a_207_that_maps_back_to_its_input() {
    let sb = start(0).await;
    let c = client();
    let inputs = vec![
        contact("maria.lopez@example.com"),
        contact("bob@"),
        contact("sam.rivera@example.net"),
    ];
    let batches = write::build_upsert_batches("email", &inputs).unwrap();
    let path = write::upsert_path("/crm/v3/objects", "contacts");
    let (status, _, body) = post_json(&c, &sb, &path, &batches[0].body).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["errors"][0]["objectWriteTraceId"], "1");
    assert_eq!(body["errors"][0]["errors"][0]["code"], "INVALID_EMAIL");
    let out = write::parse_upsert_response(&batches[0], status, None, body.to_string().as_bytes())
        .unwrap();
    assert!(matches!(
        out[0],
        write::UpsertOutcome::Written { created: true, .. }
    ));
    match &out[1] {
        write::UpsertOutcome::Failed(e) => assert_eq!(e.code, "VALIDATION_ERROR"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        out[2],
        write::UpsertOutcome::Written { created: true, .. }
    ));

    // The same batch minus the bad one again: 200, updates, not creates.
    let good = vec![inputs[0].clone(), inputs[2].clone()];
    let batches = write::build_upsert_batches("email", &good).unwrap();
    let (status, _, body) = post_json(&c, &sb, &path, &batches[0].body).await;
    assert_eq!(status, 200);
    let out = write::parse_upsert_response(&batches[0], status, None, body.to_string().as_bytes())
        .unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, write::UpsertOutcome::Written { created: false, .. }))
    );
    assert_eq!(sb.count(ObjectType::Contacts), 2);

    // Read them back by email, one missing: 207 with OBJECT_NOT_FOUND.
    let (status, _, body) = post_json(
        &c,
        &sb,
        "/crm/v3/objects/contacts/batch/read",
        &json!({"idProperty": "email", "properties": ["firstname"],
                "inputs": [{"id": "maria.lopez@example.com"}, {"id": "nobody@example.com"}]}),
    )
    .await;
    assert_eq!(status, 207);
    assert_eq!(body["results"][0]["properties"]["firstname"], "Maria");
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    let id = body["results"][0]["id"].as_str().unwrap().to_owned();
    let one = c
        .get(format!(
            "{}/crm/v3/objects/contacts/{id}?properties=email",
            sb.base_url()
        ))
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let missing = c
        .get(format!(
            "{}/crm/v3/objects/contacts/999999999",
            sb.base_url()
        ))
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["category"],
        "OBJECT_NOT_FOUND"
    );
}

#[tokio::test]
async fn rate_limit_storm_gets_429s_with_policy_and_headers_then_recovers() {
    let sb = HubSpotSandbox::start(HubSpotConfig {
        rate_limits: RateLimits {
            private_per_10s: 5,
            private_daily: 8,
            oauth_per_10s: 5,
            search_per_second: 2,
        },
        ..Default::default()
    })
    .await
    .unwrap();
    sb.freeze_clock();
    let c = client();
    let url = format!("{}/crm/v3/objects/deals", sb.base_url());
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..8 {
        let r = c
            .get(&url)
            .bearer_auth(sb.private_app_token())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let r = last.unwrap();
    let h = r.headers().clone();
    assert_eq!(h["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(h["x-hubspot-ratelimit-max"], "5");
    assert_eq!(h["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    let rl = errors::RateLimitStatus::from_headers(|n| h.get(n).and_then(|v| v.to_str().ok()));
    assert!(rl.is_exhausted());
    let body = r.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(v["errorType"], "RATE_LIMIT");
    let e = errors::classify(429, None, &body);
    assert!(matches!(e.class, ErrorClass::RateLimited { .. }));

    sb.advance_clock(Duration::from_secs(10));
    let ok = c
        .get(&url)
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-hubspot-ratelimit-daily-remaining"], "2");

    // Search has its own per-second limit and no headers.
    let search = json!({"limit": 1});
    let s1 = post_json(&c, &sb, "/crm/v3/objects/deals/search", &search).await;
    let s2 = post_json(&c, &sb, "/crm/v3/objects/deals/search", &search).await;
    assert_eq!((s1.0, s2.0), (200, 200));
    let s3 = post_json(&c, &sb, "/crm/v3/objects/deals/search", &search).await;
    assert_eq!(s3.0, 429);
    assert_eq!(s3.2["policyName"], "SECONDLY");
    assert!(s3.1.get("x-hubspot-ratelimit-remaining").is_none());

    // The daily allocation (8) is now spent: 6 list calls + 2 searches.
    sb.advance_clock(Duration::from_secs(10));
    let daily = c
        .get(&url)
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(daily.status(), 429);
    assert_eq!(daily.json::<Value>().await.unwrap()["policyName"], "DAILY");
}

#[tokio::test]
async fn injected_faults_are_5xx_or_cut_connections_then_normal_again() {
    let sb = start(2).await;
    let c = client();
    let url = format!("{}/crm/v3/objects/contacts", sb.base_url());
    sb.update_faults(|f| {
        f.fail_next = 1;
        f.drop_next = 1;
    });
    let dropped = match c.get(&url).bearer_auth(sb.private_app_token()).send().await {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(dropped, "the connection was cut");
    let failed = c
        .get(&url)
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    let e = errors::classify(503, None, &failed.bytes().await.unwrap());
    assert!(matches!(e.class, ErrorClass::Transient { .. }));
    let ok = c
        .get(&url)
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    sb.set_faults(FaultSettings {
        error_rate: 1.0,
        error_status: 502,
        ..Default::default()
    });
    let r = c
        .get(&url)
        .bearer_auth(sb.private_app_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    sb.set_faults(FaultSettings::default());
}

#[tokio::test]
async fn hostile_requests_get_hubspot_error_bodies_not_crashes() {
    let sb = start(3).await;
    let c = client();
    let bodies: [&[u8]; 7] = [
        b"",
        b"not json",
        b"[]",
        b"{\"inputs\": 5}",
        b"{\"filterGroups\": [{\"filters\": [{\"propertyName\": 1}]}]}",
        b"{\"inputs\": [{\"id\": {}, \"idProperty\": \"email\", \"properties\": [1]}]}",
        b"{\"after\": \"-1\", \"limit\": -5, \"sorts\": [{}]}",
    ];
    for path in [
        "/crm/v3/objects/contacts/search",
        "/crm/v3/objects/contacts/batch/read",
        "/crm/v3/objects/contacts/batch/upsert",
        "/crm/v3/objects/widgets/search",
    ] {
        for b in bodies {
            let r = c
                .post(format!("{}{path}", sb.base_url()))
                .bearer_auth(sb.private_app_token())
                .header("content-type", "application/json")
                .body(b.to_vec())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert!(status < 500, "{path} {status}");
            if status >= 400 {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["status"], "error", "{path}");
            }
        }
    }
    let r = c
        .get(format!("{}/nowhere", sb.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!("{}/oauth/v1/token", sb.base_url()))
        .body("%%%&&&=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

type Deliveries = tokio::sync::mpsc::UnboundedReceiver<(bool, Vec<events::WebhookEvent>)>;

/// Waits for the next delivery (bounded, so a broken sender fails the test instead of hanging).
async fn wait(rx: &mut Deliveries) -> (bool, Vec<events::WebhookEvent>) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("receiver open")
}

/// A receiver for webhooks: verifies each delivery with the connector's v3 verifier and passes
/// (status it answered, verified, events) to the test.
async fn receiver(
    fail_first: usize,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(bool, Vec<events::WebhookEvent>)>,
) {
    use axum::http::HeaderMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/hubspot?tenant=t1",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let secret = HubSpotConfig::default().client_secret;
    let target = url.clone();
    let app = axum::Router::new().route(
        "/webhooks/hubspot",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            let seen = seen.clone();
            let secret = secret.clone();
            let target = target.clone();
            async move {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                let ok = events::verify_v3(
                    secret.as_bytes(),
                    "POST",
                    &target,
                    &body,
                    h(events::SIGNATURE_V3_HEADER),
                    h(events::TIMESTAMP_HEADER),
                    now,
                )
                .is_ok();
                let parsed = events::parse_delivery(&body).unwrap_or_default();
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send((ok, parsed));
                if n < fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

#[tokio::test]
async fn changes_are_delivered_as_signed_batched_webhooks_with_retries() {
    let (url, mut rx) = receiver(1).await;
    let mut cfg = HubSpotConfig {
        seed_size: SeedSize {
            contacts: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    cfg.webhook.target_url = Some(url);
    cfg.webhook.retry_base = Duration::from_millis(10);
    cfg.webhook.batch_window = Duration::from_millis(50);
    let sb = HubSpotSandbox::start(cfg).await.unwrap();
    // Seeded ids start at 100001.
    let id = 100_001;
    assert!(sb.object(ObjectType::Contacts, id).is_some());
    sb.update_contact(id, &[("phone", "+15125550142"), ("city", "Austin")])
        .unwrap();

    // First attempt is answered 500, the retry carries attemptNumber 1.
    let (ok0, first): (bool, Vec<events::WebhookEvent>) = wait(&mut rx).await;
    let (ok1, retry): (bool, Vec<events::WebhookEvent>) = wait(&mut rx).await;
    assert!(ok0 && ok1, "v3 signatures verify");
    assert_eq!(first.len(), 2, "both property changes in one batch");
    assert_eq!(first[0].attempt_number, 0);
    assert_eq!(retry[0].attempt_number, 1);
    assert_eq!(retry[0].event_id, first[0].event_id);
    assert_eq!(retry[0].object_id, id);
    assert_eq!(retry[0].portal_id, 62_515);
    assert_eq!(retry[0].change_source.as_deref(), Some("CRM_UI"));
    let names: Vec<_> = retry
        .iter()
        .map(|e| match &e.change {
            events::EventChange::PropertyChanged { property_name, .. } => property_name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["city", "phone"]);

    // A write through the API becomes a creation event from the integration.
    let c = client();
    let (status, _, _) = post_json(
        &c,
        &sb,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": [{"id": "new.buyer@example.com", "idProperty": "email", "properties": {"lastname": "Okafor"}}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (ok, created) = wait(&mut rx).await;
    assert!(ok);
    assert_eq!(
        created[0].subscription_type.action,
        events::EventAction::Creation
    );
    assert_eq!(created[0].change_source.as_deref(), Some("INTEGRATION"));
    let log = sb.webhook_attempts();
    assert_eq!(log[0].outcome, AttemptOutcome::WillRetry);
    assert_eq!(log[0].status, Some(500));
    assert_eq!(log[1].outcome, AttemptOutcome::Delivered);
}

#[tokio::test]
async fn locked_and_migrating_faults_carry_retry_after() {
    let sb = start(1).await;
    let c = client();
    let url = format!("{}/crm/v3/objects/contacts", sb.base_url());
    for status in [423u16, 477] {
        sb.set_faults(FaultSettings {
            fail_next: 1,
            error_status: status,
            retry_after: Some(Duration::from_secs(3)),
            ..Default::default()
        });
        let r = c
            .get(&url)
            .bearer_auth(sb.private_app_token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let after = r.headers()["retry-after"].to_str().unwrap().to_owned();
        assert_eq!(after, "3");
        let e = errors::classify(status, Some(&after), &r.bytes().await.unwrap());
        match e.class {
            ErrorClass::Transient { retry_after } => {
                assert!(retry_after.unwrap() >= Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn search_is_eventually_consistent_when_configured() {
    let sb = HubSpotSandbox::start(HubSpotConfig {
        rate_limits: relaxed_limits(),
        search_visibility_delay: Duration::from_secs(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let (status, _, _) = post_json(
        &c,
        &sb,
        "/crm/v3/objects/contacts/batch/upsert",
        &json!({"inputs": [{"id": "fresh@example.com", "idProperty": "email", "properties": {}}]}),
    )
    .await;
    assert_eq!(status, 200);
    let find = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "fresh@example.com"}]}]});
    let (_, _, body) = post_json(&c, &sb, "/crm/v3/objects/contacts/search", &find).await;
    assert_eq!(body["total"], 0, "not yet visible to search");
    sb.advance_clock(Duration::from_secs(3));
    let (_, _, body) = post_json(&c, &sb, "/crm/v3/objects/contacts/search", &find).await;
    assert_eq!(body["total"], 1);
}

#[tokio::test]
async fn late_and_duplicated_webhooks_can_be_forced() {
    let (url, mut rx) = receiver(0).await;
    let mut cfg = HubSpotConfig {
        seed_size: SeedSize {
            contacts: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    cfg.webhook.target_url = Some(url);
    cfg.webhook.batch_window = Duration::from_millis(10);
    cfg.webhook.duplicate = true;
    cfg.webhook.timestamp_offset_ms = -6 * 60 * 1000;
    let sb = HubSpotSandbox::start(cfg).await.unwrap();
    sb.update_contact(100_001, &[("city", "Boise")]).unwrap();
    let (ok_a, a) = wait(&mut rx).await;
    let (ok_b, b) = wait(&mut rx).await;
    assert!(
        !ok_a && !ok_b,
        "a timestamp six minutes old fails the freshness check"
    );
    assert_eq!(
        a[0].dedup_key(),
        b[0].dedup_key(),
        "the duplicate is the same event"
    );
    assert!(sb.archive_object(ObjectType::Contacts, 100_001));
    let (_, gone) = wait(&mut rx).await;
    assert_eq!(
        gone[0].subscription_type.action,
        events::EventAction::Deletion
    );
}

#[tokio::test]
async fn single_records_are_created_updated_and_archived() {
    let sb = start(0).await;
    let c = client();
    let base = format!("{}/crm/v3/objects/contacts", sb.base_url());
    let pat = sb.private_app_token().to_owned();
    let r = c
        .post(&base)
        .bearer_auth(&pat)
        .json(&json!({"properties": {"email": "pat.kim@example.com", "lastname": "Kim"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dup = c
        .post(&base)
        .bearer_auth(&pat)
        .json(&json!({"properties": {"email": "PAT.KIM@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    assert_eq!(dup.json::<Value>().await.unwrap()["category"], "CONFLICT");
    let r = c
        .patch(format!("{base}/pat.kim@example.com?idProperty=email"))
        .bearer_auth(&pat)
        .json(&json!({"properties": {"phone": "+12085550100"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["properties"]["phone"],
        "+12085550100"
    );
    let r = c
        .delete(format!("{base}/{id}"))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(format!("{base}/{id}"))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
