//! Sync analytics per tenant and connector over a time range, from what the store records:
//! sync jobs (success rate, average sync time, records per hour), dead letters (data quality:
//! validation failures by field), and conflicts (conflict rate).
//!
//! Jobs count by when they were created, dead letters by when they failed, conflicts by when
//! they were raised — each inside `[from_ms, to_ms)`. Records per hour divide the records the
//! jobs processed by the range's length. Real-time traffic (webhooks, continuous polling) is
//! not made of jobs: its throughput is on the Prometheus side (`hub_ingest_records_total`,
//! `hub_poll_records_total`); its dead letters and conflicts are counted here like any.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::{ControlStore, on_pool};
use crate::auth::TenantId;
use crate::error::{ControlError, Result};

/// The longest range one query covers: 366 days.
pub const MAX_RANGE_MS: i64 = 366 * 24 * 3600 * 1000;

/// One connector's figures over the range (or the tenant's, summed, in [`Analytics::total`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ConnectorAnalytics {
    /// The connector (`*` in the total).
    pub connector: String,
    /// Sync jobs created in the range.
    pub jobs: i64,
    /// Of them, completed.
    pub jobs_completed: i64,
    /// Of them, failed.
    pub jobs_failed: i64,
    /// Of them, cancelled.
    pub jobs_cancelled: i64,
    /// Completed share of the jobs that ended (completed + failed); `null` with none.
    pub success_rate: Option<f64>,
    /// Mean time from start to end of the jobs that completed, milliseconds; `null` with none.
    pub avg_sync_ms: Option<f64>,
    /// Records the jobs processed.
    pub records_processed: i64,
    /// Records the jobs reported failed.
    pub records_failed: i64,
    /// Records the jobs reported dead-lettered.
    pub records_dead_lettered: i64,
    /// `records_processed` per hour of the range.
    pub records_per_hour: f64,
    /// Dead letters that failed in the range (any stage).
    pub dead_letters: i64,
    /// Data quality: validation failures by canonical field (one dead letter may name
    /// several fields; errors naming none count under `(record)`).
    pub validation_failures_by_field: BTreeMap<String, i64>,
    /// Conflicts raised in the range (held for a person or settled by a strategy).
    pub conflicts: i64,
    /// Conflicts per record processed; `null` when no job processed any.
    pub conflict_rate: Option<f64>,
}

/// A tenant's analytics over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Analytics {
    /// The tenant.
    pub tenant: String,
    /// Range start, ms since the epoch (inclusive).
    pub from_ms: i64,
    /// Range end, ms since the epoch (exclusive).
    pub to_ms: i64,
    /// One entry per connector with any activity in the range, by name.
    pub connectors: Vec<ConnectorAnalytics>,
    /// The tenant's figures, all connectors together.
    pub total: ConnectorAnalytics,
}

type JobRow = (String, String, i64, i64, i64, Option<i64>, Option<i64>);

impl ControlStore {
    /// A tenant's analytics over `[from_ms, to_ms)`, for one connector or all.
    pub async fn analytics(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        connector: Option<&str>,
    ) -> Result<Analytics> {
        if to_ms <= from_ms {
            return Err(ControlError::invalid("to_ms", "must be after from_ms"));
        }
        if to_ms.saturating_sub(from_ms) > MAX_RANGE_MS {
            return Err(ControlError::invalid(
                "from_ms",
                "the range may cover at most 366 days",
            ));
        }
        let t = tenant.as_str();
        let jobs: Vec<JobRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT connector, status, records_processed, records_failed, \
             records_dead_lettered, started_at_ms, finished_at_ms FROM sync_jobs \
             WHERE tenant_id = $1 AND created_at_ms >= $2 AND created_at_ms < $3"
        )
        .bind(t)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);
        let dead: Vec<(String, String)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT headers_json, errors_json FROM dead_letters \
             WHERE tenant_id = $1 AND failed_at_ms >= $2 AND failed_at_ms < $3"
        )
        .bind(t)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);
        let conflicts: Vec<(Option<String>, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT connector, COUNT(*) FROM conflicts \
             WHERE tenant_id = $1 AND raised_at_ms >= $2 AND raised_at_ms < $3 \
             GROUP BY connector"
        )
        .bind(t)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);

        let mut by: BTreeMap<String, Acc> = BTreeMap::new();
        for (c, status, processed, failed, dead_lettered, started, finished) in jobs {
            let a = by.entry(c).or_default();
            a.out.jobs += 1;
            match status.as_str() {
                "completed" => {
                    a.out.jobs_completed += 1;
                    if let (Some(s), Some(f)) = (started, finished) {
                        a.sync_ms_sum += (f - s).max(0) as f64;
                        a.synced += 1;
                    }
                }
                "failed" => a.out.jobs_failed += 1,
                "cancelled" => a.out.jobs_cancelled += 1,
                _ => {}
            }
            a.out.records_processed += processed;
            a.out.records_failed += failed;
            a.out.records_dead_lettered += dead_lettered;
        }
        for (headers, errors) in dead {
            let c = serde_json::from_str::<serde_json::Value>(&headers)
                .ok()
                .and_then(|h| {
                    h.get("hub-connector")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "(unknown)".to_string());
            let a = by.entry(c).or_default();
            a.out.dead_letters += 1;
            let errors: Vec<serde_json::Value> = serde_json::from_str(&errors).unwrap_or_default();
            let mut fields: Vec<String> = errors
                .iter()
                .map(|e| {
                    e.get("field")
                        .and_then(|f| f.as_str())
                        .filter(|f| !f.is_empty())
                        .unwrap_or("(record)")
                        .to_string()
                })
                .collect();
            fields.sort();
            fields.dedup();
            for f in fields {
                *a.out.validation_failures_by_field.entry(f).or_default() += 1;
            }
        }
        for (c, n) in conflicts {
            by.entry(c.unwrap_or_else(|| "(unknown)".to_string()))
                .or_default()
                .out
                .conflicts += n;
        }
        if let Some(only) = connector {
            by.retain(|c, _| c == only);
        }
        let hours = (to_ms - from_ms) as f64 / 3_600_000.0;
        let mut total = Acc::default();
        let connectors = by
            .into_iter()
            .map(|(name, a)| {
                total.add(&a);
                a.finish(name, hours)
            })
            .collect();
        Ok(Analytics {
            tenant: t.to_string(),
            from_ms,
            to_ms,
            connectors,
            total: total.finish("*".to_string(), hours),
        })
    }
}

#[derive(Default)]
struct Acc {
    out: ConnectorAnalytics,
    sync_ms_sum: f64,
    synced: i64,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        let (a, b) = (&mut self.out, &o.out);
        a.jobs += b.jobs;
        a.jobs_completed += b.jobs_completed;
        a.jobs_failed += b.jobs_failed;
        a.jobs_cancelled += b.jobs_cancelled;
        a.records_processed += b.records_processed;
        a.records_failed += b.records_failed;
        a.records_dead_lettered += b.records_dead_lettered;
        a.dead_letters += b.dead_letters;
        a.conflicts += b.conflicts;
        for (f, n) in &b.validation_failures_by_field {
            *a.validation_failures_by_field.entry(f.clone()).or_default() += n;
        }
        self.sync_ms_sum += o.sync_ms_sum;
        self.synced += o.synced;
    }

    fn finish(self, connector: String, hours: f64) -> ConnectorAnalytics {
        let mut out = self.out;
        out.connector = connector;
        let ended = out.jobs_completed + out.jobs_failed;
        out.success_rate = (ended > 0).then(|| out.jobs_completed as f64 / ended as f64);
        out.avg_sync_ms = (self.synced > 0).then(|| self.sync_ms_sum / self.synced as f64);
        out.records_per_hour = if hours > 0.0 {
            out.records_processed as f64 / hours
        } else {
            0.0
        };
        out.conflict_rate = (out.records_processed > 0)
            .then(|| out.conflicts as f64 / out.records_processed as f64);
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::auth::TenantId;
    use crate::store::desk::{ConflictEvent, ConflictUpsert, DeadLetterUpsert};
    use crate::store::jobs::JobProgress;
    use crate::store::testing::on_both_backends;

    const T0: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn dead_letter(tenant: &str, n: i64, connector: &str, fields: &[&str]) -> DeadLetterUpsert {
        DeadLetterUpsert {
            tenant: t(tenant),
            id: format!("ns.dlq.transform:0:{n}"),
            stage: "map".into(),
            error_class: "validation".into(),
            reason: "invalid".into(),
            errors: json!(
                fields
                    .iter()
                    .map(|f| json!({"field": f, "code": "invalid", "message": "bad"}))
                    .collect::<Vec<_>>()
            ),
            attempts: 1,
            original_topic: "ns.raw.salesforce".into(),
            original_partition: 0,
            original_offset: n,
            original_key: None,
            original_value: b"{}".to_vec(),
            headers: vec![
                ("hub-tenant".into(), tenant.into()),
                ("hub-connector".into(), connector.into()),
            ],
            failed_at_ms: T0 + n * 1000,
        }
    }

    on_both_backends! {
        async fn analytics_sum_jobs_dead_letters_and_conflicts_per_connector(h) {
            let s = &h.store;
            let acme = t("acme");
            s.create_tenant(&acme, "Acme").await.unwrap();
            s.create_tenant(&t("globex"), "Globex").await.unwrap();
            // Three sf jobs (two completed in 10 s and 20 s, one failed), one hs job
            // cancelled; one globex job that must not count.
            let run = |connector: &'static str, tenant: TenantId, ms: i64, processed: i64, error: Option<&'static str>| {
                let s = s.clone();
                async move {
                    s.pin_clock_ms(T0 + ms);
                    let j = s.sync_now(&tenant, connector).await.unwrap();
                    s.start_job(&j.id, "n1", 60_000).await.unwrap();
                    s.pin_clock_ms(T0 + ms + processed * 100);
                    let p = JobProgress { progress_pct: 100.0, records_processed: processed, records_failed: 1, records_dead_lettered: 2 };
                    s.finish_job(&j.id, "n1", &p, error).await.unwrap();
                }
            };
            run("sf", acme.clone(), 0, 100, None).await;
            run("sf", acme.clone(), HOUR, 200, None).await;
            run("sf", acme.clone(), 2 * HOUR, 0, Some("vendor_unavailable")).await;
            run("sf", t("globex"), 0, 999, None).await;
            s.pin_clock_ms(T0 + 3 * HOUR);
            let j = s.sync_now(&acme, "hs").await.unwrap();
            s.cancel_job(&acme, &j.id).await.unwrap();
            // Dead letters: two on sf naming email (one also phone), one on hs naming none.
            s.upsert_dead_letter(&dead_letter("acme", 1, "sf", &["email", "phone"])).await.unwrap();
            s.upsert_dead_letter(&dead_letter("acme", 2, "sf", &["email"])).await.unwrap();
            s.upsert_dead_letter(&dead_letter("acme", 3, "hs", &[""])).await.unwrap();
            // Three conflicts raised by sf.
            for n in 0..3 {
                s.upsert_conflict(&ConflictUpsert {
                    tenant: acme.clone(),
                    conflict_id: format!("c{n}"),
                    entity: "customer".into(),
                    key: format!("k{n}"),
                    connector: Some("sf".into()),
                    event: ConflictEvent::Pending,
                    held_fields: vec!["email".into()],
                    fields: json!({"email": {"current": "a", "incoming": "b"}}),
                    version: 1,
                    at_ms: T0 + n * 1000,
                    reason: None,
                    resolved_by: None,
                    partition: 0,
                    offset: n,
                }).await.unwrap();
            }

            let a = s.analytics(&acme, T0, T0 + 10 * HOUR, None).await.unwrap();
            assert_eq!(a.connectors.len(), 2, "{a:?}");
            let sf = a.connectors.iter().find(|c| c.connector == "sf").unwrap();
            assert_eq!((sf.jobs, sf.jobs_completed, sf.jobs_failed), (3, 2, 1));
            assert!((sf.success_rate.unwrap() - 2.0 / 3.0).abs() < 1e-9);
            assert_eq!(sf.avg_sync_ms, Some(15_000.0));
            assert_eq!(sf.records_processed, 300);
            assert!((sf.records_per_hour - 30.0).abs() < 1e-9);
            assert_eq!(sf.dead_letters, 2);
            assert_eq!(sf.validation_failures_by_field.get("email"), Some(&2));
            assert_eq!(sf.validation_failures_by_field.get("phone"), Some(&1));
            assert_eq!(sf.conflicts, 3);
            assert!((sf.conflict_rate.unwrap() - 0.01).abs() < 1e-9);
            let hs = a.connectors.iter().find(|c| c.connector == "hs").unwrap();
            assert_eq!((hs.jobs, hs.jobs_cancelled), (1, 1));
            assert_eq!(hs.success_rate, None);
            assert_eq!(hs.validation_failures_by_field.get("(record)"), Some(&1));
            assert_eq!(a.total.jobs, 4);
            assert_eq!(a.total.dead_letters, 3);
            assert_eq!(a.total.records_processed, 300);

            // One connector, and a range that leaves the later jobs out.
            let one = s.analytics(&acme, T0, T0 + HOUR, Some("sf")).await.unwrap();
            assert_eq!(one.connectors.len(), 1);
            assert_eq!(one.connectors[0].jobs, 1);
            assert_eq!(one.total.records_processed, 100);
            // Bad ranges name the field.
            let e = s.analytics(&acme, T0, T0, None).await.unwrap_err();
            assert_eq!(e.code(), "invalid_input");
        }
    }
}
