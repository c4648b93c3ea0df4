//! `hub bench pipeline`: N synthetic vendor records through the real path — HTTP ingest →
//! Kafka → transactional transform → SQL table sink — reconciled against what ingest
//! accepted. Lost and duplicated records are counted, not assumed.
//!
//! Each run has its own topic namespace and tenant, so runs never see each other's records
//! and the broker can be shared with a running demo.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hub_schemas::{Entity, headers};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::demo;
use crate::node::Node;
use crate::{Overrides, Role};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Push records through ingest → transform → SQL sink and reconcile.
    Pipeline(PipelineArgs),
    /// Initial sync of Salesforce contacts into HubSpot through the pipeline, against the
    /// sandboxes with HubSpot's rate limit enforced; reconciled against both.
    Sync(crate::bench_sync::SyncArgs),
    /// Salesforce ⇄ HubSpot both ways through the pipeline: p50/p99 from an edit in one
    /// system to its arrival in the other, and writes counted (no loop).
    Bisync(crate::bench_sync::BisyncArgs),
    /// The control API under load: N concurrent clients over a seeded control plane; p50,
    /// p90, p99 and max latency and throughput per endpoint group.
    Api(crate::bench_api::ApiArgs),
}

#[derive(Args)]
pub struct PipelineArgs {
    /// How many records to push.
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Records per ingest request (a vendor's batch webhook).
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Offered load in records per second; 0 sends as fast as ingest accepts. Latency is
    /// measured at an offered load below capacity (past it, the figure is only queueing
    /// time); throughput at 0.
    #[arg(long, default_value_t = 4000)]
    rate: u64,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
    /// Keep the run's topics afterwards.
    #[arg(long)]
    keep: bool,
    /// Give up when the sink makes no progress for this long.
    #[arg(long, default_value_t = 120)]
    stall_secs: u64,
    #[command(flatten)]
    overrides: Overrides,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Pipeline(args) => pipeline(args).await,
        BenchCommand::Sync(args) => crate::bench_sync::sync(args).await,
        BenchCommand::Bisync(args) => crate::bench_sync::bisync(args).await,
        BenchCommand::Api(args) => crate::bench_api::api(args).await,
    }
}

pub(crate) fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut topology =
        hub_topology::parse(hub_topology::DEMO_TOPOLOGY).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let tmp = std::env::temp_dir().join(format!("hub-bench-{run_id}.db"));
    topology.runtime.sql_url = format!("sqlite://{}", tmp.display());
    topology.runtime.ingest_listen = "127.0.0.1:0".into();
    topology.runtime.control_listen = "127.0.0.1:0".into();
    topology.runtime.node_id = format!("bench-{run_id}");
    args.overrides.apply(&mut topology.runtime);
    topology.runtime.namespace = format!("bench-{run_id}");
    let tenant_id = format!("bench-{run_id}");
    topology.tenants.truncate(1);
    topology.tenants[0].id = tenant_id.clone();
    let secret = topology.tenants[0]
        .connector("sf-main")
        .context("demo has sf-main")?
        .webhook_secret
        .clone();
    let bootstrap = topology.runtime.kafka_bootstrap.clone();
    let sql_url = topology.runtime.sql_url.clone();

    crate::admin::ensure_local_kafka(&bootstrap).await?;
    let node = Node::start(topology.clone(), &[Role::All]).await?;
    let base = format!("http://{}", node.ingest_addr.context("ingest runs")?);

    // Half contacts, half vehicles: two canonical entities, two kinds of key.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // Warm up: one record of each kind through the whole path first, so schemas are
    // registered and every consumer has its partitions before the clock starts. The cold
    // start is a one-time cost of a new namespace, not the pipeline's latency.
    let store = hub_sink::SqlStore::connect(&sql_url).await?;
    let mut accepted: HashMap<String, &'static str> = HashMap::new();
    let now = hub_schemas::records::now_ms();
    let warm_up = [
        ("Contact", demo::sf_contact(args.records, now)),
        ("Vehicle__c", demo::sf_vehicle(args.records + 1, now)),
    ];
    for (entity, record) in warm_up {
        let body = serde_json::to_vec(&[record])?;
        let ids = demo::post(&client, &base, &tenant_id, "sf-main", entity, &secret, body).await?;
        accepted.extend(ids.into_iter().map(|id| (id, entity)));
    }
    let warm_deadline = Instant::now() + Duration::from_secs(120);
    while bench_rows(&store, &tenant_id).await.map_or(0, |r| r.len()) < accepted.len() {
        if Instant::now() > warm_deadline {
            bail!("the warm-up records did not reach the SQL sink within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let start_ms = hub_schemas::records::now_ms();
    let mut handles = Vec::new();
    let mut i = 0u64;
    let mut pace = (args.rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(
            args.batch as f64 / args.rate as f64,
        ));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    while i < args.records {
        if let Some(t) = pace.as_mut() {
            t.tick().await;
        }
        let n = args.batch.min(args.records - i);
        let first = i;
        i += n;
        let permit = sem.clone().acquire_owned().await?;
        let (client, base, tenant, secret) = (
            client.clone(),
            base.clone(),
            tenant_id.clone(),
            secret.clone(),
        );
        handles.push(tokio::spawn(async move {
            let _permit = permit;
            let now = hub_schemas::records::now_ms();
            let vehicles = first / args.batch % 2 == 1;
            let body: Vec<Value> = (first..first + n)
                .map(|k| {
                    if vehicles {
                        demo::sf_vehicle(k, now)
                    } else {
                        demo::sf_contact(k, now)
                    }
                })
                .collect();
            let entity = if vehicles { "Vehicle__c" } else { "Contact" };
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let mut attempt = 0;
            loop {
                // A 503 means nothing of the request was promised; send it again.
                match demo::post(
                    &client,
                    &base,
                    &tenant,
                    "sf-main",
                    entity,
                    &secret,
                    body.clone(),
                )
                .await
                {
                    Ok(ids) => return Ok::<_, anyhow::Error>((entity, ids)),
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(error = %e, "bench post failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }));
    }
    let mut refused = 0u64;
    for h in handles {
        match h.await? {
            Ok((entity, ids)) => accepted.extend(ids.into_iter().map(|id| (id, entity))),
            Err(e) => {
                refused += 1;
                eprintln!("bench: a request was refused: {e}");
            }
        }
    }
    let ingest_seconds = started.elapsed().as_secs_f64();

    // Wait for the sink to catch up, then reconcile row by row.
    let mut last = (0u64, Instant::now());
    let rows = loop {
        let rows = bench_rows(&store, &tenant_id).await?;
        let n = rows.len() as u64;
        if n >= accepted.len() as u64 {
            break rows;
        }
        if n > last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(args.stall_secs) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut duplicates = 0u64;
    let mut latencies = Vec::with_capacity(rows.len());
    let mut last_write = 0i64;
    for r in &rows {
        duplicates += r.applied_count.saturating_sub(1) as u64;
        if !seen.insert(r.ingest_id.as_str()) {
            duplicates += 1;
        }
        latencies.push(r.written_at_ms - r.source_updated_at_ms);
        last_write = last_write.max(r.written_at_ms);
    }
    latencies.sort_unstable();
    let dead_lettered = count_topic(&bootstrap, &topology.topic_names().dlq_transform())?;
    let topic_dupes = canonical_duplicates(&bootstrap, &topology.topic_names(), accepted.len())?;
    let lost = accepted
        .keys()
        .filter(|id| !seen.contains(id.as_str()))
        .count() as u64;
    // From the first request to the last row written.
    let seconds = (last_write - start_ms).max(1) as f64 / 1000.0;
    let report = json!({
        "records": args.records,
        "offered_rps": args.rate,
        "accepted": accepted.len(),
        "refused_requests": refused,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ingest_seconds": (ingest_seconds * 1000.0).round() / 1000.0,
        "throughput_rps": (accepted.len() as f64 / seconds).round(),
        "e2e_p50_ms": percentile(&latencies, 50.0),
        "e2e_p99_ms": percentile(&latencies, 99.0),
        "e2e_max_ms": latencies.last().copied().unwrap_or(0),
        "lost": lost,
        "duplicates": duplicates + topic_dupes,
        "dead_lettered": dead_lettered,
        "sql": if sql_url.starts_with("postgres") { "postgres" } else { "sqlite" },
        "namespace": topology.runtime.namespace,
    });
    if !args.keep {
        forget_subjects(
            &client,
            &format!("http://{}", node.control_addr),
            &topology.runtime.namespace,
        )
        .await;
    }
    node.shutdown().await;
    if !args.keep {
        let _ = crate::admin::delete_topics(&bootstrap, &topology.topics()).await;
        let _ = std::fs::remove_file(&tmp);
    }
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if lost > 0 || duplicates + topic_dupes > 0 {
        bail!(
            "reconciliation failed: {lost} lost, {} duplicated",
            duplicates + topic_dupes
        );
    }
    Ok(())
}

/// Deletes the run's schema subjects (soft, then permanently) so runs leave the registry as
/// they found it. Best effort: a failure leaves only names behind.
async fn forget_subjects(client: &reqwest::Client, registry: &str, namespace: &str) {
    let Ok(resp) = client.get(format!("{registry}/subjects")).send().await else {
        return;
    };
    let subjects: Vec<String> = resp.json().await.unwrap_or_default();
    let prefix = format!("{namespace}.");
    for s in subjects.iter().filter(|s| s.starts_with(&prefix)) {
        let _ = client
            .delete(format!("{registry}/subjects/{s}"))
            .send()
            .await;
        let _ = client
            .delete(format!("{registry}/subjects/{s}?permanent=true"))
            .send()
            .await;
    }
}

/// Every row the sink wrote for the tenant, across the entities the bench sends.
async fn bench_rows(
    store: &hub_sink::SqlStore,
    tenant: &str,
) -> anyhow::Result<Vec<hub_sink::ReconciliationRow>> {
    let mut out = store.reconciliation_rows(Entity::Customer, tenant).await?;
    out.extend(store.reconciliation_rows(Entity::Vehicle, tenant).await?);
    Ok(out)
}

/// Records in a topic (high minus low watermark, summed over partitions).
fn count_topic(bootstrap: &str, topic: &str) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut n = 0;
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            n += (hi - lo).max(0) as u64;
        }
    }
    Ok(n)
}

/// Reads every canonical topic of the run with `read_committed` and counts ingest ids seen
/// more than once: a duplicate the SQL upsert would hide.
fn canonical_duplicates(
    bootstrap: &str,
    names: &hub_schemas::Topics,
    expected: usize,
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{}-reconcile", names.namespace()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for e in [Entity::Customer, Entity::Vehicle] {
        let topic = names.canonical(e);
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    consumer.assign(&tpl)?;
    let mut seen = HashSet::with_capacity(expected);
    let mut dupes = 0u64;
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let id = m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == headers::INGEST_ID)
                        .and_then(|x| x.value.map(<[u8]>::to_vec))
                });
                if let Some(id) = id
                    && !seen.insert(id)
                {
                    dupes += 1;
                }
            }
            Some(Err(e)) => bail!("reading canonical topics: {e}"),
            None => {}
        }
    }
    Ok(dupes)
}
