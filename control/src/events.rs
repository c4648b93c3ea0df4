//! Live sync events: what the `/api/v1/ws/sync-monitor` WebSocket sends.
//!
//! A node's [`crate::scheduler::Scheduler`] publishes a [`SyncEvent`] when a job starts, as it
//! progresses, when it ends, and the job's figures ([`SyncEvent::SyncMetrics`]) right after.
//! Events go through an [`EventBus`]: in one process, [`LocalBus`] (a broadcast channel); in a
//! cluster, the node's bus publishes to the Kafka topic `<ns>.sync-events` and feeds every
//! event it reads there — its own and other nodes' — into its local channel, so a client
//! connected to any node sees jobs running on any node (see `hub::events`).
//!
//! Events carry ids, counts and timings only: never a record's content, so never personal
//! data.

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// How many events a slow WebSocket client may fall behind before it misses some (it is
/// then told how many, and carries on).
pub const CHANNEL_CAPACITY: usize = 4096;

/// One live event about a sync job. Serialized with a `type` tag: `sync_started`,
/// `sync_progress`, `sync_completed`, `sync_metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SyncEvent {
    /// A node took a job's lease and started it.
    SyncStarted {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
        /// The job's id.
        job_id: String,
        /// `schedule` or `manual`.
        trigger: String,
        /// The node running it.
        node: String,
        /// How many times a node has started it (more than 1 after a takeover).
        attempt: i64,
        /// When, epoch milliseconds.
        at_ms: i64,
    },
    /// A running job's progress, sent with each heartbeat.
    SyncProgress {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
        /// The job's id.
        job_id: String,
        /// 0 to 100, when the job knows its total; 0 otherwise.
        progress_pct: f64,
        /// Records synced so far.
        records_processed: i64,
        /// Records failed so far.
        records_failed: i64,
        /// Records dead-lettered so far.
        records_dead_lettered: i64,
        /// When, epoch milliseconds.
        at_ms: i64,
    },
    /// A job ended.
    SyncCompleted {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
        /// The job's id.
        job_id: String,
        /// `completed`, `failed` or `cancelled`.
        status: String,
        /// Records synced.
        records_processed: i64,
        /// Records failed.
        records_failed: i64,
        /// Records dead-lettered.
        records_dead_lettered: i64,
        /// Why it failed (classified, free of personal data).
        error: Option<String>,
        /// When, epoch milliseconds.
        at_ms: i64,
    },
    /// A finished job's figures.
    SyncMetrics {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
        /// The job's id.
        job_id: String,
        /// From start to end, milliseconds.
        duration_ms: i64,
        /// Records synced per second of the run.
        records_per_second: f64,
        /// Failed and dead-lettered records as a share of all records, 0 to 1.
        failure_rate: f64,
        /// When, epoch milliseconds.
        at_ms: i64,
    },
}

impl SyncEvent {
    /// The tenant the event belongs to: only callers who may see that tenant receive it.
    pub fn tenant(&self) -> &str {
        match self {
            SyncEvent::SyncStarted { tenant, .. }
            | SyncEvent::SyncProgress { tenant, .. }
            | SyncEvent::SyncCompleted { tenant, .. }
            | SyncEvent::SyncMetrics { tenant, .. } => tenant,
        }
    }

    /// The job the event is about.
    pub fn job_id(&self) -> &str {
        match self {
            SyncEvent::SyncStarted { job_id, .. }
            | SyncEvent::SyncProgress { job_id, .. }
            | SyncEvent::SyncCompleted { job_id, .. }
            | SyncEvent::SyncMetrics { job_id, .. } => job_id,
        }
    }

    /// The `type` tag: `sync_started`, `sync_progress`, `sync_completed`, `sync_metrics`.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncEvent::SyncStarted { .. } => "sync_started",
            SyncEvent::SyncProgress { .. } => "sync_progress",
            SyncEvent::SyncCompleted { .. } => "sync_completed",
            SyncEvent::SyncMetrics { .. } => "sync_metrics",
        }
    }
}

/// Where sync events are published and where WebSocket clients subscribe.
pub trait EventBus: Send + Sync + fmt::Debug {
    /// Publishes an event (never blocks; a bus that cannot deliver logs and drops it — live
    /// events are a view, the job rows in the store are the record).
    fn publish(&self, event: SyncEvent);

    /// A receiver of every event published from now on, in this process and (for a cluster
    /// bus) on every node.
    fn subscribe(&self) -> broadcast::Receiver<SyncEvent>;
}

/// An in-process bus: what one node publishes, its own clients see.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<SyncEvent>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus {
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

impl LocalBus {
    /// Hands an event to this process's subscribers (a cluster bus calls it for every event
    /// it reads from the shared topic).
    pub fn deliver(&self, event: SyncEvent) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(event);
    }

    /// How many subscribers are listening (connected feeds, plus a cluster bus's relay).
    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl EventBus for LocalBus {
    fn publish(&self, event: SyncEvent) {
        self.deliver(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<SyncEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_type_tag() {
        let e = SyncEvent::SyncProgress {
            tenant: "t1".into(),
            connector: "sf".into(),
            job_id: "j".into(),
            progress_pct: 50.0,
            records_processed: 10,
            records_failed: 1,
            records_dead_lettered: 0,
            at_ms: 5,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "sync_progress");
        assert_eq!(v["tenant"], "t1");
        assert_eq!(e.kind(), "sync_progress");
        let back: SyncEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[tokio::test]
    async fn a_local_bus_delivers_to_every_subscriber() {
        let bus = LocalBus::default();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(SyncEvent::SyncMetrics {
            tenant: "t".into(),
            connector: "c".into(),
            job_id: "j".into(),
            duration_ms: 1,
            records_per_second: 2.0,
            failure_rate: 0.0,
            at_ms: 3,
        });
        assert_eq!(a.recv().await.unwrap().job_id(), "j");
        assert_eq!(b.recv().await.unwrap().tenant(), "t");
    }
}
