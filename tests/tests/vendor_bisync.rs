//! Salesforce ⇄ HubSpot both ways, against the sandboxes: each side starts with its own
//! people; the hub creates each in the other system (HubSpot by email, Salesforce by the
//! external-id upsert), then edits made on either side arrive on the other — Salesforce's
//! through the SOQL poller, HubSpot's through its signed webhooks and a batch read. Every
//! edit is written once into the other system and never back into its own; the reads of the
//! hub's own writes are echoes, so nothing loops.

use std::collections::HashMap;
use std::time::Duration;

use hub_e2e::*;
use hub_sandbox::hubspot::seed::SeedSize as HubSpotSeed;
use hub_sandbox::hubspot::store::ObjectType;
use hub_sandbox::salesforce::seed::SeedSize as SalesforceSeed;
use hub_sandbox::{HubSpotConfig, HubSpotSandbox, SalesforceConfig, SalesforceSandbox};
use hub_topology::{Route, Target, TargetKind};
use serde_json::json;

const PEOPLE: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_on_either_side_arrive_on_the_other_once() -> anyhow::Result<()> {
    let Some(services) = Services::from_env("vendor_bisync") else {
        return Ok(());
    };
    let sf = SalesforceSandbox::start(SalesforceConfig {
        seed: 11,
        seed_size: SalesforceSeed {
            accounts: 1,
            contacts: PEOPLE,
            leads: 0,
            opportunities: 0,
            vehicles: 0,
        },
        ..Default::default()
    })
    .await?;
    let hs = HubSpotSandbox::start(HubSpotConfig {
        seed: 29,
        seed_size: HubSpotSeed {
            contacts: PEOPLE,
            companies: 0,
            deals: 0,
        },
        ..Default::default()
    })
    .await?;
    let (sf_api, hs_api) = (salesforce_api(&sf, 200), hubspot_api(&hs, 5_000));
    let client_secret = hs.config().client_secret.clone();
    let s = Scenario::with_topology("bisync", services, move |t, tenant| {
        let t = t.tenants.iter_mut().find(|x| x.id == tenant).unwrap();
        t.conflicts.clear();
        for c in &mut t.connectors {
            if c.id == "hs-marketing" {
                c.webhook_secret = client_secret.clone();
            }
            c.api = match c.id.as_str() {
                "sf-main" => Some(sf_api.clone()),
                // Webhooks carry HubSpot's changes; this initial read and safety net is slow.
                "hs-marketing" => Some(hs_api.clone()),
                _ => None,
            };
        }
        t.targets = vec![
            Target {
                id: "hubspot".into(),
                kind: TargetKind::Vendor {
                    connector: "hs-marketing".into(),
                    object: None,
                    id_property: "email".into(),
                    id_field: "email".into(),
                    batch_size: 100,
                },
            },
            Target {
                id: "salesforce".into(),
                kind: TargetKind::Vendor {
                    connector: "sf-main".into(),
                    object: Some("Contact".into()),
                    id_property: "DMS_Customer_Id__c".into(),
                    id_field: "key".into(),
                    batch_size: 200,
                },
            },
        ];
        t.routes = vec![Route {
            entities: vec![hub_schemas::Entity::Customer],
            targets: vec!["hubspot".into(), "salesforce".into()],
        }];
    })?;
    let hub = s.spawn("all", "n1")?;
    hs.set_webhook_target(Some(format!(
        "{}/ingest/hubspot/v3/{}/hs-marketing",
        hub.ingest, s.tenant
    )));

    let sf_people = |sf: &SalesforceSandbox| -> HashMap<String, String> {
        sf.records("Contact")
            .iter()
            .filter_map(|r| Some((r.get("Email").as_str()?.trim().to_lowercase(), r.id.clone())))
            .collect()
    };
    let hs_people = |hs: &HubSpotSandbox| -> HashMap<String, u64> {
        hs.objects(ObjectType::Contacts)
            .iter()
            .filter_map(|o| Some((o.properties.get("email")?.to_lowercase(), o.id)))
            .collect()
    };
    let (sf_ids, hs_ids) = eventually(
        Duration::from_secs(120),
        "each side's people created on the other, once",
        || async {
            let (a, b) = (sf_people(&sf), hs_people(&hs));
            let done = a.len() == 2 * PEOPLE
                && b.len() == 2 * PEOPLE
                && sf.count("Contact") == 2 * PEOPLE
                && hs.count(ObjectType::Contacts) == 2 * PEOPLE;
            Ok(done.then_some((a, b)))
        },
    )
    .await?;

    let vendor = |target: &'static str, outcome: &'static str| {
        let control = hub.control.clone();
        async move {
            counter(
                &control,
                hub_topology::metrics::VENDOR_RECORDS_TOTAL,
                &[("target", target), ("outcome", outcome)],
            )
            .await
        }
    };
    // The initial creations' read-backs settle before the edits are counted.
    let settled = eventually(
        Duration::from_secs(60),
        "the initial writes to settle",
        || async {
            let before = (
                vendor("hubspot", "written").await?,
                vendor("salesforce", "written").await?,
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after = (
                vendor("hubspot", "written").await?,
                vendor("salesforce", "written").await?,
            );
            Ok((before == after).then_some(after))
        },
    )
    .await?;

    // Edits on both sides, each on a different person.
    let emails: Vec<&String> = sf_ids.keys().filter(|e| hs_ids.contains_key(*e)).collect();
    let mut expect_in_hs = Vec::new();
    let mut expect_in_sf = Vec::new();
    for (i, email) in emails.iter().take(2 * PEOPLE).enumerate() {
        let city = format!("Bisync{i}");
        if i % 2 == 0 {
            let fields = json!({ "MailingCity": city });
            sf.update(&sf_ids[*email], fields.as_object().unwrap().clone())
                .map_err(anyhow::Error::msg)?;
            expect_in_hs.push((hs_ids[*email], city));
        } else {
            hs.update_contact(hs_ids[*email], &[("city", city.as_str())])
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            expect_in_sf.push((sf_ids[*email].clone(), city));
        }
    }
    eventually(
        Duration::from_secs(60),
        "every edit on the other side",
        || async {
            let in_hs = expect_in_hs.iter().all(|(id, city)| {
                hs.object(ObjectType::Contacts, *id)
                    .and_then(|o| o.properties.get("city").cloned())
                    .as_deref()
                    == Some(city.as_str())
            });
            let in_sf = expect_in_sf.iter().all(|(id, city)| {
                sf.record(id)
                    .and_then(|r| r.get("MailingCity").as_str().map(str::to_string))
                    .as_deref()
                    == Some(city.as_str())
            });
            Ok((in_hs && in_sf).then_some(()))
        },
    )
    .await?;

    // Once each into the other system, and the echoes written nowhere.
    let edits = PEOPLE as f64;
    let counts = eventually(
        Duration::from_secs(30),
        "one write per edit into the other system",
        || async {
            let c = (
                vendor("hubspot", "written").await?,
                vendor("salesforce", "written").await?,
            );
            Ok((c.0 - settled.0 >= edits && c.1 - settled.1 >= edits).then_some(c))
        },
    )
    .await?;
    assert_eq!(
        counts.0 - settled.0,
        edits,
        "HubSpot got each Salesforce edit once"
    );
    assert_eq!(
        counts.1 - settled.1,
        edits,
        "Salesforce got each HubSpot edit once"
    );
    assert_eq!(
        sf.count("Contact"),
        2 * PEOPLE,
        "no person created twice in Salesforce"
    );
    assert_eq!(hs.count(ObjectType::Contacts), 2 * PEOPLE, "nor in HubSpot");
    let (_, refused) = hs.rate_limit_counts();
    assert_eq!(refused, 0, "the hub stays under HubSpot's limit");
    Ok(())
}
