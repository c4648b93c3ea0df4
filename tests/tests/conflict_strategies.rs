//! Salesforce-shaped and HubSpot-shaped updates to the same customer, interleaved, under each
//! conflict strategy in turn (one tenant per strategy, one hub): the canonical topic and
//! `<ns>.conflicts` hold what that strategy promises.
//!
//! The story, per tenant:
//! 1. Salesforce creates Pat Lee (phone A) at T0.
//! 2. HubSpot reports the same person (same email) at T0 + 0.5 s — concurrent, within the
//!    2 s window — as "Patricia", phone B, and a city Salesforce never had.
//!    The hub is then killed and restarted: state lives in Kafka, not in the worker.
//! 3. (manual only) a person resolves: first name from HubSpot, phone as it was; then sends
//!    the same resolution again.
//! 4. Salesforce changes the first name to "Patty" at T0 + 10 s — after seeing everything.

use std::collections::BTreeMap;
use std::time::Duration;

use hub_e2e::*;
use hub_schemas::Codec;
use hub_topology::conflict::{Policy, Strategy};
use hub_transform::conflict::{FieldResolution, Resolution};
use hub_transform::pipeline::{ConflictRecord, ConflictStatus, ResolveRequest};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const PHONE_A: &str = "+15125550143";
const PHONE_B: &str = "+15125550199";

fn strategies() -> Vec<(&'static str, Strategy)> {
    vec![
        ("source-wins", Strategy::SourceWins),
        ("target-wins", Strategy::TargetWins),
        (
            "merge",
            Strategy::Merge {
                priority: vec!["sf-main".into()],
            },
        ),
        ("manual", Strategy::Manual),
        ("skip", Strategy::Skip),
    ]
}

fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    // Salesforce's shape: 2024-05-01T12:00:00.000+0000.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn sf_contact(first: &str, ts: i64) -> Value {
    json!({"Id":"003E2E0000001","FirstName":first,"LastName":"Lee","Email":"pat.lee@example.com",
           "Phone":"(512) 555-0143","LastModifiedDate":iso(ts),"IsDeleted":false})
}

fn hs_contact(ts: i64) -> Value {
    json!({"id":"501","properties":{"firstname":"Patricia","lastname":"Lee","email":"pat.lee@example.com",
           "phone":"512-555-0199","city":"Austin"},"updatedAt":ts.to_string(),"archived":false})
}

async fn decisions(control: &str, tenant: &str) -> anyhow::Result<f64> {
    counter(
        control,
        hub_topology::metrics::TRANSFORM_DECISIONS_TOTAL,
        &[("tenant", tenant)],
    )
    .await
}

async fn wait_decisions(control: &str, tenants: &[String], n: f64) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(60),
        &format!("{n} decisions per tenant"),
        || async {
            for t in tenants {
                if decisions(control, t).await? < n {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_strategy_does_what_it_promises_on_interleaved_crm_updates() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("conflict_strategies") else {
        return Ok(());
    };
    let s = Scenario::with_topology("conflicts", services, |topo, tenant| {
        let base = topo.tenants.remove(0);
        for (suffix, strategy) in strategies() {
            let mut t = base.clone();
            t.id = format!("{tenant}-{suffix}");
            t.conflicts
                .insert("customer".into(), Policy::uniform(strategy));
            topo.tenants.push(t);
        }
    })?;
    let tenants: Vec<String> = strategies()
        .iter()
        .map(|(suffix, _)| format!("{}-{suffix}", s.tenant))
        .collect();
    let hub = s.spawn("all", "n1")?;
    let client = reqwest::Client::new();
    let t0 = hub_schemas::records::now_ms() - 60_000;

    // 1. Salesforce creates the customer.
    for t in &tenants {
        let (status, _) =
            post(&client, &hub.ingest, t, "Contact", &[sf_contact("Pat", t0)]).await?;
        assert_eq!(status, 202);
    }
    wait_decisions(&hub.control, &tenants, 1.0).await?;

    // 2. HubSpot, concurrently (within the window), disagrees on first name and phone.
    for t in &tenants {
        let (status, _) = post_as(
            &client,
            &hub.ingest,
            t,
            ("hs-marketing", HS_SECRET),
            "contacts",
            &[hs_contact(t0 + 500)],
        )
        .await?;
        assert_eq!(status, 202);
    }
    wait_decisions(&hub.control, &tenants, 2.0).await?;

    // The worker keeps nothing that matters: a new process rebuilds every key's state (and
    // the pending conflict) from the state topic.
    let mut hub = hub;
    hub.kill();
    drop(hub);
    let hub = s.spawn("all", "n1")?;

    // 3. A person resolves the manual tenant's conflict — twice.
    let names = hub_schemas::Topics::new(&s.namespace);
    let manual = format!("{}-manual", s.tenant);
    let pending: ConflictRecord = eventually(
        Duration::from_secs(30),
        "the manual tenant's pending conflict",
        || async {
            Ok(conflicts(&s, &names)?
                .into_iter()
                .find(|c| c.tenant == manual && c.status == ConflictStatus::Pending))
        },
    )
    .await?;
    let request = ResolveRequest {
        tenant: manual.clone(),
        entity: "customer".into(),
        key: pending.key.clone(),
        conflict_id: pending.id.clone(),
        resolution: Resolution {
            resolved_by: "console:e2e".into(),
            resolved_at_ms: hub_schemas::records::now_ms(),
            fields: BTreeMap::from([
                ("first_name".into(), FieldResolution::TakeIncoming),
                ("phone".into(), FieldResolution::KeepCurrent),
            ]),
        },
    };
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.services.kafka)
        .create()?;
    let (topic, key, value) = request.record(&names).expect("customer is an entity");
    for _ in 0..2 {
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    eventually(
        Duration::from_secs(30),
        "the resolution applied and its duplicate refused",
        || async {
            let c = conflicts(&s, &names)?;
            let mine = |st| c.iter().any(|r| r.tenant == manual && r.status == st);
            Ok(
                (mine(ConflictStatus::Resolved) && mine(ConflictStatus::ResolutionRejected))
                    .then_some(()),
            )
        },
    )
    .await?;

    // 4. Salesforce changes the first name, having seen everything.
    for t in &tenants {
        let (status, _) = post(
            &client,
            &hub.ingest,
            t,
            "Contact",
            &[sf_contact("Patty", t0 + 10_000)],
        )
        .await?;
        assert_eq!(status, 202);
    }
    // (The new process counts its own decisions.)
    wait_decisions(&hub.control, &tenants, 1.0).await?;

    // What each strategy promised, version by version: (first name, phone, city).
    let codec = Codec::new(&hub.control);
    let topic = names.canonical(hub_schemas::Entity::Customer);
    let mut versions: BTreeMap<String, Vec<(String, String, Option<String>)>> = BTreeMap::new();
    for r in read_keyed(&s.services.kafka, &topic)? {
        let doc = codec.decode_json(&r.value).await?;
        let tenant = doc["tenant_id"].as_str().unwrap_or_default().to_string();
        versions.entry(tenant).or_default().push((
            doc["first_name"].as_str().unwrap_or_default().into(),
            doc["phone"].as_str().unwrap_or_default().into(),
            doc["address"]["city"].as_str().map(str::to_string),
        ));
    }
    let v =
        |f: &str, p: &str, c: Option<&str>| (f.to_string(), p.to_string(), c.map(str::to_string));
    let sf_kept = vec![
        v("Pat", PHONE_A, None),
        v("Pat", PHONE_A, Some("Austin")),
        v("Patty", PHONE_A, Some("Austin")),
    ];
    let expected: BTreeMap<&str, Vec<_>> = BTreeMap::from([
        (
            "source-wins",
            vec![
                v("Pat", PHONE_A, None),
                v("Patricia", PHONE_B, Some("Austin")),
                v("Patty", PHONE_B, Some("Austin")),
            ],
        ),
        ("target-wins", sf_kept.clone()),
        ("merge", sf_kept.clone()),
        (
            "manual",
            vec![
                v("Pat", PHONE_A, None),
                v("Pat", PHONE_A, Some("Austin")),
                // The resolution: exactly one new version, the duplicate none.
                v("Patricia", PHONE_A, Some("Austin")),
                v("Patty", PHONE_A, Some("Austin")),
            ],
        ),
        ("skip", sf_kept),
    ]);
    for (suffix, want) in &expected {
        let t = format!("{}-{suffix}", s.tenant);
        assert_eq!(
            versions.get(&t).cloned().unwrap_or_default(),
            *want,
            "canonical versions under {suffix}"
        );
    }

    // The conflicts topic: one record per conflict, with the strategy and what it did.
    let all = conflicts(&s, &names)?;
    for (suffix, _) in strategies() {
        let t = format!("{}-{suffix}", s.tenant);
        let mine: Vec<&ConflictRecord> = all.iter().filter(|c| c.tenant == t).collect();
        let raised: Vec<&&ConflictRecord> = mine
            .iter()
            .filter(|c| {
                matches!(
                    c.status,
                    ConflictStatus::Pending | ConflictStatus::AutoResolved
                )
            })
            .collect();
        assert_eq!(raised.len(), 1, "{suffix}: one conflict raised: {mine:?}");
        let c = raised[0];
        let fields: Vec<&str> = c.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            ["first_name", "phone"],
            "{suffix}: the conflicting fields"
        );
        let outcome = serde_json::to_value(&c.fields[0].outcome)?;
        let strategy = c.fields[0].strategy.as_str();
        match suffix {
            "source-wins" => {
                assert_eq!(c.status, ConflictStatus::AutoResolved);
                assert_eq!(strategy, "source_wins");
                assert_eq!(outcome, json!({"applied":{"won_conflict":true}}));
            }
            "target-wins" | "merge" => {
                assert_eq!(c.status, ConflictStatus::AutoResolved);
                assert_eq!(
                    strategy,
                    if suffix == "merge" {
                        "merge"
                    } else {
                        "target_wins"
                    }
                );
                assert_eq!(outcome, json!({"kept_current":{"reason":"lost_conflict"}}));
            }
            "manual" => {
                assert_eq!(c.status, ConflictStatus::Pending);
                assert_eq!(outcome, json!("held"));
                assert_eq!(c.fields[0].current.value, json!("Pat"));
                assert_eq!(c.fields[0].incoming.value, json!("Patricia"));
                assert_eq!(c.fields[0].incoming.source, "hs-marketing");
                let resolved = mine
                    .iter()
                    .filter(|c| c.status == ConflictStatus::Resolved)
                    .count();
                let rejected = mine
                    .iter()
                    .filter(|c| c.status == ConflictStatus::ResolutionRejected)
                    .count();
                assert_eq!((resolved, rejected), (1, 1), "{suffix}: resolved once");
            }
            "skip" => {
                assert_eq!(c.status, ConflictStatus::AutoResolved);
                assert_eq!(outcome, json!("skipped"));
            }
            _ => unreachable!(),
        }
    }
    Ok(())
}

fn conflicts(s: &Scenario, names: &hub_schemas::Topics) -> anyhow::Result<Vec<ConflictRecord>> {
    read_keyed(&s.services.kafka, &names.conflicts())?
        .into_iter()
        .map(|r| Ok(serde_json::from_slice(&r.value)?))
        .collect()
}
