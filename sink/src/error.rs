//! The sink's errors. Each has a stable code and says whether trying again can help; none
//! carries a record's field values, so an error can be logged as it is.

use hub_schemas::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The SQL store failed; `retriable` is false for errors that another attempt repeats
    /// (a schema the table cannot hold, a constraint).
    #[error("sql store: {message}")]
    Sql { message: String, retriable: bool },
    /// The store's URL or a target's settings cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// A message on a canonical topic is not a canonical record.
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("decoding: {0}")]
    Codec(#[from] CodecError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl SinkError {
    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::Sql { .. } => "sink_sql",
            SinkError::Config(_) => "sink_config",
            SinkError::Record(e) => e.code(),
            SinkError::Codec(_) => "sink_decode",
            SinkError::Kafka(_) => "sink_kafka",
        }
    }

    /// Whether the same operation may succeed later (the runner retries these in place).
    pub fn is_retriable(&self) -> bool {
        match self {
            SinkError::Sql { retriable, .. } => *retriable,
            SinkError::Config(_) | SinkError::Record(_) => false,
            SinkError::Codec(e) => e.is_retriable(),
            SinkError::Kafka(_) => true,
        }
    }
}

impl From<sqlx::Error> for SinkError {
    fn from(e: sqlx::Error) -> Self {
        // A database error's message can quote a value (PostgreSQL's "invalid input syntax
        // for type bigint: ..."); keep only its SQLSTATE and constraint so it is safe to log.
        let (message, retriable) = match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let constraint = db.constraint().unwrap_or("-");
                // SQLite: 5 BUSY, 6 LOCKED; PostgreSQL: 40xxx serialization/deadlock,
                // 53xxx resources, 57P0x shutdown, 08xxx connection.
                let retriable = matches!(code.as_str(), "5" | "6" | "517" | "261" | "262")
                    || ["40", "53", "57", "08"].iter().any(|p| code.starts_with(p));
                (
                    format!("database error code {code} (constraint {constraint})"),
                    retriable,
                )
            }
            sqlx::Error::Configuration(_) => (e.to_string(), false),
            sqlx::Error::ColumnDecode { index, .. } => {
                (format!("column {index} did not decode"), false)
            }
            sqlx::Error::Decode(_) => ("a value did not decode".to_string(), false),
            sqlx::Error::Encode(_) => ("a value did not encode".to_string(), false),
            sqlx::Error::Protocol(_) => ("protocol error".to_string(), true),
            other => (other.to_string(), true),
        };
        SinkError::Sql { message, retriable }
    }
}

/// Why a message on a canonical topic could not be read as a canonical record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("topic '{0}' is not a canonical topic")]
    NotCanonicalTopic(String),
    #[error("the record has no '{0}' field of the expected type")]
    MissingField(&'static str),
    #[error("the record is not a JSON object")]
    NotAnObject,
}

impl RecordError {
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::NotCanonicalTopic(_) => "sink_not_canonical_topic",
            RecordError::MissingField(_) => "sink_missing_field",
            RecordError::NotAnObject => "sink_not_an_object",
        }
    }
}

pub type Result<T, E = SinkError> = std::result::Result<T, E>;
