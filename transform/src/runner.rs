//! The consume-transform-produce loop, in Kafka transactions, shared by the transform's two
//! stages (see [`crate::pipeline`]): `map` (raw → changes) and `resolve` (changes →
//! canonical, state, conflicts).
//!
//! One thread per stage drives librdkafka's blocking calls (never on the async executor).
//! Each batch is one transaction: the canonical records and dead letters it produces and the
//! input offsets it consumed commit together (`send_offsets_to_transaction` with the
//! consumer's group metadata, so a zombie from an older generation is fenced), and consumers
//! read with `read_committed`. A crash anywhere leaves either the whole batch or none of it.
//!
//! No transaction is ever open while the consumer polls: batches are collected first, then
//! processed and committed. A rebalance during collection drops the collected batch (the new
//! owner starts from the committed offsets), so revoking never has to abort half a batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hub_schemas::records::now_ms;
use hub_schemas::{Codec, DeadLetter};
use hub_topology::{Topology, metrics as m};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

/// Settings of one transform runner. Defaults are documented where declared.
#[derive(Debug, Clone)]
pub struct TransformConfig {
    pub bootstrap: String,
    /// The consumer group every transform worker joins; partitions spread across them.
    pub group_id: String,
    /// Stable per worker: with the prefix it makes the transactional id, so a restarted
    /// worker fences its previous incarnation and aborts whatever it left open at once.
    pub node_id: String,
    /// `<namespace>-transform`: transactional ids are unique per cluster, so two
    /// deployments (or a benchmark run) sharing a broker and node names never fence each
    /// other.
    pub transactional_prefix: String,
    /// Most records in one transaction.
    pub max_batch: usize,
    /// Longest wait to fill a batch once its first record arrived.
    pub max_wait: Duration,
    pub transaction_timeout: Duration,
}

impl TransformConfig {
    /// Defaults for a node of `topology`, whose runtime section names the broker and node.
    pub fn for_topology(topology: &Topology) -> Self {
        TransformConfig {
            bootstrap: topology.runtime.kafka_bootstrap.clone(),
            group_id: topology.topic_names().group("transform"),
            node_id: topology.runtime.node_id.clone(),
            transactional_prefix: topology.topic_names().group("transform"),
            // A commit costs about 100 ms on a local Kafka 4.4 whatever the batch holds, so
            // under load batches grow to amortise it; when quiet, a record waits 15 ms at most
            // for company.
            max_batch: 5000,
            max_wait: Duration::from_millis(15),
            transaction_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("schema registry unavailable: {0}")]
    Registry(String),
}

/// Runs the transform role: both stages, each on its own thread.
pub struct TransformRunner {
    cfg: TransformConfig,
    topology: Arc<Topology>,
    codec: Arc<Codec>,
}

impl TransformRunner {
    /// Must be called inside a Tokio runtime (the codec's registry calls run on it).
    pub fn new(cfg: TransformConfig, topology: Arc<Topology>, codec: Arc<Codec>) -> Self {
        TransformRunner {
            cfg,
            topology,
            codec,
        }
    }

    /// Starts both stages; they run until `shutdown` is set.
    pub fn spawn(self, shutdown: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
        let rt = tokio::runtime::Handle::current();
        let map = crate::stage_map::MapStage::new(
            self.topology.clone(),
            self.codec.clone(),
            rt.clone(),
            self.cfg.bootstrap.clone(),
        );
        let resolve = crate::stage_resolve::ResolveStage::new(
            self.topology.clone(),
            self.codec.clone(),
            rt,
            self.cfg.bootstrap.clone(),
        );
        let mut resolve_cfg = self.cfg.clone();
        resolve_cfg.group_id = format!("{}-resolve", self.cfg.group_id);
        vec![
            StageLoop {
                cfg: self.cfg,
                stage: map,
            }
            .spawn(shutdown.clone()),
            StageLoop {
                cfg: resolve_cfg,
                stage: resolve,
            }
            .spawn(shutdown),
        ]
    }
}

/// Notes rebalances so the loop can drop a batch collected across one and rebuild its
/// tables.
#[derive(Default)]
struct RebalanceFlag {
    revoked: AtomicBool,
    changed: AtomicBool,
}

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.revoked.store(true, Ordering::SeqCst);
        }
        self.changed.store(true, Ordering::SeqCst);
        info!(?rebalance, "transform rebalance");
    }
}

/// One output record of a transaction.
pub(crate) struct Out {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// What one stage does with its input; the loop around it is [`StageLoop`].
pub(crate) trait Stage: Send {
    /// `map` or `resolve`: in thread names, transactional ids and metric labels.
    fn name(&self) -> &'static str;
    fn input_topics(&self) -> Vec<String>;
    /// Rebuilds what the stage keeps for its input partitions (numbers), after a rebalance
    /// or an aborted batch.
    fn restore(&mut self, partitions: &BTreeSet<i32>) -> Result<(), TransformError>;
    /// Called before each batch is processed.
    fn before_batch(&mut self) -> Result<(), TransformError> {
        Ok(())
    }
    /// One input record → the records to produce for it. `Err` only for the hub's own
    /// outages (the batch is retried); bad input becomes a dead letter in `outs`.
    fn process(&mut self, msg: &OwnedMessage, outs: &mut Vec<Out>) -> Result<(), TransformError>;
}

/// The transactional loop around one [`Stage`].
pub(crate) struct StageLoop<S: Stage> {
    cfg: TransformConfig,
    stage: S,
}

impl<S: Stage + 'static> StageLoop<S> {
    /// Runs on a dedicated thread until `shutdown` is set; a broken session (broker gone,
    /// producer fenced) is rebuilt after a pause, so the worker outlives broker outages.
    fn spawn(mut self, shutdown: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let name = self.stage.name();
        std::thread::Builder::new()
            .name(format!("hub-{name}"))
            .spawn(move || {
                while !shutdown.load(Ordering::SeqCst) {
                    match self.session(&shutdown) {
                        Ok(()) => break,
                        Err(e) => {
                            metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => "transform")
                                .increment(1);
                            warn!(error = %e, stage = name, "transform session ended; starting a new one");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
                info!(stage = name, "transform stage stopped");
            })
            .expect("spawn transform thread")
    }

    fn instance(&self) -> String {
        format!(
            "{}-{}-{}",
            self.cfg.transactional_prefix,
            self.stage.name(),
            self.cfg.node_id
        )
    }

    fn consumer(&self) -> Result<BaseConsumer<RebalanceFlag>, KafkaError> {
        client_config()
            .set("bootstrap.servers", &self.cfg.bootstrap)
            .set("group.id", &self.cfg.group_id)
            // Static membership: a restarted worker takes its partitions back without waiting
            // for the session timeout of its previous incarnation.
            .set("group.instance.id", self.instance())
            // Partition n of every input topic to the same member, so it owns partition n of
            // the tables keyed like its inputs.
            .set("partition.assignment.strategy", "range")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "25")
            .create_with_context(RebalanceFlag::default())
    }

    fn producer(&self) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
        client_config()
            .set("bootstrap.servers", &self.cfg.bootstrap)
            .set("transactional.id", self.instance())
            .set(
                "transaction.timeout.ms",
                self.cfg.transaction_timeout.as_millis().to_string(),
            )
            .set("linger.ms", "2")
            // A transaction begun right after a commit meets CONCURRENT_TRANSACTIONS while the
            // coordinator writes the previous markers; the default 100 ms retry backoff would
            // then add 100 ms to every batch (the Java client shortened it for this reason).
            .set("retry.backoff.ms", "5")
            .set("retry.backoff.max.ms", "100")
            .set("socket.nagle.disable", "true")
            .create()
    }

    fn session(&mut self, shutdown: &AtomicBool) -> Result<(), TransformError> {
        let topics = self.stage.input_topics();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let consumer = self.consumer()?;
        consumer.subscribe(&topic_refs)?;
        let producer = self.producer()?;
        producer.init_transactions(self.cfg.transaction_timeout)?;
        info!(topics = ?topics, node = %self.cfg.node_id, stage = self.stage.name(), "transform session started");
        let mut lag_at = Instant::now();
        // Tables are rebuilt before the first batch of every assignment.
        let mut restore = true;
        while !shutdown.load(Ordering::SeqCst) {
            if lag_at.elapsed() >= LAG_EVERY {
                report_lag(&consumer, self.stage.name());
                lag_at = Instant::now();
            }
            let batch = self.collect(&consumer)?;
            restore |= consumer.context().changed.swap(false, Ordering::SeqCst);
            if consumer.context().revoked.swap(false, Ordering::SeqCst) {
                debug!(
                    dropped = batch.len(),
                    "rebalance during collection; batch left to the new owner"
                );
                continue;
            }
            if batch.is_empty() {
                continue;
            }
            if restore {
                let owned: BTreeSet<i32> = consumer
                    .assignment()?
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                let started = Instant::now();
                self.stage.restore(&owned)?;
                info!(stage = self.stage.name(), partitions = ?owned, elapsed_ms = started.elapsed().as_millis() as u64, "tables restored");
            }
            restore = !self.transact(&consumer, &producer, &batch)?;
        }
        Ok(())
    }

    fn collect(
        &self,
        consumer: &BaseConsumer<RebalanceFlag>,
    ) -> Result<Vec<OwnedMessage>, KafkaError> {
        let mut batch = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let timeout = match deadline {
                None => Duration::from_millis(200),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(timeout) {
                Some(Ok(msg)) => {
                    batch.push(msg.detach());
                    deadline.get_or_insert_with(|| Instant::now() + self.cfg.max_wait);
                }
                Some(Err(e)) => {
                    metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => "transform").increment(1);
                    warn!(error = %e, "transform consumer error");
                    if batch.is_empty() {
                        return Ok(batch);
                    }
                }
                None => {}
            }
            if batch.len() >= self.cfg.max_batch || deadline.is_none_or(|d| Instant::now() >= d) {
                return Ok(batch);
            }
        }
    }

    /// Processes one batch in one transaction; on an abortable failure, aborts and rewinds
    /// the consumer to the batch's first offsets so nothing is skipped. Returns whether the
    /// batch committed (if not, the stage's tables may hold its effects and are rebuilt).
    fn transact(
        &mut self,
        consumer: &BaseConsumer<RebalanceFlag>,
        producer: &ThreadedProducer<DefaultProducerContext>,
        batch: &[OwnedMessage],
    ) -> Result<bool, TransformError> {
        let started = Instant::now();
        let mut outs = Vec::with_capacity(batch.len());
        self.stage.before_batch()?;
        for msg in batch {
            if let Err(e) = self.stage.process(msg, &mut outs) {
                // The registry is away: do not dead-letter good records for our outage.
                warn!(error = %e, "transform paused: cannot encode");
                rewind(consumer, batch);
                std::thread::sleep(Duration::from_secs(1));
                return Ok(false);
            }
        }
        let processed = started.elapsed();
        producer.begin_transaction()?;
        for out in &outs {
            send(producer, out);
        }
        let mut offsets = TopicPartitionList::new();
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for msg in batch {
            let e = next.entry((msg.topic(), msg.partition())).or_insert(0);
            *e = (*e).max(msg.offset() + 1);
        }
        for ((t, p), o) in &next {
            offsets.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
        let metadata = consumer.group_metadata().ok_or(KafkaError::Global(
            rdkafka::types::RDKafkaErrorCode::InvalidGroupId,
        ))?;
        let result = producer
            .send_offsets_to_transaction(&offsets, &metadata, self.cfg.transaction_timeout)
            .and_then(|()| producer.commit_transaction(self.cfg.transaction_timeout));
        match result {
            Ok(()) => {
                metrics::counter!(m::TRANSFORM_TRANSACTIONS_TOTAL, "outcome" => "committed")
                    .increment(1);
                debug!(
                    stage = self.stage.name(),
                    records = batch.len(),
                    outputs = outs.len(),
                    process_ms = processed.as_millis() as u64,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "transaction committed"
                );
                Ok(true)
            }
            Err(KafkaError::Transaction(e)) if !e.is_fatal() => {
                warn!(error = %e, "transaction failed; aborting and rewinding");
                metrics::counter!(m::TRANSFORM_TRANSACTIONS_TOTAL, "outcome" => "aborted")
                    .increment(1);
                producer.abort_transaction(self.cfg.transaction_timeout)?;
                rewind(consumer, batch);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A client configuration; `HUB_KAFKA_DEBUG` (librdkafka's `debug` contexts, e.g.
/// `cgrp,fetch,eos`) turns on librdkafka's own tracing, logged at debug level under the
/// `librdkafka` target, for an SRE chasing a broker-side problem.
pub(crate) fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    if let Ok(contexts) = std::env::var("HUB_KAFKA_DEBUG") {
        c.set("debug", contexts);
    }
    c
}

/// A dead letter for one input record of the transform.
pub(crate) fn dead_letter(
    rt: &tokio::runtime::Handle,
    codec: &Codec,
    dlq: String,
    msg: &OwnedMessage,
    tenant: Option<(&str, &str)>,
    failure: crate::TransformFailure,
) -> Result<Out, TransformError> {
    let crate::TransformFailure {
        class,
        reason,
        errors,
    } = failure;
    let original_key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let dl = DeadLetter {
        stage: "transform".into(),
        error_class: class.into(),
        reason,
        errors,
        attempts: 1,
        tenant: tenant.map(|(t, _)| t.to_string()),
        original_topic: msg.topic().to_string(),
        original_partition: msg.partition(),
        original_offset: msg.offset(),
        original_key: original_key.clone(),
        original_value: msg.payload().unwrap_or_default().to_vec(),
        failed_at: now_ms(),
    };
    let payload = rt
        .block_on(codec.encode_dead_letter(&dlq, &dl))
        .map_err(|e| TransformError::Registry(e.to_string()))?;
    let mut hdrs = Vec::new();
    if let Some((t, ingest_id)) = tenant {
        hdrs.push((hub_schemas::headers::TENANT, t.to_string()));
        hdrs.push((hub_schemas::headers::INGEST_ID, ingest_id.to_string()));
    }
    Ok(Out {
        topic: dlq,
        key: original_key.unwrap_or_default(),
        payload,
        headers: hdrs,
    })
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, out: &Out) {
    let mut hdrs = OwnedHeaders::new_with_capacity(out.headers.len());
    for (k, v) in &out.headers {
        hdrs = hdrs.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut record = BaseRecord::to(&out.topic)
        .key(&out.key)
        .payload(&out.payload)
        .headers(hdrs);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            // A full local queue drains as the broker acknowledges; wait for room. Any other
            // error surfaces at commit_transaction and aborts the batch.
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => {
                warn!(error = %e, topic = %out.topic, "produce failed; the transaction will abort");
                return;
            }
        }
    }
}

/// How often the consumer lag gauge is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(10);

/// Sets `hub_consumer_lag_messages{stage="transform", topic}`: the high watermark minus the
/// position, summed over this worker's partitions of each topic.
fn report_lag(consumer: &BaseConsumer<RebalanceFlag>, stage: &'static str) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let mut lag: BTreeMap<String, i64> = BTreeMap::new();
    for el in positions.elements() {
        let Offset::Offset(pos) = el.offset() else {
            continue;
        };
        if let Ok((_, high)) =
            consumer.fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(2))
        {
            *lag.entry(el.topic().to_string()).or_default() += (high - pos).max(0);
        }
    }
    for (topic, n) in lag {
        metrics::gauge!(m::CONSUMER_LAG_MESSAGES, "stage" => if stage == "map" { "transform" } else { "resolve" }, "topic" => topic)
            .set(n as f64);
    }
}

/// Seeks each partition of the batch back to its first offset in the batch.
fn rewind(consumer: &BaseConsumer<RebalanceFlag>, batch: &[OwnedMessage]) {
    let mut first: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for msg in batch {
        let e = first
            .entry((msg.topic(), msg.partition()))
            .or_insert(i64::MAX);
        *e = (*e).min(msg.offset());
    }
    for ((t, p), o) in first {
        if let Err(e) = consumer.seek(t, p, Offset::Offset(o), Duration::from_secs(5)) {
            // The partition was revoked meanwhile; its new owner starts from the committed offset.
            debug!(error = %e, topic = t, partition = p, "rewind skipped");
        }
    }
}
