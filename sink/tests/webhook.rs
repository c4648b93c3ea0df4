//! The webhook sink against a local HTTP server: signatures, status classification, retries
//! that honour Retry-After, isolating a refused record, and the ledger making a replay a no-op.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{customers, unique};
use hub_connectors::generic::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use hub_sink::{
    DeliveryOutcome, RetryPolicy, Sink, WebhookSink, WriteResult, deliver, write_with_retry,
};
use serde_json::Value as Json;
use tokio::sync::watch;

const SECRET: &str = "whsec-test";

/// What the test server does with a request.
#[derive(Clone)]
enum Reply {
    Status(u16),
    /// 429 with this `Retry-After` value.
    RateLimited(&'static str),
    /// 400 with a reason when a record with this key is in the batch, else 200.
    RefuseKey(&'static str),
}

#[derive(Default)]
struct Server {
    /// Replies in order; when empty, 200.
    script: Mutex<VecDeque<Reply>>,
    /// The default once the script is used up.
    fallback: Mutex<Option<Reply>>,
    /// Every request: (headers, body, when).
    seen: Mutex<Vec<(HeaderMap, Bytes, Instant)>>,
    /// Keys of the records the server accepted (answered 2xx).
    accepted: Mutex<Vec<String>>,
}

fn keys_of(body: &[u8]) -> Vec<String> {
    let v: Json = serde_json::from_slice(body).unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

async fn handle(State(s): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    s.seen
        .lock()
        .unwrap()
        .push((headers, body.clone(), Instant::now()));
    let next = s.script.lock().unwrap().pop_front();
    let reply = next
        .or_else(|| s.fallback.lock().unwrap().clone())
        .unwrap_or(Reply::Status(200));
    let keys = keys_of(&body);
    let status = match reply {
        Reply::Status(code) => code,
        Reply::RateLimited(after) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", after)],
                "slow down",
            )
                .into_response();
        }
        Reply::RefuseKey(bad) if keys.iter().any(|k| k == bad) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("record {bad}: field 'email' is invalid"),
            )
                .into_response();
        }
        Reply::RefuseKey(_) => 200,
    };
    if (200..300).contains(&status) {
        s.accepted.lock().unwrap().extend(keys);
    }
    StatusCode::from_u16(status).unwrap().into_response()
}

async fn serve(script: Vec<Reply>, fallback: Option<Reply>) -> (Arc<Server>, String) {
    let state = Arc::new(Server::default());
    state.script.lock().unwrap().extend(script);
    *state.fallback.lock().unwrap() = fallback;
    let app = Router::new()
        .route("/hook", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, format!("http://{addr}/hook"))
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn now_secs() -> i64 {
    hub_schemas::records::now_ms() / 1000
}

#[tokio::test]
async fn batches_are_signed_and_verify_with_the_shared_secret() {
    let (server, url) = serve(vec![], None).await;
    let sink = WebhookSink::new("crm-hook", &url, SECRET, 2).unwrap();
    let batch = customers("acme", 3, 1_000, 0);
    let results = sink.write(&batch).await;
    assert_eq!(results, vec![WriteResult::Ok; 3]);

    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "3 records in batches of 2");
    for (headers, body, _) in seen.iter() {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            verify(
                SECRET.as_bytes(),
                h(TIMESTAMP_HEADER),
                h(SIGNATURE_HEADER),
                body,
                now_secs(),
                300
            ),
            Ok(())
        );
        assert!(
            verify(
                b"wrong",
                h(TIMESTAMP_HEADER),
                h(SIGNATURE_HEADER),
                body,
                now_secs(),
                300
            )
            .is_err()
        );
        assert_eq!(h("content-type"), Some("application/json"));
    }
    let first: Json = serde_json::from_slice(&seen[0].1).unwrap();
    let r = &first["records"][0];
    assert_eq!(
        (
            r["tenant"].as_str(),
            r["entity"].as_str(),
            r["key"].as_str()
        ),
        (Some("acme"), Some("customer"), Some("c-0"))
    );
    assert_eq!(r["version"], 1_000);
    assert_eq!(r["record"]["email"], "ana@example.com");
}

#[tokio::test]
async fn rate_limited_batch_is_retried_after_retry_after_and_delivered_once() {
    let (server, url) = serve(vec![Reply::RateLimited("1")], None).await;
    let sink = WebhookSink::new("crm-hook", &url, SECRET, 100).unwrap();
    let batch = customers("acme", 3, 1_000, 0);
    let (_stop, mut shutdown) = watch::channel(false);
    let deliveries = write_with_retry(&sink, &batch, &fast_retries(), &mut shutdown).await;

    assert!(
        deliveries
            .iter()
            .all(|d| d.result.is_ok() && d.attempts == 2),
        "{deliveries:?}"
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].2 - seen[0].2;
    assert!(
        waited >= Duration::from_millis(990),
        "waited only {waited:?} despite Retry-After: 1"
    );
    assert_eq!(
        *server.accepted.lock().unwrap(),
        vec!["c-0", "c-1", "c-2"],
        "delivered once"
    );
}

#[tokio::test]
async fn one_refused_record_is_permanent_and_the_others_are_delivered() {
    let (server, url) = serve(vec![], Some(Reply::RefuseKey("c-1"))).await;
    let sink = WebhookSink::new("crm-hook", &url, SECRET, 100).unwrap();
    let batch = customers("acme", 3, 1_000, 0);
    let results = sink.write(&batch).await;

    assert_eq!(results[0], WriteResult::Ok);
    assert_eq!(results[2], WriteResult::Ok);
    match &results[1] {
        WriteResult::Permanent { reason } => {
            assert_eq!(reason, "HTTP 400: record c-1: field 'email' is invalid")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    // The batch, then each record alone.
    assert_eq!(server.seen.lock().unwrap().len(), 4);
    assert_eq!(*server.accepted.lock().unwrap(), vec!["c-0", "c-2"]);
}

#[tokio::test]
async fn server_errors_and_refused_connections_are_transient() {
    let (_server, url) = serve(vec![], Some(Reply::Status(503))).await;
    let sink = WebhookSink::new("crm-hook", &url, SECRET, 2).unwrap();
    let batch = customers("acme", 3, 1_000, 0);
    let (_stop, mut shutdown) = watch::channel(false);
    let deliveries = write_with_retry(&sink, &batch, &fast_retries(), &mut shutdown).await;
    for d in &deliveries {
        assert!(matches!(d.result, WriteResult::Transient { .. }), "{d:?}");
        assert_eq!(d.attempts, 4, "max attempts");
    }

    // Nothing listens on this port once the listener is dropped.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sink = WebhookSink::new(
        "crm-hook",
        &format!("http://127.0.0.1:{port}/hook"),
        SECRET,
        2,
    )
    .unwrap();
    for r in sink.write(&batch).await {
        assert!(
            matches!(
                r,
                WriteResult::Transient {
                    retry_after: None,
                    ..
                }
            ),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn shutdown_ends_the_wait_between_retries() {
    let (_server, url) = serve(vec![], Some(Reply::RateLimited("60"))).await;
    let sink = WebhookSink::new("crm-hook", &url, SECRET, 10).unwrap();
    let batch = customers("acme", 1, 1_000, 0);
    let (stop, mut shutdown) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).unwrap();
    });
    let started = Instant::now();
    let deliveries = write_with_retry(&sink, &batch, &RetryPolicy::default(), &mut shutdown).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        deliveries[0].result,
        WriteResult::Transient { .. }
    ));
}

#[tokio::test]
async fn replayed_batch_writes_nothing_new() {
    let db = common::sqlite().await;
    let (server, url) = serve(vec![], Some(Reply::RefuseKey("c-3"))).await;
    let target = unique("crm-hook");
    let sink = WebhookSink::new(&target, &url, SECRET, 2).unwrap();
    let batch = customers("acme", 4, 1_000, 0);
    let (_stop, mut shutdown) = watch::channel(false);

    let first = deliver(&db.store, &sink, &batch, &fast_retries(), &mut shutdown)
        .await
        .unwrap();
    assert_eq!(
        &first[..3],
        &[
            DeliveryOutcome::Written,
            DeliveryOutcome::Written,
            DeliveryOutcome::Written
        ]
    );
    assert!(
        matches!(first[3], DeliveryOutcome::Refused { attempts: 1, .. }),
        "{:?}",
        first[3]
    );
    let requests = server.seen.lock().unwrap().len();

    let replay = deliver(&db.store, &sink, &batch, &fast_retries(), &mut shutdown)
        .await
        .unwrap();
    assert_eq!(&replay[..3], &[const { DeliveryOutcome::SkippedReplay }; 3]);
    // The refused record is not in the ledger: it is offered again (and refused again).
    assert!(matches!(replay[3], DeliveryOutcome::Refused { .. }));
    assert_eq!(
        *server.accepted.lock().unwrap(),
        vec!["c-0", "c-1", "c-2"],
        "each accepted once"
    );
    assert_eq!(
        server.seen.lock().unwrap().len(),
        requests + 1,
        "only the refused record went again"
    );
}

#[test]
fn a_webhook_target_needs_an_http_url() {
    assert!(WebhookSink::new("t", "ftp://example.com/x", SECRET, 10).is_err());
    assert!(WebhookSink::new("t", "not a url", SECRET, 10).is_err());
    let debug = format!(
        "{:?}",
        WebhookSink::new("t", "https://example.com/x", SECRET, 10).unwrap()
    );
    assert!(
        !debug.contains(SECRET),
        "the secret stays out of Debug output"
    );
}
