//! `SqlStore`: the SQL table sink's database (SQLite by default, PostgreSQL for several
//! nodes), and the write ledger of the API sinks.
//!
//! Exactly-once into SQL: [`SqlStore::write_batch`] upserts the rows and moves the consumer's
//! stored offsets in one transaction, after re-reading those offsets under a lock. A batch, or
//! part of one, that was applied already — a redelivery after a crash, a zombie consumer after
//! a rebalance — is recognised by its offsets and skipped inside the same transaction, so the
//! database itself is the fence, not only the runner's cache.
//!
//! The SQL is portable: `INSERT ... ON CONFLICT ... DO UPDATE ... WHERE ... RETURNING` runs on
//! both backends; only placeholders (`?` / `$n`) and the double type differ.

mod exec;
mod schema;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hub_schemas::Entity;
use hub_schemas::records::now_ms;
use serde_json::{Map, Value as Json};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use exec::Backend;
use exec::{Out, Pool, Sql, Val};
pub use schema::{Column, ColumnKind, TableDef};

use crate::error::{Result, SinkError};
use crate::offsets::Position;
use crate::record::CanonicalRecord;

/// Most rows in one multi-row upsert. Larger statements cut round trips; beyond a few hundred
/// rows the gain is gone and the statement text only grows.
const MAX_ROWS_PER_STATEMENT: usize = 256;
/// Most keys in one ledger look-up or ledger upsert statement.
const MAX_LEDGER_ROWS: usize = 256;
const PG_MIGRATION_LOCK: i64 = 0x6875_625f_7369_6e6b; // "hub_sink"

/// What happened to one record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// Inserted or updated.
    Written,
    /// The table holds a newer version; the record was ignored.
    Stale,
    /// Its offset is below the consumer's stored offset: applied by an earlier transaction.
    AlreadyApplied,
}

/// One row as reconciliation sees it (see [`SqlStore::reconciliation_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationRow {
    pub ingest_id: String,
    pub applied_count: i64,
    pub written_at_ms: i64,
    pub source_updated_at_ms: i64,
}

/// The outcome of [`SqlStore::write_batch`], one entry per input record, in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub outcomes: Vec<UpsertOutcome>,
}

impl BatchOutcome {
    fn count(&self, o: UpsertOutcome) -> usize {
        self.outcomes.iter().filter(|x| **x == o).count()
    }
    pub fn written(&self) -> usize {
        self.count(UpsertOutcome::Written)
    }
    pub fn stale(&self) -> usize {
        self.count(UpsertOutcome::Stale)
    }
    pub fn already_applied(&self) -> usize {
        self.count(UpsertOutcome::AlreadyApplied)
    }
}

/// What the ledger holds for one (target, tenant, entity, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub version: i64,
    pub content_hash: String,
    pub written_at: i64,
}

/// The SQL store. Cheap to clone (one pool, shared).
#[derive(Debug, Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    tables: Vec<TableDef>,
    /// Upsert statements by (entity, rows): only the sizes [`chunk_sizes`] produces.
    upserts: Mutex<HashMap<(Entity, usize), Arc<str>>>,
}

/// Splits `n` rows into statements of `max` rows and then powers of two, so that a handful of
/// statement shapes per table are prepared once and reused from the statement cache.
fn chunk_sizes(mut n: usize, max: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n >= max {
        out.push(max);
        n -= max;
    }
    while n > 0 {
        let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
        out.push(p);
        n -= p;
    }
    out
}

/// Splits records into rounds in which each key occurs at most once, keeping each key's order:
/// round `r` holds the `r`-th occurrence of every key. PostgreSQL refuses an `ON CONFLICT DO
/// UPDATE` that touches a row twice in one statement; applying rounds in order gives the same
/// result as applying the records one by one (and counts each application).
fn rounds<'a>(records: impl IntoIterator<Item = (usize, &'a CanonicalRecord)>) -> Vec<Vec<usize>> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, r) in records {
        let n = seen.entry((r.tenant.as_str(), r.key.as_str())).or_insert(0);
        if out.len() <= *n {
            out.push(Vec::new());
        }
        out[*n].push(i);
        *n += 1;
    }
    out
}

impl SqlStore {
    /// Connects to `sqlite://FILE` (created if missing; WAL, `synchronous=NORMAL`, a busy
    /// timeout) or `postgres://...`, and creates or extends the tables.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            // An in-memory database lives as long as its one connection does.
            let pool_options = if in_memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(4)
            };
            Pool::Sqlite(pool_options.connect_with(options).await?)
        } else {
            return Err(SinkError::Config(
                "the SQL store URL must start with sqlite:// or postgres://".to_string(),
            ));
        };
        let store = SqlStore {
            inner: Arc::new(Inner {
                pool,
                tables: Entity::ALL.iter().map(|e| TableDef::of(*e)).collect(),
                upserts: Mutex::new(HashMap::new()),
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.pool.backend()
    }

    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    fn table(&self, entity: Entity) -> &TableDef {
        &self.inner.tables[entity as usize]
    }

    /// Every statement that creates the store's tables on `backend`, in order.
    pub fn ddl(backend: Backend) -> Vec<String> {
        let mut out = vec![
            schema::CREATE_OFFSETS.to_string(),
            schema::CREATE_LEDGER.to_string(),
        ];
        out.extend(
            Entity::ALL
                .iter()
                .map(|e| TableDef::of(*e).create_sql(backend)),
        );
        out
    }

    /// Creates missing tables and adds columns that a newer schema brought (schemas only evolve
    /// compatibly: fields are added, never retyped). Idempotent; on PostgreSQL, concurrent
    /// nodes serialise on an advisory lock.
    async fn migrate(&self) -> Result<()> {
        let backend = self.backend();
        let mut tx = self.inner.pool.begin().await?;
        if backend == Backend::Postgres {
            tx.execute(
                Sql::Built(format!("SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})").into()),
                vec![],
            )
            .await?;
        }
        tx.execute(schema::CREATE_OFFSETS, vec![]).await?;
        tx.execute(schema::CREATE_LEDGER, vec![]).await?;
        let list_columns: &'static str = match backend {
            Backend::Sqlite => "SELECT name FROM pragma_table_info(?)",
            Backend::Postgres => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        for table in &self.inner.tables {
            tx.execute(table.create_sql(backend), vec![]).await?;
            let existing: HashSet<String> = tx
                .fetch(
                    list_columns,
                    vec![Val::Text(Some(table.table.clone()))],
                    &[Out::Text],
                )
                .await?
                .into_iter()
                .filter_map(|row| row[0].as_text().map(str::to_string))
                .collect();
            for column in table.columns.iter().filter(|c| !existing.contains(&c.name)) {
                tx.execute(table.add_column_sql(column, backend), vec![])
                    .await?;
            }
            for (name, ty) in schema::HUB_COLUMNS
                .iter()
                .filter(|(n, _)| !existing.contains(*n))
            {
                tx.execute(
                    format!("ALTER TABLE {} ADD COLUMN {name} {ty}", table.table),
                    vec![],
                )
                .await?;
            }
        }
        tx.commit().await
    }

    fn upsert_sql(&self, entity: Entity, rows: usize) -> Arc<str> {
        let mut cache = self.inner.upserts.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry((entity, rows))
            .or_insert_with(|| self.table(entity).upsert_sql(self.backend(), rows).into())
            .clone()
    }

    fn rows_per_statement(&self, entity: Entity) -> usize {
        // A power of two, so that chunk_sizes never needs a size above it.
        let fit = self.backend().max_params() / self.table(entity).params_per_row();
        let cap = MAX_ROWS_PER_STATEMENT.min(fit).max(1);
        1usize << (usize::BITS - 1 - cap.leading_zeros())
    }

    /// Applies `records` for `consumer` in one transaction and moves its stored offsets to
    /// the highest offset + 1 per partition. See [`SqlStore::write_batch_at`].
    pub async fn write_batch(
        &self,
        consumer: &str,
        records: &[CanonicalRecord],
    ) -> Result<BatchOutcome> {
        let positions = crate::offsets::positions_after(
            records
                .iter()
                .map(|r| (r.topic.as_str(), r.partition, r.offset)),
        );
        self.write_batch_at(consumer, records, &positions).await
    }

    /// Applies `records` and stores `positions` (and at least each record's offset + 1) as
    /// `consumer`'s next offsets, in one transaction. Positions cover messages consumed but not
    /// written (other tenants' records, dead letters), so the stored offsets say how far the
    /// consumer got, not only what it wrote.
    ///
    /// Inside the transaction the stored offsets are read under a lock first: a record below
    /// them was applied already and is skipped ([`UpsertOutcome::AlreadyApplied`]); offsets
    /// never move backwards. A record older than the stored row is [`UpsertOutcome::Stale`].
    pub async fn write_batch_at(
        &self,
        consumer: &str,
        records: &[CanonicalRecord],
        positions: &[Position],
    ) -> Result<BatchOutcome> {
        let mut outcomes = vec![UpsertOutcome::Written; records.len()];
        if records.is_empty() && positions.is_empty() {
            return Ok(BatchOutcome { outcomes });
        }
        let backend = self.backend();
        let mut tx = self.inner.pool.begin().await?;

        // 1. Lock and read the stored offsets of every partition the batch touches.
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for p in positions {
            next.entry((p.topic.clone(), p.partition))
                .or_insert(p.next_offset);
        }
        for r in records {
            next.entry((r.topic.clone(), r.partition))
                .or_insert(r.offset + 1);
        }
        let lock_sql: &'static str = match backend {
            // A no-op update both creates the row on first use and locks it (PostgreSQL's row
            // lock; SQLite's BEGIN IMMEDIATE has locked the database already).
            Backend::Sqlite => {
                "INSERT INTO hub_sink_offsets (consumer, topic, kafka_partition, next_offset) VALUES (?, ?, ?, 0) \
                 ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = hub_sink_offsets.next_offset \
                 RETURNING next_offset"
            }
            Backend::Postgres => {
                "INSERT INTO hub_sink_offsets (consumer, topic, kafka_partition, next_offset) VALUES ($1, $2, $3, 0) \
                 ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = hub_sink_offsets.next_offset \
                 RETURNING next_offset"
            }
        };
        let mut stored: HashMap<(String, i32), i64> = HashMap::new();
        let mut partitions: Vec<&(String, i32)> = next.keys().collect();
        partitions.sort(); // a fixed lock order: two writers cannot deadlock on these rows
        for (topic, partition) in partitions {
            let rows = tx
                .fetch(
                    lock_sql,
                    vec![
                        Val::Text(Some(consumer.to_string())),
                        Val::Text(Some(topic.clone())),
                        Val::I32(Some(*partition)),
                    ],
                    &[Out::I64],
                )
                .await?;
            let value = rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
            stored.insert((topic.clone(), *partition), value);
        }

        // 2. Skip what was applied already; 3. upsert the rest, entity by entity, in rounds.
        let mut by_entity: HashMap<Entity, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            if stored
                .get(&(r.topic.clone(), r.partition))
                .is_some_and(|s| r.offset < *s)
            {
                outcomes[i] = UpsertOutcome::AlreadyApplied;
            } else {
                by_entity.entry(r.entity).or_default().push(i);
            }
        }
        let written_at = now_ms();
        let mut entities: Vec<Entity> = by_entity.keys().copied().collect();
        entities.sort();
        for entity in entities {
            let table = self.table(entity);
            let max_rows = self.rows_per_statement(entity);
            for mut round in rounds(by_entity[&entity].iter().map(|i| (*i, &records[*i]))) {
                // Keys are unique within a round, so ordering it changes nothing but the order
                // PostgreSQL locks rows in: two writers touching the same keys cannot deadlock.
                round.sort_by(|a, b| {
                    (&records[*a].tenant, &records[*a].key)
                        .cmp(&(&records[*b].tenant, &records[*b].key))
                });
                let mut start = 0;
                for size in chunk_sizes(round.len(), max_rows) {
                    let chunk = &round[start..start + size];
                    start += size;
                    let mut args = Vec::with_capacity(size * table.params_per_row());
                    for &i in chunk {
                        let r = &records[i];
                        let obj = r.doc.as_object();
                        for c in &table.columns {
                            args.push(match c.name.as_str() {
                                "tenant_id" => Val::Text(Some(r.tenant.clone())),
                                "key" => Val::Text(Some(r.key.clone())),
                                name => c.kind.value(obj.and_then(|o| o.get(name))),
                            });
                        }
                        args.push(Val::I64(Some(written_at)));
                        args.push(Val::Text(Some(r.topic.clone())));
                        args.push(Val::I32(Some(r.partition)));
                        args.push(Val::I64(Some(r.offset)));
                    }
                    let applied: HashSet<(String, String)> = tx
                        .fetch(self.upsert_sql(entity, size), args, &[Out::Text, Out::Text])
                        .await?
                        .into_iter()
                        .filter_map(|row| {
                            Some((row[0].as_text()?.to_string(), row[1].as_text()?.to_string()))
                        })
                        .collect();
                    for &i in chunk {
                        let r = &records[i];
                        if !applied.contains(&(r.tenant.clone(), r.key.clone())) {
                            outcomes[i] = UpsertOutcome::Stale;
                        }
                    }
                }
            }
        }

        // 4. Move the offsets forward (never back).
        let update_sql: &'static str = match backend {
            Backend::Sqlite => {
                "UPDATE hub_sink_offsets SET next_offset = ? \
                 WHERE consumer = ? AND topic = ? AND kafka_partition = ? AND next_offset < ?"
            }
            Backend::Postgres => {
                "UPDATE hub_sink_offsets SET next_offset = $1 \
                 WHERE consumer = $2 AND topic = $3 AND kafka_partition = $4 AND next_offset < $1"
            }
        };
        for ((topic, partition), mut target) in next {
            for r in records
                .iter()
                .filter(|r| r.topic == topic && r.partition == partition)
            {
                target = target.max(r.offset + 1);
            }
            for p in positions
                .iter()
                .filter(|p| p.topic == topic && p.partition == partition)
            {
                target = target.max(p.next_offset);
            }
            if stored
                .get(&(topic.clone(), partition))
                .is_some_and(|s| *s >= target)
            {
                continue;
            }
            let mut args = vec![
                Val::I64(Some(target)),
                Val::Text(Some(consumer.to_string())),
                Val::Text(Some(topic)),
                Val::I32(Some(partition)),
            ];
            if backend == Backend::Sqlite {
                args.push(Val::I64(Some(target)));
            }
            tx.execute(update_sql, args).await?;
        }
        tx.commit().await?;
        Ok(BatchOutcome { outcomes })
    }

    /// The next offset `consumer` must apply on `topic`/`partition`, if it stored one.
    pub async fn next_offsets(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>> {
        let sql: &'static str = match self.backend() {
            Backend::Sqlite => {
                "SELECT next_offset FROM hub_sink_offsets WHERE consumer = ? AND topic = ? AND kafka_partition = ?"
            }
            Backend::Postgres => {
                "SELECT next_offset FROM hub_sink_offsets WHERE consumer = $1 AND topic = $2 AND kafka_partition = $3"
            }
        };
        let rows = self
            .inner
            .pool
            .fetch(
                sql,
                vec![
                    Val::Text(Some(consumer.to_string())),
                    Val::Text(Some(topic.to_string())),
                    Val::I32(Some(partition)),
                ],
                &[Out::I64],
            )
            .await?;
        Ok(rows.first().and_then(|r| r[0].as_i64()))
    }

    /// One row of an entity's table as JSON (nested fields parsed back), with the `hub_*`
    /// columns: what reconciliation and tests compare with what was produced.
    pub async fn row(
        &self,
        entity: Entity,
        tenant: &str,
        key: &str,
    ) -> Result<Option<Map<String, Json>>> {
        let table = self.table(entity);
        let backend = self.backend();
        let mut sql = String::from("SELECT ");
        let mut out = Vec::new();
        for c in &table.columns {
            sql.push_str(&format!("\"{}\", ", c.name));
            out.push(match c.kind {
                ColumnKind::Text | ColumnKind::Json => Out::Text,
                ColumnKind::BigInt => Out::I64,
                ColumnKind::Boolean => Out::Bool,
                ColumnKind::Double => Out::F64,
            });
        }
        sql.push_str(
            "hub_applied_count, hub_written_at, hub_topic, hub_partition, hub_offset FROM ",
        );
        sql.push_str(&format!(
            "{} WHERE \"tenant_id\" = {} AND \"key\" = {}",
            table.table,
            backend.placeholder(1),
            backend.placeholder(2)
        ));
        out.extend([Out::I64, Out::I64, Out::Text, Out::I32, Out::I64]);
        let rows = self
            .inner
            .pool
            .fetch(
                sql,
                vec![
                    Val::Text(Some(tenant.to_string())),
                    Val::Text(Some(key.to_string())),
                ],
                &out,
            )
            .await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let names = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .chain(
                schema::HUB_COLUMNS
                    .iter()
                    .map(|(n, _)| (*n, ColumnKind::BigInt)),
            );
        let mut obj = Map::new();
        for ((name, kind), v) in names.zip(row) {
            let json = match (kind, v) {
                (ColumnKind::Json, Val::Text(Some(s))) => {
                    serde_json::from_str(&s).unwrap_or(Json::String(s))
                }
                (_, Val::Text(x)) => x.map_or(Json::Null, Json::String),
                (_, Val::I64(x)) => x.map_or(Json::Null, Json::from),
                (_, Val::I32(x)) => x.map_or(Json::Null, Json::from),
                (_, Val::Bool(x)) => x.map_or(Json::Null, Json::Bool),
                (_, Val::F64(x)) => x
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number),
            };
            obj.insert(name.to_string(), json);
        }
        Ok(Some(obj))
    }

    /// How many rows of `entity` a tenant has (soft-deleted ones included).
    /// What reconciliation compares with what ingest accepted: for every row of a tenant,
    /// the ingest id, how many times an upsert was applied, when it was written, and the
    /// source's timestamp.
    pub async fn reconciliation_rows(
        &self,
        entity: Entity,
        tenant: &str,
    ) -> Result<Vec<ReconciliationRow>> {
        let sql = format!(
            "SELECT \"ingest_id\", hub_applied_count, hub_written_at, \"source_updated_at\" FROM {} WHERE \"tenant_id\" = {}",
            self.table(entity).table,
            self.backend().placeholder(1)
        );
        let rows = self
            .inner
            .pool
            .fetch(
                sql,
                vec![Val::Text(Some(tenant.to_string()))],
                &[Out::Text, Out::I64, Out::I64, Out::I64],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ReconciliationRow {
                ingest_id: r[0].as_text().unwrap_or_default().to_string(),
                applied_count: r[1].as_i64().unwrap_or(0),
                written_at_ms: r[2].as_i64().unwrap_or(0),
                source_updated_at_ms: r[3].as_i64().unwrap_or(0),
            })
            .collect())
    }

    pub async fn count_rows(&self, entity: Entity, tenant: &str) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE \"tenant_id\" = {}",
            self.table(entity).table,
            self.backend().placeholder(1)
        );
        let rows = self
            .inner
            .pool
            .fetch(sql, vec![Val::Text(Some(tenant.to_string()))], &[Out::I64])
            .await?;
        Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
    }

    /// Which records still need sending to `target` (in input order): a record is skipped when
    /// the ledger holds the same content or a newer version for its key — a replay sends
    /// nothing new. Within the batch, a record identical to one before it is skipped too.
    pub async fn ledger_pending(
        &self,
        target: &str,
        records: &[CanonicalRecord],
    ) -> Result<Vec<bool>> {
        let backend = self.backend();
        let mut known: HashMap<(String, Entity, String), (i64, String)> = HashMap::new();
        let mut groups: HashMap<(&str, Entity), Vec<&str>> = HashMap::new();
        for r in records {
            let keys = groups.entry((r.tenant.as_str(), r.entity)).or_default();
            if !keys.contains(&r.key.as_str()) {
                keys.push(r.key.as_str());
            }
        }
        for ((tenant, entity), keys) in groups {
            for chunk in keys.chunks(MAX_LEDGER_ROWS) {
                let mut sql = format!(
                    "SELECT record_key, version, content_hash FROM hub_write_ledger \
                     WHERE target = {} AND tenant = {} AND entity = {} AND record_key IN (",
                    backend.placeholder(1),
                    backend.placeholder(2),
                    backend.placeholder(3)
                );
                let mut args = vec![
                    Val::Text(Some(target.to_string())),
                    Val::Text(Some(tenant.to_string())),
                    Val::Text(Some(entity.name().to_string())),
                ];
                for (i, k) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&backend.placeholder(4 + i));
                    args.push(Val::Text(Some(k.to_string())));
                }
                sql.push(')');
                for row in self
                    .inner
                    .pool
                    .fetch(sql, args, &[Out::Text, Out::I64, Out::Text])
                    .await?
                {
                    if let (Some(k), Some(v), Some(h)) =
                        (row[0].as_text(), row[1].as_i64(), row[2].as_text())
                    {
                        known.insert(
                            (tenant.to_string(), entity, k.to_string()),
                            (v, h.to_string()),
                        );
                    }
                }
            }
        }
        Ok(records
            .iter()
            .map(|r| {
                let hash = r.content_hash();
                let slot = (r.tenant.clone(), r.entity, r.key.clone());
                let send = match known.get(&slot) {
                    Some((version, h)) => *h != hash && *version <= r.source_updated_at,
                    None => true,
                };
                if send {
                    known.insert(slot, (r.source_updated_at, hash));
                }
                send
            })
            .collect())
    }

    /// Records that `target` acknowledged these records. A key's entry only moves to a newer
    /// (or equal) version.
    pub async fn ledger_record(&self, target: &str, records: &[&CanonicalRecord]) -> Result<()> {
        // The last record per key with the highest version wins; one row per key per statement.
        let mut latest: HashMap<(&str, Entity, &str), &CanonicalRecord> = HashMap::new();
        for r in records {
            let slot = latest
                .entry((r.tenant.as_str(), r.entity, r.key.as_str()))
                .or_insert(r);
            if r.source_updated_at >= slot.source_updated_at {
                *slot = r;
            }
        }
        if latest.is_empty() {
            return Ok(());
        }
        let backend = self.backend();
        let written_at = now_ms();
        let rows: Vec<&CanonicalRecord> = latest.into_values().collect();
        let mut tx = self.inner.pool.begin().await?;
        for chunk in rows.chunks(MAX_LEDGER_ROWS) {
            let mut sql = String::from(
                "INSERT INTO hub_write_ledger (target, tenant, entity, record_key, version, content_hash, written_at) VALUES ",
            );
            let mut args = Vec::with_capacity(chunk.len() * 7);
            let mut n = 0;
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for j in 0..7 {
                    n += 1;
                    if j > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&backend.placeholder(n));
                }
                sql.push(')');
                args.extend([
                    Val::Text(Some(target.to_string())),
                    Val::Text(Some(r.tenant.clone())),
                    Val::Text(Some(r.entity.name().to_string())),
                    Val::Text(Some(r.key.clone())),
                    Val::I64(Some(r.source_updated_at)),
                    Val::Text(Some(r.content_hash())),
                    Val::I64(Some(written_at)),
                ]);
            }
            sql.push_str(
                " ON CONFLICT (target, tenant, entity, record_key) DO UPDATE SET version = excluded.version, \
                 content_hash = excluded.content_hash, written_at = excluded.written_at \
                 WHERE hub_write_ledger.version <= excluded.version",
            );
            tx.execute(sql, args).await?;
        }
        tx.commit().await
    }

    /// The ledger's entry for one record, e.g. to recognise the echo of the hub's own write
    /// when the vendor's webhook reports it back.
    pub async fn ledger_entry(
        &self,
        target: &str,
        tenant: &str,
        entity: Entity,
        key: &str,
    ) -> Result<Option<LedgerEntry>> {
        let sql: &'static str = match self.backend() {
            Backend::Sqlite => {
                "SELECT version, content_hash, written_at FROM hub_write_ledger \
                 WHERE target = ? AND tenant = ? AND entity = ? AND record_key = ?"
            }
            Backend::Postgres => {
                "SELECT version, content_hash, written_at FROM hub_write_ledger \
                 WHERE target = $1 AND tenant = $2 AND entity = $3 AND record_key = $4"
            }
        };
        let rows = self
            .inner
            .pool
            .fetch(
                sql,
                vec![
                    Val::Text(Some(target.to_string())),
                    Val::Text(Some(tenant.to_string())),
                    Val::Text(Some(entity.name().to_string())),
                    Val::Text(Some(key.to_string())),
                ],
                &[Out::I64, Out::Text, Out::I64],
            )
            .await?;
        Ok(rows.into_iter().next().and_then(|r| {
            Some(LedgerEntry {
                version: r[0].as_i64()?,
                content_hash: r[1].as_text()?.to_string(),
                written_at: r[2].as_i64()?,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_full_statements_then_powers_of_two() {
        assert_eq!(chunk_sizes(0, 256), Vec::<usize>::new());
        assert_eq!(chunk_sizes(600, 256), vec![256, 256, 64, 16, 8]);
        assert_eq!(chunk_sizes(7, 256), vec![4, 2, 1]);
        assert_eq!(chunk_sizes(600, 256).iter().sum::<usize>(), 600);
    }
}
