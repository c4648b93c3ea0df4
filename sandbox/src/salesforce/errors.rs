//! Salesforce's error shapes (vendor-apis.md §2.9, §2.1): REST errors are a JSON **array**
//! `[{"message","errorCode","fields"?}]`; per-record errors inside sObject Collections results
//! use `statusCode` instead (§2.5); the OAuth endpoints answer `{error, error_description}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A top-level REST error about to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SfError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl SfError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        SfError {
            status,
            code: code.to_owned(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(400, "MALFORMED_QUERY", message)
    }

    pub fn not_found() -> Self {
        Self::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    pub fn session() -> Self {
        Self::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }
}

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut e = json!({"message": self.message, "errorCode": self.code});
        if !self.fields.is_empty() {
            e["fields"] = json!(self.fields);
        }
        (status, Json(Value::Array(vec![e]))).into_response()
    }
}

/// One per-record error of a Collections result (§2.5: key `statusCode`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    pub status_code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn new(status_code: &'static str, message: impl Into<String>, fields: &[&str]) -> Self {
        RecordError {
            status_code,
            message: message.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"statusCode": self.status_code, "message": self.message, "fields": self.fields})
    }
}

/// §2.1: OAuth errors, 400 for grants (401 for client errors).
pub fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}
