//! The conflicts and dead-letters desk: conflicts awaiting a person and records a stage gave
//! up on, materialized from the hub's topics (`<ns>.conflicts`, `<ns>.dlq.transform`,
//! `<ns>.dlq.sink`) by the hub's feeder, and the state of what people did about them.
//!
//! ## Idempotent by source offset
//! The feeder commits its consumer offsets only after the store write, so after a crash it
//! reads some records again. A conflict row keeps the (partition, offset) of the last record
//! applied to it and ignores a record at or before it (all records of one conflict share its
//! key, so one partition); a dead letter's id *is* its DLQ position
//! (`<topic>:<partition>:<offset>`), inserted once.
//!
//! ## Personal data
//! Both sides of a conflict and a dead letter's original record are personal data the desk
//! must show or replay, so they are sealed with the tenant's data key (AES-256-GCM, bound to
//! tenant and row: [`crate::crypto`]) and opened only to show one conflict or to replay one
//! record. The original value is kept here, not only as a reference to the DLQ offset, so a
//! replay does not depend on the DLQ's retention and needs no Kafka read. Reasons and field
//! errors are stored masked ([`crate::masking`]); keys, topics, field names and offsets are
//! not personal data and stay in clear, filterable.
//!
//! ## Status transitions
//! Conflicts: `pending` → (a person submits) `resolution_submitted` → (the transform's
//! record) `resolved`, or back to `pending` with `last_reason` when the transform refused it
//! (a refusal of an already resolved conflict — a duplicate — changes nothing), or
//! `superseded` when the held fields changed meanwhile. `auto_resolved` conflicts (settled by
//! a strategy) are kept for the record. A submission is a compare-and-set from `pending` or
//! `resolution_submitted`: the transform, not this store, decides which of two resolutions
//! wins (the second is refused there), so submitting again after a crash is safe.
//!
//! Dead letters: `pending` → `replaying` (claimed by a compare-and-set, before the record is
//! produced) → `replayed` once the broker acknowledged it, or back to `pending` when it did
//! not; `pending` → `discarded` with a reason. A node that dies between the claim and the
//! broker's answer leaves the row `replaying`; such a row becomes claimable again after
//! [`REPLAY_LEASE_MS`], by replaying it on its own (a bulk replay picks `pending` rows only).
//! In that window the record may have been produced already, so a replay
//! is at-least-once there — harmless, as a raw record carries its ingest id and the resolve
//! stage skips a change it already applied, and sinks write idempotently.

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::auth::TenantId;
use crate::error::{ControlError, Result};
use crate::masking::{mask_personal_data, mask_text};

use super::{ControlStore, on_pool};

/// How long a claimed replay may stay unanswered before another replay may claim the row:
/// 5 minutes, far beyond a broker acknowledgement's timeout.
pub const REPLAY_LEASE_MS: i64 = 5 * 60 * 1000;

/// The largest page a list answers.
pub const MAX_DESK_PAGE: i64 = 500;

/// A conflict's status in the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeskConflictStatus {
    Pending,
    ResolutionSubmitted,
    Resolved,
    AutoResolved,
    Superseded,
}

impl DeskConflictStatus {
    pub const ALL: [DeskConflictStatus; 5] = [
        DeskConflictStatus::Pending,
        DeskConflictStatus::ResolutionSubmitted,
        DeskConflictStatus::Resolved,
        DeskConflictStatus::AutoResolved,
        DeskConflictStatus::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeskConflictStatus::Pending => "pending",
            DeskConflictStatus::ResolutionSubmitted => "resolution_submitted",
            DeskConflictStatus::Resolved => "resolved",
            DeskConflictStatus::AutoResolved => "auto_resolved",
            DeskConflictStatus::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What a record on `<ns>.conflicts` says happened to a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictEvent {
    /// Raised and held for a person.
    Pending,
    /// Settled by the configured strategy.
    AutoResolved,
    /// A person's resolution was applied, making `version`.
    Resolved,
    /// A person's resolution was refused; the conflict stays pending.
    Rejected,
    /// The held fields changed since it was raised; nothing to resolve any more.
    Superseded,
}

/// One record of `<ns>.conflicts`, as the feeder hands it to [`ControlStore::upsert_conflict`].
#[derive(Debug, Clone)]
pub struct ConflictUpsert {
    pub tenant: TenantId,
    pub conflict_id: String,
    pub entity: String,
    pub key: String,
    pub connector: Option<String>,
    pub event: ConflictEvent,
    /// The fields held for a person (what a resolution must decide).
    pub held_fields: Vec<String>,
    /// Both sides, field by field (personal data: sealed). Empty on records that carry no
    /// fields (resolutions); the stored sides then stay.
    pub fields: Json,
    /// The key state's version after the record's decision.
    pub version: i64,
    pub at_ms: i64,
    /// Why a resolution was refused.
    pub reason: Option<String>,
    /// Who resolved it (on `Resolved` and `Rejected`).
    pub resolved_by: Option<String>,
    pub partition: i32,
    pub offset: i64,
}

/// A conflict as listed (without its sealed sides).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeskConflict {
    pub tenant: String,
    pub id: String,
    pub entity: String,
    pub key: String,
    pub connector: Option<String>,
    pub status: DeskConflictStatus,
    pub held_fields: Vec<String>,
    pub state_version: i64,
    pub raised_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_reason: Option<String>,
    pub submitted_by: Option<String>,
    pub submitted_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolved_at_ms: Option<i64>,
    pub resolved_version: Option<i64>,
}

/// Filters of [`ControlStore::list_conflicts`].
#[derive(Debug, Clone, Default)]
pub struct ConflictFilter {
    pub status: Option<DeskConflictStatus>,
    pub entity: Option<String>,
    pub connector: Option<String>,
    pub limit: i64,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A dead letter's status in the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    Pending,
    Replaying,
    Replayed,
    Discarded,
}

impl DeadLetterStatus {
    pub const ALL: [DeadLetterStatus; 4] = [
        DeadLetterStatus::Pending,
        DeadLetterStatus::Replaying,
        DeadLetterStatus::Replayed,
        DeadLetterStatus::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Pending => "pending",
            DeadLetterStatus::Replaying => "replaying",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One record of a DLQ topic, as the feeder hands it to [`ControlStore::upsert_dead_letter`].
#[derive(Debug, Clone)]
pub struct DeadLetterUpsert {
    pub tenant: TenantId,
    /// `<dlq topic>:<partition>:<offset>`.
    pub id: String,
    pub stage: String,
    pub error_class: String,
    pub reason: String,
    /// `[{field, code, message}]`.
    pub errors: Json,
    pub attempts: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub original_key: Option<String>,
    /// Personal data: sealed.
    pub original_value: Vec<u8>,
    /// The hub headers to put back on a replay.
    pub headers: Vec<(String, String)>,
    pub failed_at_ms: i64,
}

/// A dead letter as shown (its original value stays sealed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeskDeadLetter {
    pub tenant: String,
    pub id: String,
    pub stage: String,
    pub error_class: String,
    pub reason: String,
    pub errors: Json,
    pub attempts: i64,
    pub original_topic: String,
    pub original_partition: i64,
    pub original_offset: i64,
    pub original_key: Option<String>,
    pub failed_at_ms: i64,
    pub status: DeadLetterStatus,
    pub discard_reason: Option<String>,
    pub acted_by: Option<String>,
    pub acted_at_ms: Option<i64>,
}

/// Filters of [`ControlStore::list_dead_letters`].
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub stage: Option<String>,
    pub error_class: Option<String>,
    /// A field named by one of the errors.
    pub field: Option<String>,
    pub status: Option<DeadLetterStatus>,
    pub original_topic: Option<String>,
    pub limit: i64,
    pub cursor: Option<String>,
}

/// What a replay produces: the original record, to its original topic, with its key and
/// the hub headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReplay {
    pub tenant: TenantId,
    pub id: String,
    pub topic: String,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

const CONFLICT_COLUMNS: &str = "tenant_id, conflict_id, entity, conflict_key, connector, status, \
     held_fields, state_version, raised_at_ms, updated_at_ms, last_reason, submitted_by, \
     submitted_at_ms, resolved_by, resolved_at_ms, resolved_version";

type ConflictRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn conflict_from(r: ConflictRow) -> Result<DeskConflict> {
    let status = DeskConflictStatus::parse(&r.5)
        .ok_or_else(|| ControlError::Config(format!("unknown conflict status {}", r.5)))?;
    Ok(DeskConflict {
        tenant: r.0,
        id: r.1,
        entity: r.2,
        key: r.3,
        connector: r.4,
        status,
        held_fields: split_list(&r.6),
        state_version: r.7,
        raised_at_ms: r.8,
        updated_at_ms: r.9,
        last_reason: r.10,
        submitted_by: r.11,
        submitted_at_ms: r.12,
        resolved_by: r.13,
        resolved_at_ms: r.14,
        resolved_version: r.15,
    })
}

const DEAD_LETTER_COLUMNS: &str = "tenant_id, id, stage, error_class, reason, errors_json, \
     attempts, original_topic, original_partition, original_offset, original_key, failed_at_ms, \
     status, discard_reason, acted_by, acted_at_ms";

type DeadLetterRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    Option<String>,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn dead_letter_from(r: DeadLetterRow) -> Result<DeskDeadLetter> {
    let status = DeadLetterStatus::parse(&r.12)
        .ok_or_else(|| ControlError::Config(format!("unknown dead-letter status {}", r.12)))?;
    Ok(DeskDeadLetter {
        tenant: r.0,
        id: r.1,
        stage: r.2,
        error_class: r.3,
        reason: r.4,
        errors: serde_json::from_str(&r.5).unwrap_or(Json::Array(Vec::new())),
        attempts: r.6,
        original_topic: r.7,
        original_partition: r.8,
        original_offset: r.9,
        original_key: r.10,
        failed_at_ms: r.11,
        status,
        discard_reason: r.13,
        acted_by: r.14,
        acted_at_ms: r.15,
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// A page cursor: the last row's `(time, id)`, as `<ms>:<id>`.
fn parse_cursor(cursor: Option<&str>) -> Result<(i64, String)> {
    match cursor {
        None => Ok((i64::MAX, String::new())),
        Some(c) => c
            .split_once(':')
            .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id.to_string())))
            .ok_or_else(|| ControlError::invalid("cursor", "is not a cursor this API gave out")),
    }
}

fn check_limit(limit: i64) -> Result<i64> {
    if (1..=MAX_DESK_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ControlError::invalid(
            "limit",
            format!("must be between 1 and {MAX_DESK_PAGE}"),
        ))
    }
}

fn conflict_object(id: &str) -> String {
    format!("conflict/{id}")
}

fn dead_letter_object(id: &str) -> String {
    format!("dead_letter/{id}")
}

fn masked_errors(errors: &Json) -> Json {
    match errors {
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    if let Some(m) = e.get("message").and_then(Json::as_str) {
                        e["message"] = json!(mask_text(m));
                    }
                    e
                })
                .collect(),
        ),
        other => mask_personal_data(other),
    }
}

fn error_fields(errors: &Json) -> String {
    let mut out = String::from(",");
    for e in errors.as_array().into_iter().flatten() {
        if let Some(f) = e.get("field").and_then(Json::as_str) {
            out.push_str(&f.replace(',', ""));
            out.push(',');
        }
    }
    out
}

impl ControlStore {
    /// Applies one record of `<ns>.conflicts`; answers whether it changed the row (a record
    /// at or before the row's last applied offset changes nothing).
    pub async fn upsert_conflict(&self, u: &ConflictUpsert) -> Result<bool> {
        let now = self.now_ms();
        let t = u.tenant.as_str();
        let current: Option<(String, i64, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT status, source_partition, source_offset FROM conflicts \
             WHERE tenant_id = $1 AND conflict_id = $2"
        )
        .bind(t)
        .bind(&u.conflict_id)
        .fetch_optional(p)
        .await?);
        // Checked here to skip the sealing, and again in the UPDATE: two feeders of one
        // partition (during a rebalance) must not move a row back to an older record.
        if let Some((_, partition, offset)) = &current
            && *partition == i64::from(u.partition)
            && *offset >= u.offset
        {
            return Ok(false);
        }
        let status = current
            .as_ref()
            .and_then(|(s, _, _)| DeskConflictStatus::parse(s));
        let next = match (&u.event, status) {
            (ConflictEvent::Pending, _) => DeskConflictStatus::Pending,
            (ConflictEvent::AutoResolved, _) => DeskConflictStatus::AutoResolved,
            (ConflictEvent::Resolved, _) => DeskConflictStatus::Resolved,
            (ConflictEvent::Superseded, _) => DeskConflictStatus::Superseded,
            // A refused duplicate of an applied resolution, or a refusal of a conflict that is
            // over: nothing changes.
            (
                ConflictEvent::Rejected,
                Some(
                    s @ (DeskConflictStatus::Resolved
                    | DeskConflictStatus::Superseded
                    | DeskConflictStatus::AutoResolved),
                ),
            ) => s,
            (ConflictEvent::Rejected, _) => DeskConflictStatus::Pending,
        };
        let has_fields = u.fields.as_array().is_some_and(|a| !a.is_empty());
        let sealed = if has_fields || current.is_none() {
            let (dk, key_version) = self.tenant_data_key(&u.tenant).await?;
            let plain = serde_json::to_vec(&u.fields)
                .map_err(|e| ControlError::Config(format!("conflict fields: {e}")))?;
            let (ct, nonce) = dk.seal_record(t, &conflict_object(&u.conflict_id), &plain)?;
            Some((ct, nonce, key_version))
        } else {
            None
        };
        let reason = u.reason.as_deref().map(mask_text);
        let resolved = u.event == ConflictEvent::Resolved;
        let held = u.held_fields.join(",");
        let n = match (current.is_some(), sealed) {
            (false, Some((ct, nonce, kv))) => {
                on_pool!(self, |p| {
                    sqlx::query(
                "INSERT INTO conflicts (tenant_id, conflict_id, entity, conflict_key, connector, \
                 status, held_fields, fields_ct, fields_nonce, key_version, state_version, \
                 raised_at_ms, updated_at_ms, last_reason, resolved_by, resolved_at_ms, \
                 resolved_version, source_partition, source_offset) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                 ON CONFLICT (tenant_id, conflict_id) DO NOTHING"
            )
            .bind(t)
            .bind(&u.conflict_id)
            .bind(&u.entity)
            .bind(&u.key)
            .bind(&u.connector)
            .bind(next.as_str())
            .bind(&held)
            .bind(ct)
            .bind(nonce)
            .bind(kv)
            .bind(u.version)
            .bind(u.at_ms)
            .bind(now)
            .bind(&reason)
            .bind(resolved.then_some(u.resolved_by.clone()).flatten())
            .bind(resolved.then_some(u.at_ms))
            .bind(resolved.then_some(u.version))
            .bind(i64::from(u.partition))
            .bind(u.offset)
            .execute(p)
            .await?
            .rows_affected()
                })
            }
            (true, sealed) => {
                let (ct, nonce, kv) = match sealed {
                    Some((ct, nonce, kv)) => (Some(ct), Some(nonce), Some(kv)),
                    None => (None, None, None),
                };
                on_pool!(self, |p| {
                    sqlx::query(
                    "UPDATE conflicts SET status = $3, \
                     held_fields = CASE WHEN $4 = '' THEN held_fields ELSE $4 END, \
                     fields_ct = COALESCE($5, fields_ct), fields_nonce = COALESCE($6, fields_nonce), \
                     key_version = COALESCE($7, key_version), state_version = $8, \
                     connector = COALESCE(connector, $9), updated_at_ms = $10, \
                     last_reason = $11, \
                     resolved_by = CASE WHEN $12 THEN $13 ELSE resolved_by END, \
                     resolved_at_ms = CASE WHEN $12 THEN $14 ELSE resolved_at_ms END, \
                     resolved_version = CASE WHEN $12 THEN $8 ELSE resolved_version END, \
                     source_partition = $15, source_offset = $16 \
                     WHERE tenant_id = $1 AND conflict_id = $2 \
                     AND (source_partition <> $15 OR source_offset < $16)"
                )
                .bind(t)
                .bind(&u.conflict_id)
                .bind(next.as_str())
                .bind(&held)
                .bind(ct)
                .bind(nonce)
                .bind(kv)
                .bind(u.version)
                .bind(&u.connector)
                .bind(now)
                .bind(&reason)
                .bind(resolved)
                .bind(&u.resolved_by)
                .bind(u.at_ms)
                .bind(i64::from(u.partition))
                .bind(u.offset)
                .execute(p)
                .await?
                .rows_affected()
                })
            }
            (false, None) => 0,
        };
        Ok(n > 0)
    }

    /// A page of a tenant's conflicts, newest first, and the cursor of the next page.
    pub async fn list_conflicts(
        &self,
        tenant: &TenantId,
        f: &ConflictFilter,
    ) -> Result<(Vec<DeskConflict>, Option<String>)> {
        let limit = check_limit(f.limit)?;
        let (before_ms, before_id) = parse_cursor(f.cursor.as_deref())?;
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE tenant_id = $1 \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR entity = $3) \
             AND ($4 IS NULL OR connector = $4) \
             AND (raised_at_ms < $5 OR (raised_at_ms = $5 AND conflict_id < $6) OR $6 = '') \
             ORDER BY raised_at_ms DESC, conflict_id DESC LIMIT $7"
        );
        let rows: Vec<ConflictRow> =
            on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .bind(f.status.map(DeskConflictStatus::as_str))
                .bind(&f.entity)
                .bind(&f.connector)
                .bind(before_ms)
                .bind(&before_id)
                .bind(limit + 1)
                .fetch_all(p)
                .await?);
        let mut out = rows
            .into_iter()
            .map(conflict_from)
            .collect::<Result<Vec<_>>>()?;
        let next = if out.len() as i64 > limit {
            out.truncate(limit as usize);
            out.last().map(|c| format!("{}:{}", c.raised_at_ms, c.id))
        } else {
            None
        };
        Ok((out, next))
    }

    /// One conflict, without its sides.
    pub async fn get_conflict(&self, tenant: &TenantId, id: &str) -> Result<Option<DeskConflict>> {
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE tenant_id = $1 AND conflict_id = $2"
        );
        let row: Option<ConflictRow> =
            on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(p)
                .await?);
        row.map(conflict_from).transpose()
    }

    /// Both sides of a conflict, field by field, opened with the tenant's data key: for a
    /// response to the tenant's own people, never for a log line or the audit log.
    pub async fn conflict_sides(&self, tenant: &TenantId, id: &str) -> Result<Option<Json>> {
        let row: Option<(Vec<u8>, Vec<u8>)> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT fields_ct, fields_nonce FROM conflicts WHERE tenant_id = $1 AND conflict_id = $2"
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(p)
        .await?
        });
        let Some((ct, nonce)) = row else {
            return Ok(None);
        };
        let (dk, _) = self.tenant_data_key(tenant).await?;
        let plain = dk.open_record(tenant.as_str(), &conflict_object(id), &ct, &nonce)?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| ControlError::Crypto("decrypted conflict fields are not JSON".into()))
    }

    /// Marks a conflict's resolution as submitted, by a compare-and-set from `pending` or
    /// `resolution_submitted` (see the module docs); a conflict in any other state is a
    /// [`ControlError::Conflict`].
    pub async fn submit_conflict_resolution(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
    ) -> Result<DeskConflict> {
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE conflicts SET status = 'resolution_submitted', submitted_by = $3, \
             submitted_at_ms = $4, updated_at_ms = $4, last_reason = NULL \
             WHERE tenant_id = $1 AND conflict_id = $2 \
             AND status IN ('pending', 'resolution_submitted')"
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(by)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        let row = self
            .get_conflict(tenant, id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: "the conflict".into(),
            })?;
        if n == 0 {
            return Err(ControlError::Conflict {
                what: format!(
                    "a decision on this conflict (it is {})",
                    row.status.as_str()
                ),
            });
        }
        Ok(row)
    }

    /// Undoes a submission the pipeline did not accept (the record was not produced).
    pub async fn revert_conflict_submission(
        &self,
        tenant: &TenantId,
        id: &str,
        reason: &str,
    ) -> Result<()> {
        let now = self.now_ms();
        on_pool!(self, |p| sqlx::query(
            "UPDATE conflicts SET status = 'pending', last_reason = $3, updated_at_ms = $4 \
             WHERE tenant_id = $1 AND conflict_id = $2 AND status = 'resolution_submitted'"
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(mask_text(reason))
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Records one DLQ record (once: its id is its DLQ position); answers whether it was new.
    pub async fn upsert_dead_letter(&self, u: &DeadLetterUpsert) -> Result<bool> {
        let t = u.tenant.as_str();
        let exists: Option<(i64,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT attempts FROM dead_letters WHERE tenant_id = $1 AND id = $2"
        )
        .bind(t)
        .bind(&u.id)
        .fetch_optional(p)
        .await?);
        if exists.is_some() {
            return Ok(false);
        }
        let (dk, key_version) = self.tenant_data_key(&u.tenant).await?;
        let (ct, nonce) = dk.seal_record(t, &dead_letter_object(&u.id), &u.original_value)?;
        let headers: serde_json::Map<String, Json> = u
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "INSERT INTO dead_letters (tenant_id, id, stage, error_class, reason, errors_json, \
             error_fields, attempts, original_topic, original_partition, original_offset, \
             original_key, headers_json, value_ct, value_nonce, key_version, failed_at_ms, \
             seen_at_ms, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, 'pending') ON CONFLICT (tenant_id, id) DO NOTHING"
        )
        .bind(t)
        .bind(&u.id)
        .bind(&u.stage)
        .bind(&u.error_class)
        .bind(mask_text(&u.reason))
        .bind(masked_errors(&u.errors).to_string())
        .bind(error_fields(&u.errors))
        .bind(u.attempts)
        .bind(&u.original_topic)
        .bind(i64::from(u.original_partition))
        .bind(u.original_offset)
        .bind(&u.original_key)
        .bind(Json::Object(headers).to_string())
        .bind(ct)
        .bind(nonce)
        .bind(key_version)
        .bind(u.failed_at_ms)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// A page of a tenant's dead letters, newest first, and the cursor of the next page.
    pub async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        f: &DeadLetterFilter,
    ) -> Result<(Vec<DeskDeadLetter>, Option<String>)> {
        let limit = check_limit(f.limit)?;
        let (before_ms, before_id) = parse_cursor(f.cursor.as_deref())?;
        let field = f
            .field
            .as_ref()
            .map(|x| format!("%,{},%", x.replace(',', "")));
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE tenant_id = $1 \
             AND ($2 IS NULL OR stage = $2) AND ($3 IS NULL OR error_class = $3) \
             AND ($4 IS NULL OR error_fields LIKE $4) AND ($5 IS NULL OR status = $5) \
             AND ($6 IS NULL OR original_topic = $6) \
             AND (failed_at_ms < $7 OR (failed_at_ms = $7 AND id < $8) OR $8 = '') \
             ORDER BY failed_at_ms DESC, id DESC LIMIT $9"
        );
        let rows: Vec<DeadLetterRow> =
            on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .bind(&f.stage)
                .bind(&f.error_class)
                .bind(&field)
                .bind(f.status.map(DeadLetterStatus::as_str))
                .bind(&f.original_topic)
                .bind(before_ms)
                .bind(&before_id)
                .bind(limit + 1)
                .fetch_all(p)
                .await?);
        let mut out = rows
            .into_iter()
            .map(dead_letter_from)
            .collect::<Result<Vec<_>>>()?;
        let next = if out.len() as i64 > limit {
            out.truncate(limit as usize);
            out.last().map(|d| format!("{}:{}", d.failed_at_ms, d.id))
        } else {
            None
        };
        Ok((out, next))
    }

    pub async fn get_dead_letter(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<DeskDeadLetter>> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE tenant_id = $1 AND id = $2"
        );
        let row: Option<DeadLetterRow> =
            on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(p)
                .await?);
        row.map(dead_letter_from).transpose()
    }

    /// Claims a dead letter for replay — a compare-and-set from `pending` (or from a
    /// `replaying` whose claim is older than [`REPLAY_LEASE_MS`]) to `replaying` — and opens
    /// its original record. Any other state is a [`ControlError::Conflict`]: a replayed or
    /// discarded record is never produced again.
    pub async fn claim_dead_letter_replay(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
    ) -> Result<DeadLetterReplay> {
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE dead_letters SET status = 'replaying', acted_by = $3, acted_at_ms = $4 \
             WHERE tenant_id = $1 AND id = $2 AND (status = 'pending' \
             OR (status = 'replaying' AND acted_at_ms < $5))"
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(by)
        .bind(now)
        .bind(now - REPLAY_LEASE_MS)
        .execute(p)
        .await?
        .rows_affected());
        if n == 0 {
            return Err(match self.get_dead_letter(tenant, id).await? {
                None => ControlError::NotFound {
                    what: "the dead letter".into(),
                },
                Some(d) => ControlError::Conflict {
                    what: format!(
                        "an outcome for this dead letter (it is {})",
                        d.status.as_str()
                    ),
                },
            });
        }
        let row: (String, Option<String>, String, Vec<u8>, Vec<u8>) = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT original_topic, original_key, headers_json, value_ct, value_nonce \
                 FROM dead_letters WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_str())
            .bind(id)
            .fetch_one(p)
            .await?
        });
        let (topic, key, headers, ct, nonce) = row;
        let value = match self.open_dead_letter(tenant, id, &ct, &nonce).await {
            Ok(v) => v,
            Err(e) => {
                self.finish_dead_letter_replay(tenant, id, false).await?;
                return Err(e);
            }
        };
        let headers: serde_json::Map<String, Json> =
            serde_json::from_str(&headers).unwrap_or_default();
        Ok(DeadLetterReplay {
            tenant: tenant.clone(),
            id: id.to_string(),
            topic,
            key,
            value,
            headers: headers
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                .collect(),
        })
    }

    async fn open_dead_letter(
        &self,
        tenant: &TenantId,
        id: &str,
        ct: &[u8],
        nonce: &[u8],
    ) -> Result<Vec<u8>> {
        let (dk, _) = self.tenant_data_key(tenant).await?;
        dk.open_record(tenant.as_str(), &dead_letter_object(id), ct, nonce)
    }

    /// Ends a claimed replay: `replayed` when the broker acknowledged the record, else back
    /// to `pending`.
    pub async fn finish_dead_letter_replay(
        &self,
        tenant: &TenantId,
        id: &str,
        produced: bool,
    ) -> Result<DeskDeadLetter> {
        let now = self.now_ms();
        let sql = if produced {
            "UPDATE dead_letters SET status = 'replayed', acted_at_ms = $3, replays = replays + 1 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'replaying'"
        } else {
            "UPDATE dead_letters SET status = 'pending', acted_at_ms = $3 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'replaying'"
        };
        on_pool!(self, |p| sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(id)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        self.get_dead_letter(tenant, id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: "the dead letter".into(),
            })
    }

    /// Discards a pending dead letter with a reason (stored masked).
    pub async fn discard_dead_letter(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<DeskDeadLetter> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 1000 {
            return Err(ControlError::invalid(
                "reason",
                "say why in 1 to 1000 characters",
            ));
        }
        let now = self.now_ms();
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE dead_letters SET status = 'discarded', discard_reason = $3, acted_by = $4, \
             acted_at_ms = $5 WHERE tenant_id = $1 AND id = $2 AND status = 'pending'"
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(mask_text(reason))
        .bind(by)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        let row =
            self.get_dead_letter(tenant, id)
                .await?
                .ok_or_else(|| ControlError::NotFound {
                    what: "the dead letter".into(),
                })?;
        if n == 0 {
            return Err(ControlError::Conflict {
                what: format!(
                    "an outcome for this dead letter (it is {})",
                    row.status.as_str()
                ),
            });
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::testing::on_both_backends;

    const PHONE: &str = "+15125550199";

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn raised(tenant: &str, id: &str, offset: i64) -> ConflictUpsert {
        ConflictUpsert {
            tenant: t(tenant),
            conflict_id: id.into(),
            entity: "customer".into(),
            key: "ck-1".into(),
            connector: Some("hs-marketing".into()),
            event: ConflictEvent::Pending,
            held_fields: vec!["first_name".into(), "phone".into()],
            fields: json!([
                {"field": "first_name", "current": {"value": "Pat", "source": "sf-main", "source_ts": 1},
                 "incoming": {"value": "Patricia", "source": "hs-marketing", "source_ts": 2},
                 "strategy": "manual", "outcome": "held"},
                {"field": "phone", "current": {"value": "+15125550143", "source": "sf-main", "source_ts": 1},
                 "incoming": {"value": PHONE, "source": "hs-marketing", "source_ts": 2},
                 "strategy": "manual", "outcome": "held"},
            ]),
            version: 2,
            at_ms: 1_000 + offset,
            reason: None,
            resolved_by: None,
            partition: 0,
            offset,
        }
    }

    fn later(base: &ConflictUpsert, event: ConflictEvent, offset: i64) -> ConflictUpsert {
        ConflictUpsert {
            event,
            fields: json!([]),
            held_fields: Vec::new(),
            version: 3,
            offset,
            at_ms: 5_000 + offset,
            resolved_by: Some("control:user:u1".into()),
            reason: Some("conflict.not_pending: the conflict is not pending".into()),
            ..base.clone()
        }
    }

    fn dead(tenant: &str, offset: i64, field: &str) -> DeadLetterUpsert {
        DeadLetterUpsert {
            tenant: t(tenant),
            id: format!("ns.dlq.transform:0:{offset}"),
            stage: "transform".into(),
            error_class: "mapping".into(),
            reason: "a required field is missing for pat.lee@example.com".into(),
            errors: json!([{"field": field, "code": "required", "message": "call 512-555-0199"}]),
            attempts: 1,
            original_topic: "ns.raw.salesforce".into(),
            original_partition: 2,
            original_offset: 40 + offset,
            original_key: Some(format!("{tenant}/sf-main/003")),
            original_value: format!("{{\"Phone\":\"{PHONE}\"}}").into_bytes(),
            headers: vec![("hub-tenant".into(), tenant.into())],
            failed_at_ms: 10_000 + offset,
        }
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
            || haystack
                .windows(needle.len() * 2)
                .any(|w| w == hex::encode(needle).as_bytes())
    }

    on_both_backends! {
        async fn conflicts_materialize_once_by_offset_and_follow_their_records(h) {
            let s = &h.store;
            s.create_tenant(&t("acme"), "Acme").await.unwrap();
            s.create_tenant(&t("globex"), "Globex").await.unwrap();
            let c = raised("acme", "customer:i-1", 7);
            assert!(s.upsert_conflict(&c).await.unwrap());
            // Read again after a crash: harmless.
            assert!(!s.upsert_conflict(&c).await.unwrap());
            s.upsert_conflict(&raised("acme", "customer:i-2", 8)).await.unwrap();
            s.upsert_conflict(&raised("globex", "customer:i-9", 9)).await.unwrap();

            let all = ConflictFilter { limit: 10, ..Default::default() };
            let (page, next) = s.list_conflicts(&t("acme"), &all).await.unwrap();
            assert_eq!(page.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["customer:i-2", "customer:i-1"]);
            assert!(next.is_none());
            let one = ConflictFilter { limit: 1, ..Default::default() };
            let (first, next) = s.list_conflicts(&t("acme"), &one).await.unwrap();
            let second = s.list_conflicts(&t("acme"), &ConflictFilter { cursor: next, ..one.clone() }).await.unwrap();
            assert_eq!((first[0].id.as_str(), second.0[0].id.as_str()), ("customer:i-2", "customer:i-1"));
            let vehicles = ConflictFilter { entity: Some("vehicle".into()), ..all.clone() };
            assert!(s.list_conflicts(&t("acme"), &vehicles).await.unwrap().0.is_empty());
            let by_connector = ConflictFilter { connector: Some("hs-marketing".into()), status: Some(DeskConflictStatus::Pending), ..all.clone() };
            assert_eq!(s.list_conflicts(&t("acme"), &by_connector).await.unwrap().0.len(), 2);
            // Another tenant's conflict is not there.
            assert!(s.get_conflict(&t("acme"), "customer:i-9").await.unwrap().is_none());
            assert!(s.conflict_sides(&t("acme"), "customer:i-9").await.unwrap().is_none());

            let sides = s.conflict_sides(&t("acme"), "customer:i-1").await.unwrap().unwrap();
            assert_eq!(sides[1]["incoming"]["value"], PHONE);
            let row = s.get_conflict(&t("acme"), "customer:i-1").await.unwrap().unwrap();
            assert_eq!(row.held_fields, ["first_name", "phone"]);
            assert_eq!(row.status, DeskConflictStatus::Pending);

            // Submitted, then refused by the transform: pending again, with the reason.
            s.submit_conflict_resolution(&t("acme"), "customer:i-1", "control:user:u1").await.unwrap();
            s.upsert_conflict(&later(&c, ConflictEvent::Rejected, 10)).await.unwrap();
            let row = s.get_conflict(&t("acme"), "customer:i-1").await.unwrap().unwrap();
            assert_eq!(row.status, DeskConflictStatus::Pending);
            assert!(row.last_reason.unwrap().starts_with("conflict.not_pending"));
            // Submitted twice (a retry after a crash), then applied once; the duplicate's
            // refusal changes nothing.
            s.submit_conflict_resolution(&t("acme"), "customer:i-1", "control:user:u1").await.unwrap();
            s.submit_conflict_resolution(&t("acme"), "customer:i-1", "control:user:u1").await.unwrap();
            s.upsert_conflict(&later(&c, ConflictEvent::Resolved, 11)).await.unwrap();
            s.upsert_conflict(&later(&c, ConflictEvent::Rejected, 12)).await.unwrap();
            let row = s.get_conflict(&t("acme"), "customer:i-1").await.unwrap().unwrap();
            assert_eq!(row.status, DeskConflictStatus::Resolved);
            assert_eq!(row.resolved_version, Some(3));
            assert_eq!(row.resolved_by.as_deref(), Some("control:user:u1"));
            // The sides survive the records that carry none.
            assert_eq!(s.conflict_sides(&t("acme"), "customer:i-1").await.unwrap().unwrap(), sides);
            let again = s.submit_conflict_resolution(&t("acme"), "customer:i-1", "x").await.unwrap_err();
            assert_eq!(again.code(), "conflict");
            // The reverted submission of a conflict the pipeline did not take.
            s.submit_conflict_resolution(&t("acme"), "customer:i-2", "x").await.unwrap();
            s.revert_conflict_submission(&t("acme"), "customer:i-2", "broker down").await.unwrap();
            assert_eq!(s.get_conflict(&t("acme"), "customer:i-2").await.unwrap().unwrap().status, DeskConflictStatus::Pending);

            let dump = h.raw_dump().await;
            assert!(!contains(&dump, PHONE), "a conflict's value is in the raw store");
            assert!(!contains(&dump, "Patricia"), "a conflict's value is in the raw store");
        }

        async fn dead_letters_are_kept_once_sealed_and_replayed_or_discarded_once(h) {
            let s = &h.store;
            s.create_tenant(&t("acme"), "Acme").await.unwrap();
            s.create_tenant(&t("globex"), "Globex").await.unwrap();
            let d = dead("acme", 1, "last_name");
            assert!(s.upsert_dead_letter(&d).await.unwrap());
            assert!(!s.upsert_dead_letter(&d).await.unwrap());
            s.upsert_dead_letter(&dead("acme", 2, "vin")).await.unwrap();
            s.upsert_dead_letter(&dead("globex", 3, "vin")).await.unwrap();

            let all = DeadLetterFilter { limit: 10, ..Default::default() };
            let (page, _) = s.list_dead_letters(&t("acme"), &all).await.unwrap();
            assert_eq!(page.len(), 2);
            assert!(!page[0].reason.contains("pat.lee@example.com"), "{}", page[0].reason);
            assert!(!page[0].errors.to_string().contains("555-0199"), "{}", page[0].errors);
            let vin = DeadLetterFilter { field: Some("vin".into()), ..all.clone() };
            let (page, _) = s.list_dead_letters(&t("acme"), &vin).await.unwrap();
            assert_eq!(page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["ns.dlq.transform:0:2"]);
            let sink = DeadLetterFilter { stage: Some("sink".into()), ..all.clone() };
            assert!(s.list_dead_letters(&t("acme"), &sink).await.unwrap().0.is_empty());
            assert!(s.get_dead_letter(&t("acme"), "ns.dlq.transform:0:3").await.unwrap().is_none());

            // Replay: claimed once; a second claim is refused; failure puts it back.
            let r = s.claim_dead_letter_replay(&t("acme"), &d.id, "user:u1").await.unwrap();
            assert_eq!((r.topic.as_str(), r.key.as_deref(), r.value.clone()), ("ns.raw.salesforce", d.original_key.as_deref(), d.original_value.clone()));
            assert_eq!(r.headers, d.headers);
            assert_eq!(s.claim_dead_letter_replay(&t("acme"), &d.id, "user:u2").await.unwrap_err().code(), "conflict");
            s.finish_dead_letter_replay(&t("acme"), &d.id, false).await.unwrap();
            s.claim_dead_letter_replay(&t("acme"), &d.id, "user:u1").await.unwrap();
            let done = s.finish_dead_letter_replay(&t("acme"), &d.id, true).await.unwrap();
            assert_eq!(done.status, DeadLetterStatus::Replayed);
            assert_eq!(s.claim_dead_letter_replay(&t("acme"), &d.id, "user:u1").await.unwrap_err().code(), "conflict");
            assert_eq!(s.discard_dead_letter(&t("acme"), &d.id, "user:u1", "dup").await.unwrap_err().code(), "conflict");
            // Another tenant's: not found.
            assert_eq!(s.claim_dead_letter_replay(&t("acme"), "ns.dlq.transform:0:3", "user:u1").await.unwrap_err().code(), "not_found");

            // A claim left by a node that died is claimable once its lease lapsed.
            let other = "ns.dlq.transform:0:2";
            s.pin_clock_ms(1_800_000_000_000);
            s.claim_dead_letter_replay(&t("acme"), other, "user:u1").await.unwrap();
            assert_eq!(s.claim_dead_letter_replay(&t("acme"), other, "user:u1").await.unwrap_err().code(), "conflict");
            s.pin_clock_ms(1_800_000_000_000 + REPLAY_LEASE_MS + 1);
            s.claim_dead_letter_replay(&t("acme"), other, "user:u1").await.unwrap();
            s.finish_dead_letter_replay(&t("acme"), other, false).await.unwrap();

            assert_eq!(s.discard_dead_letter(&t("acme"), other, "user:u1", " ").await.unwrap_err().code(), "invalid_input");
            let gone = s.discard_dead_letter(&t("acme"), other, "user:u1", "test record from jane@example.com").await.unwrap();
            assert_eq!(gone.status, DeadLetterStatus::Discarded);
            assert!(!gone.discard_reason.unwrap().contains("jane@example.com"));
            let pending = DeadLetterFilter { status: Some(DeadLetterStatus::Pending), ..all };
            assert!(s.list_dead_letters(&t("acme"), &pending).await.unwrap().0.is_empty());

            let dump = h.raw_dump().await;
            assert!(!contains(&dump, PHONE), "a dead letter's value is in the raw store");
        }
    }
}
