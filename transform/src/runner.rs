//! The consume-transform-produce loop, in Kafka transactions.
//!
//! One thread per runner drives librdkafka's blocking calls (never on the async executor).
//! Each batch is one transaction: the canonical records and dead letters it produces and the
//! input offsets it consumed commit together (`send_offsets_to_transaction` with the
//! consumer's group metadata, so a zombie from an older generation is fenced), and consumers
//! read with `read_committed`. A crash anywhere leaves either the whole batch or none of it.
//!
//! No transaction is ever open while the consumer polls: batches are collected first, then
//! processed and committed. A rebalance during collection drops the collected batch (the new
//! owner starts from the committed offsets), so revoking never has to abort half a batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hub_schemas::records::{now_ms, record_key};
use hub_schemas::{Codec, DeadLetter, FieldError, headers};
use hub_topology::{Topology, metrics as m};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::mapping::transform_raw;

/// Settings of one transform runner. Defaults are documented where declared.
#[derive(Debug, Clone)]
pub struct TransformConfig {
    pub bootstrap: String,
    /// The consumer group every transform worker joins; partitions spread across them.
    pub group_id: String,
    /// Stable per worker: it makes the transactional id, so a restarted worker fences its
    /// previous incarnation and aborts whatever it left open at once.
    pub node_id: String,
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

/// Notes rebalances so the loop can drop a batch collected across one.
#[derive(Default)]
struct RebalanceFlag {
    revoked: AtomicBool,
}

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.revoked.store(true, Ordering::SeqCst);
        }
        info!(?rebalance, "transform rebalance");
    }
}

/// One output record of a transaction.
struct Out {
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

pub struct TransformRunner {
    cfg: TransformConfig,
    topology: Arc<Topology>,
    codec: Arc<Codec>,
    rt: tokio::runtime::Handle,
}

impl TransformRunner {
    /// Must be called inside a Tokio runtime (the codec's registry calls run on it).
    pub fn new(cfg: TransformConfig, topology: Arc<Topology>, codec: Arc<Codec>) -> Self {
        TransformRunner {
            cfg,
            topology,
            codec,
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// Runs on a dedicated thread until `shutdown` is set; a broken session (broker gone,
    /// producer fenced) is rebuilt after a pause, so the worker outlives broker outages.
    pub fn spawn(self, shutdown: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("hub-transform".into())
            .spawn(move || {
                while !shutdown.load(Ordering::SeqCst) {
                    match self.session(&shutdown) {
                        Ok(()) => break,
                        Err(e) => {
                            metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => "transform")
                                .increment(1);
                            warn!(error = %e, "transform session ended; starting a new one");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
                info!("transform stopped");
            })
            .expect("spawn transform thread")
    }

    fn consumer(&self) -> Result<BaseConsumer<RebalanceFlag>, KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.bootstrap)
            .set("group.id", &self.cfg.group_id)
            // Static membership: a restarted worker takes its partitions back without waiting
            // for the session timeout of its previous incarnation.
            .set(
                "group.instance.id",
                format!("hub-transform-{}", self.cfg.node_id),
            )
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("enable.partition.eof", "false")
            .create_with_context(RebalanceFlag::default())
    }

    fn producer(&self) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.bootstrap)
            .set(
                "transactional.id",
                format!("hub-transform-{}", self.cfg.node_id),
            )
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

    fn session(&self, shutdown: &AtomicBool) -> Result<(), TransformError> {
        let topics = self.topology.raw_topics();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let consumer = self.consumer()?;
        consumer.subscribe(&topic_refs)?;
        let producer = self.producer()?;
        producer.init_transactions(self.cfg.transaction_timeout)?;
        info!(topics = ?topics, node = %self.cfg.node_id, "transform session started");
        let mut lag_at = Instant::now();
        while !shutdown.load(Ordering::SeqCst) {
            if lag_at.elapsed() >= LAG_EVERY {
                report_lag(&consumer);
                lag_at = Instant::now();
            }
            let batch = self.collect(&consumer)?;
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
            self.transact(&consumer, &producer, &batch)?;
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
    /// the consumer to the batch's first offsets so nothing is skipped.
    fn transact(
        &self,
        consumer: &BaseConsumer<RebalanceFlag>,
        producer: &ThreadedProducer<DefaultProducerContext>,
        batch: &[OwnedMessage],
    ) -> Result<(), TransformError> {
        let started = Instant::now();
        let mut outs = Vec::with_capacity(batch.len());
        for msg in batch {
            match self.process(msg) {
                Ok(out) => outs.extend(out),
                Err(e) => {
                    // The registry is away: do not dead-letter good records for our outage.
                    warn!(error = %e, "transform paused: cannot encode");
                    rewind(consumer, batch);
                    std::thread::sleep(Duration::from_secs(1));
                    return Ok(());
                }
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
                    records = batch.len(),
                    process_ms = processed.as_millis() as u64,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "transaction committed"
                );
                Ok(())
            }
            Err(KafkaError::Transaction(e)) if !e.is_fatal() => {
                warn!(error = %e, "transaction failed; aborting and rewinding");
                metrics::counter!(m::TRANSFORM_TRANSACTIONS_TOTAL, "outcome" => "aborted")
                    .increment(1);
                producer.abort_transaction(self.cfg.transaction_timeout)?;
                rewind(consumer, batch);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One raw record → the record(s) to produce for it. `Err` only for our own outages.
    fn process(&self, msg: &OwnedMessage) -> Result<Vec<Out>, TransformError> {
        let value = msg.payload().unwrap_or_default();
        let original_key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let raw = match self.rt.block_on(self.codec.decode_raw(value)) {
            Ok(raw) => raw,
            Err(e) if e.is_retriable() => return Err(TransformError::Registry(e.to_string())),
            Err(e) => {
                let reason = format!("the record could not be decoded as a RawChange: {e}");
                return self
                    .dead_letter(msg, original_key, None, "decode", reason, Vec::new())
                    .map(|o| vec![o]);
            }
        };
        let known = self
            .topology
            .tenant(&raw.tenant)
            .and_then(|t| t.connector(&raw.connector))
            .is_some();
        let (tenant_label, connector_label) = if known {
            (raw.tenant.clone(), raw.connector.clone())
        } else {
            ("unknown".to_string(), "unknown".to_string())
        };
        match transform_raw(&self.topology, &raw) {
            Ok(all) => {
                let mut outs = Vec::with_capacity(all.len());
                for mapped in all {
                    let topic = self.topology.topic_names().canonical(mapped.entity);
                    let payload = self
                        .rt
                        .block_on(self.codec.encode_value(
                            &topic,
                            mapped.entity.schema_text(),
                            mapped.avro,
                        ))
                        .map_err(|e| TransformError::Registry(e.to_string()))?;
                    metrics::counter!(m::TRANSFORM_RECORDS_TOTAL, "tenant" => tenant_label.clone(), "connector" => connector_label.clone(),
                        "entity" => mapped.entity.name(), "outcome" => "canonical")
                    .increment(1);
                    outs.push(Out {
                        topic,
                        key: record_key(&raw.tenant, &mapped.key),
                        payload,
                        headers: vec![
                            (headers::TENANT, raw.tenant.clone()),
                            (headers::CONNECTOR, raw.connector.clone()),
                            (headers::INGEST_ID, raw.ingest_id.clone()),
                            (headers::ENTITY, mapped.entity.name().to_string()),
                            (headers::RECEIVED_AT_MS, raw.received_at.to_string()),
                        ],
                    });
                }
                Ok(outs)
            }
            Err(failure) => {
                metrics::counter!(m::TRANSFORM_RECORDS_TOTAL, "tenant" => tenant_label, "connector" => connector_label,
                    "entity" => "unknown", "outcome" => "dead_lettered")
                .increment(1);
                debug!(tenant = %raw.tenant, ingest_id = %raw.ingest_id, class = failure.class, "dead-lettered");
                self.dead_letter(
                    msg,
                    original_key,
                    Some(&raw),
                    failure.class,
                    failure.reason,
                    failure.errors,
                )
                .map(|o| vec![o])
            }
        }
    }

    fn dead_letter(
        &self,
        msg: &OwnedMessage,
        original_key: Option<String>,
        raw: Option<&hub_schemas::RawChange>,
        class: &str,
        reason: String,
        errors: Vec<FieldError>,
    ) -> Result<Out, TransformError> {
        let dl = DeadLetter {
            stage: "transform".into(),
            error_class: class.into(),
            reason,
            errors,
            attempts: 1,
            tenant: raw.map(|r| r.tenant.clone()),
            original_topic: msg.topic().to_string(),
            original_partition: msg.partition(),
            original_offset: msg.offset(),
            original_key: original_key.clone(),
            original_value: msg.payload().unwrap_or_default().to_vec(),
            failed_at: now_ms(),
        };
        let dlq = self.topology.topic_names().dlq_transform();
        let payload = self
            .rt
            .block_on(self.codec.encode_dead_letter(&dlq, &dl))
            .map_err(|e| TransformError::Registry(e.to_string()))?;
        let mut hdrs = Vec::new();
        if let Some(r) = raw {
            hdrs.push((headers::TENANT, r.tenant.clone()));
            hdrs.push((headers::INGEST_ID, r.ingest_id.clone()));
        }
        Ok(Out {
            topic: dlq,
            key: original_key.unwrap_or_default(),
            payload,
            headers: hdrs,
        })
    }
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
fn report_lag(consumer: &BaseConsumer<RebalanceFlag>) {
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
        metrics::gauge!(m::CONSUMER_LAG_MESSAGES, "stage" => "transform", "topic" => topic)
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
