//! The seam between the HTTP edge and the broker: ingest hands a request's records to a
//! [`Publisher`] and answers only after it says every one was stored. [`crate::KafkaPublisher`]
//! is the real one; [`MemoryPublisher`] keeps records in memory for tests and dry runs.

use std::sync::Mutex;

use futures::future::BoxFuture;

/// One Kafka record, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    pub topic: String,
    pub key: String,
    /// The encoded value (Confluent wire format).
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Some records of a batch were not acknowledged by the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failed} of {total} records were not acknowledged by the broker: {reason}")]
pub struct PublishError {
    pub failed: usize,
    pub total: usize,
    /// The first failure's reason (a broker error; never record content).
    pub reason: String,
}

/// Stores records durably, or says it did not.
pub trait Publisher: Send + Sync + 'static {
    /// Sends `records` and resolves once the broker has acknowledged all of them (`Ok`), or
    /// once it is known that at least one will not be (`Err`). Records are handed to the
    /// broker in the order given, so records with the same key keep their order.
    fn publish_batch(
        &self,
        records: Vec<OutboundRecord>,
    ) -> BoxFuture<'_, Result<(), PublishError>>;
}

/// Keeps published records in memory; can be told to fail, like a broker that is down.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    records: Mutex<Vec<OutboundRecord>>,
    failing: std::sync::atomic::AtomicBool,
}

impl MemoryPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher whose every send fails, as when no broker answers.
    pub fn failing() -> Self {
        let p = Self::default();
        p.set_failing(true);
        p
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Everything published so far, in order.
    pub fn records(&self) -> Vec<OutboundRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Publisher for MemoryPublisher {
    fn publish_batch(
        &self,
        records: Vec<OutboundRecord>,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PublishError {
                    failed: records.len(),
                    total: records.len(),
                    reason: "memory publisher set to fail".into(),
                });
            }
            self.records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(records);
            Ok(())
        })
    }
}
