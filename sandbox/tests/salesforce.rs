//! Contract tests of the Salesforce sandbox (vendor-apis.md §2), driven with a plain reqwest
//! client and checked with the connector's own builders and parsers.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hub_connectors::error::ErrorClass;
use hub_connectors::salesforce::{errors, limits, read, write};
use hub_sandbox::salesforce::seed::SeedSize;
use hub_sandbox::salesforce::store::sf_datetime;
use hub_sandbox::{FaultSettings, SalesforceConfig, SalesforceSandbox};
use serde_json::{Map, Value, json};

const V: &str = "66.0";

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

async fn token(
    c: &reqwest::Client,
    sb: &SalesforceSandbox,
    pairs: &[(&str, &str)],
) -> (u16, Value) {
    let r = c
        .post(format!("{}/services/oauth2/token", sb.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn jwt(claims: Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{p}.c2lnbmF0dXJl")
}

/// A session through the JWT bearer flow (no user, no refresh token).
async fn session(c: &reqwest::Client, sb: &SalesforceSandbox) -> String {
    let cfg = sb.config();
    let exp = sb.now_ms() / 1000 + 180;
    let assertion = jwt(
        json!({"iss": cfg.consumer_key, "sub": cfg.username, "aud": "https://login.salesforce.com", "exp": exp}),
    );
    let (status, body) = token(
        c,
        sb,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn start(size: SeedSize) -> SalesforceSandbox {
    SalesforceSandbox::start(SalesforceConfig {
        seed_size: size,
        daily_api_requests: 1_000_000,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    tok: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = c.get(url).bearer_auth(tok).send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn web_server_flow_issues_refreshable_sessions_that_expire() {
    let sb = start(SeedSize {
        contacts: 3,
        ..Default::default()
    })
    .await;
    let c = client();
    let cfg = sb.config().clone();
    let authorize = format!(
        "{}/services/oauth2/authorize?{}",
        sb.base_url(),
        form(&[
            ("response_type", "code"),
            ("client_id", &cfg.consumer_key),
            ("redirect_uri", &cfg.redirect_uri),
            ("state", "s1")
        ])
    );
    let page = c.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let approved = c
        .get(format!("{authorize}&approve=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 302);
    let location = approved.headers()["location"].to_str().unwrap().to_owned();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned();
    let code = form_urlencoded::parse(format!("c={code}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();

    let (status, tok) = token(
        &c,
        &sb,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &cfg.consumer_key),
            ("client_secret", &cfg.consumer_secret),
            ("redirect_uri", &cfg.redirect_uri),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tok}");
    // §2.1: instance_url, id, issued_at as a ms string, signature, and no expires_in.
    assert_eq!(tok["instance_url"], sb.base_url());
    assert!(tok["issued_at"].as_str().unwrap().parse::<i64>().is_ok());
    assert!(tok.get("expires_in").is_none());
    assert!(tok["signature"].is_string());
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let refresh = tok["refresh_token"].as_str().unwrap().to_owned();

    let url = read::query_url(sb.base_url(), V, "SELECT Id FROM Contact", false).unwrap();
    let (s, h, _) = get(&c, &url, &access).await;
    assert_eq!(s, 200);
    assert!(limits::parse_limit_info(h["sforce-limit-info"].to_str().unwrap()).is_some());

    sb.advance_clock(cfg.session_lifetime + Duration::from_secs(1));
    let (s, _, body) = get(&c, &url, &access).await;
    assert_eq!(s, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    assert_eq!(errors::classify(401, &body).class, ErrorClass::Auth);

    let (status, again) = token(
        &c,
        &sb,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &cfg.consumer_key),
            ("client_secret", &cfg.consumer_secret),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        again.get("refresh_token").is_none(),
        "no rotation by default"
    );
    let (s, _, _) = get(&c, &url, again["access_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);

    let (status, bad) = token(
        &c,
        &sb,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &cfg.consumer_key),
            ("refresh_token", "x"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"], "invalid_grant");
    let (status, bad) = token(&c, &sb, &[("grant_type", "password")]).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"], "unsupported_grant_type");
    // No token at all.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn jwt_bearer_grant_checks_issuer_subject_audience_and_expiry() {
    let sb = start(SeedSize::default()).await;
    let c = client();
    let cfg = sb.config().clone();
    let now_s = sb.now_ms() / 1000;
    let ok = json!({"iss": cfg.consumer_key, "sub": cfg.username, "aud": "https://test.salesforce.com", "exp": now_s + 120});
    let grant = |claims: Value| {
        let a = jwt(claims);
        vec![
            (
                "grant_type".to_owned(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
            ),
            ("assertion".to_owned(), a),
        ]
    };
    let send = |pairs: Vec<(String, String)>| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        c.post(format!("{}/services/oauth2/token", sb.base_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = send(grant(ok.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v.get("refresh_token").is_none(),
        "§2.1: JWT bearer returns no refresh token"
    );

    let cases = [
        ("aud", json!("https://evil.example.com"), "invalid_grant"),
        ("sub", json!("someone@example.com"), "invalid_grant"),
        ("iss", json!("other-app"), "invalid_client_id"),
        ("exp", json!(now_s - 1), "invalid_grant"),
    ];
    for (claim, value, error) in cases {
        let mut claims = ok.clone();
        claims[claim] = value;
        let r = send(grant(claims)).await.unwrap();
        assert_eq!(r.status(), 400, "{claim}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error, "{claim}");
    }
    let r = send(vec![
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
        ),
        ("assertion".into(), "not.a.jwt".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn incremental_soql_pages_by_next_records_url_and_resumes_from_the_cursor() {
    let sb = start(SeedSize {
        accounts: 50,
        contacts: 4500,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = session(&c, &sb).await;
    let soql =
        read::incremental_soql("Contact", &["FirstName", "LastName", "Email"], None).unwrap();
    let mut url = read::query_url(sb.base_url(), V, &soql, false).unwrap();
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let (s, _, body) = get(&c, &url, &tok).await;
        assert_eq!(s, 200);
        let page = read::parse_query_page(&body).unwrap();
        assert_eq!(page.total_size, 4500);
        sizes.push(page.records.len());
        for r in &page.records {
            assert_eq!(r["attributes"]["type"], "Contact");
            all.push(read::record_cursor(r).unwrap());
        }
        cursor = page.next_cursor(cursor.as_ref());
        match &page.next_records_url {
            Some(next) => {
                assert!(next.starts_with(&format!("/services/data/v{V}/query/01g")));
                url = read::next_page_url(sb.base_url(), next).unwrap();
            }
            None => break,
        }
    }
    assert_eq!(sizes, [2000, 2000, 500]);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "ordered by (SystemModstamp, Id), no repeats"
    );
    assert!(
        all.iter()
            .all(|c| c.id.len() == 18 && c.id.starts_with("003"))
    );

    // One contact changes; the resumed query returns it and only it after the overlap is removed.
    let changed = all[10].id.clone();
    sb.update(
        &changed,
        Map::from_iter([("Phone".to_owned(), json!("+15125550199"))]),
    )
    .unwrap();
    let soql = read::incremental_soql("Contact", &["Phone"], cursor.as_ref()).unwrap();
    let url = read::query_url(sb.base_url(), V, &soql, false).unwrap();
    let (s, _, body) = get(&c, &url, &tok).await;
    assert_eq!(s, 200);
    let page = read::parse_query_page(&body).unwrap();
    let fresh: Vec<_> = page
        .records_after(cursor.as_ref())
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh, std::slice::from_ref(&changed));

    // Sforce-Query-Options: batchSize asks for smaller pages.
    let url = read::query_url(
        sb.base_url(),
        V,
        "SELECT Id FROM Contact ORDER BY Id LIMIT 700",
        false,
    )
    .unwrap();
    let (name, value) = read::batch_size_header(250);
    let r = c
        .get(&url)
        .bearer_auth(&tok)
        .header(name, value)
        .send()
        .await
        .unwrap();
    let page = read::parse_query_page(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((page.total_size, page.records.len()), (700, 250));

    // A deleted contact is gone from query and still in queryAll.
    assert!(sb.delete(&changed));
    let q = format!("SELECT Id, IsDeleted FROM Contact WHERE Id = '{changed}'");
    let (_, _, body) = get(
        &c,
        &read::query_url(sb.base_url(), V, &q, false).unwrap(),
        &tok,
    )
    .await;
    assert_eq!(read::parse_query_page(&body).unwrap().total_size, 0);
    let (_, _, body) = get(
        &c,
        &read::query_url(sb.base_url(), V, &q, true).unwrap(),
        &tok,
    )
    .await;
    let page = read::parse_query_page(&body).unwrap();
    assert_eq!(page.records[0]["IsDeleted"], true);
}

#[tokio::test]
async fn every_object_answers_the_connectors_query() {
    let sb = start(SeedSize {
        accounts: 5,
        contacts: 10,
        leads: 10,
        opportunities: 10,
        vehicles: 10,
    })
    .await;
    let c = client();
    let tok = session(&c, &sb).await;
    let since = read::Cursor {
        system_modstamp_ms: 0,
        id: String::new(),
    };
    for (obj, fields) in [
        ("Lead", vec!["Status", "LeadSource", "Email"]),
        ("Account", vec!["Name", "DMS_Customer_Id__c"]),
        ("Opportunity", vec!["StageName", "Amount", "CloseDate"]),
        ("Vehicle__c", vec!["VIN__c", "Make__c", "Year__c"]),
    ] {
        let soql = read::incremental_soql(obj, &fields, Some(&since)).unwrap();
        let (s, _, body) = get(
            &c,
            &read::query_url(sb.base_url(), V, &soql, false).unwrap(),
            &tok,
        )
        .await;
        assert_eq!(s, 200, "{obj}: {}", String::from_utf8_lossy(&body));
        let page = read::parse_query_page(&body).unwrap();
        assert_eq!(
            page.total_size,
            if obj == "Account" { 5 } else { 10 },
            "{obj}"
        );
    }
}

#[tokio::test]
async fn bad_soql_locators_and_versions_get_salesforce_errors() {
    let sb = start(SeedSize {
        contacts: 5,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = session(&c, &sb).await;
    for (q, code) in [
        ("SELECT COUNT() FROM Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact GROUP BY Id", "MALFORMED_QUERY"),
        ("DELETE FROM Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Shoe_Size__c FROM Contact", "INVALID_FIELD"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= '2024-05-01'",
            "INVALID_FIELD",
        ),
        ("", "MALFORMED_QUERY"),
    ] {
        let (s, _, body) = get(
            &c,
            &read::query_url(sb.base_url(), V, q, false).unwrap(),
            &tok,
        )
        .await;
        assert_eq!(s, 400, "{q}");
        let errs = errors::parse_error_body(&body);
        assert_eq!(errs[0].error_code, code, "{q}");
        assert_eq!(errors::classify(s, &body).class, ErrorClass::Permanent);
    }
    let (s, _, body) = get(
        &c,
        &format!(
            "{}/services/data/v{V}/query/01gRO0000000999-2000",
            sb.base_url()
        ),
        &tok,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        errors::parse_error_body(&body)[0].error_code,
        "INVALID_QUERY_LOCATOR"
    );
    let (s, _, body) = get(
        &c,
        &format!("{}/services/data/v20.0/limits", sb.base_url()),
        &tok,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(errors::parse_error_body(&body)[0].error_code, "NOT_FOUND");
    let versions: Value = c
        .get(format!("{}/services/data/", sb.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        versions
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["version"] == V)
    );

    // An idle locator expires after 15 minutes (§2.4).
    let small = SalesforceSandbox::start(SalesforceConfig {
        seed_size: SeedSize {
            contacts: 5,
            ..Default::default()
        },
        max_page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let tok = session(&c, &small).await;
    let (_, _, body) = get(
        &c,
        &read::query_url(small.base_url(), V, "SELECT Id FROM Contact", false).unwrap(),
        &tok,
    )
    .await;
    let page = read::parse_query_page(&body).unwrap();
    let next =
        read::next_page_url(small.base_url(), page.next_records_url.as_deref().unwrap()).unwrap();
    small.advance_clock(Duration::from_secs(16 * 60));
    let (s, _, body) = get(&c, &next, &tok).await;
    assert_eq!(s, 400);
    assert_eq!(
        errors::parse_error_body(&body)[0].error_code,
        "INVALID_QUERY_LOCATOR"
    );
}

fn vehicle(vin: &str, odometer: u32) -> Map<String, Value> {
    Map::from_iter([
        ("VIN__c".to_owned(), json!(vin)),
        ("Make__c".to_owned(), json!("Honda")),
        ("Model__c".to_owned(), json!("Accord")),
        ("Odometer__c".to_owned(), json!(odometer)),
    ])
}

async fn patch(c: &reqwest::Client, url: &str, tok: &str, body: &Value) -> (u16, Vec<u8>) {
    let r = c
        .patch(url)
        .bearer_auth(tok)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn collections_upsert_reports_each_record_and_enforces_two_hundred() {
    let sb = start(SeedSize::default()).await;
    let c = client();
    let tok = session(&c, &sb).await;
    let url = write::upsert_url(sb.base_url(), V, "Vehicle__c", "VIN__c").unwrap();
    let records = vec![
        vehicle("1HGCM82633A004352", 120_500),
        vehicle("1HGCM82643A004352", 5), // wrong check digit
        vehicle("1M8GDM9AXKP042788", 88_000),
    ];
    let batches = write::upsert_batches("Vehicle__c", "VIN__c", &records).unwrap();
    let (s, body) = patch(&c, &url, &tok, &batches[0].body).await;
    assert_eq!(s, 200, "§2.5: 200 even when some items fail");
    let results = write::parse_upsert_results(&batches[0], s, &body).unwrap();
    assert!(matches!(results[0].outcome, write::Outcome::Created { .. }));
    match &results[1].outcome {
        write::Outcome::Failed(e) => {
            assert_eq!(e.code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
            assert_eq!(e.class, ErrorClass::Permanent);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(results[2].outcome, write::Outcome::Created { .. }));
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(raw[1]["errors"][0]["fields"], json!(["VIN__c"]));
    assert!(
        raw[1]["errors"][0].get("statusCode").is_some(),
        "per-record errors use statusCode"
    );

    // Again: updates, same ids, SystemModstamp moves.
    let first_id = match &results[0].outcome {
        write::Outcome::Created { id } => id.clone(),
        _ => unreachable!(),
    };
    let before = sb.record(&first_id).unwrap().modstamp_ms;
    let again = write::upsert_batches("Vehicle__c", "VIN__c", &[records[0].clone()]).unwrap();
    let (s, body) = patch(&c, &url, &tok, &again[0].body).await;
    let results = write::parse_upsert_results(&again[0], s, &body).unwrap();
    assert_eq!(
        results[0].outcome,
        write::Outcome::Updated {
            id: first_id.clone()
        }
    );
    assert!(sb.record(&first_id).unwrap().modstamp_ms > before);
    assert_eq!(sb.count("Vehicle__c"), 2);
    assert!(
        sb.changes()
            .iter()
            .any(|ch| ch.change_type == "UPDATE" && ch.record_id == first_id)
    );

    // 201 records: the whole call is refused.
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Vehicle__c"}, "VIN__c": format!("V{i}")}))
        .collect();
    let (s, body) = patch(
        &c,
        &url,
        &tok,
        &json!({"allOrNone": false, "records": many}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        errors::parse_error_body(&body)[0].error_code,
        "EXCEEDED_ID_LIMIT"
    );
    assert_eq!(sb.count("Vehicle__c"), 2);

    // An external id field that is not one: 404 NOT_FOUND.
    let bad = write::upsert_url(sb.base_url(), V, "Vehicle__c", "Make__c").unwrap();
    let (s, _) = patch(&c, &bad, &tok, &json!({"records": []})).await;
    assert_eq!(s, 404);

    // allOrNone: one bad record rolls back the others.
    let contact_url = write::upsert_url(sb.base_url(), V, "Contact", "DMS_Customer_Id__c").unwrap();
    let body = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Contact"}, "DMS_Customer_Id__c": "C1", "LastName": "Lee"},
        {"attributes": {"type": "Contact"}, "DMS_Customer_Id__c": "C2", "FirstName": "No last name"}]});
    let (s, body) = patch(&c, &contact_url, &tok, &body).await;
    assert_eq!(s, 200);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        raw[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(raw[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(sb.count("Contact"), 0);

    // The lock-row fault gives a retriable per-record error.
    sb.lock_rows_next(1);
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Contact"}, "DMS_Customer_Id__c": "C1", "LastName": "Lee", "Email": "lee@example.com"}]});
    let (_, resp) = patch(&c, &contact_url, &tok, &body).await;
    let raw: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(raw[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    let (_, resp) = patch(&c, &contact_url, &tok, &body).await;
    let raw: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(raw[0]["created"], true);
    let id = raw[0]["id"].as_str().unwrap();
    let (s, _, rec) = get(
        &c,
        &format!(
            "{}/services/data/v{V}/sobjects/Contact/{id}?fields=LastName,Email",
            sb.base_url()
        ),
        &tok,
    )
    .await;
    assert_eq!(s, 200);
    let rec: Value = serde_json::from_slice(&rec).unwrap();
    assert_eq!(rec["LastName"], "Lee");
    assert_eq!(rec["attributes"]["type"], "Contact");
}

fn contact(last: &str) -> Map<String, Value> {
    Map::from_iter([
        ("LastName".to_owned(), json!(last)),
        ("FirstName".to_owned(), json!("Ana")),
    ])
}

#[tokio::test]
async fn collections_update_reports_each_record_and_behaves_like_an_upsert_update() {
    let sb = start(SeedSize::default()).await;
    let c = client();
    let tok = session(&c, &sb).await;
    let url = write::update_url(sb.base_url(), V).unwrap();
    assert_eq!(
        url,
        format!("{}/services/data/v{V}/composite/sobjects", sb.base_url())
    );
    let ids: Vec<String> = ["Lee", "Okafor", "Novak", "Silva"]
        .iter()
        .map(|n| sb.insert("Contact", contact(n)).unwrap())
        .collect();
    let vehicle_id = sb
        .insert("Vehicle__c", vehicle("1HGCM82633A004352", 10))
        .unwrap();
    assert!(sb.delete(&ids[3]));
    let before = sb.record(&ids[0]).unwrap().modstamp_ms;
    let events_before = sb.changes().len();
    sb.advance_clock(Duration::from_secs(5));

    let unknown = hub_sandbox::salesforce::schema::record_id("003", 999_999);
    let with_id = |id: &str, extra: Value| -> Map<String, Value> {
        let mut m = extra.as_object().unwrap().clone();
        m.insert("Id".into(), json!(id));
        m
    };
    let records = vec![
        with_id(
            &ids[0],
            json!({"FirstName": "Mei", "Email": "mei.lee@example.com"}),
        ),
        with_id(&unknown, json!({"FirstName": "Nobody"})),
        with_id(&ids[1], json!({"Nope__c": "x"})),
        with_id(&ids[3], json!({"FirstName": "Gone"})),
        with_id("003nope", json!({"FirstName": "Bad"})),
        with_id(&vehicle_id, json!({"FirstName": "Wrong type"})),
        with_id(
            &ids[2],
            json!({"SystemModstamp": "2020-01-01T00:00:00.000+0000"}),
        ),
        with_id(&ids[2], json!({"LastName": null})),
        with_id(&ids[1][..15], json!({"MobilePhone": "+1 555 0100"})),
    ];
    let batches = write::update_batches("Contact", &records).unwrap();
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .header("Sforce-Call-Options", "client=hub-connector")
        .json(&batches[0].body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    assert_eq!(s, 200, "§2.5: 200 even when some items fail");
    let results = write::parse_update_results(&batches[0], s, &body).unwrap();
    assert_eq!(
        results[0].outcome,
        write::Outcome::Updated { id: ids[0].clone() }
    );
    assert_eq!(
        results[8].outcome,
        write::Outcome::Updated { id: ids[1].clone() },
        "a 15-character id names the same record"
    );
    let codes: Vec<&str> = results[1..8]
        .iter()
        .map(|r| match &r.outcome {
            write::Outcome::Failed(e) => {
                assert_eq!(e.class, ErrorClass::Permanent, "{e}");
                e.code.as_str()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            "INVALID_CROSS_REFERENCE_KEY",
            "INVALID_FIELD",
            "ENTITY_IS_DELETED",
            "MALFORMED_ID",
            "MALFORMED_ID",
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "REQUIRED_FIELD_MISSING",
        ]
    );
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(raw[0], json!({"id": ids[0], "success": true, "errors": []}));
    assert!(
        raw[0].get("created").is_none(),
        "an update result has no created"
    );
    assert!(
        raw[1]["errors"][0].get("statusCode").is_some(),
        "per-record errors use statusCode"
    );
    assert_eq!(
        raw[2]["id"],
        json!(ids[1]),
        "a known record's failure carries its id"
    );
    assert!(raw[1].get("id").is_none());

    // The store has the successful writes only; SystemModstamp moved.
    let lee = sb.record(&ids[0]).unwrap();
    assert_eq!(lee.fields["FirstName"], "Mei");
    assert_eq!(lee.fields["Email"], "mei.lee@example.com");
    assert!(lee.modstamp_ms > before);
    assert_eq!(
        sb.record(&ids[1]).unwrap().fields["MobilePhone"],
        "+1 555 0100"
    );
    assert!(sb.record(&ids[1]).unwrap().fields.get("Nope__c").is_none());
    assert_eq!(sb.record(&ids[2]).unwrap().fields["LastName"], "Novak");
    assert!(sb.record(&ids[3]).unwrap().deleted);
    assert_eq!(sb.record(&ids[3]).unwrap().fields["FirstName"], "Ana");
    assert!(
        sb.record(&vehicle_id)
            .unwrap()
            .fields
            .get("FirstName")
            .is_none()
    );
    assert_eq!(sb.count("Contact"), 3, "an update never creates");

    // The same change events as an upsert that updates, with the caller's changeOrigin.
    let changes = sb.changes();
    let new: Vec<_> = changes[events_before..].iter().collect();
    assert_eq!(new.len(), 2);
    assert_eq!(new[0].change_type, "UPDATE");
    assert_eq!(new[0].object, "Contact");
    assert_eq!(new[0].record_id, ids[0]);
    assert_eq!(
        new[0].changed_fields,
        ["Email", "FirstName", "LastModifiedDate"]
    );
    assert_eq!(new[0].values["FirstName"], "Mei");
    assert!(new[0].origin.ends_with(";client=hub-connector"));
    assert_eq!(new[1].record_id, ids[1]);

    // The query API sees the new SystemModstamp.
    let q = read::query_url(
        sb.base_url(),
        V,
        &format!(
            "SELECT Id, FirstName, SystemModstamp FROM Contact WHERE Id = '{}'",
            ids[0]
        ),
        false,
    )
    .unwrap();
    let (s, _, body) = get(&c, &q, &tok).await;
    assert_eq!(s, 200);
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["records"][0]["FirstName"], "Mei");
    assert_eq!(
        page["records"][0]["SystemModstamp"],
        json!(sf_datetime(lee.modstamp_ms))
    );

    // Mixed types in one call (§2.5), and `id` in lower case; a record without attributes.type
    // or an id is refused on its own.
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Vehicle__c"}, "id": vehicle_id, "Odometer__c": 99},
        {"attributes": {"type": "Contact"}, "id": ids[2], "HomePhone": "+1 555 0101"},
        {"id": ids[2], "HomePhone": "+1 555 0102"},
        {"attributes": {"type": "Contact"}, "HomePhone": "+1 555 0103"},
        {"attributes": {"type": "Widget__c"}, "id": ids[2]}]});
    let (s, body) = patch(&c, &url, &tok, &body).await;
    assert_eq!(s, 200);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(raw[0]["success"], true);
    assert_eq!(raw[1]["success"], true);
    assert_eq!(raw[2]["errors"][0]["statusCode"], "INVALID_INPUT");
    assert_eq!(raw[3]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    assert_eq!(raw[4]["errors"][0]["statusCode"], "INVALID_TYPE");
    assert_eq!(sb.record(&vehicle_id).unwrap().fields["Odometer__c"], 99);
    assert_eq!(
        sb.record(&ids[2]).unwrap().fields["HomePhone"],
        "+1 555 0101"
    );

    // The same id twice: both refused; a validation rule and an external id taken elsewhere.
    let other_vehicle = sb
        .insert("Vehicle__c", vehicle("1M8GDM9AXKP042788", 10))
        .unwrap();
    let body = json!({"records": [
        {"attributes": {"type": "Contact"}, "Id": ids[0], "FirstName": "A"},
        {"attributes": {"type": "Contact"}, "Id": ids[0], "FirstName": "B"},
        {"attributes": {"type": "Vehicle__c"}, "Id": vehicle_id, "VIN__c": "1HGCM82643A004352"},
        {"attributes": {"type": "Vehicle__c"}, "Id": other_vehicle, "VIN__c": "1HGCM82633A004352"}]});
    let (_, body) = patch(&c, &url, &tok, &body).await;
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(raw[0]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(raw[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(
        raw[2]["errors"][0]["statusCode"],
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    );
    assert_eq!(raw[3]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(raw[3]["errors"][0]["fields"], json!(["VIN__c"]));
    assert_eq!(sb.record(&ids[0]).unwrap().fields["FirstName"], "Mei");

    // allOrNone: one bad record rolls back the others; nothing is written or published.
    let events_before = sb.changes().len();
    let body = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Contact"}, "Id": ids[0], "FirstName": "Rolled"},
        {"attributes": {"type": "Contact"}, "Id": unknown, "FirstName": "Nobody"}]});
    let (s, body) = patch(&c, &url, &tok, &body).await;
    assert_eq!(s, 200);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        raw[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(
        raw[1]["errors"][0]["statusCode"],
        "INVALID_CROSS_REFERENCE_KEY"
    );
    assert_eq!(sb.record(&ids[0]).unwrap().fields["FirstName"], "Mei");
    assert_eq!(sb.changes().len(), events_before);

    // The lock-row fault gives a retriable per-record error, then the write goes through.
    sb.lock_rows_next(1);
    let body = json!({"records": [{"attributes": {"type": "Contact"}, "Id": ids[0], "FirstName": "Locked"}]});
    let (_, resp) = patch(&c, &url, &tok, &body).await;
    let raw: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(raw[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    let (_, resp) = patch(&c, &url, &tok, &body).await;
    let raw: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(raw[0]["success"], true);
    assert_eq!(sb.record(&ids[0]).unwrap().fields["FirstName"], "Locked");

    // 201 records: the whole call is refused with the upsert's error.
    let many: Vec<Value> = (0..201)
        .map(|_| json!({"attributes": {"type": "Contact"}, "Id": ids[0], "FirstName": "X"}))
        .collect();
    let (s, body) = patch(&c, &url, &tok, &json!({"records": many})).await;
    assert_eq!(s, 400);
    assert_eq!(
        errors::parse_error_body(&body)[0].error_code,
        "EXCEEDED_ID_LIMIT"
    );
    assert_eq!(sb.record(&ids[0]).unwrap().fields["FirstName"], "Locked");

    // No session, no update; only PATCH is routed.
    let r = c
        .patch(&url)
        .json(&json!({"records": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _, _) = get(&c, &url, &tok).await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn daily_allocation_runs_out_with_request_limit_exceeded_and_no_retry_after() {
    let sb = SalesforceSandbox::start(SalesforceConfig {
        daily_api_requests: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let tok = session(&c, &sb).await;
    let limits_url = format!("{}/services/data/v{V}/limits", sb.base_url());
    let (s, h, body) = get(&c, &limits_url, &tok).await;
    assert_eq!(s, 200);
    assert_eq!(h["sforce-limit-info"], "api-usage=1/10");
    assert_eq!(
        limits::parse_limits_resource(&body),
        Some(limits::ApiBudget {
            max: 10,
            remaining: 9
        })
    );
    sb.set_api_usage(9);
    let (s, h, _) = get(&c, &limits_url, &tok).await;
    assert_eq!(s, 200);
    assert_eq!(
        limits::parse_limit_info(h["sforce-limit-info"].to_str().unwrap())
            .unwrap()
            .remaining,
        0
    );
    let (s, h, body) = get(&c, &limits_url, &tok).await;
    assert_eq!(s, 403);
    assert!(h.get("retry-after").is_none());
    assert_eq!(h["sforce-limit-info"], "api-usage=10/10");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert!(matches!(
        errors::classify(403, &body).class,
        ErrorClass::RateLimited { .. }
    ));
    // The window is a rolling 24 hours.
    sb.advance_clock(Duration::from_secs(86_401));
    let tok = session(&c, &sb).await;
    let (s, _, _) = get(&c, &limits_url, &tok).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn faults_and_hostile_input_get_salesforce_errors_not_crashes() {
    let sb = start(SeedSize {
        contacts: 3,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = session(&c, &sb).await;
    let url = read::query_url(sb.base_url(), V, "SELECT Id FROM Contact", false).unwrap();
    sb.update_faults(|f| f.fail_next = 1);
    let (s, _, body) = get(&c, &url, &tok).await;
    assert_eq!(s, 503);
    assert!(matches!(
        errors::classify(s, &body).class,
        ErrorClass::Transient { .. }
    ));
    sb.update_faults(|f| f.drop_next = 1);
    let dropped = match c.get(&url).bearer_auth(&tok).send().await {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(dropped);
    sb.set_faults(FaultSettings {
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    let (s, _, _) = get(&c, &url, &tok).await;
    assert_eq!(s, 200);
    sb.set_faults(FaultSettings::default());

    let upsert = write::upsert_url(sb.base_url(), V, "Contact", "DMS_Customer_Id__c").unwrap();
    let update = write::update_url(sb.base_url(), V).unwrap();
    for (url, body) in [&upsert, &update].into_iter().flat_map(|u| {
        [
            "",
            "nope",
            "[]",
            "{\"records\": 1}",
            "{\"records\": [1, null, {\"attributes\": 5}]}",
            "{\"records\": [{\"attributes\": {\"type\": \"Contact\"}, \"DMS_Customer_Id__c\": {}, \"LastName\": [1]}]}",
            "{\"records\": [{\"attributes\": {\"type\": 7}, \"Id\": [\"x\"]}, {\"attributes\": {\"type\": \"Contact\"}, \"Id\": \"003ééééééé0\"}]}",
        ]
        .map(move |b| (u, b))
    }) {
        let r = c
            .patch(url)
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{url} {body}");
        let _: Value = r.json().await.unwrap();
    }
    for q in [
        "q=%FF%FE",
        "q='",
        "q=SELECT+Id+FROM+Contact+WHERE+Email+LIKE+'%25%25%25%25%25%25%25%25%25'",
        "x=1",
    ] {
        let (s, _, _) = get(
            &c,
            &format!("{}/services/data/v{V}/query?{q}", sb.base_url()),
            &tok,
        )
        .await;
        assert!(s < 500, "{q}");
    }
    sb.expire_sessions();
    let (s, _, _) = get(&c, &url, &tok).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn bulk_query_job_completes_and_pages_csv_by_locator() {
    let sb = start(SeedSize {
        contacts: 25,
        vehicles: 7,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = session(&c, &sb).await;
    let jobs = format!("{}/services/data/v{V}/jobs/query", sb.base_url());
    let r = c
        .post(&jobs)
        .bearer_auth(&tok)
        .json(&json!({"operation": "query", "query": "SELECT Id, LastName, SystemModstamp FROM Contact ORDER BY Id", "contentType": "CSV"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["state"], "UploadComplete");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("750"));
    let status_url = format!("{jobs}/{id}");
    // Results before completion are refused; polling moves the job on.
    let (s, _, _) = get(&c, &format!("{status_url}/results"), &tok).await;
    assert_eq!(s, 400);
    let mut states = Vec::new();
    for _ in 0..3 {
        let (_, _, body) = get(&c, &status_url, &tok).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        states.push(v["state"].as_str().unwrap().to_owned());
        if v["state"] == "JobComplete" {
            assert_eq!(v["numberRecordsProcessed"], 25);
            break;
        }
    }
    assert_eq!(states, ["InProgress", "JobComplete"]);

    let mut rows = Vec::new();
    let mut locator: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &locator {
            None => format!("{status_url}/results?maxRecords=10"),
            Some(l) => format!("{status_url}/results?maxRecords=10&locator={l}"),
        };
        let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let next = r.headers()["sforce-locator"].to_str().unwrap().to_owned();
        let n: usize = r.headers()["sforce-numberofrecords"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let text = r.text().await.unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("\"Id\",\"LastName\",\"SystemModstamp\""));
        let page: Vec<String> = lines.map(str::to_owned).collect();
        assert_eq!(page.len(), n);
        rows.extend(page);
        pages += 1;
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!((pages, rows.len()), (3, 25));
    assert!(rows[0].starts_with("\"003") && rows[0].ends_with("Z\""));

    // Another API version than the job's: 409.
    let (s, _, _) = get(
        &c,
        &format!(
            "{}/services/data/v65.0/jobs/query/{id}/results",
            sb.base_url()
        ),
        &tok,
    )
    .await;
    assert_eq!(s, 409);
    let r = c
        .post(&jobs)
        .bearer_auth(&tok)
        .json(&json!({"operation": "query", "query": "SELECT FROM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn bayeux(c: &reqwest::Client, sb: &SalesforceSandbox, tok: &str, msgs: Value) -> Vec<Value> {
    let r = c
        .post(format!("{}/cometd/{V}", sb.base_url()))
        .bearer_auth(tok)
        .json(&msgs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

#[tokio::test]
async fn cometd_delivers_change_events_with_origin_and_replay() {
    let sb = SalesforceSandbox::start(SalesforceConfig {
        cometd_timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let tok = session(&c, &sb).await;
    let hs = bayeux(&c, &sb, &tok, json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1"}])).await;
    assert_eq!(hs[0]["successful"], true);
    let client_id = hs[0]["clientId"].as_str().unwrap().to_owned();
    let sub = bayeux(&c, &sb, &tok, json!([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/data/ContactChangeEvent", "ext": {"replay": {"/data/ContactChangeEvent": -1}}}])).await;
    assert_eq!(sub[0]["successful"], true);
    let bad = bayeux(&c, &sb, &tok, json!([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/data/WidgetChangeEvent"}])).await;
    assert_eq!(bad[0]["successful"], false);

    // The long poll is open before the write; it returns when the event is committed.
    let poll = {
        let (c, tok, url, id) = (
            c.clone(),
            tok.clone(),
            format!("{}/cometd/{V}/connect", sb.base_url()),
            client_id.clone(),
        );
        tokio::spawn(async move {
            c.post(url)
                .bearer_auth(tok)
                .json(&json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}]))
                .send()
                .await
                .unwrap()
                .json::<Vec<Value>>()
                .await
                .unwrap()
        })
    };
    let url = write::upsert_url(sb.base_url(), V, "Contact", "DMS_Customer_Id__c").unwrap();
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .header("Sforce-Call-Options", "client=hub-connector")
        .json(&json!({"allOrNone": false, "records": [{"attributes": {"type": "Contact"}, "DMS_Customer_Id__c": "C77", "LastName": "Okafor"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    let event = &got[0];
    assert_eq!(event["channel"], "/data/ContactChangeEvent");
    let header = &event["data"]["payload"]["ChangeEventHeader"];
    assert_eq!(header["changeType"], "CREATE");
    assert_eq!(header["entityName"], "Contact");
    assert!(
        header["changeOrigin"]
            .as_str()
            .unwrap()
            .ends_with(";client=hub-connector")
    );
    assert_eq!(event["data"]["payload"]["LastName"], "Okafor");
    assert_eq!(event["data"]["event"]["replayId"], 1);
    assert_eq!(got.last().unwrap()["channel"], "/meta/connect");
    let id = header["recordIds"][0].as_str().unwrap().to_owned();

    // A UI change and an injected gap, replayed from the start (-2) by a new client.
    sb.update(
        &id,
        Map::from_iter([("Email".to_owned(), json!("okafor@example.com"))]),
    )
    .unwrap();
    sb.inject_gap("Contact", &id, "GAP_UPDATE");
    let hs = bayeux(
        &c,
        &sb,
        &tok,
        json!({"channel": "/meta/handshake", "version": "1.0"}),
    )
    .await;
    let other = hs[0]["clientId"].as_str().unwrap().to_owned();
    bayeux(&c, &sb, &tok, json!([{"channel": "/meta/subscribe", "clientId": other, "subscription": "/data/ChangeEvents", "ext": {"replay": {"/data/ChangeEvents": -2}}}])).await;
    let got = bayeux(
        &c,
        &sb,
        &tok,
        json!([{"channel": "/meta/connect", "clientId": other, "connectionType": "long-polling"}]),
    )
    .await;
    let types: Vec<_> = got
        .iter()
        .filter_map(|m| m["data"]["payload"]["ChangeEventHeader"]["changeType"].as_str())
        .collect();
    assert_eq!(types, ["CREATE", "UPDATE", "GAP_UPDATE"]);
    let update = &got[1]["data"]["payload"];
    assert_eq!(
        update["ChangeEventHeader"]["changedFields"],
        json!(["Email", "LastModifiedDate"])
    );
    assert_eq!(update["Email"], "okafor@example.com");

    // An unknown client is told to handshake again; no session, no stream.
    let gone = bayeux(
        &c,
        &sb,
        &tok,
        json!([{"channel": "/meta/connect", "clientId": "nope"}]),
    )
    .await;
    assert_eq!(gone[0]["advice"]["reconnect"], "handshake");
    let r = c
        .post(format!("{}/cometd/{V}", sb.base_url()))
        .json(&json!([{"channel": "/meta/handshake"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn single_upsert_by_external_id_creates_then_updates() {
    let sb = start(SeedSize::default()).await;
    let c = client();
    let tok = session(&c, &sb).await;
    let url = format!(
        "{}/services/data/v{V}/sobjects/Vehicle__c/VIN__c/1HGCM82633A004352",
        sb.base_url()
    );
    let only = c
        .patch(format!("{url}?updateOnly=true"))
        .bearer_auth(&tok)
        .json(&json!({"Make__c": "Honda"}))
        .send()
        .await
        .unwrap();
    assert_eq!(only.status(), 404);
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"Make__c": "Honda"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["created"], true);
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"Odometer__c": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["created"], false);
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"VIN__c": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let bad = format!(
        "{}/services/data/v{V}/sobjects/Vehicle__c/VIN__c/NOTAVIN",
        sb.base_url()
    );
    let r = c
        .patch(&bad)
        .bearer_auth(&tok)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.bytes().await.unwrap();
    assert_eq!(
        errors::parse_error_body(&body)[0].error_code,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    );
}
