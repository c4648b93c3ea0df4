//! `ControlStore`: the control plane's database — SQLite embedded by default, PostgreSQL when
//! several control nodes share it.
//!
//! One SQL text serves both backends: statements use `$n` placeholders, which sqlx's SQLite
//! driver binds by number too, and only portable SQL (`ON CONFLICT`, no `RETURNING` where a
//! row count will do). The schema is the one place the dialects differ (`BLOB`/`BYTEA`,
//! identity columns), so there are two migration sets, `migrations/sqlite` and
//! `migrations/postgres`, embedded in the binary and kept in step.
//!
//! Every operation is a method here, grouped by subject: [`identity`] (tenants, users,
//! memberships), [`sessions`] (sign-in, throttling, CSRF), [`api_tokens`], [`credentials`],
//! [`audit`] (the hash-chained audit log), [`jobs`] (sync jobs, schedules and leases),
//! [`connectors`] (connector configurations and OAuth flows), [`desk`] (conflicts and dead
//! letters awaiting a person), [`analytics`] (sync figures per connector), [`compliance`] (the
//! FTC Safeguards Rule report, read from all of the above), [`usage`] (vendor API calls per
//! tenant, connector and day, summed over the nodes).

pub mod analytics;
pub mod api_tokens;
pub mod audit;
pub mod compliance;
pub mod connectors;
pub mod credentials;
pub mod desk;
pub mod identity;
pub mod jobs;
pub mod sessions;
pub mod usage;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::crypto::MasterKey;
use crate::error::{ControlError, Result};

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the backend's pool; the body is compiled once per backend,
/// so the same query-building code is type-checked against both drivers.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.inner.pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` inside a transaction `$tx` (`&mut *$tx` is the executor) and commits it when
/// the body returns `Ok`. SQLite's transaction takes the write lock up front (`BEGIN
/// IMMEDIATE`) so that two writers never deadlock upgrading a read lock.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.inner.pool {
            $crate::store::Pool::Sqlite(p) => {
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Pool::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

pub(crate) use {in_tx, on_pool};

/// Tunables of sign-in and sessions. Defaults are declared on [`Default`].
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// How long a console session lasts after sign-in: 12 hours, one working day.
    pub session_ttl_ms: i64,
    /// Failed sign-ins per (login, client address) allowed within `login_window_ms`: 5.
    pub login_max_failures: i64,
    /// The throttling window: 15 minutes. Once `login_max_failures` failures fall inside it,
    /// further attempts are refused until the oldest of them leaves it.
    pub login_window_ms: i64,
    /// Connections in the store's pool; `None` takes the backend's default: 4 for a SQLite
    /// file (one writer at a time anyway: with 8, more writers poll SQLite's lock from its
    /// busy handler and the p99 of writes grew, `hub bench api`), 16 for PostgreSQL (it was
    /// 8: 50 concurrent API clients queued for connections). An in-memory SQLite database
    /// always has exactly one.
    pub max_connections: Option<u32>,
    /// SQLite only: every commit waits for the disk (`synchronous = FULL`, the default), or
    /// only checkpoints do (`false`: `NORMAL`; in WAL mode the file still never corrupts, but
    /// the last commits before a power cut or OS crash — not a crash of the hub — may be
    /// lost). With FULL, commits are the SQLite ceiling under load: one fsync each, two per
    /// audited change (`hub bench api --sqlite-synchronous normal` measures the difference).
    pub sqlite_durable_commits: bool,
}

/// Default pool size for a SQLite file (see [`StoreSettings::max_connections`]).
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Default pool size for PostgreSQL (see [`StoreSettings::max_connections`]).
pub const POSTGRES_MAX_CONNECTIONS: u32 = 16;

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            session_ttl_ms: 12 * 3600 * 1000,
            login_max_failures: 5,
            login_window_ms: 15 * 60 * 1000,
            max_connections: None,
            sqlite_durable_commits: true,
        }
    }
}

/// The store's notion of now. Real time unless a test pins it.
#[derive(Debug, Default)]
struct Clock {
    /// Pinned Unix milliseconds; 0 means the system clock.
    pinned_ms: AtomicI64,
}

impl Clock {
    fn now_ms(&self) -> i64 {
        match self.pinned_ms.load(Ordering::Relaxed) {
            0 => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            ms => ms,
        }
    }
}

/// The control-plane store. Cheap to clone (one pool, shared).
#[derive(Debug, Clone)]
pub struct ControlStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    master_key: RwLock<MasterKey>,
    settings: StoreSettings,
    clock: Clock,
}

const MIGRATIONS_TABLE: &str = "_hub_control_migrations";

fn migrator(backend: Backend) -> Migrator {
    let files: &[(i64, &str, &'static str)] = match backend {
        Backend::Sqlite => &[
            (
                1,
                "access and credentials",
                include_str!("../../migrations/sqlite/0001_access_and_credentials.sql"),
            ),
            (
                2,
                "audit log",
                include_str!("../../migrations/sqlite/0002_audit_log.sql"),
            ),
            (
                3,
                "sync jobs and schedules",
                include_str!("../../migrations/sqlite/0003_sync_jobs.sql"),
            ),
            (
                4,
                "connectors and oauth flows",
                include_str!("../../migrations/sqlite/0004_connectors.sql"),
            ),
            (
                5,
                "conflicts and dead letters desk",
                include_str!("../../migrations/sqlite/0005_desk.sql"),
            ),
            (
                6,
                "compliance",
                include_str!("../../migrations/sqlite/0006_compliance.sql"),
            ),
            (
                7,
                "vendor API usage",
                include_str!("../../migrations/sqlite/0007_api_usage.sql"),
            ),
        ],
        Backend::Postgres => &[
            (
                1,
                "access and credentials",
                include_str!("../../migrations/postgres/0001_access_and_credentials.sql"),
            ),
            (
                2,
                "audit log",
                include_str!("../../migrations/postgres/0002_audit_log.sql"),
            ),
            (
                3,
                "sync jobs and schedules",
                include_str!("../../migrations/postgres/0003_sync_jobs.sql"),
            ),
            (
                4,
                "connectors and oauth flows",
                include_str!("../../migrations/postgres/0004_connectors.sql"),
            ),
            (
                5,
                "conflicts and dead letters desk",
                include_str!("../../migrations/postgres/0005_desk.sql"),
            ),
            (
                6,
                "compliance",
                include_str!("../../migrations/postgres/0006_compliance.sql"),
            ),
            (
                7,
                "vendor API usage",
                include_str!("../../migrations/postgres/0007_api_usage.sql"),
            ),
        ],
    };
    let migrations = files
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut m = Migrator::with_migrations(migrations);
    // Its own bookkeeping table, so the control plane can share a database with the SQL sink.
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

impl ControlStore {
    /// Connects to `sqlite://FILE` (created if missing), `sqlite::memory:`, or
    /// `postgres://...`, and applies pending migrations.
    pub async fn connect(
        url: &str,
        master_key: MasterKey,
        settings: StoreSettings,
    ) -> Result<Self> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(settings.max_connections.unwrap_or(POSTGRES_MAX_CONNECTIONS))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .synchronous(if settings.sqlite_durable_commits {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                });
            // An in-memory database lives as long as its one connection does.
            let pool_options = if in_memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new()
                    .max_connections(settings.max_connections.unwrap_or(SQLITE_MAX_CONNECTIONS))
            };
            Pool::Sqlite(pool_options.connect_with(options).await?)
        } else {
            return Err(ControlError::Config(
                "the control-plane store URL must start with sqlite: or postgres://".to_string(),
            ));
        };
        let store = ControlStore {
            inner: Arc::new(Inner {
                pool,
                master_key: RwLock::new(master_key),
                settings,
                clock: Clock::default(),
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let m = migrator(self.backend());
        on_pool!(self, |p| m.run(p).await?);
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.inner.settings
    }

    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await);
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Pins the store's clock (tests of expiry and throttling). Not for production use.
    #[doc(hidden)]
    pub fn pin_clock_ms(&self, unix_ms: i64) {
        self.inner.clock.pinned_ms.store(unix_ms, Ordering::Relaxed);
    }

    pub(crate) fn master_key(&self) -> MasterKey {
        self.inner
            .master_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_master_key(&self, key: MasterKey) {
        *self
            .inner
            .master_key
            .write()
            .unwrap_or_else(|p| p.into_inner()) = key;
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
