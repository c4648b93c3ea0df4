//! The control plane's errors. Each has a stable [`ControlError::code`] for API responses and
//! a sentence a dealership admin can act on; none carries a secret.

/// Errors from the control plane's store, crypto and access checks.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{field}: {message}")]
    InvalidInput {
        field: &'static str,
        message: String,
    },
    #[error("{what} was not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    Conflict { what: String },
    /// Unknown e-mail, wrong password or disabled user: deliberately one answer for all three.
    #[error("the e-mail address or password is wrong")]
    InvalidCredentials,
    #[error("too many failed sign-ins from this address; try again in {retry_after_ms} ms")]
    Throttled { retry_after_ms: i64 },
    /// A sync job this node tried to start, extend or finish is not (or no longer) its to run.
    #[error(
        "sync job {job} cannot be run by this node: it has finished or been cancelled, or another node holds its lease"
    )]
    JobUnavailable { job: String },
    #[error("configuration: {0}")]
    Config(String),
    /// Encryption or decryption failed: a wrong master key, or a row altered in the store.
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("control-plane store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("control-plane store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl ControlError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ControlError::InvalidInput {
            field,
            message: message.into(),
        }
    }

    /// A stable, machine-readable code for API responses and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::InvalidInput { .. } => "invalid_input",
            ControlError::NotFound { .. } => "not_found",
            ControlError::Conflict { .. } => "conflict",
            ControlError::InvalidCredentials => "invalid_credentials",
            ControlError::Throttled { .. } => "throttled",
            ControlError::JobUnavailable { .. } => "job_unavailable",
            ControlError::Config(_) => "config",
            ControlError::Crypto(_) => "crypto",
            ControlError::Database(_) | ControlError::Migrate(_) => "store",
        }
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;
