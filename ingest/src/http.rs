//! `POST /ingest/v1/{tenant}/{connector}/{entity}`.
//!
//! Checks run cheapest-and-least-revealing first: body size; tenant and connector (one answer
//! for both, so tenants cannot be probed); the signature; only then anything an authenticated
//! sender may learn (entity, media type, idempotency, the body's shape). Every record is then
//! wrapped, encoded and published, and the answer is `202` only once the broker acknowledged
//! all of them.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hub_connectors::generic::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use hub_schemas::records::{now_ms, record_key};
use hub_schemas::{CodecError, headers as kafka_headers};
use hub_topology::metrics::{
    BROKER_ERRORS_TOTAL, INGEST_RECORDS_TOTAL, INGEST_REQUEST_SECONDS, INGEST_REQUESTS_TOTAL,
};

use crate::body::{self, IncomingRecord, MediaType, Origin};
use crate::error::IngestError;
use crate::idempotency::{IdempotencyCache, Lookup};
use crate::publisher::OutboundRecord;
use crate::state::IngestState;
use hub_topology::{Connector, EntityMapping, Tenant};

/// Request header naming a retry-safe request.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Response header marking an answer replayed from the idempotency cache.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// The ingest routes. Everything under `/ingest/v1/` answers in the ingest error shape; the
/// router sets no fallback of its own, so it can be merged with others.
pub fn router(state: Arc<IngestState>) -> Router {
    let v1 = Router::new()
        .route(
            "/{tenant}/{connector}/{entity}",
            post(ingest)
                .fallback(|| async { finish_without_records(IngestError::MethodNotAllowed) }),
        )
        .fallback(|| async { finish_without_records(IngestError::NotFound) })
        .with_state(state.clone());
    let hubspot = Router::new()
        .route(
            "/{tenant}/{connector}",
            post(crate::hubspot::delivery)
                .fallback(|| async { finish_without_records(IngestError::MethodNotAllowed) }),
        )
        .with_state(state);
    Router::new()
        .nest("/ingest/v1", v1)
        .nest("/ingest/hubspot/v3", hubspot)
}

/// Metric labels, only ever from the topology: a URL can never mint a new time series.
struct Labels {
    tenant: String,
    connector: String,
    entity: String,
}

const UNKNOWN: &str = "unknown";

impl Labels {
    fn unknown() -> Self {
        Labels {
            tenant: UNKNOWN.into(),
            connector: UNKNOWN.into(),
            entity: UNKNOWN.into(),
        }
    }
}

/// What the request turned out to be, for metrics and logs.
struct Observed {
    labels: Labels,
    /// Records in the body once it was parsed.
    records: Option<usize>,
}

struct Accepted {
    ingest_ids: Vec<String>,
    replayed: bool,
}

async fn ingest(
    State(state): State<Arc<IngestState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut seen = Observed {
        labels: Labels::unknown(),
        records: None,
    };
    let result = handle(&state, path, &headers, body, &mut seen).await;
    let Labels {
        tenant,
        connector,
        entity,
    } = &seen.labels;
    let response = match result {
        Ok(accepted) => {
            let n = accepted.ingest_ids.len();
            tracing::info!(
                %tenant, %connector, %entity,
                accepted = n,
                replayed = accepted.replayed,
                first_ingest_id = accepted.ingest_ids.first().map(String::as_str).unwrap_or(""),
                "webhook accepted"
            );
            tracing::debug!(%tenant, %connector, %entity, ingest_ids = ?accepted.ingest_ids, "ingest ids");
            // A replay stored nothing new, so it is not counted as accepted again.
            if !accepted.replayed {
                record_outcome(&seen.labels, "accepted", n);
            }
            let mut response = (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "accepted": n, "ingest_ids": accepted.ingest_ids })),
            )
                .into_response();
            if accepted.replayed {
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => {
            // Before the body is parsed, the request counts as one record.
            let n = seen.records.unwrap_or(1);
            if e.status().is_server_error() {
                tracing::error!(%tenant, %connector, %entity, records = n, code = e.code(), reason = %server_reason(&e), "webhook not stored");
                record_outcome(&seen.labels, "failed", n);
            } else {
                tracing::warn!(%tenant, %connector, %entity, records = n, code = e.code(), "webhook rejected");
                record_outcome(&seen.labels, "rejected", n);
            }
            e.into_response()
        }
    };
    record_request(response.status(), started);
    response
}

/// The steps of one request, in order. Fills `seen` as it learns who is calling.
async fn handle(
    state: &IngestState,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: &HeaderMap,
    body: Body,
    seen: &mut Observed,
) -> Result<Accepted, IngestError> {
    let Ok(Path((tenant_id, connector_id, entity))) = path else {
        return Err(IngestError::InvalidPath);
    };
    let tenant = state.topology.tenant(&tenant_id);
    let connector = tenant.and_then(|t| t.connector(&connector_id));
    let mapping = connector.and_then(|c| c.mapping(&entity));
    if let Some(t) = tenant {
        seen.labels.tenant = t.id.clone();
    }
    if let Some(c) = connector {
        seen.labels.connector = c.id.clone();
    }
    if let Some(m) = mapping {
        seen.labels.entity = m.vendor_entity.clone();
    }

    let body = read_body(headers, body, state.limits.max_body_bytes).await?;

    let (Some(tenant), Some(connector)) = (tenant, connector) else {
        return Err(IngestError::UnknownConnector);
    };

    let header_text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    refuse_unreasonable_timestamp(
        header_text(TIMESTAMP_HEADER),
        state.limits.signature_tolerance_secs,
    )?;
    signature::verify(
        connector.webhook_secret.as_bytes(),
        header_text(TIMESTAMP_HEADER),
        header_text(SIGNATURE_HEADER),
        &body,
        now_ms() / 1000,
        state.limits.signature_tolerance_secs,
    )
    .map_err(IngestError::Signature)?;

    // After the signature (so unsigned traffic cannot spend a tenant's budget) and before
    // any parsing or publishing.
    state
        .throttle
        .admit(&tenant.id)
        .map_err(|retry_after_secs| IngestError::Throttled { retry_after_secs })?;

    let mapping = mapping.ok_or(IngestError::UnknownEntity)?;
    let media = MediaType::from_header(headers.get(header::CONTENT_TYPE))?;
    let idempotency_key = idempotency_key(headers, state.limits.max_idempotency_key_chars)?;

    let replay_slot = idempotency_key.map(|key| {
        (
            key,
            IdempotencyCache::scope_digest(&tenant.id, &connector.id, key),
            IdempotencyCache::request_digest(&mapping.vendor_entity, media.as_str(), &body),
        )
    });
    if let Some((key, scope, request)) = &replay_slot {
        match state.idempotency.lookup(scope, request, Instant::now()) {
            Lookup::Miss => {}
            Lookup::Conflict => return Err(IngestError::IdempotencyKeyReused),
            Lookup::Replay { accepted } => {
                seen.records = Some(accepted);
                return Ok(Accepted {
                    ingest_ids: body::ingest_ids(&tenant.id, &connector.id, Some(key), accepted),
                    replayed: true,
                });
            }
        }
    }

    let records = body::parse_body(media, &body, state.limits.max_batch_records)?;
    seen.records = Some(records.len());

    let ingest_ids = body::ingest_ids(&tenant.id, &connector.id, idempotency_key, records.len());
    publish_records(
        state,
        tenant,
        connector,
        mapping,
        media,
        &records,
        &ingest_ids,
    )
    .await?;

    if let Some((_, scope, request)) = replay_slot {
        state
            .idempotency
            .insert(scope, request, ingest_ids.len(), Instant::now());
    }
    Ok(Accepted {
        ingest_ids,
        replayed: false,
    })
}

/// Reads the body, refusing it as soon as it passes `limit` bytes (an honest `Content-Length`
/// is refused before a byte is read).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let too_large = IngestError::BodyTooLarge { limit_bytes: limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| IngestError::BodyUnreadable)?;
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(too_large);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `signature::verify` subtracts the timestamp from now unchecked; an extreme value (e.g.
/// `i64::MIN`) would overflow there. Anything that far from now is stale anyway.
fn refuse_unreasonable_timestamp(
    header: Option<&str>,
    tolerance_secs: i64,
) -> Result<(), IngestError> {
    let Some(ts) = header.and_then(|h| h.trim().parse::<i64>().ok()) else {
        // Missing or not a number: `verify` gives the precise answer.
        return Ok(());
    };
    match (now_ms() / 1000).checked_sub(ts).and_then(i64::checked_abs) {
        Some(_) => Ok(()),
        None => Err(IngestError::Signature(signature::SignatureError::Stale(
            tolerance_secs,
        ))),
    }
}

fn idempotency_key(headers: &HeaderMap, max_chars: usize) -> Result<Option<&str>, IngestError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| IngestError::InvalidIdempotencyKey("must be printable ASCII".into()))?
        .trim();
    if key.is_empty() {
        return Err(IngestError::InvalidIdempotencyKey(
            "must not be empty".into(),
        ));
    }
    if key.len() > max_chars {
        return Err(IngestError::InvalidIdempotencyKey(format!(
            "must be at most {max_chars} characters"
        )));
    }
    Ok(Some(key))
}

fn codec_error(e: CodecError) -> IngestError {
    match e {
        CodecError::Registry {
            message,
            retriable: true,
        } => IngestError::RegistryUnavailable(message),
        CodecError::Registry { message, .. } => IngestError::SchemaRegistry(message),
        other => IngestError::Encoding(other.to_string()),
    }
}

/// The operator-facing cause of a 5xx, for the log. Never record content: an encoding error may
/// quote a value, so only its code is logged.
fn server_reason(e: &IngestError) -> String {
    match e {
        IngestError::RegistryUnavailable(m) | IngestError::SchemaRegistry(m) => m.clone(),
        IngestError::BrokerUnavailable(p) => p.to_string(),
        other => other.code().to_string(),
    }
}

fn finish_without_records(e: IngestError) -> Response {
    let response = e.into_response();
    record_request(response.status(), Instant::now());
    response
}

fn record_outcome(labels: &Labels, outcome: &'static str, n: usize) {
    metrics::counter!(
        INGEST_RECORDS_TOTAL,
        "tenant" => labels.tenant.clone(),
        "connector" => labels.connector.clone(),
        "entity" => labels.entity.clone(),
        "outcome" => outcome,
    )
    .increment(n as u64);
}

fn record_request(status: StatusCode, started: Instant) {
    let status = status.as_str().to_string();
    metrics::counter!(INGEST_REQUESTS_TOTAL, "status" => status.clone()).increment(1);
    metrics::histogram!(INGEST_REQUEST_SECONDS, "status" => status)
        .record(started.elapsed().as_secs_f64());
}

/// Wraps each record in its `RawChange` envelope, encodes it and publishes the lot to
/// `<ns>.raw.<vendor>`; `Ok` once the broker acknowledged every one. The webhook edge and the
/// pollers share it, so a record reads the same whichever way it came.
pub(crate) async fn publish_records(
    state: &IngestState,
    tenant: &Tenant,
    connector: &Connector,
    mapping: &EntityMapping,
    media: MediaType,
    records: &[IncomingRecord<'_>],
    ingest_ids: &[String],
) -> Result<(), IngestError> {
    let origin = Origin {
        tenant: &tenant.id,
        connector: &connector.id,
        vendor: connector.vendor.name(),
        vendor_entity: &mapping.vendor_entity,
        mapping,
        media,
        received_at: now_ms(),
    };
    // `<namespace>.raw.<vendor>`: the namespace lets several hubs share one cluster.
    let topic = state.topology.topic_names().raw(origin.vendor);
    let mut outbound = Vec::with_capacity(records.len());
    for (record, ingest_id) in records.iter().zip(ingest_ids) {
        let raw = body::raw_change(&origin, record, ingest_id.clone());
        // One vendor record's changes share a key, so they stay in order on one partition.
        let partition_key = raw.external_id.as_deref().unwrap_or(&raw.ingest_id);
        let key = record_key(&tenant.id, &format!("{}/{partition_key}", connector.id));
        let payload = state
            .codec
            .encode_raw(&topic, &raw)
            .await
            .map_err(codec_error)?;
        outbound.push(OutboundRecord {
            topic: topic.clone(),
            key,
            payload,
            headers: vec![
                (kafka_headers::TENANT, tenant.id.clone()),
                (kafka_headers::CONNECTOR, connector.id.clone()),
                (kafka_headers::INGEST_ID, raw.ingest_id),
                (
                    kafka_headers::RECEIVED_AT_MS,
                    origin.received_at.to_string(),
                ),
            ],
        });
    }

    if let Err(e) = state.publisher.publish_batch(outbound).await {
        metrics::counter!(BROKER_ERRORS_TOTAL, "stage" => "ingest").increment(e.failed as u64);
        return Err(IngestError::BrokerUnavailable(e));
    }
    Ok(())
}
