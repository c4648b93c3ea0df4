//! `hub bench api`: the control API (`/api/v1`) under load from N concurrent clients.
//!
//! The API is served in-process on `127.0.0.1:0` (as a node serves it, with the client's
//! address from the connection) over a store of its own: a fresh SQLite file by default, or a
//! PostgreSQL database given by URL, where the run works in a schema of its own
//! (`hub_bench_<run>`, dropped afterwards unless `--keep`). It is seeded like a real control
//! plane — tenants with members of every role, API tokens of every role (some revoked),
//! connector credentials, schedules, finished and failed sync jobs, a few thousand audit
//! entries — and then N clients (default 50) run in a closed loop, each sending its next
//! request when the previous one has answered, for `--duration` seconds or `--requests`
//! requests.
//!
//! Each client acts for one tenant, as that tenant's machines and console do: four in five
//! with bearer API tokens of the least role the request needs, one in five with an admin's
//! session cookie plus the CSRF header. The mix covers every endpoint group: `auth` (`me`,
//! sign-out), `tenants_members`, `api_tokens` (list; create then revoke), `credentials`
//! (write-only PUT, metadata GET), `jobs` (sync now → get → cancel, list, get), `schedules`,
//! `audit` (list, export).
//!
//! Password sign-in is its own group, `auth_login`, and a small share of requests (0.3% by
//! default): argon2id is deliberately slow (19 MiB, 2 passes — tens of milliseconds of CPU per
//! attempt, on the blocking pool) and sign-in is throttled, so its latency measures the
//! password hash rather than the API, and a console signs in once a working day, not once a
//! request. Bearer tokens are SHA-256 lookups: no argon2 on the request path.
//!
//! Reported per group (and per endpoint in `--json`): requests, errors (any status the
//! request should not get), p50, p90, p99 and max latency from sending to the last byte of
//! the body, and throughput. Clients and server share the machine's cores, so the figures
//! are what one box does with its load generator on it. Any error fails the run (non-zero
//! exit) after the report, 5xx answers loudest: a run with errors measured something else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use hub_control::api::ApiConfig;
use hub_control::store::audit::AuditEntry;
use hub_control::store::jobs::{Frequency, JobProgress};
use hub_control::{ControlStore, MasterKey, Role, Secret, StoreSettings, TenantId, UserId};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

/// The seeded users' password (a bench store holds nothing worth protecting).
const PASSWORD: &str = "bench-password-not-a-secret";

/// The connectors every tenant has credentials and a schedule for.
const CONNECTORS: [&str; 3] = ["salesforce", "hubspot", "cdk-dms"];

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The control-plane store: `sqlite://FILE` or `postgres://...` (the run makes and drops
    /// a schema of its own there). Default: a fresh SQLite file in a temporary directory.
    #[arg(long)]
    store: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// How long the clients run, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Stop after this many requests instead of after `--duration`.
    #[arg(long)]
    requests: Option<u64>,
    /// Tenants to seed; clients are spread over them.
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Audit entries to seed before the run.
    #[arg(long, default_value_t = 5000)]
    audit_entries: usize,
    /// Finished sync jobs to seed per tenant.
    #[arg(long, default_value_t = 30)]
    jobs_per_tenant: usize,
    /// Password sign-ins per 1000 requests (argon2id: see `hub bench api --help`'s module docs).
    #[arg(long, default_value_t = 3)]
    login_per_mille: u32,
    /// Connections in the store's pool (default: the store's, 4 on SQLite, 16 on PostgreSQL).
    #[arg(long)]
    pool_size: Option<u32>,
    /// SQLite's `synchronous`: `full` (the store's default: every commit waits for the disk)
    /// or `normal` (only checkpoints do).
    #[arg(long, value_parser = ["full", "normal"], default_value = "full")]
    sqlite_synchronous: String,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
    /// Keep the SQLite file or PostgreSQL schema afterwards.
    #[arg(long)]
    keep: bool,
}

impl Default for ApiArgs {
    fn default() -> Self {
        ApiArgs {
            store: None,
            clients: 50,
            duration: 30,
            requests: None,
            tenants: 20,
            audit_entries: 5000,
            jobs_per_tenant: 30,
            login_per_mille: 3,
            pool_size: None,
            sqlite_synchronous: "full".to_string(),
            json: false,
            keep: false,
        }
    }
}

pub async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let report = run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    if report.server_errors > 0 || report.transport_errors > 0 {
        bail!(
            "{} 5xx answer(s) and {} transport error(s) under load: the API failed, see above",
            report.server_errors,
            report.transport_errors
        );
    }
    if report.errors > 0 {
        bail!(
            "{} request(s) got a status they should not have: see above",
            report.errors
        );
    }
    Ok(())
}

// ---- endpoints and groups ------------------------------------------------------------------

/// The groups the report is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    AuthLogin,
    Auth,
    TenantsMembers,
    ApiTokens,
    Credentials,
    Jobs,
    Schedules,
    Audit,
    Connectors,
    Desk,
    Analytics,
}

impl Group {
    const ALL: [Group; 11] = [
        Group::AuthLogin,
        Group::Auth,
        Group::TenantsMembers,
        Group::ApiTokens,
        Group::Credentials,
        Group::Jobs,
        Group::Schedules,
        Group::Audit,
        Group::Connectors,
        Group::Desk,
        Group::Analytics,
    ];

    fn name(self) -> &'static str {
        match self {
            Group::AuthLogin => "auth_login",
            Group::Auth => "auth",
            Group::TenantsMembers => "tenants_members",
            Group::ApiTokens => "api_tokens",
            Group::Credentials => "credentials",
            Group::Jobs => "jobs",
            Group::Schedules => "schedules",
            Group::Audit => "audit",
            Group::Connectors => "connectors",
            Group::Desk => "desk",
            Group::Analytics => "analytics",
        }
    }
}

/// Every endpoint the clients call: its group and its label (method and path template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    Login,
    Logout,
    Me,
    ListTenants,
    GetTenant,
    ListMembers,
    ChangeMember,
    ListTokens,
    CreateToken,
    RevokeToken,
    PutCredentials,
    GetCredentials,
    SyncNow,
    ListJobs,
    GetJob,
    CancelJob,
    GetSchedule,
    PutSchedule,
    ListAudit,
    ExportAudit,
    ListConnectors,
    GetConnector,
    PatchConnector,
    ListConflicts,
    ListDeadLetters,
    Analytics,
}

impl Ep {
    const ALL: [Ep; 26] = [
        Ep::Login,
        Ep::Logout,
        Ep::Me,
        Ep::ListTenants,
        Ep::GetTenant,
        Ep::ListMembers,
        Ep::ChangeMember,
        Ep::ListTokens,
        Ep::CreateToken,
        Ep::RevokeToken,
        Ep::PutCredentials,
        Ep::GetCredentials,
        Ep::SyncNow,
        Ep::ListJobs,
        Ep::GetJob,
        Ep::CancelJob,
        Ep::GetSchedule,
        Ep::PutSchedule,
        Ep::ListAudit,
        Ep::ExportAudit,
        Ep::ListConnectors,
        Ep::GetConnector,
        Ep::PatchConnector,
        Ep::ListConflicts,
        Ep::ListDeadLetters,
        Ep::Analytics,
    ];

    fn index(self) -> usize {
        Ep::ALL
            .iter()
            .position(|e| *e == self)
            .expect("every endpoint is listed")
    }

    fn group(self) -> Group {
        match self {
            Ep::Login => Group::AuthLogin,
            Ep::Logout | Ep::Me => Group::Auth,
            Ep::ListTenants | Ep::GetTenant | Ep::ListMembers | Ep::ChangeMember => {
                Group::TenantsMembers
            }
            Ep::ListTokens | Ep::CreateToken | Ep::RevokeToken => Group::ApiTokens,
            Ep::PutCredentials | Ep::GetCredentials => Group::Credentials,
            Ep::SyncNow | Ep::ListJobs | Ep::GetJob | Ep::CancelJob => Group::Jobs,
            Ep::GetSchedule | Ep::PutSchedule => Group::Schedules,
            Ep::ListAudit | Ep::ExportAudit => Group::Audit,
            Ep::ListConnectors | Ep::GetConnector | Ep::PatchConnector => Group::Connectors,
            Ep::ListConflicts | Ep::ListDeadLetters => Group::Desk,
            Ep::Analytics => Group::Analytics,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Ep::Login => "POST /auth/login",
            Ep::Logout => "POST /auth/logout",
            Ep::Me => "GET /me",
            Ep::ListTenants => "GET /tenants",
            Ep::GetTenant => "GET /tenants/{tenant}",
            Ep::ListMembers => "GET /tenants/{tenant}/members",
            Ep::ChangeMember => "PATCH /tenants/{tenant}/members/{user}",
            Ep::ListTokens => "GET /tenants/{tenant}/api-tokens",
            Ep::CreateToken => "POST /tenants/{tenant}/api-tokens",
            Ep::RevokeToken => "DELETE /tenants/{tenant}/api-tokens/{token}",
            Ep::PutCredentials => "PUT /tenants/{tenant}/connectors/{connector}/credentials",
            Ep::GetCredentials => "GET /tenants/{tenant}/connectors/{connector}/credentials",
            Ep::SyncNow => "POST /tenants/{tenant}/connectors/{connector}/sync",
            Ep::ListJobs => "GET /tenants/{tenant}/jobs",
            Ep::GetJob => "GET /tenants/{tenant}/jobs/{job}",
            Ep::CancelJob => "POST /tenants/{tenant}/jobs/{job}/cancel",
            Ep::GetSchedule => "GET /tenants/{tenant}/connectors/{connector}/schedule",
            Ep::PutSchedule => "PUT /tenants/{tenant}/connectors/{connector}/schedule",
            Ep::ListAudit => "GET /tenants/{tenant}/audit",
            Ep::ExportAudit => "GET /tenants/{tenant}/audit/export",
            Ep::ListConnectors => "GET /tenants/{tenant}/connectors",
            Ep::GetConnector => "GET /tenants/{tenant}/connectors/{connector}",
            Ep::PatchConnector => "PATCH /tenants/{tenant}/connectors/{connector}",
            Ep::ListConflicts => "GET /tenants/{tenant}/conflicts",
            Ep::ListDeadLetters => "GET /tenants/{tenant}/dead-letters",
            Ep::Analytics => "GET /tenants/{tenant}/analytics",
        }
    }
}

/// What a client does next; some operations are several requests in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Sign in with a password, look at `me` with the new session, sign out.
    LoginMeLogout,
    Me,
    ListTenants,
    GetTenant,
    ListMembers,
    ChangeMember,
    ListTokens,
    /// Create a token, then revoke it (as a CI pipeline rotating its token).
    CreateRevokeToken,
    PutCredentials,
    GetCredentials,
    /// "Sync now", read the job, cancel it.
    SyncGetCancel,
    ListJobs,
    GetJob,
    GetSchedule,
    PutSchedule,
    ListAudit,
    ExportAudit,
    ListConnectors,
    GetConnector,
    PatchConnector,
    ListConflicts,
    ListDeadLetters,
    Analytics,
}

/// The mix, in relative weights (the sign-in's weight comes from `--login-per-mille`).
/// Reads dominate, as they do for consoles and monitoring; writes are about a sixth.
const MIX: [(Op, u32); 22] = [
    (Op::Me, 120),
    (Op::ListTenants, 10),
    (Op::GetTenant, 80),
    (Op::ListMembers, 60),
    (Op::ChangeMember, 20),
    (Op::ListTokens, 50),
    (Op::CreateRevokeToken, 15),
    (Op::PutCredentials, 25),
    (Op::GetCredentials, 80),
    (Op::SyncGetCancel, 40),
    (Op::ListJobs, 110),
    (Op::GetJob, 90),
    (Op::GetSchedule, 80),
    (Op::PutSchedule, 25),
    (Op::ListAudit, 70),
    (Op::ExportAudit, 15),
    (Op::ListConnectors, 60),
    (Op::GetConnector, 60),
    (Op::PatchConnector, 15),
    (Op::ListConflicts, 50),
    (Op::ListDeadLetters, 50),
    (Op::Analytics, 30),
];

// ---- the seeded world ----------------------------------------------------------------------

/// One tenant as the clients see it.
#[derive(Debug)]
struct TenantSeed {
    id: String,
    /// An API token of each role, by role.
    tokens: BTreeMap<Role, String>,
    admin_email: String,
    /// Who signs in with a password during the run (the operator and the viewer).
    sign_in_emails: Vec<String>,
    /// Members whose role the clients change back and forth.
    staff: Vec<UserId>,
    /// Seeded jobs, to read.
    jobs: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SeedReport {
    tenants: usize,
    users: usize,
    api_tokens: usize,
    credentials: usize,
    schedules: usize,
    jobs: usize,
    audit_entries: usize,
    seconds: f64,
}

struct World {
    tenants: Vec<Arc<TenantSeed>>,
    platform_email: String,
    report: SeedReport,
}

/// Runs `f` over `items`, `n` at a time.
async fn each<T, F, Fut>(items: Vec<T>, n: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut results = futures::stream::iter(items.into_iter().map(f)).buffer_unordered(n);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

async fn seed(store: &ControlStore, args: &ApiArgs, run_id: &str) -> anyhow::Result<World> {
    let started = Instant::now();
    let password = Secret::new(PASSWORD.to_string());
    let ids: Vec<String> = (0..args.tenants)
        .map(|i| format!("dealer-{run_id}-{i:02}"))
        .collect();
    for id in &ids {
        store
            .create_tenant(&TenantId::new(id.clone())?, &format!("Dealer {id}"))
            .await?;
    }

    // Users: argon2id each, a few at a time (19 MiB apiece) to use the cores without a burst.
    let kinds = ["owner", "admin", "operator", "viewer", "staff1", "staff2"];
    let mut wanted: Vec<(usize, &str, String)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for kind in kinds {
            wanted.push((i, kind, format!("{kind}@{id}.example")));
        }
    }
    let platform_email = format!("platform-{run_id}@hub.example");
    store.create_user(&platform_email, &password, true).await?;
    let users = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    each(wanted.clone(), 4, |(i, kind, email)| {
        let (store, password, users) = (store.clone(), password.clone(), users.clone());
        async move {
            let id = store.create_user(&email, &password, false).await?;
            users
                .lock()
                .expect("not poisoned")
                .insert((i, kind), (id, email));
            Ok(())
        }
    })
    .await?;
    let users = std::mem::take(&mut *users.lock().expect("not poisoned"));

    let mut tenants = Vec::new();
    let mut api_tokens = 0;
    for (i, id) in ids.iter().enumerate() {
        let tenant = TenantId::new(id.clone())?;
        let user = |kind: &str| users[&(i, kind)].clone();
        for (kind, role) in [
            ("owner", Role::Owner),
            ("admin", Role::Admin),
            ("operator", Role::Operator),
            ("viewer", Role::Viewer),
            ("staff1", Role::Viewer),
            ("staff2", Role::Operator),
        ] {
            store.set_membership(&user(kind).0, &tenant, role).await?;
        }
        let owner = user("owner").0;
        let mut tokens = BTreeMap::new();
        for role in Role::ALL {
            let t = store
                .create_api_token(
                    &tenant,
                    role,
                    &format!("{role} automation"),
                    3_600_000,
                    Some(&owner),
                )
                .await?;
            tokens.insert(role, t.token.expose().clone());
        }
        // Tokens that were rotated away: listed, never valid.
        for n in 0..2 {
            let t = store
                .create_api_token(
                    &tenant,
                    Role::Operator,
                    &format!("old ci {n}"),
                    3_600_000,
                    Some(&owner),
                )
                .await?;
            store.revoke_api_token(&tenant, &t.info.id).await?;
        }
        api_tokens += 6;
        for (k, connector) in CONNECTORS.iter().enumerate() {
            let vendor = ["salesforce", "hubspot", "cdk"][k];
            let spec = hub_control::store::connectors::ConnectorSpec::from_json(
                &json!({
                    "name": format!("{connector} of {id}"),
                    "vendor": vendor,
                    "endpoint": format!("https://{vendor}.example"),
                    "auth_type": "oauth2",
                    "sync": { "frequency": "manual", "batch_size": 200 },
                    "field_mappings": [{
                        "vendor_entity": "Contact",
                        "canonical": "customer",
                        "fields": { "email": { "from": "/Email", "transform": ["trim", "lowercase"] } }
                    }],
                }),
                &[],
            )
            .map_err(|e| anyhow::anyhow!("bench connector: {e:?}"))?;
            store
                .create_connector(&tenant, connector, &spec, true)
                .await?;
            let creds = json!({ "client_id": format!("{id}-{connector}"), "client_secret": format!("s3cret-{k}") });
            store
                .put_credentials(&tenant, connector, &Secret::new(creds))
                .await?;
            let frequency = [Frequency::Hourly, Frequency::Daily, Frequency::Weekly][k];
            store
                .set_schedule(&tenant, connector, frequency, None)
                .await?;
        }
        tenants.push(TenantSeed {
            id: id.clone(),
            tokens,
            admin_email: user("admin").1,
            sign_in_emails: vec![user("operator").1, user("viewer").1],
            staff: vec![user("staff1").0, user("staff2").0],
            jobs: Vec::new(),
        });
    }

    // Job history: per tenant in order (one pending manual job per connector at a time),
    // tenants side by side.
    let jobs = Arc::new(std::sync::Mutex::new(BTreeMap::<usize, Vec<String>>::new()));
    each((0..ids.len()).collect(), 4, |i| {
        let (store, jobs, per) = (store.clone(), jobs.clone(), args.jobs_per_tenant);
        let tenant = TenantId::new(ids[i].clone());
        async move {
            let tenant = tenant?;
            let mut made = Vec::new();
            for k in 0..per {
                let connector = CONNECTORS[k % CONNECTORS.len()];
                let job = store.sync_now(&tenant, connector).await?;
                store.start_job(&job.id, "bench-seed", 60_000).await?;
                let progress = JobProgress {
                    progress_pct: 100.0,
                    records_processed: 500 + k as i64,
                    records_failed: (k % 3) as i64,
                    records_dead_lettered: 0,
                };
                let error = (k % 7 == 6).then_some("the vendor answered 503 three times");
                store
                    .finish_job(&job.id, "bench-seed", &progress, error)
                    .await?;
                made.push(job.id);
            }
            jobs.lock().expect("not poisoned").insert(i, made);
            Ok(())
        }
    })
    .await?;
    let mut jobs = std::mem::take(&mut *jobs.lock().expect("not poisoned"));
    for (i, t) in tenants.iter_mut().enumerate() {
        t.jobs = jobs.remove(&i).unwrap_or_default();
    }

    let actions = [
        ("credentials.rotate", "connector/salesforce"),
        ("schedule.put", "connector/hubspot"),
        ("job.sync_now", "connector/cdk-dms"),
        ("member.change_role", "user/staff"),
        ("connector.update", "connector/salesforce"),
        ("session.login", "user/admin"),
    ];
    each((0..args.audit_entries).collect(), 8, |n| {
        let store = store.clone();
        let tenant = TenantId::new(ids[n % ids.len()].clone());
        let (action, target) = actions[n % actions.len()];
        async move {
            store
                .append_audit(AuditEntry {
                    actor: format!("user:seed-{}", n % 17),
                    tenant: Some(tenant?),
                    action: action.to_string(),
                    target: target.to_string(),
                    before: Some(json!({ "frequency": "daily", "n": n })),
                    after: Some(json!({ "frequency": "hourly", "n": n })),
                    client_addr: Some("192.0.2.10".to_string()),
                })
                .await?;
            Ok(())
        }
    })
    .await?;

    let report = SeedReport {
        tenants: ids.len(),
        users: wanted.len() + 1,
        api_tokens,
        credentials: ids.len() * CONNECTORS.len(),
        schedules: ids.len() * CONNECTORS.len(),
        jobs: ids.len() * args.jobs_per_tenant,
        audit_entries: args.audit_entries,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(World {
        tenants: tenants.into_iter().map(Arc::new).collect(),
        platform_email,
        report,
    })
}

// ---- the clients ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

/// How a request authenticates.
#[derive(Debug, Clone)]
enum Auth {
    Nobody,
    Bearer(String),
    Session(Session),
}

/// One request's answer, when it had the status it should.
struct Answer {
    set_cookie: Option<String>,
    body: axum::body::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What every client shares.
struct Shared {
    http: reqwest::Client,
    base: String,
    platform: Session,
    deadline: Instant,
    max_requests: Option<u64>,
    issued: AtomicU64,
    mix: Vec<(Op, u32)>,
    mix_total: u32,
    /// Audit reads look at the last hour, as a console's default view does.
    audit_from_ms: i64,
}

/// One client's tallies.
#[derive(Default)]
struct Tally {
    /// Latencies in microseconds, by [`Ep::index`].
    samples: Vec<Vec<u32>>,
    errors: Vec<u64>,
    server_errors: u64,
    transport_errors: u64,
    error_samples: Vec<String>,
}

struct Client {
    shared: Arc<Shared>,
    tenant: Arc<TenantSeed>,
    /// The admin's session for a console client; `None` for a machine with tokens.
    session: Option<Session>,
    /// The connector this client presses "sync now" on (its own: no race with other clients).
    own_connector: String,
    rng: u64,
    tally: Tally,
}

/// The answer's `Set-Cookie` session and the body's CSRF token.
fn session_from(answer: &Answer) -> Option<Session> {
    let cookie = answer
        .set_cookie
        .as_deref()?
        .split(';')
        .next()?
        .strip_prefix("hub_session=")?
        .to_string();
    let csrf = answer.json()["csrf_token"].as_str()?.to_string();
    Some(Session { cookie, csrf })
}

async fn sign_in(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<Session> {
    let resp = http
        .post(format!("{base}/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await?;
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await?;
    if !status.is_success() {
        bail!(
            "signing in {email}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    session_from(&Answer { set_cookie, body }).context("sign-in answered no session")
}

impl Client {
    fn next_u64(&mut self) -> u64 {
        // xorshift64*: plenty for picking requests, and no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn pick(&mut self) -> Op {
        let mut x = (self.next_u64() % u64::from(self.shared.mix_total)) as u32;
        for (op, w) in &self.shared.mix {
            if x < *w {
                return *op;
            }
            x -= w;
        }
        Op::Me
    }

    /// A console client's session, or the token of the least role the request needs.
    fn auth(&self, role: Role) -> Auth {
        match &self.session {
            Some(s) => Auth::Session(s.clone()),
            None => Auth::Bearer(self.tenant.tokens[&role].clone()),
        }
    }

    fn done(&self) -> bool {
        Instant::now() >= self.shared.deadline
            || self
                .shared
                .max_requests
                .is_some_and(|max| self.shared.issued.load(Ordering::Relaxed) >= max)
    }

    async fn call(
        &mut self,
        ep: Ep,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<Value>,
        want: u16,
    ) -> Option<Answer> {
        self.shared.issued.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .shared
            .http
            .request(method.clone(), format!("{}{path}", self.shared.base));
        match &auth {
            Auth::Nobody => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Session(s) => {
                req = req
                    .header(reqwest::header::COOKIE, format!("hub_session={}", s.cookie))
                    .header("x-csrf-token", &s.csrf);
            }
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let started = Instant::now();
        let result = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let set_cookie = resp
                .headers()
                .get(reqwest::header::SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, set_cookie, body))
        }
        .await;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let i = ep.index();
        self.tally.samples[i].push(micros);
        let fail = |t: &mut Tally, what: String| {
            t.errors[i] += 1;
            if t.error_samples.len() < 20 {
                t.error_samples.push(format!("{} {path}: {what}", method));
            }
        };
        match result {
            Err(e) => {
                self.tally.transport_errors += 1;
                fail(&mut self.tally, format!("transport error: {e}"));
                None
            }
            Ok((status, _, body)) if status != want => {
                if status >= 500 {
                    self.tally.server_errors += 1;
                }
                let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                fail(&mut self.tally, format!("{status} (want {want}): {text}"));
                None
            }
            Ok((_, set_cookie, body)) => Some(Answer { set_cookie, body }),
        }
    }

    async fn step(&mut self) {
        use Method as M;
        let t = self.tenant.clone();
        let tid = t.id.as_str();
        match self.pick() {
            Op::LoginMeLogout => {
                let email = t.sign_in_emails[self.below(t.sign_in_emails.len())].clone();
                let body = json!({ "email": email, "password": PASSWORD });
                let Some(a) = self
                    .call(
                        Ep::Login,
                        M::POST,
                        "/auth/login",
                        Auth::Nobody,
                        Some(body),
                        200,
                    )
                    .await
                else {
                    return;
                };
                let Some(session) = session_from(&a) else {
                    self.tally.errors[Ep::Login.index()] += 1;
                    self.tally
                        .error_samples
                        .push("POST /auth/login: 200 without a session".into());
                    return;
                };
                let auth = Auth::Session(session);
                self.call(Ep::Me, M::GET, "/me", auth.clone(), None, 200)
                    .await;
                self.call(Ep::Logout, M::POST, "/auth/logout", auth, None, 204)
                    .await;
            }
            Op::Me => {
                let auth = self.auth(Role::Viewer);
                self.call(Ep::Me, M::GET, "/me", auth, None, 200).await;
            }
            Op::ListTenants => {
                let auth = Auth::Session(self.shared.platform.clone());
                self.call(Ep::ListTenants, M::GET, "/tenants", auth, None, 200)
                    .await;
            }
            Op::GetTenant => {
                let auth = self.auth(Role::Viewer);
                let path = format!("/tenants/{tid}");
                self.call(Ep::GetTenant, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::ListMembers => {
                let auth = self.auth(Role::Admin);
                let path = format!("/tenants/{tid}/members");
                self.call(Ep::ListMembers, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::ChangeMember => {
                let auth = self.auth(Role::Admin);
                let user = &t.staff[self.below(t.staff.len())];
                let role = ["viewer", "operator"][self.below(2)];
                let path = format!("/tenants/{tid}/members/{user}");
                let body = json!({ "role": role });
                self.call(Ep::ChangeMember, M::PATCH, &path, auth, Some(body), 200)
                    .await;
            }
            Op::ListTokens => {
                let auth = self.auth(Role::Admin);
                let path = format!("/tenants/{tid}/api-tokens");
                self.call(Ep::ListTokens, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::CreateRevokeToken => {
                let auth = self.auth(Role::Admin);
                let path = format!("/tenants/{tid}/api-tokens");
                let body =
                    json!({ "name": "ci pipeline", "role": "viewer", "expires_in_ms": 3_600_000 });
                let Some(a) = self
                    .call(
                        Ep::CreateToken,
                        M::POST,
                        &path,
                        auth.clone(),
                        Some(body),
                        201,
                    )
                    .await
                else {
                    return;
                };
                let id = a.json()["id"].as_str().unwrap_or("missing").to_string();
                let path = format!("/tenants/{tid}/api-tokens/{id}");
                self.call(Ep::RevokeToken, M::DELETE, &path, auth, None, 204)
                    .await;
            }
            Op::PutCredentials => {
                let auth = self.auth(Role::Admin);
                let connector = CONNECTORS[self.below(CONNECTORS.len())];
                let path = format!("/tenants/{tid}/connectors/{connector}/credentials");
                let secret = format!("rotated-{:016x}", self.next_u64());
                let body = json!({ "credentials": { "client_id": format!("{tid}-{connector}"), "client_secret": secret } });
                self.call(Ep::PutCredentials, M::PUT, &path, auth, Some(body), 200)
                    .await;
            }
            Op::GetCredentials => {
                let auth = self.auth(Role::Operator);
                let connector = CONNECTORS[self.below(CONNECTORS.len())];
                let path = format!("/tenants/{tid}/connectors/{connector}/credentials");
                self.call(Ep::GetCredentials, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::SyncGetCancel => {
                let auth = self.auth(Role::Operator);
                let path = format!("/tenants/{tid}/connectors/{}/sync", self.own_connector);
                let Some(a) = self
                    .call(Ep::SyncNow, M::POST, &path, auth.clone(), None, 202)
                    .await
                else {
                    return;
                };
                let id = a.json()["id"].as_str().unwrap_or("missing").to_string();
                let path = format!("/tenants/{tid}/jobs/{id}");
                self.call(Ep::GetJob, M::GET, &path, auth.clone(), None, 200)
                    .await;
                let path = format!("/tenants/{tid}/jobs/{id}/cancel");
                self.call(Ep::CancelJob, M::POST, &path, auth, None, 200)
                    .await;
            }
            Op::ListJobs => {
                let auth = self.auth(Role::Viewer);
                let path = format!("/tenants/{tid}/jobs?limit=50");
                self.call(Ep::ListJobs, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::GetJob => {
                let auth = self.auth(Role::Viewer);
                if t.jobs.is_empty() {
                    return;
                }
                let job = &t.jobs[self.below(t.jobs.len())];
                let path = format!("/tenants/{tid}/jobs/{job}");
                self.call(Ep::GetJob, M::GET, &path, auth, None, 200).await;
            }
            Op::GetSchedule => {
                let auth = self.auth(Role::Admin);
                let connector = CONNECTORS[self.below(CONNECTORS.len())];
                let path = format!("/tenants/{tid}/connectors/{connector}/schedule");
                self.call(Ep::GetSchedule, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::PutSchedule => {
                let auth = self.auth(Role::Admin);
                let connector = CONNECTORS[self.below(CONNECTORS.len())];
                let frequency = ["hourly", "daily", "weekly"][self.below(3)];
                let path = format!("/tenants/{tid}/connectors/{connector}/schedule");
                let body = json!({ "frequency": frequency });
                self.call(Ep::PutSchedule, M::PUT, &path, auth, Some(body), 200)
                    .await;
            }
            Op::ListAudit => {
                let auth = self.auth(Role::Admin);
                let path = format!(
                    "/tenants/{tid}/audit?from_ms={}&limit=100",
                    self.shared.audit_from_ms
                );
                self.call(Ep::ListAudit, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::ExportAudit => {
                let auth = self.auth(Role::Admin);
                let format = ["csv", "json"][self.below(2)];
                let path = format!(
                    "/tenants/{tid}/audit/export?from_ms={}&format={format}",
                    self.shared.audit_from_ms
                );
                self.call(Ep::ExportAudit, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::ListConnectors => {
                let auth = self.auth(Role::Viewer);
                let path = format!("/tenants/{tid}/connectors");
                self.call(Ep::ListConnectors, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::GetConnector => {
                let auth = self.auth(Role::Viewer);
                let connector = CONNECTORS[self.below(CONNECTORS.len())];
                let path = format!("/tenants/{tid}/connectors/{connector}");
                self.call(Ep::GetConnector, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::PatchConnector => {
                let auth = self.auth(Role::Admin);
                let connector = CONNECTORS[self.below(CONNECTORS.len())];
                let path = format!("/tenants/{tid}/connectors/{connector}");
                let body =
                    json!({ "name": format!("{connector} ({:04x})", self.next_u64() % 0xffff) });
                self.call(Ep::PatchConnector, M::PATCH, &path, auth, Some(body), 200)
                    .await;
            }
            Op::ListConflicts => {
                let auth = self.auth(Role::Viewer);
                let path = format!("/tenants/{tid}/conflicts?status=pending&limit=50");
                self.call(Ep::ListConflicts, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::ListDeadLetters => {
                let auth = self.auth(Role::Viewer);
                let path = format!("/tenants/{tid}/dead-letters?limit=50");
                self.call(Ep::ListDeadLetters, M::GET, &path, auth, None, 200)
                    .await;
            }
            Op::Analytics => {
                let auth = self.auth(Role::Viewer);
                let path = format!("/tenants/{tid}/analytics");
                self.call(Ep::Analytics, M::GET, &path, auth, None, 200)
                    .await;
            }
        }
    }

    async fn run(mut self) -> Tally {
        while !self.done() {
            self.step().await;
        }
        self.tally
    }
}

// ---- the run -------------------------------------------------------------------------------

/// Where the run's store lives, to clean up afterwards.
enum Place {
    SqliteDir(std::path::PathBuf),
    SqliteGiven,
    Postgres { admin_url: String, schema: String },
}

async fn open_store(args: &ApiArgs, run_id: &str) -> anyhow::Result<(ControlStore, Place, String)> {
    let key = MasterKey::generate(1);
    let settings = StoreSettings {
        max_connections: args.pool_size,
        sqlite_durable_commits: args.sqlite_synchronous != "normal",
        ..StoreSettings::default()
    };
    match args.store.as_deref() {
        None => {
            let dir = std::env::temp_dir().join(format!("hub-bench-api-{run_id}"));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}", dir.join("control.db").display());
            let store = ControlStore::connect(&url, key, settings).await?;
            Ok((store, Place::SqliteDir(dir), "sqlite".into()))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let store = ControlStore::connect(url, key, settings).await?;
            Ok((store, Place::SqliteGiven, "sqlite".into()))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let schema = format!("hub_bench_{run_id}");
            let admin = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("connecting to the PostgreSQL store")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await?;
            admin.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            let scoped = format!("{url}{sep}options[search_path]={schema}");
            let store = ControlStore::connect(&scoped, key, settings).await?;
            let place = Place::Postgres {
                admin_url: url.to_string(),
                schema,
            };
            Ok((store, place, "postgres".into()))
        }
        Some(other) => bail!("--store {other:?}: use sqlite://FILE or postgres://..."),
    }
}

async fn clean_up(place: Place, keep: bool) -> anyhow::Result<()> {
    match place {
        Place::SqliteDir(dir) if !keep => std::fs::remove_dir_all(&dir)?,
        Place::Postgres { admin_url, schema } if !keep => {
            let admin = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await?;
            admin.close().await;
        }
        Place::SqliteDir(dir) => eprintln!("kept the store in {}", dir.display()),
        Place::Postgres { schema, .. } => eprintln!("kept the store in schema {schema}"),
        Place::SqliteGiven => {}
    }
    Ok(())
}

/// Seeds, serves, loads and measures; the store is cleaned up whatever happens.
pub(crate) async fn run(args: &ApiArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.tenants == 0 {
        bail!("--clients and --tenants must be at least 1");
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (store, place, backend) = open_store(args, &run_id).await?;
    let result = load(&store, args, &run_id, backend).await;
    store.close().await;
    clean_up(place, args.keep).await?;
    result
}

async fn load(
    store: &ControlStore,
    args: &ApiArgs,
    run_id: &str,
    backend: String,
) -> anyhow::Result<Report> {
    let world = seed(store, args, run_id).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // The per-tenant request limits are lifted: this measures latency under load, and 50
    // clients over 20 tenants would otherwise meet the default 50 requests/s per tenant.
    let config = ApiConfig {
        tls: false,
        tenant_requests_per_s: 1_000_000,
        tenant_burst: 1_000_000,
        caller_requests_per_s: 1_000_000,
        caller_burst: 1_000_000,
    };
    let router = hub_control::api::router(store.clone(), config);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .await
    });

    let base = format!("http://{addr}/api/v1");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(60))
        .build()?;
    // Sessions are made before the clock starts: the console signed in this morning.
    let platform = sign_in(&http, &base, &world.platform_email).await?;
    let mut sessions = BTreeMap::new();
    for c in (0..args.clients).filter(|c| c % 5 == 1) {
        let tenant = &world.tenants[c % world.tenants.len()];
        sessions.insert(c, sign_in(&http, &base, &tenant.admin_email).await?);
    }

    let mut mix: Vec<(Op, u32)> = MIX.to_vec();
    let others: u32 = mix.iter().map(|(_, w)| w).sum();
    // `login_per_mille` of all requests: solve w / (others + w) = p / 1000.
    let per_mille = args.login_per_mille.min(999);
    let login_weight = (others * per_mille).div_ceil(1000 - per_mille);
    if login_weight > 0 {
        mix.push((Op::LoginMeLogout, login_weight));
    }
    let mix_total = mix.iter().map(|(_, w)| w).sum();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let duration = Duration::from_secs(if args.requests.is_some() {
        24 * 3600
    } else {
        args.duration
    });
    let started = Instant::now();
    let shared = Arc::new(Shared {
        http,
        base,
        platform,
        deadline: started + duration,
        max_requests: args.requests,
        issued: AtomicU64::new(0),
        mix,
        mix_total,
        audit_from_ms: now_ms - 3_600_000,
    });
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let client = Client {
            shared: shared.clone(),
            tenant: world.tenants[c % world.tenants.len()].clone(),
            session: sessions.remove(&c),
            own_connector: format!("bench-client-{c}"),
            rng: (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            tally: Tally {
                samples: vec![Vec::new(); Ep::ALL.len()],
                errors: vec![0; Ep::ALL.len()],
                ..Tally::default()
            },
        };
        tasks.push(tokio::spawn(client.run()));
    }
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await?);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    server.await??;

    Ok(Report::new(backend, args, elapsed_s, world.report, tallies))
}

// ---- the report ----------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub(crate) struct Stats {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub per_second: f64,
}

impl Stats {
    fn of(name: &str, mut micros: Vec<u32>, errors: u64, elapsed_s: f64) -> Stats {
        micros.sort_unstable();
        let at = |p: f64| -> f64 {
            if micros.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * (micros.len() as f64 - 1.0)).round() as usize;
            f64::from(micros[i.min(micros.len() - 1)]) / 1000.0
        };
        let round = |ms: f64| (ms * 10.0).round() / 10.0;
        Stats {
            name: name.to_string(),
            requests: micros.len() as u64,
            errors,
            p50_ms: round(at(50.0)),
            p90_ms: round(at(90.0)),
            p99_ms: round(at(99.0)),
            max_ms: round(at(100.0)),
            per_second: round(micros.len() as f64 / elapsed_s.max(1e-9)),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    bench: &'static str,
    pub backend: String,
    clients: usize,
    elapsed_s: f64,
    pub requests: u64,
    pub per_second: f64,
    pub errors: u64,
    pub server_errors: u64,
    pub transport_errors: u64,
    login_share_pct: f64,
    /// The store's pool size (`default` when the store chose) and SQLite's `synchronous`.
    pool_size: String,
    sqlite_synchronous: Option<String>,
    seed: SeedReport,
    pub groups: Vec<Stats>,
    endpoints: Vec<Stats>,
    error_samples: Vec<String>,
}

impl Report {
    fn new(
        backend: String,
        args: &ApiArgs,
        elapsed_s: f64,
        seed: SeedReport,
        tallies: Vec<Tally>,
    ) -> Report {
        let n = Ep::ALL.len();
        let mut samples: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut errors = vec![0u64; n];
        let (mut server_errors, mut transport_errors) = (0, 0);
        let mut error_samples = Vec::new();
        for t in tallies {
            for (i, s) in t.samples.into_iter().enumerate() {
                samples[i].extend(s);
                errors[i] += t.errors[i];
            }
            server_errors += t.server_errors;
            transport_errors += t.transport_errors;
            error_samples.extend(t.error_samples);
        }
        error_samples.truncate(20);
        let endpoints: Vec<Stats> = Ep::ALL
            .iter()
            .map(|ep| {
                let i = ep.index();
                Stats::of(ep.label(), samples[i].clone(), errors[i], elapsed_s)
            })
            .collect();
        let groups: Vec<Stats> = Group::ALL
            .iter()
            .map(|g| {
                let mut s = Vec::new();
                let mut e = 0;
                for ep in Ep::ALL.iter().filter(|ep| ep.group() == *g) {
                    s.extend_from_slice(&samples[ep.index()]);
                    e += errors[ep.index()];
                }
                Stats::of(g.name(), s, e, elapsed_s)
            })
            .collect();
        let requests: u64 = groups.iter().map(|g| g.requests).sum();
        let logins = groups[0].requests;
        let sqlite_synchronous = (backend == "sqlite").then(|| args.sqlite_synchronous.clone());
        Report {
            bench: "api",
            backend,
            clients: args.clients,
            elapsed_s: (elapsed_s * 100.0).round() / 100.0,
            requests,
            per_second: (requests as f64 / elapsed_s.max(1e-9)).round(),
            errors: errors.iter().sum(),
            server_errors,
            transport_errors,
            login_share_pct: (1000.0 * logins as f64 / requests.max(1) as f64).round() / 10.0,
            pool_size: args
                .pool_size
                .map_or_else(|| "default".to_string(), |n| n.to_string()),
            sqlite_synchronous,
            seed,
            groups,
            endpoints,
            error_samples,
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let s = &self.seed;
        let _ = writeln!(
            out,
            "hub bench api: {} clients for {:.1} s on {} (pool {}{}) — seeded {} tenants, {} users, {} API tokens, \
             {} credentials, {} jobs, {} audit entries in {:.1} s",
            self.clients,
            self.elapsed_s,
            self.backend,
            self.pool_size,
            self.sqlite_synchronous
                .as_deref()
                .map_or_else(String::new, |m| format!(", synchronous {m}")),
            s.tenants,
            s.users,
            s.api_tokens,
            s.credentials,
            s.jobs,
            s.audit_entries,
            s.seconds
        );
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "group", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s"
        );
        for g in &self.groups {
            let _ = writeln!(
                out,
                "{:<16} {:>9} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1}",
                g.name, g.requests, g.errors, g.p50_ms, g.p90_ms, g.p99_ms, g.max_ms, g.per_second
            );
        }
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>7} {:>44.0}",
            "total", self.requests, self.errors, self.per_second
        );
        let _ = writeln!(
            out,
            "auth_login is {:.1}% of requests: password sign-in runs argon2id (19 MiB, 2 passes) \
             on the blocking pool by design; bearer tokens are a SHA-256 lookup.",
            self.login_share_pct
        );
        if self.server_errors + self.transport_errors > 0 {
            let _ = writeln!(
                out,
                "FAILED: {} 5xx answer(s), {} transport error(s)",
                self.server_errors, self.transport_errors
            );
        }
        for e in &self.error_samples {
            let _ = writeln!(out, "  error: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the bench working: a short run on SQLite with every endpoint group, no errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_clients_for_two_seconds_on_sqlite_get_no_errors() {
        let args = ApiArgs {
            clients: 4,
            duration: 2,
            tenants: 2,
            audit_entries: 60,
            jobs_per_tenant: 4,
            // Enough sign-ins to see one in two seconds of a debug build.
            login_per_mille: 40,
            ..ApiArgs::default()
        };
        let report = run(&args).await.expect("the bench runs");
        assert_eq!(
            (report.errors, report.server_errors, report.transport_errors),
            (0, 0, 0),
            "{}",
            report.table()
        );
        for g in &report.groups {
            if g.name != "auth_login" {
                assert!(g.requests > 0, "no {} requests: {}", g.name, report.table());
            }
        }
        assert!(report.requests > 50, "{}", report.table());
        assert_eq!(report.backend, "sqlite");
    }

    #[test]
    fn the_mix_names_every_operation_but_sign_in_once() {
        for (op, _) in MIX {
            assert_eq!(MIX.iter().filter(|(o, _)| *o == op).count(), 1, "{op:?}");
        }
        assert!(!MIX.iter().any(|(o, _)| *o == Op::LoginMeLogout));
        for ep in Ep::ALL {
            assert_eq!(Ep::ALL[ep.index()], ep);
        }
    }
}
