//! The registry's log in a compacted Kafka topic (`_schemas` by default), in Confluent's layout.
//!
//! Appends go through an idempotent producer with `acks=all` and are awaited; reads use a
//! group-less consumer (`assign`, no offsets committed) that reads from a position to the high
//! watermark. Blocking librdkafka calls run on tokio's blocking pool.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::RegistryError;
use super::log::{LogBatch, LogFuture, RawLogRecord, SchemaLog};

/// Where and how the registry keeps its log in Kafka.
#[derive(Debug, Clone)]
pub struct KafkaLogConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The topic (default `_schemas`, Confluent's name).
    pub topic: String,
    /// Replication factor when the topic is created (default 1; use 3 on a production cluster).
    pub replication_factor: i32,
    /// Create the topic (compacted, one partition) if it is missing (default true).
    pub create_topic: bool,
    /// How long one append or one catch-up may take.
    pub timeout: Duration,
    /// Extra librdkafka settings for every client (e.g. `security.protocol`, `sasl.*`).
    pub client_config: Vec<(String, String)>,
}

impl KafkaLogConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaLogConfig {
            bootstrap: bootstrap.into(),
            topic: crate::records::topics::SCHEMAS.to_owned(),
            replication_factor: 1,
            create_topic: true,
            timeout: Duration::from_secs(30),
            client_config: Vec::new(),
        }
    }

    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    pub fn replication_factor(mut self, replication_factor: i32) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn client_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_config.push((key.into(), value.into()));
        self
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c.set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in &self.client_config {
            c.set(k, v);
        }
        c
    }
}

/// The consumer and where it stands.
struct Reader {
    consumer: BaseConsumer<QuietEof>,
    /// The next offset the consumer will return, when it is assigned.
    position: Option<i64>,
}

/// A [`SchemaLog`] in a Kafka topic with one partition.
pub struct KafkaLog {
    config: KafkaLogConfig,
    producer: FutureProducer,
    reader: Arc<Mutex<Reader>>,
}

const PARTITION: i32 = 0;

fn storage(context: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("{context}: {e}"))
}

/// Whether a consumer error means the read cannot succeed (as opposed to a connection
/// event that librdkafka recovers from).
fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::MessageConsumption(code) | KafkaError::Global(code) => !matches!(
            code,
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::Resolve
        ),
        _ => true,
    }
}

/// The reader asks for end-of-partition events to know it has caught up; librdkafka also
/// reports each one through the error callback, which would log an ERROR per read.
struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(
                error,
                KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
            );
        if !eof {
            tracing::error!(%error, reason, "schema log consumer error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

impl KafkaLog {
    /// Connect, create the topic if asked and missing, and check that it is compacted.
    pub async fn open(config: KafkaLogConfig) -> Result<Self, RegistryError> {
        if config.create_topic {
            ensure_topic(&config).await?;
        }
        let producer: FutureProducer = config
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("message.timeout.ms", config.timeout.as_millis().to_string())
            .create()
            .map_err(|e| storage("creating the schema log producer", e))?;
        let consumer: BaseConsumer<QuietEof> = config
            .client()
            // librdkafka refuses `assign` without a group id ("Unknown group"), although this
            // consumer never joins the group nor commits: offsets live in the registry's state.
            .set("group.id", "hub-schema-registry")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create_with_context(QuietEof)
            .map_err(|e| storage("creating the schema log consumer", e))?;
        Ok(KafkaLog {
            config,
            producer,
            reader: Arc::new(Mutex::new(Reader {
                consumer,
                position: None,
            })),
        })
    }

    pub fn topic(&self) -> &str {
        &self.config.topic
    }
}

async fn ensure_topic(config: &KafkaLogConfig) -> Result<(), RegistryError> {
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(|e| storage("creating the schema log admin client", e))?;
    let options = AdminOptions::new()
        .operation_timeout(Some(config.timeout))
        .request_timeout(Some(config.timeout));
    let topic = NewTopic::new(
        &config.topic,
        1,
        TopicReplication::Fixed(config.replication_factor),
    )
    .set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| storage(&format!("creating topic {}", config.topic), e))?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, "schema registry: created the compacted schema topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(storage(&format!("creating topic {name}"), code)),
        }
    }
    // An existing topic that is not compacted would lose schemas to retention: say so loudly.
    if let Ok(described) = admin
        .describe_configs([&ResourceSpecifier::Topic(&config.topic)], &options)
        .await
    {
        for resource in described.into_iter().flatten() {
            let policy = resource
                .get("cleanup.policy")
                .and_then(|e| e.value.clone())
                .unwrap_or_default();
            if !policy.contains("compact") {
                tracing::error!(topic = %config.topic, %policy, "schema registry topic is not compacted: schemas will be lost to retention; set cleanup.policy=compact");
            }
        }
    }
    Ok(())
}

impl SchemaLog for KafkaLog {
    fn append(&self, record: RawLogRecord) -> LogFuture<'_, i64> {
        Box::pin(async move {
            let mut message = FutureRecord::<[u8], [u8]>::to(&self.config.topic)
                .key(&record.key)
                .partition(PARTITION);
            if let Some(value) = &record.value {
                message = message.payload(value);
            }
            match self.producer.send(message, self.config.timeout).await {
                Ok(delivery) => Ok(delivery.offset),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)) => Err(
                    RegistryError::Timeout(format!("writing to {} timed out", self.config.topic)),
                ),
                Err((e, _)) => Err(storage(&format!("writing to {}", self.config.topic), e)),
            }
        })
    }

    fn read_from(&self, position: i64) -> LogFuture<'_, LogBatch> {
        let reader = Arc::clone(&self.reader);
        let topic = self.config.topic.clone();
        let timeout = self.config.timeout;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
                read_blocking(&mut reader, &topic, position, timeout)
            })
            .await
            .map_err(|e| storage("schema log reader task", e))?
        })
    }

    fn describe(&self) -> String {
        format!("kafka:{}@{}", self.config.topic, self.config.bootstrap)
    }
}

fn read_blocking(
    reader: &mut Reader,
    topic: &str,
    position: i64,
    timeout: Duration,
) -> Result<LogBatch, RegistryError> {
    let deadline = Instant::now() + timeout;
    let (low, high) = loop {
        match reader.consumer.fetch_watermarks(topic, PARTITION, timeout) {
            Ok(w) => break w,
            // Right after the topic was created its metadata may not have spread yet.
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "schema log: watermarks not available yet");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(storage(&format!("reading the end of {topic}"), e)),
        }
    };
    let mut batch = LogBatch {
        records: Vec::new(),
        next_position: position,
    };
    if position >= high {
        return Ok(batch);
    }
    let start = position.max(low);
    if reader.position != Some(position) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, PARTITION, Offset::Offset(start))
            .map_err(|e| storage("assigning the schema log partition", e))?;
        reader
            .consumer
            .assign(&tpl)
            .map_err(|e| storage("assigning the schema log partition", e))?;
        reader.position = None;
    }
    let mut eof_seen = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            reader.position = None; // Unknown where the consumer stands: reassign next time.
            return Err(RegistryError::Timeout(format!(
                "reading {topic} from {position} to {high}: got to {}",
                batch.next_position
            )));
        }
        match reader
            .consumer
            .poll(remaining.min(Duration::from_millis(200)))
        {
            None if eof_seen => {
                // The end of the partition was reported but the consumer's position is short of
                // `high`: the tail is a gap (compacted tombstones, transaction markers). Return
                // what there is and start over from a fresh assignment next time.
                reader.position = None;
                return Ok(batch);
            }
            None => continue,
            Some(Ok(message)) => {
                let offset = message.offset();
                if offset >= batch.next_position {
                    batch.records.push((
                        offset,
                        RawLogRecord {
                            key: message.key().unwrap_or_default().to_vec(),
                            value: message.payload().map(<[u8]>::to_vec),
                        },
                    ));
                }
                batch.next_position = batch.next_position.max(offset + 1);
                if batch.next_position >= high {
                    break;
                }
            }
            // The end of the partition. It may be a stale report from an earlier read, so trust
            // it only when the consumer's own position has reached `high` (offsets may have
            // gaps: compaction, transaction markers).
            Some(Err(KafkaError::PartitionEOF(_))) => {
                eof_seen = true;
                let at = reader
                    .consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, PARTITION).map(|p| p.offset()));
                if let Some(Offset::Offset(at)) = at
                    && at >= high
                {
                    batch.next_position = batch.next_position.max(high);
                    break;
                }
            }
            // Connection trouble is reported as events that queue up while the broker is
            // away and are still delivered after it is back; librdkafka reconnects by itself,
            // so they only matter if the read cannot finish before its deadline.
            Some(Err(e)) if !is_fatal(&e) => {
                tracing::debug!(error = %e, "schema log: transient consumer event");
            }
            Some(Err(e)) => {
                reader.position = None;
                return Err(storage(&format!("reading {topic}"), e));
            }
        }
    }
    reader.position = Some(batch.next_position);
    Ok(batch)
}
