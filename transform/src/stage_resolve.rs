//! The resolve stage: mapped changes, keyed by canonical key, against each key's last
//! accepted state → canonical versions, state, conflicts.
//!
//! Every change ends as exactly one outcome, counted in `hub_transform_decisions_total`:
//! `applied` (a new canonical version), `conflict` (fields held for a person on
//! `<ns>.conflicts`, the rest applied), `echo` (the hub's own write reported back: the
//! ledger's hash matches) or `skipped` (stale or unchanged; nothing to write). Conflicts
//! settled by a strategy are recorded on `<ns>.conflicts` too, with the strategy applied.
//!
//! The ledger (`<ns>.ledger`) is written by sinks *before* they write to a vendor, and this
//! stage reads it up to its end before each batch, so the echo of a write can never arrive
//! here before the record of that write.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hub_schemas::records::{now_ms, record_key};
use hub_schemas::{Codec, Entity, headers, json_to_avro};
use hub_topology::{Topology, metrics as m};
use rdkafka::message::{Message, OwnedMessage};
use tracing::debug;

use crate::conflict::{
    Change, FieldOutcome, KeptReason, LedgerEntry, Outcome, Strategy, decide, resolve,
};
use crate::pipeline::{
    ChangeMsg, ConflictField, ConflictRecord, ConflictStatus, LedgerRecord, MappedChange, Origin,
    ResolveRequest, StateRecord, canonical_doc,
};
use crate::runner::{Out, Stage, TransformError, dead_letter};
use crate::table::{Follower, read_to_end};

/// How many of the hub's latest writes per key and connector are remembered: an echo of an
/// older write can arrive after a newer write was made.
const LEDGER_DEPTH: usize = 8;

pub(crate) struct ResolveStage {
    topology: Arc<Topology>,
    codec: Arc<Codec>,
    rt: tokio::runtime::Handle,
    bootstrap: String,
    /// `<tenant>/<key>` → state, for the partitions this worker owns (all entities: keys of
    /// different entities never collide, VINs and customer keys have different shapes, and
    /// each entity's key space is separate anyway through the topic).
    state: HashMap<(Entity, String), StateRecord>,
    /// (`<tenant>/<key>`, connector) → the hashes of the hub's latest writes.
    ledger: HashMap<(String, String), VecDeque<LedgerEntry>>,
    ledger_reader: Option<Follower>,
}

impl ResolveStage {
    pub(crate) fn new(
        topology: Arc<Topology>,
        codec: Arc<Codec>,
        rt: tokio::runtime::Handle,
        bootstrap: String,
    ) -> Self {
        ResolveStage {
            topology,
            codec,
            rt,
            bootstrap,
            state: HashMap::new(),
            ledger: HashMap::new(),
            ledger_reader: None,
        }
    }

    fn apply_ledger(&mut self, key: String, value: Option<Vec<u8>>) {
        let Some(rec) = value.and_then(|v| serde_json::from_slice::<LedgerRecord>(&v).ok()) else {
            return;
        };
        let entries = self.ledger.entry((key, rec.connector)).or_default();
        entries.push_back(LedgerEntry {
            content_hash: rec.content_hash,
            version: rec.version,
        });
        while entries.len() > LEDGER_DEPTH {
            entries.pop_front();
        }
    }

    /// The canonical record, the state record and the conflict record(s) of a decision.
    fn emit_version(
        &self,
        entity: Entity,
        tenant: &str,
        key: &str,
        rec: &StateRecord,
        outs: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        let names = self.topology.topic_names();
        let doc = canonical_doc(entity, tenant, key, rec);
        let topic = names.canonical(entity);
        let mut hdrs = vec![
            (headers::TENANT, tenant.to_string()),
            (headers::ENTITY, entity.name().to_string()),
        ];
        if !rec.external_ids.is_empty() {
            hdrs.push((
                headers::EXTERNAL_IDS,
                serde_json::to_string(&rec.external_ids).unwrap_or_default(),
            ));
        }
        if let Some(o) = &rec.origin {
            hdrs.push((headers::CONNECTOR, o.connector.clone()));
            hdrs.push((headers::INGEST_ID, o.ingest_id.clone()));
            hdrs.push((headers::RECEIVED_AT_MS, o.received_at.to_string()));
        }
        match json_to_avro(&doc, entity.schema()) {
            Ok(avro) => {
                let payload = self
                    .rt
                    .block_on(self.codec.encode_value(&topic, entity.schema_text(), avro))
                    .map_err(|e| TransformError::Registry(e.to_string()))?;
                outs.push(Out {
                    topic,
                    key: record_key(tenant, key),
                    payload,
                    headers: hdrs,
                });
            }
            Err(e) => {
                // Every field was valid when mapped; only a schema change between versions of
                // the hub could get here. The state still records the decision.
                tracing::warn!(entity = entity.name(), error = %e, "a state no longer fits its schema");
            }
        }
        self.emit_state(entity, tenant, key, rec, outs);
        Ok(())
    }

    fn emit_state(
        &self,
        entity: Entity,
        tenant: &str,
        key: &str,
        rec: &StateRecord,
        outs: &mut Vec<Out>,
    ) {
        outs.push(Out {
            topic: self.topology.topic_names().state(entity),
            key: record_key(tenant, key),
            payload: serde_json::to_vec(rec).unwrap_or_default(),
            headers: vec![(headers::TENANT, tenant.to_string())],
        });
    }

    fn emit_conflict(&self, c: &ConflictRecord, outs: &mut Vec<Out>) {
        metrics::counter!(m::CONFLICTS_TOTAL, "tenant" => c.tenant.clone(), "entity" => c.entity.clone(),
            "status" => serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .increment(1);
        outs.push(Out {
            topic: self.topology.topic_names().conflicts(),
            key: record_key(&c.tenant, &c.key),
            payload: serde_json::to_vec(c).unwrap_or_default(),
            headers: vec![(headers::TENANT, c.tenant.clone())],
        });
    }

    fn change(
        &mut self,
        entity: Entity,
        c: MappedChange,
        outs: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        let Some(tenant) = self.topology.tenant(&c.tenant) else {
            return Ok(());
        };
        let policy = tenant.conflict_policy(entity).into_owned();
        let slot = (entity, record_key(&c.tenant, &c.key));
        let before = self.state.get(&slot).cloned().unwrap_or_default();
        let ledger = self
            .ledger
            .get(&(slot.1.clone(), c.origin.connector.clone()))
            .and_then(|entries| {
                entries
                    .iter()
                    .rev()
                    .find(|e| e.content_hash == c.content_hash)
            });
        // Only what this system changed since it last reported the key takes part.
        let reported = before.reported.get(&c.origin.connector);
        let fields = c
            .fields
            .iter()
            .filter(|(f, v)| {
                !(before.state.fields.contains_key(*f)
                    && reported.and_then(|r| r.get(*f)) == Some(*v))
            })
            .map(|(f, v)| (f.clone(), v.clone()))
            .collect();
        let change = Change {
            source: c.origin.connector.clone(),
            source_ts: c.origin.source_ts,
            fields,
            content_hash: Some(c.content_hash.clone()),
        };
        let decision = decide(&before.state, &change, &policy, ledger);
        let outcome = match &decision.outcome {
            Outcome::Applied => "applied",
            Outcome::Conflict { .. } => "conflict",
            Outcome::Echo => "echo",
            Outcome::Skipped => "skipped",
        };
        metrics::counter!(m::TRANSFORM_DECISIONS_TOTAL, "tenant" => c.tenant.clone(), "entity" => entity.name(), "outcome" => outcome)
            .increment(1);
        debug!(tenant = %c.tenant, entity = entity.name(), outcome, "decided");

        let conflict_id = format!("{}:{}", entity.name(), c.origin.ingest_id);
        let conflicting: Vec<ConflictField> = decision
            .fields
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o,
                    FieldOutcome::Applied { won_conflict: true }
                        | FieldOutcome::KeptCurrent {
                            reason: KeptReason::LostConflict
                        }
                        | FieldOutcome::Held
                        | FieldOutcome::Skipped
                )
            })
            .filter_map(|(field, o)| {
                Some(ConflictField {
                    field: field.clone(),
                    current: before.state.fields.get(field)?.clone(),
                    incoming: change.field_state(field)?,
                    strategy: strategy_name(policy.strategy_for(&change.source, field)),
                    outcome: o.clone(),
                })
            })
            .collect();

        let mut rec = before.clone();
        let changed = decision.state_changed(&before.state);
        rec.state = decision.state;
        let mut newly_reported = reported != Some(&c.fields);
        rec.reported
            .insert(c.origin.connector.clone(), c.fields.clone());
        if let Some(id) = &c.origin.external_id
            && rec.external_ids.get(&c.origin.connector) != Some(id)
        {
            rec.external_ids
                .insert(c.origin.connector.clone(), id.clone());
            newly_reported = true;
        }
        if changed {
            rec.origin = Some(c.origin.clone());
        }
        let pending = match decision.outcome {
            Outcome::Conflict { pending } => {
                rec.pending.insert(conflict_id.clone(), pending);
                true
            }
            _ => false,
        };
        if changed {
            self.emit_version(entity, &c.tenant, &c.key, &rec, outs)?;
        } else if pending || newly_reported {
            self.emit_state(entity, &c.tenant, &c.key, &rec, outs);
        }
        if !conflicting.is_empty() {
            self.emit_conflict(
                &ConflictRecord {
                    id: conflict_id,
                    tenant: c.tenant.clone(),
                    entity: entity.name().to_string(),
                    key: c.key.clone(),
                    status: if pending {
                        ConflictStatus::Pending
                    } else {
                        ConflictStatus::AutoResolved
                    },
                    origin: Some(c.origin.clone()),
                    fields: conflicting,
                    version: rec.state.version,
                    at: now_ms(),
                    resolution: None,
                    reason: None,
                },
                outs,
            );
        }
        if changed || pending || newly_reported {
            self.state.insert(slot, rec);
        }
        Ok(())
    }

    fn resolution(
        &mut self,
        entity: Entity,
        r: ResolveRequest,
        outs: &mut Vec<Out>,
    ) -> Result<(), TransformError> {
        let slot = (entity, record_key(&r.tenant, &r.key));
        let mut rec = self.state.get(&slot).cloned().unwrap_or_default();
        let mut record = ConflictRecord {
            id: r.conflict_id.clone(),
            tenant: r.tenant.clone(),
            entity: entity.name().to_string(),
            key: r.key.clone(),
            status: ConflictStatus::ResolutionRejected,
            origin: None,
            fields: Vec::new(),
            version: rec.state.version,
            at: now_ms(),
            resolution: Some(r.resolution.clone()),
            reason: None,
        };
        let Some(pending) = rec.pending.get(&r.conflict_id).cloned() else {
            record.reason = Some(
                "conflict.not_pending: the conflict is not pending (already resolved, or unknown)"
                    .into(),
            );
            self.emit_conflict(&record, outs);
            return Ok(());
        };
        match resolve(&rec.state, &pending, &r.resolution) {
            Ok(next) => {
                rec.state = next;
                rec.pending.remove(&r.conflict_id);
                rec.origin = Some(Origin {
                    vendor: "hub".into(),
                    connector: r.resolution.resolved_by.clone(),
                    vendor_entity: entity.name().to_string(),
                    external_id: rec.origin.as_ref().and_then(|o| o.external_id.clone()),
                    source_ts: r.resolution.resolved_at_ms,
                    received_at: now_ms(),
                    ingest_id: format!("{}:resolved", r.conflict_id),
                });
                record.status = ConflictStatus::Resolved;
                record.version = rec.state.version;
                self.emit_version(entity, &r.tenant, &r.key, &rec, outs)?;
                self.state.insert(slot, rec);
            }
            Err(e) => {
                if matches!(e, crate::conflict::ResolveError::ChangedSince { .. }) {
                    record.status = ConflictStatus::Superseded;
                    rec.pending.remove(&r.conflict_id);
                    self.emit_state(entity, &r.tenant, &r.key, &rec, outs);
                    self.state.insert(slot, rec);
                }
                record.reason = Some(format!("{}: {e}", e.code()));
            }
        }
        self.emit_conflict(&record, outs);
        Ok(())
    }
}

fn strategy_name(s: &Strategy) -> String {
    match s {
        Strategy::SourceWins => "source_wins",
        Strategy::TargetWins => "target_wins",
        Strategy::Merge { .. } => "merge",
        Strategy::Manual => "manual",
        Strategy::Skip => "skip",
    }
    .to_string()
}

impl Stage for ResolveStage {
    fn name(&self) -> &'static str {
        "resolve"
    }

    fn input_topics(&self) -> Vec<String> {
        let names = self.topology.topic_names();
        Entity::ALL.iter().map(|e| names.changes(*e)).collect()
    }

    fn restore(&mut self, partitions: &BTreeSet<i32>) -> Result<(), TransformError> {
        let names = self.topology.topic_names();
        self.state.clear();
        self.ledger.clear();
        let topics: Vec<String> = Entity::ALL.iter().map(|e| names.state(*e)).collect();
        for (topic, key, value) in read_to_end(
            &self.bootstrap,
            &topics,
            partitions,
            Duration::from_secs(60),
        )? {
            let Some(entity) = Entity::ALL
                .iter()
                .copied()
                .find(|e| names.state(*e) == topic)
            else {
                continue;
            };
            match value.and_then(|v| serde_json::from_slice::<StateRecord>(&v).ok()) {
                Some(r) => {
                    self.state.insert((entity, key), r);
                }
                None => {
                    self.state.remove(&(entity, key));
                }
            }
        }
        let mut reader = Follower::new(&self.bootstrap, &[names.ledger()], partitions)?;
        let mut records = Vec::new();
        reader.catch_up(Duration::from_secs(60), |r| records.push(r))?;
        for (_, key, value) in records {
            self.apply_ledger(key, value);
        }
        self.ledger_reader = Some(reader);
        Ok(())
    }

    fn before_batch(&mut self) -> Result<(), TransformError> {
        let mut records = Vec::new();
        if let Some(reader) = &mut self.ledger_reader {
            reader.catch_up(Duration::from_secs(10), |r| records.push(r))?;
        }
        for (_, key, value) in records {
            self.apply_ledger(key, value);
        }
        Ok(())
    }

    fn process(&mut self, msg: &OwnedMessage, outs: &mut Vec<Out>) -> Result<(), TransformError> {
        let names = self.topology.topic_names();
        let entity = Entity::ALL
            .iter()
            .copied()
            .find(|e| names.changes(*e) == msg.topic());
        let parsed = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<ChangeMsg>(p).ok());
        let (Some(entity), Some(parsed)) = (entity, parsed) else {
            outs.push(dead_letter(
                &self.rt,
                &self.codec,
                names.dlq_transform(),
                msg,
                None,
                crate::TransformFailure {
                    class: "decode",
                    reason: "the record is not a change the resolve stage understands".into(),
                    errors: Vec::new(),
                },
            )?);
            return Ok(());
        };
        if parsed.entity_name() != entity.name() {
            debug!("a change on another entity's topic");
        }
        match parsed {
            ChangeMsg::Change(c) => self.change(entity, c, outs),
            ChangeMsg::Resolve(r) => self.resolution(entity, r, outs),
        }
    }
}

impl ChangeMsg {
    fn entity_name(&self) -> &str {
        match self {
            ChangeMsg::Change(c) => &c.entity,
            ChangeMsg::Resolve(r) => &r.entity,
        }
    }
}
