//! The Confluent Schema Registry REST API over a [`SchemaRegistry`].
//!
//! Requests may be `application/vnd.schemaregistry.v1+json`, `application/vnd.schemaregistry+json`
//! or `application/json` (the content type is not checked; bodies must be JSON). Answers are
//! `application/vnd.schemaregistry.v1+json`; errors are `{"error_code": .., "message": ..}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CompatibilityLevel, RegistryError, SchemaRegistry, VersionSpec};

/// The media type of Confluent Schema Registry API answers.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

type Shared = State<Arc<SchemaRegistry>>;
type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

/// The registry's HTTP API, standalone: every route of [`routes`], plus `GET /` (answers `{}`)
/// and a Confluent-shaped JSON 404 for unknown paths. Serve it at the root of a listener
/// (clients expect `/subjects`, `/schemas/ids/{id}`, ... at the base URL they are given).
pub fn router(registry: Arc<SchemaRegistry>) -> Router {
    routes(registry).route("/", get(root)).fallback(not_found)
}

/// The registry's routes without `GET /` and without a fallback, for merging into a larger
/// router (axum panics when two merged routers both have a fallback or both route `GET /`).
pub fn routes(registry: Arc<SchemaRegistry>) -> Router {
    Router::new()
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(list_subjects))
        .route(
            "/subjects/{subject}",
            axum::routing::post(lookup).delete(delete_subject),
        )
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_raw_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            axum::routing::post(compat_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            axum::routing::post(compat_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(mode))
        .route("/mode/{subject}", get(mode))
        .with_state(registry)
}

/// A [`RegistryError`] answered in Confluent's shape.
struct ApiError(RegistryError);

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "schema registry request failed");
        }
        sr_json(
            status,
            &json!({ "error_code": self.0.error_code(), "message": self.0.to_string() }),
        )
    }
}

fn sr_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE_V1)], body).into_response()
}

fn ok(body: &impl serde::Serialize) -> ApiResult {
    Ok(sr_json(StatusCode::OK, body))
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The body of register, lookup and compatibility requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

impl SchemaRequest {
    fn parse(body: &[u8]) -> Result<String, RegistryError> {
        let req: SchemaRequest =
            serde_json::from_slice(body).map_err(|e| RegistryError::BadRequest(e.to_string()))?;
        if let Some(t) = &req.schema_type
            && !t.eq_ignore_ascii_case("AVRO")
        {
            return Err(RegistryError::InvalidSchema(format!(
                "schema type {t} is not supported; this registry serves AVRO only"
            )));
        }
        if req.references.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported".to_owned(),
            ));
        }
        match req.schema {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(RegistryError::InvalidSchema("Empty schema".to_owned())),
        }
    }
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse().map_err(|_| RegistryError::SchemaNotFound)
}

async fn root() -> ApiResult {
    ok(&json!({}))
}

async fn schema_types() -> ApiResult {
    ok(&["AVRO"])
}

async fn not_found() -> Response {
    sr_json(
        StatusCode::NOT_FOUND,
        &json!({ "error_code": 404, "message": "HTTP 404 Not Found" }),
    )
}

async fn mode() -> ApiResult {
    ok(&json!({ "mode": "READWRITE" }))
}

async fn schema_by_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    let schema = r.schema_by_id(parse_id(&id)?).await?;
    ok(&json!({ "schema": schema }))
}

async fn raw_schema_by_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    let schema = r.schema_by_id(parse_id(&id)?).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE_V1)],
        schema,
    )
        .into_response())
}

async fn versions_of_id(State(r): Shared, Path(id): Path<String>) -> ApiResult {
    let found = r.subject_versions_of_id(parse_id(&id)?).await?;
    let body: Vec<Value> = found
        .into_iter()
        .map(|(s, v)| json!({ "subject": s, "version": v }))
        .collect();
    ok(&body)
}

async fn list_subjects(State(r): Shared, Query(q): Params) -> ApiResult {
    let mut subjects = r.subjects(flag(&q, "deleted")).await?;
    if let Some(prefix) = q.get("subjectPrefix") {
        subjects.retain(|s| s.starts_with(prefix.as_str()));
    }
    ok(&subjects)
}

async fn list_versions(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    ok(&r.versions(&subject, flag(&q, "deleted")).await?)
}

async fn register(State(r): Shared, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let schema = SchemaRequest::parse(&body)?;
    let registered = r.register(&subject, &schema).await?;
    ok(&json!({ "id": registered.id }))
}

async fn lookup(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let schema = SchemaRequest::parse(&body)?;
    ok(&r.lookup(&subject, &schema, flag(&q, "deleted")).await?)
}

async fn get_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let version: VersionSpec = version.parse()?;
    ok(&r.version(&subject, version, flag(&q, "deleted")).await?)
}

async fn get_raw_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let version: VersionSpec = version.parse()?;
    let found = r.version(&subject, version, flag(&q, "deleted")).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE_V1)],
        found.schema,
    )
        .into_response())
}

async fn referenced_by(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    // References are not supported, so nothing refers to anything; still 404 for unknown versions.
    let version: VersionSpec = version.parse()?;
    r.version(&subject, version, false).await?;
    ok(&Vec::<u32>::new())
}

async fn delete_subject(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    ok(&r.delete_subject(&subject, flag(&q, "permanent")).await?)
}

async fn delete_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let version: VersionSpec = version.parse()?;
    ok(&r
        .delete_version(&subject, version, flag(&q, "permanent"))
        .await?)
}

async fn compat_all(State(r): Shared, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let schema = SchemaRequest::parse(&body)?;
    ok(&r.check_compatibility(&subject, None, &schema).await?)
}

async fn compat_version(
    State(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let version: VersionSpec = version.parse()?;
    let schema = SchemaRequest::parse(&body)?;
    ok(&r
        .check_compatibility(&subject, Some(version), &schema)
        .await?)
}

/// `PUT /config` bodies: `{"compatibility": "FULL"}` (`compatibilityLevel` accepted too).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigRequest {
    #[serde(default)]
    compatibility: Option<String>,
    #[serde(default)]
    compatibility_level: Option<String>,
}

impl ConfigRequest {
    fn parse(body: &[u8]) -> Result<CompatibilityLevel, RegistryError> {
        let req: ConfigRequest =
            serde_json::from_slice(body).map_err(|e| RegistryError::BadRequest(e.to_string()))?;
        match req.compatibility.or(req.compatibility_level) {
            Some(level) => level.parse(),
            None => Err(RegistryError::InvalidCompatibilityLevel(String::new())),
        }
    }
}

async fn get_global_config(State(r): Shared) -> ApiResult {
    ok(&json!({ "compatibilityLevel": r.global_compatibility().await }))
}

async fn put_global_config(State(r): Shared, body: Bytes) -> ApiResult {
    let level = ConfigRequest::parse(&body)?;
    r.set_global_compatibility(level).await?;
    ok(&json!({ "compatibility": level }))
}

async fn get_subject_config(
    State(r): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    match r.subject_compatibility(&subject).await {
        Some(level) => ok(&json!({ "compatibilityLevel": level })),
        None if flag(&q, "defaultToGlobal") => {
            ok(&json!({ "compatibilityLevel": r.global_compatibility().await }))
        }
        None => Err(RegistryError::SubjectLevelNotConfigured(subject).into()),
    }
}

async fn put_subject_config(
    State(r): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = ConfigRequest::parse(&body)?;
    r.set_subject_compatibility(&subject, level).await?;
    ok(&json!({ "compatibility": level }))
}

async fn delete_subject_config(State(r): Shared, Path(subject): Path<String>) -> ApiResult {
    let level = r.delete_subject_compatibility(&subject).await?;
    ok(&json!({ "compatibilityLevel": level }))
}
