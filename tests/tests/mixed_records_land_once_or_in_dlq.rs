//! (a) 1,000 mixed valid and invalid records posted → every valid one in PostgreSQL exactly
//! once with the right values, every invalid one in the transform DLQ with its reasons.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hub_e2e::*;
use hub_schemas::Codec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_records_land_exactly_once_and_invalid_ones_in_the_dlq_with_reasons()
-> anyhow::Result<()> {
    let Some(services) = Services::from_env("mixed_records") else {
        return Ok(());
    };
    let s = Scenario::new("mixed", services)?;
    let hub = s.spawn("all", "n1")?;
    let client = reqwest::Client::new();

    // 500 contacts and 500 vehicles; every fifth of each is invalid.
    let mut valid: HashMap<String, (&str, u64)> = HashMap::new();
    let mut invalid: HashMap<String, (&str, u64)> = HashMap::new();
    for chunk in 0..20u64 {
        let (entity, make): (&str, fn(u64, bool) -> serde_json::Value) = if chunk % 2 == 0 {
            ("Contact", contact)
        } else {
            ("Vehicle__c", vehicle)
        };
        let idx: Vec<u64> = (chunk * 50..chunk * 50 + 50).collect();
        let records: Vec<_> = idx.iter().map(|i| make(*i, i % 5 != 0)).collect();
        let (status, ids) = post(&client, &hub.ingest, &s.tenant, entity, &records).await?;
        assert_eq!(status, 202, "batch {chunk} accepted");
        assert_eq!(ids.len(), 50);
        for (id, i) in ids.into_iter().zip(idx) {
            if i % 5 != 0 {
                valid.insert(id, (entity, i))
            } else {
                invalid.insert(id, (entity, i))
            };
        }
    }
    assert_eq!((valid.len(), invalid.len()), (800, 200));

    let pool = sqlx::PgPool::connect(&s.services.pg_url).await?;
    let (customers, vehicles) = eventually(
        Duration::from_secs(120),
        "800 valid rows in PostgreSQL",
        || async {
            let c = pg_rows(
                &pool,
                "customer",
                &s.tenant,
                &["email", "phone", "last_name"],
            )
            .await?;
            let v = pg_rows(
                &pool,
                "vehicle",
                &s.tenant,
                &["vin", "list_price_minor", "year", "make"],
            )
            .await?;
            Ok((c.len() + v.len() >= 800).then_some((c, v)))
        },
    )
    .await?;

    // Exactly once, with the mapped values.
    let mut seen = HashSet::new();
    for row in customers.iter().chain(vehicles.iter()) {
        assert!(
            seen.insert(row.ingest_id.clone()),
            "ingest id {} twice",
            row.ingest_id
        );
        assert_eq!(row.applied_count, 1, "applied once: {}", row.ingest_id);
        let (entity, i) = valid
            .get(&row.ingest_id)
            .unwrap_or_else(|| panic!("row {} was not a valid record", row.ingest_id));
        if *entity == "Contact" {
            assert_eq!(row.doc["email"], format!("pat.lee.{i}@example.com"));
            assert_eq!(row.doc["phone"], format!("+1512555{:04}", i % 10_000));
            assert_eq!(row.doc["last_name"], format!("Lee{i}"));
        } else {
            assert_eq!(row.key, vin(*i));
            assert_eq!(row.doc["vin"], vin(*i));
            assert_eq!(
                row.doc["list_price_minor"],
                format!("{}{:03}50", 30 + i % 20, i % 1000)
            );
            assert_eq!(row.doc["year"], "2022");
        }
    }
    assert_eq!(seen.len(), 800, "every valid record, no more");
    assert_eq!(customers.len(), 400);

    // Every invalid one in the DLQ, with all its reasons.
    let codec = Codec::new(&hub.control);
    let dlq = format!("{}.dlq.transform", s.namespace);
    let letters = eventually(Duration::from_secs(60), "200 dead letters", || async {
        let recs = read_topic(&s.services.kafka, &dlq)?;
        Ok((recs.len() >= 200).then_some(recs))
    })
    .await?;
    let mut dead = HashSet::new();
    for (id, bytes) in &letters {
        let id = id.clone().expect("dead letters carry the ingest id");
        let dl = codec.decode_dead_letter(bytes).await?;
        let (entity, _) = invalid
            .get(&id)
            .unwrap_or_else(|| panic!("dead letter {id} was a valid record"));
        assert_eq!(dl.stage, "transform");
        assert_eq!(dl.error_class, "validation");
        let codes: HashSet<&str> = dl.errors.iter().map(|e| e.code.as_str()).collect();
        if *entity == "Contact" {
            assert_eq!(
                codes,
                HashSet::from(["required", "email_invalid"]),
                "{:?}",
                dl.errors
            );
        } else {
            assert_eq!(codes, HashSet::from(["vin_invalid"]), "{:?}", dl.errors);
        }
        assert!(!dl.reason.is_empty() && !dl.original_value.is_empty());
        assert!(dead.insert(id), "one dead letter per record");
    }
    assert_eq!(dead.len(), 200);

    // The metrics contract: every metric the hub promises is on /metrics of a node running
    // every role, after traffic. Consumer lag is a periodic gauge (every 10 s), so wait for
    // its first report rather than expect it at once.
    let missing = eventually(
        Duration::from_secs(60),
        "every contract metric on /metrics",
        || async {
            let text = reqwest::get(format!("{}/metrics", hub.control))
                .await?
                .text()
                .await?;
            let missing: Vec<&str> = hub_topology::metrics::ALL
                .into_iter()
                .filter(|m| !text.contains(m))
                .collect();
            Ok(missing.is_empty().then_some(missing))
        },
    )
    .await;
    assert!(missing.is_ok(), "{missing:?}");

    // Data teams' stock Confluent client reads the canonical topics through our registry.
    if let Ok(python) = std::env::var("HUB_CONTRACT_PYTHON") {
        let out = std::process::Command::new(python)
            .arg(repo_root().join("schemas/contract/read_canonical.py"))
            .args(["--bootstrap", &s.services.kafka, "--registry", &hub.control])
            .args([
                "--topics",
                &format!("{0}.canonical.customer,{0}.canonical.vehicle", s.namespace),
            ])
            .args(["--expect", "800", "--timeout-s", "60"])
            .output()?;
        assert!(
            out.status.success(),
            "confluent-kafka reader: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("HUB_CONTRACT_PYTHON must be set under CI");
    }
    Ok(())
}
