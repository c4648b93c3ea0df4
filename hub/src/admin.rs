//! Kafka administration the node does for itself: making sure its topics exist, and finding
//! (or starting) a local broker for the demo and the benchmark.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// Creates the topics that are missing, with the hub's retention policy per kind.
pub async fn ensure_topics(
    bootstrap: &str,
    topics: &[String],
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(replication));
            if t.contains(".state.")
                || t.ends_with(".xref")
                || t.ends_with(".links")
                || t.ends_with(".cursors")
            {
                // Tables: the last record per key is the truth, kept for as long as the key.
                return topic.set("cleanup.policy", "compact");
            }
            let retention = if t.contains(".dlq.") || t.ends_with(".conflicts") {
                // Dead letters and conflicts wait for a person; keep them a quarter.
                "7776000000"
            } else if t.ends_with(".ledger") || t.ends_with(".sync-events") {
                // An echo comes back within seconds of the write it reflects, and live
                // events are watched as they happen: a day is ample.
                "86400000"
            } else {
                // Seven days, room to replay after a weekend outage.
                "604800000"
            };
            topic.set("retention.ms", retention)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Deletes topics (the benchmark's own, after a run).
pub async fn delete_topics(bootstrap: &str, topics: &[String]) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    admin.delete_topics(&names, &AdminOptions::new()).await?;
    Ok(())
}

/// Whether a broker answers a metadata request at `bootstrap`.
pub fn broker_answers(bootstrap: &str, timeout: Duration) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create();
    consumer.is_ok_and(|c| c.fetch_metadata(None, timeout).is_ok())
}

/// The repository's local-Kafka script, when this binary was built from a checkout.
fn kafka_script() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/kafka.sh");
    p.exists().then_some(p)
}

/// Makes sure a broker answers at `bootstrap`, starting the local one if it is the default
/// address and nothing answers there.
pub async fn ensure_local_kafka(bootstrap: &str) -> anyhow::Result<()> {
    let b = bootstrap.to_string();
    if tokio::task::spawn_blocking(move || broker_answers(&b, Duration::from_secs(3))).await? {
        return Ok(());
    }
    let script = kafka_script()
        .context("no broker answers and deploy/local/kafka.sh is not beside this build")?;
    eprintln!(
        "starting local Kafka with {} (first run downloads it from Maven Central)",
        script.display()
    );
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("start")
        .status()
        .await?;
    if !status.success() {
        bail!("{} start failed ({status})", script.display());
    }
    let b = bootstrap.to_string();
    if !tokio::task::spawn_blocking(move || broker_answers(&b, Duration::from_secs(30))).await? {
        bail!("the local broker started but {bootstrap} does not answer");
    }
    Ok(())
}
