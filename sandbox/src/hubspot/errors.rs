//! HubSpot's error envelope (vendor-apis.md §3.6): `{status, message, correlationId, category,
//! …}` for API errors, `{status, message, errorType, correlationId, policyName}` for 429s (§3.6),
//! and `{status: "BAD_…", message, correlationId}` for the OAuth token endpoint (§3.1).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A HubSpot error about to be sent.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    /// The standard envelope with a category (§3.6).
    pub fn new(status: u16, category: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({
                "status": "error",
                "message": message.into(),
                "correlationId": "",
                "category": category,
                "context": {},
                "links": {},
            }),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "VALIDATION_ERROR", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "OBJECT_NOT_FOUND", message)
    }

    /// §3.6: a 429 names the policy that was exceeded.
    pub fn rate_limited(policy: &str) -> Self {
        ApiError {
            status: 429,
            body: json!({
                "status": "error",
                "message": format!("You have reached your {} limit.", policy.to_ascii_lowercase()),
                "errorType": "RATE_LIMIT",
                "correlationId": "",
                "policyName": policy,
            }),
        }
    }

    /// §3.1: token endpoint errors carry their own `status` word.
    pub fn oauth(status_word: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            body: json!({"status": status_word, "message": message.into(), "correlationId": ""}),
        }
    }

    pub fn with_correlation_id(mut self, id: String) -> Self {
        if let Some(o) = self.body.as_object_mut() {
            o.insert("correlationId".into(), Value::String(id));
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        if let Some(o) = self.body.as_object_mut()
            && o.get("correlationId").and_then(Value::as_str) == Some("")
        {
            o.insert("correlationId".into(), Value::String(correlation_id()));
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

/// A UUID-shaped correlation id, unique within the process.
pub fn correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("5a9d0000-0000-4000-8000-{n:012x}")
}
