//! The API's one error shape, `{"error": {"code", "message", "field"?}}`, and the mapping of
//! [`ControlError`] to HTTP statuses with stable codes.
//!
//! Messages never carry a secret, and e-mail addresses and phone numbers in them are masked:
//! a store message such as "a user with e-mail … already exists" reaches the client masked.
//! Store and crypto failures answer a fixed sentence; their detail goes to the log, masked.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::ControlError;
use crate::masking::mask_text;

/// The body of every error response, `{"error": {...}}`: the OpenAPI document's one error
/// schema, and what [`ApiError`]'s response serializes (so the two cannot drift apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_input`, `forbidden`, `not_found`, …).
    pub code: String,
    /// A sentence a dealership admin can act on; never a secret, personal data masked.
    pub message: String,
    /// The request field the error concerns, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_input`, `forbidden`, …).
    pub code: &'static str,
    /// A sentence a dealership admin can act on; never a secret, personal data masked.
    pub message: String,
    /// The request field the error concerns, when there is one.
    pub field: Option<String>,
    /// Seconds to wait before retrying (sent as `Retry-After`), for 429.
    pub retry_after_s: Option<i64>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: mask_text(&message.into()),
            field: None,
            retry_after_s: None,
        }
    }

    /// 422 naming the field that is wrong.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
        }
    }

    /// 401: no credentials, or ones that name no live session or token.
    pub fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in, or send a valid API token as 'Authorization: Bearer …'",
        )
    }

    /// 403: the caller's role is too low for this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: absent, or another tenant's (the two are indistinguishable on purpose).
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} was not found", what.into()),
        )
    }

    /// 409: the request contradicts the object's current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let code = e.code();
        match e {
            ControlError::InvalidInput { field, message } => ApiError::invalid(field, message),
            ControlError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, code, e.to_string())
            }
            ControlError::Conflict { .. } | ControlError::JobUnavailable { .. } => {
                ApiError::new(StatusCode::CONFLICT, code, e.to_string())
            }
            ControlError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
            }
            ControlError::Throttled { retry_after_ms } => ApiError {
                retry_after_s: Some((retry_after_ms + 999) / 1000),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, e.to_string())
            },
            ControlError::Database(_) | ControlError::Migrate(_) => {
                tracing::warn!(error = %mask_text(&e.to_string()), "control-plane store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the control-plane store is unavailable; try again shortly",
                )
            }
            ControlError::Config(_) | ControlError::Crypto(_) => {
                tracing::error!(error = %mask_text(&e.to_string()), code, "control-plane internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the control plane failed to complete this request; the operators have the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// A JSON request body, parsed with errors in the API's shape: 400 for a body that is not
/// JSON, 413 for one over the size limit, 422 naming the field for a missing or mistyped
/// field. serde's own messages are not passed on, as they can quote the input (a secret).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is too large",
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        "the request body could not be read",
                    )
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| body_error(&e))
    }
}

fn body_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let text = e.to_string();
            for (prefix, message) in [
                ("missing field `", "is required"),
                ("unknown field `", "is not a known field"),
            ] {
                if let Some(rest) = text.strip_prefix(prefix)
                    && let Some(name) = rest.split('`').next()
                {
                    return ApiError::invalid(name, message);
                }
            }
            ApiError::invalid("body", "a field has the wrong type or value")
        }
        Category::Io | Category::Syntax | Category::Eof => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "the request body is not valid JSON",
        ),
    }
}

/// A query string that did not parse.
pub fn bad_query(_: QueryRejection) -> ApiError {
    ApiError::invalid("query", "a query parameter has the wrong type or value")
}

/// A path that did not parse: as if the object did not exist.
pub fn bad_path(_: PathRejection) -> ApiError {
    ApiError::not_found("the object")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_stable_statuses_and_codes() {
        let cases: Vec<(ControlError, u16, &str)> = vec![
            (ControlError::invalid("name", "x"), 422, "invalid_input"),
            (
                ControlError::NotFound { what: "t".into() },
                404,
                "not_found",
            ),
            (ControlError::Conflict { what: "t".into() }, 409, "conflict"),
            (ControlError::InvalidCredentials, 401, "invalid_credentials"),
            (
                ControlError::Throttled {
                    retry_after_ms: 1500,
                },
                429,
                "throttled",
            ),
            (
                ControlError::JobUnavailable { job: "j".into() },
                409,
                "job_unavailable",
            ),
            (ControlError::Config("c".into()), 500, "internal"),
            (
                ControlError::Crypto("secret detail".into()),
                500,
                "internal",
            ),
            (
                ControlError::Database(sqlx::Error::PoolTimedOut),
                503,
                "store_unavailable",
            ),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code));
            assert!(!a.message.contains("secret detail"));
        }
        let t = ApiError::from(ControlError::Throttled {
            retry_after_ms: 1500,
        });
        assert_eq!(t.retry_after_s, Some(2));
    }

    #[test]
    fn personal_data_in_messages_is_masked() {
        let a = ApiError::from(ControlError::Conflict {
            what: "a user with e-mail jane.doe@example.com".into(),
        });
        assert!(!a.message.contains("jane.doe@example.com"), "{}", a.message);
    }
}
