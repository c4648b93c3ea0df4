//! The real [`Publisher`]: an idempotent librdkafka producer with `acks=all`.
//!
//! Enqueueing (`send_result`) never blocks; each record's delivery report arrives on its own
//! future and the batch resolves when all have. A dead broker surfaces as delivery failures
//! after `message.timeout.ms`, which is what turns it into a timely `503` at the edge.

use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::publisher::{OutboundRecord, PublishError, Publisher};

/// How to reach the broker. Built by the `hub` binary from the topology's runtime section.
#[derive(Debug, Clone)]
pub struct KafkaPublisherConfig {
    /// Kafka bootstrap servers (`runtime.kafka_bootstrap`).
    pub bootstrap_servers: String,
    /// How long librdkafka may try to deliver one record before it reports failure; bounds how
    /// long a webhook waits when the broker is down. Default 10 000.
    pub message_timeout_ms: u64,
    /// Extra librdkafka settings (e.g. `security.protocol`, `sasl.*`), applied last.
    pub client_options: Vec<(String, String)>,
}

impl KafkaPublisherConfig {
    pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 10_000;

    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaPublisherConfig {
            bootstrap_servers: bootstrap_servers.into(),
            message_timeout_ms: Self::DEFAULT_MESSAGE_TIMEOUT_MS,
            client_options: Vec::new(),
        }
    }

    pub fn message_timeout_ms(mut self, ms: u64) -> Self {
        self.message_timeout_ms = ms;
        self
    }

    pub fn client_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_options.push((key.into(), value.into()));
        self
    }

    /// The librdkafka settings this config stands for.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "hub-ingest")
            // What we answered 202 for must survive a broker loss, and a retried send must not
            // duplicate or reorder a key's records.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // Records of one webhook go out together; 2 ms costs little latency.
            .set("linger.ms", "2")
            // No compression: lz4/zstd are not guaranteed in this build's librdkafka (the
            // workspace enables only `libz`), and raw payloads are small.
            .set("message.timeout.ms", self.message_timeout_ms.to_string());
        for (k, v) in &self.client_options {
            c.set(k, v);
        }
        c
    }

    /// Creates the producer. Does not touch the network: librdkafka connects lazily.
    pub fn build(&self) -> Result<KafkaPublisher, KafkaError> {
        Ok(KafkaPublisher {
            producer: self.client_config().create()?,
            queue_timeout: Duration::from_millis(self.message_timeout_ms),
        })
    }
}

/// Publishes through a shared idempotent [`FutureProducer`].
pub struct KafkaPublisher {
    producer: FutureProducer,
    /// How long to wait for room when librdkafka's local queue is full.
    queue_timeout: Duration,
}

impl KafkaPublisher {
    /// A publisher with the default settings, `message_timeout_ms` aside.
    pub fn new(bootstrap_servers: &str, message_timeout_ms: u64) -> Result<Self, KafkaError> {
        KafkaPublisherConfig::new(bootstrap_servers)
            .message_timeout_ms(message_timeout_ms)
            .build()
    }

    /// Hands one record to librdkafka, waiting (off-thread, by sleeping) while its queue is full.
    async fn enqueue(&self, r: &OutboundRecord) -> Result<DeliveryFuture, KafkaError> {
        let started = Instant::now();
        loop {
            let headers = r.headers.iter().fold(
                OwnedHeaders::new_with_capacity(r.headers.len()),
                |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(value.as_str()),
                    })
                },
            );
            let record = FutureRecord::to(&r.topic)
                .key(r.key.as_str())
                .payload(r.payload.as_slice())
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if started.elapsed() < self.queue_timeout =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

impl Publisher for KafkaPublisher {
    fn publish_batch(
        &self,
        records: Vec<OutboundRecord>,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let total = records.len();
            // Enqueue strictly in order (a key's records must stay ordered), then await every
            // delivery report concurrently.
            let mut deliveries = Vec::with_capacity(total);
            for r in &records {
                match self.enqueue(r).await {
                    Ok(d) => deliveries.push(d),
                    Err(e) => {
                        return Err(PublishError {
                            failed: total - deliveries.len(),
                            total,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            let mut failed = 0;
            let mut reason = None;
            for outcome in join_all(deliveries).await {
                let error = match outcome {
                    Ok(Ok(_)) => continue,
                    Ok(Err((e, _message))) => e.to_string(),
                    Err(_canceled) => "the producer dropped the delivery report".to_string(),
                };
                failed += 1;
                reason.get_or_insert(error);
            }
            match reason {
                None => Ok(()),
                Some(reason) => Err(PublishError {
                    failed,
                    total,
                    reason,
                }),
            }
        })
    }
}

/// Reads a compacted topic of JSON values from the beginning to its end as of now: key →
/// latest value (a tombstone removes the key). Fails after `timeout`.
pub(crate) fn read_table(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, serde_json::Value>, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "hub-table-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > 0 {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
            ends.push((*p, high));
        }
    }
    let mut table = std::collections::HashMap::new();
    if ends.is_empty() {
        return Ok(table);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut at: std::collections::HashMap<i32, i64> = Default::default();
    while ends
        .iter()
        .any(|(p, high)| at.get(p).copied().unwrap_or(0) < *high)
    {
        if Instant::now() > deadline {
            return Err(KafkaError::Global(RDKafkaErrorCode::OperationTimedOut));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at.insert(m.partition(), m.offset() + 1);
                let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                    continue;
                };
                match m.payload().and_then(|v| serde_json::from_slice(v).ok()) {
                    Some(v) => {
                        table.insert(key, v);
                    }
                    None => {
                        table.remove(&key);
                    }
                }
            }
            Some(Err(e)) => return Err(e),
            None => {
                // The position says when the end is reached past offsets compaction removed.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            let seen = at.entry(e.partition()).or_insert(0);
                            *seen = (*seen).max(o);
                        }
                    }
                }
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_is_idempotent_with_acks_all_and_the_configured_timeout() {
        let c = KafkaPublisherConfig::new("broker:9092")
            .message_timeout_ms(2500)
            .client_option("security.protocol", "ssl")
            .client_config();
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("linger.ms"), Some("2"));
        assert_eq!(c.get("message.timeout.ms"), Some("2500"));
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("compression.type"), None);
        assert_eq!(
            KafkaPublisherConfig::new("b").message_timeout_ms,
            KafkaPublisherConfig::DEFAULT_MESSAGE_TIMEOUT_MS
        );
    }
}
