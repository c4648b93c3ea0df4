//! Targets written over an API: the [`Sink`] contract, the per-record [`WriteResult`], and
//! the retry loop around a sink (exponential backoff with jitter from `backon`, never shorter
//! than the target's `Retry-After`).
//!
//! A sink classifies its target's answers once — ok, transient, permanent — so the decision
//! to retry or dead-letter is made here and nowhere else.

pub mod vendor;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hub_topology::metrics as m;
use tokio::sync::watch;

use crate::error::Result;
use crate::record::CanonicalRecord;
use crate::shutdown::stopped;
use crate::store::SqlStore;

pub use webhook::WebhookSink;

/// What a target answered for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    /// Worth trying again (rate limit, timeout, 5xx, connection): after `retry_after` if the
    /// target said so.
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The target refused the record; trying again repeats the refusal. Goes to the DLQ.
    Permanent {
        reason: String,
    },
}

impl WriteResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, WriteResult::Ok)
    }
}

/// A target that takes canonical records over an API.
pub trait Sink: Send + Sync {
    /// The target's id in the topology: a metrics label and the ledger's key.
    fn target_id(&self) -> &str;

    /// Writes a batch; one result per record, in order. Never fails as a whole: transport
    /// errors are per-record transient results.
    fn write(&self, batch: &[CanonicalRecord]) -> impl Future<Output = Vec<WriteResult>> + Send;
}

/// How often and how long to retry transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per record, the first included. Default 8.
    pub max_attempts: usize,
    /// The first backoff delay (doubled each attempt, with jitter). Default 500 ms.
    pub min_delay: Duration,
    /// The longest backoff delay (a target's `Retry-After` may ask for longer). Default 30 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1))
            .build()
    }
}

/// The final result for one record and how many attempts it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub result: WriteResult,
    pub attempts: u32,
}

/// Writes `batch` through `sink`, retrying the records that failed transiently until they
/// succeed, fail permanently, run out of attempts, or `shutdown` is set (then the remaining
/// ones are returned as still transient). Each wait is the backoff delay or the longest
/// `Retry-After` the target gave, whichever is longer.
pub async fn write_with_retry<S: Sink>(
    sink: &S,
    batch: &[CanonicalRecord],
    policy: &RetryPolicy,
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Delivery> {
    let mut deliveries: Vec<Delivery> = vec![
        Delivery {
            result: WriteResult::Transient {
                retry_after: None,
                reason: "not attempted".into(),
            },
            attempts: 0,
        };
        batch.len()
    ];
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut delays = policy.backoff();
    while !pending.is_empty() {
        let results = if pending.len() == batch.len() {
            sink.write(batch).await
        } else {
            let retry: Vec<CanonicalRecord> = pending.iter().map(|i| batch[*i].clone()).collect();
            sink.write(&retry).await
        };
        let mut still = Vec::new();
        let mut wait: Option<Duration> = None;
        for (i, result) in pending.iter().copied().zip(results) {
            deliveries[i].attempts += 1;
            match &result {
                WriteResult::Transient { retry_after, .. } => {
                    still.push(i);
                    wait = wait.max(*retry_after);
                }
                WriteResult::Permanent { .. } => {
                    metrics::counter!(m::SINK_ERRORS_TOTAL, "target" => sink.target_id().to_string(), "outcome" => "permanent")
                        .increment(1);
                }
                WriteResult::Ok => {}
            }
            deliveries[i].result = result;
        }
        if still.is_empty() {
            break;
        }
        metrics::counter!(m::SINK_ERRORS_TOTAL, "target" => sink.target_id().to_string(), "outcome" => "transient")
            .increment(1);
        let Some(delay) = delays.next() else {
            break;
        };
        let delay = delay.max(wait.unwrap_or_default());
        tracing::debug!(
            target_id = sink.target_id(),
            records = still.len(),
            delay_ms = delay.as_millis() as u64,
            "transient failure; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(shutdown) => break,
        }
        pending = still;
    }
    deliveries
}

/// What became of one record handed to [`deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target acknowledged it; the ledger now says so.
    Written,
    /// The ledger says the target holds this content or a newer version: not sent.
    SkippedReplay,
    /// The target refused it for good: it belongs in the dead-letter topic.
    Refused { reason: String, attempts: u32 },
    /// Still failing transiently after every attempt (or shutdown came): not acknowledged.
    Pending,
}

/// One pass of an API sink over a batch, without Kafka: skip what the write ledger says the
/// target holds, write the rest with retries, record what the target acknowledged in the
/// ledger. A replayed batch writes nothing new.
pub async fn deliver<S: Sink>(
    store: &SqlStore,
    sink: &S,
    records: &[CanonicalRecord],
    policy: &RetryPolicy,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Vec<DeliveryOutcome>> {
    let pending = store.ledger_pending(sink.target_id(), records).await?;
    let mut outcomes = vec![DeliveryOutcome::SkippedReplay; records.len()];
    let to_send: Vec<usize> = (0..records.len()).filter(|i| pending[*i]).collect();
    if to_send.is_empty() {
        return Ok(outcomes);
    }
    let sending: Vec<CanonicalRecord> = if to_send.len() == records.len() {
        records.to_vec()
    } else {
        to_send.iter().map(|i| records[*i].clone()).collect()
    };
    let deliveries = write_with_retry(sink, &sending, policy, shutdown).await;
    let mut acknowledged: Vec<&CanonicalRecord> = Vec::new();
    for (i, d) in to_send.into_iter().zip(deliveries) {
        outcomes[i] = match d.result {
            WriteResult::Ok => {
                acknowledged.push(&records[i]);
                DeliveryOutcome::Written
            }
            WriteResult::Permanent { reason } => DeliveryOutcome::Refused {
                reason,
                attempts: d.attempts,
            },
            WriteResult::Transient { .. } => DeliveryOutcome::Pending,
        };
    }
    store.ledger_record(sink.target_id(), &acknowledged).await?;
    Ok(outcomes)
}
