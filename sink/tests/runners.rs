//! The runners end to end without an external broker: librdkafka's in-process mock cluster,
//! the hub's in-memory schema registry served over HTTP, SQLite, and a local webhook target.
//! Counts, not samples: every produced record is in the target once or in `hub.dlq.sink`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use hub_schemas::registry::{SchemaRegistry, router};
use hub_schemas::{Codec, DeadLetter, Entity, topics};
use hub_sink::{RunnerOptions, SqlSinkRunner, WebhookSinkRunner};
use hub_topology::Topology;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value as Json, json};
use tokio::sync::watch;

/// A metrics recorder that remembers every metric registered, as `name{label=value,...}`.
#[derive(Default)]
struct Seen(Mutex<std::collections::BTreeSet<String>>);

impl Seen {
    fn note(&self, key: &metrics::Key) {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        self.0
            .lock()
            .unwrap()
            .insert(format!("{}{{{}}}", key.name(), labels.join(",")));
    }
}

impl metrics::Recorder for &'static Seen {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.note(key);
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.note(key);
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.note(key);
        metrics::Histogram::noop()
    }
}

/// The metrics the runners emitted so far (in this test binary).
fn seen_metrics() -> std::collections::BTreeSet<String> {
    static SEEN: std::sync::OnceLock<&'static Seen> = std::sync::OnceLock::new();
    let seen = SEEN.get_or_init(|| {
        let seen: &'static Seen = Box::leak(Box::default());
        metrics::set_global_recorder(seen).expect("one recorder per test binary");
        seen
    });
    seen.0.lock().unwrap().clone()
}

fn assert_emitted(seen: &std::collections::BTreeSet<String>, expected: &str) {
    assert!(
        seen.contains(expected),
        "{expected} not emitted; saw {seen:#?}"
    );
}

struct Harness {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bootstrap: String,
    codec: Arc<Codec>,
    producer: FutureProducer,
}

async fn harness() -> Harness {
    seen_metrics();
    // RUST_LOG=hub_sink=debug,librdkafka=debug shows the runners' (and librdkafka's) logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = MockCluster::new(1).unwrap();
    cluster
        .create_topic(&Entity::Customer.canonical_topic(), 3, 1)
        .unwrap();
    cluster.create_topic(topics::DLQ_SINK, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();

    let registry = Arc::new(SchemaRegistry::in_memory());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(registry)).await.unwrap() });

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    Harness {
        _cluster: cluster,
        bootstrap,
        codec: Arc::new(Codec::new(&registry_url)),
        producer,
    }
}

impl Harness {
    async fn produce(&self, tenant: &str, key: &str, value: Vec<u8>) {
        let k = format!("{tenant}/{key}");
        self.producer
            .send(
                FutureRecord::to(&Entity::Customer.canonical_topic())
                    .key(&k)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    async fn produce_customer(&self, tenant: &str, key: &str, version: i64) {
        let doc = common::customer_doc(tenant, key, version, Some("Ana"));
        let bytes = self
            .codec
            .encode_canonical(Entity::Customer, &doc)
            .await
            .unwrap();
        self.produce(tenant, key, bytes).await;
    }

    /// Every dead letter on `hub.dlq.sink` so far (waits until `n` are there).
    async fn dead_letters(&self, n: usize) -> Vec<DeadLetter> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", common::unique("dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topics::DLQ_SINK]).unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("dead letter arrives")
                .unwrap();
            out.push(
                self.codec
                    .decode_dead_letter(m.payload().unwrap())
                    .await
                    .unwrap(),
            );
        }
        out
    }
}

fn topology(hook_url: &str) -> Arc<Topology> {
    let t = json!({
        "version": 1,
        "tenants": [
            {"id": "acme", "targets": [
                {"id": "warehouse", "kind": "sql"},
                {"id": "crm-hook", "kind": "webhook", "url": hook_url, "secret": "s3cret", "batch_size": 4}
            ], "routes": [{"entities": ["customer"], "targets": ["warehouse", "crm-hook"]}]},
            {"id": "other", "targets": [], "routes": []}
        ]
    });
    Arc::new(serde_json::from_value(t).unwrap())
}

fn options() -> RunnerOptions {
    RunnerOptions {
        stats_interval: Duration::from_millis(500),
        retry: hub_sink::RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        },
        // The mock cluster waits out a departed member's session before a new one joins.
        kafka_config: vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
        ],
        ..RunnerOptions::default()
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_runner_writes_each_routed_record_once_and_resumes_from_stored_offsets() {
    let h = harness().await;
    let db = common::sqlite().await;
    let store = db.store.clone();
    for i in 0..30 {
        h.produce_customer("acme", &format!("c-{i}"), 1_000 + i)
            .await;
    }
    for i in 0..5 {
        h.produce_customer("other", &format!("o-{i}"), 1_000).await;
    }
    h.produce("acme", "garbage", b"not avro".to_vec()).await;

    let group = common::unique("hub-sink-sql");
    let (stop, shutdown) = watch::channel(false);
    let runner = SqlSinkRunner::new(
        h.bootstrap.clone(),
        h.codec.clone(),
        topology("http://127.0.0.1:9/x"),
        store.clone(),
        &group,
    )
    .with_options(options());
    let task = tokio::spawn(runner.run(shutdown));
    wait_for("30 rows", || async {
        store.count_rows(Entity::Customer, "acme").await.unwrap() == 30
    })
    .await;
    let dl = h.dead_letters(1).await;
    assert_eq!(
        (dl[0].stage.as_str(), dl[0].error_class.as_str()),
        ("sink", "decode")
    );
    assert_eq!(dl[0].original_key.as_deref(), Some("acme/garbage"));
    assert_eq!(dl[0].original_value, b"not avro");
    assert_eq!(
        store.count_rows(Entity::Customer, "other").await.unwrap(),
        0,
        "not routed to SQL"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // A second run in the same group resumes: one new record, nothing applied twice.
    h.produce_customer("acme", "c-new", 5_000).await;
    let (stop, shutdown) = watch::channel(false);
    let runner = SqlSinkRunner::new(
        h.bootstrap.clone(),
        h.codec.clone(),
        topology("http://127.0.0.1:9/x"),
        store.clone(),
        &group,
    )
    .with_options(options());
    let task = tokio::spawn(runner.run(shutdown));
    wait_for("31 rows", || async {
        store.count_rows(Entity::Customer, "acme").await.unwrap() == 31
    })
    .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    for i in 0..30 {
        let row = store
            .row(Entity::Customer, "acme", &format!("c-{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["hub_applied_count"], json!(1), "c-{i}");
    }
    let stored: i64 = {
        let mut sum = 0;
        for p in 0..3 {
            sum += store
                .next_offsets(&group, "hub.canonical.customer", p)
                .await
                .unwrap()
                .unwrap_or(0);
        }
        sum
    };
    assert_eq!(
        stored, 37,
        "offsets cover every consumed message, written or not"
    );

    let seen = seen_metrics();
    for outcome in ["written", "dead_lettered"] {
        assert_emitted(
            &seen,
            &format!(
                "hub_sink_records_total{{entity=customer,outcome={outcome},target=warehouse,tenant=acme}}"
            ),
        );
    }
    assert_emitted(
        &seen,
        "hub_e2e_latency_seconds{entity=customer,target=warehouse}",
    );
    assert_emitted(
        &seen,
        "hub_pipeline_latency_seconds{entity=customer,target=warehouse}",
    );
    assert_emitted(
        &seen,
        &format!(
            "hub_consumer_lag_messages{{consumer_group={group},stage=sink,topic=hub.canonical.customer}}"
        ),
    );
}

#[derive(Default)]
struct Hook {
    accepted: Mutex<Vec<String>>,
}

async fn hook(State(h): State<Arc<Hook>>, body: Bytes) -> StatusCode {
    let v: Json = serde_json::from_slice(&body).unwrap();
    let keys: Vec<String> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    if keys.iter().any(|k| k == "c-5") {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    h.accepted.lock().unwrap().extend(keys);
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_runner_delivers_dead_letters_refusals_and_replays_nothing() {
    let h = harness().await;
    let db = common::sqlite().await;
    let state = Arc::new(Hook::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let topo = topology(&url);

    for i in 0..12 {
        h.produce_customer("acme", &format!("c-{i}"), 1_000).await;
    }
    h.produce_customer("other", "o-1", 1_000).await;

    let run = |group: Option<String>| {
        let (stop, shutdown) = watch::channel(false);
        let runner = WebhookSinkRunner::new(
            h.bootstrap.clone(),
            h.codec.clone(),
            topo.clone(),
            db.store.clone(),
            "acme",
            "crm-hook",
            group,
        )
        .unwrap()
        .with_options(options());
        (stop, tokio::spawn(runner.run(shutdown)))
    };

    let (stop, task) = run(None);
    let accepted = || state.accepted.lock().unwrap().len();
    wait_for("11 accepted", || async { accepted() == 11 }).await;
    let dl = h.dead_letters(1).await;
    assert_eq!(
        (dl[0].error_class.as_str(), dl[0].tenant.as_deref()),
        ("permanent", Some("acme"))
    );
    assert!(dl[0].reason.starts_with("HTTP 422"), "{}", dl[0].reason);
    assert_eq!(dl[0].original_key.as_deref(), Some("acme/c-5"));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Another group reads everything again: the ledger keeps the target from seeing any of it
    // twice (only the refused record is offered again, and refused again).
    let (stop, task) = run(Some(common::unique("replay")));
    let dl = h.dead_letters(2).await;
    assert_eq!(dl[1].original_key.as_deref(), Some("acme/c-5"));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut keys = state.accepted.lock().unwrap().clone();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 11);
    assert_eq!(accepted(), 11, "nothing delivered twice");
    assert!(
        db.store
            .ledger_entry("crm-hook", "acme", Entity::Customer, "c-0")
            .await
            .unwrap()
            .is_some()
    );

    let seen = seen_metrics();
    for outcome in ["written", "dead_lettered", "skipped_replay"] {
        assert_emitted(
            &seen,
            &format!(
                "hub_sink_records_total{{entity=customer,outcome={outcome},target=crm-hook,tenant=acme}}"
            ),
        );
    }
    assert_emitted(
        &seen,
        "hub_sink_errors_total{outcome=permanent,target=crm-hook}",
    );
    assert_emitted(
        &seen,
        "hub_e2e_latency_seconds{entity=customer,target=crm-hook}",
    );
}

/// The runners' futures can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn runner_futures_are_send(sql: SqlSinkRunner, hook: WebhookSinkRunner, rx: watch::Receiver<bool>) {
    fn is_send<T: Send>(_: T) {}
    is_send(sql.run(rx.clone()));
    is_send(hook.run(rx));
}
