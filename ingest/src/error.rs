//! Every answer ingest refuses with, in one JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}` (`field` only when one is
//! concerned). Codes are stable; messages are sentences a dealership's integration admin can
//! act on. `5xx` answers mean "nothing was lost on your side, send it again"; a `4xx` means
//! "this request will never be accepted as it is" — except `429 rate_limited`, which means
//! "send it again after `Retry-After` seconds".

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_connectors::generic::signature::{SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER};
use serde::Serialize;

use crate::publisher::PublishError;

/// Seconds a sender should wait before retrying after a `503`.
pub(crate) const RETRY_AFTER_SECS: u32 = 5;

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the URL must be /ingest/v1/{{tenant}}/{{connector}}/{{entity}} with UTF-8 segments")]
    InvalidPath,
    #[error(
        "there is no ingest endpoint at this URL; post to /ingest/v1/{{tenant}}/{{connector}}/{{entity}}"
    )]
    NotFound,
    #[error("this endpoint only accepts POST")]
    MethodNotAllowed,
    #[error(
        "the body is larger than the {limit_bytes} bytes this hub accepts; send fewer records per request"
    )]
    BodyTooLarge { limit_bytes: usize },
    #[error("the request body could not be read completely")]
    BodyUnreadable,
    /// Identical for an unknown tenant and an unknown connector, so tenants cannot be probed.
    #[error("there is no such connector; check the tenant and connector in the URL")]
    UnknownConnector,
    #[error("{0}")]
    Signature(SignatureError),
    #[error(
        "this connector does not sync the entity named in the URL; add it to the connector's entities in the topology"
    )]
    UnknownEntity,
    #[error(
        "send records as application/json (an object or an array of objects) or as application/xml"
    )]
    UnsupportedMediaType,
    #[error("the Idempotency-Key header {0}")]
    InvalidIdempotencyKey(String),
    #[error(
        "this Idempotency-Key was already used for a different request; use a new key for new content"
    )]
    IdempotencyKeyReused,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidRecord {
        /// Position in a batch, `None` for a single-record body.
        index: Option<usize>,
        message: &'static str,
    },
    #[error("the batch is empty; send at least one record")]
    EmptyBatch,
    #[error("the batch has {count} records; send at most {limit} per request")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("the body is empty; send one record")]
    EmptyBody,
    #[error("the body is not XML (it must start with '<'); check the Content-Type header")]
    MalformedXml,
    #[error("the body is not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    /// The schema registry could not be reached; nothing was published.
    #[error("the hub cannot reach its schema registry right now; nothing was stored, retry later")]
    RegistryUnavailable(String),
    /// The registry answered but refused (e.g. an incompatible schema): an operator must act.
    #[error(
        "the hub's schema registry refused the record's schema; nothing was stored, retry later"
    )]
    SchemaRegistry(String),
    #[error("the hub could not encode the record; nothing was stored, retry later")]
    Encoding(String),
    /// At least one record was not acknowledged by the broker.
    #[error("the hub could not store the records right now; retry the whole request later")]
    BrokerUnavailable(PublishError),
    /// A vendor's webhook delivery refused: its signature (`signature == true`, 401) or its
    /// body (400); `code` is the vendor module's stable code.
    #[error("{message}")]
    VendorDelivery {
        code: &'static str,
        message: String,
        signature: bool,
    },
    /// The vendor's API, asked for the changed records, did not answer: nothing was stored,
    /// and the vendor retries the delivery.
    #[error("the hub could not fetch the changed records from the vendor; retry later")]
    VendorUnavailable(String),
    /// The tenant sent more than its `limits.ingest_per_s` (plus burst): nothing was read.
    #[error(
        "this tenant is sending faster than its ingest limit allows; nothing was stored, retry after the Retry-After seconds"
    )]
    Throttled { retry_after_secs: u32 },
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        use IngestError::*;
        match self {
            InvalidPath
            | BodyUnreadable
            | InvalidIdempotencyKey(_)
            | MalformedJson(_)
            | InvalidRecord { .. }
            | EmptyBatch
            | EmptyBody
            | MalformedXml
            | InvalidUtf8 { .. } => StatusCode::BAD_REQUEST,
            NotFound | UnknownConnector | UnknownEntity => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyTooLarge { .. } | BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Signature(_) => StatusCode::UNAUTHORIZED,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryUnavailable(_) | BrokerUnavailable(_) | VendorUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            VendorDelivery {
                signature: true, ..
            } => StatusCode::UNAUTHORIZED,
            VendorDelivery { .. } => StatusCode::BAD_REQUEST,
            SchemaRegistry(_) | Encoding(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The stable, machine-readable reason.
    pub fn code(&self) -> &'static str {
        use IngestError::*;
        match self {
            InvalidPath => "invalid_path",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            BodyTooLarge { .. } => "body_too_large",
            BodyUnreadable => "body_unreadable",
            UnknownConnector => "unknown_connector",
            Signature(e) => e.code(),
            UnknownEntity => "unknown_entity",
            UnsupportedMediaType => "unsupported_media_type",
            InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            IdempotencyKeyReused => "idempotency_key_reused",
            MalformedJson(_) => "malformed_json",
            InvalidRecord { .. } => "invalid_record",
            EmptyBatch => "empty_batch",
            BatchTooLarge { .. } => "batch_too_large",
            EmptyBody => "empty_body",
            MalformedXml => "malformed_xml",
            InvalidUtf8 { .. } => "invalid_utf8",
            RegistryUnavailable(_) => "registry_unavailable",
            SchemaRegistry(_) => "schema_registry_error",
            Encoding(_) => "encoding_failed",
            BrokerUnavailable(_) => "broker_unavailable",
            VendorDelivery { code, .. } => code,
            VendorUnavailable(_) => "vendor_unavailable",
            Throttled { .. } => "rate_limited",
        }
    }

    /// The request part the error concerns, when there is one.
    pub fn field(&self) -> Option<String> {
        use IngestError::*;
        match self {
            Signature(SignatureError::Missing(h)) => Some((*h).to_string()),
            Signature(SignatureError::BadTimestamp | SignatureError::Stale(_)) => {
                Some(TIMESTAMP_HEADER.to_string())
            }
            Signature(SignatureError::Mismatch) => Some(SIGNATURE_HEADER.to_string()),
            UnknownEntity => Some("entity".into()),
            UnsupportedMediaType => Some("content-type".into()),
            InvalidIdempotencyKey(_) | IdempotencyKeyReused => Some("idempotency-key".into()),
            InvalidRecord { index: Some(i), .. } => Some(format!("[{i}]")),
            _ => None,
        }
    }

    /// Whether the sender should simply try again later (and is told when).
    pub fn retry_after_secs(&self) -> Option<u32> {
        if let IngestError::Throttled { retry_after_secs } = self {
            return Some(*retry_after_secs);
        }
        matches!(
            self,
            IngestError::RegistryUnavailable(_)
                | IngestError::BrokerUnavailable(_)
                | IngestError::VendorUnavailable(_)
        )
        .then_some(RETRY_AFTER_SECS)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field: self.field(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
