//! The SQL table sink's loop: exactly-once from canonical topics into the SQL store.

use std::collections::HashSet;
use std::sync::Arc;

use hub_schemas::Topics;
use hub_schemas::{Codec, Entity};
use hub_topology::Topology;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

use super::{
    Consumed, DeadLetterOut, OutcomeCounts, RunnerOptions, SinkConsumer, batch_backoff, collect,
    commit, pause, record_latency,
};
use crate::error::{Result, SinkError};
use crate::offsets::{Admission, Position, positions_after};
use crate::record::{CanonicalRecord, entity_of_topic, tenant_of_key};
use crate::routes::SqlRoutes;
use crate::shutdown::is_stopped;
use crate::store::{SqlStore, UpsertOutcome};

/// Consumes every canonical topic some tenant routes to a `sql` target and writes those
/// tenants' records to the [`SqlStore`], exactly once: rows and offsets commit in one database
/// transaction; on first seeing a partition the stored offset is loaded and older messages are
/// skipped; Kafka offsets are committed afterwards, as a hint.
pub struct SqlSinkRunner {
    bootstrap: String,
    codec: Arc<Codec>,
    routes: SqlRoutes,
    store: SqlStore,
    group_id: String,
    /// The topic namespace (canonical topics in, `<ns>.dlq.sink` out).
    names: Topics,
    options: RunnerOptions,
}

/// A message that is not a canonical record of its topic: it goes to the DLQ as `decode`.
struct Undecodable {
    message: usize,
    tenant: Option<String>,
    entity: Option<Entity>,
    reason: String,
}

/// One record to write, with where it came from in the batch.
struct ToWrite {
    record: CanonicalRecord,
    target: String,
    message: usize,
}

impl SqlSinkRunner {
    /// The consumer group (and the `consumer` in `hub_sink_offsets`) unless told otherwise.
    pub const DEFAULT_GROUP: &'static str = "hub-sink-sql";

    pub fn new(
        bootstrap: String,
        codec: Arc<Codec>,
        topology: Arc<Topology>,
        store: SqlStore,
        group_id: impl Into<String>,
    ) -> Self {
        SqlSinkRunner {
            bootstrap,
            codec,
            routes: SqlRoutes::from_topology(&topology),
            store,
            group_id: group_id.into(),
            names: topology.topic_names(),
            options: RunnerOptions::default(),
        }
    }

    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs until `shutdown` turns true, then returns after the batch in hand is committed (or,
    /// if it cannot be, left for redelivery). Errors only when it cannot start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let entities = self.routes.entities();
        if entities.is_empty() {
            tracing::info!(group = %self.group_id, "no tenant routes an entity to SQL; the SQL sink idles");
            crate::shutdown::stopped(&mut shutdown).await;
            return Ok(());
        }
        let consumer = super::consumer(&self.bootstrap, &self.group_id, &self.options)?;
        let producer = super::dlq_producer(&self.bootstrap, &self.options)?;
        super::subscribe(&consumer, &self.names, &entities)?;
        tracing::info!(group = %self.group_id, entities = entities.len(), "SQL sink started");
        let result = self.consume(&consumer, &producer, &mut shutdown).await;
        super::close(consumer, producer).await;
        tracing::info!(group = %self.group_id, "SQL sink stopped");
        result
    }

    async fn consume(
        &self,
        consumer: &SinkConsumer,
        producer: &FutureProducer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        while !is_stopped(shutdown) {
            let batch = collect(consumer, &self.options, shutdown).await;
            if batch.is_empty() {
                continue;
            }
            let mut dead_lettered = HashSet::new();
            let mut delays = batch_backoff();
            loop {
                match self
                    .process(consumer, producer, &batch, &mut dead_lettered)
                    .await
                {
                    Ok(()) => break,
                    Err(e) if e.is_retriable() => {
                        if matches!(e, SinkError::Kafka(_)) {
                            metrics::counter!(hub_topology::metrics::BROKER_ERRORS_TOTAL, "stage" => "sink").increment(1);
                        }
                        tracing::warn!(group = %self.group_id, code = e.code(), error = %e, "batch failed; retrying");
                        if !pause(delays.next().unwrap_or_default(), shutdown).await {
                            // Not committed: redelivered to whoever runs next.
                            tracing::info!(group = %self.group_id, "stopping with a batch not written");
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        tracing::error!(group = %self.group_id, code = e.code(), error = %e, "batch failed for good");
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    async fn process(
        &self,
        consumer: &SinkConsumer,
        producer: &FutureProducer,
        batch: &[Consumed],
        dead_lettered: &mut HashSet<usize>,
    ) -> Result<()> {
        let ctx = consumer.context();
        let generation = ctx.generation();
        let messages: Vec<(usize, &Consumed)> = batch
            .iter()
            .enumerate()
            .filter(|(_, m)| m.generation == generation)
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        let positions = positions_after(
            messages
                .iter()
                .map(|(_, m)| (m.topic.as_str(), m.partition, m.offset)),
        );
        for p in &positions {
            if !ctx.cache().is_loaded(&p.topic, p.partition) {
                let stored = self
                    .store
                    .next_offsets(&self.group_id, &p.topic, p.partition)
                    .await?;
                ctx.cache().load(&p.topic, p.partition, stored);
            }
        }

        let mut counts = OutcomeCounts::default();
        let mut to_write: Vec<ToWrite> = Vec::new();
        let mut failures: Vec<Undecodable> = Vec::new();
        for (i, m) in messages {
            let entity = entity_of_topic(&m.topic);
            let tenant = m.key.as_deref().and_then(tenant_of_key);
            let admission = ctx.cache().admit(&m.topic, m.partition, m.offset);
            if admission == Admission::AlreadyApplied {
                if let (Some(t), Some(e)) = (tenant, entity)
                    && let Some(target) = self.routes.target(t, e)
                {
                    counts.add(t, e, target, "skipped_replay");
                }
                continue;
            }
            let (Some(entity), Some(tenant)) = (entity, tenant) else {
                failures.push(Undecodable {
                    message: i,
                    tenant: None,
                    entity,
                    reason: "the record key is not <tenant>/<key>".into(),
                });
                continue;
            };
            let Some(target) = self.routes.target(tenant, entity) else {
                continue; // not routed to SQL by this tenant
            };
            let Some(value) = m.value.as_deref() else {
                failures.push(Undecodable {
                    message: i,
                    tenant: Some(tenant.into()),
                    entity: Some(entity),
                    reason: "the message has no value".into(),
                });
                continue;
            };
            match CanonicalRecord::decode(&self.codec, &m.topic, m.partition, m.offset, value).await
            {
                Ok(record) if record.tenant != tenant => failures.push(Undecodable {
                    message: i,
                    tenant: Some(tenant.into()),
                    entity: Some(entity),
                    reason: "the record's tenant_id does not match its key".into(),
                }),
                Ok(record) => to_write.push(ToWrite {
                    record,
                    target: target.to_string(),
                    message: i,
                }),
                Err(e) if e.is_retriable() => return Err(e),
                Err(e) => failures.push(Undecodable {
                    message: i,
                    tenant: Some(tenant.into()),
                    entity: Some(entity),
                    reason: e.to_string(),
                }),
            }
        }

        for Undecodable {
            message: i,
            tenant,
            entity,
            reason,
        } in failures
        {
            if dead_lettered.contains(&i) {
                continue;
            }
            self.dead_letter(
                producer,
                &batch[i],
                tenant.as_deref(),
                entity,
                "decode",
                reason,
            )
            .await?;
            dead_lettered.insert(i);
            if let (Some(t), Some(e)) = (tenant.as_deref(), entity) {
                counts.add(
                    t,
                    e,
                    self.routes.target(t, e).unwrap_or("-"),
                    "dead_lettered",
                );
            }
        }

        let records: Vec<CanonicalRecord> = to_write.iter().map(|w| w.record.clone()).collect();
        let outcomes = match self
            .store
            .write_batch_at(&self.group_id, &records, &positions)
            .await
        {
            Ok(o) => o.outcomes.into_iter().map(Some).collect(),
            Err(e) if !e.is_retriable() => {
                self.write_one_by_one(producer, batch, &to_write, &positions, dead_lettered)
                    .await?
            }
            Err(e) => return Err(e),
        };

        let mut tenants: HashSet<&str> = HashSet::new();
        for (w, outcome) in to_write.iter().zip(outcomes) {
            let r = &w.record;
            tenants.insert(&r.tenant);
            let label = match outcome {
                Some(UpsertOutcome::Written) => {
                    record_latency(r.entity, &w.target, r.source_updated_at, r.received_at);
                    "written"
                }
                Some(UpsertOutcome::Stale) => "stale",
                Some(UpsertOutcome::AlreadyApplied) => "skipped_replay",
                None => "dead_lettered",
            };
            counts.add(&r.tenant, r.entity, &w.target, label);
        }
        let summary = counts.summary();
        counts.emit();
        tracing::debug!(group = %self.group_id, tenants = tenants.len(), ?summary, "batch committed");

        let mut owned: Vec<Position> = Vec::new();
        {
            let mut cache = ctx.cache();
            for p in positions {
                if cache.is_loaded(&p.topic, p.partition) {
                    cache.advance(&p.topic, p.partition, p.next_offset);
                    owned.push(p);
                }
            }
        }
        commit(consumer, &owned);
        Ok(())
    }

    /// The batch as a whole hit an error that repeats (a value the database refuses): write
    /// the records one at a time and dead-letter those that fail, then store the positions.
    /// `None` marks a dead-lettered record.
    async fn write_one_by_one(
        &self,
        producer: &FutureProducer,
        batch: &[Consumed],
        to_write: &[ToWrite],
        positions: &[Position],
        dead_lettered: &mut HashSet<usize>,
    ) -> Result<Vec<Option<UpsertOutcome>>> {
        let mut out = Vec::with_capacity(to_write.len());
        for w in to_write {
            match self
                .store
                .write_batch_at(&self.group_id, std::slice::from_ref(&w.record), &[])
                .await
            {
                Ok(o) => out.push(o.outcomes.first().copied()),
                Err(e) if e.is_retriable() => return Err(e),
                Err(e) => {
                    if !dead_lettered.contains(&w.message) {
                        let reason = format!("the SQL store refused the record: {e}");
                        self.dead_letter(
                            producer,
                            &batch[w.message],
                            Some(&w.record.tenant),
                            Some(w.record.entity),
                            "permanent",
                            reason,
                        )
                        .await?;
                        dead_lettered.insert(w.message);
                    }
                    out.push(None);
                }
            }
        }
        self.store
            .write_batch_at(&self.group_id, &[], positions)
            .await?;
        Ok(out)
    }

    async fn dead_letter(
        &self,
        producer: &FutureProducer,
        message: &Consumed,
        tenant: Option<&str>,
        entity: Option<Entity>,
        error_class: &str,
        reason: String,
    ) -> Result<()> {
        super::dead_letter(
            producer,
            &self.codec,
            &self.names,
            DeadLetterOut {
                message,
                tenant,
                entity,
                error_class,
                reason,
                attempts: 1,
            },
        )
        .await
    }
}
