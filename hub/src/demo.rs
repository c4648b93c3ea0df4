//! `hub demo`: everything on one machine, on embedded defaults, with sample traffic.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use clap::Args;
use hub_connectors::generic::signature;
use hub_sandbox::hubspot::seed::SeedSize as HubSpotSeed;
use hub_sandbox::hubspot::store::ObjectType;
use hub_sandbox::salesforce::seed::SeedSize as SalesforceSeed;
use hub_sandbox::{HubSpotConfig, HubSpotSandbox, SalesforceConfig, SalesforceSandbox};
use serde_json::{Value, json};

use crate::node::{Node, wait_for_signal};
use crate::{Overrides, Role};

#[derive(Args)]
pub struct DemoArgs {
    /// A topology file to run instead of the built-in demo topology.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sample changes posted per second (0: none).
    #[arg(long, default_value_t = 2)]
    rate: u32,
    /// Leave out the Salesforce and HubSpot sandboxes and the `demo-sync` tenant that syncs
    /// them both ways.
    #[arg(long)]
    no_sandboxes: bool,
    #[command(flatten)]
    overrides: Overrides,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut topology = match &args.config {
        Some(p) => crate::load_topology(p)?,
        None => hub_topology::parse(hub_topology::DEMO_TOPOLOGY)
            .map_err(|e| anyhow::anyhow!("demo topology: {e:?}"))?,
    };
    args.overrides.apply(&mut topology.runtime);
    crate::admin::ensure_local_kafka(&topology.runtime.kafka_bootstrap).await?;
    let sandboxes = if args.config.is_none() && !args.no_sandboxes {
        Some(start_sandboxes(&mut topology).await?)
    } else {
        None
    };
    let (control, admin) = demo_control_plane(&topology).await?;
    let node = Node::start_with(topology.clone(), &[Role::All], Some(control)).await?;
    let ingest = node.ingest_addr.expect("demo runs ingest");
    let secret = topology.tenants[0].connectors[0].webhook_secret.clone();
    println!(
        "\nAutoMatrix Integration Hub demo is running.\n\
         \n  ingest     http://{ingest}/ingest/v1/<tenant>/<connector>/<entity>  (e.g. demo-motors/sf-main/Contact)\
         \n  metrics    http://{c}/metrics\
         \n  health     http://{c}/healthz  http://{c}/readyz\
         \n  registry   http://{c}/subjects  (Confluent Schema Registry API)\
         \n  SQL sink   {sql}  (tables canonical_customer, canonical_vehicle, ...)\
         \n  topics     {ns}.raw.*, {ns}.canonical.*, {ns}.conflicts, {ns}.dlq.*  on {kafka}\
         \n  conflicts  Salesforce and HubSpot edits of one customer merge (Salesforce first);\
         \n             name conflicts wait for a person on {ns}.conflicts\
         \n  REST API   http://{c}/api/v1  (OpenAPI: /api/v1/openapi.json; live jobs: ws://{c}/api/v1/ws/sync-monitor)\
         \n             sign in as {admin_email} with the password in {admin_file}:\
         \n  curl -si -H 'content-type: application/json' -d \"{{\\\"email\\\":\\\"{admin_email}\\\",\\\"password\\\":\\\"$(cat {admin_file})\\\"}}\" http://{c}/api/v1/auth/login\
         \n\nSample Salesforce and HubSpot changes are posted {rate}/s. Post your own:\n\
         \n  body='{{\"Id\":\"003X\",\"LastName\":\"Lee\",\"Email\":\"pat@example.com\"}}'; ts=$(date +%s)\
         \n  sig=$(printf '%s.%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac '{secret}' | cut -d' ' -f2)\
         \n  curl -si -H 'content-type: application/json' -H \"x-hub-timestamp: $ts\" -H \"x-hub-signature-256: sha256=$sig\" \\\
         \n       -d \"$body\" http://{ingest}/ingest/v1/demo-motors/sf-main/Contact\
         \n\nCtrl-C stops it.\n",
        c = node.control_addr,
        sql = topology.runtime.sql_url,
        ns = topology.runtime.namespace,
        kafka = topology.runtime.kafka_bootstrap,
        rate = args.rate,
        admin_email = DEMO_ADMIN,
        admin_file = admin.display(),
    );
    let edits = sandboxes.as_ref().map(|(sf, hs)| {
        hs.set_webhook_target(Some(format!(
            "http://{ingest}/ingest/hubspot/v3/{SYNC_TENANT}/hs-marketing"
        )));
        println!(
            "Sandboxes: Salesforce {sf_url} and HubSpot {hs_url}, {n} different people in each.\
             \nTenant '{SYNC_TENANT}' syncs them both ways: every person appears in the other system\
             \nwithin seconds, and an edit on either side (one every {every} s here) reaches the other.\
             \nSee them in the SQL sink's canonical_customer (tenant_id = '{SYNC_TENANT}') or in the\
             \nsandboxes' APIs (`hub sandbox` prints their credentials).\n",
            sf_url = sf.base_url(),
            hs_url = hs.base_url(),
            n = SANDBOX_PEOPLE,
            every = EDIT_EVERY.as_secs(),
        );
        tokio::spawn(simulated_edits(sf.clone(), hs.clone()))
    });
    let traffic = (args.rate > 0).then(|| {
        let base = format!("http://{ingest}");
        let tenant = topology.tenants[0].clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let period = Duration::from_millis(1000 / u64::from(args.rate.max(1)));
            for i in 0u64.. {
                let (connector, entity, record) = sample(i);
                let secret = tenant
                    .connector(connector)
                    .map(|c| c.webhook_secret.clone())
                    .unwrap_or_default();
                let body = serde_json::to_vec(&record).unwrap_or_default();
                if let Err(e) =
                    post(&client, &base, &tenant.id, connector, entity, &secret, body).await
                {
                    eprintln!("demo traffic: {e}");
                }
                tokio::time::sleep(period).await;
            }
        })
    });
    let _ = secret;
    wait_for_signal().await;
    if let Some(t) = traffic {
        t.abort();
    }
    if let Some(t) = edits {
        t.abort();
    }
    node.shutdown().await;
    Ok(())
}

/// The demo's platform admin.
const DEMO_ADMIN: &str = "admin@demo.example";

/// The demo's control plane, on embedded defaults next to its SQL sink: an SQLite store
/// (`hub-control.db`), a master key file made on first run (`hub-control.key`, mode 0600),
/// a platform admin whose random password is in `hub-demo-admin.txt` (0600), the topology's
/// tenants, and an hourly schedule for each polling connector (so the first jobs run at
/// start). `HUB_CONTROL_STORE` / `HUB_MASTER_KEY` override the store and key.
async fn demo_control_plane(
    topology: &hub_topology::Topology,
) -> anyhow::Result<(crate::node::ControlPlane, PathBuf)> {
    use hub_control::auth::TenantId;
    use hub_control::store::jobs::Frequency;
    use hub_control::{ControlStore, MasterKey, Secret, StoreSettings};
    let (store_url, master_key) = match crate::node::ControlPlane::from_env()? {
        Some(cp) => (cp.store_url, cp.master_key),
        None => {
            let key_file = PathBuf::from("hub-control.key");
            let key = if key_file.exists() {
                MasterKey::from_base64(1, &std::fs::read_to_string(&key_file)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?
            } else {
                let key = MasterKey::generate(1);
                write_private(&key_file, key.to_base64().expose())?;
                key
            };
            ("sqlite://hub-control.db".to_string(), key)
        }
    };
    let store = ControlStore::connect(&store_url, master_key.clone(), StoreSettings::default())
        .await
        .map_err(|e| anyhow::anyhow!("opening the demo control store {store_url}: {e}"))?;
    let admin_file = PathBuf::from("hub-demo-admin.txt");
    if store.find_user_by_email(DEMO_ADMIN).await?.is_none() {
        let password = uuid::Uuid::new_v4().simple().to_string();
        store
            .create_user(DEMO_ADMIN, &Secret::new(password.clone()), true)
            .await
            .map_err(|e| anyhow::anyhow!("creating the demo admin: {e}"))?;
        write_private(&admin_file, &password)?;
    }
    for t in &topology.tenants {
        let id = TenantId::new(t.id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        if store.get_tenant(&id).await?.is_none() {
            store
                .create_tenant(&id, t.name.as_deref().unwrap_or(&t.id))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        for c in &t.connectors {
            if store.get_connector(&id, &c.id).await?.is_some() {
                continue;
            }
            // The console's view of the topology's connectors: ones the hub polls sync
            // hourly (their first job runs at start), webhook ones in real time.
            let (endpoint, auth_type, frequency) = match &c.api {
                Some(api) if api.jwt.is_some() => (api.base_url.clone(), "jwt", "hourly"),
                Some(api) => (api.base_url.clone(), "api_key", "hourly"),
                None => (
                    "https://webhooks.invalid".to_string(),
                    "custom",
                    "real-time",
                ),
            };
            let body = serde_json::json!({
                "name": c.id,
                "vendor": c.vendor.name(),
                "endpoint": endpoint,
                "auth_type": auth_type,
                "sync": { "frequency": frequency, "direction": "bidirectional" },
            });
            let spec = hub_control::store::connectors::ConnectorSpec::from_json(&body, &[])
                .map_err(|e| anyhow::anyhow!("demo connector {}: {e:?}", c.id))?;
            store
                .create_connector(&id, &c.id, &spec, true)
                .await
                .map_err(|e| anyhow::anyhow!("demo connector {}: {e}", c.id))?;
            if frequency == "hourly" && store.get_schedule(&id, &c.id).await?.is_none() {
                store
                    .set_schedule(&id, &c.id, Frequency::Hourly, None)
                    .await?;
            }
        }
    }
    store.close().await;
    Ok((
        crate::node::ControlPlane {
            store_url,
            master_key,
        },
        admin_file,
    ))
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The tenant the demo syncs between the two sandboxes.
const SYNC_TENANT: &str = "demo-sync";
/// People seeded in each sandbox (different ones on each side).
const SANDBOX_PEOPLE: usize = 500;
/// How often the demo edits a contact in one sandbox or the other.
const EDIT_EVERY: Duration = Duration::from_secs(3);

/// Starts both sandboxes, seeded, and adds the `demo-sync` tenant that syncs them both ways:
/// the demo tenant's connectors and SQL reporting, plus the vendor targets.
async fn start_sandboxes(
    topology: &mut hub_topology::Topology,
) -> anyhow::Result<(Arc<SalesforceSandbox>, Arc<HubSpotSandbox>)> {
    let sf = SalesforceSandbox::start(SalesforceConfig {
        seed: 11,
        seed_size: SalesforceSeed {
            accounts: 20,
            contacts: SANDBOX_PEOPLE,
            leads: 0,
            opportunities: 0,
            vehicles: 0,
        },
        daily_api_requests: 10_000_000,
        ..Default::default()
    })
    .await?;
    let hs = HubSpotSandbox::start(HubSpotConfig {
        seed: 29,
        seed_size: HubSpotSeed {
            contacts: SANDBOX_PEOPLE,
            companies: 0,
            deals: 0,
        },
        ..Default::default()
    })
    .await?;
    let mut tenant = topology.tenants[0].clone();
    tenant.id = SYNC_TENANT.into();
    tenant.name = Some("Demo: Salesforce ⇄ HubSpot sandboxes".into());
    tenant
        .connectors
        .retain(|c| c.id == "sf-main" || c.id == "hs-marketing");
    crate::bench_sync::sync_both_ways(&mut tenant, &sf, &hs, 1000);
    topology.tenants.push(tenant);
    Ok((Arc::new(sf), Arc::new(hs)))
}

/// A person editing contacts: a city, every few seconds, alternately in each sandbox.
async fn simulated_edits(sf: Arc<SalesforceSandbox>, hs: Arc<HubSpotSandbox>) {
    const CITIES: [&str; 6] = ["Austin", "Denver", "Tulsa", "Omaha", "Boise", "Reno"];
    for i in 0usize.. {
        tokio::time::sleep(EDIT_EVERY).await;
        let city = CITIES[i % CITIES.len()];
        if i % 2 == 0 {
            let records = sf.records("Contact");
            if let Some(r) = records.get((i * 7) % records.len().max(1)) {
                let fields = json!({ "MailingCity": city });
                let _ = sf.update(&r.id, fields.as_object().cloned().unwrap_or_default());
            }
        } else {
            let objects = hs.objects(ObjectType::Contacts);
            if let Some(o) = objects.get((i * 7) % objects.len().max(1)) {
                let _ = hs.update_contact(o.id, &[("city", city)]);
            }
        }
    }
}

/// The i-th sample change: Salesforce contacts and vehicles, HubSpot contacts, and now and
/// then a record that fails validation, so the dead-letter topic has something to show.
pub fn sample(i: u64) -> (&'static str, &'static str, Value) {
    let now = hub_schemas::records::now_ms();
    match i % 4 {
        0 => ("sf-main", "Contact", sf_contact(i, now)),
        1 => ("sf-main", "Vehicle__c", sf_vehicle(i, now)),
        2 => ("hs-marketing", "contacts", hs_contact(i, now)),
        _ if i % 8 == 3 => (
            "sf-main",
            "Vehicle__c",
            json!({"Id": format!("a0B{i:012}"), "VIN__c": "NOT-A-VIN", "LastModifiedDate": sf_time(now)}),
        ),
        _ => ("sf-main", "Contact", sf_contact(i + 1_000_000, now)),
    }
}

const FIRST: [&str; 8] = [
    "Maria", "James", "Aisha", "Wei", "Carlos", "Emily", "Dmitri", "Priya",
];
const LAST: [&str; 8] = [
    "Garcia", "Smith", "Okafor", "Chen", "Rivera", "Johnson", "Ivanov", "Patel",
];
const CARS: [(&str, &str, &str); 6] = [
    ("Toyota", "Camry", "XLE"),
    ("Honda", "CR-V", "EX-L"),
    ("Ford", "F-150", "Lariat"),
    ("Chevrolet", "Silverado 1500", "LT"),
    ("Tesla", "Model 3", "Long Range"),
    ("Hyundai", "Tucson", "SEL"),
];

/// Salesforce's `LastModifiedDate` shape: `2024-05-01T12:00:00.000+0000`.
pub fn sf_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

pub fn sf_contact(i: u64, now_ms: i64) -> Value {
    let f = FIRST[(i % 8) as usize];
    let l = LAST[(i / 8 % 8) as usize];
    json!({
        "attributes": {"type": "Contact"},
        "Id": format!("003{i:015}"),
        "FirstName": f,
        "LastName": l,
        "Email": format!("{}.{}.{i}@example.com", f.to_lowercase(), l.to_lowercase()),
        "Phone": format!("(512) 555-{:04}", i % 10_000),
        "MailingStreet": format!("{} Congress Ave", 100 + i % 900),
        "MailingCity": "Austin",
        "MailingState": "TX",
        "MailingPostalCode": "78701",
        "IsDeleted": false,
        "LastModifiedDate": sf_time(now_ms),
    })
}

/// A VIN unique to `i`, with a correct check digit.
pub fn vin(i: u64) -> String {
    hub_transform::formats::sample_vin("1HGCM826", i)
}

pub fn sf_vehicle(i: u64, now_ms: i64) -> Value {
    let (make, model, trim) = CARS[(i % 6) as usize];
    json!({
        "attributes": {"type": "Vehicle__c"},
        "Id": format!("a0B{i:015}"),
        "VIN__c": vin(i),
        "Stock_Number__c": format!("S{:06}", i % 1_000_000),
        "Year__c": 2018 + (i % 8),
        "Make__c": make,
        "Model__c": model,
        "Trim__c": trim,
        "Mileage__c": (i * 7919) % 90_000,
        "Condition__c": if i.is_multiple_of(3) { "New" } else { "Used" },
        "Status__c": "In_Stock",
        "Price__c": format!("${},{:03}.{:02}", 18 + i % 40, i % 1000, i % 100),
        "IsDeleted": false,
        "LastModifiedDate": sf_time(now_ms),
    })
}

pub fn hs_contact(i: u64, now_ms: i64) -> Value {
    let f = FIRST[(i % 8) as usize];
    let l = LAST[(i / 8 % 8) as usize];
    json!({
        "id": format!("{}", 51_000 + i),
        "properties": {
            "firstname": f,
            "lastname": l,
            "email": format!("{}.{}.hs{i}@example.com", f.to_lowercase(), l.to_lowercase()),
            "phone": format!("+1 737 555 {:04}", i % 10_000),
            "city": "Round Rock",
            "state": "TX",
            "zip": "78664"
        },
        "archived": false,
        "updatedAt": now_ms,
    })
}

/// Posts one signed body to the ingest endpoint; the ingest ids on 202.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    connector: &str,
    entity: &str,
    secret: &str,
    body: Vec<u8>,
) -> anyhow::Result<Vec<String>> {
    let ts = hub_schemas::records::now_ms() / 1000;
    let sig = signature::sign(secret.as_bytes(), ts, &body);
    let resp = client
        .post(format!("{base}/ingest/v1/{tenant}/{connector}/{entity}"))
        .header("content-type", "application/json")
        .header(signature::TIMESTAMP_HEADER, ts.to_string())
        .header(signature::SIGNATURE_HEADER, sig)
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if status.as_u16() != 202 {
        anyhow::bail!("ingest answered {status}: {text}");
    }
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["ingest_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_times_look_like_salesforce() {
        assert_eq!(sf_time(1_714_564_800_123), "2024-05-01T12:00:00.123+0000");
        assert_eq!(
            hub_connectors::timefmt::parse_timestamp_ms(&sf_time(1_714_564_800_123)),
            Some(1_714_564_800_123)
        );
    }
}
