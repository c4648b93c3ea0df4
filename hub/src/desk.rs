//! The conflicts and dead-letters desk's Kafka side: the feeder that materializes
//! `<ns>.conflicts`, `<ns>.dlq.transform` and `<ns>.dlq.sink` into the control store, and the
//! [`PipelineGateway`] through which the control API's actions enter the pipeline.
//!
//! ## The feeder
//! One consumer in its own group (`<ns>-desk`), `read_committed` (the transform writes these
//! topics in transactions: an aborted batch's conflicts never existed). Each record is written
//! to the store first and its offset committed after, so a crash re-reads some records, which
//! the store ignores (upserts keyed by source offset: [`hub_control::store::desk`]). A store
//! that fails is retried, the record held, so nothing is skipped; a record that cannot be
//! decoded at all is logged and passed over, as no retry would change it. Records of a tenant
//! the control store does not know (no tenant row: it is not managed by this control plane)
//! are passed over too, with a warning.
//!
//! ## The gateway
//! An idempotent producer (`acks=all`); each call returns once the broker acknowledged.
//! - A resolution becomes [`ResolveRequest::record`]: a `ChangeMsg::Resolve` on
//!   `<ns>.changes.<entity>`, keyed like the conflict's key, so the resolve stage meets it in
//!   order with the key's other changes and answers on `<ns>.conflicts` (which the feeder
//!   brings back to the row).
//! - A replay re-produces a dead letter's original value to its original topic (only topics
//!   of this namespace) with its original key and the hub headers: those the dead letter
//!   carried and, for a raw record, the tenant, connector, ingest id and received-at that
//!   ingest sets (read back from the record itself). A sink dead letter replayed to a
//!   canonical topic lacks the `hub-external-ids` header its original had (the dead letter
//!   does not keep it), so its sink looks the record up by its key instead.

use std::sync::Arc;
use std::time::Duration;

use hub_control::ControlError;
use hub_control::api::{GatewayError, GatewayFuture, PipelineGateway, ResolutionSubmission};
use hub_control::auth::TenantId;
use hub_control::store::ControlStore;
use hub_control::store::desk::{ConflictEvent, ConflictUpsert, DeadLetterReplay, DeadLetterUpsert};
use hub_schemas::{Codec, Topics, headers};
use hub_transform::conflict::{FieldOutcome, Resolution};
use hub_transform::pipeline::{ConflictRecord, ConflictStatus, ResolveRequest};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How long a gateway call waits for the broker's acknowledgement.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the feeder; it runs until `shutdown` turns true.
pub fn spawn_feeder(
    store: ControlStore,
    bootstrap: String,
    names: Topics,
    codec: Arc<Codec>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", names.group("desk"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let topics = [names.conflicts(), names.dlq_transform(), names.dlq_sink()];
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    info!(group = %names.group("desk"), "desk feeder started");
    Ok(tokio::spawn(async move {
        let feeder = Feeder {
            store,
            names,
            codec,
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "desk feeder: consume failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // Held until written: the offset is committed only after the store has it.
            let mut backoff = Duration::from_millis(200);
            loop {
                match feeder.apply(&msg).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(error = %e, topic = msg.topic(), "desk feeder: store write failed; retrying");
                        tokio::select! {
                            _ = shutdown.wait_for(|stop| *stop) => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            if let Err(e) = consumer.commit_message(&msg, CommitMode::Async) {
                warn!(error = %e, "desk feeder: offset commit failed (the record will be read again, harmlessly)");
            }
        }
    }))
}

struct Feeder {
    store: ControlStore,
    names: Topics,
    codec: Arc<Codec>,
}

/// What the feeder cannot write yet (and retries); anything else is logged and passed over.
#[derive(Debug)]
enum FeedError {
    Store(ControlError),
    Registry(String),
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Store(e) => write!(f, "control store: {e}"),
            FeedError::Registry(e) => write!(f, "schema registry: {e}"),
        }
    }
}

fn header(msg: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Feeder {
    async fn apply(&self, msg: &BorrowedMessage<'_>) -> Result<(), FeedError> {
        let Some(payload) = msg.payload() else {
            return Ok(());
        };
        let written = if msg.topic() == self.names.conflicts() {
            let Ok(rec) = serde_json::from_slice::<ConflictRecord>(payload) else {
                warn!(
                    offset = msg.offset(),
                    "desk feeder: a conflict record that does not parse; passed over"
                );
                return Ok(());
            };
            let Some(upsert) = conflict_upsert(&rec, msg.partition(), msg.offset()) else {
                return Ok(());
            };
            self.store.upsert_conflict(&upsert).await
        } else {
            let dl = match self.codec.decode_dead_letter(payload).await {
                Ok(dl) => dl,
                Err(e) if e.is_retriable() => return Err(FeedError::Registry(e.to_string())),
                Err(e) => {
                    warn!(error = %e, offset = msg.offset(), "desk feeder: a dead letter that does not decode; passed over");
                    return Ok(());
                }
            };
            let tenant = dl
                .tenant
                .clone()
                .or_else(|| header(msg, headers::TENANT))
                .or_else(|| {
                    dl.original_key
                        .as_deref()
                        .and_then(|k| k.split_once('/'))
                        .map(|(t, _)| t.to_string())
                });
            let Some(tenant) = tenant.and_then(|t| TenantId::new(t).ok()) else {
                warn!(
                    offset = msg.offset(),
                    "desk feeder: a dead letter of no known tenant; passed over"
                );
                return Ok(());
            };
            let mut hdrs: Vec<(String, String)> = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .filter(|x| x.key.starts_with("hub-"))
                        .filter_map(|x| {
                            Some((
                                x.key.to_string(),
                                String::from_utf8(x.value?.to_vec()).ok()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if dl
                .original_topic
                .starts_with(&format!("{}.raw.", self.names.namespace()))
                && let Ok(raw) = self.codec.decode_raw(&dl.original_value).await
            {
                for (k, v) in [
                    (headers::TENANT, raw.tenant),
                    (headers::CONNECTOR, raw.connector),
                    (headers::INGEST_ID, raw.ingest_id),
                    (headers::RECEIVED_AT_MS, raw.received_at.to_string()),
                ] {
                    hdrs.retain(|(name, _)| name != k);
                    hdrs.push((k.to_string(), v));
                }
            }
            let upsert = DeadLetterUpsert {
                tenant,
                id: format!("{}:{}:{}", msg.topic(), msg.partition(), msg.offset()),
                stage: dl.stage,
                error_class: dl.error_class,
                reason: dl.reason,
                errors: serde_json::to_value(&dl.errors).unwrap_or_default(),
                attempts: i64::from(dl.attempts),
                original_topic: dl.original_topic,
                original_partition: dl.original_partition,
                original_offset: dl.original_offset,
                original_key: dl.original_key,
                original_value: dl.original_value,
                headers: hdrs,
                failed_at_ms: dl.failed_at,
            };
            self.store.upsert_dead_letter(&upsert).await
        };
        match written {
            Ok(_) => Ok(()),
            Err(ControlError::NotFound { what }) => {
                warn!(%what, topic = msg.topic(), "desk feeder: a record of a tenant this control store does not manage; passed over");
                Ok(())
            }
            Err(e @ (ControlError::InvalidInput { .. } | ControlError::Config(_))) => {
                warn!(error = %e, "desk feeder: a record the store refuses; passed over");
                Ok(())
            }
            Err(e) => Err(FeedError::Store(e)),
        }
    }
}

/// The store's view of one conflict record; `None` for a record of no valid tenant.
fn conflict_upsert(rec: &ConflictRecord, partition: i32, offset: i64) -> Option<ConflictUpsert> {
    let tenant = TenantId::new(rec.tenant.clone()).ok()?;
    let event = match rec.status {
        ConflictStatus::Pending => ConflictEvent::Pending,
        ConflictStatus::AutoResolved => ConflictEvent::AutoResolved,
        ConflictStatus::Resolved => ConflictEvent::Resolved,
        ConflictStatus::ResolutionRejected => ConflictEvent::Rejected,
        ConflictStatus::Superseded => ConflictEvent::Superseded,
    };
    Some(ConflictUpsert {
        tenant,
        conflict_id: rec.id.clone(),
        entity: rec.entity.clone(),
        key: rec.key.clone(),
        connector: rec.origin.as_ref().map(|o| o.connector.clone()),
        event,
        held_fields: rec
            .fields
            .iter()
            .filter(|f| f.outcome == FieldOutcome::Held)
            .map(|f| f.field.clone())
            .collect(),
        fields: serde_json::to_value(&rec.fields).unwrap_or_default(),
        version: i64::try_from(rec.version).unwrap_or(i64::MAX),
        at_ms: rec.at,
        reason: rec.reason.clone(),
        resolved_by: rec.resolution.as_ref().map(|r| r.resolved_by.clone()),
        partition,
        offset,
    })
}

/// The control API's way into the pipeline, over Kafka.
pub struct KafkaGateway {
    producer: FutureProducer,
    names: Topics,
}

impl std::fmt::Debug for KafkaGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaGateway")
            .field("namespace", &self.names.namespace())
            .finish()
    }
}

impl KafkaGateway {
    pub fn new(bootstrap: &str, names: Topics) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(KafkaGateway { producer, names })
    }

    async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        value: &[u8],
        hdrs: &[(String, String)],
    ) -> Result<(), GatewayError> {
        let mut h = OwnedHeaders::new_with_capacity(hdrs.len());
        for (k, v) in hdrs {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(topic).payload(value).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.producer
            .send(record, PRODUCE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| GatewayError::Unavailable(format!("producing to {topic}: {e}")))
    }
}

impl PipelineGateway for KafkaGateway {
    fn submit_resolution<'a>(&'a self, s: &'a ResolutionSubmission) -> GatewayFuture<'a> {
        Box::pin(async move {
            let resolution: Resolution =
                serde_json::from_value(s.resolution.clone()).map_err(|e| {
                    GatewayError::Refused(format!(
                        "the resolution is not one the transform reads: {e}"
                    ))
                })?;
            let request = ResolveRequest {
                tenant: s.tenant.to_string(),
                entity: s.entity.clone(),
                key: s.key.clone(),
                conflict_id: s.conflict_id.clone(),
                resolution,
            };
            let (topic, key, value) = request.record(&self.names).ok_or_else(|| {
                GatewayError::Refused(format!("{} is not an entity the hub knows", s.entity))
            })?;
            let hdrs = [(headers::TENANT.to_string(), s.tenant.to_string())];
            self.produce(&topic, Some(&key), &value, &hdrs).await
        })
    }

    fn replay<'a>(&'a self, r: &'a DeadLetterReplay) -> GatewayFuture<'a> {
        Box::pin(async move {
            if !r.topic.starts_with(&format!("{}.", self.names.namespace())) {
                return Err(GatewayError::Refused(format!(
                    "{} is not a topic of this hub's namespace",
                    r.topic
                )));
            }
            self.produce(&r.topic, r.key.as_deref(), &r.value, &r.headers)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_transform::conflict::FieldState;
    use hub_transform::pipeline::ConflictField;
    use serde_json::json;

    fn side(v: &str, source: &str) -> FieldState {
        FieldState {
            value: json!(v),
            source: source.into(),
            source_ts: 1,
        }
    }

    #[test]
    fn a_pending_conflict_record_names_its_held_fields_and_keeps_both_sides() {
        let rec = ConflictRecord {
            id: "customer:i-1".into(),
            tenant: "acme".into(),
            entity: "customer".into(),
            key: "ck".into(),
            status: ConflictStatus::Pending,
            origin: None,
            fields: vec![
                ConflictField {
                    field: "first_name".into(),
                    current: side("Pat", "sf"),
                    incoming: side("Patricia", "hs"),
                    strategy: "manual".into(),
                    outcome: FieldOutcome::Held,
                },
                ConflictField {
                    field: "city".into(),
                    current: side("Austin", "sf"),
                    incoming: side("Dallas", "hs"),
                    strategy: "source_wins".into(),
                    outcome: FieldOutcome::Applied { won_conflict: true },
                },
            ],
            version: 4,
            at: 9,
            resolution: None,
            reason: None,
        };
        let u = conflict_upsert(&rec, 1, 17).unwrap();
        assert_eq!(u.held_fields, ["first_name"]);
        assert_eq!(u.event, ConflictEvent::Pending);
        assert_eq!(u.fields[0]["incoming"]["value"], "Patricia");
        assert_eq!((u.partition, u.offset, u.version), (1, 17, 4));
        let bad = ConflictRecord {
            tenant: "Not A Tenant!".into(),
            ..rec
        };
        assert!(conflict_upsert(&bad, 0, 0).is_none());
    }

    #[test]
    fn the_apis_resolution_json_is_the_transforms_resolution() {
        let r: Resolution = serde_json::from_value(json!({
            "resolved_by": "control:user:u1",
            "resolved_at_ms": 5,
            "fields": {"first_name": "take_incoming", "phone": "keep_current", "city": {"value": "Austin"}},
        }))
        .unwrap();
        assert_eq!(r.fields.len(), 3);
    }
}
