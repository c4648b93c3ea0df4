//! # hub-e2e — end-to-end tests across crates
//!
//! A harness that runs the real `hub` binary (built by `cargo test --workspace`) as child
//! processes against a real Kafka and a real PostgreSQL, each test in a namespace and tenant
//! of its own. Service addresses come from the environment (`HUB_KAFKA_BOOTSTRAP`,
//! `HUB_TEST_PG_URL`); without them a test reports itself skipped, except under CI, where a
//! missing service is a failure.
//!
//! Depends on: the `hub` binary, hub-schemas (to decode what it wrote), hub-connectors (to
//! sign webhooks). Must not know about: any crate's internals.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hub_connectors::generic::signature;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

/// The services a test needs, or `None` (and a printed skip) when they are not configured.
pub struct Services {
    pub kafka: String,
    pub pg_url: String,
}

impl Services {
    pub fn from_env(test: &str) -> Option<Services> {
        let kafka = std::env::var("HUB_KAFKA_BOOTSTRAP").ok();
        let pg_url = std::env::var("HUB_TEST_PG_URL").ok();
        match (kafka, pg_url) {
            (Some(kafka), Some(pg_url)) => Some(Services { kafka, pg_url }),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{test}: HUB_KAFKA_BOOTSTRAP and HUB_TEST_PG_URL must be set under CI")
            }
            _ => {
                eprintln!(
                    "{test}: skipped (set HUB_KAFKA_BOOTSTRAP and HUB_TEST_PG_URL, or run scripts/test)"
                );
                None
            }
        }
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repo")
        .to_path_buf()
}

/// The `hub` binary next to this test executable (target/<profile>/hub).
pub fn hub_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HUB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    profile_dir.join("hub")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One test's own corner of the world: namespace, tenant, topology file, log directory.
pub struct Scenario {
    pub name: String,
    pub namespace: String,
    pub tenant: String,
    pub topology: PathBuf,
    pub dir: PathBuf,
    pub services: Services,
}

pub const SF_SECRET: &str = "e2e-salesforce-webhook-secret";
/// The demo topology's HubSpot webhook secret (its default).
pub const HS_SECRET: &str = "demo-hubspot-webhook-secret";

/// A scenario's topics go when it ends (unless it panicked, or `HUB_E2E_KEEP` is set), so
/// the shared test broker does not pile up partitions run after run: a broker holding
/// thousands takes minutes to restart, which the outage test does.
impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("HUB_E2E_KEEP").is_some() {
            return;
        }
        let bootstrap = self.services.kafka.clone();
        let prefix = format!("{}.", self.namespace);
        // Its own thread and runtime: the test's runtime may be the one dropping us.
        let cleanup = std::thread::spawn(move || -> anyhow::Result<()> {
            use rdkafka::admin::{AdminClient, AdminOptions};
            use rdkafka::client::DefaultClientContext;
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let metadata = admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))?;
            let topics: Vec<String> = metadata
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| n.starts_with(&prefix))
                .collect();
            if topics.is_empty() {
                return Ok(());
            }
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(admin.delete_topics(&names, &AdminOptions::new()))?;
            Ok(())
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("{}: topics left behind: {e}", self.namespace);
        }
    }
}

impl Scenario {
    pub fn new(name: &str, services: Services) -> anyhow::Result<Scenario> {
        let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let namespace = format!("e2e-{name}-{run}");
        let tenant = format!("t-{run}");
        let dir = std::env::temp_dir().join(&namespace);
        std::fs::create_dir_all(&dir)?;
        let demo = std::fs::read_to_string(repo_root().join("topology/examples/demo.yaml"))?;
        let text = demo
            .replace("id: demo-motors", &format!("id: {tenant}"))
            .replace(
                "${DEMO_SF_SECRET:-demo-salesforce-webhook-secret}",
                SF_SECRET,
            );
        let topology = dir.join("topology.yaml");
        std::fs::write(&topology, text)?;
        Ok(Scenario {
            name: name.to_string(),
            namespace,
            tenant,
            topology,
            dir,
            services,
        })
    }

    /// A scenario whose topology is the demo's, changed by `edit` (tenants added, conflict
    /// policies or targets set, …).
    pub fn with_topology(
        name: &str,
        services: Services,
        edit: impl FnOnce(&mut hub_topology::Topology, &str),
    ) -> anyhow::Result<Scenario> {
        let s = Scenario::new(name, services)?;
        let text = std::fs::read_to_string(&s.topology)?;
        let mut topology =
            hub_topology::parse_with_env(&text, &|_| None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        edit(&mut topology, &s.tenant);
        std::fs::write(&s.topology, serde_yaml::to_string(&topology)?)?;
        Ok(s)
    }

    /// Starts `hub run` with the given roles (the control role among them, serving the
    /// embedded registry); returns once `/readyz` answers 200.
    pub fn spawn(&self, roles: &str, node_id: &str) -> anyhow::Result<HubProcess> {
        self.spawn_with_registry(roles, node_id, "embedded")
    }

    /// Starts a node that uses the registry at `registry` (another node's control URL).
    pub fn spawn_with_registry(
        &self,
        roles: &str,
        node_id: &str,
        registry: &str,
    ) -> anyhow::Result<HubProcess> {
        self.spawn_with_env(roles, node_id, registry, &[])
    }

    /// Starts a node with extra environment variables (e.g. the control store's).
    pub fn spawn_with_env(
        &self,
        roles: &str,
        node_id: &str,
        registry: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<HubProcess> {
        let ingest_port = free_port();
        let control_port = free_port();
        let log = self.dir.join(format!("{node_id}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(hub_bin())
            .args(["run", "--config"])
            .arg(&self.topology)
            .args(["--role", roles])
            .env("HUB_KAFKA_BOOTSTRAP", &self.services.kafka)
            .env("HUB_NAMESPACE", &self.namespace)
            .env("HUB_SQL_URL", &self.services.pg_url)
            .env("HUB_INGEST_LISTEN", format!("127.0.0.1:{ingest_port}"))
            .env("HUB_CONTROL_LISTEN", format!("127.0.0.1:{control_port}"))
            .env("HUB_NODE_ID", node_id)
            .env("HUB_REGISTRY", registry)
            // HUB_E2E_LOG sets the nodes' log filter when a test needs a closer look.
            .env(
                "HUB_LOG",
                std::env::var("HUB_E2E_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", hub_bin().display()))?;
        let p = HubProcess {
            child,
            ingest: format!("http://127.0.0.1:{ingest_port}"),
            control: format!("http://127.0.0.1:{control_port}"),
            log,
        };
        p.wait_ready(Duration::from_secs(90))?;
        Ok(p)
    }
}

/// A running `hub` child process.
pub struct HubProcess {
    pub child: Child,
    pub ingest: String,
    pub control: String,
    pub log: PathBuf,
}

impl HubProcess {
    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let client = http_probe::get;
        while Instant::now() < deadline {
            if client(&format!("{}/readyz", self.control)).is_ok_and(|s| s == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "hub did not become ready; log: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// SIGKILL: no goodbye, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Tiny blocking GET over std, so readiness polling needs no runtime.
mod http_probe {
    pub fn get(url: &str) -> std::io::Result<u16> {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        buf.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))
    }
}

/// Posts a signed batch as the demo's Salesforce connector; the HTTP status and the ingest
/// ids of a 202.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    entity: &str,
    records: &[Value],
) -> anyhow::Result<(u16, Vec<String>)> {
    post_as(
        client,
        base,
        tenant,
        ("sf-main", SF_SECRET),
        entity,
        records,
    )
    .await
}

/// Posts a signed batch as `connector` (id, webhook secret).
pub async fn post_as(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    (connector, secret): (&str, &str),
    entity: &str,
    records: &[Value],
) -> anyhow::Result<(u16, Vec<String>)> {
    let body = serde_json::to_vec(records)?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let resp = client
        .post(format!("{base}/ingest/v1/{tenant}/{connector}/{entity}"))
        .header("content-type", "application/json")
        .header(signature::TIMESTAMP_HEADER, ts.to_string())
        .header(
            signature::SIGNATURE_HEADER,
            signature::sign(secret.as_bytes(), ts, &body),
        )
        .timeout(Duration::from_secs(60))
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let ids = v["ingest_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok((status, ids))
}

/// A valid VIN for `i` (check digit computed).
pub fn vin(i: u64) -> String {
    hub_transform::formats::sample_vin("5YJ3E1EA", i)
}

/// A Salesforce Contact; `valid = false` drops the required last name and spoils the email.
pub fn contact(i: u64, valid: bool) -> Value {
    let mut c = json!({
        "Id": format!("003E2E{i:012}"),
        "FirstName": "Pat",
        "LastName": format!("Lee{i}"),
        "Email": format!(" Pat.Lee.{i}@Example.com "),
        "Phone": format!("(512) 555-{:04}", i % 10_000),
        "LastModifiedDate": now_ms_text(),
    });
    if !valid {
        c["LastName"] = Value::Null;
        c["Email"] = json!("not-an-email");
    }
    c
}

/// A Salesforce Vehicle__c; `valid = false` spoils the VIN's check digit.
pub fn vehicle(i: u64, valid: bool) -> Value {
    let mut v = vin(i);
    if !valid {
        let bad = if &v[8..9] == "1" { "2" } else { "1" };
        v.replace_range(8..9, bad);
    }
    json!({
        "Id": format!("a0BE2E{i:012}"),
        "VIN__c": v,
        "Year__c": "2022",
        "Make__c": "Tesla",
        "Model__c": "Model 3",
        "Price__c": format!("${},{:03}.50", 30 + i % 20, i % 1000),
        "Mileage__c": (i * 13) % 50_000,
        "LastModifiedDate": now_ms_text(),
    })
}

pub fn now_ms_text() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    format!("{ms}")
}

/// Waits until `check` returns `Some`, polling; fails with `what` at the deadline.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One row of a canonical table as the tests check it.
#[derive(Debug, Clone)]
pub struct CanonicalRow {
    pub ingest_id: String,
    pub key: String,
    pub applied_count: i64,
    pub doc: Value,
}

/// Every row of `canonical_<entity>` for a tenant.
pub async fn pg_rows(
    pool: &sqlx::PgPool,
    entity: &str,
    tenant: &str,
    columns: &[&str],
) -> anyhow::Result<Vec<CanonicalRow>> {
    use sqlx::Row;
    let cols = columns
        .iter()
        .map(|c| format!(", {c}::text"))
        .collect::<String>();
    let sql = format!(
        "SELECT ingest_id, key, hub_applied_count{cols} FROM canonical_{entity} WHERE tenant_id = $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_all(pool)
        .await;
    let rows = match rows {
        Ok(r) => r,
        // The sink creates its tables on start; before that there is nothing to see.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    rows.iter()
        .map(|r| {
            let mut doc = serde_json::Map::new();
            for (i, c) in columns.iter().enumerate() {
                let v: Option<String> = r.try_get(3 + i)?;
                doc.insert(c.to_string(), v.map_or(Value::Null, Value::String));
            }
            Ok(CanonicalRow {
                ingest_id: r.try_get(0)?,
                key: r.try_get(1)?,
                applied_count: r.try_get(2)?,
                doc: Value::Object(doc),
            })
        })
        .collect()
}

/// Reads a whole topic with `read_committed`, returning (ingest-id header, value bytes) per record.
pub fn read_topic(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<(Option<String>, Vec<u8>)>> {
    Ok(read_keyed(bootstrap, topic)?
        .into_iter()
        .map(|r| (r.ingest_id, r.value))
        .collect())
}

/// One record read back from a topic.
pub struct TopicRecord {
    pub key: Option<String>,
    pub ingest_id: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: Vec<u8>,
}

impl TopicRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a whole topic with `read_committed`, in order within each partition.
pub fn read_keyed(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<TopicRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("e2e-reader-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashSet::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            if hi > lo {
                remaining.insert(p.id());
            }
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut idle = Instant::now();
    // Read until no record arrives for 2 s: committed records are all readable by then, and
    // the position check below cannot see past transaction markers.
    while idle.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        if let Some(r) = consumer.poll(Duration::from_millis(100)) {
            let m = r?;
            idle = Instant::now();
            let id = m.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == hub_schemas::headers::INGEST_ID)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            out.push(TopicRecord {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                ingest_id: id,
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                let v = x.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (x.key.to_string(), v.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                value: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    Ok(out)
}

/// The sum of a counter on a node's `/metrics` over the series whose labels include every
/// `label="value"` pair given.
pub async fn counter(control: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
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

/// Runs the local-Kafka script (`start` / `stop`).
pub fn kafka_script(action: &str) -> anyhow::Result<()> {
    let status = Command::new("bash")
        .arg(repo_root().join("deploy/local/kafka.sh"))
        .arg(action)
        .status()?;
    if !status.success() {
        bail!("kafka.sh {action} failed: {status}");
    }
    Ok(())
}

/// The `api:` section of a connector to the Salesforce sandbox: the JWT bearer flow (the
/// sandbox checks claims, not signatures), polling `Contact` every `poll_ms`.
pub fn salesforce_api(
    sf: &hub_sandbox::SalesforceSandbox,
    poll_ms: u64,
) -> hub_topology::ConnectorApi {
    hub_topology::ConnectorApi {
        base_url: sf.base_url().to_string(),
        token: None,
        jwt: Some(hub_topology::JwtBearerSettings {
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
/// `contacts` every `poll_ms`.
pub fn hubspot_api(hs: &hub_sandbox::HubSpotSandbox, poll_ms: u64) -> hub_topology::ConnectorApi {
    hub_topology::ConnectorApi {
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
