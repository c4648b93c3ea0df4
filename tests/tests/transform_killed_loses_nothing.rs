//! (b) The transform process is killed with SIGKILL mid-stream and restarted → nothing lost,
//! nothing duplicated in the canonical topic (read_committed) or in PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hub_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_transform_restarts_without_loss_or_duplicates() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("transform_killed") else {
        return Ok(());
    };
    let s = Scenario::new("kill", services)?;
    let edge = s.spawn("ingest,sink,control", "edge")?;
    let mut transform = s.spawn_with_registry("transform", "t1", &edge.control)?;
    let client = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&s.services.pg_url).await?;

    let mut accepted = HashMap::new();
    let send = |from: u64, to: u64| {
        let (client, base, tenant) = (client.clone(), edge.ingest.clone(), s.tenant.clone());
        async move {
            let mut ids = Vec::new();
            for start in (from..to).step_by(50) {
                let recs: Vec<_> = (start..start + 50).map(|i| contact(i, true)).collect();
                let (status, got) = post(&client, &base, &tenant, "Contact", &recs).await?;
                anyhow::ensure!(status == 202, "ingest answered {status}");
                ids.extend(got);
            }
            anyhow::Ok(ids)
        }
    };
    accepted.extend(send(0, 1000).await?.into_iter().map(|id| (id, ())));

    // Kill it while it is busy: as soon as part of the stream has landed.
    eventually(Duration::from_secs(60), "the first rows", || async {
        Ok((pg_rows(&pool, "customer", &s.tenant, &[]).await?.len() >= 100).then_some(()))
    })
    .await?;
    let more = tokio::spawn(send(1000, 2000));
    transform.kill();
    let at_kill = pg_rows(&pool, "customer", &s.tenant, &[]).await?.len();
    assert!(
        at_kill < 2000,
        "the transform was killed with work left ({at_kill} rows written)"
    );
    accepted.extend(more.await??.into_iter().map(|id| (id, ())));
    let _transform = s.spawn_with_registry("transform", "t1", &edge.control)?;

    let rows = eventually(Duration::from_secs(180), "2000 rows", || async {
        let r = pg_rows(&pool, "customer", &s.tenant, &[]).await?;
        Ok((r.len() >= 2000).then_some(r))
    })
    .await?;
    assert_eq!(accepted.len(), 2000);
    let ids: HashSet<_> = rows.iter().map(|r| r.ingest_id.clone()).collect();
    assert_eq!(ids.len(), 2000, "no row twice");
    assert!(accepted.keys().all(|id| ids.contains(id)), "no record lost");
    assert!(
        rows.iter().all(|r| r.applied_count == 1),
        "no record applied twice"
    );

    let canonical = read_topic(
        &s.services.kafka,
        &format!("{}.canonical.customer", s.namespace),
    )?;
    let mut seen = HashSet::new();
    for (id, _) in &canonical {
        let id = id.clone().expect("canonical records carry the ingest id");
        assert!(seen.insert(id.clone()), "{id} twice in the canonical topic");
    }
    assert_eq!(
        seen.len(),
        2000,
        "exactly the accepted records, read_committed"
    );
    Ok(())
}
