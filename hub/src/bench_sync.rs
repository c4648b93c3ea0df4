//! `hub bench sync`: an initial sync of N Salesforce contacts into HubSpot through the whole
//! pipeline — the Salesforce poller (SOQL by `SystemModstamp`, `nextRecordsUrl` paging) →
//! `<ns>.raw.salesforce` → transform (map, resolve) → `<ns>.canonical.customer` → the HubSpot
//! vendor sink (`batch/upsert` by email, 100 per call) — against the two sandboxes, with the
//! HubSpot sandbox enforcing the published rate limit (100 requests per rolling 10 s for a
//! Free/Starter private app, §3.7).
//!
//! Reconciled against both sandboxes: every Salesforce contact whose mapping validates must
//! be in HubSpot once, by email, with its names; nothing else may be. Reported: elapsed time
//! from the node's start to the last write, the time the limit allows for the calls the
//! sync needs (the limit-bound minimum), their ratio, the same for the writing phase alone
//! (first HubSpot contact to last; the node's start and the first read come before it), and
//! the 429s the sandbox answered.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hub_sandbox::hubspot::seed::SeedSize as HubSpotSeed;
use hub_sandbox::hubspot::store::ObjectType;
use hub_sandbox::salesforce::seed::SeedSize as SalesforceSeed;
use hub_sandbox::{HubSpotConfig, HubSpotSandbox, SalesforceConfig, SalesforceSandbox};
use hub_schemas::Entity;
use hub_topology::{ConnectorApi, JwtBearerSettings, Route, Target, TargetKind};
use serde_json::json;

use crate::bench::percentile;
use crate::node::Node;
use crate::{Overrides, Role};

#[derive(Args)]
pub struct SyncArgs {
    /// Salesforce contacts to seed and sync.
    #[arg(long, default_value_t = 50_000)]
    contacts: usize,
    /// HubSpot's limit: requests per rolling 10 s (100: Free/Starter private app).
    #[arg(long, default_value_t = 100)]
    hubspot_per_10s: u32,
    /// The share of that limit the hub may use.
    #[arg(long, default_value_t = 0.98)]
    headroom: f64,
    /// Give up when HubSpot gains no contact for this long.
    #[arg(long, default_value_t = 120)]
    stall_secs: u64,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    overrides: Overrides,
}

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let sf = SalesforceSandbox::start(SalesforceConfig {
        seed_size: SalesforceSeed {
            accounts: (args.contacts / 50).max(1),
            contacts: args.contacts,
            leads: 0,
            opportunities: 0,
            vehicles: 0,
        },
        daily_api_requests: 1_000_000,
        ..Default::default()
    })
    .await?;
    let mut hs_config = HubSpotConfig {
        seed_size: HubSpotSeed {
            contacts: 0,
            companies: 0,
            deals: 0,
        },
        ..Default::default()
    };
    hs_config.rate_limits.private_per_10s = args.hubspot_per_10s;
    let hs = HubSpotSandbox::start(hs_config).await?;

    let mut topology =
        hub_topology::parse(hub_topology::DEMO_TOPOLOGY).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let tmp = std::env::temp_dir().join(format!("hub-bench-sync-{run_id}.db"));
    topology.runtime.sql_url = format!("sqlite://{}", tmp.display());
    topology.runtime.ingest_listen = "127.0.0.1:0".into();
    topology.runtime.control_listen = "127.0.0.1:0".into();
    topology.runtime.node_id = format!("bench-{run_id}");
    args.overrides.apply(&mut topology.runtime);
    topology.runtime.namespace = format!("bench-sync-{run_id}");
    topology.tenants.truncate(1);
    let tenant = &mut topology.tenants[0];
    tenant.id = format!("bench-{run_id}");
    for c in &mut tenant.connectors {
        c.api = match c.id.as_str() {
            "sf-main" => Some(salesforce_api(&sf, 500)),
            // Written to only: no polling; the account's tier and the share the hub may use.
            "hs-marketing" => Some(ConnectorApi {
                requests_per_10s: Some(args.hubspot_per_10s),
                headroom: Some(args.headroom),
                ..hubspot_api(&hs, 0)
            }),
            _ => None,
        };
    }
    tenant.targets = vec![Target {
        id: "hubspot".into(),
        kind: TargetKind::Vendor {
            connector: "hs-marketing".into(),
            object: None,
            id_property: "email".into(),
            id_field: "email".into(),
            batch_size: 100,
        },
    }];
    tenant.routes = vec![Route {
        entities: vec![Entity::Customer],
        targets: vec!["hubspot".into()],
    }];
    let mapping = tenant
        .connector("sf-main")
        .and_then(|c| c.mapping("Contact"))
        .context("the demo maps Salesforce contacts")?
        .clone();

    // What HubSpot must end up with: every contact whose mapping validates, by email.
    let mut expected: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut invalid = 0usize;
    let records = sf.records("Contact");
    for r in &records {
        let mut doc = serde_json::Map::new();
        for f in ["Id", "LastModifiedDate", "IsDeleted"] {
            doc.insert(f.into(), r.get(f));
        }
        for (k, v) in &r.fields {
            doc.insert(k.clone(), v.clone());
        }
        match hub_transform::dry_run(&mapping, "application/json", &json!(doc).to_string()) {
            Ok(m) => {
                let text = |f: &str| m.doc.get(f).and_then(|v| v.as_str()).map(str::to_string);
                match text("email") {
                    Some(email) => {
                        expected.insert(email, (text("first_name"), text("last_name")));
                    }
                    // Keyed by phone or id: HubSpot upserts by email, so it cannot take it.
                    None => invalid += 1,
                }
            }
            Err(_) => invalid += 1,
        }
    }

    crate::admin::ensure_local_kafka(&topology.runtime.kafka_bootstrap).await?;
    let bootstrap = topology.runtime.kafka_bootstrap.clone();
    let started = Instant::now();
    let node = Node::start(topology.clone(), &[Role::All]).await?;

    let mut last_count = 0;
    let mut last_progress = Instant::now();
    let mut done_at = None;
    let mut first_write = None;
    loop {
        let n = hs.count(ObjectType::Contacts);
        if n > 0 && first_write.is_none() {
            first_write = Some(started.elapsed());
        }
        if n != last_count {
            last_count = n;
            last_progress = Instant::now();
        }
        if n >= expected.len() {
            done_at = Some(started.elapsed());
            break;
        }
        if last_progress.elapsed() > Duration::from_secs(args.stall_secs) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let any write still in flight land before reconciling, so an extra one is seen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (admitted, refused) = hs.rate_limit_counts();

    let mut found: HashMap<String, usize> = HashMap::new();
    let mut mismatched = 0usize;
    let mut unexpected = 0usize;
    for o in hs.objects(ObjectType::Contacts) {
        let Some(email) = o.properties.get("email") else {
            unexpected += 1;
            continue;
        };
        *found.entry(email.clone()).or_default() += 1;
        match expected.get(email) {
            Some((first, last)) => {
                if o.properties.get("firstname") != first.as_ref()
                    || o.properties.get("lastname") != last.as_ref()
                {
                    mismatched += 1;
                }
            }
            None => unexpected += 1,
        }
    }
    let lost = expected.keys().filter(|e| !found.contains_key(*e)).count();
    let duplicates: usize = found.values().map(|n| n.saturating_sub(1)).sum();
    let calls_needed = expected.len().div_ceil(100);
    let limit_bound_s = calls_needed as f64 * 10.0 / f64::from(args.hubspot_per_10s);
    let elapsed_s = done_at.unwrap_or_else(|| started.elapsed()).as_secs_f64();
    // The written phase: from HubSpot's first contact to its last, the part the limit binds.
    let first_write_s = first_write.map_or(0.0, |d| d.as_secs_f64());
    let writing_s = elapsed_s - first_write_s;
    let report = json!({
        "salesforce_contacts": records.len(),
        "expected_in_hubspot": expected.len(),
        "not_syncable": invalid,
        "hubspot_contacts": last_count,
        "lost": lost,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "field_mismatches": mismatched,
        "elapsed_s": (elapsed_s * 10.0).round() / 10.0,
        "limit_bound_s": (limit_bound_s * 10.0).round() / 10.0,
        "of_limit_bound": ((limit_bound_s / elapsed_s) * 1000.0).round() / 1000.0,
        "first_write_s": (first_write_s * 10.0).round() / 10.0,
        "writing_s": (writing_s * 10.0).round() / 10.0,
        "writing_of_limit_bound": ((limit_bound_s / writing_s.max(0.001)) * 1000.0).round() / 1000.0,
        "hubspot_requests": admitted,
        "hubspot_429s": refused,
        "hubspot_limit_per_10s": args.hubspot_per_10s,
        "completed": done_at.is_some(),
        "namespace": topology.runtime.namespace,
    });
    node.shutdown().await;
    let _ = crate::admin::delete_topics(&bootstrap, &topology.topics()).await;
    let _ = std::fs::remove_file(&tmp);
    hs.shutdown().await;
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if lost + duplicates + unexpected + mismatched > 0 || done_at.is_none() {
        bail!("reconciliation failed");
    }
    Ok(())
}

#[derive(Args)]
pub struct BisyncArgs {
    /// Contacts seeded in each sandbox (different people on each side).
    #[arg(long, default_value_t = 200)]
    contacts: usize,
    /// Changes to time, alternating between Salesforce and HubSpot.
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// A change is made every this many ms (they overlap in flight).
    #[arg(long, default_value_t = 50)]
    every_ms: u64,
    /// How often each poller asks its vendor for changes.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    overrides: Overrides,
}

/// `hub bench bisync`: Salesforce ⇄ HubSpot both ways. The two sandboxes start with different
/// people; the hub first syncs each side's contacts into the other (created in Salesforce by
/// the external-id upsert, in HubSpot by email), then `--changes` edits alternate between the
/// sides (a contact's city) and each is timed from the edit to its arrival in the other
/// system. Writes are counted: each change must make exactly one write into the other system
/// and none back into its own (its echo is recognised, so nothing loops).
pub async fn bisync(args: BisyncArgs) -> anyhow::Result<()> {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let sf = SalesforceSandbox::start(SalesforceConfig {
        seed: 11,
        seed_size: SalesforceSeed {
            accounts: (args.contacts / 50).max(1),
            contacts: args.contacts,
            leads: 0,
            opportunities: 0,
            vehicles: 0,
        },
        daily_api_requests: 1_000_000,
        ..Default::default()
    })
    .await?;
    let hs = HubSpotSandbox::start(HubSpotConfig {
        seed: 29,
        seed_size: HubSpotSeed {
            contacts: args.contacts,
            companies: 0,
            deals: 0,
        },
        ..Default::default()
    })
    .await?;

    let mut topology =
        hub_topology::parse(hub_topology::DEMO_TOPOLOGY).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let tmp = std::env::temp_dir().join(format!("hub-bench-bisync-{run_id}.db"));
    topology.runtime.sql_url = format!("sqlite://{}", tmp.display());
    topology.runtime.ingest_listen = "127.0.0.1:0".into();
    topology.runtime.control_listen = "127.0.0.1:0".into();
    topology.runtime.node_id = format!("bench-{run_id}");
    args.overrides.apply(&mut topology.runtime);
    topology.runtime.namespace = format!("bench-bisync-{run_id}");
    topology.tenants.truncate(1);
    let tenant = &mut topology.tenants[0];
    tenant.id = format!("bench-{run_id}");
    // Edits here are never concurrent on one contact, so every field merges (the demo holds
    // concurrent name edits for a person, which this timing run has none of).
    if let Some(p) = tenant.conflicts.get_mut("customer") {
        p.fields.clear();
    }
    sync_both_ways(tenant, &sf, &hs, args.poll_ms);
    tenant.targets.retain(|t| t.id != "reporting");
    tenant.routes = vec![Route {
        entities: vec![Entity::Customer],
        targets: vec!["hubspot".into(), "salesforce".into()],
    }];
    let tenant_id = tenant.id.clone();

    crate::admin::ensure_local_kafka(&topology.runtime.kafka_bootstrap).await?;
    let bootstrap = topology.runtime.kafka_bootstrap.clone();
    let node = Node::start(topology.clone(), &[Role::All]).await?;
    let control = format!("http://{}", node.control_addr);
    hs.set_webhook_target(Some(format!(
        "http://{}/ingest/hubspot/v3/{tenant_id}/hs-marketing",
        node.ingest_addr.context("ingest runs")?
    )));

    // Both ways first: every person in both systems.
    let sf_emails = |sf: &SalesforceSandbox| -> HashMap<String, String> {
        sf.records("Contact")
            .iter()
            .filter_map(|r| Some((r.get("Email").as_str()?.trim().to_lowercase(), r.id.clone())))
            .collect()
    };
    let hs_emails = |hs: &HubSpotSandbox| -> HashMap<String, u64> {
        hs.objects(ObjectType::Contacts)
            .iter()
            .filter_map(|o| Some((o.properties.get("email")?.to_lowercase(), o.id)))
            .collect()
    };
    let initial = Instant::now();
    let everyone = loop {
        let (s, h) = (sf_emails(&sf), hs_emails(&hs));
        if s.len() >= 2 * args.contacts && h.len() >= 2 * args.contacts {
            break (s, h);
        }
        if initial.elapsed() > Duration::from_secs(180) {
            bail!(
                "initial sync incomplete after 180 s: {} in Salesforce, {} in HubSpot, {} wanted",
                s.len(),
                h.len(),
                2 * args.contacts
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let initial_s = initial.elapsed().as_secs_f64();
    let (sf_ids, hs_ids) = everyone;
    let people: Vec<&String> = sf_ids.keys().filter(|e| hs_ids.contains_key(*e)).collect();
    // Let the initial sync's echoes settle so the write counts below are the changes' own.
    let written_as = |target: &'static str, outcome: &'static str| {
        let control = control.clone();
        async move {
            metric(
                &control,
                hub_topology::metrics::VENDOR_RECORDS_TOTAL,
                &[("target", target), ("outcome", outcome)],
            )
            .await
        }
    };
    let written = |target: &'static str| written_as(target, "written");
    let mut settled = (written("hubspot").await?, written("salesforce").await?);
    let quiet = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = (written("hubspot").await?, written("salesforce").await?);
        if now == settled || quiet.elapsed() > Duration::from_secs(60) {
            break;
        }
        settled = now;
    }

    // The timed changes: even ones in Salesforce, odd ones in HubSpot, each on its own person.
    let mut pending: HashMap<usize, (bool, String, String, Instant)> = HashMap::new();
    let mut latencies: Vec<i64> = Vec::with_capacity(args.changes);
    let (mut sf_to_hs, mut hs_to_sf): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    let mut next = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(args.every_ms));
    let deadline = Instant::now()
        + Duration::from_millis(args.every_ms * args.changes as u64)
        + Duration::from_secs(60);
    while latencies.len() < args.changes && Instant::now() < deadline {
        tick.tick().await;
        if next < args.changes {
            let email = people[next % people.len()].clone();
            let city = format!("City{run_id}x{next}");
            let in_sf = next.is_multiple_of(2);
            if in_sf {
                let fields = json!({ "MailingCity": city });
                sf.update(
                    &sf_ids[&email],
                    fields.as_object().cloned().unwrap_or_default(),
                )
                .map_err(anyhow::Error::msg)?;
            } else {
                hs.update_contact(hs_ids[&email], &[("city", city.as_str())])
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            }
            pending.insert(next, (in_sf, email, city, Instant::now()));
            next += 1;
        }
        // A person's later change overwrites an earlier one still in flight: only the
        // latest value per person can be seen arriving.
        let mut arrived = Vec::new();
        for (n, (in_sf, email, city, at)) in &pending {
            let there = if *in_sf {
                hs.object(ObjectType::Contacts, hs_ids[email])
                    .and_then(|o| o.properties.get("city").cloned())
            } else {
                sf.record(&sf_ids[email])
                    .and_then(|r| r.get("MailingCity").as_str().map(str::to_string))
            };
            if there.as_deref() == Some(city.as_str()) {
                arrived.push((*n, *in_sf, at.elapsed().as_millis() as i64));
            }
        }
        for (n, in_sf, ms) in arrived {
            pending.remove(&n);
            latencies.push(ms);
            if in_sf {
                sf_to_hs.push(ms);
            } else {
                hs_to_sf.push(ms);
            }
        }
    }
    let timed = latencies.len();
    latencies.sort_unstable();
    sf_to_hs.sort_unstable();
    hs_to_sf.sort_unstable();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = (written("hubspot").await?, written("salesforce").await?);
    let decided = |outcome: &'static str| {
        let control = control.clone();
        let tenant = tenant_id.clone();
        async move {
            metric(
                &control,
                hub_topology::metrics::TRANSFORM_DECISIONS_TOTAL,
                &[("tenant", tenant.as_str()), ("outcome", outcome)],
            )
            .await
        }
    };
    let report = json!({
        "contacts_each_side": args.contacts,
        "initial_sync_s": (initial_s * 10.0).round() / 10.0,
        "changes": args.changes,
        "arrived": timed,
        "p50_ms": percentile(&latencies, 50.0),
        "p90_ms": percentile(&latencies, 90.0),
        "p99_ms": percentile(&latencies, 99.0),
        "max_ms": latencies.last().copied().unwrap_or(0),
        "salesforce_to_hubspot_p50_p99_ms": [percentile(&sf_to_hs, 50.0), percentile(&sf_to_hs, 99.0)],
        "hubspot_to_salesforce_p50_p99_ms": [percentile(&hs_to_sf, 50.0), percentile(&hs_to_sf, 99.0)],
        "not_written_back_to_origin": written_as("hubspot", "own_change").await? + written_as("salesforce", "own_change").await?,
        "writes_to_hubspot": after.0 - settled.0,
        "writes_to_salesforce": after.1 - settled.1,
        "echoes": decided("echo").await?,
        "applied": decided("applied").await?,
        "skipped": decided("skipped").await?,
        "conflicts": decided("conflict").await?,
        "poll_ms": args.poll_ms,
        "namespace": topology.runtime.namespace,
    });
    node.shutdown().await;
    let _ = crate::admin::delete_topics(&bootstrap, &topology.topics()).await;
    let _ = std::fs::remove_file(&tmp);
    hs.shutdown().await;
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if timed < args.changes {
        bail!(
            "{} of {} changes never arrived",
            args.changes - timed,
            args.changes
        );
    }
    Ok(())
}

/// A counter's value on a node's `/metrics`, summed over the series matching `labels`.
async fn metric(control: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{control}/metrics"))
        .await?
        .text()
        .await?;
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Wires `tenant`'s `sf-main` and `hs-marketing` connectors to the two sandboxes (Salesforce
/// polled every `sf_poll_ms`; HubSpot by webhook — the caller points the sandbox's webhook at
/// `/ingest/hubspot/v3/<tenant>/hs-marketing` — with a slow search poll as the safety net)
/// and adds the vendor targets `hubspot` (upsert by email) and `salesforce` (update by `Id`,
/// or create by the `DMS_Customer_Id__c` external id), routing customers to both.
pub fn sync_both_ways(
    tenant: &mut hub_topology::Tenant,
    sf: &SalesforceSandbox,
    hs: &HubSpotSandbox,
    sf_poll_ms: u64,
) {
    for c in &mut tenant.connectors {
        if c.id == "hs-marketing" {
            // HubSpot signs its webhooks with the app's client secret (§3.8).
            c.webhook_secret = hs.config().client_secret.clone();
        }
        c.api = match c.id.as_str() {
            "sf-main" => Some(salesforce_api(sf, sf_poll_ms)),
            "hs-marketing" => Some(hubspot_api(hs, 10_000)),
            _ => None,
        };
    }
    tenant
        .targets
        .retain(|t| t.id != "hubspot" && t.id != "salesforce");
    tenant.targets.push(Target {
        id: "hubspot".into(),
        kind: TargetKind::Vendor {
            connector: "hs-marketing".into(),
            object: None,
            id_property: "email".into(),
            id_field: "email".into(),
            batch_size: 100,
        },
    });
    tenant.targets.push(Target {
        id: "salesforce".into(),
        kind: TargetKind::Vendor {
            connector: "sf-main".into(),
            object: Some("Contact".into()),
            id_property: "DMS_Customer_Id__c".into(),
            id_field: "key".into(),
            batch_size: 200,
        },
    });
    for r in &mut tenant.routes {
        if r.entities.contains(&Entity::Customer) {
            r.targets.retain(|t| t != "hubspot" && t != "salesforce");
        }
    }
    tenant.routes.push(Route {
        entities: vec![Entity::Customer],
        targets: vec!["hubspot".into(), "salesforce".into()],
    });
}

/// The `api:` section of a connector to the Salesforce sandbox: the JWT bearer flow (the
/// sandbox checks claims, not signatures), polling `Contact` every `poll_ms`.
pub fn salesforce_api(sf: &SalesforceSandbox, poll_ms: u64) -> ConnectorApi {
    ConnectorApi {
        base_url: sf.base_url().to_string(),
        token: None,
        jwt: Some(JwtBearerSettings {
            consumer_key: sf.config().consumer_key.clone(),
            username: sf.config().username.clone(),
            private_key: None,
        }),
        poll_ms,
        poll: vec!["Contact".into()],
        requests_per_10s: None,
        daily_limit: None,
        budget_warn_percent: None,
        headroom: None,
        public_url: None,
    }
}

/// The `api:` section of a connector to the HubSpot sandbox: its private-app token, searching
/// `contacts` every `poll_ms` (0: never).
pub fn hubspot_api(hs: &HubSpotSandbox, poll_ms: u64) -> ConnectorApi {
    ConnectorApi {
        base_url: hs.base_url().to_string(),
        token: Some(hs.private_app_token().to_string()),
        jwt: None,
        poll_ms,
        poll: vec!["contacts".into()],
        requests_per_10s: None,
        daily_limit: None,
        budget_warn_percent: None,
        headroom: None,
        public_url: None,
    }
}
