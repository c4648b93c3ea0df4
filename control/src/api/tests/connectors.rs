//! Connector configurations, "test connection" and the OAuth2 flow through the API, on both
//! backends. Every response these tests get is also checked against the OpenAPI document:
//! its status must be one the operation documents (a schemathesis-style sanity check that
//! needs no running node).

use std::collections::BTreeMap;

use super::*;

/// Records every (method, path template, status) a test saw, to check against the document.
#[derive(Default)]
struct Seen(Vec<(Verb, &'static str, u16)>);

impl Seen {
    async fn call(
        &mut self,
        router: &Router,
        verb: Verb,
        template: &'static str,
        path: &str,
        cred: &Cred,
        body: Option<Value>,
    ) -> Resp {
        let r = call(router, verb, path, cred, body).await;
        self.0.push((verb, template, r.status.as_u16()));
        r
    }

    /// Every status seen is documented for its operation, and every error answered in the
    /// one error shape was documented as `ErrorBody`.
    fn assert_documented(&self) {
        let doc = serde_json::to_value(openapi()).expect("document");
        let mut missing = Vec::new();
        for (verb, template, status) in &self.0 {
            let method = verb.method().as_str().to_lowercase();
            let op = &doc["paths"][*template][&method];
            if !op["responses"][status.to_string()].is_object() {
                missing.push(format!("{method} {template} → {status}"));
            }
        }
        assert!(
            missing.is_empty(),
            "responses the OpenAPI document does not list: {missing:?}"
        );
    }
}

/// An audit snapshot (JSON text) as JSON.
fn snap(text: &Option<String>) -> Value {
    serde_json::from_str(text.as_deref().unwrap_or("null")).expect("snapshot JSON")
}

const LIST: &str = "/api/v1/tenants/{tenant}/connectors";
const ONE: &str = "/api/v1/tenants/{tenant}/connectors/{connector}";
const ENABLE: &str = "/api/v1/tenants/{tenant}/connectors/{connector}/enable";
const DISABLE: &str = "/api/v1/tenants/{tenant}/connectors/{connector}/disable";
const TEST: &str = "/api/v1/tenants/{tenant}/connectors/{connector}/test";
const CREDS: &str = "/api/v1/tenants/{tenant}/connectors/{connector}/credentials";
const START: &str = "/api/v1/tenants/{tenant}/connectors/{connector}/oauth/start";
const CALLBACK: &str = "/api/v1/oauth/callback";

fn at(template: &str, tenant: &str, connector: &str) -> String {
    template
        .replace("{tenant}", tenant)
        .replace("{connector}", connector)
}

fn query_param(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

async fn connectors_are_configured_validated_and_kept_per_tenant(store: &ControlStore) {
    let w = world(store).await;
    let mut seen = Seen::default();
    let admin = cred_of(&w, "admin (session)");
    let viewer = cred_of(&w, "viewer (API token)");
    let list = at(LIST, "acme", "");

    // Validation names the field by its path, with a specific code.
    let mut bad = connector_body("sf-main");
    bad["sync"]["batch_size"] = json!(50_000);
    let r = seen
        .call(&w.router, Verb::Post, LIST, &list, admin, Some(bad))
        .await;
    assert_eq!(
        error_of(&r),
        (422, "out_of_range".into(), Some("sync.batch_size".into()))
    );
    let mut bad = connector_body("sf-main");
    bad["endpoint"] = json!("login.salesforce.com");
    let r = seen
        .call(&w.router, Verb::Post, LIST, &list, admin, Some(bad))
        .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_url".into(), Some("endpoint".into()))
    );
    let mut bad = connector_body("sf-main");
    bad["field_mappings"][0]["fields"]["email"]["from"] = json!(42);
    let r = seen
        .call(&w.router, Verb::Post, LIST, &list, admin, Some(bad))
        .await;
    assert_eq!(
        error_of(&r),
        (
            422,
            "invalid_value".into(),
            Some("field_mappings[0].fields.email.from".into())
        )
    );
    let mut bad = connector_body("Not A Slug");
    bad["enabled"] = json!(true);
    let r = seen
        .call(&w.router, Verb::Post, LIST, &list, admin, Some(bad))
        .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_value".into(), Some("id".into()))
    );
    let mut bad = connector_body("sf-main");
    bad.as_object_mut().expect("object").remove("id");
    let r = seen
        .call(&w.router, Verb::Post, LIST, &list, admin, Some(bad))
        .await;
    assert_eq!(error_of(&r), (422, "required".into(), Some("id".into())));
    let r = seen
        .call(
            &w.router,
            Verb::Post,
            LIST,
            &list,
            admin,
            Some(json!({ "id": "x", "vendor": "hubspot" })),
        )
        .await;
    assert_eq!(error_of(&r), (422, "required".into(), Some("name".into())));

    // Create, read, list.
    let mut body = connector_body("sf-main");
    body["enabled"] = json!(true);
    let r = seen
        .call(
            &w.router,
            Verb::Post,
            LIST,
            &list,
            admin,
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let created = r.json();
    assert_eq!(
        (
            created["id"].as_str(),
            created["version"].as_i64(),
            created["enabled"].as_bool()
        ),
        (Some("sf-main"), Some(1), Some(true))
    );
    assert_eq!(
        created["sync"]["direction"], "inbound",
        "defaults are filled"
    );
    assert_eq!(created["sync"]["retry_attempts"], 3);
    assert_eq!(created["credentials"], Value::Null);
    let r = seen
        .call(&w.router, Verb::Post, LIST, &list, admin, Some(body))
        .await;
    assert_eq!(error_of(&r), (409, "connector_exists".into(), None));
    let one = at(ONE, "acme", "sf-main");
    let r = seen
        .call(&w.router, Verb::Get, ONE, &one, viewer, None)
        .await;
    assert_eq!(r.json(), created);
    let r = seen
        .call(&w.router, Verb::Get, LIST, &list, viewer, None)
        .await;
    let ids: Vec<String> = r.json()["connectors"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, ["crm", "sf-main"]);
    let sched = store
        .get_schedule(&t("acme"), "sf-main")
        .await
        .expect("read")
        .expect("scheduled");
    assert_eq!(sched.frequency.as_str(), "hourly");

    // PATCH merges, checks and bumps the version; a stale version is 409.
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            admin,
            Some(json!({ "version": 1, "sync": { "frequency": "daily", "batch_size": 100 } })),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let patched = r.json();
    assert_eq!(
        (
            patched["version"].as_i64(),
            patched["sync"]["batch_size"].as_i64(),
            patched["sync"]["frequency"].as_str()
        ),
        (Some(2), Some(100), Some("daily"))
    );
    assert_eq!(
        patched["sync"]["direction"], "inbound",
        "untouched fields stay"
    );
    assert_eq!(patched["name"], "Dealer CRM");
    assert_eq!(
        store
            .get_schedule(&t("acme"), "sf-main")
            .await
            .expect("read")
            .expect("s")
            .frequency
            .as_str(),
        "daily"
    );
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            admin,
            Some(json!({ "version": 1, "name": "stale" })),
        )
        .await;
    assert_eq!(error_of(&r), (409, "version_mismatch".into(), None));
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            admin,
            Some(json!({ "sync": { "retry_attempts": -1 } })),
        )
        .await;
    assert_eq!(
        error_of(&r),
        (
            422,
            "out_of_range".into(),
            Some("sync.retry_attempts".into())
        )
    );
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            admin,
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(error_of(&r).2, Some("enabled".into()));
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            admin,
            Some(json!({ "id": "other" })),
        )
        .await;
    assert_eq!(error_of(&r).2, Some("id".into()));
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            admin,
            Some(json!({ "oauth": null, "auth_type": "api_key" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "null removes a section");
    assert_eq!(r.json()["oauth"], Value::Null);
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &one,
            viewer,
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Disable removes the schedule, enable brings it back.
    let r = seen
        .call(
            &w.router,
            Verb::Post,
            DISABLE,
            &at(DISABLE, "acme", "sf-main"),
            admin,
            None,
        )
        .await;
    assert_eq!(r.json()["enabled"], false);
    assert!(
        store
            .get_schedule(&t("acme"), "sf-main")
            .await
            .expect("read")
            .is_none()
    );
    let r = seen
        .call(
            &w.router,
            Verb::Post,
            ENABLE,
            &at(ENABLE, "acme", "sf-main"),
            admin,
            None,
        )
        .await;
    assert_eq!(
        (r.json()["enabled"].as_bool(), r.json()["version"].as_i64()),
        (Some(true), Some(5))
    );
    assert!(
        store
            .get_schedule(&t("acme"), "sf-main")
            .await
            .expect("read")
            .is_some()
    );

    // Another tenant's connector is 404 through one's own tenant, for every verb.
    configure(store, &t("globex"), "theirs").await;
    for (verb, template, body) in [
        (Verb::Get, ONE, None),
        (Verb::Patch, ONE, Some(json!({ "name": "mine now" }))),
        (Verb::Delete, ONE, None),
        (Verb::Post, ENABLE, None),
        (Verb::Post, DISABLE, None),
        (Verb::Post, TEST, None),
        (Verb::Post, START, None),
        (Verb::Get, CREDS, None),
        (
            Verb::Put,
            CREDS,
            Some(json!({ "credentials": { "api_key": "k" } })),
        ),
    ] {
        let owner = cred_of(&w, "owner (session)");
        let r = seen
            .call(
                &w.router,
                verb,
                template,
                &at(template, "acme", "theirs"),
                owner,
                body,
            )
            .await;
        assert_eq!(error_of(&r).0, 404, "{verb:?} {template}");
    }
    assert_eq!(
        store
            .get_connector(&t("globex"), "theirs")
            .await
            .expect("read")
            .expect("kept")
            .spec
            .name,
        "Dealer CRM"
    );

    // Credentials: an unknown connector is 404; a configured one takes them, write-only.
    let r = seen
        .call(
            &w.router,
            Verb::Put,
            CREDS,
            &at(CREDS, "acme", "nobody"),
            admin,
            Some(json!({ "credentials": { "api_key": "k" } })),
        )
        .await;
    assert_eq!(error_of(&r).0, 404);
    let r = seen
        .call(
            &w.router,
            Verb::Put,
            CREDS,
            &at(CREDS, "acme", "sf-main"),
            admin,
            Some(json!({ "credentials": { "client_secret": super::SECRET } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = seen
        .call(&w.router, Verb::Get, ONE, &one, viewer, None)
        .await;
    assert_eq!(r.json()["credentials"]["rotations"], 0);
    assert!(!String::from_utf8_lossy(&r.body).contains(super::SECRET));

    // Deleting waits for active jobs, then takes credentials and schedule along.
    let job = store.sync_now(&t("acme"), "sf-main").await.expect("job");
    let r = seen
        .call(&w.router, Verb::Delete, ONE, &one, admin, None)
        .await;
    assert_eq!(error_of(&r), (409, "jobs_active".into(), None));
    store.cancel_job(&t("acme"), &job.id).await.expect("cancel");
    let r = seen
        .call(&w.router, Verb::Delete, ONE, &one, admin, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        store
            .get_credentials(&t("acme"), "sf-main")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .get_schedule(&t("acme"), "sf-main")
            .await
            .expect("read")
            .is_none()
    );
    let r = seen
        .call(&w.router, Verb::Get, ONE, &one, viewer, None)
        .await;
    assert_eq!(error_of(&r).0, 404);
    let r = seen
        .call(&w.router, Verb::Delete, ONE, &one, admin, None)
        .await;
    assert_eq!(error_of(&r).0, 404);

    // Every change is audited with before/after; no secret in the log.
    let entries = store
        .list_audit(Some(&t("acme")), 0, i64::MAX, 1000)
        .await
        .expect("audit");
    let actions: BTreeMap<&str, usize> = entries.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.action.as_str()).or_default() += 1;
        m
    });
    for (action, n) in [
        ("connector.create", 1),
        ("connector.update", 2),
        ("connector.disable", 1),
        ("connector.enable", 1),
        ("connector.delete", 1),
    ] {
        assert_eq!(
            actions.get(action).copied().unwrap_or(0),
            n,
            "{action}: {actions:?}"
        );
    }
    let update = entries
        .iter()
        .find(|e| e.action == "connector.update")
        .expect("update");
    assert_eq!(update.target, "connector/sf-main");
    assert_eq!(snap(&update.before)["sync"]["frequency"], "hourly");
    assert_eq!(snap(&update.after)["sync"]["frequency"], "daily");
    assert_eq!(
        snap(&update.after)["connector_name"],
        "Dealer CRM",
        "a label is not personal data"
    );
    let mappings = snap(&update.after)["field_mappings"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(mappings.contains("/Email"), "{mappings}");
    let dump = serde_json::to_string(&entries).expect("json");
    assert!(!dump.contains(super::SECRET));
    assert!(store.verify_audit().await.expect("verify").is_intact());
    seen.assert_documented();
}

async fn test_connection_calls_the_check_and_is_audited(store: &ControlStore) {
    let w = world(store).await;
    let mut seen = Seen::default();
    let operator = cred_of(&w, "operator (API token)");
    let test = at(TEST, "acme", "crm");
    let r = seen
        .call(&w.router, Verb::Post, TEST, &test, operator, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({ "status": "ok", "code": "ok", "message": "the vendor answered", "latency_ms": 3 })
    );
    store
        .put_credentials(&t("acme"), "crm", &Secret::new(json!({ "fail": true })))
        .await
        .expect("creds");
    let r = seen
        .call(&w.router, Verb::Post, TEST, &test, operator, None)
        .await;
    assert_eq!(
        (r.json()["status"].as_str(), r.json()["code"].as_str()),
        (Some("failed"), Some("auth_failed"))
    );
    configure(store, &t("acme"), "bare").await;
    let r = seen
        .call(
            &w.router,
            Verb::Post,
            TEST,
            &at(TEST, "acme", "bare"),
            operator,
            None,
        )
        .await;
    assert_eq!(r.json()["code"], "no_credentials");
    let viewer = cred_of(&w, "viewer (session)");
    let r = seen
        .call(&w.router, Verb::Post, TEST, &test, viewer, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let entries = store
        .list_audit(Some(&t("acme")), 0, i64::MAX, 1000)
        .await
        .expect("audit");
    let tests: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "connector.test")
        .collect();
    assert_eq!(tests.len(), 3);
    assert_eq!(snap(&tests[1].after)["code"], "auth_failed");
    assert!(tests[0].actor.starts_with("token:"));

    // Without an implementation: 501 with a machine-readable reason, for both vendor calls.
    let bare = api(store.clone(), ApiConfig::default()).router;
    let r = seen
        .call(&bare, Verb::Post, TEST, &test, operator, None)
        .await;
    assert_eq!(
        error_of(&r),
        (501, "connector_check_unavailable".into(), None)
    );
    let admin = cred_of(&w, "admin (API token)");
    let r = seen
        .call(
            &bare,
            Verb::Post,
            START,
            &at(START, "acme", "crm"),
            admin,
            None,
        )
        .await;
    assert_eq!(
        error_of(&r),
        (501, "connector_check_unavailable".into(), None)
    );
    let r = seen
        .call(
            &bare,
            Verb::Get,
            CALLBACK,
            "/api/v1/oauth/callback?code=c&state=s",
            &Cred::Nobody,
            None,
        )
        .await;
    assert_eq!(
        error_of(&r),
        (501, "connector_check_unavailable".into(), None)
    );
    seen.assert_documented();
}

async fn the_oauth_flow_stores_tokens_once_per_state(store: &ControlStore) {
    let fake = Arc::new(FakeCheck::default());
    let mut w = world(store).await;
    w.router = api_with_fake(store, fake.clone()).router;
    let mut seen = Seen::default();
    let admin = cred_of(&w, "admin (session)");
    let start = at(START, "acme", "crm");

    let r = seen
        .call(&w.router, Verb::Post, START, &start, admin, None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let url = r.json()["authorize_url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with(
            "https://login.salesforce.example/services/oauth2/authorize?response_type=code&"
        ),
        "{url}"
    );
    assert_eq!(
        query_param(&url, "client_id").as_deref(),
        Some("client-123")
    );
    assert_eq!(query_param(&url, "redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(
        query_param(&url, "scope").as_deref(),
        Some("api refresh_token")
    );
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let state = query_param(&url, "state").expect("state");
    let challenge = query_param(&url, "code_challenge").expect("challenge");

    // The browser comes back with a code: the tokens become the connector's credentials.
    let callback = format!("/api/v1/oauth/callback?code=the-code&state={state}&extra=ignored");
    let r = seen
        .call(
            &w.router,
            Verb::Get,
            CALLBACK,
            &callback,
            &Cred::Nobody,
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        (r.json()["tenant"].as_str(), r.json()["connector"].as_str()),
        (Some("acme"), Some("crm"))
    );
    assert_eq!(r.json()["credentials"]["rotations"], 1);
    assert!(!String::from_utf8_lossy(&r.body).contains(ACCESS_TOKEN));
    let (connector, code, verifier, redirect) = fake
        .exchanges
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("an exchange");
    assert_eq!(
        (connector.as_str(), code.as_str(), redirect.as_str()),
        ("crm", "the-code", REDIRECT)
    );
    use base64::Engine as _;
    use sha2::Digest as _;
    let s256 = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(
        s256, challenge,
        "the verifier sent matches the challenge of the authorize URL"
    );
    let stored = store
        .get_credentials(&t("acme"), "crm")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.expose()["access_token"],
        format!("{ACCESS_TOKEN}-the-code")
    );
    assert_eq!(
        stored.expose()["api_key"],
        "k",
        "what the old credentials held is kept by the exchange"
    );

    // Single use: the same state again is refused, as are unknown, missing and expired ones.
    let r = seen
        .call(
            &w.router,
            Verb::Get,
            CALLBACK,
            &callback,
            &Cred::Nobody,
            None,
        )
        .await;
    assert_eq!(
        error_of(&r),
        (400, "oauth_state_used".into(), Some("state".into()))
    );
    let r = seen
        .call(
            &w.router,
            Verb::Get,
            CALLBACK,
            "/api/v1/oauth/callback?code=c&state=forged",
            &Cred::Nobody,
            None,
        )
        .await;
    assert_eq!(
        error_of(&r),
        (400, "oauth_state_unknown".into(), Some("state".into()))
    );
    let r = seen
        .call(
            &w.router,
            Verb::Get,
            CALLBACK,
            "/api/v1/oauth/callback?code=c",
            &Cred::Nobody,
            None,
        )
        .await;
    assert_eq!(
        error_of(&r),
        (400, "oauth_state_missing".into(), Some("state".into()))
    );
    let now = store.now_ms();
    store.pin_clock_ms(now);
    let r = seen
        .call(&w.router, Verb::Post, START, &start, admin, None)
        .await;
    let late =
        query_param(r.json()["authorize_url"].as_str().expect("url"), "state").expect("state");
    store.pin_clock_ms(now + crate::store::connectors::OAUTH_STATE_TTL_MS + 1);
    let r = seen
        .call(
            &w.router,
            Verb::Get,
            CALLBACK,
            &format!("/api/v1/oauth/callback?code=c&state={late}"),
            &Cred::Nobody,
            None,
        )
        .await;
    assert_eq!(
        error_of(&r),
        (400, "oauth_state_expired".into(), Some("state".into()))
    );
    store.pin_clock_ms(0);

    // The user declines at the vendor; the vendor refuses the code; no code at all.
    for (query, want) in [
        (
            "error=access_denied&error_description=The+user+said+no",
            (400, "oauth_denied"),
        ),
        ("code=refused", (502, "token_exchange_failed")),
        ("", (400, "oauth_code_missing")),
    ] {
        let r = seen
            .call(&w.router, Verb::Post, START, &start, admin, None)
            .await;
        let s =
            query_param(r.json()["authorize_url"].as_str().expect("url"), "state").expect("state");
        let uri = format!("/api/v1/oauth/callback?state={s}&{query}");
        let r = seen
            .call(&w.router, Verb::Get, CALLBACK, &uri, &Cred::Nobody, None)
            .await;
        let (status, code, _) = error_of(&r);
        assert_eq!((status, code.as_str()), want, "{query}");
    }

    // A connector not set up for OAuth2 cannot start a flow.
    configure(store, &t("acme"), "keyed").await;
    let keyed = at(ONE, "acme", "keyed");
    let r = seen
        .call(
            &w.router,
            Verb::Patch,
            ONE,
            &keyed,
            admin,
            Some(json!({ "auth_type": "api_key", "oauth": null })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = seen
        .call(
            &w.router,
            Verb::Post,
            START,
            &at(START, "acme", "keyed"),
            admin,
            None,
        )
        .await;
    assert_eq!(error_of(&r), (409, "oauth_not_configured".into(), None));

    // The callback is audited in the name of whoever started the flow; no token in the log.
    let entries = store
        .list_audit(Some(&t("acme")), 0, i64::MAX, 1000)
        .await
        .expect("audit");
    let admin_id = store
        .find_user_by_email("admin@acme.example")
        .await
        .expect("read")
        .expect("admin")
        .id;
    let stored = entries
        .iter()
        .find(|e| e.action == "credentials.rotate" && snap(&e.after)["via"] == "oauth2")
        .expect("credentials entry");
    // As the store keeps it: masked, like every actor (a UUID's digits can look like a phone
    // number to the masker).
    assert_eq!(
        stored.actor,
        crate::masking::mask_text(&format!("user:{admin_id}"))
    );
    assert!(entries.iter().any(|e| e.action == "connector.oauth_start"));
    assert!(entries.iter().any(|e| e.action == "connector.oauth_denied"));
    let dump = serde_json::to_string(&entries).expect("json");
    for secret in [
        ACCESS_TOKEN,
        "refresh-secret-4d2b",
        verifier.as_str(),
        state.as_str(),
    ] {
        assert!(
            !dump.contains(secret),
            "the audit log holds a secret of the flow"
        );
    }
    seen.assert_documented();
}

/// Concurrent patches without a version each merge onto the newest configuration: none is
/// refused, none loses another's field.
async fn concurrent_patches_without_a_version_all_apply(store: &ControlStore) {
    let w = world(store).await;
    let admin = cred_of(&w, "admin (API token)");
    configure(store, &t("acme"), "sf-main").await;
    let one = at(ONE, "acme", "sf-main");
    let patches: Vec<Value> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                json!({ "name": format!("CRM {i}") })
            } else {
                json!({ "sync": { "batch_size": 100 + i } })
            }
        })
        .collect();
    let calls = patches
        .into_iter()
        .map(|p| call(&w.router, Verb::Patch, &one, admin, Some(p)));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    }
    let after = store
        .get_connector(&t("acme"), "sf-main")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(after.version, 9, "one version per patch");
    assert!(after.spec.name.starts_with("CRM "), "{}", after.spec.name);
    assert!(
        after.spec.sync.batch_size > 100,
        "{}",
        after.spec.sync.batch_size
    );
}

on_both_backends! {
    async fn concurrent_connector_patches(h) {
        concurrent_patches_without_a_version_all_apply(&h.store).await;
    }

    async fn connector_configuration_crud(h) {
        connectors_are_configured_validated_and_kept_per_tenant(&h.store).await;
    }

    async fn test_connection(h) {
        test_connection_calls_the_check_and_is_audited(&h.store).await;
    }

    async fn oauth_authorization_code_flow(h) {
        the_oauth_flow_stores_tokens_once_per_state(&h.store).await;
    }
}
