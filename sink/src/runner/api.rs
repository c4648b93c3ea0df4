//! The loop of one API target of one tenant: effectively once. Delivery is at-least-once
//! (Kafka offsets are committed only after the target acknowledged, or the refused records'
//! dead letters are safe); the write ledger skips what the target already holds, so a
//! redelivery sends nothing new.

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
    commit, dead_letter, pause, record_latency,
};
use crate::api::vendor::VendorSink;
use crate::api::{DeliveryOutcome, Sink, WebhookSink, deliver};
use crate::error::{Result, SinkError};
use crate::offsets::positions_after;
use crate::record::{CanonicalRecord, entity_of_topic, tenant_of_key};
use crate::routes::webhook_routes;
use crate::shutdown::is_stopped;
use crate::store::SqlStore;

/// Runs one [`Sink`] for one tenant: its own consumer group, only that tenant's records of the
/// entities routed to the target.
pub struct ApiSinkRunner<S: Sink> {
    bootstrap: String,
    codec: Arc<Codec>,
    store: SqlStore,
    tenant: String,
    entities: Vec<Entity>,
    sink: S,
    group_id: String,
    /// The topic namespace (canonical topics in, `<ns>.dlq.sink` out).
    names: Topics,
    options: RunnerOptions,
    echo: Option<EchoLedger>,
}

/// For a target that writes into a system a connector reads from: what that connector will
/// report back, so each write can be recorded on `<ns>.ledger` before it is made and its echo
/// recognised by the transform.
#[derive(Debug, Clone)]
pub struct EchoLedger {
    pub connector: String,
    /// Per entity, the canonical fields the connector reports
    /// ([`hub_schemas::echo::reported_fields`]).
    pub fields: std::collections::HashMap<Entity, Vec<String>>,
}

impl EchoLedger {
    /// The ledger of writes into the system `connector` of `tenant` reads, from its mappings.
    pub fn for_connector(topology: &Topology, tenant: &str, connector: &str) -> Option<Self> {
        let c = topology.tenant(tenant)?.connector(connector)?;
        let mut fields: std::collections::HashMap<Entity, Vec<String>> = Default::default();
        for m in &c.entities {
            let names = fields.entry(m.canonical).or_default();
            names.extend(m.fields.keys().cloned());
        }
        for (entity, names) in fields.iter_mut() {
            *names = hub_schemas::echo::reported_fields(*entity, names.iter().map(String::as_str));
        }
        Some(EchoLedger {
            connector: connector.to_string(),
            fields,
        })
    }
}

/// The runner of a webhook target.
pub type WebhookSinkRunner = ApiSinkRunner<WebhookSink>;

enum Flow {
    Done,
    /// Shutdown came while records were still unacknowledged: nothing committed.
    Stopped,
}

impl ApiSinkRunner<WebhookSink> {
    /// The runner of the webhook target `target_id` of `tenant_id`; group
    /// `hub-sink-webhook-<tenant>-<target>` unless `group_id` names another.
    pub fn new(
        bootstrap: String,
        codec: Arc<Codec>,
        topology: Arc<Topology>,
        store: SqlStore,
        tenant_id: &str,
        target_id: &str,
        group_id: Option<String>,
    ) -> Result<Self> {
        let route = webhook_routes(&topology)
            .into_iter()
            .find(|r| r.tenant == tenant_id && r.target.id == target_id)
            .ok_or_else(|| {
                SinkError::Config(format!(
                    "tenant '{tenant_id}' has no webhook target '{target_id}' with routed entities"
                ))
            })?;
        let sink = WebhookSink::from_target(&route.target)?;
        let names = topology.topic_names();
        let group = group_id.unwrap_or_else(|| Self::default_group(&names, tenant_id, target_id));
        let echo = match &route.target.kind {
            hub_topology::TargetKind::Webhook {
                connector: Some(c), ..
            } => EchoLedger::for_connector(&topology, tenant_id, c),
            _ => None,
        };
        let mut runner = Self::with_sink(
            bootstrap,
            codec,
            store,
            tenant_id,
            route.entities,
            sink,
            group,
        )
        .in_namespace(names);
        runner.echo = echo;
        Ok(runner)
    }

    /// `<ns>-sink-webhook-<tenant>-<target>`.
    pub fn default_group(names: &Topics, tenant_id: &str, target_id: &str) -> String {
        names.group(&format!("sink-webhook-{tenant_id}-{target_id}"))
    }

    /// One runner per (tenant, webhook target) of the topology, with default groups.
    pub fn all(
        bootstrap: &str,
        codec: Arc<Codec>,
        topology: Arc<Topology>,
        store: SqlStore,
    ) -> Result<Vec<Self>> {
        webhook_routes(&topology)
            .iter()
            .map(|r| {
                Self::new(
                    bootstrap.to_string(),
                    codec.clone(),
                    topology.clone(),
                    store.clone(),
                    &r.tenant,
                    &r.target.id,
                    None,
                )
            })
            .collect()
    }
}

/// The runner of a vendor target (HubSpot, Salesforce) for one entity.
pub type VendorSinkRunner = ApiSinkRunner<VendorSink>;

impl ApiSinkRunner<VendorSink> {
    /// One runner per (tenant, vendor target, entity routed to it), in group
    /// `<ns>-sink-vendor-<tenant>-<target>-<entity>`. Each records its writes on the ledger
    /// for its connector, whose poller reads them back as echoes.
    pub fn all(
        bootstrap: &str,
        codec: Arc<Codec>,
        topology: Arc<Topology>,
        store: SqlStore,
    ) -> Result<Vec<Self>> {
        let names = topology.topic_names();
        let mut out = Vec::new();
        for tenant in &topology.tenants {
            for target in &tenant.targets {
                let hub_topology::TargetKind::Vendor { connector, .. } = &target.kind else {
                    continue;
                };
                for entity in Entity::ALL {
                    if !tenant.targets_for(entity).iter().any(|t| t.id == target.id) {
                        continue;
                    }
                    let sink = VendorSink::for_target(tenant, &target.id, entity)?;
                    let group = names.group(&format!(
                        "sink-vendor-{}-{}-{}",
                        tenant.id,
                        target.id,
                        entity.name()
                    ));
                    let mut runner = Self::with_sink(
                        bootstrap.to_string(),
                        codec.clone(),
                        store.clone(),
                        &tenant.id,
                        vec![entity],
                        sink,
                        group,
                    )
                    .in_namespace(names.clone());
                    runner.echo = EchoLedger::for_connector(&topology, &tenant.id, connector);
                    out.push(runner);
                }
            }
        }
        Ok(out)
    }
}

impl<S: Sink + 'static> ApiSinkRunner<S> {
    /// A runner writing `tenant`'s records of `entities` through `sink`.
    pub fn with_sink(
        bootstrap: String,
        codec: Arc<Codec>,
        store: SqlStore,
        tenant: &str,
        entities: Vec<Entity>,
        sink: S,
        group_id: String,
    ) -> Self {
        ApiSinkRunner {
            bootstrap,
            codec,
            store,
            tenant: tenant.to_string(),
            entities,
            sink,
            group_id,
            names: Topics::default(),
            options: RunnerOptions::default(),
            echo: None,
        }
    }

    /// Records every write on `<ns>.ledger` first, for the transform's echo suppression.
    pub fn with_echo_ledger(mut self, echo: EchoLedger) -> Self {
        self.echo = Some(echo);
        self
    }

    /// Puts the ledger records of `records` on `<ns>.ledger` and waits for the broker's
    /// acknowledgement: the record of a write must exist before its echo can.
    async fn record_writes(
        &self,
        producer: &FutureProducer,
        records: &[CanonicalRecord],
    ) -> Result<()> {
        let Some(echo) = &self.echo else {
            return Ok(());
        };
        let topic = self.names.ledger();
        let mut items = Vec::with_capacity(records.len());
        for r in records {
            let Some(fields) = echo.fields.get(&r.entity) else {
                continue;
            };
            let projected = hub_schemas::echo::project(&r.doc, fields.iter().map(String::as_str));
            let rec = hub_schemas::echo::LedgerRecord {
                connector: echo.connector.clone(),
                entity: r.entity.name().to_string(),
                content_hash: hub_schemas::echo::fields_hash(&projected),
                version: u64::try_from(r.source_updated_at).unwrap_or_default(),
                written_at: hub_schemas::records::now_ms(),
            };
            items.push((
                hub_schemas::records::record_key(&r.tenant, &r.key),
                serde_json::to_vec(&rec).unwrap_or_default(),
            ));
        }
        let mut pending = Vec::with_capacity(items.len());
        for (key, payload) in &items {
            pending.push(
                producer
                    .send_result(
                        rdkafka::producer::FutureRecord::to(&topic)
                            .key(key)
                            .payload(payload),
                    )
                    .map_err(|(e, _)| e),
            );
        }
        for p in pending {
            match p {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(e.into()),
                    Err(_) => {
                        return Err(SinkError::Kafka(rdkafka::error::KafkaError::Canceled));
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads and dead-letters in the topic namespace `names` (default `hub`).
    pub fn in_namespace(mut self, names: Topics) -> Self {
        self.names = names;
        self
    }

    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Runs until `shutdown` turns true, then returns after the batch in hand is acknowledged
    /// and committed — or, if the target is failing, leaves it uncommitted for redelivery.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let consumer = super::consumer(&self.bootstrap, &self.group_id, &self.options)?;
        let producer = super::dlq_producer(&self.bootstrap, &self.options)?;
        super::subscribe(&consumer, &self.names, &self.entities)?;
        let target = self.sink.target_id().to_string();
        tracing::info!(tenant = %self.tenant, target = %target, entities = self.entities.len(), "API sink started");
        let result = self.consume(&consumer, &producer, &mut shutdown).await;
        super::close(consumer, producer).await;
        tracing::info!(tenant = %self.tenant, target = %target, "API sink stopped");
        result
    }

    async fn consume(
        &self,
        consumer: &SinkConsumer,
        producer: &FutureProducer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let target = self.sink.target_id();
        while !is_stopped(shutdown) {
            let batch = collect(consumer, &self.options, shutdown).await;
            if batch.is_empty() {
                continue;
            }
            let mut dead_lettered = HashSet::new();
            let mut delays = batch_backoff();
            loop {
                match self
                    .process(consumer, producer, &batch, &mut dead_lettered, shutdown)
                    .await
                {
                    Ok(Flow::Done) => break,
                    Ok(Flow::Stopped) => {
                        tracing::info!(tenant = %self.tenant, target = %target, "stopping with records not acknowledged");
                        return Ok(());
                    }
                    Err(e) if e.is_retriable() => {
                        if matches!(e, SinkError::Kafka(_)) {
                            metrics::counter!(hub_topology::metrics::BROKER_ERRORS_TOTAL, "stage" => "sink").increment(1);
                        }
                        tracing::warn!(tenant = %self.tenant, target = %target, code = e.code(), error = %e, "batch failed; retrying");
                        if !pause(delays.next().unwrap_or_default(), shutdown).await {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant, target = %target, code = e.code(), error = %e, "batch failed for good");
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
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Flow> {
        let target = self.sink.target_id();
        let generation = consumer.context().generation();
        let messages: Vec<(usize, &Consumed)> = batch
            .iter()
            .enumerate()
            .filter(|(_, m)| m.generation == generation)
            .collect();
        if messages.is_empty() {
            return Ok(Flow::Done);
        }
        let positions = positions_after(
            messages
                .iter()
                .map(|(_, m)| (m.topic.as_str(), m.partition, m.offset)),
        );
        let mut counts = OutcomeCounts::default();

        // Decode this tenant's records of the routed entities; the rest is not ours.
        let mut records: Vec<(CanonicalRecord, usize)> = Vec::new();
        for (i, m) in messages {
            let Some(entity) = entity_of_topic(&m.topic).filter(|e| self.entities.contains(e))
            else {
                continue;
            };
            if m.key.as_deref().and_then(tenant_of_key) != Some(self.tenant.as_str()) {
                continue;
            }
            let failure = match m.value.as_deref() {
                None => Some("the message has no value".to_string()),
                Some(value) => match CanonicalRecord::decode(
                    &self.codec,
                    &m.topic,
                    m.partition,
                    m.offset,
                    value,
                )
                .await
                {
                    Ok(r) if r.tenant != self.tenant => {
                        Some("the record's tenant_id does not match its key".into())
                    }
                    Ok(r) => {
                        records.push((
                            r.with_headers(m.external_ids.as_deref(), m.origin.as_deref()),
                            i,
                        ));
                        None
                    }
                    Err(e) if e.is_retriable() => return Err(e),
                    Err(e) => Some(e.to_string()),
                },
            };
            if let Some(reason) = failure
                && self
                    .dead_letter_once(
                        producer,
                        batch,
                        i,
                        entity,
                        "decode",
                        reason,
                        1,
                        dead_lettered,
                    )
                    .await?
            {
                counts.add(&self.tenant, entity, target, "dead_lettered");
            }
        }

        // Deliver, skipping what the ledger says the target holds; keep trying what the
        // target could not take yet (no commit, no dead letter) until shutdown.
        let mut flow = Flow::Done;
        let mut todo: Vec<usize> = (0..records.len()).collect();
        while !todo.is_empty() {
            let batch_records: Vec<CanonicalRecord> =
                todo.iter().map(|j| records[*j].0.clone()).collect();
            self.record_writes(producer, &batch_records).await?;
            let outcomes = deliver(
                &self.store,
                &self.sink,
                &batch_records,
                &self.options.retry,
                shutdown,
            )
            .await?;
            let mut remaining = Vec::new();
            for (j, outcome) in todo.iter().copied().zip(outcomes) {
                let (record, message) = (&records[j].0, records[j].1);
                match outcome {
                    DeliveryOutcome::Written => {
                        record_latency(
                            record.entity,
                            target,
                            record.source_updated_at,
                            record.received_at,
                        );
                        counts.add(&self.tenant, record.entity, target, "written");
                    }
                    DeliveryOutcome::SkippedReplay => {
                        counts.add(&self.tenant, record.entity, target, "skipped_replay")
                    }
                    DeliveryOutcome::Refused { reason, attempts } => {
                        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
                        if self
                            .dead_letter_once(
                                producer,
                                batch,
                                message,
                                record.entity,
                                "permanent",
                                reason,
                                attempts,
                                dead_lettered,
                            )
                            .await?
                        {
                            counts.add(&self.tenant, record.entity, target, "dead_lettered");
                        }
                    }
                    DeliveryOutcome::Pending => remaining.push(j),
                }
            }
            todo = remaining;
            if !todo.is_empty() {
                tracing::warn!(tenant = %self.tenant, target = %target, records = todo.len(), "target still failing after all attempts; pausing");
                if !pause(self.options.retry.max_delay, shutdown).await {
                    flow = Flow::Stopped;
                    break;
                }
            }
        }
        let summary = counts.summary();
        counts.emit();
        tracing::debug!(tenant = %self.tenant, target = %target, ?summary, "batch done");
        if matches!(flow, Flow::Done) {
            commit(consumer, &positions);
        }
        Ok(flow)
    }

    #[allow(clippy::too_many_arguments)]
    async fn dead_letter_once(
        &self,
        producer: &FutureProducer,
        batch: &[Consumed],
        message: usize,
        entity: Entity,
        error_class: &str,
        reason: String,
        attempts: i32,
        dead_lettered: &mut HashSet<usize>,
    ) -> Result<bool> {
        if dead_lettered.contains(&message) {
            return Ok(false);
        }
        dead_letter(
            producer,
            &self.codec,
            &self.names,
            DeadLetterOut {
                message: &batch[message],
                tenant: Some(&self.tenant),
                entity: Some(entity),
                error_class,
                reason,
                attempts,
            },
        )
        .await?;
        dead_lettered.insert(message);
        Ok(true)
    }
}
