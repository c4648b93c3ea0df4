//! A running node: the roles of one process, wired from a topology.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hub_control::observability::{self, Readiness};
use hub_schemas::Codec;
use hub_schemas::registry::SchemaRegistry;
use hub_topology::Topology;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Role;
use crate::admin;

pub struct Node {
    shutdown_tx: watch::Sender<bool>,
    stop_flag: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Where ingest listens, when this node runs it.
    pub ingest_addr: Option<SocketAddr>,
    /// Where metrics, health and the embedded registry are served.
    pub control_addr: SocketAddr,
}

fn has(roles: &[Role], r: Role) -> bool {
    roles.contains(&Role::All) || roles.contains(&r)
}

async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Where a node's control plane keeps its state: the store and its master key.
pub struct ControlPlane {
    /// `sqlite://FILE` or `postgres://…`.
    pub store_url: String,
    /// The key that wraps the tenants' data keys.
    pub master_key: hub_control::MasterKey,
}

impl ControlPlane {
    /// From `HUB_CONTROL_STORE` and `HUB_MASTER_KEY` / `HUB_MASTER_KEY_FILE`; `None` when
    /// no store is named (the control API is opt-in).
    pub fn from_env() -> anyhow::Result<Option<ControlPlane>> {
        let Ok(store_url) = std::env::var("HUB_CONTROL_STORE") else {
            return Ok(None);
        };
        let master_key = hub_control::MasterKey::from_env().context(
            "HUB_CONTROL_STORE is set, so the control API needs its master key: \
             set HUB_MASTER_KEY (base64 of 32 bytes) or HUB_MASTER_KEY_FILE",
        )?;
        Ok(Some(ControlPlane {
            store_url,
            master_key,
        }))
    }
}

impl Node {
    /// Starts the given roles, with the control plane named by the environment
    /// ([`ControlPlane::from_env`]); returns once every listener is bound and every loop
    /// started.
    pub async fn start(topology: Topology, roles: &[Role]) -> anyhow::Result<Node> {
        Self::start_with(topology, roles, ControlPlane::from_env()?).await
    }

    /// Starts the given roles with `control` as the control plane (the REST API, the
    /// scheduler and the desk's feeder run only with one).
    pub async fn start_with(
        topology: Topology,
        roles: &[Role],
        control: Option<ControlPlane>,
    ) -> anyhow::Result<Node> {
        let topology = Arc::new(topology);
        let rt = topology.runtime.clone();
        let handle = observability::install_metrics();
        let readiness = Readiness::default();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut threads = Vec::new();

        // Topics first: every loop below expects them.
        let topics = topology.topics();
        loop {
            match admin::ensure_topics(&rt.kafka_bootstrap, &topics, rt.partitions, rt.replication)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %e, bootstrap = %rt.kafka_bootstrap, "cannot create topics yet; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }

        let control_listener = bind(&rt.control_listen).await?;
        let control_addr = control_listener.local_addr()?;
        let mut control_router = observability::router(handle, readiness.clone());
        let embedded = rt.registry == "embedded";
        if embedded && !has(roles, Role::Control) {
            anyhow::bail!(
                "registry 'embedded' is served by the control role, which this node does not run: \
                 set --registry (HUB_REGISTRY) to the control node's URL, e.g. http://control-host:8081"
            );
        }
        if embedded && has(roles, Role::Control) {
            let registry = SchemaRegistry::open_kafka(&rt.kafka_bootstrap)
                .await
                .context("opening the embedded schema registry")?;
            control_router =
                control_router.merge(hub_schemas::registry::routes(Arc::new(registry)));
        }
        let mut control_plane = None;
        if has(roles, Role::Control)
            && let Some(ControlPlane {
                store_url,
                master_key,
            }) = control
        {
            // The REST API (`/api/v1`): opt-in, as it needs the control store and its master
            // key; `hub control add-admin` creates the first platform admin.
            let store = hub_control::ControlStore::connect(
                &store_url,
                master_key,
                hub_control::StoreSettings::default(),
            )
            .await
            .context("opening the control store (HUB_CONTROL_STORE)")?;
            // Live sync events travel through Kafka, so every node's feed shows every job.
            let events: Arc<dyn hub_control::events::EventBus> = crate::jobs::KafkaBus::start(
                &rt.kafka_bootstrap,
                &topology.topic_names().sync_events(),
            )
            .context("starting the live sync-event relay")?;
            // The desk's actions (resolve a conflict, replay a dead letter) enter the
            // pipeline through this node's producer.
            let gateway =
                crate::desk::KafkaGateway::new(&rt.kafka_bootstrap, topology.topic_names())
                    .context("creating the control API's Kafka producer")?;
            // "Test connection" and the OAuth2 code exchange call vendors through the hub.
            let state = hub_control::api::ApiState::new(
                store.clone(),
                hub_control::api::ApiConfig {
                    tls: false,
                    ..Default::default()
                },
            )
            .with_events(events.clone())
            .with_gateway(Arc::new(gateway))
            .with_connector_check(Arc::new(crate::connector_check::HubConnectorCheck::new()));
            control_router = control_router.merge(state.into_api().router);
            info!("control API at /api/v1");
            control_plane = Some((store, events));
        }
        // Vendor API usage of this node's connectors, added up in the control store: the
        // node's own control plane's, or (a node without the control role) the one named by
        // HUB_CONTROL_STORE.
        if let Some((store, _)) = &control_plane {
            tasks.push(crate::usage::spawn_flusher_on(
                store.clone(),
                shutdown_rx.clone(),
            ));
        } else if let Ok(url) = std::env::var("HUB_CONTROL_STORE") {
            tasks.push(crate::usage::spawn_flusher(url, shutdown_rx.clone()));
        }
        let registry_url = if embedded {
            format!("http://{control_addr}")
        } else {
            rt.registry.clone()
        };
        tasks.push(serve(control_listener, control_router, shutdown_rx.clone()));
        let codec = Arc::new(Codec::new(&registry_url));
        if let Some((store, _)) = &control_plane {
            let store = store.clone();
            // Conflicts and dead letters, materialized for the desk (after `serve`: the
            // embedded registry that decodes dead letters is this node's).
            tasks.push(crate::desk::spawn_feeder(
                store,
                rt.kafka_bootstrap.clone(),
                topology.topic_names(),
                codec.clone(),
                shutdown_rx.clone(),
            )?);
        }

        let mut ingest_addr = None;
        let mut ingest_state = None;
        if has(roles, Role::Ingest) {
            readiness.register("ingest");
            let publisher = hub_ingest::KafkaPublisher::new(&rt.kafka_bootstrap, 10_000)?;
            let state = Arc::new(hub_ingest::IngestState::new(
                topology.clone(),
                Arc::new(publisher),
                codec.clone(),
            ));
            let listener = bind(&rt.ingest_listen).await?;
            ingest_addr = Some(listener.local_addr()?);
            tasks.extend(hub_ingest::spawn_pollers(
                state.clone(),
                shutdown_rx.clone(),
            ));
            ingest_state = Some(state.clone());
            tasks.push(serve(
                listener,
                hub_ingest::router(state),
                shutdown_rx.clone(),
            ));
            readiness.set("ingest", true);
            info!(addr = %ingest_addr.unwrap_or(control_addr), "ingest listening");
        }
        if let Some((store, events)) = control_plane {
            // The scheduler: every control node claims due slots; a node that also runs
            // ingest runs jobs (a pass of the connector's pollers).
            let runner = ingest_state.map(|state| {
                Arc::new(crate::jobs::IngestJobRunner { state })
                    as Arc<dyn hub_control::scheduler::JobRunner>
            });
            let mut config = hub_control::scheduler::SchedulerConfig::new(rt.node_id.clone());
            if let Some(ms) = std::env::var("HUB_SCHEDULER_TICK_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                config.tick = Duration::from_millis(ms.max(10));
            }
            let scheduler = hub_control::scheduler::Scheduler::new(store, config, runner, events);
            tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));
        }
        if has(roles, Role::Transform) {
            readiness.register("transform");
            let cfg = hub_transform::TransformConfig::for_topology(&topology);
            let runner = hub_transform::TransformRunner::new(cfg, topology.clone(), codec.clone());
            threads.extend(runner.spawn(stop_flag.clone()));
            readiness.set("transform", true);
        }
        if has(roles, Role::Sink) {
            readiness.register("sink");
            let store = hub_sink::SqlStore::connect(&rt.sql_url)
                .await
                .context("opening the SQL sink database")?;
            // Static membership: a restarted node takes its sink partitions back at once
            // instead of waiting out its previous incarnation's session.
            let options = hub_sink::RunnerOptions {
                kafka_config: vec![(
                    "group.instance.id".into(),
                    format!("hub-sink-{}", rt.node_id),
                )],
                ..Default::default()
            };
            let sql = hub_sink::SqlSinkRunner::new(
                rt.kafka_bootstrap.clone(),
                codec.clone(),
                topology.clone(),
                store.clone(),
                topology.topic_names().group("sink-sql"),
            )
            .with_options(options.clone());
            let rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = sql.run(rx).await {
                    warn!(error = %e, "SQL sink stopped");
                }
            }));
            for runner in hub_sink::WebhookSinkRunner::all(
                &rt.kafka_bootstrap,
                codec.clone(),
                topology.clone(),
                store.clone(),
            )? {
                let runner = runner.with_options(options.clone());
                let rx = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = runner.run(rx).await {
                        warn!(error = %e, "webhook sink stopped");
                    }
                }));
            }
            for runner in hub_sink::VendorSinkRunner::all(
                &rt.kafka_bootstrap,
                codec.clone(),
                topology.clone(),
                store.clone(),
            )? {
                let runner = runner.with_options(options.clone());
                let rx = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = runner.run(rx).await {
                        warn!(error = %e, "vendor sink stopped");
                    }
                }));
            }
            readiness.set("sink", true);
        }
        register_error_counters(roles);
        readiness.register("control");
        readiness.set("control", true);
        tasks.push(watch_broker(
            rt.kafka_bootstrap.clone(),
            readiness.clone(),
            shutdown_rx.clone(),
        ));
        info!(control = %control_addr, registry = %registry_url, namespace = %rt.namespace, "node started");
        Ok(Node {
            shutdown_tx,
            stop_flag,
            tasks,
            threads,
            ingest_addr,
            control_addr,
        })
    }

    /// Stops every role, letting in-flight batches finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.stop_flag.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Keeps the `kafka` part of `/readyz` true only while the broker answers metadata requests,
/// so a load balancer stops sending webhooks to a node that could only answer 503.
fn watch_broker(
    bootstrap: String,
    readiness: Readiness,
    mut rx: watch::Receiver<bool>,
) -> JoinHandle<()> {
    readiness.set("kafka", true);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = rx.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let b = bootstrap.clone();
            let up = tokio::task::spawn_blocking(move || {
                admin::broker_answers(&b, Duration::from_secs(3))
            })
            .await
            .unwrap_or(false);
            readiness.set("kafka", up);
        }
    })
}

/// Error counters exist at zero from the start, so a dashboard's rate() and an alert on them
/// work before the first error rather than after it.
fn register_error_counters(roles: &[Role]) {
    use hub_topology::metrics as m;
    for (role, stage) in [
        (Role::Ingest, "ingest"),
        (Role::Transform, "transform"),
        (Role::Sink, "sink"),
    ] {
        if has(roles, role) {
            metrics::counter!(m::BROKER_ERRORS_TOTAL, "stage" => stage).increment(0);
        }
    }
    if has(roles, Role::Sink) {
        for outcome in ["transient", "permanent"] {
            metrics::counter!(m::SINK_ERRORS_TOTAL, "target" => "sql", "outcome" => outcome)
                .increment(0);
        }
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut rx: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        {
            warn!(error = %e, "listener stopped");
        }
    })
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down");
}
