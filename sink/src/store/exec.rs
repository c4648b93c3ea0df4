//! The two backends behind one small surface: SQL text plus a list of typed values in, rows of
//! typed values out. Everything above this module is backend-agnostic except for the
//! placeholder style, which [`Backend::placeholder`] hides.

use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::{AssertSqlSafe, Row, Transaction};
use std::sync::Arc;

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The `n`-th (1-based) bind placeholder.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// The most bind parameters one statement may carry, with headroom (SQLite's default limit
    /// is 32,766; PostgreSQL's 65,535).
    pub fn max_params(self) -> usize {
        match self {
            Backend::Sqlite => 32_000,
            Backend::Postgres => 60_000,
        }
    }
}

/// A bound value; `None` is SQL NULL of the column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(Option<String>),
    I64(Option<i64>),
    I32(Option<i32>),
    Bool(Option<bool>),
    F64(Option<f64>),
}

/// The type a result column is read as.
#[derive(Debug, Clone, Copy)]
pub enum Out {
    Text,
    I64,
    I32,
    Bool,
    F64,
}

/// SQL text: generated statements are cached as `Arc<str>`; fixed ones are `&'static str`.
#[derive(Debug, Clone)]
pub enum Sql {
    Static(&'static str),
    Built(Arc<str>),
}

impl From<&'static str> for Sql {
    fn from(s: &'static str) -> Self {
        Sql::Static(s)
    }
}

impl From<String> for Sql {
    fn from(s: String) -> Self {
        Sql::Built(s.into())
    }
}

impl From<Arc<str>> for Sql {
    fn from(s: Arc<str>) -> Self {
        Sql::Built(s)
    }
}

macro_rules! bind_all {
    ($sql:expr, $args:expr) => {{
        // Built statements are generated from the shipped schemas' field names, which are
        // checked to be plain identifiers; every value is bound.
        let mut q = match $sql {
            Sql::Static(s) => sqlx::query(s),
            Sql::Built(s) => sqlx::query(AssertSqlSafe(s)),
        };
        for v in $args {
            q = match v {
                Val::Text(x) => q.bind(x),
                Val::I64(x) => q.bind(x),
                Val::I32(x) => q.bind(x),
                Val::Bool(x) => q.bind(x),
                Val::F64(x) => q.bind(x),
            };
        }
        q
    }};
}

macro_rules! read_row {
    ($row:expr, $out:expr) => {{
        let mut vals = Vec::with_capacity($out.len());
        for (i, kind) in $out.iter().enumerate() {
            vals.push(match kind {
                Out::Text => Val::Text($row.try_get::<Option<String>, _>(i)?),
                Out::I64 => Val::I64($row.try_get::<Option<i64>, _>(i)?),
                Out::I32 => Val::I32($row.try_get::<Option<i32>, _>(i)?),
                Out::Bool => Val::Bool($row.try_get::<Option<bool>, _>(i)?),
                Out::F64 => Val::F64($row.try_get::<Option<f64>, _>(i)?),
            });
        }
        vals
    }};
}

/// A pool of either backend.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Begins a write transaction. SQLite's is `BEGIN IMMEDIATE`: it takes the write lock up
    /// front, so two writers queue on the busy timeout instead of failing on lock upgrade.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Runs one read outside a transaction.
    pub async fn fetch(
        &self,
        sql: impl Into<Sql>,
        args: Vec<Val>,
        out: &[Out],
    ) -> Result<Vec<Vec<Val>>> {
        let sql = sql.into();
        let mut rows_out = Vec::new();
        match self {
            Pool::Sqlite(p) => {
                for row in bind_all!(sql, args).fetch_all(p).await? {
                    rows_out.push(read_row!(row, out));
                }
            }
            Pool::Postgres(p) => {
                for row in bind_all!(sql, args).fetch_all(p).await? {
                    rows_out.push(read_row!(row, out));
                }
            }
        }
        Ok(rows_out)
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// An open transaction of either backend; dropped without [`Tx::commit`] it rolls back.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn execute(&mut self, sql: impl Into<Sql>, args: Vec<Val>) -> Result<u64> {
        let sql = sql.into();
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sql, args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Postgres(tx) => bind_all!(sql, args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch(
        &mut self,
        sql: impl Into<Sql>,
        args: Vec<Val>,
        out: &[Out],
    ) -> Result<Vec<Vec<Val>>> {
        let sql = sql.into();
        let mut rows_out = Vec::new();
        match self {
            Tx::Sqlite(tx) => {
                for row in bind_all!(sql, args).fetch_all(&mut **tx).await? {
                    rows_out.push(read_row!(row, out));
                }
            }
            Tx::Postgres(tx) => {
                for row in bind_all!(sql, args).fetch_all(&mut **tx).await? {
                    rows_out.push(read_row!(row, out));
                }
            }
        }
        Ok(rows_out)
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

impl Val {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Val::Text(Some(s)) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::I64(x) => *x,
            _ => None,
        }
    }
}
