//! How every connector classifies a vendor's failure — once, in the connector — so that the
//! retry-or-dead-letter decision is made in one place (vendor-apis.md §1.2).

use std::time::Duration;

/// What the caller should do about a failed vendor call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with backoff; wait at least `retry_after` when the vendor said so.
    Transient { retry_after: Option<Duration> },
    /// The credentials expired: refresh once, then retry once.
    Auth,
    /// Over the vendor's limit: back off (at least `retry_after` when given) before any call.
    RateLimited { retry_after: Option<Duration> },
    /// Retrying cannot help: dead-letter with the vendor's message.
    Permanent,
}

/// A classified vendor error: the class, the vendor's own code and message (no record data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{vendor} {status}: {code}: {message}")]
pub struct VendorError {
    pub vendor: &'static str,
    /// The HTTP status of the response (0 for a transport failure).
    pub status: u16,
    /// The vendor's error code, e.g. `INVALID_SESSION_ID`, `VALIDATION_ERROR`.
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
}

impl VendorError {
    pub fn is_retriable(&self) -> bool {
        !matches!(self.class, ErrorClass::Permanent)
    }
}

/// `Retry-After` as seconds (the HTTP-date form is rare from APIs; treated as absent).
pub fn retry_after(header: Option<&str>) -> Option<Duration> {
    header?.trim().parse::<u64>().ok().map(Duration::from_secs)
}
