//! The control plane's REST API as `hub run` serves it, when `HUB_CONTROL_STORE` names a
//! store: the first platform admin comes from `hub control add-admin`, signs in with a
//! session cookie, creates a tenant with the CSRF token, and the change is in the audit log,
//! whose chain `hub audit verify` finds intact.

use std::process::Command;

use hub_e2e::*;
use serde_json::{Value, json};

/// 32 bytes, base64: a throwaway master key for this test's store.
const MASTER_KEY: &str = "dGhpcy1pcy1hLXRlc3QtbWFzdGVyLWtleS0zMi1ieXQ=";
/// The key `hub control rotate-key` moves the store to.
const NEW_MASTER_KEY: &str = "YW5vdGhlci10ZXN0LW1hc3Rlci1rZXktb2YtMzJieXQ=";
const ADMIN: &str = "admin@lakeside-motors.example";
const PASSWORD: &str = "correct horse battery staple 7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_the_api_and_audits_what_it_changes() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("control_api_served") else {
        return Ok(());
    };
    let s = Scenario::new("controlapi", services)?;
    let store = format!("sqlite://{}", s.dir.join("control.db").display());
    let added = Command::new(hub_bin())
        .args(["control", "add-admin", "--store", &store, "--email", ADMIN])
        .env("HUB_MASTER_KEY", MASTER_KEY)
        .env("HUB_ADMIN_PASSWORD", PASSWORD)
        .output()?;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let hub = s.spawn_with_env(
        "all",
        "n1",
        "embedded",
        &[
            ("HUB_CONTROL_STORE", &store),
            ("HUB_MASTER_KEY", MASTER_KEY),
        ],
    )?;
    let api = format!("{}/api/v1", hub.control);
    let client = reqwest::Client::new();

    let anonymous = client.get(format!("{api}/me")).send().await?;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await?;
    assert!(body["error"]["code"].is_string(), "{body}");

    let login = client
        .post(format!("{api}/auth/login"))
        .json(&json!({ "email": ADMIN, "password": PASSWORD }))
        .send()
        .await?;
    assert_eq!(login.status(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .expect("a session cookie");
    let session: Value = login.json().await?;
    let csrf = session["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();

    let me: Value = client
        .get(format!("{api}/me"))
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert!(me.to_string().contains(ADMIN), "{me}");

    let without_csrf = client
        .post(format!("{api}/tenants"))
        .header("cookie", &cookie)
        .json(&json!({ "id": "lakeside", "name": "Lakeside Motors" }))
        .send()
        .await?;
    assert_eq!(without_csrf.status(), 403, "a change needs the CSRF token");
    let created = client
        .post(format!("{api}/tenants"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({ "id": "lakeside", "name": "Lakeside Motors" }))
        .send()
        .await?;
    assert!(created.status().is_success(), "{}", created.status());
    let tenants: Value = client
        .get(format!("{api}/tenants"))
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert!(tenants.to_string().contains("lakeside"), "{tenants}");

    let verified = Command::new(hub_bin())
        .args(["audit", "verify", "--store", &store])
        .env("HUB_MASTER_KEY", MASTER_KEY)
        .output()?;
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let exported = Command::new(hub_bin())
        .args([
            "audit",
            "export",
            "--store",
            &store,
            "--from",
            "2020-01-01",
            "--to",
            "2100-01-01",
            "--format",
            "json",
        ])
        .env("HUB_MASTER_KEY", MASTER_KEY)
        .output()?;
    let text = String::from_utf8_lossy(&exported.stdout);
    assert!(
        text.contains("lakeside"),
        "the tenant's creation is audited: {text}"
    );
    assert!(!text.contains(PASSWORD), "no password in the audit log");

    // Key rotation: credentials saved under the first master key open under the new one
    // after `hub control rotate-key`, and no longer under the old one.
    let configured = client
        .post(format!("{api}/tenants/lakeside/connectors"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "id": "crm",
            "name": "Dealer CRM",
            "vendor": "hubspot",
            "endpoint": "https://api.hubapi.example",
            "auth_type": "api_key",
            "sync": { "frequency": "manual" }
        }))
        .send()
        .await?;
    assert_eq!(configured.status(), 201, "{}", configured.text().await?);
    let saved = client
        .put(format!("{api}/tenants/lakeside/connectors/crm/credentials"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({ "credentials": { "api_key": "rotate-me-4711" } }))
        .send()
        .await?;
    assert!(saved.status().is_success(), "{}", saved.status());
    drop(hub);
    let rotated = Command::new(hub_bin())
        .args(["control", "rotate-key", "--store", &store])
        .env("HUB_MASTER_KEY", MASTER_KEY)
        .env("HUB_NEW_MASTER_KEY", NEW_MASTER_KEY)
        .output()?;
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(said.contains("1 tenant data keys re-wrapped"), "{said}");
    let lakeside = hub_control::TenantId::new("lakeside")?;
    let new = hub_control::ControlStore::connect(
        &store,
        hub_control::MasterKey::from_base64(2, NEW_MASTER_KEY)?,
        hub_control::StoreSettings::default(),
    )
    .await?;
    let opened = new
        .get_credentials(&lakeside, "crm")
        .await?
        .expect("credentials");
    assert_eq!(opened.expose()["api_key"], "rotate-me-4711");
    new.close().await;
    let old = hub_control::ControlStore::connect(
        &store,
        hub_control::MasterKey::from_base64(1, MASTER_KEY)?,
        hub_control::StoreSettings::default(),
    )
    .await?;
    assert!(
        old.get_credentials(&lakeside, "crm").await.is_err(),
        "the old key no longer opens them"
    );
    old.close().await;

    // Tampering, as someone with write access to the database would: drop the append-only
    // triggers, edit one entry and delete another. `hub audit verify` fails and names both.
    let db = sqlx::SqlitePool::connect(&store).await?;
    let seqs: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM audit_log ORDER BY seq")
        .fetch_all(&db)
        .await?;
    assert!(seqs.len() >= 4, "{seqs:?}");
    let (edited, deleted) = (seqs[1].0, seqs[2].0);
    for sql in [
        "DROP TRIGGER audit_log_no_update".to_string(),
        "DROP TRIGGER audit_log_no_delete".to_string(),
        format!("UPDATE audit_log SET actor = 'user:someone-else' WHERE seq = {edited}"),
        format!("DELETE FROM audit_log WHERE seq = {deleted}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&db).await?;
    }
    db.close().await;
    let broken = Command::new(hub_bin())
        .args(["audit", "verify", "--store", &store])
        .env("HUB_MASTER_KEY", NEW_MASTER_KEY)
        .env("HUB_MASTER_KEY_VERSION", "2")
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&broken.stdout),
        String::from_utf8_lossy(&broken.stderr)
    );
    assert!(!broken.status.success(), "verify must fail: {said}");
    assert!(
        said.contains(&format!("{edited}")) && said.contains("edited"),
        "{said}"
    );
    assert!(
        said.contains(&format!("{deleted}")) && said.contains("deleted"),
        "{said}"
    );
    Ok(())
}
