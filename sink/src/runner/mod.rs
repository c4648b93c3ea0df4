//! The Kafka loops: consume canonical topics, hand batches to the store or a sink, dead-letter
//! what a target refuses, commit. All Kafka code of the sink lives here.
//!
//! - [`SqlSinkRunner`]: exactly-once into the SQL store (offsets stored with the rows).
//! - [`ApiSinkRunner`] / [`WebhookSinkRunner`]: effectively-once into an API target.

mod api;
mod sql;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hub_schemas::records::now_ms;
use hub_schemas::{Codec, DeadLetter, Entity, Topics, headers};
use hub_topology::metrics as m;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tokio::sync::watch;

pub use api::{ApiSinkRunner, VendorSinkRunner, WebhookSinkRunner};
pub use sql::SqlSinkRunner;

use crate::api::RetryPolicy;
use crate::error::{Result, SinkError};
use crate::offsets::{OffsetCache, Position};
use crate::shutdown::{is_stopped, stopped};

/// Settings shared by the runners. Defaults suit a node of the demo and production alike.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Most messages in one batch. Default 1000.
    pub max_batch: usize,
    /// How long a batch waits for more messages after its first. Default 20 ms.
    pub linger: Duration,
    /// Retries of transient target failures (API sinks). Default: 8 attempts, ≤ 30 s apart.
    pub retry: RetryPolicy,
    /// How often librdkafka reports statistics (consumer lag). Default 5 s.
    pub stats_interval: Duration,
    /// Extra librdkafka properties for the consumer and the dead-letter producer (TLS, SASL,
    /// `debug`, timeouts), applied last.
    pub kafka_config: Vec<(String, String)>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            max_batch: 1000,
            linger: Duration::from_millis(20),
            retry: RetryPolicy::default(),
            stats_interval: Duration::from_secs(5),
            kafka_config: Vec::new(),
        }
    }
}

/// One consumed message, detached from the consumer.
#[derive(Debug, Clone)]
pub(crate) struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The `hub-external-ids` header, when the record has one.
    pub external_ids: Option<Vec<u8>>,
    /// The `hub-connector` header: the connector whose change made the record.
    pub origin: Option<Vec<u8>>,
    /// The rebalance generation it was received in; a message from before a revocation is
    /// dropped (whoever owns the partition now reads it again).
    pub generation: u64,
}

impl Consumed {
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }
}

/// The consumer's context: tracks rebalances for the runner and reports broker trouble and lag.
pub(crate) struct SinkContext {
    group: String,
    /// Stored next offsets per owned partition (used by the SQL runner; cleared on revoke).
    pub cache: Mutex<OffsetCache>,
    generation: AtomicU64,
}

impl SinkContext {
    fn new(group: &str) -> Self {
        SinkContext {
            group: group.to_string(),
            cache: Mutex::new(OffsetCache::default()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn cache(&self) -> std::sync::MutexGuard<'_, OffsetCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", group = %self.group, fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", group = %self.group, fac, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", group = %self.group, fac, "{message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            // Partition -1 is librdkafka's internal "unassigned" partition; -1 lag means unknown.
            let lag: i64 = t
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .sum();
            metrics::gauge!(m::CONSUMER_LAG_MESSAGES, "stage" => "sink", "topic" => topic.clone(), "consumer_group" => self.group.clone())
                .set(lag as f64);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => "sink").increment(1);
        tracing::warn!(group = %self.group, error = %error, reason, "broker error");
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut cache = self.cache();
            for e in tpl.elements() {
                cache.revoke(e.topic(), e.partition());
            }
            drop(cache);
            self.generation.fetch_add(1, Ordering::SeqCst);
            tracing::info!(group = %self.group, partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Error(e) => {
                metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => "sink").increment(1);
                tracing::warn!(group = %self.group, error = %e, "rebalance error");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // Kafka's committed offset is only a hint (the database or the ledger is the truth);
        // a failed commit means some redelivery after a restart, nothing more.
        if let Err(e) = result {
            tracing::debug!(group = %self.group, error = %e, "offset commit failed");
        }
    }
}

pub(crate) type SinkConsumer = StreamConsumer<SinkContext>;

/// Applies `RunnerOptions::kafka_config`; librdkafka's own log lines reach `tracing` at
/// warning level, or debug when a `debug` property asks for them.
fn with_overrides(mut config: ClientConfig, options: &RunnerOptions) -> ClientConfig {
    for (k, v) in &options.kafka_config {
        config.set(k, v);
    }
    let level = if config.get("debug").is_some() {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    };
    config.set_log_level(level);
    config
}

pub(crate) fn consumer(
    bootstrap: &str,
    group: &str,
    options: &RunnerOptions,
) -> Result<SinkConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", format!("hub-sink/{group}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // A read_committed fetch parked at the end of a partition is not woken when a
        // transaction commits, only when new bytes arrive or this wait expires: the default
        // 500 ms would be added to the latency of every record written by the transform.
        .set("fetch.wait.max.ms", "25")
        .set("socket.nagle.disable", "true")
        .set(
            "statistics.interval.ms",
            options.stats_interval.as_millis().to_string(),
        );
    Ok(with_overrides(config, options).create_with_context(SinkContext::new(group))?)
}

pub(crate) fn dlq_producer(bootstrap: &str, options: &RunnerOptions) -> Result<FutureProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "hub-sink/dlq")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000");
    let mut config = with_overrides(config, options);
    // Consumer-only properties would make the producer warn; drop the ones we know of.
    for key in [
        "group.instance.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
    ] {
        config.remove(key);
    }
    Ok(config.create()?)
}

/// Subscribes to the canonical topics of `entities`.
pub(crate) fn subscribe(
    consumer: &SinkConsumer,
    topics: &Topics,
    entities: &[Entity],
) -> Result<()> {
    let names: Vec<String> = entities.iter().map(|e| topics.canonical(*e)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    Ok(())
}

/// Closes the clients off the async executor: closing a consumer leaves its group and blocks
/// until librdkafka is done.
pub(crate) async fn close(consumer: SinkConsumer, producer: FutureProducer) {
    let closing = tokio::task::spawn_blocking(move || {
        drop(consumer);
        drop(producer);
    });
    if closing.await.is_err() {
        tracing::warn!("closing the Kafka clients panicked");
    }
}

/// Receives a batch: waits for a first message (or shutdown), then takes what arrives within
/// `linger`, up to `max_batch` messages.
pub(crate) async fn collect(
    consumer: &SinkConsumer,
    options: &RunnerOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Consumed> {
    let mut batch = Vec::new();
    let generation = || consumer.context().generation();
    let first = tokio::select! {
        m = consumer.recv() => m.map(|m| detach(&m, generation())),
        _ = stopped(shutdown) => return batch,
    };
    match first {
        Ok(m) => batch.push(m),
        Err(e) => {
            broker_error(&e);
            // A broker error repeats until the broker is back; do not spin on it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return batch;
        }
    }
    let deadline = tokio::time::Instant::now() + options.linger;
    while batch.len() < options.max_batch {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(detach(&m, generation())),
            Ok(Err(e)) => {
                broker_error(&e);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

fn detach<M: Message>(m: &M, generation: u64) -> Consumed {
    Consumed {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        external_ids: header(m, hub_schemas::headers::EXTERNAL_IDS),
        origin: header(m, hub_schemas::headers::CONNECTOR),
        generation,
    }
}

fn header<M: Message>(m: &M, name: &str) -> Option<Vec<u8>> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.map(<[u8]>::to_vec))
    })
}

pub(crate) fn broker_error(e: &KafkaError) {
    metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => "sink").increment(1);
    tracing::warn!(error = %e, "consuming failed");
}

/// Commits `positions` to Kafka without waiting: a hint for where a restarted consumer
/// starts; never ahead of what the target (or database) holds, because it follows it.
pub(crate) fn commit(consumer: &SinkConsumer, positions: &[Position]) {
    if positions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for p in positions {
        if tpl
            .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
            .is_err()
        {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "offset commit not queued");
    }
}

/// A dead letter for one consumed message, to `hub.dlq.sink`.
pub(crate) struct DeadLetterOut<'a> {
    pub message: &'a Consumed,
    pub tenant: Option<&'a str>,
    pub entity: Option<Entity>,
    /// `permanent`, `decode`, ...
    pub error_class: &'a str,
    pub reason: String,
    pub attempts: i32,
}

/// Produces a dead letter and waits for the broker's acknowledgement: the offset past the
/// message may only be committed once its dead letter is safe.
pub(crate) async fn dead_letter(
    producer: &FutureProducer,
    codec: &Codec,
    names: &Topics,
    out: DeadLetterOut<'_>,
) -> Result<()> {
    let dlq = names.dlq_sink();
    let dl = DeadLetter {
        stage: "sink".into(),
        error_class: out.error_class.into(),
        reason: out.reason,
        errors: Vec::new(),
        attempts: out.attempts,
        tenant: out.tenant.map(str::to_string),
        original_topic: out.message.topic.clone(),
        original_partition: out.message.partition,
        original_offset: out.message.offset,
        original_key: out.message.key_text(),
        original_value: out.message.value.clone().unwrap_or_default(),
        failed_at: now_ms(),
    };
    let bytes = codec.encode_dead_letter(&dlq, &dl).await?;
    let mut hdrs = OwnedHeaders::new();
    if let Some(t) = out.tenant {
        hdrs = hdrs.insert(Header {
            key: headers::TENANT,
            value: Some(t),
        });
    }
    if let Some(e) = out.entity {
        hdrs = hdrs.insert(Header {
            key: headers::ENTITY,
            value: Some(e.name()),
        });
    }
    let key = out.message.key.as_deref().unwrap_or_default();
    let record = FutureRecord::to(&dlq)
        .payload(&bytes)
        .key(key)
        .headers(hdrs);
    producer
        .send(record, Timeout::After(Duration::from_secs(60)))
        .await
        .map_err(|(e, _)| SinkError::Kafka(e))?;
    tracing::info!(
        tenant = out.tenant.unwrap_or("-"),
        entity = out.entity.map_or("-", |e| e.name()),
        class = out.error_class,
        "record dead-lettered"
    );
    Ok(())
}

/// Counts outcomes per label set and emits them once per batch.
#[derive(Default)]
pub(crate) struct OutcomeCounts(HashMap<(String, Entity, String, &'static str), u64>);

impl OutcomeCounts {
    pub fn add(&mut self, tenant: &str, entity: Entity, target: &str, outcome: &'static str) {
        *self
            .0
            .entry((tenant.to_string(), entity, target.to_string(), outcome))
            .or_insert(0) += 1;
    }

    pub fn emit(self) {
        for ((tenant, entity, target, outcome), n) in self.0 {
            metrics::counter!(m::SINK_RECORDS_TOTAL, "tenant" => tenant, "entity" => entity.name(), "target" => target, "outcome" => outcome)
                .increment(n);
        }
    }

    pub fn summary(&self) -> HashMap<&'static str, u64> {
        let mut out = HashMap::new();
        for ((_, _, _, outcome), n) in &self.0 {
            *out.entry(*outcome).or_insert(0) += n;
        }
        out
    }
}

/// Records end-to-end and pipeline latency of a record the target now holds.
pub(crate) fn record_latency(
    entity: Entity,
    target: &str,
    source_updated_at: i64,
    received_at: i64,
) {
    let now = now_ms();
    let secs = |from: i64| ((now - from).max(0) as f64) / 1000.0;
    metrics::histogram!(m::E2E_LATENCY_SECONDS, "entity" => entity.name(), "target" => target.to_string())
        .record(secs(source_updated_at));
    metrics::histogram!(m::PIPELINE_LATENCY_SECONDS, "entity" => entity.name(), "target" => target.to_string())
        .record(secs(received_at));
}

/// Waits out a retry delay; false if shutdown came first.
pub(crate) async fn pause(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if is_stopped(shutdown) {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stopped(shutdown) => false,
    }
}

/// Retries of a failing batch in place: exponential, up to 30 s apart, without end (the
/// batch is not dropped; shutdown ends the wait).
pub(crate) fn batch_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .build()
}
