//! The scheduler loop each control node runs: it fires due schedules, starts jobs, keeps
//! their leases, and reports them live.
//!
//! Every [`SchedulerConfig::tick`] a [`Scheduler`]:
//! 1. calls [`ControlStore::claim_due`] — the compare-and-set there makes each scheduled slot
//!    one job however many nodes tick at once;
//! 2. reads [`ControlStore::runnable_jobs`] (pending jobs, "sync now" ones included, and
//!    running ones whose node stopped heartbeating) and tries [`ControlStore::start_job`] on
//!    each until it runs [`SchedulerConfig::max_running`] jobs; of nodes racing for one job,
//!    exactly one gets its lease;
//! 3. runs each job it started on its [`JobRunner`] in a task of its own, heartbeating every
//!    third of the lease with the progress the runner reports. A heartbeat answered
//!    "cancelled" tells the runner to stop ([`JobControl::cancelled`]); one answered "taken
//!    over" (this node was too slow and lost the lease) drops the run without writing
//!    anything; otherwise the run ends with [`ControlStore::finish_job`].
//!
//! Each step publishes a [`SyncEvent`] on the node's [`EventBus`]: `sync_started`,
//! `sync_progress` (each heartbeat), `sync_completed`, then `sync_metrics`.
//!
//! Leases are compared with each node's own clock, so the nodes' clocks must agree to well
//! within the lease (30 s by default; NTP keeps them within milliseconds). A node whose clock
//! ran a lease ahead would take over jobs that are still alive — the run would then happen
//! twice, which a sync from a cursor tolerates, but which the lease exists to avoid.
//!
//! A node without a runner (one that does not run the ingest role) only claims slots: the
//! jobs it creates wait for a node that can run them. A node that stops leaves its running
//! jobs to their leases: another node takes them over when they lapse, and the runner starts
//! again from the connector's saved cursor, so a takeover repeats at most the work since the
//! last cursor.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{ControlError, Result};
use crate::events::{EventBus, SyncEvent};
use crate::store::ControlStore;
use crate::store::jobs::{HeartbeatOutcome, JobProgress, JobStatus, SyncJob};

/// Jobs a node started, by final status: `hub_control_jobs_total{status}`.
pub const JOBS_TOTAL: &str = "hub_control_jobs_total";
/// Jobs this node is running now: `hub_control_jobs_running`.
pub const JOBS_RUNNING: &str = "hub_control_jobs_running";
/// Scheduled slots this node claimed: `hub_control_schedule_claims_total{node}`.
pub const CLAIMS_TOTAL: &str = "hub_control_schedule_claims_total";

/// How a node schedules.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This node's name, recorded as claimer and lease holder.
    pub node: String,
    /// Time between two rounds of claiming and starting.
    pub tick: Duration,
    /// How long a lease lasts without a heartbeat; heartbeats come every third of it.
    pub lease: Duration,
    /// Most jobs this node runs at once.
    pub max_running: usize,
}

impl SchedulerConfig {
    /// Defaults for `node`: a 1 s tick, a 30 s lease, 4 jobs at once.
    pub fn new(node: impl Into<String>) -> Self {
        SchedulerConfig {
            node: node.into(),
            tick: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            max_running: 4,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOutcome {
    /// The final figures.
    pub progress: JobProgress,
    /// Why it failed; `None` when it completed. Classified and free of personal data.
    pub error: Option<String>,
}

/// The future a [`JobRunner`] returns.
pub type RunFuture = Pin<Box<dyn Future<Output = JobOutcome> + Send>>;

/// Does the work of a sync job (the hub's ingest role: one pass of the connector's poller).
pub trait JobRunner: Send + Sync + 'static {
    /// Runs `job`, reporting progress and watching for cancellation through `control`.
    fn run(&self, job: SyncJob, control: JobControl) -> RunFuture;
}

/// A running job's line to its scheduler.
#[derive(Debug, Clone)]
pub struct JobControl {
    progress: Arc<Mutex<JobProgress>>,
    cancelled: watch::Receiver<bool>,
}

impl JobControl {
    /// Records how far the job is; the next heartbeat stores and publishes it.
    pub fn report(&self, progress: JobProgress) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = progress;
    }

    /// The progress last reported.
    pub fn progress(&self) -> JobProgress {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once someone cancelled the job.
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Resolves when someone cancels the job (never, if nobody does).
    pub async fn cancelled(&mut self) {
        while !*self.cancelled.borrow() {
            if self.cancelled.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A control for tests of runners: never cancelled.
    #[doc(hidden)]
    pub fn detached() -> JobControl {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        JobControl {
            progress: Arc::default(),
            cancelled: rx,
        }
    }
}

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Jobs this node created for due slots.
    pub claimed: Vec<SyncJob>,
    /// Jobs this node took a lease on and started.
    pub started: Vec<SyncJob>,
}

/// One node's scheduler.
#[derive(Clone)]
pub struct Scheduler {
    store: ControlStore,
    config: SchedulerConfig,
    runner: Option<Arc<dyn JobRunner>>,
    events: Arc<dyn EventBus>,
    running: Arc<Mutex<HashSet<String>>>,
    idle: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .field("runs_jobs", &self.runner.is_some())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler over `store`; with `runner` it also runs jobs, without it only claims.
    pub fn new(
        store: ControlStore,
        config: SchedulerConfig,
        runner: Option<Arc<dyn JobRunner>>,
        events: Arc<dyn EventBus>,
    ) -> Self {
        Scheduler {
            store,
            config,
            runner,
            events,
            running: Arc::default(),
            idle: Arc::default(),
        }
    }

    /// Ticks until `shutdown` turns true. Store errors are logged and retried next tick.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        info!(node = %self.config.node, runs_jobs = self.runner.is_some(), "scheduler started");
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.tick().await {
                warn!(node = %self.config.node, error = %e, "scheduler round failed; retrying next tick");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.tick) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One round: claim due slots, then start what this node may run.
    pub async fn tick(&self) -> Result<TickReport> {
        let now = self.store.now_ms();
        let claimed = self.store.claim_due(&self.config.node, now).await?;
        if !claimed.is_empty() {
            metrics::counter!(CLAIMS_TOTAL, "node" => self.config.node.clone())
                .increment(claimed.len() as u64);
            debug!(node = %self.config.node, jobs = claimed.len(), "claimed due schedule slots");
        }
        let mut started = Vec::new();
        let Some(runner) = self.runner.clone() else {
            return Ok(TickReport { claimed, started });
        };
        let free = self.config.max_running.saturating_sub(self.running_count());
        if free == 0 {
            return Ok(TickReport { claimed, started });
        }
        // Read a few more than there is room for: other nodes may win some of them.
        let candidates = self
            .store
            .runnable_jobs(now, (free * 4).max(16) as i64)
            .await?;
        for job in candidates {
            if started.len() >= free {
                break;
            }
            if self.is_running(&job.id) {
                continue;
            }
            match self
                .store
                .start_job(&job.id, &self.config.node, self.lease_ms())
                .await
            {
                Ok(job) => {
                    self.spawn_run(runner.clone(), job.clone());
                    started.push(job);
                }
                Err(ControlError::JobUnavailable { .. }) => {} // another node was first
                Err(e) => return Err(e),
            }
        }
        Ok(TickReport { claimed, started })
    }

    /// How many jobs this node is running now.
    pub fn running_count(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Resolves once this node runs no job (tests wait on it instead of sleeping).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running_count() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn lease_ms(&self) -> i64 {
        self.config.lease.as_millis().clamp(1, i64::MAX as u128) as i64
    }

    fn spawn_run(&self, runner: Arc<dyn JobRunner>, job: SyncJob) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone());
        metrics::gauge!(JOBS_RUNNING).set(self.running_count() as f64);
        let this = self.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            this.execute(runner, job).await;
            this.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            metrics::gauge!(JOBS_RUNNING).set(this.running_count() as f64);
            this.idle.notify_waiters();
        });
    }

    async fn execute(&self, runner: Arc<dyn JobRunner>, job: SyncJob) {
        let node = self.config.node.clone();
        let started_ms = self.store.now_ms();
        self.events.publish(SyncEvent::SyncStarted {
            tenant: job.tenant.to_string(),
            connector: job.connector.clone(),
            job_id: job.id.clone(),
            trigger: job.trigger.as_str().to_string(),
            node: node.clone(),
            attempt: job.attempts,
            at_ms: started_ms,
        });
        info!(job = %job.id, tenant = %job.tenant, connector = %job.connector, "sync job started");
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let control = JobControl {
            progress: Arc::default(),
            cancelled: cancel_rx,
        };
        let fut = runner.run(job.clone(), control.clone());
        tokio::pin!(fut);
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut cancelled = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut fut => break outcome,
                _ = heartbeat.tick(), if !cancelled => {
                    let progress = control.progress();
                    match self.store.heartbeat_job(&job.id, &node, self.lease_ms(), &progress).await {
                        Ok(HeartbeatOutcome::Continue) => self.events.publish(SyncEvent::SyncProgress {
                            tenant: job.tenant.to_string(),
                            connector: job.connector.clone(),
                            job_id: job.id.clone(),
                            progress_pct: progress.progress_pct,
                            records_processed: progress.records_processed,
                            records_failed: progress.records_failed,
                            records_dead_lettered: progress.records_dead_lettered,
                            at_ms: self.store.now_ms(),
                        }),
                        Ok(HeartbeatOutcome::Cancelled) => {
                            info!(job = %job.id, "sync job cancelled; asking its run to stop");
                            cancelled = true;
                            let _ = cancel_tx.send(true);
                        }
                        Err(ControlError::JobUnavailable { .. }) => {
                            warn!(job = %job.id, "lost the job's lease to another node; dropping this run");
                            return;
                        }
                        // The store is unreachable: keep running; the lease may lapse and
                        // another node take over, which the next heartbeat will tell.
                        Err(e) => warn!(job = %job.id, error = %e, "heartbeat failed"),
                    }
                }
            }
        };
        let job = match self
            .store
            .finish_job(&job.id, &node, &outcome.progress, outcome.error.as_deref())
            .await
        {
            Ok(j) => j,
            Err(e) => {
                warn!(job = %job.id, error = %e, "the job's end was not recorded");
                return;
            }
        };
        let ended_ms = job.finished_at_ms.unwrap_or_else(|| self.store.now_ms());
        metrics::counter!(JOBS_TOTAL, "status" => job.status.as_str()).increment(1);
        info!(job = %job.id, status = %job.status, records = job.records_processed, "sync job ended");
        self.events.publish(SyncEvent::SyncCompleted {
            tenant: job.tenant.to_string(),
            connector: job.connector.clone(),
            job_id: job.id.clone(),
            status: job.status.as_str().to_string(),
            records_processed: job.records_processed,
            records_failed: job.records_failed,
            records_dead_lettered: job.records_dead_lettered,
            error: job.error.clone(),
            at_ms: ended_ms,
        });
        let duration_ms = (ended_ms - started_ms).max(0);
        let failed = job.records_failed + job.records_dead_lettered;
        let all = job.records_processed + failed;
        self.events.publish(SyncEvent::SyncMetrics {
            tenant: job.tenant.to_string(),
            connector: job.connector.clone(),
            job_id: job.id.clone(),
            duration_ms,
            records_per_second: if duration_ms > 0 {
                job.records_processed as f64 * 1000.0 / duration_ms as f64
            } else {
                0.0
            },
            failure_rate: if all > 0 {
                failed as f64 / all as f64
            } else {
                0.0
            },
            at_ms: ended_ms,
        });
        debug_assert!(job.status != JobStatus::Running);
    }
}

#[cfg(test)]
mod tests;
