//! Shared test helpers: canonical records built in code, stores on both backends.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use hub_sink::{CanonicalRecord, SqlStore};
use serde_json::{Value as Json, json};

/// A name no other test (or earlier run against the same PostgreSQL) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos:x}-{}", N.fetch_add(1, Ordering::SeqCst))
}

pub fn customer_doc(tenant: &str, key: &str, version: i64, first_name: Option<&str>) -> Json {
    json!({
        "tenant_id": tenant, "key": key, "source_vendor": "salesforce", "source_connector": "sf-main",
        "source_entity": "Contact", "external_id": format!("003{key}"), "source_updated_at": version,
        "received_at": version + 50, "ingest_id": format!("ing-{version}"), "deleted": false,
        "customer_key": key, "first_name": first_name, "last_name": "Diaz", "email": "ana@example.com",
        "phone": "+15125550100", "address": {"line1": "1 Main St", "city": "Austin", "state": "TX"},
        "email_opt_in": true, "date_of_birth": 7000
    })
}

/// A customer record at `offset` of partition 0.
pub fn customer(tenant: &str, key: &str, version: i64, offset: i64) -> CanonicalRecord {
    CanonicalRecord::from_json(
        "hub.canonical.customer",
        0,
        offset,
        customer_doc(tenant, key, version, Some("Ana")),
    )
    .unwrap()
}

/// `n` customers with keys `c-0..` on partition 0 starting at `first_offset`.
pub fn customers(tenant: &str, n: usize, version: i64, first_offset: i64) -> Vec<CanonicalRecord> {
    (0..n)
        .map(|i| customer(tenant, &format!("c-{i}"), version, first_offset + i as i64))
        .collect()
}

pub struct Backend {
    pub store: SqlStore,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    Backend {
        store: SqlStore::connect(&url).await.unwrap(),
        url,
        _dir: Some(dir),
    }
}

/// PostgreSQL from `HUB_TEST_PG_URL`, or `None` (with a skip line) when it is not set.
pub async fn postgres(test: &str) -> Option<Backend> {
    let Ok(url) = std::env::var("HUB_TEST_PG_URL") else {
        println!("skipped {test} on PostgreSQL: HUB_TEST_PG_URL is not set");
        return None;
    };
    Some(Backend {
        store: SqlStore::connect(&url).await.unwrap(),
        url,
        _dir: None,
    })
}

/// Runs one async test body against SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let b = $crate::common::sqlite().await;
                $body(b).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(b) = $crate::common::postgres(stringify!($name)).await {
                    $body(b).await;
                }
            }
        }
    };
}
