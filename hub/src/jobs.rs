//! Sync jobs on a node: the control plane's [`hub_control::scheduler::Scheduler`] wired to the ingest role, and the
//! cluster-wide live event bus.
//!
//! - [`IngestJobRunner`] does a job's work: one [`hub_ingest::sync_pass`] of the connector
//!   (everything changed since its saved cursor, published to `<ns>.raw.<vendor>`), reporting
//!   the records published as progress and stopping when the job is cancelled.
//! - [`KafkaBus`] carries sync events between nodes: [`EventBus::publish`] writes the event
//!   to `<ns>.sync-events` (keyed by tenant, so one tenant's events keep their order), and a
//!   relay thread reads that topic from its end and hands every event — this node's and the
//!   others' — to the node's local subscribers, the `/api/v1/ws/sync-monitor` feeds. A node
//!   therefore shows every node's jobs. The relay reads without a consumer group (it assigns
//!   every partition at its end), so nodes leave nothing behind in the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hub_control::events::{EventBus, LocalBus, SyncEvent};
use hub_control::scheduler::{JobControl, JobOutcome, JobRunner, RunFuture};
use hub_control::store::jobs::{JobProgress, SyncJob};
use hub_ingest::{IngestState, SyncPass};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// Runs sync jobs as passes of the ingest role's pollers.
pub struct IngestJobRunner {
    /// The node's ingest state: topology, publisher, vendor clients.
    pub state: Arc<IngestState>,
}

impl JobRunner for IngestJobRunner {
    fn run(&self, job: SyncJob, mut control: JobControl) -> RunFuture {
        let state = self.state.clone();
        Box::pin(async move {
            let report = control.clone();
            let to_progress = |p: SyncPass, done: bool| JobProgress {
                progress_pct: if done { 100.0 } else { 0.0 },
                records_processed: p.records as i64,
                ..JobProgress::default()
            };
            let pass = hub_ingest::sync_pass(&state, job.tenant.as_str(), &job.connector, |p| {
                report.report(to_progress(p, false))
            });
            tokio::select! {
                r = pass => match r {
                    Ok(p) => JobOutcome { progress: to_progress(p, true), error: None },
                    Err(e) => JobOutcome { progress: control.progress(), error: Some(e.to_string()) },
                },
                // Dropping the pass mid-way is safe: a cursor is saved only after the broker
                // acknowledged what it covers.
                _ = control.cancelled() => JobOutcome {
                    progress: control.progress(),
                    error: Some("cancelled".into()),
                },
            }
        })
    }
}

/// The cluster-wide event bus (see the module docs).
pub struct KafkaBus {
    local: LocalBus,
    producer: FutureProducer,
    topic: String,
    stop: Arc<AtomicBool>,
}

impl KafkaBus {
    /// Connects to `bootstrap` and starts the relay from `topic` into the local bus. The
    /// relay stops when the bus is dropped.
    pub fn start(bootstrap: &str, topic: &str) -> anyhow::Result<Arc<KafkaBus>> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .create()?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-relay-unused"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "50")
            .create()?;
        // A topic created a moment ago may not show its partitions in metadata yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let partitions = loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let n = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            if n > 0 {
                break n;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("topic {topic} has no partitions (is it created?)");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p as i32, Offset::End)?;
        }
        consumer.assign(&assignment)?;
        let local = LocalBus::default();
        let stop = Arc::new(AtomicBool::new(false));
        let relay_local = local.clone();
        let relay_stop = stop.clone();
        std::thread::Builder::new()
            .name("sync-events-relay".into())
            .spawn(move || relay(consumer, relay_local, relay_stop))?;
        Ok(Arc::new(KafkaBus {
            local,
            producer,
            topic: topic.to_string(),
            stop,
        }))
    }
}

fn relay(consumer: BaseConsumer, local: LocalBus, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => match m.payload().map(serde_json::from_slice::<SyncEvent>) {
                Some(Ok(e)) => local.deliver(e),
                _ => debug!(
                    offset = m.offset(),
                    "a record on the sync-events topic is not an event"
                ),
            },
            Some(Err(e)) => debug!(error = %e, "sync-events relay"),
        }
    }
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl EventBus for KafkaBus {
    fn publish(&self, event: SyncEvent) {
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        let key = event.tenant().to_string();
        // Enqueued here, in the caller's order (a job's started, progress, completed and
        // metrics events keep theirs: same key, same partition, idempotent producer); only
        // the delivery report is awaited elsewhere.
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let kind = event.kind();
                tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => {
                            warn!(error = %e, kind, "a live sync event was not published")
                        }
                        Err(_) => warn!(kind, "a live sync event was dropped"),
                    }
                });
            }
            Err((e, _)) => {
                warn!(error = %e, kind = event.kind(), "a live sync event was not queued")
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<SyncEvent> {
        self.local.subscribe()
    }
}
