//! Salesforce → HubSpot through the vendors' own APIs, against the sandboxes: the hub polls
//! the Salesforce org (SOQL by `SystemModstamp`, paged), maps and resolves, and upserts into
//! the HubSpot portal by email in batches, under HubSpot's rate limit. It also polls HubSpot
//! (windowed search), so it reads its own writes back: each must be recognised as its echo —
//! no new version, no second write, no loop.

use std::collections::BTreeMap;
use std::time::Duration;

use hub_e2e::*;
use hub_sandbox::hubspot::seed::SeedSize as HubSpotSeed;
use hub_sandbox::hubspot::store::ObjectType;
use hub_sandbox::salesforce::seed::SeedSize as SalesforceSeed;
use hub_sandbox::{HubSpotConfig, HubSpotSandbox, SalesforceConfig, SalesforceSandbox};
use hub_topology::{Route, Target, TargetKind};
use serde_json::json;

const CONTACTS: usize = 300;
const EDITS: usize = 25;
const AFTER_RESTART: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_contacts_reach_hubspot_and_their_echoes_stop_there() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("vendor_sync") else {
        return Ok(());
    };
    let sf = SalesforceSandbox::start(SalesforceConfig {
        seed_size: SalesforceSeed {
            accounts: 5,
            contacts: CONTACTS,
            leads: 0,
            opportunities: 0,
            vehicles: 0,
        },
        ..Default::default()
    })
    .await?;
    let hs = HubSpotSandbox::start(HubSpotConfig {
        seed_size: HubSpotSeed {
            contacts: 0,
            companies: 0,
            deals: 0,
        },
        ..Default::default()
    })
    .await?;
    let (sf_api, hs_api) = (salesforce_api(&sf, 200), hubspot_api(&hs, 300));
    let s = Scenario::with_topology("vendorsync", services, move |t, tenant| {
        let t = t.tenants.iter_mut().find(|x| x.id == tenant).unwrap();
        for c in &mut t.connectors {
            c.api = match c.id.as_str() {
                "sf-main" => Some(sf_api.clone()),
                "hs-marketing" => Some(hs_api.clone()),
                _ => None,
            };
        }
        t.targets = vec![Target {
            id: "hubspot".into(),
            kind: TargetKind::Vendor {
                connector: "hs-marketing".into(),
                object: None,
                id_property: "email".into(),
                id_field: "email".into(),
                batch_size: 100,
            },
        }];
        t.routes = vec![Route {
            entities: vec![hub_schemas::Entity::Customer],
            targets: vec!["hubspot".into()],
        }];
    })?;
    let hub = s.spawn("all", "n1")?;

    // Every Salesforce contact, by its lower-cased email, with its names.
    let expected = |sf: &SalesforceSandbox| -> BTreeMap<String, (String, String)> {
        sf.records("Contact")
            .iter()
            .filter_map(|r| {
                let text = |f: &str| r.get(f).as_str().map(|s| s.trim().to_string());
                Some((
                    text("Email")?.to_lowercase(),
                    (text("FirstName").unwrap_or_default(), text("LastName")?),
                ))
            })
            .collect()
    };
    let matches = |hs: &HubSpotSandbox, want: &BTreeMap<String, (String, String)>| {
        let have = hs.objects(ObjectType::Contacts);
        have.len() == want.len()
            && have.iter().all(|o| {
                let p = |k: &str| o.properties.get(k).cloned().unwrap_or_default();
                want.get(&p("email"))
                    .is_some_and(|(first, last)| p("firstname") == *first && p("lastname") == *last)
            })
    };
    let want = expected(&sf);
    assert_eq!(
        want.len(),
        CONTACTS,
        "the seed gives every contact an email"
    );
    eventually(
        Duration::from_secs(120),
        "every Salesforce contact in HubSpot, once, with its names",
        || async { Ok(matches(&hs, &want).then_some(())) },
    )
    .await?;

    // Changes made in Salesforce afterwards follow.
    let ids: Vec<String> = sf
        .records("Contact")
        .iter()
        .take(EDITS)
        .map(|r| r.id.clone())
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let fields = json!({ "FirstName": format!("Edited{i}") });
        sf.update(id, fields.as_object().unwrap().clone())
            .map_err(anyhow::Error::msg)?;
    }
    let want = expected(&sf);
    eventually(Duration::from_secs(60), "the edits in HubSpot", || async {
        Ok(matches(&hs, &want).then_some(()))
    })
    .await?;

    // HubSpot's poller reads the hub's writes back. A poller sees each contact's latest
    // state only (a create and its later edit may be read as one), so every contact comes
    // back at least once, and each read must be recognised as the hub's own echo.
    let metric = |name: &'static str, labels: Vec<(&'static str, String)>| {
        let control = hub.control.clone();
        async move {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            counter(&control, name, &labels).await
        }
    };
    let decided = |outcome: &'static str| {
        metric(
            hub_topology::metrics::TRANSFORM_DECISIONS_TOTAL,
            vec![
                ("tenant", s.tenant.clone()),
                ("outcome", outcome.to_string()),
            ],
        )
    };
    let read_back = || {
        metric(
            hub_topology::metrics::POLL_RECORDS_TOTAL,
            vec![("connector", "hs-marketing".to_string())],
        )
    };
    let echoed = eventually(
        Duration::from_secs(60),
        "every contact read back from HubSpot, each read an echo",
        || async {
            let (read, echo) = (read_back().await?, decided("echo").await?);
            Ok((read >= CONTACTS as f64 && echo == read).then_some(()))
        },
    )
    .await;
    if echoed.is_err() {
        for outcome in ["applied", "echo", "skipped", "conflict"] {
            eprintln!("decided {outcome}: {}", decided(outcome).await?);
        }
        eprintln!("read back from HubSpot: {}", read_back().await?);
    }
    echoed?;
    let versions = (CONTACTS + EDITS) as f64;
    assert_eq!(
        decided("applied").await?,
        versions,
        "only Salesforce's changes made versions"
    );
    assert_eq!(decided("conflict").await?, 0.0);
    assert_eq!(
        metric(
            hub_topology::metrics::SINK_RECORDS_TOTAL,
            vec![("target", "hubspot".into()), ("outcome", "written".into())],
        )
        .await?,
        versions,
        "one HubSpot write per version: the echoes were not written again"
    );
    assert_eq!(
        hs.count(ObjectType::Contacts),
        CONTACTS,
        "no contact written twice"
    );
    let (_, refused) = hs.rate_limit_counts();
    assert_eq!(refused, 0, "the hub stays under HubSpot's limit");

    // A restarted node reads on from the pollers' saved cursors: only what changed since.
    drop(hub);
    let hub = s.spawn("all", "n1")?;
    for (i, id) in ids.iter().take(AFTER_RESTART).enumerate() {
        let fields = json!({ "FirstName": format!("Restarted{i}") });
        sf.update(id, fields.as_object().unwrap().clone())
            .map_err(anyhow::Error::msg)?;
    }
    let want = expected(&sf);
    eventually(
        Duration::from_secs(60),
        "the edits made after the restart in HubSpot",
        || async { Ok(matches(&hs, &want).then_some(())) },
    )
    .await?;
    let read = counter(
        &hub.control,
        hub_topology::metrics::POLL_RECORDS_TOTAL,
        &[("connector", "sf-main")],
    )
    .await?;
    assert_eq!(
        read, AFTER_RESTART as f64,
        "the restarted poller read only the records changed since its cursor"
    );
    Ok(())
}
