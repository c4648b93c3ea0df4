//! Two `hub run` nodes share one PostgreSQL control store: each scheduled sync fires exactly
//! once, on one node, and does its work — a pass of the Salesforce poller against the
//! sandbox, publishing every contact; "sync now" through one node's API runs once too; and
//! a WebSocket on one node sees the live events of jobs the other node ran (they travel
//! through `<ns>.sync-events`), for its own tenant only.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hub_control::auth::{Role, TenantId};
use hub_control::store::jobs::Frequency;
use hub_control::{ControlStore, MasterKey, StoreSettings};
use hub_e2e::*;
use hub_sandbox::salesforce::seed::SeedSize as SalesforceSeed;
use hub_sandbox::{SalesforceConfig, SalesforceSandbox};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const MASTER_KEY: &str = "dGhpcy1pcy1hLXRlc3QtbWFzdGVyLWtleS0zMi1ieXQ=";
const CONTACTS: usize = 40;
const TENANTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fire_each_scheduled_sync_once_and_share_live_events() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("scheduled_sync_two_nodes") else {
        return Ok(());
    };
    let pg_admin = services.pg_url.clone();
    let sf = SalesforceSandbox::start(SalesforceConfig {
        seed_size: SalesforceSeed {
            accounts: 2,
            contacts: CONTACTS,
            leads: 0,
            opportunities: 0,
            vehicles: 0,
        },
        ..Default::default()
    })
    .await?;
    // No continuous polling (poll_ms 0): only jobs read Salesforce.
    let sf_api = salesforce_api(&sf, 0);
    let s = Scenario::with_topology("schedsync", services, move |t, tenant| {
        let base = t.tenants.iter().find(|x| x.id == tenant).unwrap().clone();
        t.tenants.clear();
        for i in 0..TENANTS {
            let mut copy = base.clone();
            copy.id = format!("{tenant}-{i}");
            for c in &mut copy.connectors {
                c.api = (c.id == "sf-main").then(|| sf_api.clone());
            }
            t.tenants.push(copy);
        }
    })?;
    let tenants: Vec<String> = (0..TENANTS).map(|i| format!("{}-{i}", s.tenant)).collect();

    // The shared control store: a schema of its own in the test database.
    let schema = format!("e2e_ctl_{}", &s.namespace.replace('-', "_"));
    let admin = sqlx::PgPool::connect(&pg_admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let sep = if pg_admin.contains('?') { '&' } else { '?' };
    let store_url = format!("{pg_admin}{sep}options[search_path]={schema}");
    let store = ControlStore::connect(
        &store_url,
        MasterKey::from_base64(1, MASTER_KEY)?,
        StoreSettings::default(),
    )
    .await?;
    let now_ms = hub_schemas::records::now_ms();
    let first_due = now_ms + 45_000;
    for (i, t) in tenants.iter().enumerate() {
        let id = TenantId::new(t.clone())?;
        store.create_tenant(&id, t).await?;
        store
            .set_schedule(
                &id,
                "sf-main",
                Frequency::Hourly,
                Some(first_due + i as i64 * 1000),
            )
            .await?;
    }
    let watcher = TenantId::new(tenants[0].clone())?;
    let token = store
        .create_api_token(&watcher, Role::Operator, "e2e", 3_600_000, None)
        .await?;
    let bearer = format!("Bearer {}", token.token.expose());

    // Both nodes start together, before the first slot falls due.
    let env = [
        ("HUB_CONTROL_STORE", store_url.as_str()),
        ("HUB_MASTER_KEY", MASTER_KEY),
        ("HUB_SCHEDULER_TICK_MS", "100"),
    ];
    let n1 = s.spawn_with_env("all", "n1", "embedded", &env)?;
    let n2 = s.spawn_with_env("all", "n2", &n1.control, &env)?;
    assert!(
        hub_schemas::records::now_ms() < first_due,
        "the nodes took too long to start for the race to be tested"
    );

    // A live feed on node 2, for the watcher's tenant.
    let mut req = format!(
        "{}/api/v1/ws/sync-monitor",
        n2.control.replace("http://", "ws://")
    )
    .into_client_request()?;
    req.headers_mut().insert("authorization", bearer.parse()?);
    let (mut feed, _) = tokio_tungstenite::connect_async(req).await?;

    // Every slot fires once: one completed job per tenant, which read every contact.
    let jobs = eventually(
        Duration::from_secs(120),
        "every scheduled job completed",
        || {
            let store = store.clone();
            let tenants = tenants.clone();
            async move {
                let mut all = Vec::new();
                for t in &tenants {
                    let jobs = store.list_jobs(&TenantId::new(t.clone())?, 100).await?;
                    if jobs.len() != 1 || jobs[0].status.as_str() != "completed" {
                        return Ok(None);
                    }
                    all.extend(jobs);
                }
                Ok(Some(all))
            }
        },
    )
    .await?;
    for j in &jobs {
        assert_eq!(j.trigger.as_str(), "schedule");
        assert_eq!(j.attempts, 1, "{j:?}");
        assert_eq!(j.records_processed, CONTACTS as i64, "{j:?}");
    }
    // Both nodes raced for the slots; the claims add up to exactly one per slot.
    let claims = counter(&n1.control, "hub_control_schedule_claims_total", &[]).await?
        + counter(&n2.control, "hub_control_schedule_claims_total", &[]).await?;
    assert_eq!(claims, TENANTS as f64);

    // The feed on node 2 shows the watcher's job, wherever it ran, and no other tenant's.
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !seen.contains_key("sync_metrics") {
            match feed.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON event");
                    assert_eq!(
                        v["tenant"],
                        tenants[0].as_str(),
                        "only the watcher's tenant: {v}"
                    );
                    seen.insert(v["type"].as_str().unwrap_or("").to_string(), v);
                }
                Some(Ok(_)) => {}
                other => panic!("the feed ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the watcher's events arrive");
    let watched = jobs.iter().find(|j| j.tenant == watcher).unwrap();
    assert_eq!(seen["sync_started"]["job_id"], watched.id.as_str());
    assert_eq!(
        seen["sync_started"]["node"],
        watched.node.clone().unwrap().as_str()
    );
    assert_eq!(seen["sync_completed"]["status"], "completed");
    assert_eq!(seen["sync_completed"]["records_processed"], CONTACTS as i64);

    // "Sync now" through node 1's API: one more job, run once; the contacts are unchanged,
    // so the pass reads from the saved cursor and finds nothing new.
    let client = reqwest::Client::new();
    let r = client
        .post(format!(
            "{}/api/v1/tenants/{}/connectors/sf-main/sync",
            n1.control, tenants[0]
        ))
        .header("authorization", &bearer)
        .send()
        .await?;
    assert!(r.status().is_success(), "{}", r.status());
    let job: Value = r.json().await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let done = eventually(Duration::from_secs(60), "the manual job completed", || {
        let (store, watcher, id) = (store.clone(), watcher.clone(), id.clone());
        async move {
            Ok(store
                .get_job(&watcher, &id)
                .await?
                .filter(|j| j.status.as_str() == "completed"))
        }
    })
    .await?;
    assert_eq!(done.attempts, 1);
    assert!(done.records_processed <= 1, "{done:?}");
    let _ = feed.send(Message::Close(None)).await;

    // The raw topic holds each contact once per tenant (the manual pass re-read at most the
    // record at its cursor).
    let raw = read_topic(
        &s.services.kafka,
        &format!("{}.raw.salesforce", s.namespace),
    )?;
    assert!(
        raw.len() >= CONTACTS * TENANTS && raw.len() <= CONTACTS * TENANTS + 1,
        "{}",
        raw.len()
    );
    drop((n1, n2));
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    Ok(())
}
