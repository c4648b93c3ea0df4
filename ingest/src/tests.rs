//! The ingest endpoint end to end, in process: the real router and codec against the hub's own
//! schema registry (in memory, served on an ephemeral port), with an in-memory publisher in
//! place of Kafka.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use hub_connectors::generic::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use hub_schemas::records::now_ms;
use hub_schemas::registry::SchemaRegistry;
use hub_schemas::{Codec, RawChange, headers};
use hub_topology::Topology;
use serde_json::Value;
use tower::ServiceExt;

use crate::{IngestLimits, IngestState, MemoryPublisher, Publisher, router};

const TOPOLOGY: &str = include_str!("../tests/fixtures/topology.yaml");
const CONTACT: &str = include_str!("../tests/fixtures/salesforce_contact.json");
const BATCH_OF_THREE: &str =
    include_str!("../tests/fixtures/salesforce_contacts_batch_of_three.json");
const REPAIR_ORDER_XML: &str = include_str!("../tests/fixtures/dms_repair_order.xml");

const LAKESIDE_SF: &str = "/ingest/v1/lakeside-auto/sf-main/Contact";
const LAKESIDE_SF_SECRET: &str = "lakeside-salesforce-webhook-secret";
const LAKESIDE_DMS: &str = "/ingest/v1/lakeside-auto/dms-service/RepairOrder";
const LAKESIDE_DMS_SECRET: &str = "lakeside-dms-webhook-secret-0001";
const HILLCREST_SF_SECRET: &str = "hillcrest-salesforce-webhook-secret";

fn topology() -> Arc<Topology> {
    Arc::new(hub_topology::parse_with_env(TOPOLOGY, &|_| None).expect("fixture topology is valid"))
}

/// Serves an in-memory schema registry on 127.0.0.1:0 and returns its URL.
async fn registry_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = hub_schemas::registry::router(Arc::new(SchemaRegistry::in_memory()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

struct Hub {
    app: Router,
    publisher: Arc<MemoryPublisher>,
    codec: Arc<Codec>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
    json: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    fn ingest_ids(&self) -> Vec<String> {
        self.json["ingest_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Hub {
    async fn new() -> Self {
        Self::build(IngestLimits::default(), registry_url().await).await
    }

    async fn build(limits: IngestLimits, registry: String) -> Self {
        Self::build_with(topology(), limits, registry).await
    }

    async fn build_with(topology: Arc<Topology>, limits: IngestLimits, registry: String) -> Self {
        let publisher = Arc::new(MemoryPublisher::new());
        let codec = Arc::new(Codec::new(&registry));
        let state = IngestState::with_limits(
            topology,
            publisher.clone() as Arc<dyn Publisher>,
            codec.clone(),
            limits,
        );
        Hub {
            app: router(Arc::new(state)),
            publisher,
            codec,
        }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            bytes,
            json,
        }
    }

    async fn decode(&self, payload: &[u8]) -> RawChange {
        self.codec
            .decode_raw(payload)
            .await
            .expect("published payload decodes")
    }
}

/// A POST signed now with `secret`.
fn signed(uri: &str, secret: &str, content_type: &str, body: &[u8]) -> Request<Body> {
    signed_at(uri, secret, content_type, body, now_ms() / 1000)
}

fn signed_at(uri: &str, secret: &str, content_type: &str, body: &[u8], ts: i64) -> Request<Body> {
    Request::post(uri)
        .header("content-type", content_type)
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sign(secret.as_bytes(), ts, body))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

fn with_header(mut req: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    req.headers_mut().insert(name, value.parse().unwrap());
    req
}

fn contact(body: &str) -> Request<Body> {
    signed(
        LAKESIDE_SF,
        LAKESIDE_SF_SECRET,
        "application/json",
        body.as_bytes(),
    )
}

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn signed_single_record_is_accepted_after_one_publish_with_topic_key_and_headers() {
    let hub = Hub::new().await;
    let a = hub.send(contact(CONTACT)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    assert_eq!(a.json["accepted"], 1);
    let ids = a.ingest_ids();
    assert_eq!(ids.len(), 1);

    let published = hub.publisher.records();
    assert_eq!(published.len(), 1);
    let r = &published[0];
    assert_eq!(r.topic, "hub.raw.salesforce");
    assert_eq!(r.key, "lakeside-auto/sf-main/0035e00000AbCdEAAV");
    assert_eq!(header(&r.headers, headers::TENANT), Some("lakeside-auto"));
    assert_eq!(header(&r.headers, headers::CONNECTOR), Some("sf-main"));
    assert_eq!(
        header(&r.headers, headers::INGEST_ID),
        Some(ids[0].as_str())
    );
    let received: i64 = header(&r.headers, headers::RECEIVED_AT_MS)
        .unwrap()
        .parse()
        .unwrap();
    assert!((now_ms() - received).abs() < 60_000);

    let raw = hub.decode(&r.payload).await;
    assert_eq!(raw.tenant, "lakeside-auto");
    assert_eq!(raw.connector, "sf-main");
    assert_eq!(raw.vendor, "salesforce");
    assert_eq!(raw.vendor_entity, "Contact");
    assert_eq!(raw.external_id.as_deref(), Some("0035e00000AbCdEAAV"));
    assert_eq!(raw.operation, "upsert");
    assert_eq!(raw.source_ts, 1_714_564_800_000);
    assert_eq!(raw.received_at, received);
    assert_eq!(raw.ingest_id, ids[0]);
    assert_eq!(raw.content_type, "application/json");
    assert_eq!(raw.payload, CONTACT.trim());
}

#[tokio::test]
async fn records_go_to_the_raw_topic_of_the_topologys_namespace() {
    let mut topology = (*topology()).clone();
    topology.runtime.namespace = "staging".into();
    let hub = Hub::build_with(
        Arc::new(topology),
        IngestLimits::default(),
        registry_url().await,
    )
    .await;
    assert_eq!(
        hub.send(contact(CONTACT)).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(hub.publisher.records()[0].topic, "staging.raw.salesforce");
}

#[tokio::test]
async fn batch_of_three_publishes_three_records_in_order_with_their_own_text() {
    let hub = Hub::new().await;
    let a = hub.send(contact(BATCH_OF_THREE)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    assert_eq!(a.json["accepted"], 3);
    let published = hub.publisher.records();
    let keys: Vec<&str> = published.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lakeside-auto/sf-main/0035e00000AbCdEAAV",
            "lakeside-auto/sf-main/0035e00000XyZwVAAV",
            "lakeside-auto/sf-main/0035e00000QqRrSAAV"
        ]
    );
    let last = hub.decode(&published[2].payload).await;
    assert_eq!(last.operation, "delete");
    assert_eq!(last.ingest_id, a.ingest_ids()[2]);
    let element: Value = serde_json::from_str(&last.payload).unwrap();
    assert_eq!(element["LastName"], "Lindqvist");
}

#[tokio::test]
async fn xml_record_is_published_as_text_keyed_by_its_ingest_id() {
    let hub = Hub::new().await;
    let req = signed(
        LAKESIDE_DMS,
        LAKESIDE_DMS_SECRET,
        "text/xml; charset=utf-8",
        REPAIR_ORDER_XML.as_bytes(),
    );
    let a = hub.send(req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    let published = hub.publisher.records();
    assert_eq!(published[0].topic, "hub.raw.generic");
    let id = &a.ingest_ids()[0];
    assert_eq!(published[0].key, format!("lakeside-auto/dms-service/{id}"));
    let raw = hub.decode(&published[0].payload).await;
    assert_eq!(
        (raw.content_type.as_str(), raw.external_id),
        ("application/xml", None)
    );
    assert_eq!(raw.payload, REPAIR_ORDER_XML);
}

#[tokio::test]
async fn bad_signature_is_401_and_nothing_is_published() {
    let hub = Hub::new().await;
    let mut req = contact(CONTACT);
    req.headers_mut().insert(
        SIGNATURE_HEADER,
        sign(b"not-the-secret", now_ms() / 1000, CONTACT.as_bytes())
            .parse()
            .unwrap(),
    );
    let a = hub.send(req).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "signature_mismatch")
    );
    assert_eq!(a.json["error"]["field"], SIGNATURE_HEADER);
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn tampered_body_and_missing_signature_are_401() {
    let hub = Hub::new().await;
    let ts = now_ms() / 1000;
    let req = Request::post(LAKESIDE_SF)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(
            SIGNATURE_HEADER,
            sign(LAKESIDE_SF_SECRET.as_bytes(), ts, b"{}"),
        )
        .body(Body::from(CONTACT))
        .unwrap();
    assert_eq!(hub.send(req).await.code(), "signature_mismatch");
    let req = Request::post(LAKESIDE_SF)
        .header("content-type", "application/json")
        .body(Body::from(CONTACT))
        .unwrap();
    let a = hub.send(req).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "signature_missing")
    );
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn stale_timestamp_is_401_even_with_a_correct_signature() {
    let hub = Hub::new().await;
    let ts = now_ms() / 1000 - 301;
    let a = hub
        .send(signed_at(
            LAKESIDE_SF,
            LAKESIDE_SF_SECRET,
            "application/json",
            CONTACT.as_bytes(),
            ts,
        ))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "signature_stale")
    );
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn another_tenants_secret_does_not_open_a_connector_of_the_same_name() {
    let hub = Hub::new().await;
    let a = hub
        .send(signed(
            LAKESIDE_SF,
            HILLCREST_SF_SECRET,
            "application/json",
            CONTACT.as_bytes(),
        ))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "signature_mismatch")
    );
}

#[tokio::test]
async fn unknown_tenant_and_unknown_connector_get_the_identical_404() {
    let hub = Hub::new().await;
    let unknown_tenant = hub
        .send(signed(
            "/ingest/v1/no-such-dealer/sf-main/Contact",
            LAKESIDE_SF_SECRET,
            "application/json",
            CONTACT.as_bytes(),
        ))
        .await;
    let unknown_connector = hub
        .send(signed(
            "/ingest/v1/lakeside-auto/no-such-connector/Contact",
            LAKESIDE_SF_SECRET,
            "application/json",
            CONTACT.as_bytes(),
        ))
        .await;
    // Unsigned, too: existence is not revealed by asking without a signature either.
    let unsigned = hub
        .send(
            Request::post("/ingest/v1/no-such-dealer/x/y")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(unknown_tenant.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_tenant.code(), "unknown_connector");
    for other in [&unknown_connector, &unsigned] {
        assert_eq!(other.status, unknown_tenant.status);
        assert_eq!(other.bytes, unknown_tenant.bytes);
    }
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn unknown_entity_is_404_after_the_signature_is_checked() {
    let hub = Hub::new().await;
    let uri = "/ingest/v1/lakeside-auto/sf-main/Opportunity";
    let a = hub
        .send(signed(
            uri,
            LAKESIDE_SF_SECRET,
            "application/json",
            CONTACT.as_bytes(),
        ))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, "unknown_entity")
    );
    assert_eq!(a.json["error"]["field"], "entity");
    // Unsigned, the entity is not even looked at.
    let a = hub
        .send(signed(
            uri,
            "wrong-secret",
            "application/json",
            CONTACT.as_bytes(),
        ))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn body_over_the_limit_is_413_whether_declared_or_streamed() {
    let limits = IngestLimits {
        max_body_bytes: 64,
        ..IngestLimits::default()
    };
    let hub = Hub::build(limits, registry_url().await).await;
    let body = format!("{{\"Id\": \"1\", \"LastName\": \"{}\"}}", "x".repeat(100));
    // Without Content-Length (chunked), the limit is enforced while reading.
    let a = hub.send(contact(&body)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let declared = with_header(contact(&body), "content-length", &body.len().to_string());
    assert_eq!(hub.send(declared).await.code(), "body_too_large");
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn batch_of_more_than_1000_records_is_413() {
    let hub = Hub::new().await;
    let body = format!("[{}]", vec![r#"{"Id":"1"}"#; 1001].join(","));
    let a = hub.send(contact(&body)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large")
    );
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn malformed_json_is_400_with_the_position() {
    let hub = Hub::new().await;
    let a = hub.send(contact("{\"Id\": \"1\",\n \"LastName\": }")).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let message = a.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 2 column 14"), "{message}");
}

#[tokio::test]
async fn a_batch_element_that_is_not_an_object_is_400_naming_its_index() {
    let hub = Hub::new().await;
    let a = hub
        .send(contact(r#"[{"Id":"1"},{"Id":"2"},{"Id":"3"},"four"]"#))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "invalid_record")
    );
    assert_eq!(a.json["error"]["field"], "[3]");
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn other_media_types_are_415() {
    let hub = Hub::new().await;
    let a = hub
        .send(signed(
            LAKESIDE_SF,
            LAKESIDE_SF_SECRET,
            "text/plain",
            CONTACT.as_bytes(),
        ))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
}

#[tokio::test]
async fn publisher_failure_is_503_with_retry_after_and_never_2xx() {
    let hub = Hub::new().await;
    hub.publisher.set_failing(true);
    for body in [CONTACT, BATCH_OF_THREE] {
        let a = hub.send(contact(body)).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
        );
        assert_eq!(a.headers["retry-after"], "5");
    }
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn unreachable_schema_registry_is_503_and_nothing_is_published() {
    let hub = Hub::build(IngestLimits::default(), dead_url().await).await;
    let a = hub.send(contact(CONTACT)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable")
    );
    assert_eq!(a.headers["retry-after"], "5");
    assert!(hub.publisher.records().is_empty());
}

#[tokio::test]
async fn a_dead_broker_is_a_503_within_the_message_timeout() {
    let dead = dead_url().await.trim_start_matches("http://").to_string();
    let publisher = crate::KafkaPublisherConfig::new(dead)
        .message_timeout_ms(1_000)
        .build()
        .expect("building the producer needs no broker");
    let state = IngestState::new(
        topology(),
        Arc::new(publisher),
        Arc::new(Codec::new(&registry_url().await)),
    );
    let app = router(Arc::new(state));
    let started = std::time::Instant::now();
    let resp = app.oneshot(contact(BATCH_OF_THREE)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn same_idempotency_key_twice_publishes_once_and_replays_the_same_ids() {
    let hub = Hub::new().await;
    let first = hub
        .send(with_header(
            contact(BATCH_OF_THREE),
            "idempotency-key",
            "sf-batch-2024-05-01-0001",
        ))
        .await;
    let second = hub
        .send(with_header(
            contact(BATCH_OF_THREE),
            "idempotency-key",
            "sf-batch-2024-05-01-0001",
        ))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.json, first.json);
    assert_eq!(second.ingest_ids().len(), 3);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(hub.publisher.records().len(), 3);
}

#[tokio::test]
async fn same_idempotency_key_with_a_different_body_is_422() {
    let hub = Hub::new().await;
    let first = hub
        .send(with_header(contact(CONTACT), "idempotency-key", "k-1"))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let other = CONTACT.replace("Maria", "Marta");
    let a = hub
        .send(with_header(contact(&other), "idempotency-key", "k-1"))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    assert_eq!(hub.publisher.records().len(), 1);
}

#[tokio::test]
async fn a_failed_request_is_not_cached_so_its_retry_is_published_with_the_same_ids() {
    let hub = Hub::new().await;
    hub.publisher.set_failing(true);
    let failed = hub
        .send(with_header(contact(CONTACT), "idempotency-key", "retry-me"))
        .await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    hub.publisher.set_failing(false);
    let retried = hub
        .send(with_header(contact(CONTACT), "idempotency-key", "retry-me"))
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED);
    assert!(retried.headers.get("idempotent-replayed").is_none());
    assert_eq!(hub.publisher.records().len(), 1);
    // A third send is a replay, with the ids the retry was given.
    let again = hub
        .send(with_header(contact(CONTACT), "idempotency-key", "retry-me"))
        .await;
    assert_eq!(again.ingest_ids(), retried.ingest_ids());
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_tenant_and_bounded_in_length() {
    let hub = Hub::new().await;
    let lakeside = hub
        .send(with_header(contact(CONTACT), "idempotency-key", "shared"))
        .await;
    let hillcrest = hub
        .send(with_header(
            signed(
                "/ingest/v1/hillcrest-motors/sf-main/Contact",
                HILLCREST_SF_SECRET,
                "application/json",
                CONTACT.as_bytes(),
            ),
            "idempotency-key",
            "shared",
        ))
        .await;
    assert_eq!(hillcrest.status, StatusCode::ACCEPTED);
    assert!(hillcrest.headers.get("idempotent-replayed").is_none());
    assert_ne!(hillcrest.ingest_ids(), lakeside.ingest_ids());

    let a = hub
        .send(with_header(
            contact(CONTACT),
            "idempotency-key",
            &"k".repeat(201),
        ))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );
}

#[tokio::test]
async fn other_methods_and_paths_answer_in_the_same_error_shape() {
    let hub = Hub::new().await;
    let a = hub
        .send(Request::get(LAKESIDE_SF).body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let a = hub
        .send(
            Request::post("/ingest/v1/lakeside-auto/sf-main")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "not_found"));
    let a = hub
        .send(
            Request::post("/ingest/v1/%FF%FE/sf-main/Contact")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
}

#[tokio::test]
async fn the_router_merges_with_other_routes_and_leaves_their_paths_alone() {
    let hub = Hub::new().await;
    let app = Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(hub.app.clone());
    let resp = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app.clone().oneshot(contact(CONTACT)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test]
async fn hostile_bodies_always_get_a_4xx_json_error_never_a_panic_or_5xx() {
    let hub = Hub::new().await;
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for _ in 0..150 {
        let len = rng.below(300);
        bodies.push(rng.bytes(len));
    }
    // Every truncation of a valid batch (the whole body is the one valid case).
    for cut in 0..BATCH_OF_THREE.len() {
        bodies.push(BATCH_OF_THREE.as_bytes()[..cut].to_vec());
    }
    // Random single-byte corruptions of a valid record.
    for _ in 0..150 {
        let mut b = CONTACT.as_bytes().to_vec();
        let i = rng.below(b.len());
        b[i] = rng.next() as u8;
        bodies.push(b);
    }
    for depth in [129usize, 1_000, 100_000] {
        bodies.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        bodies.push("{\"a\":".repeat(depth).into_bytes());
        bodies.push(
            format!(
                "[{}1{}]",
                "{\"a\":[".repeat(depth / 2),
                "]}".repeat(depth / 2)
            )
            .into_bytes(),
        );
    }
    bodies.extend(
        [
            &b""[..],
            b"null",
            b"\"string\"",
            b"[null]",
            b"[[]]",
            b"\xef\xbb\xbf{}",
            b"{\"Id\": 1e999}",
            b"{\"Id\": \"\\ud800\"}",
            b"{\"Id\": 1}{\"Id\": 2}",
            b"\0\0\0",
        ]
        .map(<[u8]>::to_vec),
    );

    for (i, body) in bodies.iter().enumerate() {
        for content_type in [
            "application/json",
            "application/xml",
            "application/octet-stream",
        ] {
            let a = hub
                .send(signed(LAKESIDE_SF, LAKESIDE_SF_SECRET, content_type, body))
                .await;
            let case = format!(
                "body #{i} as {content_type}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            if a.status == StatusCode::ACCEPTED {
                continue;
            }
            assert!(a.status.is_client_error(), "{case} got {}", a.status);
            assert!(
                !a.code().is_empty(),
                "{case} has no error code: {:?}",
                String::from_utf8_lossy(&a.bytes)
            );
            assert!(a.json["error"]["message"].is_string(), "{case}");
        }
    }
    // Hostile headers on a valid body.
    for (name, value) in [
        (TIMESTAMP_HEADER, "99999999999999999999999"),
        (TIMESTAMP_HEADER, "-9223372036854775808"),
        (SIGNATURE_HEADER, "sha256="),
        (TIMESTAMP_HEADER, "9223372036854775807"),
        (SIGNATURE_HEADER, "sha256="),
        (SIGNATURE_HEADER, "md5=abc"),
    ] {
        let a = hub.send(with_header(contact(CONTACT), name, value)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name}: {value}");
    }
    // An unparseable Content-Length is hyper's to refuse on a real connection; in process it
    // must at least not break anything.
    let a = hub
        .send(with_header(
            contact(CONTACT),
            "content-length",
            "99999999999999999999999999",
        ))
        .await;
    assert!(!a.status.is_server_error(), "{}", a.status);
}

/// Captures metric updates for the contract test (metrics-util's debugging recorder), read
/// back as `name{label=value,...}` (labels sorted) → counter value or histogram count.
#[derive(Default)]
struct CapturingRecorder {
    inner: metrics_util::debugging::DebuggingRecorder,
    /// Taken once, after the recording: a snapshot drains what it reports.
    taken: std::sync::OnceLock<Vec<(String, f64)>>,
}

impl CapturingRecorder {
    fn all(&self) -> Vec<(String, f64)> {
        self.taken.get_or_init(|| self.take()).clone()
    }

    fn take(&self) -> Vec<(String, f64)> {
        use metrics_util::debugging::DebugValue;
        self.inner
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(ck, _, _, value)| {
                let k = ck.key();
                let mut labels: Vec<String> = k
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                let v = match value {
                    DebugValue::Counter(n) => n as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(h) => h.len() as f64,
                };
                (format!("{}{{{}}}", k.name(), labels.join(",")), v)
            })
            .collect()
    }

    fn keys(&self) -> Vec<String> {
        self.all().into_iter().map(|(k, _)| k).collect()
    }

    fn get(&self, key: &str) -> f64 {
        self.all()
            .into_iter()
            .find(|(k, _)| k == key)
            .map_or(0.0, |(_, v)| v)
    }
}

#[test]
fn ingest_emits_its_contract_metrics_with_labels_only_from_the_topology() {
    use hub_topology::metrics::*;
    let recorder = CapturingRecorder::default();
    // A current-thread runtime inside the local recorder: every task is polled on this thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder.inner, || {
        rt.block_on(async {
            let hub = Hub::new().await;
            assert_eq!(
                hub.send(contact(BATCH_OF_THREE)).await.status,
                StatusCode::ACCEPTED
            );
            let bad = signed(
                LAKESIDE_SF,
                "wrong-secret",
                "application/json",
                CONTACT.as_bytes(),
            );
            assert_eq!(hub.send(bad).await.status, StatusCode::UNAUTHORIZED);
            let probe = signed(
                "/ingest/v1/attacker-chosen-tenant/x/y",
                LAKESIDE_SF_SECRET,
                "application/json",
                b"{}",
            );
            assert_eq!(hub.send(probe).await.status, StatusCode::NOT_FOUND);
            hub.publisher.set_failing(true);
            assert_eq!(
                hub.send(contact(CONTACT)).await.status,
                StatusCode::SERVICE_UNAVAILABLE
            );
        })
    });

    let records = |tenant: &str, connector: &str, entity: &str, outcome: &str| {
        recorder.get(&format!(
            "{INGEST_RECORDS_TOTAL}{{connector={connector},entity={entity},outcome={outcome},tenant={tenant}}}"
        ))
    };
    assert_eq!(
        records("lakeside-auto", "sf-main", "Contact", "accepted"),
        3.0
    );
    assert_eq!(
        records("lakeside-auto", "sf-main", "Contact", "rejected"),
        1.0
    );
    assert_eq!(
        records("lakeside-auto", "sf-main", "Contact", "failed"),
        1.0
    );
    assert_eq!(records("unknown", "unknown", "unknown", "rejected"), 1.0);
    for status in ["202", "401", "404", "503"] {
        assert_eq!(
            recorder.get(&format!("{INGEST_REQUESTS_TOTAL}{{status={status}}}")),
            1.0,
            "{status}"
        );
        assert_eq!(
            recorder.get(&format!("{INGEST_REQUEST_SECONDS}{{status={status}}}")),
            1.0,
            "{status}"
        );
    }
    assert_eq!(
        recorder.get(&format!("{BROKER_ERRORS_TOTAL}{{stage=ingest}}")),
        1.0
    );
    let leaked = recorder.keys().iter().any(|k| k.contains("attacker"));
    assert!(!leaked, "a URL value became a label");
}

/// A tenant over its `limits:` gets `429 rate_limited` with `Retry-After` in the one error
/// shape, counted per tenant, after the signature check; another tenant is untouched.
#[test]
fn a_tenant_over_its_ingest_limit_gets_429_with_retry_after_and_others_are_untouched() {
    use hub_topology::metrics::INGEST_THROTTLED_TOTAL;
    let recorder = CapturingRecorder::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder.inner, || {
        rt.block_on(async {
            let mut topology = (*topology()).clone();
            for t in &mut topology.tenants {
                if t.id == "lakeside-auto" {
                    t.limits = hub_topology::TenantLimits {
                        ingest_per_s: 1,
                        ingest_burst: 2,
                    };
                }
            }
            let hub = Hub::build_with(
                Arc::new(topology),
                IngestLimits::default(),
                registry_url().await,
            )
            .await;
            // Unsigned traffic spends nothing of the tenant's allowance.
            for _ in 0..5 {
                let bad = signed(LAKESIDE_SF, "wrong-secret", "application/json", b"{}");
                assert_eq!(hub.send(bad).await.status, StatusCode::UNAUTHORIZED);
            }
            for _ in 0..2 {
                let a = hub.send(contact(CONTACT)).await;
                assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
            }
            let refused = hub.send(contact(CONTACT)).await;
            assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(refused.code(), "rate_limited");
            assert!(refused.json["error"]["message"].as_str().is_some());
            let wait: u32 = refused.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "Retry-After {wait}");
            assert_eq!(
                hub.publisher.records().len(),
                2,
                "nothing of the 429 stored"
            );
            // The other tenant keeps the default allowance.
            let hillcrest = signed(
                "/ingest/v1/hillcrest-motors/sf-main/Contact",
                HILLCREST_SF_SECRET,
                "application/json",
                CONTACT.as_bytes(),
            );
            let other = hub.send(hillcrest).await;
            assert_ne!(
                other.status,
                StatusCode::TOO_MANY_REQUESTS,
                "{}",
                other.json
            );
        })
    });
    assert_eq!(
        recorder.get(&format!("{INGEST_THROTTLED_TOTAL}{{tenant=lakeside-auto}}")),
        1.0
    );
    assert!(
        !recorder
            .keys()
            .iter()
            .any(|k| k.starts_with(INGEST_THROTTLED_TOTAL) && k.contains("hillcrest"))
    );
}

/// HubSpot's own webhook endpoint: the v3 signature over the URL HubSpot posted to, checked
/// before anything else is read; a good delivery whose objects cannot be fetched is a 503
/// (HubSpot retries it) and stores nothing.
mod hubspot_webhooks {
    use super::*;
    use hub_connectors::hubspot::events::{SIGNATURE_V3_HEADER, TIMESTAMP_HEADER, sign_v3};

    const SECRET: &str = "hubspot-app-client-secret-0001";
    const PATH: &str = "/ingest/hubspot/v3/lakeside-auto/hs";
    const EVENTS: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.propertyChange","propertyName":"city","propertyValue":"Austin","attemptNumber":0,"objectId":123,"changeSource":"CRM","appId":54321}]"#;

    async fn hub(api_base: &str) -> Hub {
        let text = format!(
            "version: 1\ntenants:\n  - id: lakeside-auto\n    connectors:\n      - id: hs\n        vendor: hubspot\n        webhook_secret: {SECRET}\n        api: {{ base_url: '{api_base}', token: pat-test, poll_ms: 0 }}\n        entities:\n          - vendor_entity: contacts\n            canonical: customer\n            external_id: /id\n            fields:\n              email: {{ from: /properties/email }}\n      - id: sf\n        vendor: salesforce\n        webhook_secret: lakeside-salesforce-webhook-secret\n"
        );
        let topology = Arc::new(hub_topology::parse_with_env(&text, &|_| None).unwrap());
        Hub::build_with(topology, IngestLimits::default(), registry_url().await).await
    }

    fn delivery(path: &str, body: &str, signature: Option<String>) -> Request<Body> {
        let ts = now_ms().to_string();
        let mut r = Request::post(path)
            .header("host", "hub.example")
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &ts);
        if let Some(sig) = signature {
            r = r.header(SIGNATURE_V3_HEADER, sig);
        }
        r.body(Body::from(body.to_string())).unwrap()
    }

    fn signed(path: &str, body: &str) -> Request<Body> {
        let ts = now_ms().to_string();
        let url = format!("http://hub.example{path}");
        let sig = sign_v3(SECRET.as_bytes(), "POST", &url, body.as_bytes(), &ts);
        Request::post(path)
            .header("host", "hub.example")
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, ts)
            .header(SIGNATURE_V3_HEADER, sig)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn bad_or_missing_signatures_are_refused_before_anything_is_read() {
        let hub = hub(&dead_url().await).await;
        let a = hub.send(delivery(PATH, EVENTS, None)).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::UNAUTHORIZED, "hubspot_signature_missing")
        );
        let a = hub
            .send(delivery(
                PATH,
                EVENTS,
                Some("bm90IHRoZSBzaWduYXR1cmU=".into()),
            ))
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::UNAUTHORIZED, "hubspot_signature_mismatch")
        );
        // Signed for another URL (another tenant's endpoint) is a mismatch too.
        let mut other = signed("/ingest/hubspot/v3/other/hs", EVENTS);
        *other.uri_mut() = PATH.parse().unwrap();
        let a = hub.send(other).await;
        assert_eq!(a.code(), "hubspot_signature_mismatch");
        assert!(hub.publisher.records().is_empty());
    }

    #[tokio::test]
    async fn only_hubspot_connectors_have_this_endpoint() {
        let hub = hub(&dead_url().await).await;
        let a = hub
            .send(signed("/ingest/hubspot/v3/lakeside-auto/sf", EVENTS))
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "unknown_connector")
        );
        let a = hub
            .send(signed("/ingest/hubspot/v3/nobody/hs", EVENTS))
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_signed_body_that_is_not_events_is_a_400_and_an_unreachable_api_a_503() {
        let hub = hub(&dead_url().await).await;
        let a = hub.send(signed(PATH, r#"{"not":"events"}"#)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
        let a = hub.send(signed(PATH, EVENTS)).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "vendor_unavailable")
        );
        assert!(a.headers.get("retry-after").is_some());
        assert!(hub.publisher.records().is_empty(), "nothing stored");
    }
}
