//! The Confluent wire format (magic byte 0, 4-byte schema id, Avro body) through
//! `schema_registry_converter`, behind one small type so that stages never see the registry
//! client directly.
//!
//! Subjects follow the `TopicNameStrategy` (`<topic>-value`); the shipped schema is registered
//! on first use. The encoder caches per subject, so a schema change takes a restart — which is
//! what a deploy is anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::Value as Json;

use crate::convert::{ConvertError, avro_to_json, json_to_avro};
use crate::entity::Entity;
use crate::records::{DeadLetter, RawChange};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The registry could not be reached or refused; `retriable` says whether to try again.
    #[error("schema registry: {message}")]
    Registry { message: String, retriable: bool },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("record does not match its schema: {0}")]
    Shape(String),
}

impl CodecError {
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            CodecError::Registry {
                retriable: true,
                ..
            }
        )
    }
}

impl From<SRCError> for CodecError {
    fn from(e: SRCError) -> Self {
        CodecError::Registry {
            message: e.to_string(),
            retriable: e.retriable,
        }
    }
}

/// Encodes and decodes records in the Confluent wire format against one registry.
pub struct Codec {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    strategies: Mutex<HashMap<String, Arc<SubjectNameStrategy>>>,
}

impl Codec {
    /// A codec talking to the Confluent-compatible registry at `registry_url`.
    pub fn new(registry_url: &str) -> Self {
        let settings = SrSettings::new(registry_url.trim_end_matches('/').to_string());
        Codec {
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
            strategies: Mutex::new(HashMap::new()),
        }
    }

    fn strategy(&self, topic: &str, schema_text: &str) -> Arc<SubjectNameStrategy> {
        let mut map = self.strategies.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(topic.to_string())
            .or_insert_with(|| {
                let name = Schema::parse_str(schema_text).ok().and_then(|s| match s {
                    Schema::Record(r) => Some(r.name.fullname(None)),
                    _ => None,
                });
                Arc::new(SubjectNameStrategy::TopicNameStrategyWithSchema(
                    topic.to_string(),
                    false,
                    SuppliedSchema::new(name, SchemaType::Avro, schema_text.to_string()),
                ))
            })
            .clone()
    }

    /// Encodes an Avro value for `topic`, registering `schema_text` under `<topic>-value` if new.
    pub async fn encode_value(
        &self,
        topic: &str,
        schema_text: &str,
        value: Avro,
    ) -> Result<Vec<u8>, CodecError> {
        let strategy = self.strategy(topic, schema_text);
        self.encoder
            .encode_value(value, &strategy)
            .await
            .map_err(|e| {
                // The converter caches failures; a registry that was briefly away must not
                // poison every later call.
                self.encoder.remove_errors_from_cache();
                e.into()
            })
    }

    /// Encodes a JSON document for `topic` after converting it with `schema`.
    pub async fn encode_json(
        &self,
        topic: &str,
        schema: &Schema,
        schema_text: &str,
        doc: &Json,
    ) -> Result<Vec<u8>, CodecError> {
        let value = json_to_avro(doc, schema)?;
        self.encode_value(topic, schema_text, value).await
    }

    /// Encodes a canonical record (a JSON object shaped like the entity's schema).
    pub async fn encode_canonical(
        &self,
        entity: Entity,
        doc: &Json,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_json(
            &entity.canonical_topic(),
            entity.schema(),
            entity.schema_text(),
            doc,
        )
        .await
    }

    /// Decodes any record in the Confluent wire format to its Avro value.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Avro, CodecError> {
        match self.decoder.decode(Some(bytes)).await {
            Ok(r) => Ok(r.value),
            Err(e) => {
                self.decoder.remove_errors_from_cache();
                Err(e.into())
            }
        }
    }

    /// Decodes any record in the Confluent wire format to JSON.
    pub async fn decode_json(&self, bytes: &[u8]) -> Result<Json, CodecError> {
        Ok(avro_to_json(&self.decode(bytes).await?))
    }

    pub async fn encode_raw(&self, topic: &str, raw: &RawChange) -> Result<Vec<u8>, CodecError> {
        let doc = serde_json::to_value(raw).map_err(|e| CodecError::Shape(e.to_string()))?;
        self.encode_json(topic, raw_schema(), RawChange::SCHEMA_TEXT, &doc)
            .await
    }

    pub async fn decode_raw(&self, bytes: &[u8]) -> Result<RawChange, CodecError> {
        let doc = self.decode_json(bytes).await?;
        serde_json::from_value(doc).map_err(|e| CodecError::Shape(e.to_string()))
    }

    pub async fn encode_dead_letter(
        &self,
        topic: &str,
        dl: &DeadLetter,
    ) -> Result<Vec<u8>, CodecError> {
        let doc = serde_json::to_value(dl).map_err(|e| CodecError::Shape(e.to_string()))?;
        self.encode_json(topic, dead_letter_schema(), DeadLetter::SCHEMA_TEXT, &doc)
            .await
    }

    pub async fn decode_dead_letter(&self, bytes: &[u8]) -> Result<DeadLetter, CodecError> {
        let doc = self.decode_json(bytes).await?;
        serde_json::from_value(doc).map_err(|e| CodecError::Shape(e.to_string()))
    }
}

/// The parsed `RawChange` schema.
pub fn raw_schema() -> &'static Schema {
    static S: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    S.get_or_init(|| Schema::parse_str(RawChange::SCHEMA_TEXT).expect("shipped schema parses"))
}

/// The parsed `DeadLetter` schema.
pub fn dead_letter_schema() -> &'static Schema {
    static S: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    S.get_or_init(|| Schema::parse_str(DeadLetter::SCHEMA_TEXT).expect("shipped schema parses"))
}
