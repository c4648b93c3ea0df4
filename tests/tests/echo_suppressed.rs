//! Bidirectional sync without loops: the hub writes Salesforce's customers into a HubSpot-like
//! system, which reports every write back through the HubSpot connector's webhook (as HubSpot
//! does). Each report back is recognised as the hub's own echo — no new version, no second
//! write — also when it arrives after the hub already wrote a newer version of the customer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post as post_route;
use hub_e2e::*;
use hub_topology::{Route, Target, TargetKind};
use serde_json::{Value, json};

/// The HubSpot-like system: counts the records written to it and reports each back through
/// the ingest endpoint as a `contacts` change, after `delay`.
#[derive(Clone)]
struct Echoer {
    writes: Arc<AtomicUsize>,
    ingest: Arc<std::sync::OnceLock<String>>,
    tenant: String,
    delay: Duration,
}

async fn receive(State(e): State<Echoer>, body: axum::body::Bytes) -> &'static str {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let records = body["records"].as_array().cloned().unwrap_or_default();
    e.writes.fetch_add(records.len(), Ordering::SeqCst);
    let echoes: Vec<Value> = records
        .iter()
        .map(|r| {
            let d = &r["record"];
            json!({
                "id": format!("hs-{}", &r["key"].as_str().unwrap_or_default()),
                "properties": {
                    "firstname": d["first_name"], "lastname": d["last_name"], "email": d["email"],
                    "phone": d["phone"], "city": d["address"]["city"], "state": d["address"]["state"],
                    "zip": d["address"]["postal_code"],
                },
                "updatedAt": now_ms_text(),
                "archived": d["deleted"],
            })
        })
        .collect();
    tokio::spawn(async move {
        tokio::time::sleep(e.delay).await;
        let Some(ingest) = e.ingest.get() else {
            return;
        };
        let client = reqwest::Client::new();
        for _ in 0..10 {
            match post_as(
                &client,
                ingest,
                &e.tenant,
                ("hs-marketing", HS_SECRET),
                "contacts",
                &echoes,
            )
            .await
            {
                Ok((202, _)) => return,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_of_the_hubs_own_write_neither_conflicts_nor_loops() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("echo_suppressed") else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let s = Scenario::with_topology("echo", services, |topo, _| {
        let t = &mut topo.tenants[0];
        t.targets.push(Target {
            id: "hubspot-portal".into(),
            kind: TargetKind::Webhook {
                url: format!("http://127.0.0.1:{port}/hubspot"),
                secret: "e2e-echo-target-secret".into(),
                batch_size: 100,
                connector: Some("hs-marketing".into()),
            },
        });
        t.routes.push(Route {
            entities: vec![hub_schemas::Entity::Customer],
            targets: vec!["hubspot-portal".into()],
        });
    })?;
    let echoer = Echoer {
        writes: Arc::new(AtomicUsize::new(0)),
        ingest: Arc::new(std::sync::OnceLock::new()),
        tenant: s.tenant.clone(),
        // Late enough that the newer versions below are written before the older echoes.
        delay: Duration::from_millis(700),
    };
    let app = axum::Router::new()
        .route("/hubspot", post_route(receive))
        .with_state(echoer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let hub = s.spawn("all", "n1")?;
    let _ = echoer.ingest.set(hub.ingest.clone());
    let client = reqwest::Client::new();

    // 40 customers from Salesforce; 10 of them change again right away.
    let first: Vec<Value> = (1..=40).map(|i| contact(i, true)).collect();
    let (status, _) = post(&client, &hub.ingest, &s.tenant, "Contact", &first).await?;
    assert_eq!(status, 202);
    let later = hub_schemas::records::now_ms() + 5_000;
    let second: Vec<Value> = (1..=10)
        .map(|i| {
            let mut c = contact(i, true);
            c["FirstName"] = json!("Patrick");
            c["LastModifiedDate"] = json!(later.to_string());
            c
        })
        .collect();
    let (status, _) = post(&client, &hub.ingest, &s.tenant, "Contact", &second).await?;
    assert_eq!(status, 202);

    let versions = 50.0;
    let decided = |outcome: &'static str| {
        let control = hub.control.clone();
        let tenant = s.tenant.clone();
        async move {
            counter(
                &control,
                hub_topology::metrics::TRANSFORM_DECISIONS_TOTAL,
                &[("tenant", tenant.as_str()), ("outcome", outcome)],
            )
            .await
        }
    };
    eventually(
        Duration::from_secs(60),
        "every write echoed back and recognised",
        || async { Ok((decided("echo").await? >= versions).then_some(())) },
    )
    .await?;

    // Every write's report came back as an echo: no version beyond the 50 Salesforce made, no
    // write beyond their 50, no conflict. (The echoes were all decided above, so a loop would
    // already show as extra writes or versions.)
    assert_eq!(decided("echo").await?, versions, "one echo per write");
    assert_eq!(
        decided("applied").await?,
        versions,
        "only Salesforce's changes applied"
    );
    assert_eq!(decided("conflict").await?, 0.0);
    assert_eq!(
        echoer.writes.load(Ordering::SeqCst),
        50,
        "one write per version"
    );
    let names = hub_schemas::Topics::new(&s.namespace);
    let canonical = read_keyed(
        &s.services.kafka,
        &names.canonical(hub_schemas::Entity::Customer),
    )?;
    assert_eq!(canonical.len(), 50, "canonical versions");
    assert!(read_keyed(&s.services.kafka, &names.conflicts())?.is_empty());

    // The newer versions stand: the late echoes of the older ones did not revert them.
    let pool = sqlx::PgPool::connect(&s.services.pg_url).await?;
    let rows = pg_rows(&pool, "customer", &s.tenant, &["first_name", "email"]).await?;
    assert_eq!(rows.len(), 40);
    let patricks = rows
        .iter()
        .filter(|r| r.doc["first_name"] == "Patrick")
        .count();
    assert_eq!(patricks, 10, "the second versions stand");
    Ok(())
}
