//! (c) The broker dies while webhooks arrive → ingest answers 503, and after the broker
//! is back every record that was answered 202 arrives.

use std::collections::HashSet;
use std::time::Duration;

use hub_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_gets_503_and_everything_answered_202_arrives() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("broker_outage") else {
        return Ok(());
    };
    let s = Scenario::new("outage", services)?;
    let hub = s.spawn("all", "n1")?;
    let client = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&s.services.pg_url).await?;
    let mut accepted: HashSet<String> = HashSet::new();

    let before: Vec<_> = (0..100).map(|i| contact(i, true)).collect();
    let (status, ids) = post(&client, &hub.ingest, &s.tenant, "Contact", &before).await?;
    assert_eq!(status, 202);
    accepted.extend(ids);

    // A crash, not a graceful stop: with a single broker, a graceful stop hands off the
    // leadership of every partition to no one first, and a transaction whose commit markers
    // are still being written then has them skipped for good (Kafka takes a leaderless
    // partition for a deleted one). That hanging transaction would stall read_committed
    // readers of those partitions, and the group's offsets, for ever; it is a property of
    // a one-broker cluster (with replicas, leadership moves and the markers land), which
    // deploy/local/kafka.sh documents. After a crash the broker completes every prepared
    // commit on restart.
    kafka_script("kill")?;
    let outage = async {
        let mut statuses = Vec::new();
        for k in 0..3u64 {
            let recs: Vec<_> = (1000 + k * 10..1000 + k * 10 + 10)
                .map(|i| contact(i, true))
                .collect();
            statuses.push(post(&client, &hub.ingest, &s.tenant, "Contact", &recs).await?);
        }
        anyhow::Ok(statuses)
    }
    .await;
    // Bring the broker back before asserting, so a failure here leaves it running.
    kafka_script("start")?;
    for (status, ids) in outage? {
        assert_eq!(status, 503, "no 2xx for anything not stored");
        assert!(ids.is_empty());
    }

    // After the restart the producer reconnects; a client retries its 503s until 202.
    let after: Vec<_> = (2000..2100).map(|i| contact(i, true)).collect();
    let ids = eventually(
        Duration::from_secs(120),
        "ingest to accept again",
        || async {
            let (status, ids) = post(&client, &hub.ingest, &s.tenant, "Contact", &after).await?;
            Ok((status == 202).then_some(ids))
        },
    )
    .await?;
    accepted.extend(ids);

    // Reconciled by content: a client's retry of a batch that was partly stored before a 503
    // is the same change again, which the hub applies once (the resolve stage skips a system
    // repeating itself), so the row may carry the ingest id of the first copy.
    let expected: HashSet<String> = (0..100)
        .chain(2000..2100)
        .map(|i| format!("pat.lee.{i}@example.com"))
        .collect();
    let rows = eventually(
        Duration::from_secs(180),
        "every 202 record in PostgreSQL",
        || async {
            let rows = pg_rows(&pool, "customer", &s.tenant, &["email"]).await?;
            let have: HashSet<String> = rows
                .iter()
                .filter_map(|r| r.doc["email"].as_str().map(str::to_string))
                .collect();
            Ok(expected.iter().all(|e| have.contains(e)).then_some(rows))
        },
    )
    .await?;
    assert!(accepted.len() >= 200, "both batches accepted");
    let mut seen = HashSet::new();
    for r in &rows {
        assert!(
            seen.insert(r.doc["email"].clone()),
            "{} twice",
            r.doc["email"]
        );
        assert_eq!(r.applied_count, 1);
    }
    Ok(())
}
