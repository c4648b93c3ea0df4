//! Test harness: a fresh store on SQLite (a temporary file) and, when `HUB_TEST_PG_URL` is
//! set, on PostgreSQL in a schema of its own (`hub_ctl_test_<uuid>`), dropped at the end.
//! Without the variable the PostgreSQL half is skipped with a message — unless `CI=true`,
//! where a missing database is a failure, not a silent pass.

use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

use super::{ControlStore, Pool, StoreSettings};
use crate::crypto::MasterKey;

pub(crate) const PG_URL_ENV: &str = "HUB_TEST_PG_URL";

pub(crate) enum Place {
    Sqlite { dir: tempfile::TempDir },
    Postgres { admin_url: String, schema: String },
}

/// One database for one test; [`Harness::open`] gives further nodes on it.
pub(crate) struct Harness {
    pub store: ControlStore,
    pub place: Place,
    url: String,
}

impl Harness {
    pub async fn sqlite(master: MasterKey, settings: StoreSettings) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("control.db").display());
        let store = ControlStore::connect(&url, master, settings)
            .await
            .expect("sqlite store");
        Harness {
            store,
            place: Place::Sqlite { dir },
            url,
        }
    }

    /// `None` (after saying so) when no PostgreSQL is configured outside CI.
    pub async fn postgres(master: MasterKey, settings: StoreSettings) -> Option<Harness> {
        let Ok(admin_url) = std::env::var(PG_URL_ENV) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{PG_URL_ENV} is not set, and CI=true: the PostgreSQL half must run in CI");
            }
            eprintln!(
                "skipping the PostgreSQL half: set {PG_URL_ENV} (e.g. postgres://postgres@127.0.0.1:55432/hub_test)"
            );
            return None;
        };
        let schema = format!("hub_ctl_test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("connect to HUB_TEST_PG_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options[search_path]={schema}");
        let store = ControlStore::connect(&url, master, settings)
            .await
            .expect("postgres store");
        Some(Harness {
            store,
            place: Place::Postgres { admin_url, schema },
            url,
        })
    }

    /// Another node on the same database, e.g. with another master key.
    pub async fn open(&self, master: MasterKey, settings: StoreSettings) -> ControlStore {
        ControlStore::connect(&self.url, master, settings)
            .await
            .expect("second node")
    }

    /// Every byte the database holds that a thief of the store could read: SQLite's files
    /// (main and WAL, so free pages and indexes too), or every row of every table in the
    /// PostgreSQL schema as text (`bytea` shows as hex there).
    pub async fn raw_dump(&self) -> Vec<u8> {
        match &self.place {
            Place::Sqlite { dir } => {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(dir.path()).expect("read temp dir") {
                    out.extend(std::fs::read(entry.expect("entry").path()).expect("read file"));
                }
                out
            }
            Place::Postgres { schema, .. } => {
                let Pool::Postgres(p) = &self.store.inner.pool else {
                    unreachable!()
                };
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                )
                .bind(schema)
                .fetch_all(p)
                .await
                .expect("list tables");
                assert!(tables.len() >= 9, "{tables:?}");
                let mut out = Vec::new();
                for (t,) in tables {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT x::text FROM {schema}.{t} x"
                    )))
                    .fetch_all(p)
                    .await
                    .expect("dump table");
                    for r in rows {
                        out.extend(r.get::<String, _>(0).into_bytes());
                        out.push(b'\n');
                    }
                }
                out
            }
        }
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Place::Postgres { admin_url, schema } = &self.place {
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(admin_url)
                .await
                .expect("reconnect");
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .expect("drop test schema");
            admin.close().await;
        }
    }
}

/// Runs each listed test body once per backend: `<name>::sqlite` and `<name>::postgres`.
/// The body sees `h: &Harness`; settings and master key come from the optional arguments.
macro_rules! on_both_backends {
    ($( $(#[$m:meta])* async fn $name:ident($h:ident $(, settings = $settings:expr)?) $body:block )*) => {
        $(
            $(#[$m])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use $crate::store::testing::Harness;

                #[allow(unused_mut, unused_assignments)]
                fn settings() -> $crate::store::StoreSettings {
                    let mut s = $crate::store::StoreSettings::default();
                    $( s = $settings; )?
                    s
                }

                async fn run($h: &Harness) $body

                #[tokio::test]
                async fn sqlite() {
                    let h = Harness::sqlite($crate::crypto::MasterKey::generate(1), settings()).await;
                    run(&h).await;
                    h.cleanup().await;
                }

                #[tokio::test]
                async fn postgres() {
                    let Some(h) = Harness::postgres($crate::crypto::MasterKey::generate(1), settings()).await else {
                        return;
                    };
                    run(&h).await;
                    h.cleanup().await;
                }
            }
        )*
    };
}

pub(crate) use on_both_backends;
