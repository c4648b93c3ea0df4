//! The conflicts and dead-letters desk, end to end: `hub run` with a control store feeds the
//! desk from `<ns>.conflicts` and `<ns>.dlq.transform`, and the control API's actions travel
//! the pipeline.
//!
//! 1. The tenant's Salesforce vehicle mapping reads the VIN from a field Salesforce does not
//!    send (a mapping mistake), so two vehicles are dead-lettered.
//! 2. Salesforce and HubSpot disagree, concurrently, on a customer's first name (strategy
//!    `manual`): the conflict appears in the API with both sides; a person takes HubSpot's
//!    value through the API; exactly one new canonical version results and the conflict
//!    becomes `resolved`; resolving again is refused.
//! 3. One dead letter is discarded with a reason; the mapping is fixed (node restarted on the
//!    corrected topology); "replay all" replays the other one only, which lands in
//!    PostgreSQL — the discarded one never does.

use std::process::Command;
use std::time::Duration;

use hub_e2e::*;
use hub_schemas::Codec;
use serde_json::{Value, json};

const MASTER_KEY: &str = "dGhpcy1pcy1hLXRlc3QtbWFzdGVyLWtleS0zMi1ieXQ=";
const ADMIN: &str = "desk-admin@lakeside-motors.example";
const PASSWORD: &str = "correct horse battery staple 8";
const GOOD_VIN_MAPPING: &str = "vin: { from: /VIN__c,";
const BAD_VIN_MAPPING: &str = "vin: { from: /VIN,";

fn sf_contact(first: &str, ts: i64) -> Value {
    json!({"Id":"003E2EDESK001","FirstName":first,"LastName":"Lee","Email":"pat.lee@example.com",
           "Phone":"(512) 555-0143","LastModifiedDate":ts.to_string(),"IsDeleted":false})
}

fn hs_contact(ts: i64) -> Value {
    json!({"id":"777","properties":{"firstname":"Patricia","lastname":"Lee","email":"pat.lee@example.com",
           "phone":"512-555-0199","city":"Austin"},"updatedAt":ts.to_string(),"archived":false})
}

/// A signed-in platform admin: the session cookie and its CSRF token.
struct Session {
    api: String,
    cookie: String,
    csrf: String,
    client: reqwest::Client,
}

impl Session {
    async fn sign_in(control: &str) -> anyhow::Result<Session> {
        let client = reqwest::Client::new();
        let api = format!("{control}/api/v1");
        let login = client
            .post(format!("{api}/auth/login"))
            .json(&json!({ "email": ADMIN, "password": PASSWORD }))
            .send()
            .await?;
        anyhow::ensure!(login.status() == 200, "sign-in: {}", login.status());
        let cookie = login
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .map(str::to_string)
            .expect("a session cookie");
        let body: Value = login.json().await?;
        let csrf = body["csrf_token"].as_str().expect("csrf").to_string();
        Ok(Session {
            api,
            cookie,
            csrf,
            client,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .get(format!("{}{path}", self.api))
            .header("cookie", &self.cookie)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}{path}", self.api))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }
}

async fn decisions(control: &str, tenant: &str) -> anyhow::Result<f64> {
    counter(
        control,
        hub_topology::metrics::TRANSFORM_DECISIONS_TOTAL,
        &[("tenant", tenant)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_resolved_through_the_api_makes_one_version_and_a_replay_lands_after_a_fix()
-> anyhow::Result<()> {
    let Some(services) = Services::from_env("desk_resolve_replay") else {
        return Ok(());
    };
    // The demo's policy: the first name waits for a person, the rest merges.
    let s = Scenario::new("desk", services)?;
    let good = std::fs::read_to_string(&s.topology)?;
    assert!(good.contains(GOOD_VIN_MAPPING), "{good}");
    std::fs::write(&s.topology, good.replace(GOOD_VIN_MAPPING, BAD_VIN_MAPPING))?;

    let store = format!("sqlite://{}", s.dir.join("control.db").display());
    let added = Command::new(hub_bin())
        .args(["control", "add-admin", "--store", &store, "--email", ADMIN])
        .env("HUB_MASTER_KEY", MASTER_KEY)
        .env("HUB_ADMIN_PASSWORD", PASSWORD)
        .output()?;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let env = [
        ("HUB_CONTROL_STORE", store.as_str()),
        ("HUB_MASTER_KEY", MASTER_KEY),
    ];
    let mut hub = s.spawn_with_env("all", "n1", "embedded", &env)?;
    let me = Session::sign_in(&hub.control).await?;
    // The control plane manages this tenant (the desk keeps only managed tenants' records).
    let (status, _) = me
        .post(
            "/tenants",
            json!({ "id": s.tenant, "name": "Lakeside Motors" }),
        )
        .await?;
    assert_eq!(status, 201);
    let t = s.tenant.clone();
    let client = reqwest::Client::new();

    // 1. Two vehicles the broken mapping cannot read.
    let vehicles = [vehicle(1, true), vehicle(2, true)];
    let (status, _) = post(&client, &hub.ingest, &t, "Vehicle__c", &vehicles).await?;
    assert_eq!(status, 202);

    // 2. A concurrent disagreement on the first name.
    let t0 = hub_schemas::records::now_ms() - 60_000;
    let (status, _) = post(
        &client,
        &hub.ingest,
        &t,
        "Contact",
        &[sf_contact("Pat", t0)],
    )
    .await?;
    assert_eq!(status, 202);
    eventually(
        Duration::from_secs(60),
        "the first contact decided",
        || async { Ok((decisions(&hub.control, &t).await? >= 1.0).then_some(())) },
    )
    .await?;
    let (status, _) = post_as(
        &client,
        &hub.ingest,
        &t,
        ("hs-marketing", HS_SECRET),
        "contacts",
        &[hs_contact(t0 + 500)],
    )
    .await?;
    assert_eq!(status, 202);

    let listed = eventually(
        Duration::from_secs(60),
        "the pending conflict in the API",
        || async {
            let (_, body) = me
                .get(&format!("/tenants/{t}/conflicts?status=pending"))
                .await?;
            Ok(body["conflicts"]
                .as_array()
                .and_then(|a| a.first().cloned()))
        },
    )
    .await?;
    let id = listed["id"].as_str().expect("id").to_string();
    assert_eq!(listed["held_fields"], json!(["first_name"]));
    assert_eq!(listed["connector"], "hs-marketing");
    let (status, detail) = me.get(&format!("/tenants/{t}/conflicts/{id}")).await?;
    assert_eq!(status, 200);
    let first = detail["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["field"] == "first_name")
        .expect("first_name, side by side")
        .clone();
    assert_eq!(
        (
            &first["current"]["value"],
            &first["incoming"]["value"],
            &first["held"]
        ),
        (&json!("Pat"), &json!("Patricia"), &json!(true))
    );

    // Before the resolution: the two versions the changes made.
    let names = hub_schemas::Topics::new(&s.namespace);
    let codec = Codec::new(&hub.control);
    let customer_topic = names.canonical(hub_schemas::Entity::Customer);
    let versions = |min: usize| {
        let (kafka, topic, tenant, codec) = (&s.services.kafka, &customer_topic, &t, &codec);
        async move {
            let mut out = Vec::new();
            for r in read_keyed(kafka, topic)? {
                let doc = codec.decode_json(&r.value).await?;
                if doc["tenant_id"] == json!(tenant) {
                    out.push(doc["first_name"].as_str().unwrap_or_default().to_string());
                }
            }
            anyhow::Ok((out.len() >= min).then_some(out))
        }
    };
    let before = eventually(Duration::from_secs(30), "two customer versions", || {
        versions(2)
    })
    .await?;
    assert_eq!(before, ["Pat", "Pat"]);

    let (status, body) = me
        .post(
            &format!("/tenants/{t}/conflicts/{id}/resolve"),
            json!({ "fields": { "first_name": "take_incoming" } }),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let resolved = eventually(Duration::from_secs(60), "the conflict resolved", || async {
        let (_, c) = me.get(&format!("/tenants/{t}/conflicts/{id}")).await?;
        Ok((c["status"] == "resolved").then_some(c))
    })
    .await?;
    assert_eq!(resolved["resolved_version"], json!(3));
    let after = eventually(Duration::from_secs(30), "the resolution's version", || {
        versions(3)
    })
    .await?;
    assert_eq!(
        after,
        ["Pat", "Pat", "Patricia"],
        "exactly one new version, with the chosen side"
    );
    let (status, body) = me
        .post(
            &format!("/tenants/{t}/conflicts/{id}/resolve"),
            json!({ "choice": "keep_current" }),
        )
        .await?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("not_pending"))
    );

    // 3. The dead letters: one discarded, the mapping fixed, "replay all".
    let dead = eventually(
        Duration::from_secs(60),
        "two dead letters in the API",
        || async {
            let (_, body) = me
                .get(&format!(
                    "/tenants/{t}/dead-letters?stage=transform&field=vin&status=pending"
                ))
                .await?;
            Ok(body["dead_letters"]
                .as_array()
                .filter(|a| a.len() >= 2)
                .cloned())
        },
    )
    .await?;
    assert_eq!(dead.len(), 2);
    // Each names the record it holds: `<tenant>/sf-main/<Salesforce Id>`, the Id ending in i.
    let held = |d: &Value| {
        let key = d["original_key"].as_str().unwrap_or_default();
        let i = if key.ends_with("000000000001") { 1 } else { 2 };
        (d["id"].as_str().unwrap_or_default().to_string(), i)
    };
    let (discard_id, _) = held(&dead[0]);
    let (replay_id, replay_i) = held(&dead[1]);
    let (status, body) = me
        .post(
            &format!("/tenants/{t}/dead-letters/{discard_id}/discard"),
            json!({ "reason": "a duplicate the dealer deleted in Salesforce" }),
        )
        .await?;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("discarded")),
        "{body}"
    );

    hub.kill();
    drop(hub);
    std::fs::write(&s.topology, good)?;
    let hub = s.spawn_with_env("all", "n1", "embedded", &env)?;
    let me = Session::sign_in(&hub.control).await?;
    let (status, body) = me
        .post(
            &format!("/tenants/{t}/dead-letters/replay"),
            json!({ "all": true }),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], json!([replay_id]), "only the pending one");

    let pool = sqlx::PgPool::connect(&s.services.pg_url).await?;
    let rows = eventually(
        Duration::from_secs(90),
        "the replayed vehicle in PostgreSQL",
        || async {
            let rows = pg_rows(&pool, "vehicle", &t, &["vin"]).await?;
            Ok((!rows.is_empty()).then_some(rows))
        },
    )
    .await?;
    assert_eq!(rows.len(), 1, "the discarded vehicle never lands: {rows:?}");
    assert_eq!(rows[0].key, vin(replay_i), "the replayed vehicle: {rows:?}");
    let (_, replayed) = me
        .get(&format!("/tenants/{t}/dead-letters/{replay_id}"))
        .await?;
    assert_eq!(replayed["status"], "replayed");
    let (_, discarded) = me
        .get(&format!("/tenants/{t}/dead-letters/{discard_id}"))
        .await?;
    assert_eq!(discarded["status"], "discarded");
    assert!(
        discarded["discard_reason"]
            .as_str()
            .is_some_and(|r| r.contains("duplicate"))
    );
    // A replayed record is not replayed again.
    let (status, _) = me
        .post(
            &format!("/tenants/{t}/dead-letters/{replay_id}/replay"),
            json!({}),
        )
        .await?;
    assert_eq!(status, 409);
    Ok(())
}
