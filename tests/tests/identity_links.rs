//! A customer changes their email in Salesforce; HubSpot later reports the same person with
//! the new email. The hub keeps one customer: the Salesforce record keeps its key (the
//! cross-reference), the new email is linked to it, and HubSpot's record joins it.

use std::time::Duration;

use hub_e2e::*;
use hub_transform::identity::customer_key;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_email_links_to_the_same_customer_instead_of_creating_another() -> anyhow::Result<()>
{
    let Some(services) = Services::from_env("identity_links") else {
        return Ok(());
    };
    let s = Scenario::new("identity", services)?;
    let hub = s.spawn("all", "n1")?;
    let client = reqwest::Client::new();
    let t0 = hub_schemas::records::now_ms() - 60_000;
    let decisions = || async {
        counter(
            &hub.control,
            hub_topology::metrics::TRANSFORM_DECISIONS_TOTAL,
            &[("tenant", s.tenant.as_str())],
        )
        .await
    };
    let sf = |email: &str, ts: i64| {
        json!({"Id":"003ID0000001","FirstName":"Dana","LastName":"Ruiz","Email":email,
               "Phone":"(737) 555-0101","LastModifiedDate":ts.to_string()})
    };
    for (n, record) in [
        sf("dana@old.example", t0),
        sf("dana@new.example", t0 + 10_000),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, _) = post(&client, &hub.ingest, &s.tenant, "Contact", &[record]).await?;
        assert_eq!(status, 202);
        eventually(Duration::from_secs(30), "the change decided", || async {
            Ok((decisions().await? >= (n + 1) as f64).then_some(()))
        })
        .await?;
    }
    let hs = json!({"id":"777","properties":{"firstname":"Dana","lastname":"Ruiz",
        "email":"dana@new.example","phone":"737-555-0101","city":"Round Rock"},
        "updatedAt":(t0 + 20_000).to_string(),"archived":false});
    let (status, _) = post_as(
        &client,
        &hub.ingest,
        &s.tenant,
        ("hs-marketing", HS_SECRET),
        "contacts",
        &[hs],
    )
    .await?;
    assert_eq!(status, 202);
    eventually(
        Duration::from_secs(30),
        "HubSpot's change decided",
        || async { Ok((decisions().await? >= 3.0).then_some(())) },
    )
    .await?;

    let first = customer_key(&s.tenant, "email", "dana@old.example");
    let names = hub_schemas::Topics::new(&s.namespace);
    let versions = read_keyed(
        &s.services.kafka,
        &names.canonical(hub_schemas::Entity::Customer),
    )?;
    let keys: Vec<Option<String>> = versions.iter().map(|r| r.key.clone()).collect();
    // The cross-reference travels with each version, for sinks to update the right records.
    let ids: serde_json::Value = serde_json::from_str(
        versions
            .last()
            .and_then(|r| r.header(hub_schemas::headers::EXTERNAL_IDS))
            .unwrap_or("null"),
    )?;
    assert_eq!(
        ids,
        json!({"sf-main": "003ID0000001", "hs-marketing": "777"})
    );
    assert_eq!(
        keys,
        vec![Some(format!("{}/{first}", s.tenant)); 3],
        "every version is the first customer's"
    );
    assert_eq!(
        counter(
            &hub.control,
            hub_topology::metrics::IDENTITY_LINKS_TOTAL,
            &[("tenant", s.tenant.as_str())]
        )
        .await?,
        1.0
    );
    let pool = sqlx::PgPool::connect(&s.services.pg_url).await?;
    let rows = eventually(Duration::from_secs(30), "the customer's row", || async {
        let rows = pg_rows(&pool, "customer", &s.tenant, &["email"]).await?;
        Ok(rows
            .iter()
            .any(|r| r.doc["email"] == "dana@new.example")
            .then_some(rows))
    })
    .await?;
    assert_eq!(rows.len(), 1, "one customer");
    assert_eq!(rows[0].doc["email"], "dana@new.example");
    Ok(())
}
