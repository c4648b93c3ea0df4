//! Registry tests: the REST API over the in-memory log, replay and races, the real
//! `schema_registry_converter` client over TCP, and (when `HUB_KAFKA_BOOTSTRAP` is set) the
//! Kafka log on a real broker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

const V1: &str = r#"{"type":"record","name":"Thing","namespace":"t","doc":"A thing.","fields":[
    {"name":"a","type":"string","doc":"A."}]}"#;
const V1_SPACED: &str = r#"{ "type" : "record", "name":"Thing", "namespace":"t", "doc":"A thing.",
    "fields":[ {"name":"a", "type":{"type":"string"}, "doc":"A."} ] }"#;
/// V1 plus an optional field: backward and forward compatible with V1.
const V2: &str = r#"{"type":"record","name":"Thing","namespace":"t","doc":"A thing.","fields":[
    {"name":"a","type":"string","doc":"A."},
    {"name":"b","type":["null","string"],"default":null,"doc":"B.","pii":true}]}"#;
/// V1 plus a required field without default: not backward compatible.
const V_BAD: &str = r#"{"type":"record","name":"Thing","namespace":"t","doc":"A thing.","fields":[
    {"name":"a","type":"string","doc":"A."},
    {"name":"c","type":"string","doc":"C."}]}"#;
const OTHER: &str =
    r#"{"type":"record","name":"Other","namespace":"t","fields":[{"name":"x","type":"long"}]}"#;

fn app() -> (Arc<SchemaRegistry>, Router) {
    let registry = Arc::new(SchemaRegistry::in_memory());
    (registry.clone(), router(registry))
}

async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    content_type: &str,
) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(uri);
    let request = match body {
        Some(b) => request
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(CONTENT_TYPE_V1),
        "{method} {uri}"
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_with(app, method, uri, body, CONTENT_TYPE_V1).await
}

async fn register(app: &Router, subject: &str, schema: &str) -> (StatusCode, Value) {
    call(
        app,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({ "schema": schema })),
    )
    .await
}

fn error_code(body: &Value) -> u64 {
    body["error_code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no error_code in {body}"))
}

#[tokio::test]
async fn root_types_and_unknown_paths() {
    let (_, app) = app();
    assert_eq!(
        call(&app, "GET", "/", None).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        call(&app, "GET", "/schemas/types", None).await,
        (StatusCode::OK, json!(["AVRO"]))
    );
    let (status, body) = call(&app, "GET", "/nope", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 404));
    assert_eq!(
        call(&app, "GET", "/mode", None).await.1,
        json!({"mode": "READWRITE"})
    );
}

#[tokio::test]
async fn merges_into_a_larger_router() {
    use axum::routing::get;
    let registry = Arc::new(SchemaRegistry::in_memory());
    // `router` next to routes without a fallback or `/` (the hub's control listener today).
    let control = Router::new()
        .route("/metrics", get(|| async { "m" }))
        .merge(router(registry.clone()));
    assert_eq!(register(&control, "s", V1).await.1, json!({"id": 1}));
    assert_eq!(call(&control, "GET", "/", None).await.1, json!({}));
    // `routes` next to a router with its own `/` and fallback (a console, say).
    let console = Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, CONTENT_TYPE_V1)], "\"console\"") }),
        )
        .fallback(|| async { ([(header::CONTENT_TYPE, CONTENT_TYPE_V1)], "\"spa\"") })
        .merge(routes(registry));
    assert_eq!(
        call(&console, "GET", "/subjects", None).await.1,
        json!(["s"])
    );
    assert_eq!(call(&console, "GET", "/", None).await.1, json!("console"));
    assert_eq!(
        call(&console, "GET", "/elsewhere", None).await.1,
        json!("spa")
    );
}

#[tokio::test]
async fn same_schema_same_id_and_version_and_ids_are_global() {
    let (_, app) = app();
    assert_eq!(
        register(&app, "things-value", V1).await,
        (StatusCode::OK, json!({"id": 1}))
    );
    // Same schema, other spelling: same id, no new version.
    assert_eq!(
        register(&app, "things-value", V1_SPACED).await,
        (StatusCode::OK, json!({"id": 1}))
    );
    // Same schema under another subject: the global id is reused.
    assert_eq!(
        register(&app, "copy-value", V1).await,
        (StatusCode::OK, json!({"id": 1}))
    );
    // A new (compatible) schema: a new id and version.
    assert_eq!(
        register(&app, "things-value", V2).await,
        (StatusCode::OK, json!({"id": 2}))
    );
    assert_eq!(
        register(&app, "others-value", OTHER).await,
        (StatusCode::OK, json!({"id": 3}))
    );

    assert_eq!(
        call(&app, "GET", "/subjects", None).await,
        (
            StatusCode::OK,
            json!(["copy-value", "others-value", "things-value"])
        )
    );
    assert_eq!(
        call(&app, "GET", "/subjects/things-value/versions", None).await,
        (StatusCode::OK, json!([1, 2]))
    );
    assert_eq!(
        call(&app, "GET", "/subjects/copy-value/versions", None)
            .await
            .1,
        json!([1])
    );
    assert_eq!(
        call(&app, "GET", "/schemas/ids/1/versions", None).await.1,
        json!([{"subject": "copy-value", "version": 1}, {"subject": "things-value", "version": 1}])
    );
}

#[tokio::test]
async fn get_by_id_and_by_version() {
    let (_, app) = app();
    register(&app, "s", V1).await;
    register(&app, "s", V2).await;

    let (status, body) = call(&app, "GET", "/schemas/ids/2?deleted=true", None).await;
    assert_eq!(status, StatusCode::OK);
    let returned = body["schema"].as_str().unwrap();
    // Normalized, and docs and custom attributes kept.
    let parsed: Value = serde_json::from_str(returned).unwrap();
    assert_eq!(parsed["fields"][1]["pii"], json!(true));
    assert_eq!(parsed["doc"], json!("A thing."));
    assert!(!returned.contains('\n'));

    let (status, raw) = call(&app, "GET", "/schemas/ids/2/schema", None).await;
    assert_eq!((status, &raw), (StatusCode::OK, &parsed));

    let (status, latest) = call(&app, "GET", "/subjects/s/versions/latest", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        latest,
        json!({"subject": "s", "version": 2, "id": 2, "schema": returned})
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions/-1", None).await.1,
        latest
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions/1", None).await.1["id"],
        json!(1)
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions/2/schema", None)
            .await
            .1,
        parsed
    );

    for (uri, status, code) in [
        ("/schemas/ids/99", StatusCode::NOT_FOUND, 40403),
        ("/schemas/ids/abc", StatusCode::NOT_FOUND, 40403),
        ("/schemas/ids/99/schema", StatusCode::NOT_FOUND, 40403),
        ("/subjects/nope/versions", StatusCode::NOT_FOUND, 40401),
        (
            "/subjects/nope/versions/latest",
            StatusCode::NOT_FOUND,
            40401,
        ),
        ("/subjects/s/versions/3", StatusCode::NOT_FOUND, 40402),
        (
            "/subjects/s/versions/zero",
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
        ),
        (
            "/subjects/s/versions/0",
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
        ),
    ] {
        let (got, body) = call(&app, "GET", uri, None).await;
        assert_eq!((got, error_code(&body)), (status, code), "{uri}: {body}");
    }
    let (_, body) = call(&app, "GET", "/subjects/nope/versions", None).await;
    assert_eq!(
        body,
        json!({"error_code": 40401, "message": "Subject 'nope' not found."})
    );
}

#[tokio::test]
async fn subject_with_slash_and_percent_encoding() {
    let (_, app) = app();
    assert_eq!(register(&app, "a%2Fb-value", V1).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, "GET", "/subjects", None).await.1,
        json!(["a/b-value"])
    );
    assert_eq!(
        call(&app, "GET", "/subjects/a%2Fb-value/versions/latest", None)
            .await
            .1["subject"],
        json!("a/b-value")
    );
}

#[tokio::test]
async fn lookup_under_subject() {
    let (_, app) = app();
    register(&app, "s", V1).await;
    register(&app, "s", V2).await;
    let (status, body) = call(
        &app,
        "POST",
        "/subjects/s?deleted=false",
        Some(json!({"schema": V1_SPACED})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["subject"].clone(),
            body["version"].clone(),
            body["id"].clone()
        ),
        (json!("s"), json!(1), json!(1))
    );
    let (status, body) = call(&app, "POST", "/subjects/s", Some(json!({"schema": OTHER}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40403));
    let (status, body) = call(&app, "POST", "/subjects/nope", Some(json!({"schema": V1}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40401));
}

#[tokio::test]
async fn backward_is_the_default_and_is_enforced() {
    let (_, app) = app();
    register(&app, "s", V1).await;
    let (status, body) = register(&app, "s", V_BAD).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, 409),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("incompatible"),
        "{body}"
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions", None).await.1,
        json!([1])
    );

    let (status, report) = call(
        &app,
        "POST",
        "/compatibility/subjects/s/versions/latest",
        Some(json!({"schema": V_BAD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["is_compatible"], json!(false));
    assert!(!report["messages"].as_array().unwrap().is_empty());
    let (_, report) = call(
        &app,
        "POST",
        "/compatibility/subjects/s/versions",
        Some(json!({"schema": V2})),
    )
    .await;
    assert_eq!(report, json!({"is_compatible": true, "messages": []}));
    let (_, report) = call(
        &app,
        "POST",
        "/compatibility/subjects/s/versions/1?verbose=true",
        Some(json!({"schema": V2})),
    )
    .await;
    assert_eq!(report["is_compatible"], json!(true));
    // No versions yet: anything goes. Unknown subject or version with an explicit version: 404.
    let (_, report) = call(
        &app,
        "POST",
        "/compatibility/subjects/new/versions",
        Some(json!({"schema": V_BAD})),
    )
    .await;
    assert_eq!(report["is_compatible"], json!(true));
    let (status, body) = call(
        &app,
        "POST",
        "/compatibility/subjects/new/versions/latest",
        Some(json!({"schema": V1})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40401));
    let (status, body) = call(
        &app,
        "POST",
        "/compatibility/subjects/s/versions/7",
        Some(json!({"schema": V1})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40402));

    // NONE on the subject lets it through.
    assert_eq!(
        call(
            &app,
            "PUT",
            "/config/s",
            Some(json!({"compatibility": "NONE"}))
        )
        .await,
        (StatusCode::OK, json!({"compatibility": "NONE"}))
    );
    assert_eq!(
        register(&app, "s", V_BAD).await,
        (StatusCode::OK, json!({"id": 2}))
    );
}

#[tokio::test]
async fn forward_full_and_transitive_levels() {
    let registry = SchemaRegistry::in_memory();
    // FORWARD: old readers must read new data. Removing a field without default breaks it.
    registry
        .set_subject_compatibility("f", CompatibilityLevel::Forward)
        .await
        .unwrap();
    registry.register("f", V2).await.unwrap();
    registry.register("f", V1).await.unwrap(); // removing optional b: V2 readers default it
    registry
        .set_subject_compatibility("g", CompatibilityLevel::Forward)
        .await
        .unwrap();
    registry.register("g", V_BAD).await.unwrap();
    let err = registry.register("g", V1).await.unwrap_err(); // V_BAD readers need c
    assert_eq!(err.error_code(), 409);

    // FULL: both ways.
    registry
        .set_subject_compatibility("full", CompatibilityLevel::Full)
        .await
        .unwrap();
    registry.register("full", V1).await.unwrap();
    registry.register("full", V2).await.unwrap();
    assert_eq!(
        registry
            .register("full", V_BAD)
            .await
            .unwrap_err()
            .error_code(),
        409
    );

    // Transitive levels check every version, not only the latest.
    let a_string = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let no_a = r#"{"type":"record","name":"R","fields":[]}"#;
    let a_int = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0}]}"#;
    for (subject, level, ok) in [
        ("b", CompatibilityLevel::Backward, true),
        ("bt", CompatibilityLevel::BackwardTransitive, false),
    ] {
        registry
            .set_subject_compatibility(subject, level)
            .await
            .unwrap();
        registry.register(subject, a_string).await.unwrap();
        registry.register(subject, no_a).await.unwrap();
        assert_eq!(
            registry.register(subject, a_int).await.is_ok(),
            ok,
            "{level}"
        );
    }
    let report = registry
        .check_compatibility("bt", None, a_int)
        .await
        .unwrap();
    assert!(!report.is_compatible);
    assert!(
        report.messages[0].contains("version 1"),
        "{:?}",
        report.messages
    );
    // Against one version explicitly (non-transitive), version 2 accepts it.
    assert!(
        registry
            .check_compatibility("bt", Some(VersionSpec::Number(2)), a_int)
            .await
            .unwrap()
            .is_compatible
    );
}

#[tokio::test]
async fn config_endpoints() {
    let (_, app) = app();
    assert_eq!(
        call(&app, "GET", "/config", None).await,
        (StatusCode::OK, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(
        call(
            &app,
            "PUT",
            "/config",
            Some(json!({"compatibility": "full_transitive"}))
        )
        .await,
        (StatusCode::OK, json!({"compatibility": "FULL_TRANSITIVE"}))
    );
    assert_eq!(
        call(&app, "GET", "/config", None).await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    let (status, body) = call(&app, "GET", "/config/s", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40408));
    assert_eq!(
        call(&app, "GET", "/config/s?defaultToGlobal=true", None)
            .await
            .1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    call(
        &app,
        "PUT",
        "/config/s",
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    assert_eq!(
        call(&app, "GET", "/config/s", None).await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        call(&app, "DELETE", "/config/s", None).await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        call(&app, "GET", "/config/s", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = call(
        &app,
        "PUT",
        "/config",
        Some(json!({"compatibility": "SOMETIMES"})),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, 42203)
    );
}

#[tokio::test]
async fn bad_requests() {
    let (_, app) = app();
    for (body, code) in [
        (
            json!({"schema": "{\"type\":\"record\",\"name\":\"X\"}"}),
            42201,
        ),
        (json!({"schema": "not json"}), 42201),
        (json!({"schema": ""}), 42201),
        (json!({}), 42201),
        (json!({"schema": V1, "schemaType": "PROTOBUF"}), 42201),
        (json!({"schema": V1, "schemaType": "JSON"}), 42201),
        (
            json!({"schema": V1, "references": [{"name": "x", "subject": "y", "version": 1}]}),
            42201,
        ),
    ] {
        let (status, got) = call(&app, "POST", "/subjects/s/versions", Some(body.clone())).await;
        assert_eq!(
            (status, error_code(&got)),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}"
        );
    }
    let request = Request::post("/subjects/s/versions")
        .body(Body::from("{nope"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Explicit AVRO and an empty reference list are fine; plain application/json is accepted.
    let body = json!({"schema": V1, "schemaType": "AVRO", "references": []});
    assert_eq!(
        call_with(
            &app,
            "POST",
            "/subjects/s/versions",
            Some(body),
            "application/json"
        )
        .await
        .0,
        StatusCode::OK
    );
    // Nothing was registered by the bad requests.
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions", None).await.1,
        json!([1])
    );
}

#[tokio::test]
async fn soft_and_permanent_delete() {
    let (registry, app) = app();
    register(&app, "s", V1).await;
    register(&app, "s", V2).await;
    let (status, body) = call(
        &app,
        "DELETE",
        "/subjects/s/versions/1?permanent=true",
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40407));
    assert_eq!(
        call(&app, "DELETE", "/subjects/s/versions/1", None).await,
        (StatusCode::OK, json!(1))
    );
    assert_eq!(
        call(&app, "DELETE", "/subjects/s/versions/1", None).await.1["error_code"],
        json!(40406)
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions", None).await.1,
        json!([2])
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions?deleted=true", None)
            .await
            .1,
        json!([1, 2])
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions/1", None).await.1["error_code"],
        json!(40402)
    );
    assert_eq!(
        call(&app, "GET", "/subjects/s/versions/1?deleted=true", None)
            .await
            .1["id"],
        json!(1)
    );
    // Ids stay resolvable: old records must stay readable.
    assert_eq!(
        call(&app, "GET", "/schemas/ids/1", None).await.0,
        StatusCode::OK
    );

    assert_eq!(
        call(&app, "DELETE", "/subjects/s", None).await.1,
        json!([2])
    );
    assert_eq!(call(&app, "GET", "/subjects", None).await.1, json!([]));
    assert_eq!(
        call(&app, "GET", "/subjects?deleted=true", None).await.1,
        json!(["s"])
    );
    assert_eq!(
        call(&app, "DELETE", "/subjects/s", None).await.1["error_code"],
        json!(40404)
    );
    assert_eq!(
        call(&app, "DELETE", "/subjects/s?permanent=true", None)
            .await
            .1,
        json!([1, 2])
    );
    assert_eq!(
        call(&app, "GET", "/subjects?deleted=true", None).await.1,
        json!([])
    );
    assert_eq!(
        call(&app, "GET", "/schemas/ids/2", None).await.0,
        StatusCode::OK
    );
    // Registering again starts at version 1 again, with the same id.
    assert_eq!(register(&app, "s", V2).await.1, json!({"id": 2}));
    assert_eq!(
        registry
            .version("s", VersionSpec::Latest, false)
            .await
            .unwrap()
            .version,
        1
    );
}

#[tokio::test]
async fn replay_rebuilds_the_same_state() {
    let log = Arc::new(MemoryLog::new());
    let first = SchemaRegistry::open(log.clone()).await.unwrap();
    first.register("s", V1).await.unwrap();
    first.register("s", V2).await.unwrap();
    first.register("o", OTHER).await.unwrap();
    first
        .set_global_compatibility(CompatibilityLevel::Full)
        .await
        .unwrap();
    first
        .set_subject_compatibility("o", CompatibilityLevel::None)
        .await
        .unwrap();
    first
        .delete_version("s", VersionSpec::Number(1), false)
        .await
        .unwrap();

    let second = SchemaRegistry::open(log.clone()).await.unwrap();
    assert_eq!(second.subjects(true).await.unwrap(), vec!["o", "s"]);
    assert_eq!(second.versions("s", false).await.unwrap(), vec![2]);
    assert_eq!(second.versions("s", true).await.unwrap(), vec![1, 2]);
    assert_eq!(
        second.schema_by_id(3).await.unwrap(),
        first.schema_by_id(3).await.unwrap()
    );
    assert_eq!(
        second.global_compatibility().await,
        CompatibilityLevel::Full
    );
    assert_eq!(
        second.subject_compatibility("o").await,
        Some(CompatibilityLevel::None)
    );

    // Each process sees what the other writes, on its next catch-up (or on a miss).
    let id = second.register("new", OTHER).await.unwrap().id;
    assert_eq!(id, 3);
    let id = second
        .register("new2", r#"{"type":"record","name":"N","fields":[]}"#)
        .await
        .unwrap()
        .id;
    assert_eq!(
        first.schema_by_id(id).await.unwrap(),
        second.schema_by_id(id).await.unwrap()
    );
    assert_eq!(first.register("x", V_BAD).await.unwrap().id, id + 1);
    assert_eq!(
        second
            .version("x", VersionSpec::Latest, false)
            .await
            .unwrap()
            .id,
        id + 1
    );
}

#[tokio::test]
async fn log_records_use_confluents_layout() {
    let log = Arc::new(MemoryLog::new());
    let registry = SchemaRegistry::open(log.clone()).await.unwrap();
    registry.register("things-value", V1).await.unwrap();
    registry
        .set_subject_compatibility("things-value", CompatibilityLevel::Full)
        .await
        .unwrap();
    let records = log.records();
    let key: Value = serde_json::from_slice(&records[0].key).unwrap();
    assert_eq!(
        key,
        json!({"keytype": "SCHEMA", "subject": "things-value", "version": 1, "magic": 1})
    );
    assert!(
        String::from_utf8_lossy(&records[0].key).starts_with(r#"{"keytype":"SCHEMA","subject""#)
    );
    let value: Value = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(value["subject"], json!("things-value"));
    assert_eq!(
        (
            value["version"].clone(),
            value["id"].clone(),
            value["deleted"].clone()
        ),
        (json!(1), json!(1), json!(false))
    );
    assert!(value["schema"].is_string());
    let key: Value = serde_json::from_slice(&records[1].key).unwrap();
    assert_eq!(
        key,
        json!({"keytype": "CONFIG", "subject": "things-value", "magic": 0})
    );
    let value: Value = serde_json::from_slice(records[1].value.as_ref().unwrap()).unwrap();
    assert_eq!(value, json!({"compatibilityLevel": "FULL"}));

    // Foreign and malformed records are skipped, not fatal; Confluent-written schemas (with
    // their own spelling) are understood.
    log.append(RawLogRecord {
        key: br#"{"keytype":"NOOP","magic":0}"#.to_vec(),
        value: None,
    })
    .await
    .unwrap();
    log.append(RawLogRecord {
        key: b"garbage".to_vec(),
        value: Some(b"garbage".to_vec()),
    })
    .await
    .unwrap();
    log.append(RawLogRecord {
        key: br#"{"subject":"c-value","version":1,"magic":1,"keytype":"SCHEMA"}"#.to_vec(),
        value: Some(
            json!({"subject": "c-value", "version": 1, "id": 7, "schema": OTHER})
                .to_string()
                .into_bytes(),
        ),
    })
    .await
    .unwrap();
    log.append(RawLogRecord {
        key: br#"{"keytype":"SCHEMA","subject":"p-value","version":1,"magic":1}"#.to_vec(),
        value: Some(json!({"subject": "p-value", "version": 1, "id": 8, "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}).to_string().into_bytes()),
    })
    .await
    .unwrap();
    let replayed = SchemaRegistry::open(log.clone()).await.unwrap();
    assert_eq!(
        replayed.subjects(false).await.unwrap(),
        vec!["c-value", "things-value"]
    );
    assert_eq!(replayed.register("d-value", OTHER).await.unwrap().id, 7);
    assert_eq!(replayed.register("e-value", V2).await.unwrap().id, 8);
}

/// A log that, on its first append, lets a "competing process" append first.
struct RacingLog {
    inner: MemoryLog,
    competitor: std::sync::Mutex<Option<LogRecord>>,
    raced: AtomicBool,
}

impl SchemaLog for RacingLog {
    fn append(&self, record: RawLogRecord) -> LogFuture<'_, i64> {
        Box::pin(async move {
            let competitor = self.competitor.lock().unwrap().take();
            if let Some(c) = competitor {
                self.raced.store(true, Ordering::SeqCst);
                self.inner.append(c.encode()).await?;
            }
            self.inner.append(record).await
        })
    }
    fn read_from(&self, position: i64) -> LogFuture<'_, LogBatch> {
        self.inner.read_from(position)
    }
    fn describe(&self) -> String {
        "racing".into()
    }
}

/// Keep only the last record of each key, in log order, like Kafka's log compaction.
fn compact(records: Vec<RawLogRecord>) -> Vec<RawLogRecord> {
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        last.insert(r.key.clone(), i);
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(i, r)| last[&r.key] == *i)
        .map(|(_, r)| r)
        .collect()
}

async fn race(competitor: LogRecord, subject: &str) -> (RegisteredSchema, Arc<RacingLog>) {
    let log = Arc::new(RacingLog {
        inner: MemoryLog::new(),
        competitor: std::sync::Mutex::new(None),
        raced: AtomicBool::new(false),
    });
    let registry = SchemaRegistry::open(log.clone()).await.unwrap();
    registry
        .set_global_compatibility(CompatibilityLevel::None)
        .await
        .unwrap();
    // The competitor appends between our catch-up and our append.
    *log.competitor.lock().unwrap() = Some(competitor);
    let ours = registry.register(subject, V1).await.unwrap();
    assert!(log.raced.load(Ordering::SeqCst));
    // The state every other process rebuilds agrees, before and after compaction.
    for records in [log.inner.records(), compact(log.inner.records())] {
        let replay = Arc::new(MemoryLog::new());
        for r in records {
            replay.append(r).await.unwrap();
        }
        let other = SchemaRegistry::open(replay).await.unwrap();
        assert_eq!(other.lookup(subject, V1, false).await.unwrap(), ours);
        assert_eq!(
            other.schema_by_id(1).await.unwrap(),
            normalize(OTHER).unwrap().text
        );
    }
    (ours, log)
}

#[tokio::test]
async fn losing_a_race_for_a_subject_version_retries_and_keeps_the_winner() {
    // Another process registered OTHER as s v1 with id 1 between our catch-up and our append.
    let competitor = LogRecord::Schema {
        subject: "s".into(),
        version: 1,
        id: 1,
        schema: OTHER.into(),
        schema_type: None,
        deleted: false,
    };
    let (ours, _) = race(competitor, "s").await;
    assert_eq!((ours.version, ours.id), (2, 2));
}

#[tokio::test]
async fn losing_a_race_for_an_id_retries_with_the_next_id() {
    let registry = SchemaRegistry::in_memory();
    registry.register("s", V1).await.unwrap();
    // Direct: a competitor's record claiming an id taken by another schema is ignored.
    let log = Arc::new(RacingLog {
        inner: MemoryLog::new(),
        competitor: std::sync::Mutex::new(None),
        raced: AtomicBool::new(false),
    });
    let r = SchemaRegistry::open(log.clone()).await.unwrap();
    r.register("a", OTHER).await.unwrap();
    *log.competitor.lock().unwrap() = Some(LogRecord::Schema {
        subject: "b".into(),
        version: 1,
        id: 2,
        schema: V2.into(),
        schema_type: None,
        deleted: false,
    });
    let ours = r.register("c", V1).await.unwrap();
    assert!(log.raced.load(Ordering::SeqCst));
    assert_eq!(ours.id, 3, "id 2 went to the competitor");
    assert_eq!(
        r.schema_by_id(2).await.unwrap(),
        normalize(V2).unwrap().text
    );
    assert_eq!(
        r.version("b", VersionSpec::Latest, false).await.unwrap().id,
        2
    );

    // And through `race`: the competitor takes id 1 under another subject.
    let competitor = LogRecord::Schema {
        subject: "t".into(),
        version: 1,
        id: 1,
        schema: OTHER.into(),
        schema_type: None,
        deleted: false,
    };
    let (ours, _) = race(competitor, "s").await;
    assert_eq!((ours.version, ours.id), (1, 2));
}

fn avro_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("avro")
}

#[tokio::test]
async fn every_hub_schema_registers_and_survives_normalization() {
    let registry = SchemaRegistry::in_memory();
    let mut count = 0;
    for entry in std::fs::read_dir(avro_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_str().unwrap();
        let subject = format!("hub.canonical.{name}-value");
        let registered = registry.register(&subject, &text).await.unwrap();
        assert_eq!(
            registry.register(&subject, &text).await.unwrap(),
            registered
        );
        // What clients fetch is the same schema: same fields, docs, pii tags and logical types.
        let original: Value = serde_json::from_str(&text).unwrap();
        let served: Value =
            serde_json::from_str(&registry.schema_by_id(registered.id).await.unwrap()).unwrap();
        assert_eq!(pii_paths(&original, ""), pii_paths(&served, ""), "{name}");
        assert_eq!(
            apache_avro::Schema::parse(&original)
                .unwrap()
                .canonical_form(),
            apache_avro::Schema::parse(&served)
                .unwrap()
                .canonical_form(),
            "{name}"
        );
        assert_eq!(
            original["fields"].as_array().map(Vec::len),
            served["fields"].as_array().map(Vec::len)
        );
        for (o, s) in original["fields"]
            .as_array()
            .unwrap()
            .iter()
            .zip(served["fields"].as_array().unwrap())
        {
            assert_eq!(o["doc"], s["doc"], "{name}.{}", o["name"]);
            assert_eq!(o.get("default"), s.get("default"), "{name}.{}", o["name"]);
        }
        count += 1;
    }
    assert_eq!(count, 10);
}

/// Every `path:pii` in a schema's JSON.
fn pii_paths(v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            let here = match m.get("name").and_then(Value::as_str) {
                Some(n) => format!("{at}/{n}"),
                None => at.to_owned(),
            };
            if let Some(p) = m.get("pii") {
                out.push(format!("{here}:{p}"));
            }
            for (k, child) in m {
                if k != "pii" {
                    out.extend(pii_paths(child, &here));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| out.extend(pii_paths(i, at))),
        _ => {}
    }
    out.sort();
    out
}

/// Serve the registry on 127.0.0.1:0; answers its base URL.
pub(crate) async fn serve(registry: Arc<SchemaRegistry>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(registry)).await.unwrap();
    });
    format!("http://{addr}")
}

mod client {
    //! The real client: `schema_registry_converter`'s async Avro encoder and decoder.

    use apache_avro::types::Value as Avro;
    use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
    use schema_registry_converter::async_impl::schema_registry::SrSettings;
    use schema_registry_converter::schema_registry_common::{
        SchemaType, SubjectNameStrategy, SuppliedSchema,
    };

    use super::*;

    pub(crate) fn customer_schema() -> String {
        std::fs::read_to_string(avro_dir().join("customer.avsc")).unwrap()
    }

    /// A customer as an Avro value, in the shapes the encoder needs: every field present, in
    /// schema order; nullable fields as `Union(branch, value)`; timestamps as `TimestampMillis`;
    /// dates as `Date`.
    pub(crate) fn customer(i: i64) -> Avro {
        let s = |v: &str| Avro::String(v.to_owned());
        let some = |v: Avro| Avro::Union(1, Box::new(v));
        let none = || Avro::Union(0, Box::new(Avro::Null));
        let address = Avro::Record(vec![
            ("line1".into(), some(s("1 Main St"))),
            ("line2".into(), none()),
            ("city".into(), some(s("Austin"))),
            ("state".into(), some(s("TX"))),
            ("postal_code".into(), some(s("78701"))),
            ("country".into(), some(s("US"))),
        ]);
        let mut fields = vec![
            ("tenant_id".to_owned(), s("dealer-1")),
            ("key".into(), s(&format!("cust-{i}"))),
            ("source_vendor".into(), s("salesforce")),
            ("source_connector".into(), s("sf-main")),
            ("source_entity".into(), s("Contact")),
            ("external_id".into(), some(s(&format!("003{i:015}")))),
            (
                "source_updated_at".into(),
                Avro::TimestampMillis(1_764_200_000_000 + i),
            ),
            (
                "received_at".into(),
                Avro::TimestampMillis(1_764_200_001_000 + i),
            ),
            ("ingest_id".into(), s(&format!("ing-{i}"))),
            ("deleted".into(), Avro::Boolean(false)),
            ("customer_key".into(), some(s(&format!("cust-{i}")))),
            ("first_name".into(), some(s("Ana"))),
            ("last_name".into(), some(s("García"))),
            ("email".into(), some(s("ana@example.com"))),
            ("phone".into(), some(s("+15125550100"))),
            ("address".into(), some(address)),
            ("date_of_birth".into(), some(Avro::Date(3653))),
            ("email_opt_in".into(), some(Avro::Boolean(true))),
            (
                "consent_updated_at".into(),
                some(Avro::TimestampMillis(1_764_000_000_000)),
            ),
        ];
        // Every other field: null, in schema order.
        let schema: Value = serde_json::from_str(&customer_schema()).unwrap();
        let mut ordered = Vec::new();
        for f in schema["fields"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            match fields.iter().position(|(n, _)| n == name) {
                Some(p) => ordered.push(fields.remove(p)),
                None => ordered.push((name.to_owned(), none())),
            }
        }
        assert!(fields.is_empty());
        Avro::Record(ordered)
    }

    pub(crate) fn strategy(topic: &str) -> SubjectNameStrategy {
        SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_owned(),
            false,
            SuppliedSchema::new(
                Some("com.automatrix.hub.canonical.Customer".into()),
                SchemaType::Avro,
                customer_schema(),
            ),
        )
    }

    #[tokio::test]
    async fn converter_encodes_and_decodes_through_the_hub_registry() {
        let registry = Arc::new(SchemaRegistry::in_memory());
        let url = serve(registry.clone()).await;
        let encoder = AvroEncoder::new(SrSettings::new(url.clone()));
        let strategy = strategy("hub.canonical.customer");
        let value = customer(1);
        let bytes = encoder
            .encode_value(value.clone(), &strategy)
            .await
            .unwrap();
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), 1);
        let registered = registry
            .version("hub.canonical.customer-value", VersionSpec::Latest, false)
            .await
            .unwrap();
        assert_eq!((registered.version, registered.id), (1, 1));

        // A fresh decoder (fetches the schema by id from the server).
        let decoder = AvroDecoder::new(SrSettings::new(url.clone()));
        let decoded = decoder.decode(Some(&bytes)).await.unwrap();
        assert_eq!(decoded.value, value);
        assert_eq!(
            decoded.name.map(|n| n.fullname(None)),
            Some("com.automatrix.hub.canonical.Customer".to_owned())
        );

        // A second encoder registering the same schema gets the same id.
        let again = AvroEncoder::new(SrSettings::new(url.clone()))
            .encode_value(customer(2), &strategy)
            .await
            .unwrap();
        assert_eq!(again[1..5], bytes[1..5]);

        // The plain TopicNameStrategy (no schema supplied) uses the latest version.
        let plain = SubjectNameStrategy::TopicNameStrategy("hub.canonical.customer".into(), false);
        let third = AvroEncoder::new(SrSettings::new(url))
            .encode_value(customer(3), &plain)
            .await
            .unwrap();
        assert_eq!(
            decoder.decode(Some(&third)).await.unwrap().value,
            customer(3)
        );
    }
}

mod kafka {
    //! Against a real broker; runs only when `HUB_KAFKA_BOOTSTRAP` is set.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    use super::*;

    pub(crate) fn bootstrap() -> Option<String> {
        match std::env::var("HUB_KAFKA_BOOTSTRAP") {
            Ok(b) if !b.trim().is_empty() => Some(b),
            _ => {
                eprintln!("HUB_KAFKA_BOOTSTRAP is not set: skipping the Kafka schema-log test");
                None
            }
        }
    }

    fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap()
    }

    /// Remove the test's topics from the shared broker (best effort).
    async fn delete_topics(bootstrap: &str, topics: &[&str]) {
        if let Err(e) = admin(bootstrap)
            .delete_topics(topics, &AdminOptions::new())
            .await
        {
            eprintln!("could not delete test topics {topics:?}: {e}");
        }
    }

    pub(crate) fn unique(prefix: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{prefix}-{}-{nanos}", std::process::id())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_log_survives_restart_and_two_processes_agree() {
        let Some(bootstrap) = bootstrap() else { return };
        let topic = unique("_schemas_test");
        let config = KafkaLogConfig::new(&bootstrap)
            .topic(&topic)
            .timeout(Duration::from_secs(20));

        let first = Arc::new(
            SchemaRegistry::open_kafka_with(config.clone())
                .await
                .unwrap(),
        );
        assert_eq!(first.register("s", V1).await.unwrap().id, 1);
        assert_eq!(first.register("s", V2).await.unwrap().id, 2);
        first
            .set_subject_compatibility("s", CompatibilityLevel::Full)
            .await
            .unwrap();
        assert_eq!(
            first.register("s", V_BAD).await.unwrap_err().error_code(),
            409
        );

        // The topic was created compacted.
        let described = admin(&bootstrap)
            .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
            .await
            .unwrap();
        let resource = described.into_iter().next().unwrap().unwrap();
        assert_eq!(
            resource
                .get("cleanup.policy")
                .and_then(|e| e.value.clone())
                .as_deref(),
            Some("compact")
        );

        // A second process on the same topic rebuilds the same state.
        let second = Arc::new(
            SchemaRegistry::open_kafka_with(config.clone())
                .await
                .unwrap(),
        );
        assert_eq!(second.versions("s", false).await.unwrap(), vec![1, 2]);
        assert_eq!(
            second.subject_compatibility("s").await,
            Some(CompatibilityLevel::Full)
        );
        assert_eq!(
            second.schema_by_id(2).await.unwrap(),
            first.schema_by_id(2).await.unwrap()
        );

        // Both register different schemas at the same time: every id and version is agreed on.
        let mut tasks = Vec::new();
        for i in 0..6 {
            let registry = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tasks.push(tokio::spawn(async move {
                // Same record, each with its own optional field: all mutually compatible.
                let schema = format!(
                    r#"{{"type":"record","name":"R","fields":[{{"name":"f","type":"long"}},{{"name":"x{i}","type":["null","string"],"default":null}}]}}"#
                );
                let subject = format!("race-{}", i / 2);
                (subject.clone(), schema.clone(), registry.register(&subject, &schema).await.unwrap())
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let mut ids: Vec<u32> = results.iter().map(|(_, _, r)| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6, "every schema got its own id: {results:?}");
        let third = SchemaRegistry::open_kafka_with(config).await.unwrap();
        for (subject, schema, registered) in &results {
            for r in [&*first, &*second, &third] {
                assert_eq!(&r.lookup(subject, schema, false).await.unwrap(), registered);
                assert_eq!(
                    r.schema_by_id(registered.id).await.unwrap(),
                    registered.schema
                );
            }
        }
        delete_topics(&bootstrap, &[&topic]).await;
    }

    /// The data teams' contract: a stock Python client (`confluent-kafka`'s `AvroDeserializer`
    /// and `SchemaRegistryClient`) reads what the hub's encoder wrote, through the hub's registry.
    /// Runs when `HUB_KAFKA_BOOTSTRAP` and `HUB_CONTRACT_PYTHON` (a Python with
    /// `schemas/contract/requirements.txt` installed) are set.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn python_confluent_client_reads_what_the_hub_wrote() {
        use rdkafka::producer::{FutureProducer, FutureRecord};

        let Some(bootstrap) = bootstrap() else { return };
        let Ok(python) = std::env::var("HUB_CONTRACT_PYTHON") else {
            eprintln!("HUB_CONTRACT_PYTHON is not set: skipping the Python contract test");
            return;
        };
        let schemas_topic = unique("_schemas_contract");
        let registry = Arc::new(
            SchemaRegistry::open_kafka_with(KafkaLogConfig::new(&bootstrap).topic(&schemas_topic))
                .await
                .unwrap(),
        );
        let url = serve(registry).await;
        let topic = unique("hub.contract.customer");
        let new_topic =
            rdkafka::admin::NewTopic::new(&topic, 3, rdkafka::admin::TopicReplication::Fixed(1));
        for result in admin(&bootstrap)
            .create_topics([&new_topic], &AdminOptions::new())
            .await
            .unwrap()
        {
            result.unwrap();
        }
        let encoder = schema_registry_converter::async_impl::avro::AvroEncoder::new(
            schema_registry_converter::async_impl::schema_registry::SrSettings::new(url.clone()),
        );
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .create()
            .unwrap();
        let strategy = super::client::strategy(&topic);
        for i in 0..5 {
            let bytes = encoder
                .encode_value(super::client::customer(i), &strategy)
                .await
                .unwrap();
            let key = format!("dealer-1/cust-{i}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&bytes),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contract/read_canonical.py");
        let output = tokio::process::Command::new(python)
            .arg(script)
            .args([
                "--bootstrap",
                &bootstrap,
                "--registry",
                &url,
                "--topics",
                &topic,
                "--expect",
                "5",
                "--timeout-s",
                "60",
            ])
            .output()
            .await
            .unwrap();
        delete_topics(&bootstrap, &[&topic, &schemas_topic]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(report["read"], json!(5));
        assert_eq!(report["by_topic"][&topic], json!(5));
        assert_eq!(report["errors"], json!([]));
    }

    /// Every canonical entity, not just one: a record of each of the eight, written by the
    /// hub's own codec (`Codec::encode_canonical` path), read back by the stock Python client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn python_confluent_client_reads_every_canonical_entity() {
        use rdkafka::producer::{FutureProducer, FutureRecord};

        let Some(bootstrap) = bootstrap() else { return };
        let Ok(python) = std::env::var("HUB_CONTRACT_PYTHON") else {
            eprintln!("HUB_CONTRACT_PYTHON is not set: skipping the Python contract test");
            return;
        };
        let schemas_topic = unique("_schemas_entities");
        let registry = Arc::new(
            SchemaRegistry::open_kafka_with(KafkaLogConfig::new(&bootstrap).topic(&schemas_topic))
                .await
                .unwrap(),
        );
        let url = serve(registry).await;
        let names = crate::Topics::new(&unique("contract"));
        let topics: Vec<String> = crate::Entity::ALL
            .iter()
            .map(|e| names.canonical(*e))
            .collect();
        let new_topics: Vec<_> = topics
            .iter()
            .map(|t| {
                rdkafka::admin::NewTopic::new(t, 1, rdkafka::admin::TopicReplication::Fixed(1))
            })
            .collect();
        for result in admin(&bootstrap)
            .create_topics(new_topics.iter(), &AdminOptions::new())
            .await
            .unwrap()
        {
            result.unwrap();
        }
        let codec = crate::Codec::new(&url);
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .create()
            .unwrap();
        for (entity, topic) in crate::Entity::ALL.iter().zip(&topics) {
            // The envelope alone: every entity field is nullable and takes its default.
            let doc = json!({
                "tenant_id": "dealer-1", "key": format!("{entity}-1"), "source_vendor": "salesforce",
                "source_connector": "sf-main", "source_entity": "X", "external_id": "1",
                "source_updated_at": 1_714_564_800_000i64, "received_at": 1_714_564_801_000i64,
                "ingest_id": format!("i-{entity}"), "deleted": false,
            });
            let bytes = codec
                .encode_json(topic, entity.schema(), entity.schema_text(), &doc)
                .await
                .unwrap();
            producer
                .send(
                    FutureRecord::to(topic).key("dealer-1/k").payload(&bytes),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contract/read_canonical.py");
        let output = tokio::process::Command::new(python)
            .arg(script)
            .args([
                "--bootstrap",
                &bootstrap,
                "--registry",
                &url,
                "--topics",
                &topics.join(","),
                "--expect",
                "8",
                "--timeout-s",
                "60",
            ])
            .output()
            .await
            .unwrap();
        let mut cleanup: Vec<&str> = topics.iter().map(String::as_str).collect();
        cleanup.push(&schemas_topic);
        delete_topics(&bootstrap, &cleanup).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(report["read"], json!(8));
        for t in &topics {
            assert_eq!(report["by_topic"][t], json!(1), "{t}");
        }
    }
}
