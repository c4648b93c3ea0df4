//! Sync jobs and their schedules, safe with several control nodes on one PostgreSQL.
//!
//! A connector's [`Schedule`] says how often it syncs ([`Frequency`]) and when it is next due.
//! [`ControlStore::claim_due`] turns every due schedule into exactly one pending job for that
//! slot: it moves `next_due_ms` on with a compare-and-set (`UPDATE … WHERE next_due_ms = <the
//! value read>`), so when two nodes race only one update matches, and the job insert in the
//! same transaction is backed by `UNIQUE (tenant_id, connector, slot_ms)`. Slots missed while
//! no node was claiming (an outage) coalesce into one job for the oldest of them: a sync
//! resumes from its cursor, so one job does the work of all of them.
//!
//! A job runs under a lease: [`ControlStore::start_job`] takes it (a pending job, or a running
//! one whose lease has lapsed — its node died), [`ControlStore::heartbeat_job`] extends it and
//! records progress, [`ControlStore::finish_job`] ends it. Every step checks the lease holder,
//! so a node that lost its job (cancelled, or taken over) is told
//! ([`ControlError::JobUnavailable`], [`HeartbeatOutcome::Cancelled`]) instead of overwriting
//! the new holder's state.

use std::fmt;
use std::str::FromStr;

use crate::auth::TenantId;
use crate::error::{ControlError, Result};

use super::{ControlStore, in_tx, on_pool};

/// How often a connector syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// Every hour.
    Hourly,
    /// Every 24 hours.
    Daily,
    /// Every 7 days.
    Weekly,
    /// Only when someone presses "sync now".
    Manual,
    /// Continuously (webhooks, streams): no scheduled jobs.
    RealTime,
}

impl Frequency {
    /// The name stored and shown: `hourly`, `daily`, `weekly`, `manual`, `real-time`.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Hourly => "hourly",
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Manual => "manual",
            Frequency::RealTime => "real-time",
        }
    }

    /// Time between scheduled jobs; `None` for manual and real-time, which never fall due.
    pub fn interval_ms(self) -> Option<i64> {
        const HOUR_MS: i64 = 3600 * 1000;
        match self {
            Frequency::Hourly => Some(HOUR_MS),
            Frequency::Daily => Some(24 * HOUR_MS),
            Frequency::Weekly => Some(7 * 24 * HOUR_MS),
            Frequency::Manual | Frequency::RealTime => None,
        }
    }
}

impl FromStr for Frequency {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "hourly" => Frequency::Hourly,
            "daily" => Frequency::Daily,
            "weekly" => Frequency::Weekly,
            "manual" => Frequency::Manual,
            "real-time" => Frequency::RealTime,
            _ => {
                return Err(ControlError::invalid(
                    "frequency",
                    "must be hourly, daily, weekly, manual or real-time",
                ));
            }
        })
    }
}

/// What made a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTrigger {
    /// A schedule's slot fell due.
    Schedule,
    /// Someone pressed "sync now".
    Manual,
}

impl JobTrigger {
    /// The name stored: `schedule` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobTrigger::Schedule => "schedule",
            JobTrigger::Manual => "manual",
        }
    }
}

impl FromStr for JobTrigger {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "schedule" => Ok(JobTrigger::Schedule),
            "manual" => Ok(JobTrigger::Manual),
            _ => Err(ControlError::invalid(
                "trigger",
                "must be schedule or manual",
            )),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a node to start it.
    Pending,
    /// A node holds its lease and is running it.
    Running,
    /// Finished without error.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped by a person before it finished.
    Cancelled,
}

impl JobStatus {
    /// The name stored: `pending`, `running`, `completed`, `failed`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over (completed, failed or cancelled).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl FromStr for JobStatus {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return Err(ControlError::invalid("status", "unknown job status")),
        })
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connector's sync schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The tenant whose connector it is.
    pub tenant: TenantId,
    /// The connector's name in the tenant's topology.
    pub connector: String,
    /// How often it syncs.
    pub frequency: Frequency,
    /// When the next scheduled job falls due; `None` for manual and real-time.
    pub next_due_ms: Option<i64>,
}

/// One sync run of one connector.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncJob {
    /// A UUIDv7.
    pub id: String,
    /// The tenant it syncs for.
    pub tenant: TenantId,
    /// The connector it syncs.
    pub connector: String,
    /// What made it.
    pub trigger: JobTrigger,
    /// The schedule slot it fills (scheduled jobs only).
    pub slot_ms: Option<i64>,
    /// Where it is in its life.
    pub status: JobStatus,
    /// How far along it is, 0 to 100, as its node last reported.
    pub progress_pct: f64,
    /// Records synced so far.
    pub records_processed: i64,
    /// Records that failed (and will be retried or dead-lettered).
    pub records_failed: i64,
    /// Records sent to a dead-letter topic.
    pub records_dead_lettered: i64,
    /// When it was made.
    pub created_at_ms: i64,
    /// When a node first started it.
    pub started_at_ms: Option<i64>,
    /// When it completed, failed or was cancelled.
    pub finished_at_ms: Option<i64>,
    /// Why it failed: a short, classified reason, free of personal data.
    pub error: Option<String>,
    /// The node that holds (or last held) it; for a pending scheduled job, the node that
    /// claimed its slot.
    pub node: Option<String>,
    /// When the running node's lease lapses unless it heartbeats.
    pub lease_expires_at_ms: Option<i64>,
    /// How many times a node started it (more than 1 after a takeover).
    pub attempts: i64,
}

/// Progress a running job's node reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobProgress {
    /// How far along, 0 to 100.
    pub progress_pct: f64,
    /// Records synced so far.
    pub records_processed: i64,
    /// Records that failed so far.
    pub records_failed: i64,
    /// Records dead-lettered so far.
    pub records_dead_lettered: i64,
}

/// What a heartbeat tells the running node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The lease is extended: carry on.
    Continue,
    /// Someone cancelled the job: stop, and do not call [`ControlStore::finish_job`].
    Cancelled,
}

/// Most jobs one [`ControlStore::claim_due`] call creates; the rest wait for the next call.
pub const MAX_CLAIM: i64 = 500;

/// Longest error text kept for a failed job.
pub const MAX_ERROR_CHARS: usize = 2000;

const JOB_COLUMNS: &str = "id, tenant_id, connector, trigger_kind, slot_ms, status, progress_pct, \
     records_processed, records_failed, records_dead_lettered, created_at_ms, started_at_ms, \
     finished_at_ms, error, node, lease_expires_at_ms, attempts";

/// Reads a row of [`JOB_COLUMNS`] (17 columns: more than sqlx's tuple decoding takes).
fn job_from_row<'r, R>(r: &'r R) -> Result<SyncJob>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SyncJob {
        id: r.try_get(0)?,
        tenant: TenantId::new(r.try_get::<String, _>(1)?)?,
        connector: r.try_get(2)?,
        trigger: r.try_get::<String, _>(3)?.parse()?,
        slot_ms: r.try_get(4)?,
        status: r.try_get::<String, _>(5)?.parse()?,
        progress_pct: r.try_get(6)?,
        records_processed: r.try_get(7)?,
        records_failed: r.try_get(8)?,
        records_dead_lettered: r.try_get(9)?,
        created_at_ms: r.try_get(10)?,
        started_at_ms: r.try_get(11)?,
        finished_at_ms: r.try_get(12)?,
        error: r.try_get(13)?,
        node: r.try_get(14)?,
        lease_expires_at_ms: r.try_get(15)?,
        attempts: r.try_get(16)?,
    })
}

fn check_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 200 || value.trim() != value {
        return Err(ControlError::invalid(
            field,
            "must be 1 to 200 characters, without surrounding spaces",
        ));
    }
    Ok(())
}

fn check_lease(lease_ms: i64) -> Result<()> {
    if lease_ms <= 0 {
        return Err(ControlError::invalid("lease_ms", "must be positive"));
    }
    Ok(())
}

/// The first slot of the grid `slot + k × interval` that lies after `now_ms`.
fn next_slot_after(slot_ms: i64, interval_ms: i64, now_ms: i64) -> i64 {
    if now_ms < slot_ms {
        return slot_ms + interval_ms;
    }
    slot_ms + interval_ms * ((now_ms - slot_ms) / interval_ms + 1)
}

impl ControlStore {
    /// Sets a connector's schedule. A scheduled frequency is first due at `first_due_ms` (now,
    /// if `None`); manual and real-time are never due.
    pub async fn set_schedule(
        &self,
        tenant: &TenantId,
        connector: &str,
        frequency: Frequency,
        first_due_ms: Option<i64>,
    ) -> Result<Schedule> {
        check_name("connector", connector)?;
        if self.get_tenant(tenant).await?.is_none() {
            return Err(ControlError::NotFound {
                what: format!("tenant {tenant}"),
            });
        }
        let now = self.now_ms();
        let interval = frequency.interval_ms();
        let next_due_ms = interval.map(|_| first_due_ms.unwrap_or(now));
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO schedules (tenant_id, connector, frequency, interval_ms, next_due_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, connector) DO UPDATE SET frequency = excluded.frequency, \
             interval_ms = excluded.interval_ms, next_due_ms = excluded.next_due_ms, \
             updated_at_ms = excluded.updated_at_ms"
        )
        .bind(tenant.as_str())
        .bind(connector)
        .bind(frequency.as_str())
        .bind(interval)
        .bind(next_due_ms)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(Schedule {
            tenant: tenant.clone(),
            connector: connector.to_string(),
            frequency,
            next_due_ms,
        })
    }

    /// A connector's schedule, if it has one.
    pub async fn get_schedule(
        &self,
        tenant: &TenantId,
        connector: &str,
    ) -> Result<Option<Schedule>> {
        let row: Option<(String, Option<i64>)> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT frequency, next_due_ms FROM schedules WHERE tenant_id = $1 AND connector = $2"
        )
        .bind(tenant.as_str())
        .bind(connector)
        .fetch_optional(p)
        .await?
        });
        row.map(|(frequency, next_due_ms)| {
            Ok(Schedule {
                tenant: tenant.clone(),
                connector: connector.to_string(),
                frequency: frequency.parse()?,
                next_due_ms,
            })
        })
        .transpose()
    }

    /// Removes a connector's schedule; its jobs stay. Whether there was one.
    pub async fn delete_schedule(&self, tenant: &TenantId, connector: &str) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM schedules WHERE tenant_id = $1 AND connector = $2"
        )
        .bind(tenant.as_str())
        .bind(connector)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Creates one pending job for every schedule due at `now_ms` and moves each schedule to
    /// its next slot after `now_ms`. Returns the jobs this call created; concurrent callers on
    /// other nodes never create the same slot's job twice. `node` is recorded as the claimer.
    pub async fn claim_due(&self, node: &str, now_ms: i64) -> Result<Vec<SyncJob>> {
        check_name("node", node)?;
        let due: Vec<(String, String, i64, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT tenant_id, connector, interval_ms, next_due_ms FROM schedules \
             WHERE next_due_ms <= $1 AND interval_ms IS NOT NULL \
             ORDER BY next_due_ms, tenant_id, connector LIMIT $2"
        )
        .bind(now_ms)
        .bind(MAX_CLAIM)
        .fetch_all(p)
        .await?);
        let insert_sql = format!(
            "INSERT INTO sync_jobs ({JOB_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (tenant_id, connector, slot_ms) DO NOTHING"
        );
        let mut created = Vec::new();
        for (tenant, connector, interval_ms, slot_ms) in due {
            let job = SyncJob {
                id: uuid::Uuid::now_v7().to_string(),
                tenant: TenantId::new(tenant)?,
                connector,
                trigger: JobTrigger::Schedule,
                slot_ms: Some(slot_ms),
                status: JobStatus::Pending,
                progress_pct: 0.0,
                records_processed: 0,
                records_failed: 0,
                records_dead_lettered: 0,
                created_at_ms: now_ms,
                started_at_ms: None,
                finished_at_ms: None,
                error: None,
                node: Some(node.to_string()),
                lease_expires_at_ms: None,
                attempts: 0,
            };
            let next = next_slot_after(slot_ms, interval_ms, now_ms);
            let inserted = in_tx!(self, |tx| {
                // The compare-and-set: of racing nodes, only the first still sees `slot_ms`.
                let moved = sqlx::query(
                    "UPDATE schedules SET next_due_ms = $1, updated_at_ms = $2 \
                     WHERE tenant_id = $3 AND connector = $4 AND next_due_ms = $5",
                )
                .bind(next)
                .bind(now_ms)
                .bind(job.tenant.as_str())
                .bind(&job.connector)
                .bind(slot_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    false
                } else {
                    bind_job(sqlx::query(sqlx::AssertSqlSafe(insert_sql.clone())), &job)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1
                }
            });
            if inserted {
                created.push(job);
            }
        }
        Ok(created)
    }

    /// "Sync now": a pending manual job for the connector. Pressed again before that job
    /// starts, it returns the same job rather than queueing a second.
    pub async fn sync_now(&self, tenant: &TenantId, connector: &str) -> Result<SyncJob> {
        check_name("connector", connector)?;
        if self.get_tenant(tenant).await?.is_none() {
            return Err(ControlError::NotFound {
                what: format!("tenant {tenant}"),
            });
        }
        let job = SyncJob {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.clone(),
            connector: connector.to_string(),
            trigger: JobTrigger::Manual,
            slot_ms: None,
            status: JobStatus::Pending,
            progress_pct: 0.0,
            records_processed: 0,
            records_failed: 0,
            records_dead_lettered: 0,
            created_at_ms: self.now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            node: None,
            lease_expires_at_ms: None,
            attempts: 0,
        };
        // No conflict target: the one that can fire is the partial unique index on pending
        // manual jobs.
        let insert_sql = format!(
            "INSERT INTO sync_jobs ({JOB_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT DO NOTHING"
        );
        let select_sql = format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE tenant_id = $1 AND connector = $2 \
             AND trigger_kind = 'manual' AND status = 'pending'"
        );
        let pending = on_pool!(self, |p| {
            bind_job(sqlx::query(sqlx::AssertSqlSafe(insert_sql.clone())), &job)
                .execute(p)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(select_sql.clone()))
                .bind(tenant.as_str())
                .bind(connector)
                .fetch_optional(p)
                .await?
                .map(|r| job_from_row(&r))
                .transpose()?
        });
        // Started between our insert and our read: the one we inserted was the duplicate.
        match pending {
            Some(j) => Ok(j),
            None => self
                .get_job(tenant, &job.id)
                .await?
                .ok_or_else(|| ControlError::Conflict {
                    what: format!("a sync of {connector} that just started"),
                }),
        }
    }

    /// One of a tenant's jobs; another tenant's job is `None`, as if it did not exist.
    pub async fn get_job(&self, tenant: &TenantId, id: &str) -> Result<Option<SyncJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM sync_jobs WHERE id = $1 AND tenant_id = $2");
        on_pool!(self, |p| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(tenant.as_str())
            .fetch_optional(p)
            .await?
            .map(|r| job_from_row(&r))
            .transpose())
    }

    async fn job_by_id(&self, id: &str) -> Result<Option<SyncJob>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM sync_jobs WHERE id = $1");
        on_pool!(self, |p| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_optional(p)
            .await?
            .map(|r| job_from_row(&r))
            .transpose())
    }

    /// A tenant's jobs, newest first, at most `limit` (capped at 1000).
    pub async fn list_jobs(&self, tenant: &TenantId, limit: i64) -> Result<Vec<SyncJob>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE tenant_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        );
        on_pool!(self, |p| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(tenant.as_str())
            .bind(limit.clamp(0, 1000))
            .fetch_all(p)
            .await?
            .iter()
            .map(job_from_row)
            .collect())
    }

    /// Jobs a node may start at `now_ms`, oldest first: pending ones, and running ones whose
    /// lease has lapsed (their node stopped heartbeating). Several nodes may see the same
    /// job; [`ControlStore::start_job`] lets exactly one of them have it.
    pub async fn runnable_jobs(&self, now_ms: i64, limit: i64) -> Result<Vec<SyncJob>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE status = 'pending' \
             OR (status = 'running' AND lease_expires_at_ms <= $1) \
             ORDER BY created_at_ms, id LIMIT $2"
        );
        on_pool!(self, |p| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(now_ms)
            .bind(limit.clamp(0, 1000))
            .fetch_all(p)
            .await?
            .iter()
            .map(job_from_row)
            .collect())
    }

    /// Takes a job's lease for `node` for `lease_ms`: a pending job, or a running one whose
    /// lease has lapsed (a takeover). Anything else is [`ControlError::JobUnavailable`].
    pub async fn start_job(&self, id: &str, node: &str, lease_ms: i64) -> Result<SyncJob> {
        check_name("node", node)?;
        check_lease(lease_ms)?;
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE sync_jobs SET status = 'running', node = $1, lease_expires_at_ms = $2, \
             started_at_ms = COALESCE(started_at_ms, $3), attempts = attempts + 1 \
             WHERE id = $4 AND (status = 'pending' \
             OR (status = 'running' AND lease_expires_at_ms <= $3))"
        )
        .bind(node)
        .bind(now + lease_ms)
        .bind(now)
        .bind(id)
        .execute(p)
        .await?
        .rows_affected());
        let job = self
            .job_by_id(id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("sync job {id}"),
            })?;
        if n == 0 {
            return Err(ControlError::JobUnavailable {
                job: id.to_string(),
            });
        }
        Ok(job)
    }

    /// Extends `node`'s lease on a running job by `lease_ms` from now and records its
    /// progress. [`HeartbeatOutcome::Cancelled`] tells the node to stop;
    /// [`ControlError::JobUnavailable`] means another node has taken the job over.
    pub async fn heartbeat_job(
        &self,
        id: &str,
        node: &str,
        lease_ms: i64,
        progress: &JobProgress,
    ) -> Result<HeartbeatOutcome> {
        check_lease(lease_ms)?;
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE sync_jobs SET lease_expires_at_ms = $1, progress_pct = $2, \
             records_processed = $3, records_failed = $4, records_dead_lettered = $5 \
             WHERE id = $6 AND node = $7 AND status = 'running'"
        )
        .bind(now + lease_ms)
        .bind(progress.progress_pct.clamp(0.0, 100.0))
        .bind(progress.records_processed)
        .bind(progress.records_failed)
        .bind(progress.records_dead_lettered)
        .bind(id)
        .bind(node)
        .execute(p)
        .await?
        .rows_affected());
        if n == 1 {
            return Ok(HeartbeatOutcome::Continue);
        }
        match self.job_by_id(id).await? {
            None => Err(ControlError::NotFound {
                what: format!("sync job {id}"),
            }),
            Some(j) if j.status == JobStatus::Cancelled && j.node.as_deref() == Some(node) => {
                Ok(HeartbeatOutcome::Cancelled)
            }
            Some(_) => Err(ControlError::JobUnavailable {
                job: id.to_string(),
            }),
        }
    }

    /// Ends `node`'s run of a job: completed, or failed with `error` (kept short; it must
    /// hold no personal data). A job cancelled meanwhile stays cancelled and is returned as
    /// such; one taken over by another node is [`ControlError::JobUnavailable`].
    pub async fn finish_job(
        &self,
        id: &str,
        node: &str,
        progress: &JobProgress,
        error: Option<&str>,
    ) -> Result<SyncJob> {
        let now = self.now_ms();
        let status = if error.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Completed
        };
        let error: Option<String> = error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect());
        let n = on_pool!(self, |p| {
            sqlx::query(
            "UPDATE sync_jobs SET status = $1, finished_at_ms = $2, lease_expires_at_ms = NULL, \
             error = $3, progress_pct = $4, records_processed = $5, records_failed = $6, \
             records_dead_lettered = $7 WHERE id = $8 AND node = $9 AND status = 'running'"
        )
        .bind(status.as_str())
        .bind(now)
        .bind(&error)
        .bind(progress.progress_pct.clamp(0.0, 100.0))
        .bind(progress.records_processed)
        .bind(progress.records_failed)
        .bind(progress.records_dead_lettered)
        .bind(id)
        .bind(node)
        .execute(p)
        .await?
        .rows_affected()
        });
        let job = self
            .job_by_id(id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("sync job {id}"),
            })?;
        if n == 1 || (job.status == JobStatus::Cancelled && job.node.as_deref() == Some(node)) {
            return Ok(job);
        }
        Err(ControlError::JobUnavailable {
            job: id.to_string(),
        })
    }

    /// Cancels a tenant's pending or running job; its node learns at its next heartbeat.
    /// A finished job cannot be cancelled; another tenant's job is NotFound.
    pub async fn cancel_job(&self, tenant: &TenantId, id: &str) -> Result<SyncJob> {
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE sync_jobs SET status = 'cancelled', finished_at_ms = $1, \
             lease_expires_at_ms = NULL \
             WHERE id = $2 AND tenant_id = $3 AND status IN ('pending', 'running')"
        )
        .bind(now)
        .bind(id)
        .bind(tenant.as_str())
        .execute(p)
        .await?
        .rows_affected());
        let job = self
            .get_job(tenant, id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("sync job {id}"),
            })?;
        if n == 0 {
            return Err(ControlError::invalid(
                "status",
                format!("the job has already {}", job.status),
            ));
        }
        Ok(job)
    }
}

/// Binds a job's fields in [`JOB_COLUMNS`] order.
fn bind_job<'q, DB>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    j: &SyncJob,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(j.id.clone())
        .bind(j.tenant.as_str().to_string())
        .bind(j.connector.clone())
        .bind(j.trigger.as_str().to_string())
        .bind(j.slot_ms)
        .bind(j.status.as_str().to_string())
        .bind(j.progress_pct)
        .bind(j.records_processed)
        .bind(j.records_failed)
        .bind(j.records_dead_lettered)
        .bind(j.created_at_ms)
        .bind(j.started_at_ms)
        .bind(j.finished_at_ms)
        .bind(j.error.clone())
        .bind(j.node.clone())
        .bind(j.lease_expires_at_ms)
        .bind(j.attempts)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::StoreSettings;
    use crate::store::testing::on_both_backends;

    const T0: i64 = 1_800_000_000_000;
    const MIN_MS: i64 = 60 * 1000;
    const HOUR_MS: i64 = 60 * MIN_MS;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    on_both_backends! {
        async fn two_nodes_claiming_concurrently_create_each_slot_once(h) {
            let a = h.store.clone();
            let b = h.open(MasterKey::generate(1), StoreSettings::default()).await;
            let (acme, globex) = (tenant("acme"), tenant("globex"));
            a.create_tenant(&acme, "Acme Motors").await.unwrap();
            a.create_tenant(&globex, "Globex Auto Group").await.unwrap();
            a.set_schedule(&acme, "salesforce", Frequency::Hourly, Some(T0)).await.unwrap();
            a.set_schedule(&globex, "hubspot", Frequency::Daily, Some(T0 + 30 * MIN_MS)).await.unwrap();
            a.set_schedule(&acme, "cdk", Frequency::Manual, None).await.unwrap();
            a.set_schedule(&globex, "dealersocket", Frequency::RealTime, None).await.unwrap();

            // Simulated time, two days in 20-minute steps; at each step both nodes claim,
            // each from two tasks at once.
            let end = T0 + 48 * HOUR_MS;
            let mut claimed = Vec::new();
            let mut now = T0;
            while now <= end {
                let (r1, r2, r3, r4) = tokio::join!(
                    a.claim_due("node-a", now),
                    b.claim_due("node-b", now),
                    a.claim_due("node-a", now),
                    b.claim_due("node-b", now),
                );
                for r in [r1, r2, r3, r4] {
                    claimed.extend(r.unwrap());
                }
                now += 20 * MIN_MS;
            }

            let mut expected: Vec<(String, String, i64)> = (0..=48)
                .map(|k| ("acme".to_string(), "salesforce".to_string(), T0 + k * HOUR_MS))
                .chain((0..2).map(|k| ("globex".to_string(), "hubspot".to_string(), T0 + 30 * MIN_MS + k * 24 * HOUR_MS)))
                .collect();
            expected.sort();
            let mut got: Vec<(String, String, i64)> = claimed
                .iter()
                .map(|j| (j.tenant.as_str().to_string(), j.connector.clone(), j.slot_ms.unwrap()))
                .collect();
            got.sort();
            assert_eq!(got, expected, "every slot exactly once across both nodes");
            assert!(claimed.iter().all(|j| j.status == JobStatus::Pending && j.trigger == JobTrigger::Schedule));
            let by_node = claimed.iter().fold(BTreeMap::<_, usize>::new(), |mut m, j| {
                *m.entry(j.node.clone().unwrap()).or_default() += 1;
                m
            });
            assert_eq!(by_node.values().sum::<usize>(), expected.len());

            // What the database holds agrees with what the callers were told.
            let stored = a.list_jobs(&acme, 1000).await.unwrap().len()
                + a.list_jobs(&globex, 1000).await.unwrap().len();
            assert_eq!(stored, expected.len());
            let s = a.get_schedule(&acme, "salesforce").await.unwrap().unwrap();
            assert_eq!(s.next_due_ms, Some(T0 + 49 * HOUR_MS));
            assert_eq!(a.get_schedule(&acme, "cdk").await.unwrap().unwrap().next_due_ms, None);
            b.close().await;
        }

        async fn missed_slots_coalesce_into_one_job(h) {
            let s = &h.store;
            let acme = tenant("acme");
            s.create_tenant(&acme, "Acme Motors").await.unwrap();
            s.set_schedule(&acme, "salesforce", Frequency::Hourly, Some(T0)).await.unwrap();
            assert!(s.claim_due("node-a", T0 - 1).await.unwrap().is_empty());
            // Down for five and a half hours: one job for the oldest slot, then on the grid.
            let jobs = s.claim_due("node-a", T0 + 5 * HOUR_MS + 30 * MIN_MS).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].slot_ms, Some(T0));
            assert!(s.claim_due("node-a", T0 + 5 * HOUR_MS + 59 * MIN_MS).await.unwrap().is_empty());
            let next = s.claim_due("node-a", T0 + 6 * HOUR_MS).await.unwrap();
            assert_eq!(next[0].slot_ms, Some(T0 + 6 * HOUR_MS));
        }

        async fn an_expired_lease_is_taken_over_and_the_old_node_is_fenced_off(h) {
            let a = h.store.clone();
            let b = h.open(MasterKey::generate(1), StoreSettings::default()).await;
            let at = |ms: i64| {
                a.pin_clock_ms(ms);
                b.pin_clock_ms(ms);
            };
            let acme = tenant("acme");
            a.create_tenant(&acme, "Acme Motors").await.unwrap();
            at(T0);
            let job = a.sync_now(&acme, "salesforce").await.unwrap();
            assert_eq!((job.status, job.trigger), (JobStatus::Pending, JobTrigger::Manual));
            assert_eq!(a.sync_now(&acme, "salesforce").await.unwrap().id, job.id, "sync now twice is one job");

            let lease = 30_000;
            let running = a.start_job(&job.id, "node-a", lease).await.unwrap();
            assert_eq!((running.status, running.node.as_deref(), running.attempts), (JobStatus::Running, Some("node-a"), 1));
            at(T0 + 10_000);
            assert_eq!(b.start_job(&job.id, "node-b", lease).await.unwrap_err().code(), "job_unavailable");
            at(T0 + 20_000);
            let progress = JobProgress { progress_pct: 40.0, records_processed: 400, records_failed: 2, records_dead_lettered: 1 };
            assert_eq!(a.heartbeat_job(&job.id, "node-a", lease, &progress).await.unwrap(), HeartbeatOutcome::Continue);
            at(T0 + 45_000);
            assert!(b.runnable_jobs(T0 + 45_000, 10).await.unwrap().is_empty(), "the heartbeat extended the lease");

            // node-a goes quiet; its lease lapses at T0 + 50 s.
            at(T0 + 50_000);
            let runnable = b.runnable_jobs(T0 + 50_000, 10).await.unwrap();
            assert_eq!(runnable.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec![job.id.as_str()]);
            let taken = b.start_job(&job.id, "node-b", lease).await.unwrap();
            assert_eq!((taken.node.as_deref(), taken.attempts, taken.started_at_ms), (Some("node-b"), 2, Some(T0)));
            assert_eq!(taken.records_processed, 400, "progress survives the takeover");

            // node-a comes back: it may neither extend nor finish what is no longer its job.
            assert_eq!(a.heartbeat_job(&job.id, "node-a", lease, &progress).await.unwrap_err().code(), "job_unavailable");
            assert_eq!(a.finish_job(&job.id, "node-a", &progress, None).await.unwrap_err().code(), "job_unavailable");

            at(T0 + 60_000);
            let done = JobProgress { progress_pct: 100.0, records_processed: 1000, ..progress };
            let finished = b.finish_job(&job.id, "node-b", &done, None).await.unwrap();
            assert_eq!((finished.status, finished.finished_at_ms, finished.lease_expires_at_ms), (JobStatus::Completed, Some(T0 + 60_000), None));
            assert_eq!((finished.records_processed, finished.records_failed, finished.records_dead_lettered), (1000, 2, 1));
            assert_eq!(b.start_job(&job.id, "node-b", lease).await.unwrap_err().code(), "job_unavailable");
            assert!(b.runnable_jobs(T0 + 10 * HOUR_MS, 10).await.unwrap().is_empty());

            // A failure is recorded with its reason.
            let again = a.sync_now(&acme, "salesforce").await.unwrap();
            assert_ne!(again.id, job.id);
            a.start_job(&again.id, "node-a", lease).await.unwrap();
            let failed = a.finish_job(&again.id, "node-a", &JobProgress::default(), Some("auth: token revoked")).await.unwrap();
            assert_eq!((failed.status, failed.error.as_deref()), (JobStatus::Failed, Some("auth: token revoked")));
            b.close().await;
        }

        async fn cancellation_stops_pending_and_running_jobs(h) {
            let s = &h.store;
            let (acme, globex) = (tenant("acme"), tenant("globex"));
            s.create_tenant(&acme, "Acme Motors").await.unwrap();
            s.create_tenant(&globex, "Globex Auto Group").await.unwrap();
            s.pin_clock_ms(T0);

            let pending = s.sync_now(&acme, "hubspot").await.unwrap();
            assert_eq!(s.cancel_job(&globex, &pending.id).await.unwrap_err().code(), "not_found");
            let cancelled = s.cancel_job(&acme, &pending.id).await.unwrap();
            assert_eq!((cancelled.status, cancelled.finished_at_ms), (JobStatus::Cancelled, Some(T0)));
            assert_eq!(s.start_job(&pending.id, "node-a", 30_000).await.unwrap_err().code(), "job_unavailable");
            assert_eq!(s.cancel_job(&acme, &pending.id).await.unwrap_err().code(), "invalid_input");

            let job = s.sync_now(&acme, "hubspot").await.unwrap();
            assert_ne!(job.id, pending.id, "a cancelled job does not block a new sync");
            s.start_job(&job.id, "node-a", 30_000).await.unwrap();
            s.cancel_job(&acme, &job.id).await.unwrap();
            let p = JobProgress { progress_pct: 10.0, ..JobProgress::default() };
            assert_eq!(s.heartbeat_job(&job.id, "node-a", 30_000, &p).await.unwrap(), HeartbeatOutcome::Cancelled);
            let after = s.finish_job(&job.id, "node-a", &p, None).await.unwrap();
            assert_eq!(after.status, JobStatus::Cancelled, "cancel wins over a late finish");
            assert!(s.runnable_jobs(T0 + HOUR_MS, 10).await.unwrap().is_empty());
            assert_eq!(s.list_jobs(&acme, 10).await.unwrap().len(), 2);
            assert!(s.list_jobs(&globex, 10).await.unwrap().is_empty());
            assert!(s.get_job(&globex, &job.id).await.unwrap().is_none());
        }
    }

    #[test]
    fn the_next_slot_stays_on_the_grid() {
        assert_eq!(next_slot_after(0, 10, 0), 10);
        assert_eq!(next_slot_after(0, 10, 9), 10);
        assert_eq!(next_slot_after(0, 10, 10), 20);
        assert_eq!(next_slot_after(0, 10, 55), 60);
        assert_eq!(next_slot_after(100, 10, 50), 110);
        assert_eq!(
            "real-time".parse::<Frequency>().unwrap(),
            Frequency::RealTime
        );
        assert_eq!(Frequency::Weekly.interval_ms(), Some(604_800_000));
        assert!("often".parse::<Frequency>().is_err());
    }
}
