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
//! sync needs (the limit-bound minimum), their ratio, and the 429s the sandbox answered.

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
            "sf-main" => Some(ConnectorApi {
                base_url: sf.base_url().to_string(),
                token: None,
                jwt: Some(JwtBearerSettings {
                    consumer_key: sf.config().consumer_key.clone(),
                    username: sf.config().username.clone(),
                }),
                poll_ms: 500,
                poll: vec!["Contact".into()],
                requests_per_10s: None,
                headroom: None,
            }),
            "hs-marketing" => Some(ConnectorApi {
                base_url: hs.base_url().to_string(),
                token: Some(hs.private_app_token().to_string()),
                jwt: None,
                poll_ms: 0,
                poll: Vec::new(),
                requests_per_10s: Some(args.hubspot_per_10s),
                headroom: Some(args.headroom),
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
    loop {
        let n = hs.count(ObjectType::Contacts);
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
