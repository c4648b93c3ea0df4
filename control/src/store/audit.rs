//! The audit log: who did what, to what, in which tenant, from where — append-only and
//! hash-chained, so that an edited, deleted or cut-off entry is found by [`ControlStore::verify_audit`].
//!
//! Each entry's `hash` is the hex SHA-256 of its canonical encoding ([`AuditRecord::canonical`]:
//! a JSON array of every field in a fixed order, the previous entry's hash last), and the
//! first entry's `prev_hash` is [`GENESIS_HASH`]. The single-row `audit_head` table holds the
//! last seq and hash: an append locks it (`SELECT … FOR UPDATE` on PostgreSQL, the write lock
//! of `BEGIN IMMEDIATE` on SQLite), so appends from several control nodes form one chain, and
//! it shows when rows were cut from the end. What the chain cannot show is an attacker who
//! rewrites the head too; exporting the log (or just the head hash) elsewhere anchors it.
//!
//! Before/after snapshots are masked with [`crate::masking::mask_personal_data`] on the way
//! in — callers may mask first, masking twice changes nothing — so the log never holds a
//! customer's e-mail address, phone number, name or card.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::TenantId;
use crate::error::{ControlError, Result};
use crate::masking::{mask_personal_data, mask_text};

use super::{Backend, ControlStore, in_tx, on_pool};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest page [`ControlStore::list_audit`] returns.
pub const MAX_AUDIT_PAGE: i64 = 10_000;

/// What a caller records; the store adds seq, time and the chain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    /// Who: `user:<id>`, `token:<id>`, `node:<name>`, `system`. Never an e-mail address
    /// (one would be masked).
    pub actor: String,
    /// The tenant acted in; `None` for platform actions (creating a tenant, a platform admin).
    pub tenant: Option<TenantId>,
    /// What, as `<subject>.<verb>`: `connector.update`, `credentials.rotate`, `job.cancel`.
    pub action: String,
    /// The object acted on, e.g. `connector/salesforce`, `user/<id>`.
    pub target: String,
    /// The object before the change (`None` for a creation).
    pub before: Option<Value>,
    /// The object after the change (`None` for a deletion).
    pub after: Option<Value>,
    /// The client's network address, when the action came over the network.
    pub client_addr: Option<String>,
}

/// An entry as stored: the caller's fields (masked), its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain, 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// When it was appended, Unix milliseconds.
    pub at_ms: i64,
    /// Who acted.
    pub actor: String,
    /// The tenant acted in; `None` for platform actions.
    pub tenant: Option<String>,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The masked before-snapshot, as JSON text.
    pub before: Option<String>,
    /// The masked after-snapshot, as JSON text.
    pub after: Option<String>,
    /// The client's network address.
    pub client_addr: Option<String>,
    /// The previous entry's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of [`AuditRecord::canonical`].
    pub hash: String,
}

impl AuditRecord {
    /// The bytes the hash covers: a JSON array of seq, at_ms, actor, tenant, action, target,
    /// before, after, client_addr and prev_hash, in that order (`null` for an absent field).
    /// JSON gives every field an unambiguous boundary, and serde_json writes a given array
    /// the same way every time. To check an export elsewhere: compact JSON, non-ASCII not
    /// escaped (Python: `json.dumps(fields, separators=(",", ":"), ensure_ascii=False)`).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            self.seq,
            self.at_ms,
            &self.actor,
            &self.tenant,
            &self.action,
            &self.target,
            &self.before,
            &self.after,
            &self.client_addr,
            &self.prev_hash,
        ))
        .expect("a tuple of strings and integers serialises")
    }

    /// The hash this record's fields call for (equal to `hash` unless it was tampered with).
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical()))
    }
}

/// One break in the chain found by [`ControlStore::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditBreak {
    /// The entry's fields no longer match its hash: it was edited after it was written.
    Edited { seq: i64 },
    /// Entries `first_seq..=last_seq` are missing from the middle of the chain.
    Deleted { first_seq: i64, last_seq: i64 },
    /// The entry's `prev_hash` is not the hash of the entry before it, though both are
    /// present and each matches its own hash: one of them was rewritten and re-hashed.
    Relinked { seq: i64, previous_seq: i64 },
    /// Entries `first_seq..=last_seq` were cut from the end (the head says they existed).
    Truncated { first_seq: i64, last_seq: i64 },
    /// The last entry is the one the head names, but its hash is not the head's.
    HeadMismatch { seq: i64 },
    /// An entry beyond the head: written around the store, not appended through it.
    Unanchored { seq: i64 },
}

impl std::fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditBreak::Edited { seq } => {
                write!(
                    f,
                    "entry {seq}: edited (its fields no longer match its hash)"
                )
            }
            AuditBreak::Deleted {
                first_seq,
                last_seq,
            } if first_seq == last_seq => {
                write!(f, "entry {first_seq}: deleted")
            }
            AuditBreak::Deleted {
                first_seq,
                last_seq,
            } => write!(f, "entries {first_seq} to {last_seq}: deleted"),
            AuditBreak::Relinked { seq, previous_seq } => write!(
                f,
                "entry {seq}: its previous hash is not entry {previous_seq}'s hash \
                 (one of them was rewritten and re-hashed)"
            ),
            AuditBreak::Truncated {
                first_seq,
                last_seq,
            } => write!(
                f,
                "entries {first_seq} to {last_seq}: cut from the end of the log"
            ),
            AuditBreak::HeadMismatch { seq } => write!(
                f,
                "entry {seq}: the last entry's hash is not the one the head recorded"
            ),
            AuditBreak::Unanchored { seq } => write!(
                f,
                "entry {seq}: beyond the recorded head (written around the store)"
            ),
        }
    }
}

/// The outcome of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries read.
    pub entries_checked: u64,
    /// The seq the head records as the last appended.
    pub head_seq: i64,
    /// Every break found, in chain order; empty when the log is intact.
    pub breaks: Vec<AuditBreak>,
}

impl VerifyReport {
    /// Whether no break was found.
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

type AuditRow = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn record_from_row(r: AuditRow) -> AuditRecord {
    let (seq, at_ms, actor, tenant, action, target, before, after, client_addr, prev_hash, hash) =
        r;
    AuditRecord {
        seq,
        at_ms,
        actor,
        tenant,
        action,
        target,
        before,
        after,
        client_addr,
        prev_hash,
        hash,
    }
}

const AUDIT_COLUMNS: &str = "seq, at_ms, actor, tenant_id, action, target, before_json, \
                             after_json, client_addr, prev_hash, hash";

/// Rows read per query while verifying or exporting.
const PAGE: i64 = 1000;

fn required(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.len() > 500 {
        return Err(ControlError::invalid(
            field,
            "must be 1 to 500 characters long",
        ));
    }
    Ok(())
}

impl ControlStore {
    /// Appends an entry at the head of the chain (masking its snapshots) and returns it as
    /// stored. Safe from any number of control nodes at once.
    pub async fn append_audit(&self, entry: AuditEntry) -> Result<AuditRecord> {
        required("actor", &entry.actor)?;
        required("action", &entry.action)?;
        required("target", &entry.target)?;
        let snapshot = |v: &Option<Value>| v.as_ref().map(|v| mask_personal_data(v).to_string());
        let before = snapshot(&entry.before);
        let after = snapshot(&entry.after);
        // SQLite has no row locks; its BEGIN IMMEDIATE already holds the database's write lock.
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let head_sql = format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}");
        let insert_sql = format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let now = self.now_ms();
        let record = in_tx!(self, |tx| {
            let (head_seq, head_hash): (i64, String) =
                sqlx::query_as(sqlx::AssertSqlSafe(head_sql.clone()))
                    .fetch_one(&mut *tx)
                    .await?;
            let mut record = AuditRecord {
                seq: head_seq + 1,
                at_ms: now,
                actor: mask_text(entry.actor.trim()),
                tenant: entry.tenant.as_ref().map(|t| t.as_str().to_string()),
                action: entry.action.trim().to_string(),
                target: mask_text(entry.target.trim()),
                before: before.clone(),
                after: after.clone(),
                client_addr: entry.client_addr.clone(),
                prev_hash: head_hash,
                hash: String::new(),
            };
            record.hash = record.compute_hash();
            sqlx::query(sqlx::AssertSqlSafe(insert_sql.clone()))
                .bind(record.seq)
                .bind(record.at_ms)
                .bind(&record.actor)
                .bind(&record.tenant)
                .bind(&record.action)
                .bind(&record.target)
                .bind(&record.before)
                .bind(&record.after)
                .bind(&record.client_addr)
                .bind(&record.prev_hash)
                .bind(&record.hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(record.seq)
                .bind(&record.hash)
                .execute(&mut *tx)
                .await?;
            record
        });
        Ok(record)
    }

    /// Entries appended in `[from_ms, to_ms)`, oldest first, at most `limit` (capped at
    /// [`MAX_AUDIT_PAGE`]): one tenant's, or with `tenant = None` every entry (platform view).
    pub async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        self.audit_page(tenant, from_ms, to_ms, 0, limit.clamp(0, MAX_AUDIT_PAGE))
            .await
    }

    async fn audit_page(
        &self,
        tenant: Option<&TenantId>,
        from_ms: i64,
        to_ms: i64,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let tenant_clause = if tenant.is_some() {
            " AND tenant_id = $5"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE at_ms >= $1 AND at_ms < $2 AND seq > $3{tenant_clause} ORDER BY seq LIMIT $4"
        );
        let rows: Vec<AuditRow> = on_pool!(self, |p| {
            let q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(from_ms)
                .bind(to_ms)
                .bind(after_seq)
                .bind(limit);
            let q = match tenant {
                Some(t) => q.bind(t.as_str()),
                None => q,
            };
            q.fetch_all(p).await?
        });
        Ok(rows.into_iter().map(record_from_row).collect())
    }

    /// Every entry in `[from_ms, to_ms)` (one tenant's, or all), oldest first, read page by
    /// page.
    async fn audit_range(
        &self,
        tenant: Option<&TenantId>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map_or(0, |r: &AuditRecord| r.seq);
            let page = self.audit_page(tenant, from_ms, to_ms, after, PAGE).await?;
            let done = (page.len() as i64) < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The entries of `[from_ms, to_ms)` as CSV with a header row, every field included (the
    /// hashes too, so an export can be verified on its own).
    pub async fn export_audit_csv(
        &self,
        tenant: Option<&TenantId>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<String> {
        let records = self.audit_range(tenant, from_ms, to_ms).await?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let csv_err = |e: csv::Error| ControlError::Config(format!("writing CSV: {e}"));
        w.write_record([
            "seq",
            "at_ms",
            "actor",
            "tenant",
            "action",
            "target",
            "before",
            "after",
            "client_addr",
            "prev_hash",
            "hash",
        ])
        .map_err(csv_err)?;
        for r in &records {
            let seq = r.seq.to_string();
            let at = r.at_ms.to_string();
            let opt = |o: &Option<String>| o.clone().unwrap_or_default();
            w.write_record([
                seq.as_str(),
                at.as_str(),
                &r.actor,
                &opt(&r.tenant),
                &r.action,
                &r.target,
                &opt(&r.before),
                &opt(&r.after),
                &opt(&r.client_addr),
                &r.prev_hash,
                &r.hash,
            ])
            .map_err(csv_err)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| ControlError::Config(format!("writing CSV: {e}")))?;
        String::from_utf8(bytes).map_err(|e| ControlError::Config(format!("writing CSV: {e}")))
    }

    /// The entries of `[from_ms, to_ms)` as a JSON array of [`AuditRecord`]s.
    pub async fn export_audit_json(
        &self,
        tenant: Option<&TenantId>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<String> {
        let records = self.audit_range(tenant, from_ms, to_ms).await?;
        serde_json::to_string_pretty(&records)
            .map_err(|e| ControlError::Config(format!("writing JSON: {e}")))
    }

    /// Walks the whole chain and names every break: edited entries, entries deleted from the
    /// middle, entries cut from the end, and entries that are not where the head says the
    /// chain ends.
    pub async fn verify_audit(&self) -> Result<VerifyReport> {
        let (head_seq, head_hash): (i64, String) = on_pool!(self, |p| sqlx::query_as(
            "SELECT seq, hash FROM audit_head WHERE id = 1"
        )
        .fetch_one(p)
        .await?);
        let mut breaks = Vec::new();
        let mut checked = 0u64;
        // The previous present entry: its seq and stored hash.
        let mut previous: (i64, String) = (0, GENESIS_HASH.to_string());
        loop {
            let page = self
                .audit_page(None, i64::MIN, i64::MAX, previous.0, PAGE)
                .await?;
            let done = (page.len() as i64) < PAGE;
            for r in page {
                checked += 1;
                if r.seq > head_seq {
                    breaks.push(AuditBreak::Unanchored { seq: r.seq });
                }
                if r.seq > previous.0 + 1 {
                    // The gap explains a prev_hash that does not match: no second report.
                    breaks.push(AuditBreak::Deleted {
                        first_seq: previous.0 + 1,
                        last_seq: r.seq - 1,
                    });
                } else if r.prev_hash != previous.1 && previous.0 > 0 {
                    breaks.push(AuditBreak::Relinked {
                        seq: r.seq,
                        previous_seq: previous.0,
                    });
                } else if r.prev_hash != previous.1 {
                    // The first entry must start from the genesis hash.
                    breaks.push(AuditBreak::Edited { seq: r.seq });
                }
                if r.compute_hash() != r.hash {
                    breaks.push(AuditBreak::Edited { seq: r.seq });
                }
                previous = (r.seq, r.hash);
            }
            if done {
                break;
            }
        }
        if previous.0 < head_seq {
            breaks.push(AuditBreak::Truncated {
                first_seq: previous.0 + 1,
                last_seq: head_seq,
            });
        } else if previous.0 == head_seq && previous.1 != head_hash {
            breaks.push(AuditBreak::HeadMismatch { seq: head_seq });
        }
        breaks.dedup();
        Ok(VerifyReport {
            entries_checked: checked,
            head_seq,
            breaks,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::testing::{Harness, on_both_backends};
    use crate::store::{Pool, StoreSettings};

    const T0: i64 = 1_800_000_000_000;

    fn entry(i: i64, tenant: Option<&str>) -> AuditEntry {
        AuditEntry {
            actor: format!("user:u{i}"),
            tenant: tenant.map(|t| TenantId::new(t).unwrap()),
            action: "connector.update".to_string(),
            target: "connector/salesforce".to_string(),
            before: Some(json!({"frequency": "daily", "n": i})),
            after: Some(json!({"frequency": "hourly", "n": i})),
            client_addr: Some("192.0.2.10".to_string()),
        }
    }

    /// Runs statements around the store, as someone with database access would.
    async fn raw(h: &Harness, statements: &[&str]) {
        for sql in statements {
            let safe = sqlx::AssertSqlSafe(sql.to_string());
            match &h.store.inner.pool {
                Pool::Sqlite(p) => sqlx::raw_sql(safe).execute(p).await.map(|_| ()),
                Pool::Postgres(p) => sqlx::raw_sql(safe).execute(p).await.map(|_| ()),
            }
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// Drops the append-only triggers: the tampering the hash chain exists to catch.
    async fn drop_guards(h: &Harness) {
        match h.store.backend() {
            Backend::Sqlite => {
                raw(
                    h,
                    &[
                        "DROP TRIGGER audit_log_no_update",
                        "DROP TRIGGER audit_log_no_delete",
                    ],
                )
                .await
            }
            Backend::Postgres => raw(h, &["DROP TRIGGER audit_log_no_update ON audit_log"]).await,
        }
    }

    on_both_backends! {
        async fn appends_chain_from_genesis_and_verify(h) {
            let s = &h.store;
            s.pin_clock_ms(T0);
            assert!(s.verify_audit().await.unwrap().is_intact());
            let mut prev = GENESIS_HASH.to_string();
            for i in 1..=5 {
                let r = s.append_audit(entry(i, Some("acme"))).await.unwrap();
                assert_eq!(r.seq, i);
                assert_eq!(r.prev_hash, prev);
                assert_eq!(r.hash, r.compute_hash());
                prev = r.hash;
            }
            let platform = AuditEntry { tenant: None, action: "tenant.create".into(), ..entry(6, None) };
            s.append_audit(platform).await.unwrap();
            let report = s.verify_audit().await.unwrap();
            assert!(report.is_intact(), "{report:?}");
            assert_eq!((report.entries_checked, report.head_seq), (6, 6));

            let acme = TenantId::new("acme").unwrap();
            assert_eq!(s.list_audit(Some(&acme), T0, T0 + 1, 100).await.unwrap().len(), 5);
            assert_eq!(s.list_audit(None, T0, T0 + 1, 100).await.unwrap().len(), 6);
            assert_eq!(s.list_audit(None, T0, T0 + 1, 2).await.unwrap().len(), 2);
            assert!(s.list_audit(None, T0 + 1, T0 + 2, 100).await.unwrap().is_empty());

            let csv = s.export_audit_csv(Some(&acme), T0, T0 + 1).await.unwrap();
            assert_eq!(csv.lines().count(), 6, "{csv}");
            assert!(csv.starts_with("seq,at_ms,actor,tenant,action,target,before,after,"));
            let exported: Vec<serde_json::Value> =
                serde_json::from_str(&s.export_audit_json(None, T0, T0 + 1).await.unwrap()).unwrap();
            assert_eq!(exported.len(), 6);
            assert_eq!(exported[5]["tenant"], serde_json::Value::Null);
        }

        async fn the_store_refuses_to_update_or_delete_entries(h) {
            h.store.append_audit(entry(1, None)).await.unwrap();
            for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"] {
                let sql = sqlx::AssertSqlSafe(sql);
                let refused = match &h.store.inner.pool {
                    Pool::Sqlite(p) => sqlx::query(sql).execute(p).await.is_err(),
                    Pool::Postgres(p) => sqlx::query(sql).execute(p).await.is_err(),
                };
                assert!(refused);
            }
            assert!(h.store.verify_audit().await.unwrap().is_intact());
        }

        async fn verify_names_the_edited_and_the_deleted_entry(h) {
            let s = &h.store;
            for i in 1..=8 {
                s.append_audit(entry(i, Some("acme"))).await.unwrap();
            }
            drop_guards(h).await;
            raw(h, &[
                "UPDATE audit_log SET after_json = '{\"frequency\":\"weekly\"}' WHERE seq = 3",
                "DELETE FROM audit_log WHERE seq = 6",
            ]).await;
            let report = s.verify_audit().await.unwrap();
            assert_eq!(
                report.breaks,
                vec![
                    AuditBreak::Edited { seq: 3 },
                    AuditBreak::Deleted { first_seq: 6, last_seq: 6 },
                ]
            );
            assert_eq!(report.entries_checked, 7);
            assert_eq!(report.breaks[0].to_string(), "entry 3: edited (its fields no longer match its hash)");
            assert_eq!(report.breaks[1].to_string(), "entry 6: deleted");
        }

        async fn verify_detects_truncation_and_a_rehashed_edit(h) {
            let s = &h.store;
            let mut records = Vec::new();
            for i in 1..=6 {
                records.push(s.append_audit(entry(i, None)).await.unwrap());
            }
            drop_guards(h).await;
            // Rewrite entry 2 and give it a matching hash: only the link from 3 shows it.
            let mut forged = records[1].clone();
            forged.actor = "user:someone-else".to_string();
            forged.hash = forged.compute_hash();
            let rehash = format!(
                "UPDATE audit_log SET actor = '{}', hash = '{}' WHERE seq = 2",
                forged.actor, forged.hash
            );
            raw(h, &[&rehash, "DELETE FROM audit_log WHERE seq >= 5"]).await;
            let report = s.verify_audit().await.unwrap();
            assert_eq!(
                report.breaks,
                vec![
                    AuditBreak::Relinked { seq: 3, previous_seq: 2 },
                    AuditBreak::Truncated { first_seq: 5, last_seq: 6 },
                ]
            );
        }

        async fn concurrent_appends_from_two_nodes_form_one_chain(h) {
            let a = h.store.clone();
            let b = h.open(MasterKey::generate(1), StoreSettings::default()).await;
            let per_node = 25;
            let run = |s: ControlStore, node: i64| async move {
                let mut tasks = Vec::new();
                for i in 0..per_node {
                    let s = s.clone();
                    tasks.push(tokio::spawn(async move {
                        s.append_audit(entry(node * 1000 + i, Some("acme"))).await.unwrap()
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            };
            tokio::join!(run(a.clone(), 1), run(b.clone(), 2));
            let report = b.verify_audit().await.unwrap();
            assert!(report.is_intact(), "{report:?}");
            assert_eq!(report.head_seq, 2 * per_node);
            assert_eq!(report.entries_checked, 2 * per_node as u64);
            b.close().await;
        }

        async fn snapshots_never_hold_an_email_or_phone(h) {
            let s = &h.store;
            let e = AuditEntry {
                actor: "user:ann@acme.example".to_string(),
                before: Some(json!({
                    "email": "ann.smith@acme.example",
                    "phone": "+1 555 010 7788",
                    "name": "Ann Smith",
                    "notes": "alt contact bob@globex.example, 555-010-9911",
                    "address": {"street": "1 Main St", "city": "Springfield"},
                })),
                after: Some(json!({"contacts": [{"mobile": "5550104422", "e_mail": "c@d.example"}]})),
                ..entry(1, Some("acme"))
            };
            let r = s.append_audit(e).await.unwrap();
            let stored = serde_json::to_string(&s.list_audit(None, i64::MIN, i64::MAX, 10).await.unwrap()).unwrap();
            for leak in [
                "ann.smith@acme.example", "ann@acme.example", "555 010 7788", "Ann Smith",
                "bob@globex.example", "555-010-9911", "5550104422", "c@d.example", "1 Main St",
                "Springfield",
            ] {
                assert!(!stored.contains(leak), "{leak} is in the audit log: {stored}");
            }
            assert!(r.before.unwrap().contains("a***@acme.example"));
            assert_eq!(r.actor, "user:a***@acme.example");
            assert!(s.verify_audit().await.unwrap().is_intact());
        }
    }
}
